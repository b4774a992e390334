"""The character-level language model: an LSTM (or a GRU, or a plain RNN) over one-hot characters.

    ids (B, T) ─► one-hot (B, T, V) ─► LSTM × L ─► (B, T, H) ─► reshape (B·T, H) ─► Linear ─► (B·T, V)

The recurrent state goes in and comes out of ``forward`` explicitly: the caller decides when to
carry it (consecutive windows, generation) and when to cut its gradient history (``detach``).
An LSTM's state is (h, c); a GRU's and a plain RNN's is (h,): a tuple either way, so the code
that carries, detaches, saves and restores it never asks which cell it holds.

One-hot inputs, two ways to compute them. The first layer multiplies each one-hot vector by its
input weights W_ih (G·H, V); a one-hot vector times a matrix is just one column of that matrix. For
a small vocabulary (an English book has ~65 characters) the one-hot tensor is tiny and the fused
kernel (nn.LSTM, nn.GRU, nn.RNN) runs every layer. For a large one (a Chinese book has ~9,000) a
(B, T, V) float tensor and its (B·T, V) x (V, G·H) multiply would dominate the step, so the model
reads the columns directly (a row lookup in W_ihᵀ) and runs the first layer's recurrence itself;
the other layers still go through the fused kernel. Both give the same logits (tests/test_model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ModelConfig
from charrnn.vocab import one_hot

# (h, c) for an LSTM, (h,) for a GRU or an RNN; each (L, B, H).
State = tuple[torch.Tensor, ...]

# Vocabularies larger than this take the row-lookup input path. Measured with
# benchmarks/large_vocab.py on a 2-core CPU (2 x 256, batch 32, seq 100): the one-hot path is
# faster up to about 500 characters, the lookup path beyond (1.3x at 1,024, 2.3x at 4,096).
ONE_HOT_MAX_VOCAB = 512
INPUT_MODES = ("one-hot", "lookup")

# The recurrent cells, with G: how many H-row blocks their weights stack (gates, in PyTorch's order).
CELL_GATES = {
    "lstm": ("input", "forget", "cell", "output"),
    "gru": ("reset", "update", "new"),
    "rnn": ("hidden",),
}
CELLS = tuple(CELL_GATES)
_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # nn.RNN is the tanh RNN
_FUSED = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}  # the kernels behind them


class CharRNN(nn.Module):
    """One-hot characters in, next-character logits out."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        if config.cell not in CELL_GATES:
            raise ValueError(f"unknown cell {config.cell!r}: choose one of {', '.join(CELLS)}")
        self.vocab_size = vocab_size
        self.config = config
        self.cell = config.cell
        self.rnn = _MODULES[config.cell](
            input_size=vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # The module drops out between its layers; the last layer's output is dropped below.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, vocab_size)
        # How the one-hot inputs are applied (see the module docstring). Not a weight: the same
        # parameters serve both, so either can be chosen for any checkpoint.
        self.input_mode = "one-hot" if vocab_size <= ONE_HOT_MAX_VOCAB else "lookup"

    @property
    def state_size(self) -> int:
        """How many tensors the state holds: 2 for an LSTM (h, c), 1 otherwise (h)."""
        return 2 if self.cell == "lstm" else 1

    def init_state(self, batch_size: int) -> State:
        """The zero state for ``batch_size`` streams, on the model's device and dtype."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)  # (L, B, H)
        return tuple(weight.new_zeros(shape) for _ in range(self.state_size))

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) of any integer dtype -> logits (B·T, V) and the state after the last step.

        A missing ``state`` means the zero state.
        """
        ids = as_index(ids)  # the vocabulary stores ids compactly (uint8, int16); torch indexes with int64
        batch_size, seq_len = ids.shape
        if state is None:
            state = self.init_state(batch_size)
        if self.input_mode == "one-hot":
            inputs = one_hot(ids, self.vocab_size, self.head.weight.dtype)  # (B, T, V)
            outputs, state = self.rnn(inputs, _to_module(state))  # (B, T, H); each state tensor (L, B, H)
            state = _from_module(state)
        else:
            outputs, state = self._rnn_from_lookup(ids, state)
        outputs = self.output_dropout(outputs)
        # Every time step is an independent example for the output layer, so fold time into
        # the batch: one (B·T, H) x (H, V) matrix multiply, and logits in the (N, V) layout
        # that CrossEntropyLoss takes with targets reshaped to (N,).
        outputs = outputs.reshape(batch_size * seq_len, self.config.hidden_size)  # (B·T, H)
        logits = self.head(outputs)  # (B·T, V)
        return logits, state

    def _rnn_from_lookup(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The same as ``self.rnn(one_hot(ids), state)``, without materialising the one-hot tensor."""
        batch_size, seq_len = ids.shape
        rnn = self.rnn
        # one_hot(ids) @ W_ihᵀ picks column ids[b, t] of W_ih (G·H, V) for every position.
        picked = rnn.weight_ih_l0.index_select(1, ids.reshape(-1))  # (G·H, B·T)
        input_gates = picked.t() + input_bias(self.cell, rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B·T, G·H)
        input_gates = input_gates.view(batch_size, seq_len, -1)  # (B, T, G·H)
        first = tuple(t[0] for t in state)  # layer 0's state, (B, H) each
        outputs, first = _first_layer(self.cell, input_gates, first, rnn.weight_hh_l0, rnn.bias_hh_l0)  # (B, T, H)
        if rnn.num_layers == 1:
            return outputs, tuple(t[None] for t in first)
        outputs = F.dropout(outputs, rnn.dropout, self.training)  # what the module does between layers
        upper_weights = [
            getattr(rnn, f"{name}_l{layer}")
            for layer in range(1, rnn.num_layers)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        # The fused kernel behind the module, called on layers 1..L-1 only.
        upper_state = tuple(t[1:] for t in state)  # (L-1, B, H) each
        outputs, *upper = _FUSED[self.cell](
            outputs, _to_module(upper_state), upper_weights, True, rnn.num_layers - 1, rnn.dropout, self.training,
            False, True,
        )  # (B, T, H); then the upper layers' state, (L-1, B, H) each
        return outputs, tuple(torch.cat([low[None], high]) for low, high in zip(first, upper, strict=True))

    def logits_from_state(self, state: State) -> torch.Tensor:
        """Next-character logits (B, V) read from the top layer's h in ``state``.

        Generation uses this for an empty prime: from the zero state the logits are the output
        layer's bias, which training pulls towards the text's character frequencies.
        """
        return self.head(state[0][-1])  # (B, H) -> (B, V)


def _to_module(state: State) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The state as nn.LSTM (a pair) or nn.GRU / nn.RNN (one tensor) take it."""
    return state if len(state) == 2 else state[0]


def _from_module(state: torch.Tensor | tuple[torch.Tensor, ...]) -> State:
    return tuple(state) if isinstance(state, tuple) else (state,)


def input_bias(cell: str, bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """The bias that goes with a layer's input part: both biases, except for a GRU.

    A GRU's reset gate multiplies its hidden part *including* b_hn, so b_hh stays with W_hh h.
    """
    return bias_ih if cell == "gru" else bias_ih + bias_hh


def cell_update(cell: str, gates: torch.Tensor, state: State, hidden_gates: torch.Tensor | None = None) -> State:
    """One layer's new state (each (N, H)) from its pre-activations.

    LSTM and RNN: ``gates`` (N, G·H) is the whole sum W_ih x + W_hh h + biases. GRU: ``gates`` is
    W_ih x + b_ih and ``hidden_gates`` is W_hh h + b_hh, kept apart (see ``gru_update``).
    """
    if cell == "lstm":
        return lstm_update(gates, state[1])
    if cell == "gru":
        return (gru_update(gates, hidden_gates, state[0]),)
    return (torch.tanh(gates),)


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's state update from its summed pre-activations (B, 4H), in nn.LSTM's (i, f, g, o) order.

    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')        (see charrnn/reference.py)
    """
    sigmoids = torch.sigmoid(gates)  # (B, 4H); the g block is not used
    i, f, _, o = sigmoids.chunk(4, dim=1)  # (B, H) each
    g = torch.tanh(gates.chunk(4, dim=1)[2])  # (B, H)
    c = torch.addcmul(f * c, i, g)
    return o * torch.tanh(c), c


def gru_update(input_gates: torch.Tensor, hidden_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's new h from W_ih x + b_ih and W_hh h + b_hh (B, 3H each), in nn.GRU's (r, z, n) order.

    r = σ(·_r), z = σ(·_z), n = tanh(x_n + r ⊙ h_n),   h' = (1 - z) ⊙ n + z ⊙ h
    """
    hidden_size = h.shape[1]
    r, z = torch.sigmoid(input_gates[:, : 2 * hidden_size] + hidden_gates[:, : 2 * hidden_size]).chunk(2, dim=1)
    n = torch.tanh(torch.addcmul(input_gates[:, 2 * hidden_size :], r, hidden_gates[:, 2 * hidden_size :]))
    return torch.lerp(n, h, z)  # n + z ⊙ (h - n)


def _first_layer(
    cell: str, input_gates: torch.Tensor, state: State, weight_hh: torch.Tensor, bias_hh: torch.Tensor
) -> tuple[torch.Tensor, State]:
    """Layer 0's recurrence over T steps: input gates (B, T, G·H), state (B, H) each -> (B, T, H), state.

    One (B, H) x (H, G·H) multiply per step; autograd unrolls it for backward. ``input_gates``
    carries ``input_bias`` already.
    """
    outputs = []
    weight_hh_t = weight_hh.t()  # (H, G·H)
    for gates_in in input_gates.unbind(1):  # unbind, not [:, t]: one gradient op for all steps
        if cell == "gru":
            state = cell_update(cell, gates_in, state, torch.addmm(bias_hh, state[0], weight_hh_t))
        else:
            state = cell_update(cell, torch.addmm(gates_in, state[0], weight_hh_t), state)  # (B, G·H) -> (B, H)
        outputs.append(state[0])
    return torch.stack(outputs, dim=1), state


def as_index(ids: torch.Tensor) -> torch.Tensor:
    """Ids in the dtype every torch indexing op takes (int64), whatever compact dtype they came in.

    The one conversion point for ids entering the model: ``index_select`` refuses int16, and a
    uint8 tensor used as an index would be read as a boolean mask.
    """
    return ids.long()  # no copy when they are int64 already


def detach(state: State) -> State:
    """The same state, cut from the graph that produced it (truncated BPTT between windows)."""
    return tuple(t.detach() for t in state)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
