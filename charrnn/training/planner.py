"""Making the plan (``charrnn.training.plan`` says what a plan is, how it reads, and the rule).

``make_plan`` weighs the candidate shapes for a text and a budget with their measured speeds;
``plan_for`` measures (or reads) the speeds for a scanned text; ``plan_run`` is what a new run
calls, and under torchrun hands the first process's choices to the others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.core.corpus import Scan
from charrnn.core.data import check_length, too_short
from charrnn.training.distributed import Distributed
from charrnn.training.plan import (
    ADAPTIVE_FROM,
    CANDIDATES,
    EVAL_SPEEDUP,
    MAX_PASSES,
    MIN_EVAL_EVERY,
    PLANNED_FIELDS,
    VALIDATION_SHARE,
    Budget,
    Option,
    Plan,
    TextFacts,
)
from charrnn.training.scaling import (
    ENOUGH_PASSES,
    STEPS_PER_UNIT,
    count_parameters_of,
    learning_rate,
    regularisation,
    text_feeds,
)
from charrnn.training.speeds import Shape, SpeedBook, Workload


def make_plan(
    text: TextFacts,
    model_config: ModelConfig,
    train_config: TrainConfig,
    given: Collection[str],
    speeds: SpeedBook,
    processes: int = 1,
) -> Plan:
    """The plan for a new run; ``given`` names the options the user set (they are kept).
    ``processes``: under torchrun, each trains its share of the streams as fast as one measured alone."""
    budget = Budget.of(train_config)
    kept = tuple(name for name in PLANNED_FIELDS if name in given)
    head = choose_head(text, model_config, given)
    candidates = _candidates(model_config, given)
    chars_per_window = train_config.batch_size * train_config.seq_len
    eval_every = train_config.eval_every if "eval_every" in given else _eval_every(text, chars_per_window)
    limit = budget.chars_cap(chars_per_window, text.train_chars)  # --max-steps, --max-epochs

    def option(shape: Shape, seconds: float | None) -> Option:
        speed = speeds.chars_per_second(shape) * processes
        seen = limit  # steps and passes: fixed
        if seconds is not None:  # time: what fits in it, up to the passes that still teach something
            in_time = _chars_in(seconds, speed, text, chars_per_window, eval_every)
            seen = min(in_time, limit, MAX_PASSES * text.train_chars)
        fits = text_feeds(shape, text.train_chars)
        return Option(shape, speed, seen, seen / text.train_chars, seen / chars_per_window, fits)

    if budget.seconds is not None:
        options = _weigh(candidates, lambda shape: option(shape, budget.seconds))
        chosen = _choose(options)
    else:  # steps or passes only: chosen as for the time the default shape takes to make them
        reference = Shape(model_config.num_layers, ModelConfig.hidden_size)
        as_time = limit / (speeds.chars_per_second(reference) * processes)
        options = _weigh(candidates, lambda shape: option(shape, as_time))
        chosen = option(_choose(options).shape, None)  # and then trains exactly those steps or passes
    steps = max(1, int(chosen.chars_seen // chars_per_window))
    dropout, weight_drop = regularisation(chosen.passes)
    plan = Plan(
        shape=chosen.shape,
        cell=model_config.cell,
        parameters=count_parameters_of(chosen.shape, model_config.cell, head, text.alphabet),
        dropout=model_config.dropout if "dropout" in given else dropout,
        weight_drop=model_config.weight_drop if "weight_drop" in given else weight_drop,
        lr=train_config.lr if "lr" in given else learning_rate(steps, chosen.shape.hidden_size),
        head=head,
        eval_every=min(eval_every, max(1, -(-steps // 2))) if "eval_every" not in given else eval_every,
        max_steps=None,
        steps=steps,
        chars_seen=chosen.chars_seen,
        passes=chosen.passes,
        seconds=chosen.chars_seen / chosen.chars_per_second,
        chars_per_second=chosen.chars_per_second,
        budget=budget,
        text=text,
        options=tuple(options),
        kept=kept,
        busy_cores=speeds.busy,
    )
    # The plan's own step limit: the default budget as steps, or the end of a text used up early
    # (never over a --max-steps or --max-epochs the user gave: those are the budget already).
    if not budget.given or (plan.used_up and budget.steps is None and budget.epochs is None):
        plan = dataclasses.replace(plan, max_steps=steps)
    return plan


def choose_head(text: TextFacts, model_config: ModelConfig, given: Collection[str]) -> str:
    """The adaptive softmax for a large alphabet, unless the user chose a head."""
    if "head" in given:
        return model_config.head
    return "adaptive" if text.alphabet >= ADAPTIVE_FROM else "full"


def _candidates(model_config: ModelConfig, given: Collection[str]) -> list[Shape]:
    """The standard widths at the given (or default) depth, or only the given width: the runs
    behind the rule measured two layers, so the plan does not choose the depth."""
    if "hidden_size" in given:
        return [Shape(model_config.num_layers, model_config.hidden_size)]
    return [Shape(model_config.num_layers, shape.hidden_size) for shape in CANDIDATES]


def _weigh(candidates: list[Shape], weigh: Callable[[Shape], Option]) -> list[Option]:
    """Each candidate's option, from the smallest up, stopping after the first that is too big for
    the text or gets too few steps: the bigger ones would too, and they are the slow ones to measure."""
    options: list[Option] = []
    for shape in candidates:
        options.append(weigh(shape))
        if not options[-1].fits_text or not _trained(options[-1]):
            break
    return options


def _trained(option: Option) -> bool:
    """Whether the budget trains the shape enough: STEPS_PER_UNIT steps per hidden unit, or
    ENOUGH_PASSES over a small text."""
    return option.steps >= STEPS_PER_UNIT * option.shape.hidden_size or option.passes >= ENOUGH_PASSES


def _choose(options: list[Option]) -> Option:
    """The largest shape that the text can feed and that the budget trains enough; when none is
    trained enough, the fastest that the text can feed; when none fits the text, the smallest."""
    fitting = [o for o in options if o.fits_text] or options[:1]
    trained = [o for o in fitting if _trained(o)]
    return trained[-1] if trained else max(fitting, key=lambda o: o.chars_per_second)


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


def plan_for(
    found: Scan,
    model_config: ModelConfig,
    train_config: TrainConfig,
    given: Collection[str],
    device: torch.device,
    processes: int = 1,
) -> Plan:
    """The plan for a scanned text, with speeds measured on ``device`` (or found in the cache).
    A text too short for one window per stream is refused first, as training would refuse it."""
    text = TextFacts.of(found, train_config)
    check_length(text.train_chars, train_config.batch_size, train_config.seq_len, True, "training split")
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
    if too_short(TextFacts.of(found, train_config).train_chars, train_config.batch_size, train_config.seq_len):
        return model_config, train_config, None  # too short to train: the run says so as it is built
    plan = None
    if dist.is_main:
        plan = plan_for(found, model_config, train_config, given, device, processes=dist.world_size)
        model_config, train_config = plan.apply(model_config, train_config)
    if dist.enabled:  # every process trains the first one's choices: a sum where the others add 0
        mine = [
            model_config.num_layers,
            model_config.hidden_size,
            model_config.dropout,
            model_config.weight_drop,
            train_config.lr,
            float(model_config.head == "adaptive"),
            train_config.eval_every,
            train_config.max_steps or 0,
        ]
        agreed = dist.sum([value if dist.is_main else 0.0 for value in mine], device)
        layers, hidden, dropout, weight_drop, lr, adaptive, eval_every, max_steps = agreed
        model_config = dataclasses.replace(
            model_config,
            num_layers=int(layers),
            hidden_size=int(hidden),
            dropout=dropout,
            weight_drop=weight_drop,
            head="adaptive" if adaptive else "full",
        )
        train_config = dataclasses.replace(
            train_config, lr=lr, eval_every=int(eval_every), max_steps=int(max_steps) or None
        )
    return model_config, train_config, plan
