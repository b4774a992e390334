"""Interleaved A/B timing shared by the benchmark scripts.

This machine's speed drifts (other tenants, clocks) by up to 2x over minutes, so two set-ups are
never timed in separate blocks: each round times one unit of work of every set-up in turn
(A B A B ...), and the ratios are taken per round, then summarised as min / median / max.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class Series:
    """Per-round rates of one set-up (units of work per second, e.g. characters per second)."""

    name: str
    rates: list[float]

    def summary(self) -> tuple[float, float, float]:
        return min(self.rates), statistics.median(self.rates), max(self.rates)


def interleave(setups: Sequence[tuple[str, Callable[[], None], float]], rounds: int, warmup: int = 1) -> list[Series]:
    """Time ``rounds`` rounds of every (name, run_once, units per call) set-up, interleaved.

    ``run_once`` does one unit of work (a training step, a generated text); the warm-up rounds
    (first calls allocate, fill caches and pick kernels) are run but not counted.
    """
    series = [Series(name, []) for name, _, _ in setups]
    for round_index in range(warmup + rounds):
        for (_, run_once, units), result in zip(setups, series, strict=True):
            started = time.perf_counter()
            run_once()
            seconds = time.perf_counter() - started
            if round_index >= warmup:
                result.rates.append(units / seconds)
    return series


def ratios(numerator: Series, denominator: Series) -> tuple[float, float, float]:
    """min / median / max of the per-round ratios numerator / denominator."""
    values = [a / b for a, b in zip(numerator.rates, denominator.rates, strict=True)]
    return min(values), statistics.median(values), max(values)


def print_table(title: str, series: Sequence[Series], unit: str) -> None:
    print(title)
    print(f"  {'set-up':<44} {'min':>10} {'median':>10} {'max':>10}   {unit}")
    for result in series:
        low, mid, high = result.summary()
        print(f"  {result.name:<44} {low:>10,.0f} {mid:>10,.0f} {high:>10,.0f}")


def print_ratio(label: str, numerator: Series, denominator: Series, target: str = "") -> None:
    low, mid, high = ratios(numerator, denominator)
    suffix = f"   (target {target})" if target else ""
    print(f"  ratio {label}: min {low:.2f}, median {mid:.2f}, max {high:.2f}{suffix}")


def training_step(run, stream=None, threads=None):
    """charrnn's real training step with its bookkeeping (what ``fit`` runs each step), as a callable.

    ``stream``: where progress would go (None: no progress display at all). ``threads``: the
    ``--threads`` setting (None: the count torch has now, fixed, as the reference loops run on).
    """
    import torch

    from charrnn.threads import thread_tuner
    from charrnn.training.loop import train_one_step
    from charrnn.training.reporting import Reporter
    from charrnn.training.stopping import StopRules

    rules = StopRules(run)
    report = Reporter(run, rules, lambda message: None, progress=stream is not None, stream=stream)
    tuner = thread_tuner(torch.get_num_threads() if threads is None else threads)
    return lambda: train_one_step(run, rules, report, tuner)
