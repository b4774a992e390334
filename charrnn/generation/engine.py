"""Many streams, one step: the generation engine behind `charrnn serve`.

Requests that are active at the same time are stepped together as the rows of one decoder
(generation/decoder.py): every step advances all N states with one step call, (L, N, H) each,
and draws one character for each. A stream joins at a step boundary (its prompt read into a state
of its own first) and leaves at one (its length reached, a stop text found, or cancelled because
its client went away). One thread runs the steps; what they produce goes out through one
callback every few milliseconds (``EMIT_SECONDS``), so whoever listens (the server's event loop)
is woken a few hundred times a second, not once per step or per character.

    waiting ──admit──► active rows of the batch ──length / stop / cancel──► finished
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence

from charrnn.generation.decoder import Decoder, Piece, Row
from charrnn.sampling import Sampling


class Stream(Row):
    """One choice of one request: a decoder row, with the prompt it starts from."""

    def __init__(
        self,
        prompt: str,
        length: int,
        sampling: Sampling,
        seed: int,
        stops: Sequence[str] = (),
        logprobs: int | None = None,
    ):
        super().__init__(sampling, seed, length, list(stops), logprobs)
        self.prompt = prompt

    @property
    def generated(self) -> int:
        return self.count


# What steps produced: the decoder's pieces (a piece's row is its stream), in order.
Events = list[Piece]
# Text is handed out at most this often (and at once when a stream ends): a listener on another
# thread is woken a few hundred times a second, not at every step.
EMIT_SECONDS = 0.005


class Engine:
    """Steps all active streams together (``run``, in a thread of its own); ``submit`` from any other."""

    def __init__(
        self,
        decoder: Decoder,
        emit: Callable[[Events], None],
        max_streams: int = 64,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
        observe: Callable[[float, int], None] | None = None,
    ):
        self.decoder = decoder
        self.observe = observe  # called after each step with its seconds and its batch size
        self.log = log
        self.emit = emit
        self.max_streams = max_streams
        self._waiting: list[Stream] = []
        self._wake = threading.Condition()
        self._closed = False
        self._outbox: Events = []  # what the steps since the last emit produced
        self._emitted_at = 0.0
        self.steps = 0  # steps taken, for all streams together
        self.characters = 0  # characters drawn, over all streams
        self.largest_batch = 0  # the most streams stepped together

    def close(self) -> None:
        """Make ``run`` return (from any thread)."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def submit(self, stream: Stream) -> None:
        """Queue a stream; it joins the batch at the next step boundary."""
        with self._wake:
            self._waiting.append(stream)
            self._wake.notify()

    @property
    def streams(self) -> list[Stream]:
        return self.decoder.rows  # type: ignore[return-value]

    @property
    def active(self) -> int:
        return len(self.decoder.rows)

    @property
    def waiting(self) -> int:
        """Streams submitted that have not joined the batch yet."""
        return len(self._waiting)

    def run(self) -> None:
        """Step until ``close``. Run it on the main thread where possible: torch's CPU kernels ran
        about a third slower from a second thread here (benchmarks/serve_throughput.py)."""
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self.decoder.rows:
                    self._wake.wait(timeout=0.5)  # a timeout keeps Ctrl-C deliverable
                if self._closed:
                    return
                room = self.max_streams - len(self.decoder.rows)
                joining, self._waiting = self._waiting[:room], self._waiting[room:]
            try:
                for stream in joining:
                    self._admit(stream)
                if self.decoder.rows:
                    self.step_batch()
            except Exception as exc:  # never leave a client waiting on a dead thread
                self._fail(joining + self.streams, exc)

    def _fail(self, streams: list[Stream], exc: Exception) -> None:
        """End every stream in hand with finish reason "error" and start again with an empty batch.
        (No request can cause this: every setting is checked before it joins, and every draw is
        defined for every allowed setting. It is here for a bug, which it reports.)"""
        self.log(f"error: generation failed, {len(streams)} stream(s) ended: {type(exc).__name__}: {exc}")
        for stream in streams:
            stream.finish_reason = "error"
        self.emit([*self._outbox, *(Piece(stream, "", "error") for stream in streams)])
        self._outbox = []
        for stream in list(self.decoder.rows):
            self.decoder.remove(stream)

    def _admit(self, stream: Stream) -> None:
        """Read the stream's prompt into a state of its own; it joins the batch as a new row."""
        if stream.cancelled:
            return
        if stream.limit == 0:
            stream.finish_reason = "length"
            self.emit([Piece(stream, "", "length")])
            return
        self.decoder.add(stream.prompt, [stream], what="prompt")

    def step_batch(self) -> None:
        """One character for every active stream; the finished and the cancelled leave the batch."""
        batch = sum(not stream.cancelled for stream in self.decoder.rows)
        self.steps += 1
        self.characters += batch
        self.largest_batch = max(self.largest_batch, batch)
        began = time.perf_counter() if self.observe is not None else 0.0
        pieces = self.decoder.step()
        self._outbox += pieces
        now = time.perf_counter()
        if self.observe is not None:
            self.observe(now - began, batch)
        ended = any(piece.finish for piece in pieces)
        if self._outbox and (now - self._emitted_at >= EMIT_SECONDS or ended):
            self.emit(self._outbox)  # a listener woken every few ms, not every step
            self._outbox, self._emitted_at = [], now
