"""The HTTP side of `charrnn serve`: an OpenAI-compatible API and a page, on Starlette.

    GET  /                      the page (charrnn/commands/page.html)
    GET  /health                200 {"status": "ok"} once the model answers; 503 while it loads
    GET  /v1/models             the loaded model, with charrnn's own facts under "charrnn"
    GET  /stats                 the engine's counts, and the requests the server ended or refused
    GET  /metrics               the same and more in Prometheus' format (with --metrics)
    POST /v1/completions        OpenAI's legacy completions, logprobs and echo included
    POST /v1/chat/completions   OpenAI's chat completions; messages rendered by --chat-format
    POST /v1/copies             how much of a text is found in the training text (charrnn's own)

Every choice of every request is one stream of the shared engine (state.py). Bad requests get a
4xx JSON ``{"error": {...}}`` in OpenAI's shape; with API keys, every route but /health and the
page's HTML needs ``Authorization: Bearer KEY``. Nothing a request says can name a file.
Starlette is imported by this package only: the rest of charrnn never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
import time
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from charrnn.commands.serving.answers import Collected, Scored, Shape, scored, streamed, whole
from charrnn.commands.serving.requests import BadRequest, parse_chat, parse_completion, parse_copies
from charrnn.commands.serving.state import Busy, Loading, Server
from charrnn.core.copies import NotChecked

MAX_BODY_BYTES = 1 << 20
DRAINED_BYTES = 16 << 20  # a body over the limit is read to here (and dropped) before the 413
RETRY_SECONDS = 1  # Retry-After when the server is full or still loading
UNAVAILABLE = {
    Busy: ("overloaded", "the server is at its limit of streams and waiting requests: retry shortly"),
    Loading: ("loading", "the model is still loading: retry shortly (GET /health says when it is ready)"),
}
OPEN_PATHS = ("/health",)  # answered without a key (and "/" itself: the page then asks for it)


def error_response(message: str, status: int, param: str | None = None, kind: str = "invalid_request_error", **extra):
    body = {"error": {"message": message, "type": kind, "param": param, "code": extra.pop("code", None)}}
    return JSONResponse(body, status_code=status, **extra)


def create_app(server: Server) -> Starlette:
    """The Starlette app for ``server``; whoever runs it also loads the model (``server.ready``)
    and runs its engine."""
    deployment = server.deployment
    metrics = None
    if deployment.metrics:
        from charrnn.commands.serving.metrics import CONTENT_TYPE, Metrics

        metrics = Metrics(server)

    async def page(request: Request) -> Response:
        html = (resources.files("charrnn") / "commands" / "page.html").read_text(encoding="utf-8")
        return HTMLResponse(html)

    async def health(request: Request) -> Response:
        if server.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": str(RETRY_SECONDS)})
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [server.model_card()]})

    async def stats(request: Request) -> Response:
        server.loaded  # noqa: B018 (503 while loading)
        return JSONResponse(server.stats())

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def completions(request: Request) -> Response:
        completion = parse_completion(await json_body(request), server.loaded, server.limits)
        prompt_scores = None
        if completion.echo and completion.logprobs is not None:  # the prompt scored, off the event loop
            prompt_scores = await asyncio.to_thread(_prompt_scores, server, completion.prompts, completion.logprobs)
        return await answer(request, completion, Shape(chat=False), prompt_scores)

    async def chat_completions(request: Request) -> Response:
        completion = parse_chat(await json_body(request), server.loaded, server.limits, deployment.chat)
        return await answer(request, completion, Shape(chat=True))

    async def copies(request: Request) -> Response:
        """The copy report of a text (the page underlines the copied stretches of what it generated)."""
        text, min_chars = parse_copies(await json_body(request), server.limits)
        try:
            report = await asyncio.to_thread(server.loaded.copies, text, min_chars)  # the first builds the index
        except NotChecked as exc:
            return error_response(f"copies not checked: {exc}", 409, "text", code="copies_unavailable")
        body = {name: getattr(report, name) for name in ("chars", "min_chars", "copied", "longest", "longest_text")}
        return JSONResponse({**body, "share": report.share, "spans": [list(span) for span in report.spans]})

    async def answer(request: Request, completion, shape: Shape, prompt_scores=None) -> Response:
        job = server.start(completion)
        request.state.prompts = completion.prompts
        collected = Collected(job, completion, prompt_scores)
        if completion.stream:
            return streamed(server, request, job, collected, shape)
        return await whole(server, request, job, collected, shape)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return error_response(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return error_response(str(exc), exc.status, exc.param)

    async def unavailable(request: Request, exc: Busy | Loading) -> Response:
        """503 with Retry-After: the server is full, or its model has not loaded yet."""
        code, message = UNAVAILABLE[type(exc)]
        headers = {"Retry-After": str(RETRY_SECONDS)}
        return error_response(message, 503, kind="server_error", code=code, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        server.loop = asyncio.get_running_loop()  # where the engine hands its text
        yield

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/v1/models", models),
        Route("/stats", stats),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/copies", copies, methods=["POST"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", prometheus))
    paths = frozenset(route.path for route in routes)  # metrics label only these: a client picks paths
    middleware = [Middleware(Guard, server=server, paths=paths, metrics=metrics)]
    if deployment.cors_origins:  # outermost: a preflight is answered before the key is asked for
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(deployment.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            ),
        )
    handlers = {HTTPException: not_found, BadRequest: bad_request, Busy: unavailable, Loading: unavailable}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)


def _prompt_scores(server: Server, prompts: list[str], top: int) -> list[list[Scored]]:
    """Each prompt's characters scored; the first has no probability (null, as OpenAI's)."""
    model = server.loaded
    return [[(p[0], None, None), *scored(model.score(p, top))] if p else [] for p in prompts]


async def json_body(request: Request):
    """The body as JSON: declared JSON (a form or text/plain POST is one any web page can send
    here without a CORS preflight), at most ``MAX_BODY_BYTES``, UTF-8, and not nested absurdly."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest("send the request body as JSON, with Content-Type: application/json", status=415)
    too_big = BadRequest(f"the request body is over {MAX_BODY_BYTES:,} bytes", status=413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAINED_BYTES:
        raise too_big  # not read at all: the client may see the connection reset instead
    body, size = bytearray(), 0
    async for piece in request.stream():  # kept up to the limit; beyond it read and dropped, so
        size += len(piece)  # that the client, still sending, reads the 413 rather than a reset
        if size <= MAX_BODY_BYTES:
            body += piece
        elif size > DRAINED_BYTES:
            raise too_big
    if size > MAX_BODY_BYTES:
        raise too_big
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the request body nests too deeply") from None


class Guard:
    """ASGI middleware around every route: the API key, then the access log line and the metrics.

    A key is compared with every configured key in constant time (``hmac.compare_digest``) and
    never written anywhere. The log line names the method, path, status and time, and the
    prompts and generated text only with ``--log-prompts``.
    """

    def __init__(self, app, server: Server, paths: frozenset[str], metrics=None):
        self.app, self.server, self.metrics, self.paths = app, server, metrics, paths
        self.keys = [key.encode() for key in server.deployment.keys]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, began, status = scope["path"], time.perf_counter(), [0]
        open_path = path in OPEN_PATHS or (path == "/" and scope["method"] == "GET")
        if self.keys and not open_path and not self._authorized(scope):
            response = error_response(
                "a valid API key is needed: send it as  Authorization: Bearer KEY",
                401,
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            return await self._finish(scope, response, receive, send, began)

        async def watched(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self._record(scope, status[0], began)

    def _authorized(self, scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = given.partition(b" ")
        found = False
        for known in self.keys:  # every key compared, each in constant time
            found |= hmac.compare_digest(key.strip(), known)
        return scheme.lower() == b"bearer" and found

    async def _finish(self, scope, response, receive, send, began):
        await response(scope, receive, send)
        self._record(scope, response.status_code, began)

    def _record(self, scope, status: int, began: float) -> None:
        route = scope.get("route")  # None when the key was refused before routing, or no route matched
        endpoint = route.path if route is not None else scope["path"] if scope["path"] in self.paths else "other"
        if self.metrics is not None:
            self.metrics.count(endpoint, status)
        if not self.server.deployment.access_log:
            return
        client = scope.get("client") or ("-", 0)
        line = f"{client[0]} {scope['method']} {scope['path']} {status} {time.perf_counter() - began:.3f}s"
        state = scope.get("state", {})
        if self.server.deployment.log_prompts and "prompts" in state:
            line += f" prompt={json.dumps(state['prompts'], ensure_ascii=False)}"
            line += f" text={json.dumps(state.get('completions'), ensure_ascii=False)}"
        print(line, file=sys.stderr, flush=True)
