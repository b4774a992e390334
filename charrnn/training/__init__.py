"""Training: the run policy (start, resume), the run's state, the loop, its stopping rules and
its reporting, plus the schedule, precision and distributed helpers they use."""
