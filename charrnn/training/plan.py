"""The plan: which model to train on this text, for this budget, on this machine.

A new run that is not given its shape gets one chosen before the first step, from

- the text: how many characters it trains on (U), how many distinct ones, how many documents;
- the budget: --time-limit, --max-steps or --max-epochs (without any: DEFAULT_MINUTES' worth of steps);
- the machine: the training speed of each candidate shape, measured here (``speeds.SpeedBook``).

The rule is a fit to measured runs (experiments/fit_plan.py; the runs and the fit are in
docs/results.md): the validation loss of a regularised LSTM with N recurrent parameters that has
seen D characters of a text of U characters is about

    loss ≈ E(text) + A / N^alpha + B / D_eff^beta,   D_eff = D                       when D <= U
                                                     D_eff = U (1 + R (1 - e^-(D/U - 1)/R))  beyond

where repeated passes count for less and less (Muennighoff et al., 2023, "Scaling data-constrained
language models", fitted here to characters). E is the text's own floor and does not depend on
the model, so the plan needs only the rest. Under a time budget D = speed(shape) x time, and the
plan takes the shape with the lowest predicted loss; under a step or pass budget D is fixed, and
it takes the shape that a time budget of that length would choose (a bigger model always wins at
a fixed D, but takes longer than the budget was meant to). Dropout and weight drop follow the
number of passes (REGULARISATION). Every option the user gives wins over its part of the plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.core.corpus import Scan
from charrnn.training.distributed import Distributed
from charrnn.training.scaling import LOSS_FIT, LossFit, recurrent_parameters, regularisation, total_parameters
from charrnn.training.speeds import BUSY_CORES, Shape, SpeedBook, Workload

CANDIDATES = tuple(Shape(2, hidden) for hidden in (128, 256, 384, 512, 768, 1024))
DEFAULT_MINUTES = 10  # the budget of a run given none (docs/training.md#the-plan says why)
ADAPTIVE_FROM = 2000  # alphabets of this many characters or more get the adaptive head (docs/results.md)
VALIDATION_SHARE = 0.1  # validations take at most about this share of a run's time
EVAL_SPEEDUP = 3.0  # scoring a character costs about a third of training on it (no backward, no update)
MIN_EVAL_EVERY = 400
# Passes over a text past which a regularised model learns nothing more (docs/results.md: on 100 KB,
# 2 x 256 with dropout and weight drop 0.3 had its best at 36-53 passes, whatever the schedule).
MAX_PASSES = 50
TIE = 0.003  # nats/char: predicted losses closer than this are a tie, which the faster shape wins


@dataclass(frozen=True)
class TextFacts:
    """What the plan needs to know about the text."""

    train_chars: int
    val_chars: int
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
        return cls(max(1, train), max(1, val), len(found.characters), len(found.documents))

    def describe(self) -> str:
        docs = "1 document" if self.documents == 1 else f"{self.documents:,} documents"
        return f"{_count(self.train_chars)} training characters, {self.alphabet:,} distinct, {docs}"


@dataclass(frozen=True)
class Budget:
    """What ends the run: minutes of training time, optimizer steps, or passes over the text."""

    kind: str  # "minutes", "steps", "epochs", or "default" (none given: DEFAULT_MINUTES)
    amount: float

    @classmethod
    def of(cls, config: TrainConfig) -> Budget:
        if config.time_limit is not None:
            return cls("minutes", config.time_limit)
        if config.max_epochs is not None:  # with --max-steps too, the plan takes the earlier end
            return cls("epochs", config.max_epochs)
        if config.max_steps is not None:
            return cls("steps", config.max_steps)
        return cls("default", DEFAULT_MINUTES)

    @property
    def seconds(self) -> float | None:
        return self.amount * 60 if self.kind in ("minutes", "default") else None

    def describe(self) -> str:
        if self.kind == "default":
            limits = "--time-limit, --max-steps or --max-epochs change it"
            return f"none given: {DEFAULT_MINUTES} minutes' worth of steps ({limits})"
        unit = {"minutes": "min (--time-limit)", "steps": "steps (--max-steps)", "epochs": "passes (--max-epochs)"}
        return f"{self.amount:,g} {unit[self.kind]}"


@dataclass(frozen=True)
class Option:
    """One shape the plan weighed: its measured speed, what it would see, its predicted excess loss."""

    shape: Shape
    chars_per_second: float
    chars_seen: float
    passes: float
    excess_loss: float


@dataclass(frozen=True)
class Plan:
    """What a run was planned to be, and why: kept in config.toml and the checkpoints."""

    shape: Shape
    parameters: int
    dropout: float
    weight_drop: float
    head: str
    eval_every: int
    max_steps: int | None  # set for a run given no budget, or a time budget its text cannot fill
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

    def line(self) -> str:
        """The one line a run starts with."""
        regularised = f"dropout {self.dropout:g}" + (f", weight drop {self.weight_drop:g}" if self.weight_drop else "")
        head = ", adaptive head" if self.head == "adaptive" else ""
        over = f"~{self.passes:,.1f} passes over {_count(self.text.train_chars)} characters"
        speed = f"at ~{self.chars_per_second:,.0f} chars/s measured"
        if self.budget.kind == "minutes" and self.max_steps is not None:  # the text is used up first
            length = f"in {self.steps:,} steps, ~{_duration(self.seconds)} of the {self.budget.amount:g} min {speed}"
        elif self.budget.kind == "minutes":
            length = f"in {self.budget.amount:g} min {speed}"
        else:
            length = f"in {self.steps:,} steps, ~{_duration(self.seconds)} {speed}"
        return f"plan: {self.shape} LSTM, {_count(self.parameters)} parameters, {regularised}{head}: {over} {length}"

    def reasons(self) -> list[str]:
        """Why: the text, the budget, each shape weighed, and the rules that set the rest."""
        lines = [f"text: {self.text.describe()}", f"budget: {self.budget.describe()}"]
        lines.append("shapes weighed (speed measured on this machine; predicted loss above the text's own floor):")
        for option in self.options:
            mark = "  <- chosen" if option.shape == self.shape else ""
            lines.append(
                f"  {str(option.shape):>10}  {option.chars_per_second:>9,.0f} chars/s  {_count(option.chars_seen):>7} "
                f"characters = {option.passes:>6,.1f} passes  +{option.excess_loss:.3f} nats/char{mark}"
            )
        if self.budget.kind == "minutes" and self.max_steps is not None:
            lines.append(
                f"length: {self.steps:,} steps, {MAX_PASSES} passes over the text; more would learn it by heart "
                "rather than better, so the run ends before its time limit"
            )
        lines.append(
            f"regularisation: {self.passes:,.1f} passes -> dropout {self.dropout:g}, weight drop {self.weight_drop:g} "
            "(more passes over the same text need more of both)"
        )
        lines.append(f"head: {self.head} ({self.text.alphabet:,} characters; the adaptive head from {ADAPTIVE_FROM:,})")
        lines.append(f"validation every {self.eval_every:,} steps (at most ~{VALIDATION_SHARE:.0%} of the time)")
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
        return {"line": self.line(), "reasons": self.reasons(), "shape": shape}

    def apply(self, model_config: ModelConfig, train_config: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
        """The configs with the plan's choices in every field the user left to it."""
        model_choices = {
            "num_layers": self.shape.num_layers,
            "hidden_size": self.shape.hidden_size,
            "dropout": self.dropout,
            "weight_drop": self.weight_drop,
            "head": self.head,
        }
        train_choices = {"eval_every": self.eval_every}
        if self.max_steps is not None:
            train_choices["max_steps"] = self.max_steps
        model_config = dataclasses.replace(model_config, **_open(model_choices, self.kept))
        train_config = dataclasses.replace(train_config, **_open(train_choices, self.kept))
        return model_config, train_config


