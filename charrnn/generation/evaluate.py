"""Loss of a model over a whole split or text: validation and `charrnn evaluate` measure alike."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.core.data import StreamBatches
from charrnn.core.model import CharRNN, detach
from charrnn.core.vocab import UnknownCharactersError, Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.decoder import MAX_LOGPROBS, READ_CHARS, CharScore, Decoder, score_stepwise
from charrnn.generation.stepper import Stepper
from charrnn.threads import ThreadTuner, timed_step


@torch.inference_mode()
def loss_sum(model: CharRNN, batches: StreamBatches, threads: ThreadTuner | None = None) -> tuple[float, int]:
    """Summed cross-entropy (nats) over every window of ``batches``, and the characters scored.

    The state is carried from window to window, as in training, so each character is scored
    with all of its stream's preceding text as context. Dropout is off while scoring.
    ``threads``: time each window to choose the CPU thread count (charrnn/threads.py).
    """
    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batches.batch_size)
        window_sums = []  # kept on the device and read once at the end: no per-window GPU wait
        for index in range(batches.num_windows):
            x, y = batches.window(index)  # (B, T) each
            with timed_step(threads):
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
        return math.exp(self.nats_per_char) if self.nats_per_char < 700 else math.inf


def evaluate_text(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    batch_size: int,
    seq_len: int,
    strict: bool = False,
    stepper: Stepper | CompiledSteps | None = None,
    threads: ThreadTuner | None = None,
) -> Evaluation:
    """Cross-entropy of ``model`` over all of ``text``, laid out as ``batch_size`` streams.

    With the trainer's batch size and the validation split's text, this is exactly the
    validation loss the trainer reports; ``batch_size=1`` scores every character with all of
    the text before it as context. Characters outside the vocabulary are counted and removed
    (or, with ``strict``, raise UnknownCharactersError). ``stepper``: score through it (say,
    an ``Int8Stepper``) rather than the model's forward. ``threads``: see ``loss_sum``.
    """
    ids, unknown = _scored_ids(vocab, text, strict)
    streams = min(batch_size, len(ids) - 1)  # a short text gets fewer streams, never none
    batches = StreamBatches(ids, streams, seq_len, full_windows=False, device=model.device)
    if stepper is None:
        total, count = loss_sum(model, batches, threads)
    else:
        total, count = score_stepwise(Decoder(model, vocab, stepper, threads), batches)
    return Evaluation(total / count, count, streams, unknown)


def evaluate_dynamic(
    model: CharRNN, vocab: Vocab, text: str, seq_len: int, lr: float, decay: float, strict: bool = False
) -> Evaluation:
    """Dynamic evaluation (Krause et al., 2018): the text is read once, in one stream, ``seq_len``
    characters at a time; each segment is scored first and then learned from, by one SGD step
    that also pulls every weight back toward its trained value by ``decay``:

        score s_i with θ_i;   θ_{i+1} = θ_i - lr · ∇loss(s_i) + decay · (θ_0 - θ_i)

    so a character is never predicted by weights that have seen it. ``model`` is left unchanged
    (a copy adapts). With ``lr = decay = 0`` this is ``evaluate_text`` with one stream.
    """
    ids, unknown = _scored_ids(vocab, text, strict)
    adapted = copy.deepcopy(model).eval()  # eval: no dropout while scoring; gradients still flow
    params = list(adapted.parameters())
    trained = [p.detach().clone() for p in params]  # θ_0
    batches = StreamBatches(ids, 1, seq_len, full_windows=False, device=model.device)
    state, segment_sums = adapted.init_state(1), []
    with torch.enable_grad():
        for index in range(batches.num_windows):
            x, y = batches.window(index)  # (1, T) each
            logits, state = adapted(x, state)  # (T, V)
            loss_sum = F.cross_entropy(logits.float(), y.reshape(-1), reduction="sum")
            if not torch.isfinite(loss_sum):
                raise CharRNNError(
                    f"dynamic evaluation diverged at character {index * seq_len:,} with lr {lr:g}: "
                    "give a smaller --dynamic-lr (0.1 was measured best, docs/results.md)"
                )
            segment_sums.append(loss_sum.detach())
            adapted.zero_grad(set_to_none=True)
            (loss_sum / y.numel()).backward()
            with torch.no_grad():
                for param, start in zip(params, trained, strict=True):
                    param.sub_(param.grad, alpha=lr).add_(start - param, alpha=decay)
            state = detach(state)
    total = torch.stack(segment_sums).cpu().double().sum().item()
    return Evaluation(total / batches.num_chars, batches.num_chars, 1, unknown)


@torch.inference_mode()
def score_chars(model: CharRNN, vocab: Vocab, text: str, top: int = 0) -> list[CharScore]:
    """Each character of ``text`` after the first, scored given all of the text before it (one
    stream from the zero state, as ``evaluate_text`` with ``batch_size=1``, so minus their sum is
    its total): its log-probability and the ``top`` most likely characters in its place.

    Characters outside the vocabulary raise ``UnknownCharactersError``. The first character has
    no score: nothing predicts it.
    """
    if not 0 <= top <= MAX_LOGPROBS:
        raise ValueError(f"top must be from 0 to {MAX_LOGPROBS}, got {top}")
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(vocab.encode(text, what="text")).to(model.device)  # (P,)
        state, pieces = model.init_state(1), []
        for start in range(0, len(ids) - 1, READ_CHARS):
            logits, state = model(ids[start : min(start + READ_CHARS, len(ids) - 1)].view(1, -1), state)  # (P', V)
            pieces.append(torch.log_softmax(logits.double(), dim=-1).cpu())
    finally:
        model.train(was_training)
    if not pieces:
        return []
    log_probs = torch.cat(pieces)  # (P - 1, V): row t predicts character t + 1
    targets = ids[1:].cpu().long()
    chosen = log_probs.gather(1, targets.view(-1, 1)).squeeze(1).tolist()
    best_values, best_ids = torch.topk(log_probs, min(top, len(vocab)), dim=-1)  # (P - 1, top)
    chars = vocab.chars
    return [
        CharScore(chars[target], value, tuple((chars[j], v) for j, v in zip(alt_ids, alt_values, strict=True)))
        for target, value, alt_ids, alt_values in zip(
            targets.tolist(), chosen, best_ids.tolist(), best_values.tolist(), strict=True
        )
    ]


# More of the text than this outside the vocabulary: the model was trained on another alphabet,
# and a score of what is left would say little about the text.
MOST_UNKNOWN = 0.5


def _scored_ids(vocab: Vocab, text: str, strict: bool) -> tuple[np.ndarray, dict[str, int]]:
    """The ids of ``text`` less its characters outside the vocabulary, and those characters' counts."""
    kept, unknown_chars = vocab.without_unknown(text)
    if unknown_chars and strict:
        raise UnknownCharactersError(unknown_chars, len(vocab))
    if len(text) - len(kept) > MOST_UNKNOWN * len(text):
        raise CharRNNError(
            f"{1 - len(kept) / len(text):.0%} of the text is outside the model's {len(vocab)}-character vocabulary: "
            "score it with a model trained on text like it"
        )
    ids = vocab.encode(kept)
    if len(ids) < 2:
        raise CharRNNError("the text needs at least 2 characters the model knows to be scored")
    return ids, {char: text.count(char) for char in unknown_chars}
