"""Generation's one-character step, with the model's weights laid out for it once.

Generating a character is one time step for N streams. Called for T = 1, ``nn.LSTM`` spends
more time in per-call set-up than in arithmetic (~0.3 to 4 ms per call on a CPU), so sampling
runs the same LSTM equations on the same weights here instead, re-laid out once per generation:

    layer 0:  gates = Wᵀ_table[id] + h₀ Wᵀ_hh          one row lookup (the one-hot input) + one multiply
    layer k:  gates = [x, h_k] Wᵀ_cat + b              one multiply: input and recurrent weights side by side
    head:     logits = h_top Wᵀ_head + b

so each layer costs one matrix multiply per character. The results match ``CharLSTM.forward`` to
float rounding (~1e-7); tests/test_sample.py checks that both give the same text for a seed.
"""

from __future__ import annotations

import torch

from charrnn.model import CharLSTM, State, lstm_update


class LSTMStepper:
    """Runs a trained ``CharLSTM`` (eval mode, no dropout) one character at a time."""

    @torch.no_grad()
    def __init__(self, model: CharLSTM):
        lstm = model.lstm
        biases = [getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}") for k in range(lstm.num_layers)]
        # Row v of the table is W_ih0 one_hot(v) + both layer-0 biases: (V, 4H).
        self.input_table = (lstm.weight_ih_l0.t() + biases[0]).contiguous()
        self.first_hh = lstm.weight_hh_l0.t().contiguous()  # (H, 4H)
        self.upper = [
            (torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1).t().contiguous(),
             biases[k])  # ((2H, 4H), (4H,))
            for k in range(1, lstm.num_layers)
        ]  # fmt: skip
        self.head_weight = model.head.weight.t().contiguous()  # (H, V)
        self.head_bias = model.head.bias

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (N,) -> next-character logits (N, V) and the new state ((L, N, H) each)."""
        h, c = state[0].unbind(0), state[1].unbind(0)  # L tensors (N, H) each
        new_h, new_c = [], []
        layer_h, layer_c = lstm_update(torch.addmm(self.input_table[ids], h[0], self.first_hh), c[0])  # (N, H)
        new_h.append(layer_h)
        new_c.append(layer_c)
        for layer, (weight, bias) in enumerate(self.upper, start=1):
            inputs = torch.cat([layer_h, h[layer]], dim=1)  # (N, 2H): the layer below's output, own h
            layer_h, layer_c = lstm_update(torch.addmm(bias, inputs, weight), c[layer])  # (N, 4H) -> (N, H)
            new_h.append(layer_h)
            new_c.append(layer_c)
        logits = torch.addmm(self.head_bias, layer_h, self.head_weight)  # (N, V)
        return logits, (torch.stack(new_h), torch.stack(new_c))
