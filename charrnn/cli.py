"""The `charrnn` command: a thin click layer over the library.

Each command parses typed options (defaults come from ``charrnn.config``), calls the library and
reports. A ``CharRNNError`` becomes one line on stderr and exit status 1; bad option values exit 2
(click's usage errors); an interrupted training run exits 128 + the signal number.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import click
import torch
from click.core import ParameterSource

from charrnn import __version__
from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.config import ModelConfig, SampleConfig, TrainConfig, default_of
from charrnn.data import read_text
from charrnn.devices import DEVICE_CHOICES, resolve_device
from charrnn.errors import CharRNNError
from charrnn.explain import explain as explain_batch
from charrnn.explain import render
from charrnn.model import CharLSTM
from charrnn.sample import generate as generate_text
from charrnn.train import fit, resume_run, start_run
from charrnn.vocab import Vocab

BUNDLED_BOOK = Path("corpora") / "tinyshakespeare.txt"


_OUT_OF_MEMORY = "out of memory: use a smaller --hidden-size, --num-layers, --batch-size or --seq-len"


def _text_or_bundled_book(text_file: Path | None) -> Path:
    """The given text file, or the bundled book when run from the repository."""
    if text_file is not None:
        return text_file
    if not BUNDLED_BOOK.is_file():
        raise CharRNNError(
            f"no TEXT_FILE given and the bundled book {BUNDLED_BOOK} is not in this directory: "
            "pass the path of a text file"
        )
    return BUNDLED_BOOK


class _Commands(click.Group):
    """A click group that reports charrnn's own errors as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharRNNError as exc:
            raise click.ClickException(str(exc)) from None
        except (MemoryError, torch.OutOfMemoryError):
            raise click.ClickException(_OUT_OF_MEMORY) from None
        except RuntimeError as exc:
            if "can't allocate memory" not in str(exc):  # torch's CPU allocator says it this way
                raise
            raise click.ClickException(_OUT_OF_MEMORY) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="charrnn")
def main() -> None:
    """Character-level LSTM text generator: train on a book, generate text in its voice."""


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Reject NaN and infinity, which click's FloatRange lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


_SEED = click.IntRange(0, 2**63 - 1)

_device_option = click.option(
    "--device", type=click.Choice(DEVICE_CHOICES), default="auto",
    help="Where to run: auto picks cuda, then mps, then cpu.",
)  # fmt: skip

_MODEL_OPTIONS = ("hidden_size", "num_layers", "dropout")
_TRAIN_OPTIONS = tuple(field.name for field in dataclasses.fields(TrainConfig))  # all are options


@main.command()
@click.argument("text_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="checkpoints/<text file stem>; on resume, the checkpoint's directory",
              help="Run directory for last.pt and best.pt.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=default_of(ModelConfig, "hidden_size"),
              help="LSTM units per layer (H).")
@click.option("--num-layers", type=click.IntRange(min=1), default=default_of(ModelConfig, "num_layers"),
              help="Stacked LSTM layers (L).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), callback=_finite, default=default_of(ModelConfig, "dropout"),
              help="Dropout on each LSTM layer's output while training.")
@click.option("--batch-size", type=click.IntRange(min=1), default=default_of(TrainConfig, "batch_size"),
              help="Contiguous streams trained side by side (B).")
@click.option("--seq-len", type=click.IntRange(min=1), default=default_of(TrainConfig, "seq_len"),
              help="Characters per window: how far back gradients flow (T).")
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), callback=_finite, default=default_of(TrainConfig, "lr"),
              help="Adam learning rate.")
@click.option("--grad-clip", type=click.FloatRange(min=0), callback=_finite, default=default_of(TrainConfig, "grad_clip"),
              help="Clip the global gradient norm to this; 0 turns clipping off.")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), callback=_finite,
              default=default_of(TrainConfig, "val_frac"), help="Fraction of the text, from its end, held out for validation.")
@click.option("--max-steps", type=click.IntRange(min=1), default=default_of(TrainConfig, "max_steps"),
              show_default="none", help="Stop at this step, counted from the run's start (across resumes).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=default_of(TrainConfig, "max_epochs"),
              help="Stop after this many passes over the training split (whichever limit comes first).")
@click.option("--eval-every", type=click.IntRange(min=1), default=default_of(TrainConfig, "eval_every"),
              help="Steps between validations over the whole val split (saves best.pt when it improves).")
@click.option("--save-every", type=click.IntRange(min=1), default=default_of(TrainConfig, "save_every"),
              help="Steps between writes of last.pt.")
