"""How fast a model shape trains on this machine: measured for a second or two, then remembered.

The plan (``charrnn.training.plan``) turns a time budget into characters seen, and that needs the
training speed of every shape it considers, on this device, with this alphabet. A measurement
times real optimizer steps of the shape (forward, backward, clipping, fused Adam) on random
characters after a warm-up step. Results are kept in ``cache_dir()/speeds.json``, keyed by
the machine (CPU model and instruction set, or GPU name), the thread count, torch's and charrnn's
versions and the shape, so a second run on the same machine plans at once.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.paths import cache_dir
from charrnn.cores import OtherLoad
from charrnn.version import __version__

SPEEDS_FILE = "speeds.json"
MEASURE_SECONDS = 1.5  # timed steps per shape, after the warm-up (at least two steps)
WARMUP_STEPS = 1
BUSY_CORES = 0.5  # other programs' load (in cores) past which a measurement is not cached
UNUSABLE = 1e-6  # chars/s of a shape that does not fit in the device's memory
LOAD_WINDOW = 0.2  # seconds over which other programs' load is read before a measurement


@dataclass(frozen=True)
class Shape:
    """A stack of recurrent layers: what the plan chooses between."""

    num_layers: int
    hidden_size: int

    def __str__(self) -> str:
        return f"{self.num_layers} x {self.hidden_size}"


@dataclass(frozen=True)
class Workload:
    """Everything besides the shape that sets a training step's cost."""

    vocab_size: int
    batch_size: int
    seq_len: int
    cell: str
    head: str
    device: torch.device


def machine_key(device: torch.device) -> str:
    """The machine a speed belongs to: another CPU, GPU, thread count or torch build measures anew."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{_cpu_model()} {torch.backends.cpu.get_cpu_capability()} threads={torch.get_num_threads()}"
    return f"{device.type} {where} torch={torch.__version__} charrnn={__version__}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


class SpeedBook:
    """Measured training speeds (characters per second), read from and written to the cache."""

    def __init__(self, work: Workload, path: Path | None = None, others: Callable[[], OtherLoad] = OtherLoad):
        """``others``: what tells how busy other programs kept the cores during a measurement."""
        self.work = work
        self.others = others
        self.path = path if path is not None else _default_path()
        self.machine = machine_key(work.device)
        self.measured: list[Shape] = []  # shapes this book timed itself (not found in the cache)
        self.busy: float = 0.0  # the most cores other programs kept busy while it measured
        self.known: dict[str, float] = {}  # every speed this book has given, cached on disk or not

    def _key(self, shape: Shape) -> str:
        w = self.work
        return f"{self.machine} | {w.cell} {shape} V={w.vocab_size} {w.head} B={w.batch_size} T={w.seq_len}"

    def chars_per_second(self, shape: Shape) -> float:
        """The shape's training speed here: from the cache, or measured now and cached."""
        key = self._key(shape)
        if key in self.known:
            return self.known[key]
        saved = self._read()
        if key not in saved:
            saved[key], keep = self._measure(shape)
            if keep:
                self._write({**self._read(), key: saved[key]})
        self.known[key] = saved[key]
        return saved[key]

    def _measure(self, shape: Shape) -> tuple[float, bool]:
        """The speed measured now, and whether to keep it: not when other programs kept a core busy
        (measured on the cores left, as --threads auto would train), nor when the shape did not fit."""
        others = self.others()
        time.sleep(LOAD_WINDOW)
        on_cpu = self.work.device.type == "cpu"  # a GPU's speed does not depend on the CPU's load
        before = (others() or 0.0) if on_cpu else 0.0
        threads = torch.get_num_threads()
        if before >= BUSY_CORES:
            torch.set_num_threads(max(1, round(threads - before)))
        try:
            speed, fits = measure(shape, self.work), True
        except torch.OutOfMemoryError:  # it does not fit on the device: it cannot be chosen
            speed, fits = UNUSABLE, False
            if self.work.device.type == "cuda":
                torch.cuda.empty_cache()
        finally:
            torch.set_num_threads(threads)
        self.measured.append(shape)
        busy = max(before, others() or 0.0) if on_cpu else 0.0
        self.busy = max(self.busy, busy)
        return speed, fits and busy < BUSY_CORES

    def _read(self) -> dict[str, float]:
        if self.path is None:
            return {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: measure again
        if not isinstance(saved, dict):
            return {}
        return {
            key: value
            for key, value in saved.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        }

    def _write(self, saved: dict[str, float]) -> None:
        """Best effort: a cache that cannot be written only means measuring again next time (two
        writers at once may lose each other's new entries: the same)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            partial.write_text(json.dumps(saved, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(partial, self.path)
        except OSError:
            pass


def _default_path() -> Path | None:
    """The cache file; None where there is no home directory to keep it in (then nothing is kept)."""
    try:
        return cache_dir() / SPEEDS_FILE
    except RuntimeError:  # Path.home() without HOME or a passwd entry
        return None


def measure(shape: Shape, work: Workload, seconds: float = MEASURE_SECONDS) -> float:
    """Characters per second of real training steps of ``shape`` on random text."""
    generator = torch.Generator().manual_seed(0)
    config = ModelConfig(hidden_size=shape.hidden_size, num_layers=shape.num_layers, cell=work.cell, head=work.head)
    model = CharRNN(work.vocab_size, config).to(work.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=work.device.type in ("cpu", "cuda"))
    shape_bt = (work.batch_size, work.seq_len)
    x = torch.randint(0, work.vocab_size, shape_bt, generator=generator).to(work.device)  # (B, T)
    y = torch.randint(0, work.vocab_size, shape_bt, generator=generator).to(work.device)  # (B, T)
    state = model.init_state(work.batch_size)

    def train_once() -> None:
        loss, _ = model(x, state, targets=y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        train_once()
    _synchronize(work.device)
    steps, started = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - started < seconds:
        train_once()
        steps += 1
        if steps % 4 == 0:
            _synchronize(work.device)
    _synchronize(work.device)
    return steps * work.batch_size * work.seq_len / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock times the steps and not their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
