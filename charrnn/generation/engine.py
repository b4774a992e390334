"""Many streams, one step: the generation engine behind `charrnn serve`.

Requests that are active at the same time are stepped together: every step draws one character
for each of the N active streams from one (N, V) logits tensor and advances all their states with
one stepper call, (L, N, H) each. A stream joins at a step boundary (its prompt read into a state
of its own first) and leaves at one (its length reached, a stop text found, or cancelled because
its client went away). One thread runs the steps; what they produce goes out through one
callback every few milliseconds (``EMIT_SECONDS``), so whoever listens (the server's event loop)
is woken a few hundred times a second, not once per step or per character.

    waiting ──admit──► active rows of the batch ──length / stop / cancel──► finished
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from charrnn.core.cells import State
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.sample import Sampling, StopWatch, next_ids
from charrnn.generation.stepper import Stepper
from charrnn.threads import ThreadTuner, timed_step


@dataclass(eq=False)
class Stream:
    """One text being generated: what was asked, and where it is."""

    prompt: str
    length: int  # characters to generate at most
    sampling: Sampling
    seed: int
    stops: list[str] = field(default_factory=list)
    cancelled: bool = False  # set from any thread; the engine drops the stream at the next step
    generated: int = 0  # characters drawn so far
    finish_reason: str | None = None  # "length" or "stop" once it has ended
    watch: StopWatch = field(init=False)
    generator: torch.Generator | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.watch = StopWatch(self.stops)


# What steps produced: (stream, text piece or "", finish reason or None), in order.
Events = list[tuple[Stream, str, str | None]]
# Text is handed out at most this often (and at once when a stream ends): a listener on another
# thread is woken a few hundred times a second, not at every step.
EMIT_SECONDS = 0.005


class Engine:
    """Steps all active streams together (``run``, in a thread of its own); ``submit`` from any other."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        emit: Callable[[Events], None],
        max_streams: int = 64,
        stepper: Stepper | CompiledSteps | None = None,
        threads: ThreadTuner | None = None,
    ):
        self.model = model.eval()
        self.vocab = vocab
        self.stepper = stepper or Stepper(model)  # compiled or int8: chosen by generation/runtime.py
        self.threads = threads  # the CPU thread count, measured as the batch steps (charrnn/threads.py)
        self.emit = emit
        self.max_streams = max_streams
        self.device = model.device
        self._waiting: list[Stream] = []
        self._wake = threading.Condition()
        self._closed = False
        self._outbox: Events = []  # what the steps since the last emit produced
        self._emitted_at = 0.0
        self.steps = 0  # steps taken, for all streams together
        self.characters = 0  # characters drawn, over all streams
        self.largest_batch = 0  # the most streams stepped together
        # The batch: row i of the logits and of every state tensor is stream i.
        self.streams: list[Stream] = []
        self._logits = torch.empty(0, len(vocab), device=self.device)  # (N, V)
        self._state: State = tuple(t[:, :0] for t in model.init_state(1))  # (L, N, H) each

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
    def active(self) -> int:
        return len(self.streams)

    def run(self) -> None:
        """Step until ``close``. Run it on the main thread where possible: torch's CPU kernels ran
        about a third slower from a second thread here (benchmarks/serve_throughput.py)."""
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._closed and not self._waiting and not self.streams:
                        self._wake.wait(timeout=0.5)  # a timeout keeps Ctrl-C deliverable
                    if self._closed:
                        return
                    room = self.max_streams - len(self.streams)
                    joining, self._waiting = self._waiting[:room], self._waiting[room:]
                try:
                    for stream in joining:
                        self._admit(stream)
                    if self.streams:
                        self.step()
                except Exception as exc:  # never leave a client waiting on a dead thread
                    self._fail(joining + self.streams, exc)

    def _fail(self, streams: list[Stream], exc: Exception) -> None:
        """End every stream in hand with finish reason "error" and start again with an empty batch."""
        for stream in streams:
            stream.finish_reason = "error"
        self.emit([*self._outbox, *((stream, "", "error") for stream in streams)])
        self._outbox = []
        self.streams = []
        self._logits = self._logits[:0]
        self._state = tuple(t[:, :0] for t in self._state)

    def _admit(self, stream: Stream) -> None:
        """Read the stream's prompt into a state of its own and add it to the batch as a new row."""
        if stream.cancelled:
            return
        stream.generator = torch.Generator(device=self.device).manual_seed(stream.seed)
        state = self.model.init_state(1)
        ids = torch.from_numpy(self.vocab.encode(stream.prompt, what="prompt")).to(self.device)
        if len(ids):
            logits, state = self.model(ids.view(1, -1), state)  # (P, V)
            logits = logits[-1:]
        else:
            logits = self.model.logits_from_state(state)  # (1, V)
        if stream.length == 0:
            self.emit([(stream, "", "length")])
            return
        self.streams.append(stream)
        self._logits = torch.cat([self._logits, logits])  # (N + 1, V)
        self._state = tuple(torch.cat([mine, theirs], dim=1) for mine, theirs in zip(self._state, state, strict=True))

    def step(self) -> None:
        """One character for every active stream; the finished and the cancelled leave the batch."""
        streams = self.streams
        self.steps += 1
        self.characters += len(streams)
        self.largest_batch = max(self.largest_batch, len(streams))
        ids = next_ids(self._logits, [s.sampling for s in streams], [s.generator for s in streams])  # (N,)
        events: Events = []
        keep = []
        for row, (stream, id_) in enumerate(zip(streams, ids.tolist(), strict=True)):
            if stream.cancelled:
                continue
            stream.generated += 1
            piece = stream.watch.feed(self.vocab.chars[id_])
            if stream.watch.stopped:
                stream.finish_reason = "stop"
            elif stream.generated == stream.length:
                piece += stream.watch.flush()
                stream.finish_reason = "length"
            else:
                keep.append(row)
            if piece or stream.finish_reason:
                events.append((stream, piece, stream.finish_reason))
        self._outbox += events
        now = time.perf_counter()
        if self._outbox and (now - self._emitted_at >= EMIT_SECONDS or len(keep) < len(streams)):
            self.emit(self._outbox)  # a listener woken every few ms, not every step
            self._outbox, self._emitted_at = [], now
        if len(keep) < len(streams):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.streams = [streams[row] for row in keep]
            ids = ids[index]
            self._state = tuple(t.index_select(1, index) for t in self._state)
        if self.streams:
            with timed_step(self.threads, len(self.streams)):
                self._logits, self._state = self.stepper.step(ids, self._state)  # (N, V); (L, N, H) each
        else:
            self._logits = self._logits[:0]
