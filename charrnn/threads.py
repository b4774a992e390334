"""How many CPU threads torch runs on: the one owner of ``--threads``.

Torch splits a CPU kernel's work among its threads, and they meet at the end of every parallel
region. When another program holds one of the cores, the thread on it waits for its turn and the
whole region waits for that thread: on a 2-core machine with one core busy, a 2-thread training
step measured 6x slower than a 1-thread one (benchmarks/busy_machine.py). So under ``auto`` the
count is measured, not assumed:

- It starts from the cores this process may run on (``charrnn.cores``: its CPU affinity, capped
  by a container's CPU quota) — not the host's core count.
- ``ThreadTuner`` times a few steps of a loop at each candidate count and keeps the fastest; it
  looks again when the step time jumps or drops (the machine got busy, or quiet), and at growing
  intervals in between, since one thread runs as fast on a busy machine as on a quiet one and so
  cannot tell when the other cores come free.

- It never tries a count that needs a core other programs hold (``charrnn.cores.OtherLoad``):
  one step there costs 6-60 steps' time.

Thread counts change how a multiply is divided among cores. On this project's CPU the default
model's training step gave bit-identical weights with 1 and 2 threads and tiny models' did not:
that is the kernels' choice, not a promise. Exact resume is bit-exact under a fixed
``--threads N`` (as it always was under torch's default) and equal to float rounding under
``auto``, whose counts follow the machine's load.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from charrnn.cores import OtherLoad, cores_for_this_process


def parse_threads(value: str | int) -> int | None:
    """``--threads``: "auto" -> None (measured), a whole number >= 1 -> itself; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lower() == "auto":
        return None
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"threads must be auto or a whole number >= 1, got {value!r}")
    if number < 1:
        raise ValueError(f"threads must be auto or a whole number >= 1, got {value!r}")
    return number


def use_fixed_threads(setting: str | int) -> None:
    """Set torch's thread count now for a fixed ``--threads N`` (``auto`` is measured later, as
    training goes): what the plan's speed measurements, made before training, must run at."""
    count = parse_threads(setting)
    if count is not None:
        torch.set_num_threads(count)


def candidate_counts(cores: int) -> list[int]:
    """The counts ``auto`` tries on ``cores`` cores, most first: all, all but one, halves, down to 1."""
    counts = {cores, max(1, cores - 1), 1}
    half = cores // 2
    while half > 1:
        counts.add(half)
        half //= 2
    return sorted(counts, reverse=True)


