"""An LSTM written straight from its gate equations: slow, plain, and the oracle for nn.LSTM.

For each layer and time step, with x_t the layer's input and (h, c) its previous state:

    i = σ(W_ii x_t + b_ii + W_hi h + b_hi)        input gate: how much new content to write
    f = σ(W_if x_t + b_if + W_hf h + b_hf)        forget gate: how much of the old cell to keep
    g = tanh(W_ig x_t + b_ig + W_hg h + b_hg)     candidate cell content
    o = σ(W_io x_t + b_io + W_ho h + b_ho)        output gate: how much of the cell to show
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

nn.LSTM stores the four gates' weights stacked in that order (i, f, g, o) in ``weight_ih_l{k}``
(4H, input) and ``weight_hh_l{k}`` (4H, H). ``ReferenceLSTM`` reads exactly those tensors, so
comparing the two checks both the equations and charrnn's reading of the weight layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GATE_NAMES = ("input", "forget", "cell", "output")  # the order of the 4H rows in nn.LSTM


def lstm_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of one layer: x (B, I), h and c (B, H) -> h', c' (B, H) and the gates (i, f, g, o)."""
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, 4H)
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=1)  # each (B, H)
    i, f, g, o = torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g), torch.sigmoid(pre_o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    return h_next, c_next, (i, f, g, o)


@dataclass
class GateTrace:
    """Mean activation of each gate, per layer, over every batch row and time step."""

    means: list[dict[str, float]]  # one {"input": .., "forget": .., "cell": .., "output": ..} per layer


class ReferenceLSTM:
    """A multi-layer, batch-first LSTM that runs on the weights of an ``nn.LSTM``."""

    def __init__(self, lstm: nn.LSTM):
        if not lstm.batch_first or lstm.bidirectional or lstm.proj_size or not lstm.bias:
            raise ValueError("ReferenceLSTM mirrors a batch_first, unidirectional LSTM with biases")
        self.lstm = lstm
        self.num_layers = lstm.num_layers

    def weights(self, layer: int) -> tuple[torch.Tensor, ...]:
        """(W_ih, W_hh, b_ih, b_hh) of one layer, as stored by nn.LSTM."""
        return tuple(
            getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def __call__(
        self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None, trace: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], GateTrace | None]:
        """inputs (B, T, I), state (h, c) each (L, B, H) -> outputs (B, T, H), (h_n, c_n), trace.

        Dropout between layers is not applied: compare against nn.LSTM in eval mode.
        """
        batch_size, seq_len, _ = inputs.shape
        hidden_size = self.lstm.hidden_size
        if state is None:
            zeros = inputs.new_zeros(self.num_layers, batch_size, hidden_size)
            state = (zeros, zeros)
        h_n, c_n = [], []
        gate_sums = []
        layer_input = inputs  # (B, T, I) for layer 0, then (B, T, H)
        for layer in range(self.num_layers):
            h, c = state[0][layer], state[1][layer]  # (B, H) each
            sums = [0.0] * 4
            outputs = []
            for t in range(seq_len):
                h, c, gates = lstm_cell(layer_input[:, t], h, c, *self.weights(layer))
                outputs.append(h)
                if trace:
                    sums = [total + gate.sum().item() for total, gate in zip(sums, gates, strict=True)]
            layer_input = torch.stack(outputs, dim=1)  # (B, T, H)
            h_n.append(h)
            c_n.append(c)
            gate_sums.append(
                {
                    name: total / (batch_size * seq_len * hidden_size)
                    for name, total in zip(GATE_NAMES, sums, strict=True)
                }
            )
        gate_trace = GateTrace(means=gate_sums) if trace else None
        return layer_input, (torch.stack(h_n), torch.stack(c_n)), gate_trace
