"""The `charrnn` command: a thin click layer over the library.

Each command parses typed options (defaults come from ``charrnn.config``), calls the library and
reports. A ``CharRNNError`` becomes one line on stderr and exit status 1; bad option values exit 2
(click's usage errors); an interrupted training run exits 128 + the signal number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import click
import torch
from click.core import ParameterSource

from charrnn import __version__
from charrnn.api import describe, load
from charrnn.config import ModelConfig, SampleConfig, TrainConfig, default_of
from charrnn.data import read_text
from charrnn.devices import DEVICE_CHOICES
from charrnn.errors import CharRNNError
from charrnn.explain import explain_text, render
from charrnn.model import CELLS
from charrnn.plot import plot_run
from charrnn.precision import PRECISION_CHOICES
from charrnn.sample import collect
from charrnn.schedule import SCHEDULES
from charrnn.trainer import fit, resume_run, start_run

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
# What torch.Generator.manual_seed takes; sample i of a batch uses seed + i, checked in generate.
_SAMPLE_SEED = click.IntRange(0, 2**64 - 1)

_device_option = click.option(
    "--device", type=click.Choice(DEVICE_CHOICES), default="auto",
    help="Where to run: auto picks cuda, then mps, then cpu.",
)  # fmt: skip

_MODEL_OPTIONS = ("hidden_size", "num_layers", "dropout", "cell")
_TRAIN_OPTIONS = tuple(field.name for field in dataclasses.fields(TrainConfig))  # all are options


@main.command()
@click.argument("text_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="checkpoints/<text file stem>; on resume, the checkpoint's directory",
              help="Run directory for last.pt and best.pt.")
@click.option("--cell", type=click.Choice(CELLS), default=default_of(ModelConfig, "cell"),
              help="The recurrent cell: LSTM, GRU or a plain tanh RNN.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=default_of(ModelConfig, "hidden_size"),
              help="Units per recurrent layer (H).")
@click.option("--num-layers", type=click.IntRange(min=1), default=default_of(ModelConfig, "num_layers"),
              help="Stacked recurrent layers (L).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), callback=_finite, default=default_of(ModelConfig, "dropout"),
              help="Dropout on each recurrent layer's output while training.")
@click.option("--batch-size", type=click.IntRange(min=1), default=default_of(TrainConfig, "batch_size"),
              help="Contiguous streams trained side by side (B), per process under torchrun.")
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
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), callback=_finite,
              default=default_of(TrainConfig, "time_limit"), show_default="none", metavar="MINUTES",
              help="Stop when training time (summed over resumes) reaches this, the final validation and save included.")
@click.option("--lr-schedule", type=click.Choice(SCHEDULES), default=default_of(TrainConfig, "lr_schedule"),
              help="Learning rate over the run: warm-up, then cosine or linear decay to --min-lr-ratio x --lr "
                   "(driven by steps, or by time when --time-limit comes first), or constant.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=default_of(TrainConfig, "warmup_steps"),
              help="Steps of linear warm-up before a decaying schedule.")
@click.option("--min-lr-ratio", type=click.FloatRange(0, 1), callback=_finite,
              default=default_of(TrainConfig, "min_lr_ratio"), help="Where a decaying schedule ends, as a fraction of --lr.")
@click.option("--patience", type=click.IntRange(min=1), default=default_of(TrainConfig, "patience"), show_default="off",
              help="Stop after this many validations in a row without a new best.")
@click.option("--eval-every", type=click.IntRange(min=1), default=default_of(TrainConfig, "eval_every"),
              help="Steps between validations over the whole val split (saves best.pt when it improves).")
@click.option("--save-every", type=click.IntRange(min=1), default=default_of(TrainConfig, "save_every"),
              help="Steps between writes of last.pt.")
@click.option("--sample-every", type=click.IntRange(min=1), default=default_of(TrainConfig, "sample_every"),
              show_default="at each validation", help="Steps between the short samples printed while training.")
@click.option("--sample-length", type=click.IntRange(min=1), default=default_of(TrainConfig, "sample_length"),
              help="Characters in each sample printed while training.")
@click.option("--no-sample", is_flag=True, help="Print no samples while training.")
@click.option("--seed", type=_SEED, default=default_of(TrainConfig, "seed"), help="Seed for weight init and dropout.")
@_device_option
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default=default_of(TrainConfig, "precision"),
              help="auto: bf16 autocast on a CUDA GPU (fp16 where it has no bf16), fp32 elsewhere.")
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
    no_sample: bool,
    **options: Any,
) -> None:
    """Train a character-level LSTM on TEXT_FILE (default: the bundled tinyshakespeare).

    Writes DIR/last.pt every --save-every steps and at the end, and DIR/best.pt whenever the
    validation loss improves. Ctrl-C (or SIGTERM) stops after the current step and saves
    last.pt; --resume continues exactly where it stopped.

    Under torchrun it trains data-parallel (DistributedDataParallel): --batch-size streams per
    process; rank 0 prints and writes the checkpoints.

    \b
    Examples:
      charrnn train
      charrnn train my_book.txt --hidden-size 512 --max-steps 5000
      charrnn train --resume checkpoints/tinyshakespeare/last.pt --max-steps 8000
      torchrun --nproc-per-node 4 -m charrnn train my_book.txt --device cuda
    """
    common = {"out_dir": out, "device": device}
    given = {
        name: value for name, value in options.items() if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }  # fmt: skip
    if no_sample:
        if "sample_every" in given:
            raise click.UsageError("--no-sample and --sample-every contradict each other: give one")
        options["sample_every"] = given["sample_every"] = 0
    if resume_from is not None:
        run = resume_run(resume_from, text_path=text_file, overrides=given, **common)
    else:
        text_file = _text_or_bundled_book(text_file)
        model_config = ModelConfig(**{name: options[name] for name in _MODEL_OPTIONS})
        train_config = TrainConfig(**{name: options[name] for name in _TRAIN_OPTIONS})
        run = start_run(text_file, model_config, train_config, **common)
    result = fit(run, progress_bar=progress)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

    if run.dist.is_main:
        best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f} nats/char"
        click.echo(f"step {result.step}: best val loss {best}; checkpoints in {result.out_dir}")
        if result.stopped_by_signal is not None:
            click.echo(f"resume with: charrnn train --resume {result.out_dir / 'last.pt'}", err=True)
        else:
            click.echo(f"generate with: charrnn generate {result.out_dir / 'best.pt'} --prime \"...\"")
    if result.stopped_by_signal is not None:
        ctx.exit(128 + result.stopped_by_signal)


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prime", default=default_of(SampleConfig, "prime"),
              help="Text to start from; the sample continues it. Empty: start from the zero state.")
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read the prime from this UTF-8 file instead (long or non-ASCII primes); "
                   "an empty file is the empty prime.")
@click.option("--length", type=click.IntRange(min=0), default=default_of(SampleConfig, "length"),
              help="Characters to generate after the prime (at most, with --stop).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), callback=_finite,
              default=default_of(SampleConfig, "temperature"),
              help="Divides the logits: below 1 is safer and more repetitive, above 1 wilder.")
@click.option("--top-k", type=click.IntRange(min=1), default=default_of(SampleConfig, "top_k"), show_default="off",
              help="Draw only among the K most likely characters.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), callback=_finite,
              default=default_of(SampleConfig, "top_p"), show_default="off",
              help="Draw only among the most likely characters whose probabilities add up to P (nucleus).")
@click.option("--greedy", is_flag=True, default=default_of(SampleConfig, "greedy"),
              help="Always take the most likely character: deterministic, often repetitive.")
@click.option("--num-samples", type=click.IntRange(min=1), default=default_of(SampleConfig, "num_samples"),
              help="Independent samples, drawn side by side as one batch; sample i uses seed + i.")
@click.option("--seed", type=_SAMPLE_SEED, default=None, show_default="random",
              help="Seed for sampling: the same seed gives the same text (on the same machine and torch build).")
@click.option("--stop", multiple=True, metavar="TEXT",
              help="End a sample just before TEXT, or the leftmost of several (repeatable; \\n and \\t are "
                   "understood). Only the generated text is searched, not the prime.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the samples to this new file, with a header saying what made them.")
@click.option("--no-header", is_flag=True, help="With --output: write the samples only.")
@click.option("--on-unknown", type=click.Choice(["error", "skip"]), default=default_of(SampleConfig, "on_unknown"),
              help="Prime characters the model never saw: stop with an error, or drop them with a warning.")
@_device_option
@click.pass_context
def generate(
    ctx: click.Context,
    checkpoint: Path,
    prime: str,
    prime_file: Path | None,
    length: int,
    num_samples: int,
    seed: int | None,
    stop: tuple[str, ...],
    output: Path | None,
    no_header: bool,
    on_unknown: str,
    device: str,
    **sampling: Any,
) -> None:
    """Generate text from CHECKPOINT, continuing the prime; a single sample streams to stdout.

    \b
    Examples:
      charrnn generate checkpoints/tinyshakespeare/best.pt --prime "ROMEO:" --length 300
      charrnn generate run/best.pt --temperature 0.7 --top-p 0.9 --num-samples 3 --seed 7
      charrnn generate run/best.pt --prime-file opening.txt --stop "\\n\\n" --output samples.txt
      charrnn generate run/best.pt --prime "Café au lait" --on-unknown skip
    """
    if prime_file is not None:
        if ctx.get_parameter_source("prime") is not ParameterSource.DEFAULT:
            raise click.UsageError("give the prime with --prime or with --prime-file, not both")
        prime = _read_utf8(prime_file, empty_ok=True)  # an empty file is the empty prime, like --prime ""
    if seed is not None and seed + num_samples - 1 > 2**64 - 1:
        raise click.BadParameter(
            f"{seed} + {num_samples - 1} is over 2**64 - 1: sample i uses seed + i, so give at most "
            f"{2**64 - num_samples} with --num-samples {num_samples}", ctx=ctx, param_hint="'--seed'",
        )  # fmt: skip
    if output is not None and output.exists():
        raise CharRNNError(f"{output} already exists: choose another --output (charrnn never overwrites it)")
    model = load(checkpoint, device)
    if on_unknown == "skip":
        prime, dropped = model.vocab.without_unknown(prime)
        if dropped:
            shown = " ".join(repr(c) for c in dropped)
            click.echo(f"warning: dropped prime character(s) outside the vocabulary: {shown}", err=True)
    stops = [_unescape(text) for text in stop]
    pieces = model.stream(prime, length, **sampling, seed=seed, num_samples=num_samples, stop=stops)
    seed = model.last_seed  # the one drawn when --seed was not given, for the separators and header

    if output is None and num_samples == 1:  # stream as it is produced
        click.echo(prime, nl=False)
        for _, piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        return
    texts = collect(pieces, num_samples)
    body = "".join(
        (f"----- sample {i + 1} of {num_samples} (seed {seed + i}) -----\n" if num_samples > 1 else "")
        + prime + text + "\n"
        for i, text in enumerate(texts)
    )
    if output is None:
        click.echo(body, nl=False)
        return
    header = "" if no_header else _sample_header(checkpoint, prime, length, seed, num_samples, stops, sampling)
    try:
        with open(output, "x", encoding="utf-8") as file:
            file.write(header + body)
    except OSError as exc:
        raise CharRNNError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {num_samples} sample(s) to {output}", err=True)


def _read_utf8(path: Path, *, empty_ok: bool = False) -> str:
    """``read_text`` for commands that have no --decode-errors, so that its advice to pass it
    is not given; with ``empty_ok`` an empty file is the empty text rather than an error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw and empty_ok:
        return ""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharRNNError(f"{path} is not valid UTF-8 (byte offset {exc.start}): convert it to UTF-8") from None
    return read_text(path)  # the same BOM, CRLF, NUL-byte and empty-file handling as everywhere


