"""The learning rate at each step: a linear warm-up, then a decay to a floor.

The rate is a pure function of where the run is (its step, or its training time when a time
budget is the binding limit), so nothing extra is saved: a resumed run computes the same rate
its uninterrupted twin would have. Step-driven schedules therefore keep resume bit-exact; a
time-driven one follows the wall clock, which no two runs share.

    warm-up:  lr · max((step + 1) / warmup_steps, done / 0.25)    until either reaches 1
    cosine:   floor + (lr - floor) · (1 + cos(π · done)) / 2      done: fraction of the run behind us
    linear:   floor + (lr - floor) · (1 - done)
    constant: lr
    anneal:   floor + (lr_at_start - floor) · (1 + cos(π · anneal_done)) / 2    (--anneal-after)

An anneal (``Anneal``) replaces the rest of any schedule once validation has stalled: it starts
from the rate the schedule had reached and takes the run to the floor over a fifth of the steps
made so far (or by the time limit, if that comes first), and the run ends there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from charrnn.config import SCHEDULES, TrainConfig

MAX_WARMUP_FRACTION = 0.25  # warm-up takes at most this much of the run
# An anneal lasts this share of the steps before it, so a sixth of the whole run: Hägele et al.
# (2024) found a cooldown of about a fifth of a run as good as a full cosine; not yet tuned here.
ANNEAL_SHARE = 0.2


def fraction_done(step: int, end_step: int, elapsed_seconds: float, time_limit_seconds: float | None) -> float:
    """How much of the run is behind us, in [0, 1]: by steps, or by time when that is further along."""
    done = step / end_step
    if time_limit_seconds is not None:
        done = max(done, elapsed_seconds / time_limit_seconds)
    return min(1.0, done)


def learning_rate(config: TrainConfig, step: int, done: float) -> float:
    """The rate for the optimizer step after ``step`` steps, ``done`` of the way through the run."""
    base_lr = config.lr
    if config.lr_schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if config.lr_schedule == "constant":
        return base_lr
    if step < config.warmup_steps and done < MAX_WARMUP_FRACTION:
        # Whichever comes first, the warm-up steps or a quarter of the run (by steps or time),
        # ends the warm-up: a short run does not spend itself warming up.
        return base_lr * min(1.0, max((step + 1) / config.warmup_steps, done / MAX_WARMUP_FRACTION))
    floor = base_lr * config.min_lr_ratio
    if config.lr_schedule == "cosine":
        return floor + (base_lr - floor) * (1 + math.cos(math.pi * done)) / 2
    return floor + (base_lr - floor) * (1 - done)


@dataclass(frozen=True)
class Anneal:
    """The final anneal of a run whose validation stalled (--anneal-after)."""

    start_step: int
    end_step: int  # a fifth of the steps so far on, or the schedule's own end if that is sooner
    start_lr: float  # the rate the schedule had reached at start_step
    start_seconds: float  # training time at start_step

    @classmethod
    def starting(cls, step: int, schedule_end: float, start_lr: float, start_seconds: float) -> Anneal:
        end_step = min(step + max(1, math.ceil(ANNEAL_SHARE * step)), schedule_end)
        return cls(step, int(max(end_step, step + 1)), start_lr, start_seconds)

    def learning_rate(
        self, config: TrainConfig, step: int, elapsed_seconds: float, limit_seconds: float | None
    ) -> float:
        """The rate after ``step`` steps: cosine from start_lr to the floor, by steps or by time."""
        done = (step - self.start_step) / (self.end_step - self.start_step)
        if limit_seconds is not None and limit_seconds > self.start_seconds:
            done = max(done, (elapsed_seconds - self.start_seconds) / (limit_seconds - self.start_seconds))
        floor = config.lr * config.min_lr_ratio
        return floor + (self.start_lr - floor) * (1 + math.cos(math.pi * min(1.0, done))) / 2
