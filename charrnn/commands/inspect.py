"""The commands that look at a model or a run: `evaluate`, `info`, `explain` and `plot`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click

from charrnn.api import load
from charrnn.commands.common import EXISTING_FILE, declared_options, read_utf8, text_or_bundled_book
from charrnn.commands.explain import explain_text, render
from charrnn.commands.plot import plot_run
from charrnn.config import Acceleration, DynamicEvaluation, ModelConfig, Placement, TrainConfig
from charrnn.core.corpus import DOCUMENT_SEPARATOR, TextFormat, read_joined
from charrnn.errors import CharRNNError
from charrnn.generation.evaluate import Evaluation
from charrnn.options import build
from charrnn.runs import describe


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE)
@click.argument("text", nargs=-1, required=True)
@declared_options(
    "evaluate",
    TrainConfig,
    DynamicEvaluation,
    Placement,
    Acceleration,
    replace={name: (None, "the checkpoint's") for name in ("batch_size", "seq_len")},
)
@click.option("--strict", is_flag=True, help="Exit 1 if the text has characters outside the vocabulary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line instead of text.")
def evaluate(
    checkpoint: Path,
    text: tuple[str, ...],
    batch_size: int | None,
    seq_len: int | None,
    strict: bool,
    as_json: bool,
    encoding: str,
    newlines: str,
    decode_errors: str,
    device: str,
    threads: str,
    quantize: str,
    **dynamic: Any,
) -> None:
    """Score CHECKPOINT on TEXT: nats and bits per character, and perplexity.

    The text is scored as the trainer scores its validation split (the state carried across
    windows, dropout off), so on that split's text it gives the validation loss the trainer
    reported. TEXT is read as `charrnn train` reads it (files, directories, glob patterns);
    several documents are joined by the document separator if the model knows it, else back to back.

    \b
    Examples:
      charrnn evaluate checkpoints/tinyshakespeare/best.pt some_play.txt
      charrnn evaluate run/best.pt book.txt --batch-size 1 --json
      charrnn evaluate run/best.pt held-out/ --encoding cp1252
      charrnn evaluate run/best.pt play.txt --dynamic
      charrnn evaluate run/best.pt play.txt --quantize int8

    --dynamic also scores the text while adapting to it (dynamic evaluation): a second figure,
    printed after the static one and never mixed with it. --quantize int8 scores the int8 step
    that generation would run, beside the float32 figure and the change between them.
    """
    model = load(checkpoint, device, threads=threads)
    separator = DOCUMENT_SEPARATOR if DOCUMENT_SEPARATOR in model.vocab.chars else ""
    text_format = TextFormat(encoding, decode_errors, newlines)
    joined = read_joined(text, text_format, separator, warn=lambda line: click.echo(line, err=True))
    result = model.evaluate(joined, batch_size=batch_size, seq_len=seq_len, strict=strict)
    quantized = None
    if quantize == "int8":  # the int8 step beside the float32 figure, as generation would run it
        note = lambda line: click.echo(line, err=True)
        int8_model = load(checkpoint, device, quantize="int8", threads=threads, note=note)
        quantized = int8_model.evaluate(joined, batch_size=batch_size, seq_len=seq_len, strict=strict)
        if int8_model.runtime.kind != "int8":  # unavailable here: the note said why
            quantized = None
    config = build(DynamicEvaluation, dynamic)
    adapted = None
    if config.dynamic:
        adapted = model.evaluate_dynamic(
            joined, seq_len=config.dynamic_seq_len, lr=config.dynamic_lr, decay=config.dynamic_decay, strict=strict
        )
    text_file = text[0] if len(text) == 1 else list(text)
    if result.unknown:
        click.echo(f"warning: {_left_out(result.unknown, len(joined))}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "checkpoint": str(checkpoint),
                    "text": text_file,
                    "nats_per_char": result.nats_per_char,
                    "bits_per_char": result.bits_per_char,
                    "perplexity": result.perplexity,
                    "chars_scored": result.chars_scored,
                    "streams": result.streams,
                    "unknown_chars": result.unknown,
                    **({} if adapted is None else {"dynamic": _dynamic_facts(adapted, config)}),
                    **({} if quantized is None else {"int8": _int8_facts(quantized, result)}),
                },
                ensure_ascii=False,
            )
        )
        return
    click.echo(
        f"{checkpoint} on {' '.join(text)}: {result.chars_scored:,} characters scored in {result.streams} stream(s)"
    )
    click.echo(
        f"  {result.nats_per_char:.4f} nats/char   {result.bits_per_char:.4f} bits/char   "
        f"perplexity {_perplexity(result.perplexity)}"
    )
    if quantized is not None:
        click.echo(
            f"int8 weights: {quantized.nats_per_char:.4f} nats/char   {quantized.bits_per_char:.4f} bits/char   "
            f"perplexity {_perplexity(quantized.perplexity)}   "
            f"({quantized.nats_per_char - result.nats_per_char:+.4f} nats/char against float32)"
        )
    if adapted is not None:
        click.echo(
            f"dynamic evaluation (1 stream, an update every {config.dynamic_seq_len} characters, "
            f"lr {config.dynamic_lr:g}, decay {config.dynamic_decay:g}): {adapted.chars_scored:,} characters scored"
        )
        click.echo(
            f"  {adapted.nats_per_char:.4f} nats/char   {adapted.bits_per_char:.4f} bits/char   "
            f"perplexity {_perplexity(adapted.perplexity)}   "
            f"({adapted.nats_per_char - result.nats_per_char:+.4f} nats/char against the static figure)"
        )


def _left_out(unknown: dict[str, int], text_chars: int) -> str:
    """'left out 401 occurrences (0.4% of the text) of 291 distinct characters outside the
    vocabulary, the most frequent: ...': the same truncation as --strict's error."""
    occurrences = sum(unknown.values())
    ranked = sorted(unknown.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{char!r} x{count}" for char, count in ranked[:20])
    more = f" and {len(ranked) - 20} more" if len(ranked) > 20 else ""
    return (
        f"left out {occurrences:,} occurrence(s) ({occurrences / text_chars:.1%} of the text) of "
        f"{len(ranked)} distinct character(s) outside the vocabulary: {shown}{more}"
    )


def _perplexity(value: float) -> str:
    return f"{value:.3f}" if value < 1e6 else f"{value:.3e}"


def _int8_facts(quantized: Evaluation, result: Evaluation) -> dict:
    return {
        "nats_per_char": quantized.nats_per_char,
        "bits_per_char": quantized.bits_per_char,
        "perplexity": quantized.perplexity,
        "change_nats_per_char": quantized.nats_per_char - result.nats_per_char,
    }


def _dynamic_facts(adapted: Evaluation, config: DynamicEvaluation) -> dict:
    return {
        "nats_per_char": adapted.nats_per_char,
        "bits_per_char": adapted.bits_per_char,
        "perplexity": adapted.perplexity,
        "chars_scored": adapted.chars_scored,
        "streams": adapted.streams,
        "seq_len": config.dynamic_seq_len,
        "lr": config.dynamic_lr,
        "decay": config.dynamic_decay,
    }


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE)
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
        f"written by charrnn {facts['charrnn_version']} with torch {facts['torch_version']})"
        + ("" if facts["resumable"] else "; for generation only: it cannot be resumed"),
        f"model          {model['num_layers']} x {model['hidden_size']} {model['cell'].upper()}, "
        f"dropout {model['dropout']:g}, "
        + (f"weight drop {model['weight_drop']:g}, " if model["weight_drop"] else "")
        + ("adaptive softmax head, " if model["head"] == "adaptive" else "")
        + f"{facts['parameters']:,} parameters",
        f"vocabulary     {facts['vocab_size']} characters ({facts['input_path']} inputs)",
        f"trained on     {_trained_on(facts)} ({facts['text_chars']:,} characters, "
        + (
            f"validated on {facts['val_document']})"
            if facts["val_document"]
            else f"{setting('val_frac', 'g')} of the items held out for validation)"
            if facts["line_items"] is not None
            else f"last {setting('val_frac', 'g')} of each held out for validation)"
        ),
        f"training       batch {setting('batch_size')} x {setting('seq_len')}, lr {setting('lr', 'g')}, "
        f"grad clip {setting('grad_clip', 'g')}, seed {setting('seed')}",
        f"progress       step {facts['step']:,}, epoch {facts['epoch']}, {facts['chars_seen']:,} characters seen, "
        f"{hours}:{rest // 60:02d}:{rest % 60:02d} of training",
        f"best val loss  {loss(facts['best_val_loss'])}"
        + (f" on a {facts['val_sample']:,}-character sample of the split" if facts["val_sample"] else ""),
        f"last val loss  {loss(facts['last_val_loss'])}",
    ]
    if facts["plan"]:
        lines.insert(2, f"planned        {facts['plan']['line'].removeprefix('plan: ')}")
    if facts["base"]:
        lines.insert(4, f"fine-tuned from {facts['base']['path']} (sha256 {facts['base']['sha256'][:12]}...)")
    if show_vocab:
        lines.append("vocab          " + " ".join(repr(c)[1:-1] or " " for c in facts["vocab"]))
    click.echo("\n".join(lines))


def _trained_on(facts: dict) -> str:
    """'/books/emma.txt', or '312 files under /lyrics', with the line items' count if any."""
    documents = facts["documents"]
    if len(documents) == 1:
        what = documents[0]["path"]
    else:
        where = os.path.commonpath([d["path"] for d in documents])
        what = f"{len(documents):,} files under {where}"
    if facts["line_items"] is not None:
        what += f", {facts['line_items']:,} distinct line items"
    return what


