"""The learning rate at each step: a linear warm-up, then a decay to a floor.

The rate is a pure function of where the run is (its step, or its training time when a time
budget is the binding limit), so nothing extra is saved: a resumed run computes the same rate
its uninterrupted twin would have. Step-driven schedules therefore keep resume bit-exact; a
time-driven one follows the wall clock, which no two runs share.

    warm-up:  lr · max((step + 1) / warmup_steps, done / 0.25)    until either reaches 1
    cosine:   floor + (lr - floor) · (1 + cos(π · done)) / 2      done: fraction of the run behind us
    linear:   floor + (lr - floor) · (1 - done)
    constant: lr
"""

from __future__ import annotations

import math

from charrnn.config import SCHEDULES, TrainConfig

MAX_WARMUP_FRACTION = 0.25  # warm-up takes at most this much of the run


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
