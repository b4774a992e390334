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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from charrnn.core.cells import State
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.draw import UniformBatch, Uniforms, clamp_temperature, draw, penalise
from charrnn.generation.stepper import Stepper
from charrnn.generation.stops import StopWatch
from charrnn.sampling import Sampling
from charrnn.threads import ThreadTuner, timed_step

MAX_LOGPROBS = 20  # alternatives per character, as OpenAI's completions API
READ_CHARS = 65_536  # a prime is read in passes of at most this many characters


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
    remembers: bool = False  # keeps ``history``: needed by the penalties (on for a penalised row anyway)
    history: list[int] = field(default_factory=list)  # every id read or drawn (the repetition window)
    drawn_ids: list[int] = field(default_factory=list)  # the ids drawn (the OpenAI penalties count these)
    drawn: np.ndarray | None = None  # (V,) counts of ``drawn_ids``, kept from the first draw that needs them

    def __post_init__(self) -> None:
        self.remembers = self.remembers or self.sampling.penalised
        self.reseed(self.seed)
        self.watch = StopWatch([self.stops] if isinstance(self.stops, str) else self.stops)
        self.held: list[CharScore] = []  # scores of the characters the stop watch holds back

    def reseed(self, seed: int) -> None:
        """Draw from here on as a row started with ``seed`` would."""
        self.seed, self.uniforms = seed, Uniforms(seed)


