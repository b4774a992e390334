"""Text generation from a prime: N samples as N rows of one decoder (generation/decoder.py).

Each new character costs one single-step forward pass (O(1) in the length of the text so far):
the LSTM state already summarises everything before it. N samples are drawn as one batch of N
rows (one forward per step for all of them).

Reproducibility contract: sample i of a batch drawn with seed S uses its own random generator
seeded with S + i, so it is the same text as a single sample drawn with seed S + i (exactly so
in float64; in float32 a batched matrix multiply may round differently in the last bit, which
can flip a draw that lands on a probability boundary).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from charrnn.config import MAX_SAMPLE_SEED
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.beam import Beam, beam_search
from charrnn.generation.decoder import MAX_LOGPROBS, Decoder, Piece, ReferenceStep, Row
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.stepper import Stepper
from charrnn.sampling import Sampling


def check_job(sampling: Sampling, length: int, num_samples: int, seed: int | None, logprobs: int | None) -> None:
    """Raise CharRNNError for what no sample can be drawn with (before any text)."""
    try:
        sampling.check()
    except ValueError as exc:
        raise CharRNNError(str(exc)) from None
    if length < 0:
        raise CharRNNError(f"length must be 0 or more, got {length}")
    if num_samples < 1:
        raise CharRNNError(f"the number of samples must be 1 or more, got {num_samples}")
    max_seed = MAX_SAMPLE_SEED + 1 - num_samples  # sample i uses seed + i
    if seed is not None and not (isinstance(seed, int) and 0 <= seed <= max_seed):
        several = f" for {num_samples} samples (sample i uses seed + i)" if num_samples > 1 else ""
        raise CharRNNError(f"seed must be an integer from 0 to {max_seed}{several}, got {seed!r}")
    if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
        raise CharRNNError(f"logprobs must be from 0 to {MAX_LOGPROBS}, got {logprobs}")


def sample_decoder(
    model: CharRNN, vocab: Vocab, runtime: StepRuntime | None, streams: int, work: int, fast: bool = True
) -> Decoder:
    """A decoder on ``runtime``'s step for ``streams`` rows and ``work`` characters (the eager float32 ``Stepper``
    without a runtime; ``fast=False``: nn.LSTM itself, the slow reference the fast path is tested against)."""
    if not fast:
        return Decoder(model, vocab, ReferenceStep(model))  # type: ignore[arg-type]
    if runtime is None:
        return Decoder(model, vocab, Stepper(model))
    return Decoder(model, vocab, runtime.stepper(streams, work=work), runtime.threads)


def stream_steps(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    length: int,
    sampling: Sampling = Sampling(),
    *,
    seed: int | None = None,
    num_samples: int = 1,
    stop: str | Sequence[str] = (),
    logprobs: int | None = None,
    runtime: StepRuntime | None = None,
    fast: bool = True,
) -> Iterator[Piece]:
    """The decoder's pieces as the samples grow, a list per step (``Piece.row.tag`` is the sample index).

    Each sample continues ``prime`` (which is not repeated in the pieces) for at most ``length``
    characters. ``stop`` (one str, or several) ends a sample just before the leftmost place where
    any of them occurs in its generated text; the prime is not searched. Bad arguments (unknown
    prime characters, a setting out of its bounds, a seed out of range, ...) raise here, before
    any text. Sample i uses seed ``seed + i``, which must fit in 0 .. 2**64 - 1; ``seed=None``
    draws one. ``logprobs=k``: each piece carries its characters' scores and top k alternatives.
    ``runtime`` picks the one-character step (compiled, int8; generation/runtime.py).
    """
    check_job(sampling, length, num_samples, seed, logprobs)
    base_seed = secrets.randbits(62) if seed is None else seed
    stops = [stop] if isinstance(stop, str) else list(stop)
    rows = [Row(sampling, base_seed + i, length, stops, logprobs, tag=i) for i in range(num_samples)]
    was_training = model.training
    decoder = sample_decoder(model, vocab, runtime, num_samples, length * num_samples, fast)
    try:
        decoder.add(prime, rows)  # raises for unknown characters, before any text
    finally:
        model.train(was_training)
    return _steps(decoder, length, was_training)


def _steps(decoder: Decoder, length: int, was_training: bool) -> Iterator[list[Piece]]:
    """The decoder's steps, with the model in eval mode only while they run."""
    model = decoder.model
    model.eval()
    try:
        while length and decoder.rows:
            yield decoder.step()
    finally:
        model.train(was_training)


def stream_pieces(*args: Any, **kwargs: Any) -> Iterator[Piece]:
    """``stream_steps``' pieces one by one (its arguments, checked at once)."""
    return (piece for step in stream_steps(*args, **kwargs) for piece in step)


def stream_samples(model: CharRNN, vocab: Vocab, prime: str, length: int, sampling: Sampling = Sampling(), **job):
    """(sample index, text piece) as the samples grow, in order per sample: ``stream_pieces``
    without the scores."""
    return (
        (piece.row.tag, piece.text)
        for piece in stream_pieces(model, vocab, prime, length, sampling, **job)
        if piece.text
    )


def collect_steps(steps: Iterator[list[Piece]], num_samples: int) -> list[str]:
    """Whole samples from ``stream_steps`` (a sample index per row tag)."""
    texts = [""] * num_samples
    for step in steps:
        for piece in step:
            texts[piece.row.tag] += piece.text
    return texts


def collect(pieces: Iterator[tuple[int, str]], num_samples: int) -> list[str]:
    """Whole samples from the (sample index, piece) stream of ``stream_samples``."""
    texts = [""] * num_samples
    for row, piece in pieces:
        texts[row] += piece
    return texts


def most_likely(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    length: int,
    width: int,
    *,
    stop: str | Sequence[str] = (),
    runtime: StepRuntime | None = None,
) -> Beam:
    """Beam search (``decoder.beam_search``): the most likely continuation of ``prime`` it finds."""
    if length < 0:
        raise CharRNNError(f"length must be 0 or more, got {length}")
    if width < 1:
        raise CharRNNError(f"the beam width must be 1 or more, got {width}")
    decoder = sample_decoder(model, vocab, runtime, width, length * width)
    was_training = model.training
    try:
        with torch.inference_mode():
            return beam_search(decoder, prime, length, width, [stop] if isinstance(stop, str) else list(stop))
    finally:
        model.train(was_training)
