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
from typing import Any

import torch

from charrnn.config import SampleConfig
from charrnn.core.cells import State
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.draw import UniformBlocks, draw_uniforms, draw_with_uniforms
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.stepper import Stepper
from charrnn.threads import ThreadTuner, timed_step

AnyStepper = Stepper | CompiledSteps


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
    """``next_ids`` for rows that share one setting."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    uniforms = draw_uniforms(generators, logits.device)
    return draw_with_uniforms(logits, uniforms, sampling.temperature, sampling.top_k, sampling.top_p)


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
    runtime: StepRuntime | None = None,
    fast: bool = True,
) -> Iterator[tuple[int, str]]:
    """Return an iterator of (sample index, text piece) as the samples grow, in order per sample.

    Each sample continues ``prime`` (which is not repeated in the pieces) for at most ``length``
    characters. ``stop`` (one str, or several) ends a sample just before the leftmost place where
    any of them occurs in its generated text; the prime is not searched, so a stop text that
    begins in the prime and ends in the sample does not count. Bad arguments (unknown prime
    characters, a non-positive temperature, a seed out of range, ...) raise here, before any
    text. Sample i uses seed ``seed + i``, which must fit in 0 .. 2**64 - 1 (what
    ``torch.Generator.manual_seed`` takes); ``seed=None`` draws a random seed. ``runtime`` picks
    the one-character step (compiled, int8; generation/runtime.py); without it, the eager float32
    ``Stepper``. ``fast=False`` runs every step through ``CharRNN.forward``
    (nn.LSTM) instead: the slow reference the fast path is tested against.
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
    device = model.device
    base_seed = secrets.randbits(62) if seed is None else seed
    generators = [torch.Generator(device=device).manual_seed(base_seed + i) for i in range(num_samples)]
    prime_tensor = torch.from_numpy(prime_ids).to(device).view(1, -1)  # (1, P)
    if not fast:
        stepper = _Reference(model)
    elif runtime is None:
        stepper = Stepper(model)
    else:
        stepper = runtime.stepper(num_samples, work=length * num_samples)
    threads = None if runtime is None else runtime.threads
    return _pieces(model, vocab, prime_tensor, length, sampling, generators, stop, stepper, threads)


def _pieces(*args: Any) -> Iterator[tuple[int, str]]:
    """``_steps``' pieces one by one: the inference-mode switch below happens once per step, not per piece."""
    for pieces in _steps(*args):
        yield from pieces


# As a decorator (not a `with` block) inference mode is switched on only while the generator
# runs, and off again each time it hands a step's pieces back to the caller.
@torch.inference_mode()
def _steps(
    model: CharRNN,
    vocab: Vocab,
    prime_ids: torch.Tensor,
    length: int,
    sampling: Sampling,
    generators: list[torch.Generator],
    stop: Sequence[str],
    stepper: AnyStepper,
    threads: ThreadTuner | None,
) -> Iterator[list[tuple[int, str]]]:
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
        # A compiled step draws the next ids itself, from the same uniform numbers the eager draw
        # would take from each generator: plain temperature sampling only.
        plain = not (sampling.greedy or sampling.top_k or sampling.top_p)
        fused = plain and isinstance(stepper, CompiledSteps) and stepper.serves(num_samples)
        if fused:
            uniforms = UniformBlocks(generators)
        if length:
            ids = next_ids(logits, sampling, generators)  # (N,)
        for position in range(length):
            chars = [vocab.chars[id_] for id_ in ids.tolist()]
            if not stop:  # nothing to watch for: every character is shown at once
                yield list(enumerate(chars))
            else:
                yield [
                    (row, piece)
                    for row, watch in enumerate(watches)
                    if not watch.stopped and (piece := watch.feed(chars[row]))
                ]
                if all(watch.stopped for watch in watches):
                    return
            if position + 1 == length:  # the last character needs no prediction after it
                break
            with timed_step(threads, num_samples):  # the thread count that steps fastest (charrnn/threads.py)
                if fused:
                    ids, logits, state = stepper.step_and_draw(ids, state, uniforms.take(), sampling.temperature)
                else:
                    logits, state = stepper.step(ids, state)  # (N, V)
                    ids = next_ids(logits, sampling, generators)  # (N,)
        yield [(row, tail) for row, watch in enumerate(watches) if (tail := watch.flush())]
    finally:
        model.train(was_training)


class _Reference:
    """The slow reference step: ``CharRNN.forward`` (nn.LSTM) on one character."""

    def __init__(self, model: CharRNN):
        self.model = model

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.model(ids.view(-1, 1), state)


def collect(pieces: Iterator[tuple[int, str]], num_samples: int) -> list[str]:
    """Whole samples from the (sample index, piece) stream of ``stream_samples``."""
    texts = [""] * num_samples
    for row, piece in pieces:
        texts[row] += piece
    return texts