@click.option("--seed", type=_SEED, default=default_of(TrainConfig, "seed"), help="Seed for weight init and dropout.")
@_device_option
@click.option("--resume", "resume_from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Continue the run saved in this checkpoint (its last.pt).")
@click.option("--decode-errors", type=click.Choice(["strict", "replace"]), default=default_of(TrainConfig, "decode_errors"),
              help="What to do with bytes that are not UTF-8: refuse the file, or replace them with U+FFFD.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@click.pass_context
def train(
    ctx: click.Context,
    text_file: Path | None,
    out: Path | None,
    resume_from: Path | None,
    device: str,
    progress: bool,
    **options: Any,
) -> None:
    """Train a character-level LSTM on TEXT_FILE (default: the bundled tinyshakespeare).

    Writes DIR/last.pt every --save-every steps and at the end, and DIR/best.pt whenever the
    validation loss improves. Ctrl-C (or SIGTERM) stops after the current step and saves
    last.pt; --resume continues exactly where it stopped.

    \b
    Examples:
      charrnn train
      charrnn train my_book.txt --hidden-size 512 --max-steps 5000
      charrnn train --resume checkpoints/tinyshakespeare/last.pt --max-steps 8000
    """
    common = {"out_dir": out, "device": device}
    if resume_from is not None:
        given = {
            name: value for name, value in options.items()
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        }  # fmt: skip
        run = resume_run(resume_from, text_path=text_file, overrides=given, **common)
    else:
        text_file = _text_or_bundled_book(text_file)
        model_config = ModelConfig(**{name: options[name] for name in _MODEL_OPTIONS})
        train_config = TrainConfig(**{name: options[name] for name in _TRAIN_OPTIONS})
        run = start_run(text_file, model_config, train_config, **common)
    result = fit(run, progress_bar=progress)

    best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f} nats/char"
    click.echo(f"step {result.step}: best val loss {best}; checkpoints in {result.out_dir}")
    if result.stopped_by_signal is not None:
        click.echo(f"resume with: charrnn train --resume {result.out_dir / 'last.pt'}", err=True)
        ctx.exit(128 + result.stopped_by_signal)
    click.echo(f"generate with: charrnn generate {result.out_dir / 'best.pt'} --prime \"...\"")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prime", default=default_of(SampleConfig, "prime"),
              help="Text to start from; the sample continues it. Empty: start from the zero state.")
@click.option("--length", type=click.IntRange(min=0), default=default_of(SampleConfig, "length"),
              help="Characters to generate after the prime.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), callback=_finite,
              default=default_of(SampleConfig, "temperature"),
              help="Divides the logits: below 1 is safer and more repetitive, above 1 wilder.")
@click.option("--seed", type=_SEED, default=None, show_default="random",
              help="Seed for sampling: the same seed gives the same text.")
@click.option("--on-unknown", type=click.Choice(["error", "skip"]), default=default_of(SampleConfig, "on_unknown"),
              help="Prime characters the model never saw: stop with an error, or drop them with a warning.")
@_device_option
def generate(
    checkpoint: Path, prime: str, length: int, temperature: float, seed: int | None, on_unknown: str, device: str
) -> None:
    """Generate text from CHECKPOINT, continuing --prime; streams to stdout.

    \b
    Examples:
      charrnn generate checkpoints/tinyshakespeare/best.pt --prime "ROMEO:" --length 300
      charrnn generate run/best.pt --temperature 0.5 --seed 7
      charrnn generate run/best.pt --prime "Café au lait" --on-unknown skip
    """
    model, vocab = model_from_checkpoint(load_checkpoint(checkpoint), resolve_device(device))
    if on_unknown == "skip":
        prime, dropped = vocab.without_unknown(prime)
        if dropped:
            shown = " ".join(repr(c) for c in dropped)
            click.echo(f"warning: dropped prime character(s) outside the vocabulary: {shown}", err=True)
    characters = generate_text(model, vocab, prime, length, temperature, seed)
    click.echo(prime, nl=False)
    for character in characters:
        click.echo(character, nl=False)
    click.echo()


@main.command()
@click.argument("text_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Explain this trained model (and its vocabulary) instead of a fresh one.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=None, show_default=str(default_of(ModelConfig, "hidden_size")),
              help="H of a fresh model.")
@click.option("--num-layers", type=click.IntRange(min=1), default=None, show_default=str(default_of(ModelConfig, "num_layers")),
              help="L of a fresh model.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              show_default="the checkpoint's, or " + str(default_of(TrainConfig, "batch_size")), help="B: streams in the batch.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None,
              show_default="the checkpoint's, or " + str(default_of(TrainConfig, "seq_len")), help="T: characters per window.")
@click.option("--trace-gates", is_flag=True, help="Also run the gate-equation reference LSTM and print mean gate activations.")
@click.option("--seed", type=_SEED, default=default_of(TrainConfig, "seed"), help="Seed for a fresh model's weights.")
def explain(
    text_file: Path | None,
    checkpoint: Path | None,
    hidden_size: int | None,
    num_layers: int | None,
    batch_size: int | None,
    seq_len: int | None,
    trace_gates: bool,
    seed: int,
) -> None:
    """Show one real batch going through the model, with every tensor's shape and meaning.

    The shapes are read off the real tensors as the model runs. Without --checkpoint a fresh
    (untrained) model is built with the same defaults as `charrnn train`.

    \b
    Examples:
      charrnn explain
      charrnn explain --hidden-size 64 --batch-size 4 --seq-len 16 --trace-gates
      charrnn explain --checkpoint checkpoints/tinyshakespeare/best.pt
    """
    text = read_text(_text_or_bundled_book(text_file))
    if checkpoint is not None:
        if hidden_size is not None or num_layers is not None:
            raise click.UsageError("--hidden-size and --num-layers describe a fresh model; drop them with --checkpoint")
        saved = load_checkpoint(checkpoint)
        model, vocab = model_from_checkpoint(saved)
        saved_config = saved["train_config"]
        batch_size = batch_size or saved_config["batch_size"]
        seq_len = seq_len or saved_config["seq_len"]
        val_frac = saved_config["val_frac"]
    else:
        vocab = Vocab.from_text(text)
        model_config = ModelConfig(
            hidden_size=hidden_size or default_of(ModelConfig, "hidden_size"),
            num_layers=num_layers or default_of(ModelConfig, "num_layers"),
        )
        torch.manual_seed(seed)
        model = CharLSTM(len(vocab), model_config)
        batch_size = batch_size or default_of(TrainConfig, "batch_size")
        seq_len = seq_len or default_of(TrainConfig, "seq_len")
        val_frac = default_of(TrainConfig, "val_frac")
    click.echo(render(explain_batch(model, vocab, text, batch_size, seq_len, val_frac, trace_gates)))
