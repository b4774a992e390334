"""The server's state: the model once it has loaded, the engine, and where each stream's text goes.

The port opens before the model has loaded (``/health`` says 503 until ``ready``). Each request
is a ``Job``: its choices are streams of the shared engine, and what they draw comes back
through one queue. A job is admitted only while the engine's rows and its waiting room have space
(``Busy`` otherwise), and a job whose client has stopped reading cannot pile up text without
bound: past ``MAX_BUFFERED`` undelivered pieces its streams are cancelled as stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from charrnn.api import CharModel
from charrnn.commands.serving.requests import CHAT_FORMATS, ChatFormat, Completion, Limits
from charrnn.generation.engine import Engine, Events, Stream
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS

# Pieces (about one per character) a job may hold undelivered: a client reading at any pace
# keeps a few; one that stopped reading reaches this and its streams end ("stalled").
MAX_BUFFERED = 20_000


@dataclass(frozen=True)
class Deployment:
    """How `charrnn serve` was asked to run, beyond the model (docs/serving.md)."""

    limits: Limits = Limits()
    max_streams: int = 64  # rows stepped together
    max_queue: int = 256  # choices that may wait for a row; past it, 503
    request_timeout: float = 300.0  # seconds a request may take, waiting included
    keys: tuple[str, ...] = ()  # API keys; none: open
    cors_origins: tuple[str, ...] = ()
    log_prompts: bool = False  # access log lines carry the prompt and the text
    access_log: bool = True
    metrics: bool = False
    chat: ChatFormat = CHAT_FORMATS["play"]  # how /v1/chat/completions writes messages into a prime


class Busy(Exception):
    """No room for a request's streams: answered 503 with Retry-After."""


class Loading(Exception):
    """The model has not loaded yet: answered 503."""


@dataclass(eq=False)
class Job:
    """One request's streams and the queue their pieces come back on: (choice, text, finish, scores)."""

    streams: list[Stream]
    queue: asyncio.Queue
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None
    ended: str | None = None  # "stalled" or "timeout" when the server ended it


class Server:
    """The app's state, shared by its routes, and the engine's way back into the event loop."""

    def __init__(self, name: str, deployment: Deployment):
        self.name, self.deployment, self.limits = name, deployment, deployment.limits
        self.model: CharModel | None = None
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.routes: dict[Stream, tuple[Job, int]] = {}  # a stream's job and its choice index
        self.created = int(time.time())
        # Requests refused (no room), ended (client not reading; --request-timeout), connections cut off.
        self.counts = {"rejected": 0, "stalled": 0, "timed_out": 0, "cut_off": 0}
        self.observe_step: Callable[[float, int], None] | None = None  # the metrics' hook, if on
        self.first_text: Callable[[float], None] | None = None

    def ready(self, model: CharModel) -> None:
        """The model has loaded: build the engine (the caller then runs it)."""
        self.engine = model.engine(self._from_engine, self.deployment.max_streams, self.observe_step)
        self.model = model

    @property
    def loaded(self) -> CharModel:
        if self.model is None:
            raise Loading
        return self.model

    def _from_engine(self, events: Events) -> None:
        """Called in the engine's thread every few ms: hand the events to the event loop."""
        with contextlib.suppress(RuntimeError):  # the event loop has closed: the server is shutting down
            self.loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: Events) -> None:
        for piece in events:
            route = self.routes.get(piece.row)
            if route is None:
                continue
            job, index = route
            job.queue.put_nowait((index, piece.text, piece.finish, piece.scores))
            if job.first_text_at is None and piece.text:
                job.first_text_at = time.perf_counter()
                if self.first_text is not None:
                    self.first_text(job.first_text_at - job.started)
            if job.queue.qsize() > MAX_BUFFERED:
                self.end(job, "stalled")

    def start(self, request: Completion) -> Job:
        """One stream per choice, all reporting to one queue; ``Busy`` if there is no room."""
        engine = self.engine
        wanted = len(request.prompts) * request.n
        room = self.deployment.max_streams + self.deployment.max_queue - engine.active - engine.waiting
        if wanted > room:
            self.counts["rejected"] += 1
            raise Busy
        job = Job([], asyncio.Queue())
        for p, prompt in enumerate(request.prompts):
            for i in range(request.n):
                seed = request.seed + p * request.n + i  # choice i: seed + i, as `charrnn generate`
                stream = Stream(prompt, request.max_tokens, request.sampling, seed, request.stops, request.logprobs)
                self.routes[stream] = (job, len(job.streams))
                job.streams.append(stream)
        for stream in job.streams:
            engine.submit(stream)
        return job

    def end(self, job: Job, reason: str) -> None:
        """End a job now ("stalled" or "timeout"): every choice gets an end with that reason. A
        choice whose own end is already queued keeps it (the reader takes the first end of each);
        one whose end was still on its way from the engine, no longer routed, takes this one."""
        if job.ended is not None:
            return
        job.ended = reason
        self.counts["stalled" if reason == "stalled" else "timed_out"] += 1
        for index, stream in enumerate(job.streams):
            stream.cancelled = True  # a no-op for those that ended
            self.routes.pop(stream, None)
            job.queue.put_nowait((index, "", reason, ()))

    def finish(self, job: Job) -> None:
        """The request is answered (or its client left): free whatever rows it still holds."""
        for stream in job.streams:
            stream.cancelled = True  # a no-op for those that ended; frees the others' rows
            self.routes.pop(stream, None)

    def stats(self) -> dict:
        engine = self.engine
        return {
            "active_streams": engine.active,
            "waiting_streams": engine.waiting,
            "steps": engine.steps,
            "characters": engine.characters,
            "largest_batch": engine.largest_batch,
            **self.counts,
        }

    def model_card(self) -> dict:
        model = self.loaded
        checkpoint, config = model.checkpoint, model.config
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "charrnn",
            "charrnn": {
                "cell": config.cell,
                "layers": config.num_layers,
                "hidden_size": config.hidden_size,
                "parameters": model.parameters,
                "vocab_size": len(model.vocab),
                "vocab": "".join(model.vocab.chars),
                "best_val_loss": checkpoint.best_val_loss,
                "step": checkpoint.progress.step,
                "max_tokens": self.limits.max_tokens,
                "max_n": self.limits.max_n,
                "chat_format": self.deployment.chat.name,
                "sampling": [
                    {
                        "name": opt.name,
                        "type": opt.type.__name__,
                        "default": opt.default,
                        "low": opt.spec.low,
                        "high": opt.spec.high,
                        "help": opt.spec.help,
                    }
                    for opt in SAMPLING_OPTIONS
                ],
            },
        }
