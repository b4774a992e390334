"""Which generation step runs: the one owner of --compile and --quantize (and, through
``charrnn.threads``, of the CPU threads generation runs on).

    eager float32 (Stepper)  ─ always works: the fallback for everything below
    compiled float32         ─ CPU, float32 models; built once per model shape, then cached
    int8 (Int8Stepper)       ─ CPU; compiled too (LSTM, RNN): the arithmetic between its int8
                               multiplies, which stay eager calls (compiled_int8.py)

Anything optional that is missing or fails (no C++ compiler, no int8 kernels, a GPU) leaves the
eager float32 step running, and the reason is said once, in one line, through ``note``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from charrnn.core.model import CharRNN
from charrnn.errors import CharRNNError
from charrnn.generation.compiled import SPLIT, WIDE, CompiledStepper, CompiledSteps, StreamRange
from charrnn.generation.compiled_int8 import Int8CompiledStepper
from charrnn.generation.stepper import Int8Stepper, Stepper
from charrnn.threads import thread_tuner

# Building a compiled step took 13-14 s on a 2-core CPU and saved 130-160 us per character at one
# stream (2 x 512 LSTM; benchmarks/sample_speed.py prints both): it pays from about 100,000
# characters. Below that, --compile auto builds nothing; a step already built is always used
# (loading one takes ~0.1 s: benchmarks/cold_start.py).
BREAK_EVEN_CHARS = 100_000
# Jobs this long or longer (but short of the break-even) hear that a build would pay if they are
# repeated; a shorter one, say a 500-character sample, is not told each time.
ADVISE_FROM_CHARS = BREAK_EVEN_CHARS // 5

Note = Callable[[str], None]


class StepRuntime:
    """Hands out the step for a job, and remembers what it built, loaded or gave up on."""

    def __init__(
        self,
        model: CharRNN,
        compile: str = "auto",
        quantize: str = "none",
        note: Note | None = None,
        threads: str | int = "auto",
    ):
        if compile not in ("auto", "on", "off"):
            raise CharRNNError(f"compile must be auto, on or off, got {compile!r}")
        if quantize not in ("none", "int8"):
            raise CharRNNError(f"quantize must be none or int8, got {quantize!r}")
        self.model, self.compile, self.quantize = model, compile, quantize
        self.note = note or (lambda message: None)
        try:  # before any step is built: the eager step splits its multiplies into one block per thread
            self.threads = thread_tuner(threads, model.device.type, self.note, say_start=False)
        except ValueError as exc:
            raise CharRNNError(str(exc)) from None
        self._said: set[str] = set()
        self._stepper: Stepper | CompiledSteps | None = None
        self._tried: set[StreamRange] = set()  # ranges whose compiled step was loaded or given up on

    def say(self, message: str) -> None:
        """``note`` each message once."""
        if message not in self._said:
            self._said.add(message)
            self.note(message)

    @property
    def kind(self) -> str:
        """What runs: "float32", "int8", "compiled float32" or "compiled int8" (before any job: float32)."""
        stepper = self._stepper
        if isinstance(stepper, CompiledSteps) and not stepper.runners:  # nothing compiled loaded: eager
            return stepper.eager.kind
        return stepper.kind if stepper is not None else "float32"

    def stepper(self, streams: int | None = 1, work: int | None = None) -> Stepper | CompiledSteps:
        """The step for ``streams`` streams (None: any number, a server) and about ``work`` characters
        in all (None: no end in sight, worth any build; 0: use a cached build, never make one)."""
        if self._stepper is None:
            self._stepper = self._first_stepper()
        if isinstance(self._stepper, CompiledSteps):
            for streams_range in (SPLIT, WIDE) if streams is None else (StreamRange.of(streams),):
                if streams_range not in self._tried:
                    self._compiled(self._stepper, streams_range, work)
        return self._stepper

    def _first_stepper(self) -> Stepper | CompiledSteps:
        model = self.model
        device = model.device.type
        parts = self.threads.cores  # one block per thread the step may run on, whatever the count now
        if self.quantize == "int8":
            if device != "cpu":
                self.say(f"int8 runs on the CPU only: generating in float32 on {device}")
                return Stepper(model)
            try:
                eager: Stepper = Int8Stepper(model, parts)
            except Exception as exc:  # no quantized engine in this torch build, or one that refuses
                self.say(f"int8 is unavailable here ({_first_line(exc)}): generating in eager float32")
                return Stepper(model, parts)
        else:
            eager = Stepper(model, parts)
        if self.compile == "off":
            return eager
        if device != "cpu" or model.dtype != torch.float32:
            if self.compile == "on":
                self.say("the compiled step is for float32 models on the CPU: generating with the eager step")
            return eager
        if isinstance(eager, Int8Stepper):
            if model.cell.hidden_apart:  # a GRU layer is two multiplies: not compiled
                if self.compile == "on":
                    self.say("int8 GRU steps run eagerly (only LSTM and RNN int8 steps are compiled)")
                return eager
            if model.config.head == "adaptive":  # the compiled int8 draw fuses a Linear head
                if self.compile == "on":
                    self.say("int8 steps with an adaptive head run eagerly (the float32 step compiles)")
                return eager
            return Int8CompiledStepper(eager)
        return CompiledStepper(eager)

    def _compiled(self, stepper: CompiledSteps, streams: StreamRange, work: int | None) -> None:
        """Load the compiled step for ``streams`` from the cache, or build it when that pays."""
        paths = stepper.paths(streams)
        if not all(path.exists() for path in paths.values()):
            if self.compile == "auto" and work == 0:  # a caller that never builds (chat, evaluate): no advice
                return
            if self.compile == "auto" and work is not None and work < BREAK_EVEN_CHARS:
                if work < ADVISE_FROM_CHARS:
                    return
                self.say(
                    f"eager step: compiling one for this model shape takes 15-30 s and pays from ~{BREAK_EVEN_CHARS:,} "
                    "characters (--compile on builds it once and caches it)"
                )
                return  # asked again for a longer job, it may still build
            self._tried.add(streams)
            where, kind = next(iter(paths.values())).parent, stepper.eager.kind
            self.say(f"compiling the {kind} generation step for {streams.name} streams (once; cached in {where})")
            started = time.perf_counter()
            try:
                stepper.build(streams)
            except Exception as exc:  # no C++ compiler, an unsupported platform, ...
                self.say(f"could not compile the generation step ({_first_line(exc)}): generating with the eager step")
                return
            self.say(f"compiled in {time.perf_counter() - started:.0f} s")
        self._tried.add(streams)
        try:
            stepper.load(streams)
        except Exception as exc:  # a damaged or foreign cache file: built again next time
            for path in paths.values():
                path.unlink(missing_ok=True)
            self.say(f"could not load the compiled step ({_first_line(exc)}): generating with the eager step")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
