"""The generation step compiled ahead of time (TorchInductor's AOTInductor), cached on disk.

Eagerly, a step is some 30 small torch calls around its three multiplies, and on a CPU each call
costs microseconds of dispatch: at one stream that was a third of every step. Compiled, the step
(and the temperature draw that follows it) becomes one call into generated C++: the elementwise
gate arithmetic fused into a few loops, the multiplies still the same BLAS calls.

What is compiled is the *shape* of the step, not one model: the weights are inputs, so one build
serves every checkpoint with the same cell, layers, hidden size and vocabulary size. The number
of streams N is a dynamic input within one of two ranges (below ``WIDE_BATCH``, the split
multiply; from it on, the plain one), so a server whose batch grows and shrinks never recompiles.
A build takes seconds (``runtime.py`` decides when that pays); the result is a file in the cache
directory, loaded in milliseconds next time. ``CompiledSteps`` holds what every compiled step
shares (cache paths, loading, the eager fallback per stream range); ``CompiledStepper`` is the
float32 one, compiled_int8.py the int8 one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from charrnn.core.cells import Cell, State
from charrnn.core.paths import cache_dir
from charrnn.generation.draw import draw_with_uniforms
from charrnn.generation.stepper import WIDE_BATCH, Stepper
from charrnn.version import __version__

MAX_STREAMS = 4096  # the largest batch a compiled step takes (the server's limit is far below)


@dataclass(frozen=True)
class StreamRange:
    """The stream counts one compiled step serves: ``low`` to ``high`` inclusive."""

    low: int
    high: int

    @staticmethod
    def of(streams: int) -> StreamRange:
        return SPLIT if streams < WIDE_BATCH else WIDE

    @property
    def name(self) -> str:
        return f"{self.low}-{self.high}"


SPLIT, WIDE = StreamRange(1, WIDE_BATCH - 1), StreamRange(WIDE_BATCH, MAX_STREAMS)


class StepGraph(nn.Module):
    """What is compiled: one step for N streams, then a temperature draw from its logits."""

    def __init__(self, cell: Cell, num_layers: int, names: list[str]):
        super().__init__()
        self.cell, self.num_layers, self.names = cell, num_layers, names

    def forward(
        self, ids: torch.Tensor, uniforms: torch.Tensor, temperature: torch.Tensor, state: State, weights: tuple
    ) -> tuple[torch.Tensor, ...]:
        """ids (N,), uniforms (N,), temperature (N,), state (L, N, H) each, weights in ``names`` order
        -> drawn ids (N,), logits (N, V), then the new state's tensors (L, N, H) each.

        Every argument is a tensor or a tuple of them, in a fixed order, so that a call can hand
        the compiled code one flat list (``CompiledStepper``) without pytree's per-call cost."""
        weights = dict(zip(self.names, weights, strict=True))
        logits, state = Stepper.from_weights(self.cell, self.num_layers, weights).step(ids, state)
        return draw_with_uniforms(logits, uniforms, temperature), logits, *state