@dataclass
class ThreadTuner:
    """Chooses the thread count for a loop of like steps from their measured times (see the module).

    A loop wraps each step in ``with tuner.step(size):`` (``size``: anything that makes steps
    unlike, such as the number of streams; only steps of one size are compared). ``fixed`` is a
    count the user chose: it is applied once and never changed.
    """

    cores: int
    fixed: int | None = None
    log: Callable[[str], None] = lambda message: None
    apply: Callable[[int], None] = torch.set_num_threads
    clock: Callable[[], float] = time.perf_counter
    # Cores other programs kept busy since the last call (``OtherLoad``; None: unknown): counts
    # that would need more cores than are free are not tried, since one step on a core another
    # program holds costs 6-60 steps' time (benchmarks/busy_machine.py).
    others: Callable[[], float | None] = lambda: None
    probe_steps: int = 3  # timed steps per candidate (after one untimed warm-up step) ...
    probe_seconds: float = 0.3  # ... and at least this much of them
    window: int = 5  # recent steps whose median is compared with the chosen count's time ...
    settle: float = 0.25  # ... and at least this many seconds of them
    jump: float = 1.5  # a change of this factor in the step time starts a new measurement
    first_recheck: float = 30.0  # seconds until the first look again; doubles while nothing changes
    last_recheck: float = 600.0
    say_start: bool = True  # log the first choice too, not only later moves (a training log does)
    threads: int = field(init=False)
    changes: list[tuple[int, str]] = field(init=False, default_factory=list)  # (count, reason), in order

    def __post_init__(self) -> None:
        self.threads = self.fixed if self.fixed is not None else self.cores
        # Set in the thread that steps, at its first step: a loaded model changes nothing until it runs.
        self._applied_in: int | None = None
        self._step_size: object = None  # the step being timed: its size and when it started
        self._step_started = 0.0
        self._interval = self.first_recheck
        self._reference: float | None = None  # the chosen count's median step time
        self._size: object = None
        self._recent: list[float] = []  # steps since the last comparison with the reference
        self._probe: list[int] = []  # counts still to measure, the one being measured first
        self._times: list[float] = []  # the timed steps of the count being measured ...
        self._timed = 0.0  # ... and their sum
        self._medians: dict[int, float] = {}  # the counts measured so far in this probe
        self._warm = False  # the count being measured has had its untimed step
        self._next_check = math.inf
        self._why = "start"
        self._before = self.threads
        self._load: float | None = None  # cores other programs kept busy, at the last look (None: unknown)
        if self.fixed is None and self.cores > 1:
            self._start_probe("start")

    def step(self, size: object = None) -> ThreadTuner:
        """``with tuner.step(size):`` times the step inside; afterwards, maybe moves to another count.
        (The tuner is its own context manager: no generator per step on the sampling hot path.)"""
        self._step_size = size
        return self

    def __enter__(self) -> None:
        if threading.get_ident() != self._applied_in:  # new, or set in another thread, where it does not hold
            self._applied_in = threading.get_ident()
            self.apply(self.threads)
        self._step_started = self.clock()

    def __exit__(self, kind: type | None, *exc_info: object) -> None:
        if kind is None:  # a step that raised (Ctrl-C, an error) says nothing about the machine
            self.record(self.clock() - self._step_started, self._step_size)

    def record(self, seconds: float, size: object = None) -> None:
        """One step of ``size`` took ``seconds``: the decision logic, apart from any clock."""
        if self.fixed is not None or self.cores == 1:
            return
        if size != self._size:  # unlike steps: measure afresh at this size
            self._size, self._reference = size, None
            self._recent.clear()
            if self._probe:  # start the measurement again at this size, from the same count as before
                before = self._before
                self._start_probe(self._why)
                self._before = before
            return
        if self._probe:
            self._probe_step(seconds)
            return
        self._recent.append(seconds)
        # Compare at least ``window`` steps and a quarter of a second of them: a median over
        # a few sub-millisecond generation steps is noise, not the machine.
        needed = self.window if self._reference is None else max(self.window, self.settle / self._reference)
        if len(self._recent) < needed:
            return
        typical = statistics.median(self._recent)
        self._recent.clear()
        self._load = self.others()
        if self._reference is None:
            self._reference = typical
        elif typical > self.jump * self._reference:
            self._look_again(f"steps got {typical / self._reference:.1f}x slower", typical)
        elif typical * self.jump < self._reference:
            self._look_again(f"steps got {self._reference / typical:.1f}x faster", typical)
        elif self.clock() >= self._next_check:
            self._look_again("a periodic look", typical)

    def _free_counts(self) -> list[int]:
        """The candidate counts, fewest first, that fit in the cores other programs leave free."""
        counts = candidate_counts(self.cores)[::-1]
        if self._load is None:
            return counts
        room = max(1, round(self.cores - self._load))
        return [count for count in counts if count <= room]

    def _look_again(self, why: str, typical: float) -> None:
        """Measure the counts again, unless no other count fits in the free cores: then the new
        step time is the one to compare with, and the next look comes later."""
        if self._free_counts() == [self.threads]:
            self._reference = typical
            self._interval = min(self._interval * 2, self.last_recheck)
            self._next_check = self.clock() + self._interval
            return
        self._start_probe(why)

    def _start_probe(self, why: str) -> None:
        """Measure every candidate again. At the start they go from one thread up: a count that
        includes a busy core is the one that costs 6-60x, and after a fast count has been timed,
        one step shows it (``_probe_step``). Later the chosen count goes first, to time it afresh."""
        fewest_first = self._free_counts()
        if why == "start" or self.threads not in fewest_first:  # not the current count: it has no room
            self._probe = fewest_first
        else:
            self._probe = [self.threads, *(count for count in fewest_first if count != self.threads)]
        self._why, self._before = why, self.threads
        self._times, self._timed, self._medians, self._warm = [], 0.0, {}, False
        self._recent.clear()
        self._set(self._probe[0])

    def _probe_step(self, seconds: float) -> None:
        """Time the count being measured, until ``probe_steps`` steps and ``probe_seconds`` of them
        are timed, or it is clearly slower than the best so far."""
        best = min(self._medians.values(), default=None)
        if not self._warm:  # the first step after a change pays for waking threads: not timed
            self._warm = True
            if self._why == "start" and best is None:  # the first look at the machine: prune what has no room
                self._load = self.others()
                self._probe = [self._probe[0], *(c for c in self._probe[1:] if c in self._free_counts())]
            if best is None or seconds < 2 * self.jump * best:
                return
            self._times, self._timed = [seconds], seconds  # far slower even allowing for the wake-up: done
        else:
            self._times.append(seconds)
            self._timed += seconds
            recent = statistics.median(self._times[-3:])
            clearly_slower = best is not None and recent > self.jump * best
            enough = len(self._times) >= self.probe_steps and self._timed >= self.probe_seconds
            if not (enough or clearly_slower):
                return
        self._medians[self._probe.pop(0)] = statistics.median(self._times)
        self._times, self._timed, self._warm = [], 0.0, False
        if self._probe:
            self._set(self._probe[0])
        else:
            self._choose()

    def _choose(self) -> None:
        count = min(self._medians, key=lambda c: (self._medians[c], c))  # a tie goes to fewer threads
        self._set(count)
        self._reference = self._medians[count]
        if count != self._before or self._why == "start":
            self._interval = self.first_recheck
            measured = ", ".join(f"{c}: {seconds * 1000:.1f} ms" for c, seconds in sorted(self._medians.items()))
            self.changes.append((count, self._why))
            if self._why != "start" or self.say_start:
                why = f"{self._why}; median step by thread count {measured}"
                self.log(f"threads: {count} of {self.cores} cores ({why})")
        else:  # the same count again: look less often
            self._interval = min(self._interval * 2, self.last_recheck)
        self._next_check = self.clock() + self._interval

    def _set(self, count: int) -> None:
        """Use ``count`` from the next step on (``step`` sets it, in the thread that steps)."""
        if count != self.threads:
            self.threads = count
            self._applied_in = None


def timed_step(tuner: ThreadTuner | None, size: object = None) -> contextlib.AbstractContextManager:
    """``tuner.step(size)``, or nothing to time when a loop runs without a tuner."""
    return tuner.step(size) if tuner is not None else contextlib.nullcontext()


def thread_tuner(
    setting: str | int,
    device_type: str = "cpu",
    log: Callable[[str], None] = lambda message: None,
    say_start: bool = True,
) -> ThreadTuner:
    """The tuner for a ``--threads`` setting (a fixed count, or ``auto``) on this machine.

    Under torchrun, ``auto`` gives each of the node's processes an equal share of the cores. On a
    GPU the CPU only feeds the device: ``auto`` keeps torch's count and measures nothing.
    ``say_start``: log the first choice (a training log), or only later moves (generation, whose
    stderr a person reads beside the text).
    """
    fixed = parse_threads(setting)
    if fixed is None and device_type != "cpu":
        fixed = torch.get_num_threads()
    if fixed is not None:
        return ThreadTuner(cores=fixed, fixed=fixed, log=log)
    return ThreadTuner(cores=cores_for_this_process(), log=log, others=OtherLoad(), say_start=say_start)
