"""The HTTP side of `charrnn serve`: an OpenAI-compatible completions API and a page, on Starlette.

    GET  /                 the page (charrnn/commands/page.html): prime, controls, streamed text
    GET  /v1/models        the loaded model, with charrnn's own facts under "charrnn"
    GET  /stats            the engine's counts: active streams, steps, characters, largest batch
    POST /v1/completions   OpenAI's legacy completions: prompt, max_tokens (characters here),
                           temperature, top_p, frequency_penalty, presence_penalty, n, stop, seed,
                           stream, echo; every other setting of charrnn/sampling.py (top_k,
                           min_p, greedy, repetition_penalty, repetition_window) as an extra

Every choice of every request is one ``Stream`` of the shared ``Engine``, which steps all active
streams together. Bad requests get a 4xx JSON ``{"error": {...}}`` in OpenAI's shape; a client
that goes away mid-stream has its streams cancelled at the next step. Nothing a request says can
name a file. Starlette is imported by this module only: the rest of charrnn never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charrnn.api import CharModel
from charrnn.config import MAX_SAMPLE_SEED
from charrnn.generation.engine import Events, Stream
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS
from charrnn.sampling import Sampling

MAX_BODY_BYTES = 1 << 20
MAX_STOPS = 4  # as OpenAI's API
CHUNK_SECONDS = 0.03  # a streamed choice gets at most one chunk per this long (the first at once)


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 2000  # characters one choice may ask for
    max_n: int = 8  # choices one request may ask for
    max_prompt: int = 20_000  # characters of prompt


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


def error_response(message: str, status: int, param: str | None = None, kind: str = "invalid_request_error"):
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


@dataclass
class Completion:
    """A checked completions request."""

    prompts: list[str]
    max_tokens: int
    sampling: Sampling
    n: int
    stops: list[str]
    seed: int
    stream: bool
    echo: bool


def _field(body: dict, name: str, kinds: tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        expected = " or ".join("boolean" if k is bool else k.__name__ for k in kinds)
        raise BadRequest(f"'{name}' must be {expected}, got {json.dumps(value)[:40]}", name)
    return value


# OpenAI's defaults where its API has the field (temperature 1, top_p 1: no nucleus), the
# declaration's elsewhere; "top_p": 1 and "top_k": null mean off.
HTTP_DEFAULTS = {"temperature": 1.0, "top_p": 1.0}


def _sampling(body: dict) -> Sampling:
    """The request's sampling fields, each checked by its declaration (charrnn/sampling.py)."""
    values = {}
    for opt in SAMPLING_OPTIONS:
        kinds = (bool,) if opt.type is bool else (int,) if opt.type is int else (int, float)
        value = _field(body, opt.name, kinds, HTTP_DEFAULTS.get(opt.name, opt.default))
        problem = opt.problem(value)
        if problem is not None:
            raise BadRequest(f"'{opt.name}' {problem}", opt.name)
        values[opt.name] = float(value) if opt.type is float and value is not None else value
    if values["top_p"] == 1:
        values["top_p"] = None
    return Sampling(**values)


