"""The recurrent cells: everything that differs between an LSTM, a GRU and a plain tanh RNN.

The rest of charrnn asks a ``Cell`` instead of branching on its name. A cell's weights stack G
blocks of H rows (its gates, in PyTorch's order), its state is a tuple of (L, B, H) tensors ((h, c)
for an LSTM, (h,) otherwise), and one layer's step is

    pre-activations = W_ih x + b_ih + W_hh h + b_hh      (a GRU keeps W_hh h + b_hh apart)
    new state       = update(pre-activations, state)

which is what ``CharRNN``'s large-vocabulary path and the generation stepper compute by hand;
``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` compute the same thing fused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# (h, c) for an LSTM, (h,) for a GRU or an RNN; each (L, B, H), or (B, H) for one layer.
State = tuple[torch.Tensor, ...]
# addend + h W_hhᵀ for one layer: a plain addmm in training, a laid-out multiply in generation.
HiddenProjection = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Cell:
    name: str
    gates: tuple[str, ...]  # the G blocks of H rows in the weights, in PyTorch's order
    module: type[nn.RNNBase]  # nn.LSTM, nn.GRU or nn.RNN
    fused: Callable[..., tuple]  # the kernel behind the module (torch.lstm, ...)
    state_size: int  # tensors in the state: 2 for (h, c), 1 for (h,)
    # A GRU's reset gate scales W_hh h + b_hh as a whole, so that part cannot be summed with the
    # input part before the gates are applied: it is projected on its own.
    hidden_apart: bool

    def input_bias(self, bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
        """The bias that goes with a layer's input part: both biases, except for a GRU."""
        return bias_ih if self.hidden_apart else bias_ih + bias_hh

    def layer_step(
        self, input_gates: torch.Tensor, state: State, hidden: HiddenProjection, bias_hh: torch.Tensor
    ) -> State:
        """One layer, one step: input_gates (N, G·H) = W_ih x + ``input_bias``; state (N, H) each."""
        if self.hidden_apart:
            return self.update(input_gates, state, hidden(state[0], bias_hh))
        return self.update(hidden(state[0], input_gates), state)

    def update(self, gates: torch.Tensor, state: State, hidden_gates: torch.Tensor | None = None) -> State:
        """The new state (each (N, H)) from the pre-activations (N, G·H); see ``layer_step``."""
        if self.name == "lstm":
            return lstm_update(gates, state[1])
        if self.name == "gru":
            return (gru_update(gates, hidden_gates, state[0]),)
        return (torch.tanh(gates),)

    def to_module(self, state: State) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The state as the module takes it: a pair for nn.LSTM, one tensor for nn.GRU / nn.RNN."""
        return state if self.state_size == 2 else state[0]

    def from_module(self, state: torch.Tensor | tuple[torch.Tensor, ...]) -> State:
        return tuple(state) if isinstance(state, tuple) else (state,)


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's state from its summed pre-activations (N, 4H), in nn.LSTM's (i, f, g, o) order.

    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')        (see charrnn/core/reference.py)
    """
    sigmoids = torch.sigmoid(gates)  # (N, 4H); the g block is not used
    i, f, _, o = sigmoids.chunk(4, dim=1)  # (N, H) each
    g = torch.tanh(gates.chunk(4, dim=1)[2])  # (N, H)
    c = torch.addcmul(f * c, i, g)
    return o * torch.tanh(c), c


def gru_update(input_gates: torch.Tensor, hidden_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's new h from W_ih x + b_ih and W_hh h + b_hh (N, 3H each), in nn.GRU's (r, z, n) order.

    r = σ(·_r), z = σ(·_z), n = tanh(x_n + r ⊙ h_n),   h' = (1 - z) ⊙ n + z ⊙ h
    """
    hidden_size = h.shape[1]
    r, z = torch.sigmoid(input_gates[:, : 2 * hidden_size] + hidden_gates[:, : 2 * hidden_size]).chunk(2, dim=1)
    n = torch.tanh(torch.addcmul(input_gates[:, 2 * hidden_size :], r, hidden_gates[:, 2 * hidden_size :]))
    return torch.lerp(n, h, z)  # n + z ⊙ (h - n)


CELLS = {
    "lstm": Cell("lstm", ("input", "forget", "cell", "output"), nn.LSTM, torch.lstm, 2, hidden_apart=False),
    "gru": Cell("gru", ("reset", "update", "new"), nn.GRU, torch.gru, 1, hidden_apart=True),
    "rnn": Cell("rnn", ("hidden",), nn.RNN, torch.rnn_tanh, 1, hidden_apart=False),  # nn.RNN: tanh
}
CELL_NAMES = tuple(CELLS)


def get_cell(name: str) -> Cell:
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}: choose one of {', '.join(CELL_NAMES)}") from None
