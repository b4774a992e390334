"""Training: the run policy (start, fine-tune, resume; growing a vocabulary), the run's state, the
loop, its stopping rules and its reporting, plus the schedule, precision and distributed helpers."""
