"""The plan: which model to train on this text, for this budget, on this machine; what a plan
holds, how it reads, and the constants of the rule (``planner`` makes it, ``scaling`` predicts).

A new run that is not given its shape gets one chosen before the first step, from

- the text: how many characters it trains on (U) and how many distinct ones;
- the budget: --time-limit, --max-steps and --max-epochs, the earliest end of those given
  (with none: DEFAULT_MINUTES' worth of steps);
- the machine: the training speed of each candidate shape, measured here (``speeds.SpeedBook``).

The rule (``scaling``) is measured (docs/results.md, "The plan"): the widest shape that makes
STEPS_PER_UNIT optimizer steps per hidden unit in the budget, as long as the text can feed it (``text_feeds``), under
a time budget, where the characters seen are the measured speed times the time, at most
MAX_PASSES over the text; under a step or pass budget, the shape that the time the default shape
needs for those steps would give. Dropout and weight drop follow the number of passes
(``scaling.REGULARISATION``), the learning rate the number of steps (``scaling.learning_rate``).
Every option the user gives wins over its part of the plan.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from charrnn.config import ModelConfig, TrainConfig
from charrnn.core.corpus import Scan
from charrnn.training.scaling import (
    ENOUGH_PASSES,
    LONG_RATE,
    LOOSE_BOUND_WIDTH,
    PARAMS_PER_CHAR,
    SHORT_RATE,
    SHORT_RUN_STEPS,
    STEPS_PER_UNIT,
    WIDER_PARAMS_PER_CHAR,
    recurrent_parameters,
)
from charrnn.training.speeds import BUSY_CORES, Shape

CANDIDATES = tuple(Shape(2, hidden) for hidden in (128, 256, 384, 512, 768, 1024))
DEFAULT_MINUTES = 10  # the budget of a run given none (docs/training.md#no-budget-given says why)
ADAPTIVE_FROM = 2000  # alphabets of this many characters or more get the adaptive head (docs/results.md)
VALIDATION_SHARE = 0.1  # validations take at most about this share of a run's time
EVAL_SPEEDUP = 3.0  # scoring a character costs about a third of training on it (no backward, no update)
MIN_EVAL_EVERY = 400
# Passes over a text past which a regularised model learns nothing more (docs/results.md: on 100 KB,
# 2 x 256 with dropout and weight drop 0.45 had its best at pass 115 of 126; none went further).
MAX_PASSES = 120
PLANNED_FIELDS = ("num_layers", "hidden_size", "dropout", "weight_drop", "lr", "head", "eval_every", "max_steps")


@dataclass(frozen=True)
class TextFacts:
    """What the plan needs to know about the text."""

    train_chars: int
    val_chars: int  # scored at each validation: the split, or --val-chars of it
    alphabet: int
    documents: int

    @classmethod
    def of(cls, found: Scan, train_config: TrainConfig) -> TextFacts:
        total = sum(document.chars for document in found.documents)
        if found.val_document is not None:
            train, val = total, found.val_document.chars
        else:
            val = round(total * train_config.val_frac)
            train = total - val
        scored = min(val, train_config.val_chars or val)
        return cls(max(1, train), max(1, scored), len(found.characters), len(found.documents))

    def describe(self) -> str:
        docs = _plural(self.documents, "document")
        return f"{_count(self.train_chars)} training characters, {self.alphabet:,} distinct, {docs}"


@dataclass(frozen=True)
class Budget:
    """What ends the run: minutes of training time, optimizer steps, passes over the text (the
    earliest of those given), or, with none given, DEFAULT_MINUTES turned into steps."""

    minutes: float | None = None
    steps: int | None = None
    epochs: int | None = None

    @classmethod
    def of(cls, config: TrainConfig) -> Budget:
        return cls(config.time_limit, config.max_steps, config.max_epochs)

    @property
    def given(self) -> bool:
        return any(limit is not None for limit in (self.minutes, self.steps, self.epochs))

    @property
    def seconds(self) -> float | None:
        """The time to plan for: the limit given, the default when none is, None for steps or passes only."""
        if self.minutes is not None:
            return self.minutes * 60
        return None if self.given else DEFAULT_MINUTES * 60

    def chars_cap(self, chars_per_window: int, train_chars: int) -> float:
        """The characters --max-steps and --max-epochs allow (infinity when neither is given)."""
        caps = [self.steps * chars_per_window] if self.steps is not None else []
        caps += [self.epochs * train_chars] if self.epochs is not None else []
        return min(caps, default=math.inf)

    def describe(self) -> str:
        if not self.given:
            limits = "--time-limit, --max-steps or --max-epochs change it"
            return f"none given: {DEFAULT_MINUTES} minutes' worth of steps ({limits})"
        parts = [f"{self.minutes:g} min (--time-limit)"] if self.minutes is not None else []
        parts += [f"{self.steps:,} steps (--max-steps)"] if self.steps is not None else []
        parts += [f"{_plural(self.epochs, 'pass', 'passes')} (--max-epochs)"] if self.epochs is not None else []
        return " or ".join(parts) + (", whichever ends first" if len(parts) > 1 else "")


@dataclass(frozen=True)
class Option:
    """One shape the plan weighed: its measured speed, what it would see in the budget, whether the
    text can feed it (``scaling.text_feeds``)."""

    shape: Shape
    chars_per_second: float
    chars_seen: float
    passes: float
    steps: float
    fits_text: bool


@dataclass(frozen=True)
class Plan:
    """What a run was planned to be, and why: kept in config.toml and the checkpoints."""

    shape: Shape
    cell: str
    parameters: int
    dropout: float
    weight_drop: float
    lr: float
    head: str
    eval_every: int
    max_steps: int | None  # the plan's own step limit: no budget given, or a text used up early
    steps: int  # optimizer steps the run is expected to make
    chars_seen: float
    passes: float
    seconds: float
    chars_per_second: float
    budget: Budget
    text: TextFacts
    options: tuple[Option, ...]
    kept: tuple[str, ...]  # the options the user gave, which the plan left alone
    busy_cores: float = 0.0  # other programs' load while speeds were measured

    @property
    def used_up(self) -> bool:
        """Whether the run ends at MAX_PASSES, before its time would."""
        return self.passes >= MAX_PASSES * 0.999

    def choices(self) -> dict[str, object]:
        """The options the plan sets, by name, leaving out those the user gave."""
        chosen = {
            "num_layers": self.shape.num_layers,
            "hidden_size": self.shape.hidden_size,
            "dropout": self.dropout,
            "weight_drop": self.weight_drop,
            "lr": self.lr,
            "head": self.head,
            "eval_every": self.eval_every,
            "max_steps": self.max_steps,
        }
        return {name: value for name, value in chosen.items() if name not in self.kept}

    def apply(self, model_config: ModelConfig, train_config: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
        """The configs with the plan's choices in every field the user left to it."""
        chosen = self.choices()
        model_names = {field.name for field in dataclasses.fields(ModelConfig)}
        model_config = dataclasses.replace(model_config, **{k: v for k, v in chosen.items() if k in model_names})
        train_config = dataclasses.replace(train_config, **{k: v for k, v in chosen.items() if k not in model_names})
        return model_config, train_config

    def line(self) -> str:
        """The one line a run starts with."""
        weight_drop = f", weight drop {self.weight_drop:g}" if self.weight_drop else ""
        settings = f"dropout {self.dropout:g}{weight_drop}, lr {self.lr:g}"
        head = ", adaptive head" if self.head == "adaptive" else ""
        over = f"~{self.passes:,.1f} passes over {_count(self.text.train_chars)} characters"
        speed = f"at ~{self.chars_per_second:,.0f} chars/s measured"
        clock_only = self.budget.steps is None and self.budget.epochs is None and self.max_steps is None
        if self.budget.minutes is not None and clock_only:
            length = f"in {self.budget.minutes:g} min {speed}"
        else:
            of = f" of the {self.budget.minutes:g} min" if self.budget.minutes is not None else ""
            length = f"in {self.steps:,} steps, ~{_duration(self.seconds)}{of} {speed}"
        model = f"{self.shape} {self.cell.upper()}, {_count(self.parameters)} parameters"
        return f"plan: {model}, {settings}{head}: {over} {length}"

    def reasons(self) -> list[str]:
        """Why: the text, the budget, each shape weighed, and the rules that set the rest."""
        given = {name: " (given)" if name in self.kept else "" for name in PLANNED_FIELDS}
        lines = [f"text: {self.text.describe()}", f"budget: {self.budget.describe()}"]
        lines.append(
            f"shapes weighed, smallest first (speed measured on this machine): the widest that makes "
            f"{STEPS_PER_UNIT} steps per unit (or {ENOUGH_PASSES} passes) and has at most {PARAMS_PER_CHAR:g} "
            f"recurrent parameters per training character ({WIDER_PARAMS_PER_CHAR:g} if wider than {LOOSE_BOUND_WIDTH})"
        )
        for option in self.options:
            mark = "  <- chosen" if option.shape == self.shape else ""
            too_big = "" if option.fits_text else "  (too big for the text)"
            lines.append(
                f"  {str(option.shape):>10}  {option.chars_per_second:>9,.0f} chars/s  {option.steps:>9,.0f} steps = "
                f"{option.passes:>6,.1f} passes  {recurrent_parameters(option.shape) / self.text.train_chars:>7,.1f} "
                f"parameters/char{too_big}{mark}"
            )
        if self.used_up:
            lines.append(
                f"length: {self.steps:,} steps, {MAX_PASSES} passes over the text: more would learn it by heart "
                "rather than better, so the run ends before its budget"
            )
        lines.append(
            f"regularisation: {self.passes:,.1f} passes -> dropout {self.dropout:g}{given['dropout']}, weight drop "
            f"{self.weight_drop:g}{given['weight_drop']} (more passes over the same text need more of both)"
        )
        lines.append(
            f"learning rate: {self.lr:g}{given['lr']} ({self.steps:,} steps of {self.shape}: a run of under "
            f"{SHORT_RUN_STEPS:,} steps learns faster at up to {SHORT_RATE:g}, less for a wider model; a longer "
            f"one at {LONG_RATE:g})"
        )
        lines.append(
            f"head: {self.head}{given['head']} ({self.text.alphabet:,} characters; the adaptive head from "
            f"{ADAPTIVE_FROM:,})"
        )
        spacing = "as given" if given["eval_every"] else f"at most ~{VALIDATION_SHARE:.0%} of the time"
        scored = _count(self.text.val_chars)
        lines.append(f"validation every {self.eval_every:,} steps, {scored} characters each ({spacing})")
        if self.busy_cores >= BUSY_CORES:
            lines.append(
                f"other programs kept ~{self.busy_cores:.1f} cores busy while speeds were measured: they were "
                "measured on the cores left, used for this plan and not cached"
            )
        if self.kept:
            lines.append(f"kept as given: {', '.join(self.kept)}")
        return lines

    def to_dict(self) -> dict:
        """Plain types only, for the checkpoint (loaded with weights_only=True)."""
        shape = [self.shape.num_layers, self.shape.hidden_size]
        return {"line": self.line(), "reasons": self.reasons(), "shape": shape, "chose": self.choices()}


def _count(number: float) -> str:
    """1,115,394 -> "1.1 M"; 240,000 -> "240 k"; 900 -> "900"."""
    if number >= 1e6:
        return f"{number / 1e6:.1f} M"
    if number >= 1e4:
        return f"{number / 1e3:.0f} k"
    return f"{number:,.0f}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else many or one + 's'}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
