"""Generation's one-character step, with the model's weights laid out for it once.

Generating a character is one time step for N streams. Called for T = 1, ``nn.LSTM`` spends
more time in per-call set-up than in arithmetic (~0.3 to 4 ms per call on a CPU), so sampling
runs the same equations on the same weights here instead, re-laid out once per generation:

    layer 0:  gates = Wᵀ_table[id] + h₀ Wᵀ_hh          one row lookup (the one-hot input) + one multiply
    layer k:  gates = [x, h_k] Wᵀ_cat + b              one multiply: input and recurrent weights side by side
    head:     logits = h_top Wᵀ_head + b

so each LSTM (or RNN) layer costs one matrix multiply per character. A GRU's reset gate scales
its recurrent part alone, so there the two parts of each layer are two multiplies (``Cell.hidden_apart``).
How that multiply is laid out depends on the number of streams (see ``Projection``). The results
match ``CharRNN.forward`` to float rounding (~1e-7); tests/generation/test_sample.py checks that
both give the same text for a seed.
"""

from __future__ import annotations

import torch

from charrnn.core.cells import State
from charrnn.core.model import CharRNN, as_index

# From this many streams on, W xᵀ in W's own layout is the faster multiply; below it, the split
# one (measured on a 2-core AVX2 CPU with benchmarks/sample_speed.py: 1.3x at 16 streams).
WIDE_BATCH = 16


class Projection:
    """addend + x Wᵀ for one weight W (M, K) and a few rows x (N, K), laid out for speed.

    A CPU multiply with one row (a matrix-vector product) runs on a single thread. Splitting W's
    M outputs into one block per thread and multiplying the blocks as a batch (``baddbmm``) puts
    every core to work: about 1.5x on 2 cores. From ``WIDE_BATCH`` rows on, a plain W xᵀ wins.
    Both layouts hold the same numbers, so the choice changes nothing but rounding (~1e-7).
    """

    def __init__(self, weight: torch.Tensor, parts: int):
        out_features, in_features = weight.shape
        self.parts = parts if out_features % parts == 0 else 1
        self.weight = weight.contiguous()  # (M, K)
        self.blocks = (
            weight.t().reshape(in_features, self.parts, out_features // self.parts).transpose(0, 1).contiguous()
        )  # (P, K, M/P): block p holds the columns of outputs p·M/P ... (p+1)·M/P - 1

    def __call__(self, x: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
        """x (N, K), addend (M,) or (N, M) -> (N, M)."""
        rows, out_features = x.shape[0], self.weight.shape[0]
        if rows >= WIDE_BATCH:
            return torch.mm(self.weight, x.t()).t().contiguous().add_(addend)  # (M, N) -> (N, M)
        parts = self.parts
        addend = addend.view(-1, parts, out_features // parts).transpose(0, 1)  # (P, 1 or N, M/P)
        out = torch.baddbmm(addend, x.expand(parts, *x.shape), self.blocks)  # (P, N, M/P)
        return out.transpose(0, 1).reshape(rows, out_features)  # a view when N = 1


class Stepper:
    """Runs a trained ``CharRNN`` (eval mode, no dropout) one character at a time."""

    @torch.no_grad()
    def __init__(self, model: CharRNN):
        rnn, cell = model.rnn, model.cell
        self.cell = cell
        # Split into one block per CPU thread; a GPU multiply already uses the whole device.
        parts = torch.get_num_threads() if rnn.weight_hh_l0.device.type == "cpu" else 1
        weights = [
            [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            for k in range(rnn.num_layers)
        ]
        w_ih0, w_hh0, b_ih0, b_hh0 = weights[0]
        # Row v of the table is W_ih0 one_hot(v) plus layer 0's input bias: (V, G·H).
        self.input_table = (w_ih0.t() + cell.input_bias(b_ih0, b_hh0)).contiguous()
        self.first_hh = Projection(w_hh0, parts)  # (G·H, H)
        self.first_hh_bias = b_hh0
        if cell.hidden_apart:  # input and recurrent parts stay apart: (G·H, H) and (G·H,) each
            self.upper = [
                (Projection(w_ih, parts), b_ih, Projection(w_hh, parts), b_hh) for w_ih, w_hh, b_ih, b_hh in weights[1:]
            ]
        else:  # side by side: one (G·H, 2H) multiply, both biases summed
            self.upper = [
                (Projection(torch.cat([w_ih, w_hh], dim=1), parts), b_ih + b_hh)
                for w_ih, w_hh, b_ih, b_hh in weights[1:]
            ]
        self.head = Projection(model.head.weight, parts)  # (V, H)
        self.head_bias = model.head.bias

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (N,) of any integer dtype -> next-character logits (N, V) and the new state (each (L, N, H))."""
        cell = self.cell
        ids = as_index(ids)
        layers = list(zip(*(t.unbind(0) for t in state), strict=True))  # L tuples of (N, H) tensors
        input_gates = self.input_table[ids]  # (N, G·H)
        layer_state = cell.layer_step(input_gates, layers[0], self.first_hh, self.first_hh_bias)  # (N, H) each
        new_layers = [layer_state]
        for layer, weights in enumerate(self.upper, start=1):
            below, own = layer_state[0], layers[layer]  # the layer below's output, this layer's state
            if cell.hidden_apart:
                input_proj, input_b, hidden_proj, hidden_b = weights
                layer_state = cell.layer_step(input_proj(below, input_b), own, hidden_proj, hidden_b)
            else:
                projection, bias = weights
                inputs = torch.cat([below, own[0]], dim=1)  # (N, 2H)
                layer_state = cell.update(projection(inputs, bias), own)  # (N, G·H) -> (N, H) each
            new_layers.append(layer_state)
        logits = self.head(layer_state[0], self.head_bias)  # (N, V)
        return logits, tuple(torch.stack(parts) for parts in zip(*new_layers, strict=True))  # each (L, N, H)