class Piece(NamedTuple):
    """What a step produced for one row: text that may be shown, and why the row ended, if it did.
    (A named tuple: one is made per row per step, and a frozen dataclass costs ~1 us to make.)"""

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
        self.unread_count = 0  # K, kept as an int: a tensor's len() costs microseconds
        self.fresh_logits = torch.empty(0, len(vocab), device=self.device)  # (N - K, V): rows[K:]'s prediction
        self.state: State = tuple(t[:, :0] for t in model.init_state(1))  # (L, N, H) each
        self.uniforms = UniformBatch()
        # For the last rows' settings (the same objects, step after step): whether a compiled step
        # can draw for them, and their temperatures as its (N,) input.
        self._plain: tuple[tuple[Sampling, ...], bool, torch.Tensor] = ((), False, torch.empty(0))
        self._plain_rows_of: tuple[list[Row] | None, bool] = (None, False)
        # Plain rows' counts are brought up to date only when they matter (``_settle_counts``): a
        # step adds one to ``_uncounted`` instead of to every row, until the first row can end.
        self._uncounted = 0
        self._steps_to_an_end = 0

    # -- rows in and out ------------------------------------------------------------------------

    @torch.inference_mode()
    def add(self, prime: str, rows: Sequence[Row], what: str = "prime") -> None:
        """Read ``prime`` once and start every row of ``rows`` from its state (they join the batch
        at the next step). Unknown characters raise ``UnknownCharactersError`` before anything changes."""
        ids = self._ids(prime, what)
        logits, state = self._read(ids, self.model.init_state(1))  # (1, V); (L, 1, H) each
        for row in rows:
            row.history = ids.tolist() if row.remembers else []
        self._append(rows, logits.expand(len(rows), -1), tuple(t.expand(-1, len(rows), -1) for t in state))

    @torch.inference_mode()
    def feed(self, row: Row, text: str) -> None:
        """Read ``text`` into ``row`` after what it has drawn: its next draw continues the text."""
        ids = self._ids(text, "prime")
        if not len(ids):
            return
        i = self.rows.index(row)
        state = tuple(t[:, i : i + 1] for t in self.state)
        if i < self.unread_count:  # it drew a character it has not read yet: read it first
            with timed_step(self.threads):
                _, state = self.stepper.step(self.unread[i : i + 1], state)
        logits, state = self._read(ids, state)
        if row.remembers:
            row.history += ids.tolist()
        self._remove([i])
        self._append([row], logits, state)

    def remove(self, row: Row) -> None:
        """Take ``row`` out of the batch now, between steps (``cancelled`` does it at the next step)."""
        self._remove([self.rows.index(row)])

    def _ids(self, text: str, what: str) -> torch.Tensor:
        return torch.from_numpy(self.vocab.encode(text, what=what)).to(self.device)  # (P,)

    def _read(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ids (P,) from ``state`` (L, 1, H), a long text in pieces (oneDNN refused one
        560,000-character pass): the logits after the last one (1, V)."""
        if not len(ids):
            return self.model.logits_from_state(state), state
        for start in range(0, len(ids), READ_CHARS):
            logits, state = self.model(ids[start : start + READ_CHARS].view(1, -1), state)  # (P', V)
        return logits[-1:], state

    def _settle_counts(self) -> None:
        """Add the steps not yet counted to every row's count; note when the first can end."""
        if self._uncounted:
            for row in self.rows:
                row.count += self._uncounted
            self._uncounted = 0
        ends = [row.limit - row.count for row in self.rows if row.limit is not None]
        self._steps_to_an_end = min(ends, default=math.inf)

    def _set_rows(self, rows: list[Row]) -> None:
        """A new list of rows (``_plain_rows`` knows the rows by it), with every count up to date."""
        self._settle_counts()
        self.rows = rows
        self._settle_counts()

    def _append(self, rows: Sequence[Row], logits: torch.Tensor, state: State) -> None:
        self._set_rows([*self.rows, *rows])
        self.fresh_logits = torch.cat([self.fresh_logits, logits])
        self.state = tuple(torch.cat([mine, theirs], dim=1) for mine, theirs in zip(self.state, state, strict=True))

    def _remove(self, drop: Sequence[int]) -> None:
        """Take rows out of the batch, by position."""
        dropped = set(drop)
        keep = [i for i in range(len(self.rows)) if i not in dropped]
        unread = self.unread_count
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self._set_rows([self.rows[i] for i in keep])
        self.unread = self.unread[index[index < unread]]
        self.unread_count = len(self.unread)
        self.fresh_logits = self.fresh_logits[index[index >= unread] - unread]
        self.state = tuple(t.index_select(1, index) for t in self.state)

    # -- the step -------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Piece]:
        """One character for every row (cancelled rows leave first); the rows that end leave after."""
        cancelled = [i for i, row in enumerate(self.rows) if row.cancelled]
        if cancelled:
            self._remove(cancelled)
        rows, unread = self.rows, self.unread_count
        if not rows:
            return []
        ids = None
        if unread:  # read what the rows drew last step: one batched step, perhaps drawing too
            state = self.state if unread == len(rows) else tuple(t[:, :unread] for t in self.state)
            with timed_step(self.threads, unread):
                reading = rows if unread == len(rows) else rows[:unread]
                fused, temperatures = self._fused(reading)
                if fused:
                    uniforms = self._uniforms(reading)
                    ids, logits, state = self.stepper.step_and_draw(self.unread, state, uniforms, temperatures)
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

    def _fused(self, rows: Sequence[Row]) -> tuple[bool, torch.Tensor]:
        """Whether the compiled step can draw for ``rows`` (every one plain temperature sampling),
        and their temperatures (clamped: draw.py) as its (N,) input; kept while the settings stay."""
        settings = tuple([row.sampling for row in rows])
        if settings != self._plain[0]:
            stepper = self.stepper
            fused = isinstance(stepper, CompiledSteps) and all(s.fusable for s in settings)
            temperatures = torch.tensor([clamp_temperature(s.temperature) for s in settings])
            self._plain = (settings, fused, temperatures)
        _, fused, temperatures = self._plain
        return fused and self.stepper.serves(len(rows)), temperatures

    def _uniforms(self, rows: Sequence[Row]) -> torch.Tensor:
        """The next uniform number of each row (none taken for a greedy one): (N,)."""
        return self.uniforms.take(tuple([None if row.sampling.greedy else row.uniforms for row in rows]), self.device)

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
        id_list, chars = ids.tolist(), self.vocab.chars
        if self._plain_rows(rows):  # nothing to hold back, score or remember: each piece is its character
            pieces = [Piece(row, chars[id_]) for row, id_ in zip(rows, id_list, strict=True)]
            self._uncounted += 1
            ended = []
            if self._uncounted >= self._steps_to_an_end:
                self._settle_counts()
                ended = [i for i, row in enumerate(rows) if row.limit is not None and row.count >= row.limit]
                for i in ended:
                    rows[i].finish_reason = "length"
                    pieces[i] = Piece(rows[i], pieces[i].text, "length")
            return self._after_pieces(rows, ids, pieces, ended)
        # Rows with stop texts, scores or a history count each step themselves: a list of rows is
        # either plain or not for its whole life, so nothing is ever left uncounted here.
        scores = self._scores(rows, id_list, logits) if any(row.logprobs is not None for row in rows) else None
        pieces, ended = [], []
        for i, (row, id_) in enumerate(zip(rows, id_list, strict=True)):
            row.count += 1
            if row.remembers:
                row.history.append(id_)
                row.drawn_ids.append(id_)
            if row.drawn is not None:
                row.drawn[id_] += 1
            watch = row.watch
            if not watch.stops and scores is None and (row.limit is None or row.count < row.limit):
                pieces.append(Piece(row, chars[id_]))  # the common case: nothing to hold back or end
                continue
            if scores is not None and scores[i] is not None:
                row.held.append(scores[i])
            text = watch.feed(chars[id_])
            if watch.stopped:
                row.finish_reason = "stop"
            elif row.limit is not None and row.count >= row.limit:
                text += watch.flush()
                row.finish_reason = "length"
            shown: tuple[CharScore, ...] = ()
            if row.logprobs is not None:
                shown, row.held = tuple(row.held[: len(text)]), row.held[len(text) :]
            if text or row.finish_reason:
                pieces.append(Piece(row, text, row.finish_reason, shown))
            if row.finish_reason:
                ended.append(i)
        return self._after_pieces(rows, ids, pieces, ended)

    def _after_pieces(self, rows: list[Row], ids: torch.Tensor, pieces: list[Piece], ended: list[int]) -> list[Piece]:
        """Every row now has a drawn character to read next step; the ended ones leave."""
        if self.unread_count < len(rows):
            self.fresh_logits = self.fresh_logits[:0]
        self.unread, self.unread_count = ids, len(rows)
        if ended:
            self._remove(ended)
        return pieces

    def _plain_rows(self, rows: list[Row]) -> bool:
        """Whether no row has stop texts, asks for scores or keeps its history (kept per list of rows)."""
        if rows is not self._plain_rows_of[0]:
            plain = all(not row.watch.stops and row.logprobs is None and not row.remembers for row in rows)
            self._plain_rows_of = (rows, plain)
        return self._plain_rows_of[1]

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