def package_path(stepper: Stepper, streams: StreamRange, graph: str = "step", traced_in: str = __name__) -> Path:
    """The cache file of one compiled graph for this stepper's shape: everything the generated
    code depends on (``traced_in``: the module that defines the graph) is in its name."""
    weights = stepper.weights
    key = {
        "charrnn": __version__,
        "code": _code_digest(traced_in),
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "kind": stepper.kind,
        "cell": stepper.cell.name,
        "layers": stepper.num_layers,
        "shapes": {name: list(t.shape) for name, t in sorted(weights.items())},
        "dtype": str(weights["table"].dtype),
        "streams": streams.name,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "steps" / f"{stepper.cell.name}-{stepper.kind}-{graph}-{streams.name}-{digest}.pt2"


def _code_digest(traced_in: str) -> str:
    """A digest of the code a compiled graph is traced from: any change to it is a new build."""
    from charrnn.core import cells
    from charrnn.generation import draw, stepper

    modules = (cells, draw, stepper, sys.modules[__name__], sys.modules[traced_in])
    return hashlib.sha256(b"".join(Path(module.__file__).read_bytes() for module in modules)).hexdigest()


@torch.inference_mode()
def compile_graph(graph: nn.Module, inputs: tuple, shapes: tuple, streams: StreamRange, path: Path) -> None:
    """Export ``graph`` on ``inputs`` (dynamic as ``shapes`` say) and compile it to ``path``,
    atomically: a build cut short, or two at once, never leaves a broken file there."""
    # Imported here: only a build needs the compiler stack. On a CUDA build of torch without a GPU,
    # importing it logs "No CUDA runtime is found": nothing the user can act on for a CPU build.
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torch._inductor  # noqa: F401
        import torch._inductor.config
    finally:
        quiet.setLevel(level)

    with warnings.catch_warnings():  # torch's own pytree deprecation notices: not the user's to act on
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(graph, inputs, dynamic_shapes=shapes)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial.pt2")
    os.close(handle)
    try:
        # A few hundred elements per loop at a few streams: one thread each beats waking the pool
        # (measured: 0.84x of the multiplies' floor with it, 0.88x without, 1 stream).
        threads = 1 if streams is SPLIT else -1
        with torch._inductor.config.patch({"cpp.threads": threads}), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch._inductor.aoti_compile_and_package(program, package_path=partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def streams_dim(streams: StreamRange) -> tuple[torch.export.Dim, int]:
    """The dynamic stream count for export, and an example size inside the range (export would
    fix the size 1 as a constant)."""
    return torch.export.Dim("streams", min=streams.low, max=streams.high), max(streams.low, 2)


class CompiledSteps:
    """``Stepper``'s interface over compiled graphs, one set per stream range; eager where none is loaded.

    A subclass names its graphs (``graphs``), builds them (``build``) and runs them
    (``step_and_draw``); finding and loading them live here.
    """

    kind = "compiled"

    def __init__(self, eager: Stepper):
        self.eager = eager
        self.runners: dict[StreamRange, dict[str, object]] = {}

    @property
    def graphs(self) -> tuple[str, ...]:
        return ("step",)

    def paths(self, streams: StreamRange) -> dict[str, Path]:
        return {graph: package_path(self.eager, streams, graph, type(self).__module__) for graph in self.graphs}

    def build(self, streams: StreamRange) -> None:
        raise NotImplementedError

    def load(self, streams: StreamRange) -> None:
        """Load the built graphs. Straight through the package's C++ loader (what
        ``torch._inductor.aoti_load_package`` wraps): importing TorchInductor's Python side would
        add ~3 s to every start, loading this way takes milliseconds."""
        # (path, model name, single-threaded, runners, device index: -1 for the CPU)
        load = lambda path: torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        self.runners[streams] = {graph: load(path) for graph, path in self.paths(streams).items()}

    def serves(self, streams: int) -> bool:
        return streams <= MAX_STREAMS and StreamRange.of(streams) in self.runners

    def init_state(self, streams: int) -> State:
        return self.eager.init_state(streams)

    def step_and_draw(
        self, ids: torch.Tensor, state: State, uniforms: torch.Tensor, temperature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """ids (N,) -> the next ids drawn with ``uniforms`` (N,) at each row's ``temperature`` (N,;
        clamped: draw.py), logits (N, V), state."""
        raise NotImplementedError

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """As ``Stepper.step`` (the draw the graph makes anyway is thrown away)."""
        if not self.serves(len(ids)):
            return self.eager.step(ids, state)
        _, logits, state = self.step_and_draw(ids, state, torch.zeros(len(ids)), torch.ones(len(ids)))
        return logits, state


class CompiledStepper(CompiledSteps):
    """The float32 step, and the temperature draw after it, as one compiled graph (``StepGraph``)."""

    kind = "compiled float32"

    def __init__(self, stepper: Stepper):
        super().__init__(stepper)
        self.weights = [stepper.weights[name] for name in sorted(stepper.weights)]  # StepGraph's order

    def build(self, streams: StreamRange) -> None:
        dim, example = streams_dim(streams)
        eager = self.eager
        state = eager.init_state(example)
        inputs = (
            torch.zeros(example, dtype=torch.long),
            torch.rand(example),
            torch.ones(example),
            state,
            tuple(self.weights),
        )
        shapes = ({0: dim}, {0: dim}, {0: dim}, tuple({1: dim} for _ in state), tuple(None for _ in self.weights))
        graph = StepGraph(eager.cell, eager.num_layers, sorted(eager.weights))
        compile_graph(graph, inputs, shapes, streams, self.paths(streams)["step"])

    def step_and_draw(
        self, ids: torch.Tensor, state: State, uniforms: torch.Tensor, temperature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        runner = self.runners[StreamRange.of(len(ids))]["step"]
        inputs = [ids.long().contiguous(), uniforms.contiguous(), temperature]
        inputs += [t.contiguous() for t in state] + self.weights
        drawn, logits, *state = runner.boxed_run(inputs)
        return drawn, logits, tuple(state)
