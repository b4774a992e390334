"""The decoder: the one loop that reads text into states, steps them and draws characters.

`charrnn generate` and the API (sample.py), chat's session (session.py) and serve's engine
(engine.py) are thin loops over a ``Decoder``; nothing else in charrnn calls a generation step
or a draw (tests/generation/test_decoder.py checks it). A decoder holds a batch of rows, one per
text being generated; row i of every tensor below is ``rows[i]``:

    add(prime, rows)    read a prime once (nn.LSTM, one pass), fork its state into the rows
    step()              one character for every row: read what each drew last (one batched step),
                        draw the next, watch for stop texts and limits, drop the finished
    feed(row, text)     read more text into one row (chat: the person's next line)

A row that has drawn a character has not read it yet ("unread"): the step that reads it is
taken only when the next character is wanted, so a row that reaches its limit never pays for a
step it does not need, and an interrupted row stays consistent with the text shown. Rows that
joined since the last step come last, with the logits their prime left ("fresh").

When every unread row's settings are plain temperature sampling and a compiled step is loaded,
the step draws inside its compiled graph (``step_and_draw``); otherwise the step runs (compiled
or eager) and ``draw.py`` draws. Both take each row's uniform numbers in the same order, so a
seed gives the same text either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from charrnn.core.cells import State
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.draw import Uniforms, clamp_temperature, draw, penalise
from charrnn.generation.stepper import Stepper
from charrnn.generation.stops import StopWatch
from charrnn.sampling import Sampling
from charrnn.threads import ThreadTuner, timed_step

MAX_LOGPROBS = 20  # alternatives per character, as OpenAI's completions API


@dataclass(frozen=True)
class CharScore:
    """A drawn character's log-probability under the model, and the most likely alternatives.

    As OpenAI's completions define ``logprobs``: the model's own distribution, before the
    temperature, the penalties and the filters (so they are what `charrnn evaluate` sums)."""

    char: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # (character, log-probability), the most likely first


@dataclass(eq=False)
class Row:
    """One text being generated: what it was asked for, and where it is."""

    sampling: Sampling
    seed: int  # its uniform numbers come from a generator seeded with this
    limit: int | None = None  # characters to draw at most (None: until the caller stops)
    stops: Sequence[str] = ()
    logprobs: int | None = None  # None: no scores; k: each character's and its top k alternatives
    tag: Any = None  # the caller's: a sample index, a server stream
    count: int = 0  # characters drawn
    finish_reason: str | None = None  # "length" or "stop" once it has ended
    cancelled: bool = False  # set from any thread: the row leaves at the next step
    history: list[int] = field(default_factory=list)  # every id read or drawn (the repetition window)
    drawn_ids: list[int] = field(default_factory=list)  # the ids drawn (the OpenAI penalties count these)
    drawn: np.ndarray | None = None  # (V,) counts of ``drawn_ids``, kept from the first draw that needs them

    def __post_init__(self) -> None:
        self.reseed(self.seed)
        self.watch = StopWatch([self.stops] if isinstance(self.stops, str) else self.stops)
        self.held: list[CharScore] = []  # scores of the characters the stop watch holds back

    def reseed(self, seed: int) -> None:
        """Draw from here on as a row started with ``seed`` would."""
        self.seed, self.uniforms = seed, Uniforms(seed)


@dataclass(frozen=True)
class Piece:
    """What a step produced for one row: text that may be shown, and why the row ended, if it did."""

    row: Row
    text: str
    finish: str | None = None
    scores: tuple[CharScore, ...] = ()  # one per character of ``text``, for a row that asked


class Decoder:
    """A batch of rows generated together by one model and one step (see the module docstring)."""

    def __init__(
        self, model: CharRNN, vocab: Vocab, stepper: Stepper | CompiledSteps, threads: ThreadTuner | None = None
    ):
        self.model, self.vocab, self.stepper, self.threads = model.eval(), vocab, stepper, threads
        self.device = model.device
        self.rows: list[Row] = []
        self.unread = torch.empty(0, dtype=torch.long, device=self.device)  # (K,): rows[:K] drew these
        self.fresh_logits = torch.empty(0, len(vocab), device=self.device)  # (N - K, V): rows[K:]'s prediction
        self.state: State = tuple(t[:, :0] for t in model.init_state(1))  # (L, N, H) each
        self._temperatures: tuple[tuple[float, ...], torch.Tensor] = ((), torch.empty(0))

    # -- rows in and out ------------------------------------------------------------------------

    @torch.inference_mode()
    def add(self, prime: str, rows: Sequence[Row], what: str = "prime") -> None:
        """Read ``prime`` once and start every row of ``rows`` from its state (they join the batch
        at the next step). Unknown characters raise ``UnknownCharactersError`` before anything changes."""
        ids = self._ids(prime, what)
        logits, state = self._read(ids, self.model.init_state(1))  # (1, V); (L, 1, H) each
        for row in rows:
            row.history = ids.tolist()
        self._append(rows, logits.expand(len(rows), -1), tuple(t.expand(-1, len(rows), -1) for t in state))

    @torch.inference_mode()
    def feed(self, row: Row, text: str) -> None:
        """Read ``text`` into ``row`` after what it has drawn: its next draw continues the text."""
        ids = self._ids(text, "prime")
        if not len(ids):
            return
        i = self.rows.index(row)
        state = tuple(t[:, i : i + 1] for t in self.state)
        if i < len(self.unread):  # it drew a character it has not read yet: read it first
            with timed_step(self.threads):
                _, state = self.stepper.step(self.unread[i : i + 1], state)
        logits, state = self._read(ids, state)
        row.history += ids.tolist()
        self._remove([i])
        self._append([row], logits, state)

    def remove(self, row: Row) -> None:
        """Take ``row`` out of the batch now, between steps (``cancelled`` does it at the next step)."""
        self._remove([self.rows.index(row)])

    def _ids(self, text: str, what: str) -> torch.Tensor:
        return torch.from_numpy(self.vocab.encode(text, what=what)).to(self.device)  # (P,)

    def _read(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ids (P,) in one pass from ``state`` (L, 1, H): the logits after the last one (1, V)."""
        if not len(ids):
            return self.model.logits_from_state(state), state
        logits, state = self.model(ids.view(1, -1), state)  # (P, V)
        return logits[-1:], state

    def _append(self, rows: Sequence[Row], logits: torch.Tensor, state: State) -> None:
        self.rows += rows
        self.fresh_logits = torch.cat([self.fresh_logits, logits])
        self.state = tuple(torch.cat([mine, theirs], dim=1) for mine, theirs in zip(self.state, state, strict=True))

    def _remove(self, drop: Sequence[int]) -> None:
        """Take rows out of the batch, by position."""
        keep = [i for i in range(len(self.rows)) if i not in set(drop)]
        unread = len(self.unread)
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.unread = self.unread[index[index < unread]]
        self.fresh_logits = self.fresh_logits[index[index >= unread] - unread]
        self.state = tuple(t.index_select(1, index) for t in self.state)

    # -- the step -------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Piece]:
        """One character for every row (cancelled rows leave first); the rows that end leave after."""
        cancelled = [i for i, row in enumerate(self.rows) if row.cancelled]
        if cancelled:
            self._remove(cancelled)
        rows, unread = self.rows, len(self.unread)
        if not rows:
            return []
        ids = None
        if unread:  # read what the rows drew last step: one batched step, perhaps drawing too
            state = self.state if unread == len(rows) else tuple(t[:, :unread] for t in self.state)
            with timed_step(self.threads, unread):
                if self._fuses(rows[:unread]):
                    uniforms = self._uniforms(rows[:unread])
                    ids, logits, state = self.stepper.step_and_draw(
                        self.unread, state, uniforms, self._temperature(rows[:unread])
                    )
                else:
                    logits, state = self.stepper.step(self.unread, state)  # (K, V); (L, K, H) each
            if unread < len(rows):  # rows that joined since: their prime's logits and state
                logits = torch.cat([logits, self.fresh_logits])
                joined = zip(state, self.state, strict=True)
                state = tuple(torch.cat([new, old[:, unread:]], dim=1) for new, old in joined)
            self.state = state
        else:
            logits = self.fresh_logits  # (N, V)
        if ids is None:
            ids = self._draw(logits, rows)
        elif unread < len(rows):
            ids = torch.cat([ids, self._draw(logits[unread:], rows[unread:])])
        return self._after_draw(rows, ids, logits)

    def _fuses(self, rows: Sequence[Row]) -> bool:
        stepper = self.stepper
        return (
            isinstance(stepper, CompiledSteps) and stepper.serves(len(rows)) and all(r.sampling.fusable for r in rows)
        )

    def _uniforms(self, rows: Sequence[Row]) -> torch.Tensor:
        """The next uniform number of each row (none taken for a greedy one): (N,)."""
        numbers = [0.0 if row.sampling.greedy else row.uniforms.take() for row in rows]
        return torch.tensor(numbers, device=self.device)

    def _temperature(self, rows: Sequence[Row]) -> torch.Tensor:
        """Each row's temperature, clamped (draw.py), as the compiled step takes it: (N,); kept
        while the rows' temperatures stay the same."""
        values = tuple(clamp_temperature(row.sampling.temperature) for row in rows)
        if values != self._temperatures[0]:
            self._temperatures = (values, torch.tensor(values))
        return self._temperatures[1]

    def _draw(self, logits: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
        """Eagerly: each row's penalties, then its filters and temperature: (N, V) -> (N,)."""
        settings = [row.sampling for row in rows]
        if any(s.penalised for s in settings):
            drawn = torch.from_numpy(np.stack([self._drawn_counts(row) for row in rows])).to(logits)  # (N, V)
            recent = torch.zeros_like(logits)
            for i, row in enumerate(rows):
                window = row.history[-row.sampling.repetition_window :]
                recent[i, window] = 1.0
            logits = penalise(logits, drawn, recent, settings)
        return draw(logits, settings, self._uniforms(rows))

    def _drawn_counts(self, row: Row) -> np.ndarray:
        if row.drawn is None:  # counted from the first draw that needs them: the prime never counts
            row.drawn = np.bincount(row.drawn_ids, minlength=len(self.vocab)).astype(np.float32)
        return row.drawn

    def _after_draw(self, rows: list[Row], ids: torch.Tensor, logits: torch.Tensor) -> list[Piece]:
        """Hand out the drawn characters (held back where a stop text may begin); drop ended rows."""
        id_list = ids.tolist()
        scores = self._scores(rows, id_list, logits)
        pieces, ended = [], []
        for i, (row, id_) in enumerate(zip(rows, id_list, strict=True)):
            row.count += 1
            row.history.append(id_)
            row.drawn_ids.append(id_)
            if row.drawn is not None:
                row.drawn[id_] += 1
            if scores[i] is not None:
                row.held.append(scores[i])
            text = row.watch.feed(self.vocab.chars[id_])
            if row.watch.stopped:
                row.finish_reason = "stop"
            elif row.limit is not None and row.count >= row.limit:
                text += row.watch.flush()
                row.finish_reason = "length"
            shown: tuple[CharScore, ...] = ()
            if row.logprobs is not None:
                shown, row.held = tuple(row.held[: len(text)]), row.held[len(text) :]
            if text or row.finish_reason:
                pieces.append(Piece(row, text, row.finish_reason, shown))
            if row.finish_reason:
                ended.append(i)
        self.unread, self.fresh_logits = ids, self.fresh_logits[:0]
        if ended:
            self._remove(ended)
        return pieces

    def _scores(self, rows: list[Row], ids: list[int], logits: torch.Tensor) -> list[CharScore | None]:
        """Each asking row's ``CharScore`` for the id it drew (None for the others)."""
        asking = [i for i, row in enumerate(rows) if row.logprobs is not None]
        scores: list[CharScore | None] = [None] * len(rows)
        if not asking:
            return scores
        index = torch.tensor(asking, device=logits.device)
        log_probs = torch.log_softmax(logits[index].double(), dim=-1).cpu()  # (A, V)
        most = min(max(rows[i].logprobs for i in asking), len(self.vocab))
        best_values, best_ids = torch.topk(log_probs, most, dim=-1)  # (A, k)
        chars = self.vocab.chars
        for a, i in enumerate(asking):
            k = rows[i].logprobs
            best = zip(best_ids[a, :k].tolist(), best_values[a, :k].tolist(), strict=True)
            top = tuple((chars[j], value) for j, value in best)
            scores[i] = CharScore(chars[ids[i]], float(log_probs[a, ids[i]]), top)
        return scores


@dataclass(frozen=True)
class Beam:
    """The most likely continuation beam search found, and its total log-probability (nats)."""

    text: str
    logprob: float
    ended_by: str  # "length" or "stop"


@torch.inference_mode()
def beam_search(decoder: Decoder, prime: str, length: int, width: int, stops: Sequence[str] = ()) -> Beam:
    """The continuation of ``prime`` with the highest total log-probability that beam search of
    ``width`` finds, ``length`` characters long or ending just before a stop text (whose own
    characters count in its score: it is the most likely text *and* end). Deterministic.

    The greedy continuation is kept among the hypotheses at every step, so the answer is never
    less likely than greedy decoding's; ``width=1`` is greedy decoding. Scores are the model's own
    log-probabilities (no temperature, no penalties).
    """
    model, vocab = decoder.model, decoder.vocab
    logits, state = decoder._read(decoder._ids(prime, "prime"), model.init_state(1))  # (1, V); (L, 1, H) each
    texts, scores, greedy = [""], torch.zeros(1, dtype=torch.float64), 0  # greedy: its hypothesis' row
    finished: list[Beam] = []
    for position in range(length):
        log_probs = torch.log_softmax(logits.double(), dim=-1).cpu()  # (B, V)
        candidates = (scores[:, None] + log_probs).view(-1)  # (B·V,)
        chosen = torch.topk(candidates, min(width, len(candidates))).indices.tolist()
        if greedy is not None:  # keep the greedy path in the beam
            follow = greedy * len(vocab) + int(log_probs[greedy].argmax())
            if follow not in chosen:
                chosen[-1] = follow
            greedy = chosen.index(follow)
        parents, next_texts, kept = [], [], []
        for slot, flat in enumerate(chosen):
            parent, id_ = divmod(flat, len(vocab))
            text = texts[parent] + vocab.chars[id_]
            cut = min((i for stop in stops if stop and (i := text.find(stop)) >= 0), default=None)
            if cut is not None:
                finished.append(Beam(text[:cut], float(candidates[flat]), "stop"))
                greedy = None if slot == greedy else greedy
                continue
            parents.append(parent)
            next_texts.append(text)
            kept.append(flat)
        if greedy is not None:
            greedy = kept.index(chosen[greedy])
        if not kept:
            break
        texts, scores = next_texts, candidates[kept]
        if position + 1 < length:
            index = torch.tensor(parents, device=decoder.device)
            ids = torch.tensor([flat % len(vocab) for flat in kept], device=decoder.device)
            state = tuple(t.index_select(1, index) for t in state)
            with timed_step(decoder.threads, len(kept)):
                logits, state = decoder.stepper.step(ids, state)  # (B, V)
    else:
        finished += [Beam(text, float(score), "length") for text, score in zip(texts, scores.tolist(), strict=True)]
    return max(finished, key=lambda beam: beam.logprob)


@torch.inference_mode()
def score_stepwise(decoder: Decoder, windows: Any) -> tuple[float, int]:
    """Summed cross-entropy (nats) of ``windows`` (``StreamBatches``) read through the decoder's
    step one character at a time, and the characters scored: what an int8 model generates with
    is what `charrnn evaluate` scores."""
    state = decoder.stepper.init_state(windows.batch_size)
    sums = []
    for index in range(windows.num_windows):
        x, y = windows.window(index)  # (B, T) each
        for t in range(x.shape[1]):
            with timed_step(decoder.threads):
                logits, state = decoder.stepper.step(x[:, t], state)  # (B, V)
            sums.append(torch.nn.functional.cross_entropy(logits.float(), y[:, t].long(), reduction="sum"))
    total = torch.stack(sums).double().sum().item() if sums else 0.0
    return total, windows.num_chars


class ReferenceStep:
    """The slow reference step: ``CharRNN.forward`` (nn.LSTM) on one character, for tests."""

    def __init__(self, model: CharRNN):
        self.model = model

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.model(ids.view(-1, 1), state)