def _unescape(text: str) -> str:
    """The shell gives "\\n" as backslash + n: turn \\n, \\t and \\\\ into what they mean."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def _sample_header(
    checkpoint: Path, prime: str, length: int, seed: int, num_samples: int, stops: list[str], sampling: dict[str, Any]
) -> str:
    off = "off"
    lines = [
        "charrnn generate",
        f"checkpoint: {checkpoint}",
        f"prime: {prime!r}",
        f"temperature: {sampling['temperature']:g}  top-k: {sampling['top_k'] or off}  "
        f"top-p: {sampling['top_p'] or off}  greedy: {'yes' if sampling['greedy'] else 'no'}",
        f"length: {length}  samples: {num_samples}  seed: {seed}" + (" (sample i: seed + i)" if num_samples > 1 else ""),
        f"stop: {', '.join(repr(s) for s in stops) or 'none'}",
    ]
    return "".join(f"# {line}\n" for line in lines) + "\n"


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=None, show_default="the checkpoint's",
              help="Contiguous streams the text is scored in; 1 gives every character its full context.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, show_default="the checkpoint's",
              help="Characters per forward pass (the state is carried between them either way).")
@click.option("--strict", is_flag=True, help="Exit 1 if the text has characters outside the vocabulary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line instead of text.")
@click.option("--decode-errors", type=click.Choice(["strict", "replace"]), default=default_of(TrainConfig, "decode_errors"),
              help="What to do with bytes that are not UTF-8: refuse the file, or replace them with U+FFFD.")
@_device_option
def evaluate(
    checkpoint: Path, text_file: Path, batch_size: int | None, seq_len: int | None, strict: bool, as_json: bool,
    decode_errors: str, device: str,
) -> None:  # fmt: skip
    """Score CHECKPOINT on TEXT_FILE: nats and bits per character, and perplexity.

    The text is scored as the trainer scores its validation split (the state carried across
    windows, dropout off), so on that split's text it gives the validation loss the trainer
    reported.

    \b
    Examples:
      charrnn evaluate checkpoints/tinyshakespeare/best.pt some_play.txt
      charrnn evaluate run/best.pt book.txt --batch-size 1 --json
    """
    model = load(checkpoint, device)
    result = model.evaluate(read_text(text_file, decode_errors), batch_size=batch_size, seq_len=seq_len, strict=strict)
    if result.unknown:
        shown = ", ".join(f"{char!r} x{count}" for char, count in result.unknown.items())
        click.echo(f"warning: left out {sum(result.unknown.values())} character(s) outside the vocabulary: {shown}",
                   err=True)  # fmt: skip
    if as_json:
        click.echo(json.dumps({
            "checkpoint": str(checkpoint), "text": str(text_file),
            "nats_per_char": result.nats_per_char, "bits_per_char": result.bits_per_char,
            "perplexity": result.perplexity, "chars_scored": result.chars_scored, "streams": result.streams,
            "unknown_chars": result.unknown,
        }, ensure_ascii=False))  # fmt: skip
        return
    click.echo(f"{checkpoint} on {text_file}: {result.chars_scored:,} characters scored in {result.streams} stream(s)")
    click.echo(
        f"  {result.nats_per_char:.4f} nats/char   {result.bits_per_char:.4f} bits/char   "
        f"perplexity {result.perplexity:.3f}"
    )


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vocab", "show_vocab", is_flag=True, help="Also list the vocabulary, escaped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(checkpoint: Path, show_vocab: bool, as_json: bool) -> None:
    """Show what CHECKPOINT holds: the model, its training, and the figures it reached.

    \b
    Examples:
      charrnn info checkpoints/tinyshakespeare/best.pt
      charrnn info run/last.pt --vocab
    """
    facts = describe(checkpoint)
    if as_json:
        if not show_vocab:
            del facts["vocab"]
        click.echo(json.dumps(facts, ensure_ascii=False, indent=2))
        return
    model, train = facts["model_config"], facts["train_config"]

    def loss(value: float | None) -> str:
        return "none yet" if value is None else f"{value:.4f} nats/char ({value / math.log(2):.4f} bits/char)"

    def setting(name: str, spec: str = "") -> str:
        """A training setting as saved; "?" where the checkpoint lacks it (it is only shown here)."""
        try:
            return format(train[name], spec)
        except (KeyError, TypeError, ValueError):
            return "?"

    hours, rest = divmod(int(facts["elapsed_seconds"]), 3600)
    lines = [
        f"checkpoint     {facts['path']} ({facts['file_bytes'] / 1e6:.1f} MB, format {facts['format_version']}, "
        f"written by charrnn {facts['charrnn_version']} with torch {facts['torch_version']})",
        f"model          {model['num_layers']} x {model['hidden_size']} {model.get('cell', 'lstm').upper()}, "
        f"dropout {model['dropout']:g}, "
        f"{facts['parameters']:,} parameters",
        f"vocabulary     {facts['vocab_size']} characters",
        f"trained on     {facts['text_path']} ({facts['text_chars']:,} characters, last {setting('val_frac', 'g')} "
        "held out for validation)",
        f"training       batch {setting('batch_size')} x {setting('seq_len')}, lr {setting('lr', 'g')}, "
        f"grad clip {setting('grad_clip', 'g')}, seed {setting('seed')}",
        f"progress       step {facts['step']:,}, epoch {facts['epoch']}, {facts['chars_seen']:,} characters seen, "
        f"{hours}:{rest // 60:02d}:{rest % 60:02d} of training",
        f"best val loss  {loss(facts['best_val_loss'])}",
        f"last val loss  {loss(facts['last_val_loss'])}",
    ]
    if show_vocab:
        lines.append("vocab          " + " ".join(repr(c)[1:-1] or " " for c in facts["vocab"]))
    click.echo("\n".join(lines))


@main.command()
@click.argument("text_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Explain this trained model (and its vocabulary) instead of a fresh one.")
@click.option("--cell", type=click.Choice(CELLS), default=None, show_default=default_of(ModelConfig, "cell"),
              help="The cell of a fresh model.")
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
    cell: str | None,
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
    if checkpoint is not None and (cell is not None or hidden_size is not None or num_layers is not None):
        raise click.UsageError("--cell, --hidden-size and --num-layers describe a fresh model; drop them with --checkpoint")
    fresh = ModelConfig(
        hidden_size=hidden_size or default_of(ModelConfig, "hidden_size"),
        num_layers=num_layers or default_of(ModelConfig, "num_layers"),
        cell=cell or default_of(ModelConfig, "cell"),
    )
    explanation = explain_text(
        _read_utf8(_text_or_bundled_book(text_file)), checkpoint=checkpoint, model_config=fresh,
        batch_size=batch_size, seq_len=seq_len, seed=seed, trace_gates=trace_gates,
    )  # fmt: skip
    click.echo(render(explanation))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, show_default="RUN_DIR/loss.png",
              help="Image to write; its suffix picks the format (.png, .svg, .pdf). An existing file is not replaced.")
def plot(run_dir: Path, out: Path | None) -> None:
    """Draw RUN_DIR's train and validation loss against characters seen and training time.

    Reads RUN_DIR/metrics.csv, which `charrnn train` appends to at each validation; RUN_DIR may
    also be a checkpoint in it. The default RUN_DIR/loss.png is redrawn on every call. Needs
    matplotlib: pip install "charrnn[plot]".

    \b
    Examples:
      charrnn plot checkpoints/tinyshakespeare
      charrnn plot checkpoints/tinyshakespeare --out curves.svg
    """
    if run_dir.is_file():  # a checkpoint: its run directory
        run_dir = run_dir.parent
    if out is None:
        out = run_dir / "loss.png"
    elif out.exists():
        raise CharRNNError(f"{out} already exists: choose another --out (charrnn never overwrites it)")
    click.echo(f"wrote {plot_run(run_dir, out)}")