def make_plan(
    text: TextFacts,
    model_config: ModelConfig,
    train_config: TrainConfig,
    given: Collection[str],
    speeds: SpeedBook,
    fit: LossFit = LOSS_FIT,
    processes: int = 1,
) -> Plan:
    """The plan for a new run; ``given`` names the options the user set (they are kept).
    ``processes``: under torchrun, each trains its share of the streams as fast as one measured alone."""
    budget = Budget.of(train_config)
    kept = tuple(sorted(set(given) & PLANNED))
    head = choose_head(text, model_config, given)
    candidates = _candidates(model_config, given)
    chars_per_window = train_config.batch_size * train_config.seq_len
    eval_every = train_config.eval_every if "eval_every" in given else _eval_every(text, chars_per_window)

    def option(shape: Shape, seconds: float | None, seen: float | None = None) -> Option:
        speed = speeds.chars_per_second(shape) * processes
        if seen is None:  # a time budget: what fits in it, up to the passes that still teach something
            seen = min(_chars_in(seconds, speed, text, chars_per_window, eval_every), MAX_PASSES * text.train_chars)
        parameters = recurrent_parameters(shape)
        return Option(shape, speed, seen, seen / text.train_chars, fit.excess(parameters, seen, text.train_chars))

    def best_in(seconds: float) -> Option:
        return _lowest(_weigh(candidates, lambda shape: option(shape, seconds)))

    if budget.seconds is not None:
        options = _weigh(candidates, lambda shape: option(shape, budget.seconds))
        chosen = _lowest(options)
    else:
        limits = [train_config.max_steps * chars_per_window] if train_config.max_steps is not None else []
        if train_config.max_epochs is not None:
            limits.append(train_config.max_epochs * text.train_chars)
        seen = min(limits)
        options = _weigh(candidates, lambda shape: option(shape, None, seen))
        chosen = _fitting_for(options, best_in)
    dropout, weight_drop = regularisation(chosen.passes)
    if "dropout" in given:
        dropout = model_config.dropout
    if "weight_drop" in given:
        weight_drop = model_config.weight_drop
    steps = max(1, int(chosen.chars_seen // chars_per_window))
    seconds = chosen.chars_seen / chosen.chars_per_second
    # No budget: the default one, as steps. A time budget the text cannot use: end at MAX_PASSES.
    used_up = budget.kind == "minutes" and chosen.passes >= MAX_PASSES * 0.999
    max_steps = steps if budget.kind == "default" or used_up else None
    return Plan(
        shape=chosen.shape,
        parameters=total_parameters(chosen.shape, text.alphabet, head),
        dropout=dropout,
        weight_drop=weight_drop,
        head=head,
        eval_every=eval_every,
        max_steps=max_steps,
        steps=steps,
        chars_seen=chosen.chars_seen,
        passes=chosen.passes,
        seconds=seconds,
        chars_per_second=chosen.chars_per_second,
        budget=budget,
        text=text,
        options=tuple(options),
        kept=kept,
        busy_cores=speeds.busy,
    )


def choose_head(text: TextFacts, model_config: ModelConfig, given: Collection[str]) -> str:
    """The adaptive softmax for a large alphabet, unless the user chose a head."""
    if "head" in given:
        return model_config.head
    return "adaptive" if text.alphabet >= ADAPTIVE_FROM else "full"


PLANNED = frozenset({"num_layers", "hidden_size", "dropout", "weight_drop", "head", "eval_every", "max_steps"})


def _candidates(model_config: ModelConfig, given: Collection[str]) -> list[Shape]:
    """The shapes to weigh: the standard widths at the given (or default) depth, or the given width."""
    if "hidden_size" in given and "num_layers" in given:
        return [Shape(model_config.num_layers, model_config.hidden_size)]
    if "hidden_size" in given:  # the depth stays the default's: the runs measured only two layers
        return [Shape(model_config.num_layers, model_config.hidden_size)]
    return [Shape(model_config.num_layers, shape.hidden_size) for shape in CANDIDATES]


def _weigh(candidates: list[Shape], weigh) -> list[Option]:
    """Each candidate's option, from the smallest up, stopping two past the best so far: the
    predicted loss has one minimum over size, and the big shapes are the slow ones to measure."""
    options: list[Option] = []
    for shape in candidates:
        options.append(weigh(shape))
        best = min(range(len(options)), key=lambda i: options[i].excess_loss)
        if len(options) - 1 - best >= 2:
            break
    return options


def _lowest(options: list[Option]) -> Option:
    """The option with the lowest predicted loss; of those within TIE of it, the fastest to train."""
    best = min(option.excess_loss for option in options)
    return max((o for o in options if o.excess_loss <= best + TIE), key=lambda o: o.chars_per_second)


def _fitting_for(options: list[Option], best_in) -> Option:
    """Under a fixed number of characters: the largest shape that a time budget as long as its
    own run would also choose (the smallest shape when none would)."""
    fitting = [o for o in options if best_in(o.chars_seen / o.chars_per_second).shape == o.shape]
    return max(fitting, key=lambda o: recurrent_parameters(o.shape)) if fitting else options[0]


def _chars_in(seconds: float, speed: float, text: TextFacts, chars_per_window: int, eval_every: int) -> float:
    """Characters trained on in ``seconds``, the validations' time taken out."""
    per_validation = text.val_chars / (EVAL_SPEEDUP * speed)  # seconds
    per_step = chars_per_window / speed + per_validation / eval_every
    steps = max(1.0, (seconds - per_validation) / per_step)  # the last validation, then one every eval_every
    return steps * chars_per_window


def _eval_every(text: TextFacts, chars_per_window: int) -> int:
    """Steps between validations such that scoring the validation split takes ~VALIDATION_SHARE of
    the time (a 3 MB text's split scored every 400 steps would take a third of it)."""
    steps = text.val_chars / (EVAL_SPEEDUP * VALIDATION_SHARE * chars_per_window)
    return max(MIN_EVAL_EVERY, int(math.ceil(steps / 100) * 100))


def _open(choices: dict, kept: Collection[str]) -> dict:
    return {name: value for name, value in choices.items() if name not in kept}


def _count(number: float) -> str:
    """1,115,394 -> "1.1 M"; 240,000 -> "240 k"; 900 -> "900"."""
    if number >= 1e6:
        return f"{number / 1e6:.1f} M"
    if number >= 1e4:
        return f"{number / 1e3:.0f} k"
    return f"{number:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_for(
    found: Scan,
    model_config: ModelConfig,
    train_config: TrainConfig,
    given: Collection[str],
    device: torch.device,
    processes: int = 1,
) -> Plan:
    """The plan for a scanned text, with speeds measured on ``device`` (or found in the cache)."""
    text = TextFacts.of(found, train_config)
    share = train_config.batch_size // processes  # each process's streams
    head = choose_head(text, model_config, given)  # the head the shapes will be trained with
    work = Workload(text.alphabet, share, train_config.seq_len, model_config.cell, head, device)
    return make_plan(text, model_config, train_config, given, SpeedBook(work), processes=processes)


def plan_run(
    found: Scan,
    model_config: ModelConfig,
    train_config: TrainConfig,
    given: Collection[str],
    device: torch.device,
    dist: Distributed,
) -> tuple[ModelConfig, TrainConfig, Plan | None]:
    """A new run's configs with its plan applied, and the plan (None in processes other than the
    first under torchrun: the first plans, from its own measurements, and the others take its choices)."""
    plan = None
    if dist.is_main:
        plan = plan_for(found, model_config, train_config, given, device, processes=dist.world_size)
        model_config, train_config = plan.apply(model_config, train_config)
    if dist.enabled:  # every process trains the first one's choices
        mine = [
            model_config.num_layers,
            model_config.hidden_size,
            model_config.dropout,
            model_config.weight_drop,
            float(model_config.head == "adaptive"),
            train_config.eval_every,
            train_config.max_steps or 0,
        ]
        agreed = dist.sum([value if dist.is_main else 0.0 for value in mine], device)
        layers, hidden, dropout, weight_drop, adaptive, eval_every, max_steps = agreed
        model_config = dataclasses.replace(
            model_config,
            num_layers=int(layers),
            hidden_size=int(hidden),
            dropout=dropout,
            weight_drop=weight_drop,
            head="adaptive" if adaptive else "full",
        )
        train_config = dataclasses.replace(train_config, eval_every=int(eval_every), max_steps=int(max_steps) or None)
    return model_config, train_config, plan