@click.command()
@click.argument("text_file", required=False, type=EXISTING_FILE)
@click.option(
    "--checkpoint",
    type=EXISTING_FILE,
    default=None,
    help="Explain this trained model (and its vocabulary) instead of a fresh one.",
)
@declared_options(
    "explain",
    ModelConfig,
    TrainConfig,
    replace={
        **{
            name: (None, f"{getattr(ModelConfig, name)} for a fresh model")
            for name in ("cell", "head", "hidden_size", "num_layers")
        },
        **{name: (None, f"the checkpoint's, or {getattr(TrainConfig, name)}") for name in ("batch_size", "seq_len")},
    },
)
@click.option(
    "--trace-gates", is_flag=True, help="Also run the gate-equation reference LSTM and print mean gate activations."
)
def explain(
    text_file: Path | None,
    checkpoint: Path | None,
    cell: str | None,
    head: str | None,
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
    if checkpoint is not None and any(value is not None for value in (cell, head, hidden_size, num_layers)):
        raise click.UsageError(
            "--cell, --head, --hidden-size and --num-layers describe a fresh model; drop them with --checkpoint"
        )
    fresh = ModelConfig(
        hidden_size=hidden_size or ModelConfig.hidden_size,
        num_layers=num_layers or ModelConfig.num_layers,
        cell=cell or ModelConfig.cell,
        head=head or ModelConfig.head,
    )
    explanation = explain_text(
        read_utf8(text_or_bundled_book(text_file)),
        checkpoint=checkpoint,
        model_config=fresh,
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        trace_gates=trace_gates,
    )
    click.echo(render(explanation))


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="RUN_DIR/loss.png",
    help="Image to write; its suffix picks the format (.png, .svg, .pdf). An existing file is not replaced.",
)
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
