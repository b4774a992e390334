"""The character-level language model: an LSTM (or a GRU, or a plain RNN) over one-hot characters.

    ids (B, T) ─► one-hot (B, T, V) ─► LSTM × L ─► (B, T, H) ─► reshape (B·T, H) ─► head ─► (B·T, V)

The head is a Linear layer trained with CrossEntropyLoss, or for a large alphabet an adaptive
softmax (charrnn/core/heads.py).

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
the other layers still go through the fused kernel. Both give the same logits (tests/core/test_model.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ModelConfig
from charrnn.core.cells import State, get_cell
from charrnn.core.heads import head_loss, make_head
from charrnn.core.vocab import one_hot

# Vocabularies larger than this take the row-lookup input path. Measured with
# benchmarks/large_vocab.py on a 2-core CPU (2 x 256, batch 32, seq 100): the one-hot path is
# faster up to about 500 characters, the lookup path beyond (1.3x at 1,024, 2.3x at 4,096).
ONE_HOT_MAX_VOCAB = 512


class CharRNN(nn.Module):
    """One-hot characters in, next-character logits out."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config
        self.cell = get_cell(config.cell)
        self.rnn = self.cell.module(
            input_size=vocab_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # The module drops out between its layers; the last layer's output is dropped below.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        self.head = make_head(config.head, config.hidden_size, vocab_size)

    @property
    def device(self) -> torch.device:
        return self.rnn.weight_hh_l0.device

    @property
    def dtype(self) -> torch.dtype:
        return self.rnn.weight_hh_l0.dtype

    @property
    def input_path(self) -> str:
        """How the one-hot inputs are applied (see the module docstring): set by the vocabulary
        size alone. Not a weight: either path runs on the same parameters."""
        return "one-hot" if self.vocab_size <= ONE_HOT_MAX_VOCAB else "lookup"

    def init_state(self, batch_size: int) -> State:
        """The zero state for ``batch_size`` streams, on the model's device and dtype."""
        weight = self.rnn.weight_hh_l0
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)  # (L, B, H)
        return tuple(weight.new_zeros(shape) for _ in range(self.cell.state_size))

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        input_path: str | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """ids (B, T) of any integer dtype -> logits (B·T, V) and the state after the last step.

        With ``targets`` (B, T) it returns the mean loss (nats per character, float32) in place
        of the logits: training's path, where the adaptive head skips what the loss does not
        need. A missing ``state`` means the zero state; ``input_path`` overrides the model's own
        (``charrnn explain`` shows the one-hot tensor even for a large vocabulary).
        """
        ids = as_index(ids)  # the vocabulary stores ids compactly (uint8, int16); torch indexes with int64
        batch_size, seq_len = ids.shape
        if state is None:
            state = self.init_state(batch_size)
        dropped = self._dropped_recurrent_weights()
        if (input_path or self.input_path) == "one-hot":
            inputs = one_hot(ids, self.vocab_size, self.dtype)  # (B, T, V)
            module_state = self.cell.to_module(state)
            if dropped:
                outputs, state = torch.func.functional_call(self.rnn, dropped, (inputs, module_state))
            else:
                outputs, state = self.rnn(inputs, module_state)  # (B, T, H); state (L, B, H) each
            state = self.cell.from_module(state)
        else:
            outputs, state = self._rnn_from_lookup(ids, state, dropped)
        outputs = self.output_dropout(outputs)
        # Every time step is an independent example for the output layer, so fold time into
        # the batch: one (B·T, H) x (H, V) matrix multiply, and logits in the (N, V) layout
        # that CrossEntropyLoss takes with targets reshaped to (N,).
        outputs = outputs.reshape(batch_size * seq_len, self.config.hidden_size)  # (B·T, H)
        if targets is not None:
            return head_loss(self.head, outputs, as_index(targets).reshape(-1)), state  # targets (B·T,)
        logits = self.head(outputs)  # (B·T, V)
        return logits, state

    def _dropped_recurrent_weights(self) -> dict[str, torch.Tensor]:
        """Weight drop (DropConnect on each layer's W_hh, as in AWD-LSTM) while training: one mask per
        window, shared by every stream and time step, so it regularises the recurrence itself
        without the per-step noise that dropout on h would add. Empty in eval mode or when off."""
        if not self.training or self.config.weight_drop == 0:
            return {}
        names = [f"weight_hh_l{layer}" for layer in range(self.config.num_layers)]
        return {name: F.dropout(getattr(self.rnn, name), self.config.weight_drop, True) for name in names}

    def _rnn_from_lookup(
        self, ids: torch.Tensor, state: State, dropped: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, State]:
        """The same as ``self.rnn(one_hot(ids), state)``, without materialising the one-hot tensor;
        ``dropped`` replaces recurrent weights by name (weight drop)."""
        batch_size, seq_len = ids.shape
        rnn, cell = self.rnn, self.cell

        def weight(name: str) -> torch.Tensor:
            return dropped.get(name, getattr(rnn, name))

        # one_hot(ids) @ W_ihᵀ picks column ids[b, t] of W_ih (G·H, V) for every position.
        picked = rnn.weight_ih_l0.index_select(1, ids.reshape(-1))  # (G·H, B·T)
        input_gates = picked.t() + cell.input_bias(rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B·T, G·H)
        input_gates = input_gates.view(batch_size, seq_len, -1)  # (B, T, G·H)
        first = tuple(t[0] for t in state)  # layer 0's state, (B, H) each
        outputs, first = self._first_layer(input_gates, first, weight("weight_hh_l0"))  # (B, T, H)
        if rnn.num_layers == 1:
            return outputs, tuple(t[None] for t in first)
        outputs = F.dropout(outputs, rnn.dropout, self.training)  # what the module does between layers
        upper_weights = [
            weight(f"{name}_l{layer}")
            for layer in range(1, rnn.num_layers)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        # The fused kernel behind the module, called on layers 1..L-1 only.
        upper_state = tuple(t[1:] for t in state)  # (L-1, B, H) each
        outputs, *upper = cell.fused(
            outputs,
            cell.to_module(upper_state),
            upper_weights,
            True,
            rnn.num_layers - 1,
            rnn.dropout,
            self.training,
            False,
            True,
        )  # (B, T, H); then the upper layers' state, (L-1, B, H) each
        return outputs, tuple(torch.cat([low[None], high]) for low, high in zip(first, upper, strict=True))

    def _first_layer(
        self, input_gates: torch.Tensor, state: State, weight_hh: torch.Tensor
    ) -> tuple[torch.Tensor, State]:
        """Layer 0's recurrence over T steps: input gates (B, T, G·H), state (B, H) each -> (B, T, H), state.

        One (B, H) x (H, G·H) multiply per step; autograd unrolls it for backward.
        """
        weight_hh_t = weight_hh.t()  # (H, G·H)
        bias_hh = self.rnn.bias_hh_l0

        def hidden(h: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
            return torch.addmm(addend, h, weight_hh_t)  # (B, G·H)

        outputs = []
        for gates_in in input_gates.unbind(1):  # unbind, not [:, t]: one gradient op for all steps
            state = self.cell.layer_step(gates_in, state, hidden, bias_hh)  # (B, H) each
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state

    def logits_from_state(self, state: State) -> torch.Tensor:
        """Next-character logits (B, V) read from the top layer's h in ``state``.

        Generation uses this for an empty prime: from the zero state the logits are the output
        layer's bias, which training pulls towards the text's character frequencies.
        """
        return self.head(state[0][-1])  # (B, H) -> (B, V)


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