def parse_completion(body: Any, model: CharModel, limits: Limits) -> Completion:
    """The request's fields, checked against OpenAI's meaning and this model; BadRequest if any is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    _field(body, "model", (str,), None)  # any name is accepted: this server has one model
    prompt = _field(body, "prompt", (str, list), "")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")
    if sum(len(p) for p in prompts) > limits.max_prompt:
        raise BadRequest(f"the prompt is longer than this server's {limits.max_prompt:,} characters", "prompt")
    unknown = sorted({c for p in prompts for c in model.vocab.unknown_chars(p)})
    if unknown:
        shown = " ".join(repr(c) for c in unknown[:20])
        raise BadRequest(f"the prompt has characters the model has never seen: {shown}", "prompt")
    max_tokens = _field(body, "max_tokens", (int,), 16)
    if not 0 <= max_tokens <= limits.max_tokens:
        raise BadRequest(
            f"'max_tokens' must be from 0 to {limits.max_tokens} (characters), got {max_tokens}", "max_tokens"
        )
    sampling = _sampling(body)
    n = _field(body, "n", (int,), 1)
    if not 1 <= n <= limits.max_n:
        raise BadRequest(f"'n' must be from 1 to {limits.max_n}, got {n}", "n")
    if len(prompts) * n > limits.max_n:
        raise BadRequest(f"prompts x n must be at most {limits.max_n}, got {len(prompts) * n}", "n")
    stop = _field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOPS} strings", "stop")
    seed = _field(body, "seed", (int,), None)
    max_seed = MAX_SAMPLE_SEED + 1 - len(prompts) * n  # choice i uses seed + i, as `charrnn generate`
    if seed is not None and not 0 <= seed <= max_seed:
        raise BadRequest(f"'seed' must be from 0 to {max_seed} for {len(prompts) * n} choice(s), got {seed}", "seed")
    return Completion(
        prompts=prompts,
        max_tokens=max_tokens,
        sampling=sampling,
        n=n,
        stops=stops,
        seed=secrets.randbits(31) if seed is None else seed,
        stream=_field(body, "stream", (bool,), False),
        echo=_field(body, "echo", (bool,), False),
    )


class Server:
    """The app's state: the model, the engine, and where each stream's output goes."""

    def __init__(self, model: CharModel, name: str, limits: Limits, max_streams: int):
        self.model, self.name, self.limits = model, name, limits
        self.loop: asyncio.AbstractEventLoop | None = None
        self.routes: dict[Stream, tuple[asyncio.Queue, int]] = {}  # a stream's request's queue, its choice index
        self.engine = model.engine(self._from_engine, max_streams)
        self.created = int(time.time())

    def _from_engine(self, events: Events) -> None:
        """Called in the engine's thread once per step: hand the events to the event loop."""
        with contextlib.suppress(RuntimeError):  # the event loop has closed: the server is shutting down
            self.loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: Events) -> None:
        for piece in events:
            route = self.routes.get(piece.row)
            if route is not None:
                queue, index = route
                queue.put_nowait((index, piece.text, piece.finish))

    def start_streams(self, request: Completion) -> tuple[list[Stream], asyncio.Queue]:
        """One stream per choice, all reporting to one queue as (choice index, text, finish reason)."""
        streams, queue = [], asyncio.Queue()
        for p, prompt in enumerate(request.prompts):
            for i in range(request.n):
                seed = request.seed + p * request.n + i  # choice i: seed + i, as `charrnn generate`
                stream = Stream(prompt, request.max_tokens, request.sampling, seed, request.stops)
                self.routes[stream] = (queue, len(streams))
                streams.append(stream)
                self.engine.submit(stream)
        return streams, queue

    def finish(self, streams: list[Stream]) -> None:
        for stream in streams:
            stream.cancelled = True  # a no-op for those that ended; frees the others' rows
            self.routes.pop(stream, None)

    def model_card(self) -> dict[str, Any]:
        checkpoint, config = self.model.checkpoint, self.model.config
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "charrnn",
            "charrnn": {
                "cell": config.cell,
                "layers": config.num_layers,
                "hidden_size": config.hidden_size,
                "parameters": self.model.parameters,
                "vocab_size": len(self.model.vocab),
                "vocab": "".join(self.model.vocab.chars),
                "best_val_loss": checkpoint.best_val_loss,
                "step": checkpoint.progress.step,
                "max_tokens": self.limits.max_tokens,
                "max_n": self.limits.max_n,
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


def create_app(server: Server) -> Starlette:
    """The Starlette app for ``server``; whoever runs it also runs ``server.engine.run()``."""
    model, limits = server.model, server.limits

    async def page(request: Request) -> Response:
        html = (resources.files("charrnn") / "commands" / "page.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [server.model_card()]})

    async def stats(request: Request) -> Response:
        engine = server.engine
        return JSONResponse(
            {
                "active_streams": engine.active,
                "steps": engine.steps,
                "characters": engine.characters,
                "largest_batch": engine.largest_batch,
            }
        )

    async def completions(request: Request) -> Response:
        # JSON only: a form or text/plain POST is one any web page can send here without asking
        # (no CORS preflight), so the server would otherwise answer every page the user visits.
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return error_response("send the request body as JSON, with Content-Type: application/json", 415)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error_response(f"the request body is over {MAX_BODY_BYTES:,} bytes", 413)
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response("the request body is not valid JSON", 400)
        try:
            completion = parse_completion(parsed, model, limits)
        except BadRequest as exc:
            return error_response(str(exc), exc.status, exc.param)
        streams, queue = server.start_streams(completion)
        header = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time())}
        header["model"] = server.name
        prompt_of = [p for p in completion.prompts for _ in range(completion.n)]
        if completion.stream:
            return StreamingResponse(
                _events(server, streams, queue, header, prompt_of if completion.echo else None),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _whole(server, request, streams, queue, header, prompt_of, completion.echo)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return error_response(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        server.loop = asyncio.get_running_loop()  # where the engine hands its text
        yield

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/v1/models", models),
            Route("/stats", stats),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    return app


async def _whole(server: Server, request: Request, streams, queue, header, prompt_of, echo) -> Response:
    """Wait for every choice to end (cancelling them if the client leaves), then answer at once."""
    texts = [prompt if echo else "" for prompt in prompt_of]
    reasons: list[str | None] = [None] * len(streams)
    try:
        while None in reasons:
            try:
                index, piece, reason = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)
                continue
            texts[index] += piece
            reasons[index] = reason
    finally:
        server.finish(streams)
    choices = [
        {"text": text, "index": i, "logprobs": None, "finish_reason": reason}
        for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
    ]
    prompt_chars = sum(len(p) for p in prompt_of)
    completion_chars = sum(stream.generated for stream in streams)
    usage = {"prompt_tokens": prompt_chars, "completion_tokens": completion_chars}
    usage["total_tokens"] = prompt_chars + completion_chars
    return JSONResponse({**header, "choices": choices, "usage": usage})


async def _events(server: Server, streams: list[Stream], queue: asyncio.Queue, header: dict, echo_prompts):
    """Server-sent events: a chunk per choice with the text drawn since its last one (its last chunk
    carries the finish reason), then ``data: [DONE]``.

    The first text goes out at once; after that, chunks go out at most every ``CHUNK_SECONDS``,
    each carrying everything drawn meanwhile: far fewer, larger writes than one per character,
    which leaves the cores to the engine (and to the client) when many streams are active.
    """

    def chunk(index: int, text: str, reason: str | None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": reason}
        return f"data: {json.dumps({**header, 'choices': [choice]}, ensure_ascii=False)}\n\n".encode()

    try:
        for index, prompt in enumerate(echo_prompts or ()):
            yield chunk(index, prompt, None)
        running = len(streams)
        while running:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            texts: dict[int, list[str]] = {}
            reasons: dict[int, str] = {}
            for index, piece, reason in items:
                texts.setdefault(index, []).append(piece)
                if reason is not None:
                    reasons[index] = reason
            running -= len(reasons)
            yield b"".join(chunk(index, "".join(pieces), reasons.get(index)) for index, pieces in texts.items())
            if running:
                await asyncio.sleep(CHUNK_SECONDS)
        yield b"data: [DONE]\n\n"
    finally:
        server.finish(streams)
