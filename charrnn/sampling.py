"""How the next character is chosen: declared once, and the same object at run time.

``Sampling`` is every front-end's settings: the CLI's flags (generate, chat) are built from these
declarations, chat's /commands and the HTTP request fields are parsed and checked by them
(``Option.problem``: one set of bounds, one message), and the decoder (generation/decoder.py)
draws with an instance of it. Adding a rule is a field here and its arithmetic in
generation/draw.py.

The order a draw applies them, per row: the penalties on the model's logits, then the
temperature, then top-k, top-p and min-p (each keeps the most likely character), then the draw.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from charrnn.options import Option, declared, option

SAMPLING = ("generate", "chat")  # the commands whose flags these are


@dataclass(frozen=True)
class Sampling:
    """One row's sampling settings (``check`` before drawing with one built by hand)."""

    temperature: float = option(
        0.8, "Divides the logits: below 1 is safer and more repetitive, above 1 wilder.", SAMPLING, low=0, low_open=True
    )
    top_k: int | None = option(
        None, "Draw only among the K most likely characters.", SAMPLING, low=1, show_default="off"
    )
    top_p: float | None = option(
        None,
        "Draw only among the most likely characters whose probabilities add up to P (nucleus).",
        SAMPLING,
        low=0,
        high=1,
        low_open=True,
        show_default="off",
    )
    min_p: float = option(
        0.0,
        "Draw only among the characters at least P times as likely as the most likely one (0: off).",
        SAMPLING,
        low=0,
        high=1,
    )
    greedy: bool = option(False, "Always take the most likely character: deterministic, often repetitive.", SAMPLING)
    frequency_penalty: float = option(
        0.0,
        "Subtract this times the number of times a character was drawn so far from its logit "
        "(OpenAI's meaning; the prime not counted).",
        SAMPLING,
        low=-2,
        high=2,
    )
    presence_penalty: float = option(
        0.0,
        "Subtract this from the logit of every character drawn so far (OpenAI's meaning; the prime not counted).",
        SAMPLING,
        low=-2,
        high=2,
    )
    repetition_penalty: float = option(
        1.0,
        "Divide the positive logits (multiply the negative ones) of the characters in the last "
        "--repetition-window of the text, prime included, by this (CTRL, llama.cpp; 1: off).",
        SAMPLING,
        low=0.01,
        high=100,
    )
    repetition_window: int = option(
        64, "How many of the latest characters --repetition-penalty looks at.", SAMPLING, low=1
    )

    def check(self) -> None:
        """Raise ValueError, naming the setting, for a value no declaration allows."""
        for opt in declared(Sampling):
            opt.check(getattr(self, opt.name))

    @cached_property
    def fusable(self) -> bool:
        """Whether a compiled step can draw with these settings itself: plain temperature sampling."""
        return not (self.greedy or self.top_k or self.top_p or self.min_p or self.penalised)

    @cached_property
    def penalised(self) -> bool:
        """Whether the draw needs what the row drew (counts) or read (the repetition window)."""
        return bool(self.frequency_penalty or self.presence_penalty or self.repetition_penalty != 1)

    @cached_property
    def filters(self) -> tuple[int | None, float | None, float, bool]:
        """What rows must share to be drawn as one group (the penalties are per row anyway)."""
        return self.top_k, self.top_p, self.min_p, self.greedy

    def describe(self) -> str:
        """'temperature 0.8, top-k off, ...': every setting, as chat shows them."""
        return ", ".join(f"{opt.name.replace('_', '-')} {show(getattr(self, opt.name))}" for opt in OPTIONS)


def show(value: Any) -> str:
    if value is None or value is False:
        return "off"
    return "on" if value is True else f"{value:g}" if isinstance(value, float) else str(value)


OPTIONS: list[Option] = declared(Sampling)
BY_NAME = {opt.name: opt for opt in OPTIONS}


def changed(sampling: Sampling, name: str, value: Any) -> Sampling:
    """``sampling`` with one setting replaced; ValueError (naming it) if the value is not allowed."""
    BY_NAME[name].check(value)
    return dataclasses.replace(sampling, **{name: value})
