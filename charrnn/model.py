"""The character-level LSTM language model.

    ids (B, T) ─► one-hot (B, T, V) ─► LSTM × L ─► (B, T, H) ─► reshape (B·T, H) ─► Linear ─► (B·T, V)

The recurrent state (h, c) goes in and comes out of ``forward`` explicitly: the caller decides when
to carry it (consecutive windows, generation) and when to cut its gradient history (``detach``).
"""

from __future__ import annotations

import torch
from torch import nn

from charrnn.config import ModelConfig
from charrnn.vocab import one_hot

# (h, c), each (L, B, H).
State = tuple[torch.Tensor, torch.Tensor]


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
        inputs = one_hot(ids, self.vocab_size, self.head.weight.dtype)  # (B, T, V)
        outputs, state = self.lstm(inputs, state)  # (B, T, H); h, c each (L, B, H)
        outputs = self.output_dropout(outputs)
        # Every time step is an independent example for the output layer, so fold time into
        # the batch: one (B·T, H) x (H, V) matrix multiply, and logits in the (N, V) layout
        # that CrossEntropyLoss takes with targets reshaped to (N,).
        outputs = outputs.reshape(batch_size * seq_len, self.config.hidden_size)  # (B·T, H)
        logits = self.head(outputs)  # (B·T, V)
        return logits, state

    def logits_from_state(self, state: State) -> torch.Tensor:
        """Next-character logits (B, V) read from the top layer's h in ``state``.

        Generation uses this for an empty prime: from the zero state the logits are the output
        layer's bias, which training pulls towards the text's character frequencies.
        """
        return self.head(state[0][-1])  # (B, H) -> (B, V)


def detach(state: State) -> State:
    """The same state, cut from the graph that produced it (truncated BPTT between windows)."""
    return state[0].detach(), state[1].detach()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
