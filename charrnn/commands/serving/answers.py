"""Answers in OpenAI's shapes: a whole response, or server-sent events as the text is drawn.

The two endpoints differ only in how a choice is written (``Shape``): a completion's choice has
``text`` and the legacy ``logprobs`` (tokens, token_logprobs, top_logprobs, text_offset), a chat's
has a ``message`` (a ``delta`` when streamed) and ``logprobs.content``. A token is a character.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from charrnn.commands.serving.requests import Completion
from charrnn.commands.serving.state import Job, Server
from charrnn.generation.decoder import CharScore

CHUNK_SECONDS = 0.03  # a streamed choice gets at most one chunk per this long (the first at once)
# A scored character: (character, log-probability or None for the prompt's first, alternatives).
Scored = tuple[str, float | None, tuple[tuple[str, float], ...] | None]


def scored(scores: tuple[CharScore, ...] | list[CharScore]) -> list[Scored]:
    return [(s.char, s.logprob, s.top) for s in scores]


@dataclass(frozen=True)
class Shape:
    """How one endpoint writes a choice."""

    chat: bool

    @property
    def whole_object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def choice(self, index: int, text: str, reason: str | None, scores: list[Scored] | None, offset: int, first: bool):
        """A choice of a whole answer (``first`` None) or of a chunk (``first``: its first chunk)."""
        if self.chat:
            logprobs = None if scores is None else {"content": [_chat_score(s) for s in scores], "refusal": None}
            if first is None:
                message = {"role": "assistant", "content": text, "refusal": None}
                return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": reason}
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        logprobs = None if scores is None else _legacy(scores, offset)
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}


def _legacy(scores: list[Scored], offset: int) -> dict[str, list]:
    """OpenAI's completions ``logprobs``; ``offset``: where the first character is in prompt + text."""
    return {
        "tokens": [char for char, _, _ in scores],
        "token_logprobs": [value for _, value, _ in scores],
        "top_logprobs": [None if top is None else dict(top) for _, _, top in scores],
        "text_offset": list(range(offset, offset + len(scores))),
    }


def _chat_score(score: Scored) -> dict[str, Any]:
    char, value, top = score
    return {
        "token": char,
        "logprob": value,
        "bytes": list(char.encode("utf-8", "surrogatepass")),
        "top_logprobs": [{"token": c, "logprob": v, "bytes": list(c.encode("utf-8", "surrogatepass"))} for c, v in top],
    }


