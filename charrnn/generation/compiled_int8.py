"""The int8 step with what lies between its multiplies compiled.

FBGEMM's int8 multiplies take packed weights that ``torch.export`` cannot trace, so they stay
eager calls, but they are fast (~35 us for a 512 x 2048 weight at one stream, against ~110 us in
float32). What runs eagerly between them, some ten small torch calls per layer plus the draw,
then dominates the step. So each layer's gate arithmetic, and the draw, is a small compiled graph
(``LayerGraph``, ``DrawGraph``), and a step is an alternation of the two kinds of call:

    int8 multiply (h_0) -> layer 0 graph -> int8 multiply ([h_0', h_1]) -> layer 1 graph -> ...
        -> draw graph (the head, float32 for a small alphabet) -> next ids, logits

For the cells whose layers are one multiply each (LSTM, RNN); a GRU's int8 step stays eager.
"""

from __future__ import annotations

import torch
from torch import nn

from charrnn.core.cells import Cell, State
from charrnn.core.model import as_index
from charrnn.generation.compiled import CompiledSteps, StreamRange, compile_graph, streams_dim
from charrnn.generation.draw import draw_with_uniforms
from charrnn.generation.stepper import Int8Stepper


class LayerGraph(nn.Module):
    """Layer k's step from its int8 multiply's output: the new state, and the next multiply's input."""

    def __init__(self, cell: Cell, layer: int, num_layers: int):
        super().__init__()
        self.cell, self.layer, self.num_layers = cell, layer, num_layers

    def forward(self, gates: torch.Tensor, addend: tuple, state: State, below: tuple) -> tuple:
        """gates (N, G·H) = the multiply of this layer's input; addend: (bias (G·H,),), or for
        layer 0 (table (V, G·H), ids (N,)), the one-hot input as a row lookup (the table holds
        layer 0's biases); state: the old state, (L, N, H) each; below: the new state of the
        layers below, for the top layer to stack.

        -> this layer's new state (N, H) each, then the next multiply's input: [h_k', h_{k+1}]
        (N, 2H) below the top; at the top, the whole new state (L, N, H) each and h_top (N, H)."""
        k, size = self.layer, self.cell.state_size
        if k == 0:
            table, ids = addend
            gates = gates + table[as_index(ids)]
        else:
            gates = gates + addend[0]
        new = self.cell.update(gates, tuple(t[k] for t in state))  # (N, H) each
        if k + 1 < self.num_layers:
            return (*new, torch.cat([new[0], state[0][k + 1]], dim=1))
        layers = [below[i * size : (i + 1) * size] for i in range(k)] + [new]  # L tuples of (N, H)
        return (*(torch.stack(parts) for parts in zip(*layers, strict=True)), new[0])


class DrawGraph(nn.Module):
    """The head and the temperature draw: the head's bias after its int8 multiply, or the whole
    float32 head (a small alphabet's, see ``Int8Stepper``)."""

    def forward(
        self, x: torch.Tensor, head: tuple, uniforms: torch.Tensor, temperature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the head's int8 output (N, V) with head = (bias,), or h_top (N, H) with head =
        (weight (V, H), bias (V,)) -> drawn ids (N,), logits (N, V)."""
        logits = x + head[0] if len(head) == 1 else torch.addmm(head[1], x, head[0].t())
        return draw_with_uniforms(logits, uniforms, temperature), logits


class Int8CompiledStepper(CompiledSteps):
    """``Int8Stepper``'s step with its layer and draw arithmetic compiled (see the module docstring)."""

    kind = "compiled int8"

    def __init__(self, stepper: Int8Stepper):
        super().__init__(stepper)
        self.multiply = ["0.hh", *(f"{k}.cat" for k in range(1, stepper.num_layers))]  # each layer's one multiply
        weights = stepper.weights  # DrawGraph's head: (bias,) after an int8 multiply, else (weight, bias)
        self.head = (
            (weights["head.bias"],) if "head" in stepper.packed else (weights["head.weight"], weights["head.bias"])
        )

    @property
    def graphs(self) -> tuple[str, ...]:
        return (*(f"layer{k}" for k in range(self.eager.num_layers)), "draw")

    def build(self, streams: StreamRange) -> None:
        eager, paths = self.eager, self.paths(streams)
        dim, example = streams_dim(streams)
        state = eager.init_state(example)
        top = eager.num_layers - 1
        hidden = state[0].shape[2]
        below: list[torch.Tensor] = []
        for k, name in enumerate(self.multiply):
            gates = torch.zeros(example, eager.weights[f"{name}.bias"].shape[0])
            ids = torch.zeros(example, dtype=torch.long)
            addend = (eager.weights["table"], ids) if k == 0 else (eager.weights[f"{name}.bias"],)
            below_in = tuple(below) if k == top else ()  # only the top layer stacks the new state
            inputs = (gates, addend, state, below_in)
            shapes = (
                {0: dim},
                (None, {0: dim}) if k == 0 else (None,),
                tuple({1: dim} for _ in state),
                tuple({0: dim} for _ in below_in),
            )
            compile_graph(LayerGraph(eager.cell, k, eager.num_layers), inputs, shapes, streams, paths[f"layer{k}"])
            below += [torch.zeros(example, hidden) for _ in state]
        x = torch.zeros(example, hidden) if "head" not in eager.packed else torch.zeros(example, self.head[-1].shape[0])
        inputs = (x, self.head, torch.rand(example), torch.ones(example))
        compile_graph(
            DrawGraph(), inputs, ({0: dim}, tuple(None for _ in self.head), {0: dim}, {0: dim}), streams, paths["draw"]
        )

    def step_and_draw(
        self, ids: torch.Tensor, state: State, uniforms: torch.Tensor, temperature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        runners = self.runners[StreamRange.of(len(ids))]
        eager, size = self.eager, self.eager.cell.state_size
        state = [t.contiguous() for t in state]
        x = state[0][0]  # layer 0's multiply takes its own h
        below: list[torch.Tensor] = []
        top = eager.num_layers - 1
        for k, name in enumerate(self.multiply):
            gates = eager.project_raw(name, x)  # (N, G·H), int8
            addend = [eager.weights["table"], ids.long().contiguous()] if k == 0 else [eager.weights[f"{name}.bias"]]
            below_in = below if k == top else []
            out = runners[f"layer{k}"].boxed_run([gates, *addend, *state, *below_in])
            below += out[:size]
            x = out[-1]
        new_state = tuple(out[:size])  # the top layer's graph stacked every layer's new state
        if "head" in eager.packed:
            x = eager.project_raw("head", x)  # (N, V)
        inputs = [x, *self.head, uniforms.contiguous(), temperature]
        drawn, logits = runners["draw"].boxed_run(inputs)
        return drawn, logits, new_state
