"""The training loop: truncated BPTT over contiguous streams, with validation, saves and samples.

    until a stopping rule fires (steps, time budget, patience, an anneal, a signal):
        one optimizer step on the next (B, T) window, the hidden state carried and detached
        every --eval-every steps and at the end: validate (best.pt when it improves)
        every --save-every steps and at the end: save last.pt
        every --sample-every steps and at the end: print a short sample

The run (``run.py``) holds the state, the rules (``stopping.py``) decide when to stop, the
reporter (``reporting.py``) shows it; this is just the order of things.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from charrnn.threads import ThreadTuner, thread_tuner
from charrnn.training.reporting import Log, Reporter, log_to_stdout, silent
from charrnn.training.run import TrainingRun
from charrnn.training.stopping import SignalStop, StopRules


@dataclass
class TrainResult:
    """What a call to ``fit`` ended with."""

    out_dir: Path
    step: int
    best_val_loss: float | None
    last_val_loss: float | None
    stopped_by_signal: int | None = None  # SIGINT / SIGTERM number if interrupted


def fit(
    run: TrainingRun, *, log: Log = log_to_stdout, progress_bar: bool = True, threads: str | int = "auto"
) -> TrainResult:
    """Train ``run`` until a stopping rule fires; validate and save along the way and at the end.

    SIGINT / SIGTERM stop it after the current step with last.pt saved; the result says which.
    ``threads``: a fixed CPU thread count, or "auto" (measured as it goes: charrnn/threads.py).
    """
    rules = StopRules(run)
    try:
        if (reason := rules.nothing_to_do()) is not None:
            (log if run.dist.is_main else silent)(reason)
            signum = 0
        else:
            tuner = thread_tuner(threads, run.device.type, log if run.dist.is_main else silent)
            signum = _train(run, rules, log, progress_bar, tuner)
    finally:
        run.dist.leave()  # under torchrun, every process leaves the process group it joined
    return TrainResult(run.out_dir, run.progress.step, run.best_val_loss, run.last_val_loss, signum or None)


def _train(run: TrainingRun, rules: StopRules, log: Log, progress_bar: bool, tuner: ThreadTuner) -> int:
    """The loop itself; returns the signal that stopped it, or 0."""
    config, progress = run.train_config, run.progress
    with Reporter(run, rules, log, progress_bar) as report, SignalStop(run, rules.agree_every) as signals:
        saved_at = None
        while not rules.at_end and not signals.agreed:
            train_one_step(run, rules, report, tuner)
            with rules.finishing():
                if rules.due(config.eval_every):
                    report.validation(*run.validate(), threads=tuner.threads)
                    if announcement := rules.after_validation():
                        report.log(announcement)
                if rules.due(config.save_every):
                    run.save("last.pt")
                    saved_at = progress.step
                if report.sample_due:
                    report.sample()
            signals.poll()
        signum = signals.poll(final=True)  # a signal may have come after the last agreement
        if signum and saved_at != progress.step:
            run.save("last.pt")
        report.ended(signum or None)
    return signum


def train_one_step(run: TrainingRun, rules: StopRules, report: Reporter, tuner: ThreadTuner) -> None:
    """One optimizer step at the scheduled rate, with its bookkeeping: the hot path of training
    (benchmarks/train_step.py times exactly this against a minimal hand-written loop)."""
    step_started = time.perf_counter()
    with tuner.step():
        loss = run.train_step(rules.learning_rate())
    rules.after_step(step_started)  # the clock and the time budget
    report.step(loss)
