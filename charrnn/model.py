"""The character-level LSTM language model.

    ids (B, T) ─► one-hot (B, T, V) ─► LSTM × L ─► (B, T, H) ─► reshape (B·T, H) ─► Linear ─► (B·T, V)

The recurrent state (h, c) goes in and comes out of ``forward`` explicitly: the caller decides when
to carry it (consecutive windows, generation) and when to cut its gradient history (``detach``).

One-hot inputs, two ways to compute them. The first layer multiplies each one-hot vector by its
input weights W_ih (4H, V); a one-hot vector times a matrix is just one column of that matrix. For
a small vocabulary (an English book has ~65 characters) the one-hot tensor is tiny and nn.LSTM's
fused kernel runs every layer. For a large one (a Chinese book has ~9,000) a (B, T, V) float
tensor and its (B·T, V) x (V, 4H) multiply would dominate the step, so the model reads the
columns directly (a row lookup in W_ihᵀ) and runs the first layer's recurrence itself; the other
layers still go through the fused kernel. Both give the same logits (tests/test_model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ModelConfig
from charrnn.vocab import one_hot

# (h, c), each (L, B, H).
State = tuple[torch.Tensor, torch.Tensor]

# Vocabularies larger than this take the row-lookup input path. Measured with
# benchmarks/large_vocab.py on a 2-core CPU (2 x 256, batch 32, seq 100): the one-hot path is
# faster up to about 500 characters, the lookup path beyond (1.3x at 1,024, 2.3x at 4,096).
ONE_HOT_MAX_VOCAB = 512
INPUT_MODES = ("one-hot", "lookup")


class CharLSTM(nn.Module):
    """One-hot characters in, next-character logits out."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config
        self.lstm = nn.LSTM(
            input_size=vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # nn.LSTM drops out between its layers; the last layer's output is dropped below.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, vocab_size)
        # How the one-hot inputs are applied (see the module docstring). Not a weight: the same
        # parameters serve both, so either can be chosen for any checkpoint.
        self.input_mode = "one-hot" if vocab_size <= ONE_HOT_MAX_VOCAB else "lookup"

    def init_state(self, batch_size: int) -> State:
        """The zero state for ``batch_size`` streams, on the model's device and dtype."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)  # (L, B, H)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) int -> logits (B·T, V) and the state after the last step.

        A missing ``state`` means the zero state.
        """
        batch_size, seq_len = ids.shape
        if state is None:
            state = self.init_state(batch_size)
        if self.input_mode == "one-hot":
            inputs = one_hot(ids, self.vocab_size, self.head.weight.dtype)  # (B, T, V)
            outputs, state = self.lstm(inputs, state)  # (B, T, H); h, c each (L, B, H)
        else:
            outputs, state = self._lstm_from_lookup(ids, state)
        outputs = self.output_dropout(outputs)
        # Every time step is an independent example for the output layer, so fold time into
        # the batch: one (B·T, H) x (H, V) matrix multiply, and logits in the (N, V) layout
        # that CrossEntropyLoss takes with targets reshaped to (N,).
        outputs = outputs.reshape(batch_size * seq_len, self.config.hidden_size)  # (B·T, H)
        logits = self.head(outputs)  # (B·T, V)
        return logits, state

    def _lstm_from_lookup(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The same as ``self.lstm(one_hot(ids), state)``, without materialising the one-hot tensor."""
        batch_size, seq_len = ids.shape
        lstm, hidden_size = self.lstm, self.config.hidden_size
        # one_hot(ids) @ W_ihᵀ picks column ids[b, t] of W_ih (4H, V) for every position.
        picked = lstm.weight_ih_l0.index_select(1, ids.reshape(-1))  # (4H, B·T)
        input_gates = picked.t() + (lstm.bias_ih_l0 + lstm.bias_hh_l0)  # (B·T, 4H)
        input_gates = input_gates.view(batch_size, seq_len, 4 * hidden_size)  # (B, T, 4H)
        h, c = state  # (L, B, H) each
        outputs, h_first, c_first = _first_layer(input_gates, h[0], c[0], lstm.weight_hh_l0)  # (B, T, H)
        if lstm.num_layers == 1:
            return outputs, (h_first[None], c_first[None])
        outputs = F.dropout(outputs, lstm.dropout, self.training)  # what nn.LSTM does between layers
        upper_weights = [
            getattr(lstm, f"{name}_l{layer}")
            for layer in range(1, lstm.num_layers)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        # The fused kernel behind nn.LSTM, called on layers 1..L-1 only.
        outputs, h_upper, c_upper = torch.lstm(
            outputs, (h[1:], c[1:]), upper_weights, True, lstm.num_layers - 1, lstm.dropout, self.training, False, True
        )  # (B, T, H); (L-1, B, H) each
        return outputs, (torch.cat([h_first[None], h_upper]), torch.cat([c_first[None], c_upper]))

    def logits_from_state(self, state: State) -> torch.Tensor:
        """Next-character logits (B, V) read from the top layer's h in ``state``.

        Generation uses this for an empty prime: from the zero state the logits are the output
        layer's bias, which training pulls towards the text's character frequencies.
        """
        return self.head(state[0][-1])  # (B, H) -> (B, V)


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's state update from its summed pre-activations (B, 4H), in nn.LSTM's (i, f, g, o) order.

    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')        (see charrnn/reference.py)
    """
    sigmoids = torch.sigmoid(gates)  # (B, 4H); the g block is not used
    i, f, _, o = sigmoids.chunk(4, dim=1)  # (B, H) each
    g = torch.tanh(gates.chunk(4, dim=1)[2])  # (B, H)
    c = torch.addcmul(f * c, i, g)
    return o * torch.tanh(c), c


def _first_layer(
    input_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer 0's recurrence over T steps: input gates (B, T, 4H), h and c (B, H) -> (B, T, H), h, c.

    One (B, H) x (H, 4H) multiply per step; autograd unrolls it for backward.
    """
    outputs = []
    weight_hh_t = weight_hh.t()  # (H, 4H)
    for gates_in in input_gates.unbind(1):  # unbind, not [:, t]: one gradient op for all steps
        h, c = lstm_update(torch.addmm(gates_in, h, weight_hh_t), c)  # (B, 4H) -> (B, H) each
        outputs.append(h)
    return torch.stack(outputs, dim=1), h, c


def detach(state: State) -> State:
    """The same state, cut from the graph that produced it (truncated BPTT between windows)."""
    return state[0].detach(), state[1].detach()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
