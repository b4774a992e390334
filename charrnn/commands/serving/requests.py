"""What a request asks for: the fields of OpenAI's completions and chat completions, checked.

Both endpoints become one ``Completion``: prompts to continue, how much, how to draw, when to
stop, and whether to score. A chat's ``messages`` are rendered into one prompt by a
``ChatFormat`` (``--chat-format``), and its reply ends where the format says a message ends.
Every check raises ``BadRequest`` with OpenAI's ``param`` naming the field.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from charrnn.api import CharModel
from charrnn.config import MAX_SAMPLE_SEED
from charrnn.core.copies import MIN_COPY
from charrnn.generation.decoder import MAX_LOGPROBS
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS
from charrnn.sampling import Sampling

MAX_STOPS = 4  # as OpenAI's API
DEFAULT_CHAT_TOKENS = 500  # a chat reply without max_tokens: enough for a speech, not a book


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 2000  # characters one choice may ask for
    max_n: int = 8  # choices one request may ask for
    max_prompt: int = 20_000  # characters of prompt


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


@dataclass
class Completion:
    """A checked request, of either endpoint."""

    prompts: list[str]
    max_tokens: int
    sampling: Sampling
    n: int
    stops: list[str]
    seed: int
    stream: bool
    echo: bool = False
    logprobs: int | None = None  # None: no scores; k: each character's, and its k likeliest alternatives
    include_usage: bool = False  # a stream's last chunk carries the usage (stream_options.include_usage)


@dataclass(frozen=True)
class ChatFormat:
    """How ``messages`` become a prompt, and where the reply ends (docs/serving.md#chat)."""

    name: str
    headers: bool  # each message under a "NAME:" line (the message's name, else its role in capitals)
    reply_stop: str  # the reply ends before this text

    def render(self, messages: list[tuple[str, str]]) -> str:
        """(speaker, content) pairs -> the prompt, ending where the reply begins."""
        if self.headers:
            return "".join(f"{speaker}:\n{content}\n\n" for speaker, content in messages) + "ASSISTANT:\n"
        return "".join(f"{content}\n" for _, content in messages)


CHAT_FORMATS = {
    # A play's layout (tinyshakespeare's): the speaker's name on a line, the speech, a blank line.
    "play": ChatFormat("play", headers=True, reply_stop="\n\n"),
    # One line per message, and a one-line reply.
    "lines": ChatFormat("lines", headers=False, reply_stop="\n"),
}
ROLES = ("system", "developer", "user", "assistant")


def field(body: dict, name: str, kinds: tuple[type, ...], default: Any) -> Any:
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
        value = field(body, opt.name, kinds, HTTP_DEFAULTS.get(opt.name, opt.default))
        problem = opt.problem(value)
        if problem is not None:
            raise BadRequest(f"'{opt.name}' {problem}", opt.name)
        values[opt.name] = float(value) if opt.type is float and value is not None else value
    if values["top_p"] == 1:
        values["top_p"] = None
    return Sampling(**values)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    field(body, "model", (str,), None)  # any name is accepted: this server has one model
    return body


def _checked(body: dict, prompts: list[str], max_tokens: int, model: CharModel, limits: Limits, **given) -> Completion:
    """The fields both endpoints share, checked against OpenAI's meaning and this model."""
    if sum(len(p) for p in prompts) > limits.max_prompt:
        raise BadRequest(f"the prompt is longer than this server's {limits.max_prompt:,} characters", "prompt")
    unknown = sorted({c for p in prompts for c in model.vocab.unknown_chars(p)})
    if unknown:
        shown = " ".join(repr(c) for c in unknown[:20])
        raise BadRequest(f"the prompt has characters the model has never seen: {shown}", "prompt")
    if not 0 <= max_tokens <= limits.max_tokens:
        raise BadRequest(
            f"'max_tokens' must be from 0 to {limits.max_tokens} (characters), got {max_tokens}", "max_tokens"
        )
    sampling = _sampling(body)
    n = field(body, "n", (int,), 1)
    if not 1 <= n <= limits.max_n:
        raise BadRequest(f"'n' must be from 1 to {limits.max_n}, got {n}", "n")
    if len(prompts) * n > limits.max_n:
        raise BadRequest(f"prompts x n must be at most {limits.max_n}, got {len(prompts) * n}", "n")
    stop = field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOPS} strings", "stop")
    seed = field(body, "seed", (int,), None)
    max_seed = MAX_SAMPLE_SEED + 1 - len(prompts) * n  # choice i uses seed + i, as `charrnn generate`
    if seed is not None and not 0 <= seed <= max_seed:
        raise BadRequest(f"'seed' must be from 0 to {max_seed} for {len(prompts) * n} choice(s), got {seed}", "seed")
    return Completion(
        include_usage=_include_usage(body),
        prompts=prompts,
        max_tokens=max_tokens,
        sampling=sampling,
        n=n,
        stops=[s for s in stops if s],  # an empty stop text would end every reply at once
        seed=secrets.randbits(31) if seed is None else seed,
        stream=field(body, "stream", (bool,), False),
        **given,
    )