class Collected:
    """What a job's choices have drawn so far, and their ends."""

    def __init__(self, job: Job, completion: Completion, prompt_scores: list[list[Scored]] | None):
        self.count = len(job.streams)
        self.prompts = [p for p in completion.prompts for _ in range(completion.n)]
        self.echo = completion.echo
        self.include_usage = completion.include_usage
        self.wants_scores = completion.logprobs is not None
        self.texts = [prompt if self.echo else "" for prompt in self.prompts]
        self.scores: list[list[Scored]] = [[] for _ in range(self.count)]
        if prompt_scores is not None:  # echo: the prompt's own scores come first
            self.scores = [list(prompt_scores[i // completion.n]) for i in range(self.count)]
        self.reasons: list[str | None] = [None] * self.count

    @property
    def running(self) -> bool:
        return None in self.reasons

    def add(self, item: tuple) -> list[Scored] | None:
        """One queued piece: its scores (empty when none were asked for), or None if its choice
        had already ended (a later end of the same choice, from ``Server.end``)."""
        index, text, reason, scores = item
        if self.reasons[index] is not None:
            return None
        self.texts[index] += text
        new = scored(scores) if self.wants_scores else []
        self.scores[index] += new
        self.reasons[index] = reason
        return new


async def next_items(server: Server, job: Job, request: Request | None) -> list:
    """What the job's queue holds, waiting for at least one item. Past the request's deadline the
    job is ended (``Server.end`` queues an end for every choice: those unfinished end with
    "timeout"). A whole answer's client is checked every second: if it has left, ``ConnectionError``."""
    deadline = job.started + server.deployment.request_timeout
    items = []
    while not items and job.queue.empty():
        left = deadline - time.perf_counter()
        if left <= 0:
            server.end(job, "timeout")  # a job ended before has its ends queued already
            continue
        try:
            items.append(await asyncio.wait_for(job.queue.get(), timeout=min(left, 1.0)))
        except TimeoutError:
            if request is not None and await request.is_disconnected():
                raise ConnectionError from None
    while not job.queue.empty():
        items.append(job.queue.get_nowait())
    return items


def header(server: Server, shape: Shape, streamed: bool) -> dict[str, Any]:
    prefix = "chatcmpl" if shape.chat else "cmpl"
    kind = shape.chunk_object if streamed else shape.whole_object
    made = int(time.time())
    return {"id": f"{prefix}-{secrets.token_hex(12)}", "object": kind, "created": made, "model": server.name}


def usage(job: Job, collected: Collected) -> dict[str, int]:
    prompt = sum(len(p) for p in collected.prompts)
    completion = sum(stream.generated for stream in job.streams)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def whole(server: Server, request: Request, job: Job, collected: Collected, shape: Shape) -> Response:
    """Wait for every choice to end (or the deadline), then answer at once."""
    try:
        while collected.running:
            for item in await next_items(server, job, request):
                collected.add(item)
    except ConnectionError:
        return Response(status_code=499)
    finally:
        server.finish(job)
    choices = []
    for i in range(collected.count):
        scores = collected.scores[i] if collected.wants_scores else None
        offset = 0 if collected.echo else len(collected.prompts[i])
        choices.append(shape.choice(i, collected.texts[i], collected.reasons[i], scores, offset, None))
    request.state.completions = collected.texts
    body = {**header(server, shape, False), "choices": choices, "usage": usage(job, collected)}
    return JSONResponse(body)


def streamed(server: Server, request: Request, job: Job, collected: Collected, shape: Shape) -> Response:
    events = _events(server, request, job, collected, shape)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(server: Server, request: Request, job: Job, collected: Collected, shape: Shape):
    """Server-sent events: per choice, chunks of the text drawn since its last one (the last
    carries the finish reason), then ``data: [DONE]``.

    The first text goes out at once; after that, chunks go out at most every ``CHUNK_SECONDS``,
    each carrying everything drawn meanwhile: far fewer, larger writes than one per character,
    which leaves the cores to the engine (and to the client) when many streams are active.
    """
    base = header(server, shape, True)
    offsets = [0 if collected.echo else len(prompt) for prompt in collected.prompts]
    started = [False] * collected.count
    wants = collected.wants_scores

    def chunk(index: int, text: str, reason: str | None, scores: list[Scored]) -> bytes:
        choice = shape.choice(index, text, reason, scores if wants else None, offsets[index], not started[index])
        started[index] = True
        offsets[index] += len(scores)
        return f"data: {json.dumps({**base, 'choices': [choice]}, ensure_ascii=False)}\n\n".encode()

    try:
        if collected.echo:  # the prompt (and its scores) first
            yield b"".join(chunk(i, collected.texts[i], None, collected.scores[i]) for i in range(collected.count))
        while collected.running:
            pieces: dict[int, list] = {}
            for item in await next_items(server, job, None):
                new = collected.add(item)
                if new is not None:
                    index, text, reason, _ = item
                    texts, scores_so_far, _ = pieces.setdefault(index, [[], [], None])
                    texts.append(text)
                    scores_so_far += new
                    pieces[index][2] = reason
            yield b"".join(chunk(i, "".join(texts), reason, s) for i, (texts, s, reason) in pieces.items())
            if collected.running:
                await asyncio.sleep(CHUNK_SECONDS)
        if collected.include_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage(job, collected)})}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        server.finish(job)
        request.state.completions = collected.texts
