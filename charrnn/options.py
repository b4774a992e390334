"""How an option is declared: once, beside its default, with everything the commands need.

An option is a field of one of the config dataclasses (``charrnn.config``), declared with
``option(default, help, ...)``: its name, type (the annotation), default, help, allowed values and
the commands that take it live in that one line. The CLI builds its click options from these
declarations, the Python API checks and documents its keyword arguments with them, and
docs/options.md is rendered from the CLI that results; tests/test_options.py fails when any of
them disagree. This module has no click in it: the library never needs the CLI to run.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """What a declaration says about an option beyond its name, type and default."""

    help: str
    commands: tuple[str, ...]  # the commands that take it, e.g. ("train",)
    low: float | None = None  # smallest allowed value
    high: float | None = None  # largest allowed value
    low_open: bool = False  # the bound itself is not allowed
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    show_default: str | None = None  # shown instead of the default value (e.g. "off")
    fixed_on_resume: bool = False  # shapes the model or the data: a resume cannot change it
    negatable: bool = False  # a bool shown as --name/--no-name rather than a plain flag
    # A str option with a form of its own (say "auto" or a number): raises ValueError, with the
    # message a user sees, for a value it does not take.
    parse: Callable[[str], Any] | None = None


def option(default: Any, help: str, commands: tuple[str, ...], **spec: Any) -> Any:
    """A dataclass field that is also a command option (see the module docstring). `charrnn plan`
    takes every option `charrnn train` takes: it shows what train would make of them."""
    if "train" in commands:
        commands = (*commands, "plan")
    return dataclasses.field(default=default, metadata={"option": Spec(help, commands, **spec)})


@dataclass(frozen=True)
class Option:
    """One declared option, resolved: the field's name, type and default with its ``Spec``."""

    name: str
    type: type  # int, float, str or bool (``| None`` stripped: ``optional`` says it)
    optional: bool  # None is a value: "not set"
    default: Any
    spec: Spec
    owner: type  # the config dataclass it belongs to

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Raise ValueError, naming the option, if ``value`` is not allowed (the API's check)."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{self.name} {problem}")

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` ("must be >= 1, got 0"), or None: the one message every
        front-end (a CLI flag, a chat command, an HTTP field, an API argument) shows, under its own name."""
        if value is None and self.optional:
            return None
        expected = (int, float) if self.type is float else self.type
        if isinstance(value, bool) and self.type is not bool or not isinstance(value, expected):
            return f"must be {'a number' if self.type is float else self.type.__name__}, got {value!r}"
        spec = self.spec
        if spec.parse is not None:
            try:
                spec.parse(value)
            except ValueError as exc:
                return str(exc)
        if spec.choices is not None and value not in spec.choices:
            return f"must be one of {', '.join(spec.choices)}, got {value!r}"
        if self.type in (int, float):
            if not math.isfinite(value):
                return f"must be a finite number, got {value!r}"
            if spec.low is not None and (value < spec.low or spec.low_open and value == spec.low):
                return f"must be {'>' if spec.low_open else '>='} {_bound(spec.low)}, got {value!r}"
            if spec.high is not None and (value > spec.high or spec.high_open and value == spec.high):
                return f"must be {'<' if spec.high_open else '<='} {_bound(spec.high)}, got {value!r}"
        return None

    def from_text(self, text: str) -> Any:
        """The value a person typed (a chat command): a number, on/off for a flag, off for an
        optional setting's None; ValueError with the declaration's message otherwise."""
        word = text.strip().lower()
        if self.type is bool:
            if word not in ("on", "off"):
                raise ValueError(f"takes on or off, got {text.strip()!r}")
            return word == "on"
        if self.optional and word in ("off", "none"):
            return None
        try:
            value = self.type(text.strip())
        except ValueError:
            kind = "an integer" if self.type is int else "a number"
            raise ValueError(f"must be {kind}, got {text.strip()!r}") from None
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def _bound(value: float) -> str:
    """A bound as a person reads it: 18446744073709551615, not 1.84467e+19; 0.01 and 1e-05 as floats print."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def declared(config_cls: type) -> list[Option]:
    """The options declared on a config dataclass, in field order."""
    hints = typing.get_type_hints(config_cls)
    options = []
    for field in dataclasses.fields(config_cls):
        spec = field.metadata.get("option")
        if spec is None:
            continue
        value_type, optional = _unwrap_optional(hints[field.name])
        options.append(Option(field.name, value_type, optional, field.default, spec, config_cls))
    return options


def _unwrap_optional(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return args[0], True
    return hint, False


def options_for(command: str, *config_classes: type) -> list[Option]:
    """The options of ``config_classes`` that ``command`` takes."""
    return [opt for cls in config_classes for opt in declared(cls) if command in opt.spec.commands]


def build(config_cls: type, values: dict[str, Any]) -> Any:
    """A ``config_cls`` from those of ``values`` it declares, each checked (ValueError if not allowed)."""
    fields = {field.name for field in dataclasses.fields(config_cls)}
    chosen = {name: value for name, value in values.items() if name in fields}
    by_name = {opt.name: opt for opt in declared(config_cls)}
    for name, value in chosen.items():
        if name in by_name:
            by_name[name].check(value)
    return config_cls(**chosen)


def list_as_keywords(function: Callable, options: list[Option], defaults: dict[str, Any] | None = None) -> None:
    """Give ``function`` (which takes them as ``**kwargs``) a signature listing ``options`` as
    keyword arguments, so that help(), IDEs and the options test see them; ``defaults`` overrides some."""
    defaults = defaults or {}
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    listed = [
        inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(opt.name, opt.default))
        for opt in options
    ]
    function.__signature__ = signature.replace(parameters=[*own, *listed])  # type: ignore[attr-defined]