def _top(body: dict, name: str) -> int:
    top = field(body, name, (int,), 0)
    if not 0 <= top <= MAX_LOGPROBS:
        raise BadRequest(f"'{name}' must be from 0 to {MAX_LOGPROBS}, got {top}", name)
    return top


def parse_completion(body: Any, model: CharModel, limits: Limits) -> Completion:
    """A /v1/completions request; BadRequest if any field is wrong."""
    body = _object(body)
    prompt = field(body, "prompt", (str, list), "")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")
    logprobs = _top(body, "logprobs") if body.get("logprobs") is not None else None
    max_tokens = field(body, "max_tokens", (int,), 16)
    echo = field(body, "echo", (bool,), False)
    return _checked(body, prompts, max_tokens, model, limits, echo=echo, logprobs=logprobs)


def _include_usage(body: dict) -> bool:
    return bool(field(body, "stream_options", (dict,), {}).get("include_usage"))


def parse_chat(body: Any, model: CharModel, limits: Limits, chat: ChatFormat) -> Completion:
    """A /v1/chat/completions request: its messages rendered into one prompt by ``chat``."""
    body = _object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
    rendered = [_message(message, i) for i, message in enumerate(messages)]
    logprobs = None
    if field(body, "logprobs", (bool,), False):
        logprobs = _top(body, "top_logprobs")
    elif body.get("top_logprobs") is not None:
        raise BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    default = min(DEFAULT_CHAT_TOKENS, limits.max_tokens)
    max_tokens = field(body, "max_tokens", (int,), field(body, "max_completion_tokens", (int,), default))
    completion = _checked(body, [chat.render(rendered)], max_tokens, model, limits, logprobs=logprobs)
    completion.stops.append(chat.reply_stop)
    return completion


def parse_copies(body: Any, limits: Limits) -> tuple[str, int]:
    """A /v1/copies request: the text, and the shortest stretch that counts as copied."""
    body = _object(body)
    text = field(body, "text", (str,), None)
    if text is None:
        raise BadRequest("'text' is required: the text to look for in the training text", "text")
    if len(text) > limits.max_prompt:
        raise BadRequest(f"'text' is longer than this server's {limits.max_prompt:,} characters", "text")
    min_chars = field(body, "min_chars", (int,), MIN_COPY)
    if min_chars < 1:
        raise BadRequest(f"'min_chars' must be at least 1, got {min_chars}", "min_chars")
    return text, min_chars


def _message(message: Any, index: int) -> tuple[str, str]:
    """One message's speaker and its text."""
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"'{param}' must be an object with 'role' and 'content'", param)
    role = message.get("role")
    if role not in ROLES:
        raise BadRequest(f"'{param}.role' must be one of {', '.join(ROLES)}, got {json.dumps(role)[:40]}", param)
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only, joined
        if not all(isinstance(part, dict) and part.get("type") == "text" for part in content):
            raise BadRequest(f"'{param}.content' may hold only text parts: this model reads text", param)
        content = "".join(str(part.get("text", "")) for part in content)
    if not isinstance(content, str):
        raise BadRequest(f"'{param}.content' must be a string", param)
    name = message.get("name") or role.upper()
    if not isinstance(name, str) or "\n" in name:
        raise BadRequest(f"'{param}.name' must be a one-line string", param)
    return name, content
