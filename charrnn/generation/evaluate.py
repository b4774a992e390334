"""Loss of a model over a whole split or text: validation and `charrnn evaluate` measure alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.core.data import StreamBatches
from charrnn.core.model import CharRNN
from charrnn.core.vocab import UnknownCharactersError, Vocab
from charrnn.errors import CharRNNError


@torch.inference_mode()
def loss_sum(model: CharRNN, batches: StreamBatches) -> tuple[float, int]:
    """Summed cross-entropy (nats) over every window of ``batches``, and the characters scored.

    The state is carried from window to window, as in training, so each character is scored
    with all of its stream's preceding text as context. Dropout is off while scoring.
    """
    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batches.batch_size)
        window_sums = []  # kept on the device and read once at the end: no per-window GPU wait
        for index in range(batches.num_windows):
            x, y = batches.window(index)  # (B, T) each
            logits, state = model(x, state)  # (B·T, V)
            window_sums.append(F.cross_entropy(logits.float(), y.reshape(-1), reduction="sum"))  # y: (B·T,)
    finally:
        model.train(was_training)
    # Summed in float64 on the CPU (MPS has no float64 tensors).
    total = torch.stack(window_sums).cpu().double().sum().item()
    return total, batches.num_chars


def mean_loss(model: CharRNN, batches: StreamBatches) -> float:
    """Mean cross-entropy in nats per character over every window of ``batches``."""
    total, count = loss_sum(model, batches)
    return total / count


@dataclass(frozen=True)
class Evaluation:
    """How well a model predicts a text."""

    nats_per_char: float  # mean cross-entropy per scored character
    chars_scored: int  # characters predicted (all but the first of each stream)
    streams: int  # contiguous streams the text was scored in (state carried along each)
    unknown: dict[str, int]  # characters outside the vocabulary, removed before scoring, and counts

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_char)


def evaluate_text(
    model: CharRNN, vocab: Vocab, text: str, batch_size: int, seq_len: int, strict: bool = False
) -> Evaluation:
    """Cross-entropy of ``model`` over all of ``text``, laid out as ``batch_size`` streams.

    With the trainer's batch size and the validation split's text, this is exactly the
    validation loss the trainer reports; ``batch_size=1`` scores every character with all of
    the text before it as context. Characters outside the vocabulary are counted and removed
    (or, with ``strict``, raise UnknownCharactersError).
    """
    kept, unknown_chars = vocab.without_unknown(text)
    if unknown_chars and strict:
        raise UnknownCharactersError(unknown_chars, len(vocab))
    ids = vocab.encode(kept)
    if len(ids) < 2:
        raise CharRNNError("the text needs at least 2 characters the model knows to be scored")
    streams = min(batch_size, len(ids) - 1)  # a short text gets fewer streams, never none
    batches = StreamBatches(ids, streams, seq_len, full_windows=False, device=model.head.weight.device)
    return Evaluation(
        nats_per_char=mean_loss(model, batches),
        chars_scored=batches.num_chars,
        streams=streams,
        unknown={char: text.count(char) for char in unknown_chars},
    )
