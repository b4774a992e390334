"""`charrnn train` and `charrnn finetune`: start or resume a run (``charrnn.training``), with options
from the command line, a TOML file (train --config), or the declared defaults, in that order."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from charrnn.commands.common import EXISTING_FILE, declared_options, text_or_bundled_book
from charrnn.config import FINETUNE_DEFAULTS, TRAIN_OPTIONS_BEFORE_THEY_EXISTED, ModelConfig, Placement, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.formats.runconfig import read_run_config
from charrnn.options import build, declared
from charrnn.threads import use_fixed_threads
from charrnn.training.loop import fit
from charrnn.training.plan import PLANNED_FIELDS, Plan
from charrnn.training.policy import finetune_run, plan_only, resume_run, start_run
from charrnn.training.run import TrainingRun

NOT_GIVEN = (ParameterSource.DEFAULT,)  # a value from --config counts as given (ParameterSource.DEFAULT_MAP)


def _read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """--config: the file's values become the defaults of the other options (the command line wins).

    Runs before the other options are read (it is eager), which is what lets it set their defaults.
    """
    if path is None:
        return None
    try:
        values = read_run_config(path)
    except CharRNNError as exc:  # a bad --config is a bad option value, as an unknown key is: exit 2
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    params = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    allowed = set(params) - {"config", "resume_from"} | {"text"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise click.BadParameter(f"{path} has unknown option(s): {', '.join(unknown)}", ctx=ctx, param=param)
    for name, value in values.items():
        problem = _text_problem(value) if name == "text" else _value_problem(params[name], value)
        if problem is not None:
            raise click.BadParameter(f"{path}: {name} {problem}", ctx=ctx, param=param)
    if {opt.name for opt in declared(ModelConfig)} <= set(values):  # a whole run's config.toml: an
        values = {**TRAIN_OPTIONS_BEFORE_THEY_EXISTED, **values}  # option it lacks is as that run trained
    ctx.meta["config_text"] = values.pop("text", None)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


DECLARED = {opt.name: opt for cls in (ModelConfig, TrainConfig, Placement) for opt in declared(cls)}


def _value_problem(param: click.Option, value: Any) -> str | None:
    """What is wrong with a --config value for ``param``: its declaration's check, with TOML's
    types taken as they are (no "0.01" for a number, no true for a count, no 16.5 for 16)."""
    if param.name in DECLARED:
        return DECLARED[param.name].problem(value)
    if param.is_flag:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    return None if isinstance(value, str) else f"must be a string, got {value!r}"


def _text_problem(value: Any) -> str | None:
    if isinstance(value, str) and value or isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    return f"must be a path or a non-empty list of paths, got {value!r}"


def _run_options(out_default: str) -> Callable:
    """The options of the commands that run training: where to write, resume, samples, progress."""

    def decorate(function: Callable) -> Callable:
        for decorator in reversed(
            [
                click.option(
                    "--out",
                    type=click.Path(file_okay=False, path_type=Path),
                    default=None,
                    show_default=f"{out_default}; on resume, the checkpoint's directory",
                    help="Run directory for last.pt, best.pt, metrics.csv and config.toml.",
                ),
                click.option(
                    "--no-sample", is_flag=True, help="Print no samples while training (the same as --sample-every 0)."
                ),
                click.option(
                    "--resume",
                    "resume_from",
                    type=EXISTING_FILE,
                    default=None,
                    help="Continue the run saved in this checkpoint (its last.pt).",
                ),
                click.option(
                    "--progress/--no-progress",
                    default=True,
                    help="Show progress on stderr: a bar on a terminal, a plain line every 30 s otherwise.",
                ),
            ]
        ):
            function = decorator(function)
        return function

    return decorate


@click.command()
@click.argument("text", nargs=-1)
@click.option(
    "--config",
    type=EXISTING_FILE,
    is_eager=True,
    expose_value=False,
    callback=_read_config,
    help="Read options from this TOML file (name = value, as in a run's config.toml); the command line wins.",
)
@declared_options("train", ModelConfig, TrainConfig, Placement)
@_run_options("checkpoints/<name of the text>")
@click.pass_context
def train(
    ctx: click.Context,
    text: tuple[str, ...],
    out: Path | None,
    resume_from: Path | None,
    device: str,
    threads: str,
    progress: bool,
    no_sample: bool,
    **options: Any,
) -> None:
    """Train a character-level LSTM on TEXT (default: the bundled tinyshakespeare).

    TEXT is one or more text files, directories (every file below, hidden ones left out, in path
    order) and quoted glob patterns ('lyrics/**/*.txt'); several documents are joined by the
    separator U+001C. Writes DIR/last.pt every --save-every steps and at the end, and DIR/best.pt
    whenever the validation loss improves; DIR/config.toml holds the run's options. Ctrl-C (or
    SIGTERM) stops after the current step and saves last.pt; --resume continues exactly there.

    Under torchrun it trains data-parallel (DistributedDataParallel): --batch-size streams per
    process; rank 0 prints and writes the checkpoints.

    \b
    Examples:
      charrnn train
      charrnn train my_book.txt --hidden-size 512 --max-steps 5000
      charrnn train poems/ --val-file poems-held-out.txt
      charrnn train names.txt --line-items
      charrnn train old.txt --encoding cp1252
      charrnn train --config checkpoints/tinyshakespeare/config.toml --out checkpoints/again
      charrnn train --resume checkpoints/tinyshakespeare/last.pt --max-steps 8000
      torchrun --nproc-per-node 4 -m charrnn train my_book.txt --device cuda
    """
    given = _given(ctx, options, no_sample)
    sources = list(text)
    if not sources and ctx.meta.get("config_text"):
        saved = ctx.meta["config_text"]
        sources = [saved] if isinstance(saved, str) else list(saved)
    common = {"out_dir": out, "device": device}
    if resume_from is not None:
        run = resume_run(resume_from, sources=sources or None, overrides=given, **common)
    else:
        model_config, train_config = build(ModelConfig, options), build(TrainConfig, options)
        use_fixed_threads(threads)  # before the plan measures speeds
        run = start_run(sources or [text_or_bundled_book(None)], model_config, train_config, given=set(given), **common)
    _fit(ctx, run, progress, threads)


@click.command()
@click.argument("base", required=False)
@click.argument("text", nargs=-1)
@declared_options(
    "finetune",
    ModelConfig,
    TrainConfig,
    Placement,
    replace={
        "dropout": (None, "the base model's"),
        **{
            name: (value, f"{value:g} (train: {getattr(TrainConfig, name):g})")
            for name, value in FINETUNE_DEFAULTS.items()
        },
    },
)
@click.option(
    "--extend-vocab",
    is_flag=True,
    help="Add characters of TEXT that BASE lacks to the model (their weights start fresh, the others kept exactly); "
    "not for a BASE with an adaptive head, whose clusters are fixed.",
)
@_run_options("checkpoints/<name of the text>-finetuned")
@click.pass_context
def finetune(
    ctx: click.Context,
    base: str | None,
    text: tuple[str, ...],
    out: Path | None,
    resume_from: Path | None,
    device: str,
    threads: str,
    progress: bool,
    no_sample: bool,
    extend_vocab: bool,
    dropout: float | None,
    **options: Any,
) -> None:
    """Fine-tune the model in BASE on TEXT: its weights, a fresh optimizer and schedule, a new run.

    TEXT is read as by `charrnn train` (files, directories, glob patterns). Characters of TEXT
    that BASE has never seen are refused, listed, unless --extend-vocab. The run's checkpoints
    record BASE (path and SHA-256) and resume like any run: `charrnn finetune --resume DIR/last.pt`.

    \b
    Examples:
      charrnn finetune checkpoints/tinyshakespeare/best.pt my_letters/ --max-steps 1000
      charrnn finetune base.pt warpeace.txt --extend-vocab --time-limit 5
      charrnn finetune --resume checkpoints/warpeace-finetuned/last.pt
    """
    given = _given(ctx, options, no_sample)
    if dropout is not None:
        given["dropout"] = dropout
    sources = ([base] if base is not None else []) + list(text)
    common = {"out_dir": out, "device": device}
    if resume_from is not None:  # BASE and TEXT, if any, are both the text
        run = resume_run(resume_from, sources=sources or None, overrides=given, **common)
    else:
        if base is None or not text:
            raise click.UsageError("give the base checkpoint and the text: charrnn finetune BASE TEXT...")
        run = finetune_run(
            base, text, build(TrainConfig, options), dropout=dropout, extend_vocab=extend_vocab, **common
        )
    _fit(ctx, run, progress, threads)


def _given(ctx: click.Context, options: dict[str, Any], no_sample: bool) -> dict[str, Any]:
    """The options given on the command line or by --config (what a resume changes); --no-sample applied."""
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) not in NOT_GIVEN}
    if no_sample:
        if given.get("sample_every") not in (None, 0):
            raise click.UsageError("--no-sample and --sample-every contradict each other: give one")
        options["sample_every"] = given["sample_every"] = 0
    return given


def _fit(ctx: click.Context, run: TrainingRun, progress: bool, threads: str) -> None:
    result = fit(run, progress_bar=progress, threads=threads)
    if result.stopped_by_signal is not None:
        ctx.exit(128 + result.stopped_by_signal)


@click.command(name="plan")
@click.argument("text", nargs=-1)
@declared_options("plan", ModelConfig, TrainConfig, Placement)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.pass_context
def plan(ctx: click.Context, text: tuple[str, ...], device: str, threads: str, as_json: bool, **options: Any) -> None:
    """Show the model `charrnn train` would choose for TEXT and the budget, and why, without training.

    Takes the options of `charrnn train`: the budget (--time-limit, --max-steps or --max-epochs;
    none: the default one) and any part of the model you fix yourself (--hidden-size, --dropout,
    ...), which the plan keeps. The first plan on a machine measures the training speed of each
    shape it weighs for a second or two; later ones read them from the cache.

    \b
    Examples:
      charrnn plan my_book.txt --time-limit 30
      charrnn plan poems/ --max-epochs 50 --hidden-size 512
    """
    given = _given(ctx, options, no_sample=False)
    if options["plan"] == "off":
        raise click.UsageError("--plan off trains the fixed defaults: there is nothing to plan")
    sources = list(text) or [text_or_bundled_book(None)]
    use_fixed_threads(threads)  # the speeds are measured at the count training will use
    model_config, train_config = build(ModelConfig, options), build(TrainConfig, options)
    chosen = plan_only(sources, model_config, train_config, given=set(given), device=device, log=_to_stderr)
    if as_json:
        click.echo(json.dumps({**chosen.to_dict(), **_chosen_values(chosen, model_config, train_config)}, indent=1))
        return
    click.echo(chosen.line())
    for reason in chosen.reasons():
        click.echo(f"  {reason}")


def _chosen_values(chosen: Plan, model_config: ModelConfig, train_config: TrainConfig) -> dict[str, Any]:
    """The run's values of every option the plan covers, chosen or given (as config.toml names them)."""
    model_config, train_config = chosen.apply(model_config, train_config)
    values = {**dataclasses.asdict(model_config), **dataclasses.asdict(train_config)}
    return {"options": {name: values[name] for name in PLANNED_FIELDS}}


def _to_stderr(message: str) -> None:
    click.echo(message, err=True)
