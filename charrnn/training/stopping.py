"""When a run stops: its step limit, its time budget, its patience or anneal, and SIGINT / SIGTERM.

Under torchrun every rule must fire after the same step in every process, so whatever a process
decides from its own clock or its own signal is agreed (the largest value wins; a no-op for one
process). On a GPU that agreement waits for the queued work, so there it happens every few steps.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any

from charrnn.config import TrainConfig
from charrnn.training.run import TrainingRun
from charrnn.training.schedule import Anneal, fraction_done, learning_rate


class StopRules:
    """The step limit, the time budget (with the training clock it goes by) and patience."""

    def __init__(self, run: TrainingRun):
        self.run = run
        config = run.train_config
        self.schedule_end = run.total_steps()  # where the schedule ends; an anneal may end the run sooner
        self.anneal = anneal_begun(run.metrics, config, self.schedule_end)
        self.end_step = self.schedule_end if self.anneal is None else self.anneal.end_step
        self.limit_seconds = None if config.time_limit is None else config.time_limit * 60
        self.agree_every = 1 if run.device.type == "cpu" else 8
        self.reason: str | None = None  # why the run ended before end_step: "time limit", "patience"
        # Training seconds the schedule and the time limit go by: the same in every process.
        self.agreed_seconds = run.progress.elapsed_seconds
        self.train_seconds = 0.0  # in training steps (validations and saves excluded), this session
        self.steps_here = 0
        self._finish_seconds: float | None = None  # the longest validation + save seen: kept in reserve
        self._started = time.perf_counter()
        self._elapsed_before = run.progress.elapsed_seconds

    def nothing_to_do(self) -> str | None:
        """Why a run that is already at its end need not start, if it is."""
        progress = self.run.progress
        if self.anneal is not None and progress.step >= self.anneal.end_step:
            return (
                f"nothing to do: the run ended at step {self.anneal.end_step}, annealed after its validation "
                f"stalled at step {self.anneal.start_step} (--anneal-after)"
            )
        if progress.step >= self.end_step:
            return f"nothing to do: the run is at step {progress.step} and stops at {self.end_step}"
        if self.limit_seconds is not None and progress.elapsed_seconds >= self.limit_seconds:
            return (
                f"nothing to do: the run has trained {progress.elapsed_seconds / 60:.1f} min, its --time-limit is "
                f"{self.run.train_config.time_limit:g}; resume with a larger --time-limit"
            )
        return None

    def fraction_done(self) -> float:
        """How much of the run is behind us, by steps or by the time budget: what the schedule follows."""
        return fraction_done(self.run.progress.step, self.schedule_end, self.agreed_seconds, self.limit_seconds)

    def learning_rate(self) -> float:
        """The rate for the next step: the schedule's, or the anneal's once validation has stalled."""
        config, step = self.run.train_config, self.run.progress.step
        if self.anneal is None:
            return learning_rate(config, step, self.fraction_done())
        return self.anneal.learning_rate(config, step, self.agreed_seconds, self.limit_seconds)

    @property
    def at_end(self) -> bool:
        return self.run.progress.step >= self.end_step or self.reason is not None

    def due(self, every: int) -> bool:
        """Whether something done every ``every`` steps (and at the end) is due after this step."""
        return self.run.progress.step % every == 0 or self.at_end

    def after_step(self, step_started: float) -> None:
        """Advance the clock by the step that began at ``step_started``; apply the time budget."""
        now = time.perf_counter()
        self.train_seconds += now - step_started
        self.steps_here += 1
        progress = self.run.progress
        progress.elapsed_seconds = self._elapsed_before + now - self._started
        if self.limit_seconds is None:
            self.agreed_seconds = progress.elapsed_seconds  # nothing goes by the clock: no need to agree
        elif progress.step % self.agree_every == 0 or progress.step == self.end_step:
            dist, device = self.run.dist, self.run.device
            self.agreed_seconds = dist.max(round(progress.elapsed_seconds * 1000), device) / 1000
            if self._time_is_up():
                self.reason = "time limit"

    def _time_is_up(self) -> bool:
        """Whether one more stretch of steps, then the final validation and save, would pass the limit."""
        run = self.run
        step_seconds = self.train_seconds / max(1, self.steps_here)
        reserve = self._finish_seconds
        if reserve is None:  # no validation timed yet: a guess
            reserve = run.val_batches.num_windows * step_seconds / 2 + 1.0
        up = self.agreed_seconds + self.agree_every * step_seconds + reserve >= self.limit_seconds
        return bool(run.dist.max(int(up), run.device))

    def seconds_left(self) -> float | None:
        """Training time left in the budget once the final validation and save are set aside."""
        if self.limit_seconds is None:
            return None
        return self.limit_seconds - self.run.progress.elapsed_seconds - (self._finish_seconds or 0.0)

    @contextmanager
    def finishing(self):
        """Times the validation, save and sample after a step: the reserve the time budget keeps."""
        started = time.perf_counter()
        yield
        self._finish_seconds = max(self._finish_seconds or 0.0, time.perf_counter() - started)

    def after_validation(self) -> str | None:
        """Patience: stop once that many validations have gone by without a new best. And
        --anneal-after: once that many have, begin the final anneal (its end is the run's end);
        returns the line that says so."""
        run = self.run
        config = run.train_config
        patience = config.patience
        if patience is not None and not self.at_end and validations_since_best(run.metrics) >= patience:
            self.reason = "patience"
        stalled = config.anneal_after is not None and validations_since_best(run.metrics) >= config.anneal_after
        if self.anneal is not None or self.at_end or not stalled:
            return None
        run.metrics[-1]["anneal"] = True  # kept in every checkpoint: a resumed run anneals from here too
        self.anneal = anneal_begun(run.metrics, config, self.schedule_end)
        self.end_step = self.anneal.end_step
        return (
            f"no new best in {config.anneal_after} validations: annealing the rate from {self.anneal.start_lr:.2e} "
            f"to {config.lr * config.min_lr_ratio:.2e} by step {self.anneal.end_step}, where the run ends"
        )

    def message(self) -> str | None:
        """The line that says why the run ended early, if it did."""
        run = self.run
        if self.reason == "patience":
            return (
                f"stopping at step {run.progress.step}: no new best validation loss in "
                f"{run.train_config.patience} validations (--patience)"
            )
        if self.anneal is not None and run.progress.step >= self.anneal.end_step:
            return (
                f"stopping at step {run.progress.step}: no new best in {run.train_config.anneal_after} validations "
                f"at step {self.anneal.start_step}, so the rate was annealed from there (--anneal-after)"
            )
        if self.reason == "time limit":
            return (
                f"stopping at step {run.progress.step}: the time limit of {run.train_config.time_limit:g} min is "
                f"reached ({run.progress.elapsed_seconds / 60:.1f} min trained; the final validation and save "
                "take the rest)"
            )
        return None


def anneal_begun(metrics: list[dict[str, Any]], config: TrainConfig, schedule_end: float) -> Anneal | None:
    """The anneal begun at the validation marked for it (--anneal-after), if one was.

    Computed from that row alone, so a resumed run anneals from the same step and rate as its
    uninterrupted twin. A marked row, not a search for the first stall: a run resumed with the
    option added must not find an anneal in a past that never had one.
    """
    row = next((row for row in metrics if row.get("anneal")), None)
    if row is None:
        return None
    step, seconds = row["step"], row["elapsed_seconds"]
    limit_seconds = None if config.time_limit is None else config.time_limit * 60
    rate = learning_rate(config, step, fraction_done(step, schedule_end, seconds, limit_seconds))
    return Anneal.starting(step, schedule_end, rate, seconds)


def validations_since_best(metrics: list[dict[str, Any]]) -> int:
    """How many validations have gone by since the best one (0 when the last is the best)."""
    losses = [row["val_loss"] for row in metrics]
    if not losses:
        return 0
    best_index = min(range(len(losses)), key=lambda index: (losses[index], index))
    return len(losses) - 1 - best_index


class SignalStop:
    """Turns the first SIGINT / SIGTERM into a request to stop after the current step.

    A second signal ends the process at once, as KeyboardInterrupt (SIGINT) or SystemExit(143)
    (SIGTERM); checkpoint writes are atomic, so the previous last.pt survives it. Handlers are
    only installed from the main thread.
    """

    def __init__(self, run: TrainingRun, agree_every: int):
        self.run = run
        self.agree_every = agree_every
        self.received: int | None = None  # this process's signal
        self.agreed = 0  # the signal every process stops for; 0 for none
        self._previous: dict[int, Any] = {}

    def poll(self, final: bool = False) -> int:
        """Agree on a signal every ``agree_every`` steps (and once more at the end, with ``final``)."""
        if final or self.run.progress.step % self.agree_every == 0:
            self.agreed = self.run.dist.max(self.received or 0, self.run.device)
        return self.agreed

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.received = signum

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
