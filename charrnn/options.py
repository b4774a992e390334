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
    """A dataclass field that is also a command option (see the module docstring)."""
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
        """Raise ValueError if ``value`` is not allowed (what the CLI's types check, for the API)."""
        if value is None and self.optional:
            return
        expected = (int, float) if self.type is float else self.type
        if isinstance(value, bool) and self.type is not bool or not isinstance(value, expected):
            raise ValueError(f"{self.name} must be {self.type.__name__}, got {value!r}")
        spec = self.spec
        if spec.parse is not None:
            spec.parse(value)
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(spec.choices)}, got {value!r}")
        if self.type in (int, float):
            if not math.isfinite(value):
                raise ValueError(f"{self.name} must be a finite number, got {value!r}")
            if spec.low is not None and (value < spec.low or spec.low_open and value == spec.low):
                raise ValueError(f"{self.name} must be {'>' if spec.low_open else '>='} {spec.low:g}, got {value!r}")
            if spec.high is not None and (value > spec.high or spec.high_open and value == spec.high):
                raise ValueError(f"{self.name} must be {'<' if spec.high_open else '<='} {spec.high:g}, got {value!r}")


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
