"""`charrnn train`: start or resume a run (``charrnn.training``), with options from the command
line, a TOML file (--config), or the declared defaults, in that order of precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from charrnn.commands.common import EXISTING_FILE, declared_options, text_or_bundled_book
from charrnn.config import ModelConfig, Placement, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.formats.runconfig import read_run_config
from charrnn.options import build
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run

NOT_GIVEN = (ParameterSource.DEFAULT,)  # a value from --config counts as given (ParameterSource.DEFAULT_MAP)


def _read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """--config: the file's values become the defaults of the other options (the command line wins).

    Runs before the other options are read (it is eager), which is what lets it set their defaults.
    """
    if path is None:
        return None
    values = read_run_config(path)
    known = {p.name for p in ctx.command.params if isinstance(p, click.Option)} - {"config", "resume_from"}
    unknown = sorted(set(values) - known - {"text"})
    if unknown:
        raise click.BadParameter(f"{path} has unknown option(s): {', '.join(unknown)}", ctx=ctx, param=param)
    ctx.meta["config_text"] = values.pop("text", None)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


@click.command()
@click.argument("text_file", required=False, type=EXISTING_FILE)
@click.option(
    "--config",
    type=EXISTING_FILE,
    is_eager=True,
    expose_value=False,
    callback=_read_config,
    help="Read options from this TOML file (name = value, as in a run's config.toml); the command line wins.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="checkpoints/<text file stem>; on resume, the checkpoint's directory",
    help="Run directory for last.pt, best.pt, metrics.csv and config.toml.",
)
@declared_options("train", ModelConfig, TrainConfig, Placement)
@click.option("--no-sample", is_flag=True, help="Print no samples while training (the same as --sample-every 0).")
@click.option(
    "--resume",
    "resume_from",
    type=EXISTING_FILE,
    default=None,
    help="Continue the run saved in this checkpoint (its last.pt).",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    help="Show progress on stderr: a bar on a terminal, a plain line every 30 s otherwise.",
)
@click.pass_context
def train(
    ctx: click.Context,
    text_file: Path | None,
    out: Path | None,
    resume_from: Path | None,
    device: str,
    progress: bool,
    no_sample: bool,
    **options: Any,
) -> None:
    """Train a character-level LSTM on TEXT_FILE (default: the bundled tinyshakespeare).

    Writes DIR/last.pt every --save-every steps and at the end, and DIR/best.pt whenever the
    validation loss improves; DIR/config.toml holds the run's options. Ctrl-C (or SIGTERM)
    stops after the current step and saves last.pt; --resume continues exactly where it stopped.

    Under torchrun it trains data-parallel (DistributedDataParallel): --batch-size streams per
    process; rank 0 prints and writes the checkpoints.

    \b
    Examples:
      charrnn train
      charrnn train my_book.txt --hidden-size 512 --max-steps 5000
      charrnn train --config checkpoints/tinyshakespeare/config.toml --out checkpoints/again
      charrnn train --resume checkpoints/tinyshakespeare/last.pt --max-steps 8000
      torchrun --nproc-per-node 4 -m charrnn train my_book.txt --device cuda
    """
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) not in NOT_GIVEN}
    if no_sample:
        if given.get("sample_every") not in (None, 0):
            raise click.UsageError("--no-sample and --sample-every contradict each other: give one")
        options["sample_every"] = given["sample_every"] = 0
    if text_file is None and ctx.meta.get("config_text"):
        text_file = Path(ctx.meta["config_text"])
        if not text_file.is_file():
            raise CharRNNError(f"the text {text_file} named in --config does not exist: pass TEXT_FILE")
    common = {"out_dir": out, "device": device}
    if resume_from is not None:
        run = resume_run(resume_from, text_path=text_file, overrides=given, **common)
    else:
        model_config, train_config = build(ModelConfig, options), build(TrainConfig, options)
        run = start_run(text_or_bundled_book(text_file), model_config, train_config, **common)
    result = fit(run, progress_bar=progress)
    if result.stopped_by_signal is not None:
        ctx.exit(128 + result.stopped_by_signal)
