"""Generation's one-character step, with the model's weights laid out for it once.

Generating a character is one time step for N streams. Called for T = 1, ``nn.LSTM`` spends
more time in per-call set-up than in arithmetic (~0.3 to 4 ms per call on a CPU), so sampling
runs the same LSTM equations on the same weights here instead, re-laid out once per generation:

    layer 0:  gates = Wᵀ_table[id] + h₀ Wᵀ_hh          one row lookup (the one-hot input) + one multiply
    layer k:  gates = [x, h_k] Wᵀ_cat + b              one multiply: input and recurrent weights side by side
    head:     logits = h_top Wᵀ_head + b

so each layer costs one matrix multiply per character. How that multiply is laid out depends on
the number of streams (see ``Projection``). The results match ``CharLSTM.forward`` to float
rounding (~1e-7); tests/test_sample.py checks that both give the same text for a seed.
"""

from __future__ import annotations

import torch

from charrnn.model import CharLSTM, State, lstm_update


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


class LSTMStepper:
    """Runs a trained ``CharLSTM`` (eval mode, no dropout) one character at a time."""

    @torch.no_grad()
    def __init__(self, model: CharLSTM):
        lstm = model.lstm
        # Split into one block per CPU thread; a GPU multiply already uses the whole device.
        parts = torch.get_num_threads() if lstm.weight_hh_l0.device.type == "cpu" else 1
        biases = [getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}") for k in range(lstm.num_layers)]
        # Row v of the table is W_ih0 one_hot(v) + both layer-0 biases: (V, 4H).
        self.input_table = (lstm.weight_ih_l0.t() + biases[0]).contiguous()
        self.first_hh = Projection(lstm.weight_hh_l0, parts)  # (4H, H)
        self.upper = [
            (Projection(torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1), parts),
             biases[k])  # ((4H, 2H), (4H,))
            for k in range(1, lstm.num_layers)
        ]  # fmt: skip
        self.head = Projection(model.head.weight, parts)  # (V, H)
        self.head_bias = model.head.bias

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (N,) -> next-character logits (N, V) and the new state ((L, N, H) each)."""
        h, c = state[0].unbind(0), state[1].unbind(0)  # L tensors (N, H) each
        new_h, new_c = [], []
        layer_h, layer_c = lstm_update(self.first_hh(h[0], self.input_table[ids]), c[0])  # (N, H)
        new_h.append(layer_h)
        new_c.append(layer_c)
        for layer, (projection, bias) in enumerate(self.upper, start=1):
            inputs = torch.cat([layer_h, h[layer]], dim=1)  # (N, 2H): the layer below's output, own h
            layer_h, layer_c = lstm_update(projection(inputs, bias), c[layer])  # (N, 4H) -> (N, H)
            new_h.append(layer_h)
            new_c.append(layer_c)
        logits = self.head(layer_h, self.head_bias)  # (N, V)
        return logits, (torch.stack(new_h), torch.stack(new_c))
