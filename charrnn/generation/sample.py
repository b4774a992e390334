"""Text generation: prime the state, then draw one character per step with the state carried.

Each new character costs one single-step forward pass (O(1) in the length of the text so far):
the LSTM state already summarises everything before it. N samples are drawn as one batch of N
rows (one forward per step for all of them).

Reproducibility contract: sample i of a batch drawn with seed S uses its own random generator
seeded with S + i, so it is the same text as a single sample drawn with seed S + i (exactly so
in float64; in float32 a batched matrix multiply may round differently in the last bit, which
can flip a draw that lands on a probability boundary).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from charrnn.config import SampleConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.stepper import Stepper


@dataclass(frozen=True)
class Sampling:
    """How the next character is chosen from the logits. Defaults live in ``SampleConfig``."""

    temperature: float = SampleConfig.temperature  # divides the logits
    top_k: int | None = SampleConfig.top_k  # keep only the k most likely characters
    top_p: float | None = SampleConfig.top_p  # keep the smallest set whose probability reaches p
    greedy: bool = SampleConfig.greedy  # always the most likely character (no randomness)

    def check(self) -> None:
        """Raise CharRNNError for values that cannot be sampled with."""
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise CharRNNError(f"temperature must be a positive finite number, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise CharRNNError(f"top-k must be 1 or more, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise CharRNNError(f"top-p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """(N, V) logits with every character outside the top-k / top-p set set to -inf.

    Top-k keeps exactly k characters per row, even when several tie at the k-th value (the
    tied ones ``torch.topk`` picks). Top-p keeps, per row, the most likely characters in order
    until their probabilities add up to at least p (the smallest such set); the most likely
    character always stays.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        best = torch.topk(logits, top_k, dim=-1).indices  # (N, k)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, best, True)  # (N, V)
        logits = logits.masked_fill(~keep, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (N, V) each
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the better ones
        drop_sorted = mass_before >= top_p  # the set had already reached p without this one
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def next_ids(
    logits: torch.Tensor, sampling: Sampling | Sequence[Sampling], generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One id per row: (N, V) logits -> (N,), row i drawn with ``generators[i]``.

    ``sampling`` is one setting for every row, or one per row (the server's streams each have
    their own); rows that share a setting are drawn together.
    """
    if isinstance(sampling, Sampling):
        return _draw(logits, sampling, generators)
    rows_of: dict[Sampling, list[int]] = {}
    for row, setting in enumerate(sampling):
        rows_of.setdefault(setting, []).append(row)
    if len(rows_of) == 1:
        return _draw(logits, sampling[0], generators)
    ids = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for setting, rows in rows_of.items():
        index = torch.tensor(rows, device=logits.device)
        ids[index] = _draw(logits[index], setting, [generators[row] for row in rows])
    return ids


def _draw(logits: torch.Tensor, sampling: Sampling, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``next_ids`` for rows that share one setting.

    The row maximum is subtracted before dividing by the temperature, so a tiny temperature
    gives huge negative numbers (probabilities of 0) rather than inf - inf = NaN.
    """
    if sampling.greedy:
        return logits.argmax(dim=-1)
    scaled = (logits.float() - logits.max(dim=-1, keepdim=True).values) / sampling.temperature  # (N, V)
    # Unnormalised probabilities: every value is in [0, 1] (the best is exp(0) = 1), and the
    # draw below scales by the row's total instead of dividing every entry by it.
    weights = filter_logits(scaled, sampling.top_k, sampling.top_p).exp()  # (N, V)
    uniforms = [torch.rand(1, generator=g, device=logits.device) for g in generators]
    uniforms = uniforms[0] if len(uniforms) == 1 else torch.cat(uniforms)  # (N,)
    # Inverse-CDF draw: the first id whose cumulative weight exceeds uniform x the row's total.
    cumulative = weights.cumsum(dim=-1)  # (N, V)
    return (cumulative <= uniforms[:, None] * cumulative[:, -1:]).sum(dim=-1)  # (N,)


class StopWatch:
    """Cuts one sample just before the leftmost place where any stop text occurs in it.

    Shown text must never be taken back, so the end of the sample that might still become a
    stop text is held back. A stop found at position i is acted on only once no other stop can
    still complete at a position before i: with stops ["abcd", "bc"], "abc" waits for one more
    character, since "abcd" would end the sample earlier.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [stop for stop in stops if stop]
        self.pending = ""  # generated text not shown yet
        self.stopped = False

    def _match(self) -> int | None:
        """Position of the leftmost stop text in ``pending``, if any."""
        return min((i for stop in self.stops if (i := self.pending.find(stop)) >= 0), default=None)

    def _open_before(self, end: int) -> int:
        """The first position before ``end`` where a stop text has begun and may still complete
        (``pending`` from there is a proper prefix of one); ``end`` if there is none."""
        for start in range(end):
            rest = self.pending[start:]
            if any(len(stop) > len(rest) and stop.startswith(rest) for stop in self.stops):
                return start
        return end

    def feed(self, character: str) -> str:
        """Take the next character; return the text that can safely be shown now."""
        if not self.stops:
            return character
        self.pending += character
        match = self._match()
        end = len(self.pending) if match is None else match
        hold = self._open_before(end)
        if match is not None and hold == match:  # nothing earlier can still complete
            self.stopped = True
            shown, self.pending = self.pending[:match], ""
            return shown
        shown, self.pending = self.pending[:hold], self.pending[hold:]
        return shown

    def flush(self) -> str:
        """The held-back text once the sample has reached its length (cut at a stop in it)."""
        match = self._match()
        shown, self.pending = self.pending[:match], ""
        return shown


def stream_samples(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    length: int,
    sampling: Sampling = Sampling(),
    *,
    seed: int | None = None,
    num_samples: int = 1,
    stop: Sequence[str] = (),
    fast: bool = True,
) -> Iterator[tuple[int, str]]:
    """Return an iterator of (sample index, text piece) as the samples grow, in order per sample.

    Each sample continues ``prime`` (which is not repeated in the pieces) for at most ``length``
    characters. ``stop`` (one str, or several) ends a sample just before the leftmost place where
    any of them occurs in its generated text; the prime is not searched, so a stop text that
    begins in the prime and ends in the sample does not count. Bad arguments (unknown prime
    characters, a non-positive temperature, a seed out of range, ...) raise here, before any
    text. Sample i uses seed ``seed + i``, which must fit in 0 .. 2**64 - 1 (what
    ``torch.Generator.manual_seed`` takes); ``seed=None`` draws a random seed. ``fast=False``
    runs every step through ``CharRNN.forward`` (nn.LSTM) instead of ``Stepper``: the slow
    reference the fast path is tested against.
    """
    sampling.check()
    if length < 0:
        raise CharRNNError(f"length must be 0 or more, got {length}")
    if num_samples < 1:
        raise CharRNNError(f"the number of samples must be 1 or more, got {num_samples}")
    max_seed = 2**64 - num_samples  # sample i uses seed + i, at most 2**64 - 1
    if seed is not None and not (isinstance(seed, int) and 0 <= seed <= max_seed):
        several = f" for {num_samples} samples (sample i uses seed + i)" if num_samples > 1 else ""
        raise CharRNNError(f"seed must be an integer from 0 to {max_seed}{several}, got {seed!r}")
    if isinstance(stop, str):  # one stop text, not a sequence of one-character stops
        stop = [stop]
    prime_ids = vocab.encode(prime, what="prime")
    device = model.head.weight.device
    base_seed = secrets.randbits(62) if seed is None else seed
    generators = [torch.Generator(device=device).manual_seed(base_seed + i) for i in range(num_samples)]
    prime_tensor = torch.from_numpy(prime_ids).to(device).view(1, -1)  # (1, P)
    return _pieces(model, vocab, prime_tensor, length, sampling, generators, stop, fast)


# As a decorator (not a `with` block) inference mode is switched on only while the generator
# runs, and off again each time it hands a piece back to the caller.
@torch.inference_mode()
def _pieces(
    model: CharRNN,
    vocab: Vocab,
    prime_ids: torch.Tensor,
    length: int,
    sampling: Sampling,
    generators: list[torch.Generator],
    stop: Sequence[str],
    fast: bool,
) -> Iterator[tuple[int, str]]:
    num_samples = len(generators)
    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batch_size=1)
        if prime_ids.shape[1]:
            logits, state = model(prime_ids, state)  # (P, V)
            logits = logits[-1:]  # (1, V): the prediction after the prime's last character
        else:
            logits = model.logits_from_state(state)  # (1, V)
        # Every sample starts from the same primed state: compute it once, copy it N times.
        logits = logits.expand(num_samples, -1)  # (N, V)
        state = tuple(t.repeat(1, num_samples, 1) for t in state)  # (L, N, H) each
        watches = [StopWatch(stop) for _ in range(num_samples)]
        # One-character steps go through the stepper: the same equations, one multiply per layer.
        step = Stepper(model).step if fast else lambda ids, state: model(ids.view(-1, 1), state)
        for position in range(length):
            ids = next_ids(logits, sampling, generators)  # (N,)
            for row, id_ in enumerate(ids.tolist()):
                if not watches[row].stopped:
                    piece = watches[row].feed(vocab.chars[id_])
                    if piece:
                        yield row, piece
            if all(watch.stopped for watch in watches):
                return
            if position + 1 < length:  # the last character needs no prediction after it
                logits, state = step(ids, state)  # (N, V)
        for row, watch in enumerate(watches):
            tail = watch.flush()
            if tail:
                yield row, tail
    finally:
        model.train(was_training)


def collect(pieces: Iterator[tuple[int, str]], num_samples: int) -> list[str]:
    """Whole samples from the (sample index, piece) stream of ``stream_samples``."""
    texts = [""] * num_samples
    for row, piece in pieces:
        texts[row] += piece
    return texts
