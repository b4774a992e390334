"""`charrnn generate`: text from a checkpoint, streamed as it is drawn (``charrnn.api.CharModel``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from charrnn.api import CharModel
from charrnn.commands.common import EXISTING_FILE, MODEL_PATH, declared_options, load_model, read_utf8, unescape
from charrnn.config import DEFAULT_ITEMS, Acceleration, Placement, SampleConfig
from charrnn.core.copies import MIN_COPY, NotChecked
from charrnn.errors import CharRNNError
from charrnn.generation.decoder import Piece
from charrnn.generation.sample import collect
from charrnn.sampling import Sampling


@click.command()
@click.argument("checkpoint", type=MODEL_PATH, required=False)
@declared_options("generate", SampleConfig, Sampling, Placement, Acceleration)
@click.option(
    "--prime-file",
    type=EXISTING_FILE,
    default=None,
    help="Read the prime from this UTF-8 file instead (long or non-ASCII primes); an empty file is the empty prime.",
)
@click.option(
    "--stop",
    multiple=True,
    metavar="TEXT",
    help="End a sample just before TEXT, or the leftmost of several (repeatable; \\n, \\t and \\xHH are "
    "understood: \\x1c is the end of a document). Only the generated text is searched, not the prime.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the samples to this new file, with a header saying what made them.",
)
@click.option("--no-header", is_flag=True, help="With --output: write the samples only.")
@click.option(
    "--copies",
    default=str(MIN_COPY),
    metavar="N|off",
    callback=lambda ctx, param, value: _copies_option(value),
    help="After the text, say on stderr how much of it lies in stretches of N+ characters found in the "
    "training text, and the longest (docs/look-inside.md); off: do not check.",
)
@click.pass_context
def generate(
    ctx: click.Context,
    checkpoint: Path | None,
    prime: str,
    prime_file: Path | None,
    length: int,
    num_samples: int,
    seed: int | None,
    stop: tuple[str, ...],
    output: Path | None,
    no_header: bool,
    copies: int | None,
    items: int | None,
    logprobs: int | None,
    beam: int | None,
    on_unknown: str,
    device: str,
    threads: str,
    compile: str,
    quantize: str,
    **sampling: Any,
) -> None:
    """Generate text from CHECKPOINT (default: the bundled Shakespeare model; a directory written
    by `charrnn export` works too), continuing the prime; a single sample streams to stdout.

    \b
    Examples:
      charrnn generate --prime "ROMEO:"
      charrnn generate checkpoints/tinyshakespeare/best.pt --prime "ROMEO:" --length 300
      charrnn generate run/best.pt --temperature 0.7 --top-p 0.9 --num-samples 3 --seed 7
      charrnn generate run/best.pt --prime-file opening.txt --stop "\\n\\n" --output samples.txt
      charrnn generate run/best.pt --prime "Café au lait" --on-unknown skip
      charrnn generate names/best.pt --items 50 --prime "Mar"
      charrnn generate run/best.pt --length 100000 --compile on --output long.txt
      charrnn generate run/best.pt --quantize int8
      charrnn generate --prime "ROMEO:" --repetition-penalty 1.3 --min-p 0.05
      charrnn generate --prime "ROMEO:" --length 60 --logprobs 3
      charrnn generate --prime "ROMEO:" --length 80 --beam 8

    A model trained with --line-items prints whole items, one per line (--items of them), and
    then, on stderr, how many are new: not a line of the text it was trained on.
    """
    if prime_file is not None:
        if ctx.get_parameter_source("prime") is not ParameterSource.DEFAULT:
            raise click.UsageError("give the prime with --prime or with --prime-file, not both")
        prime = read_utf8(prime_file, empty_ok=True)  # an empty file is the empty prime, like --prime ""
    if seed is not None and seed + num_samples - 1 > 2**64 - 1:
        raise click.BadParameter(
            f"{seed} + {num_samples - 1} is over 2**64 - 1: sample i uses seed + i, so give at most "
            f"{2**64 - num_samples} with --num-samples {num_samples}",
            ctx=ctx,
            param_hint="'--seed'",
        )
    if output is not None and output.exists():
        raise CharRNNError(f"{output} already exists: choose another --output (charrnn never overwrites it)")
    if beam is not None and (num_samples > 1 or logprobs is not None or items is not None):
        raise click.UsageError("--beam gives the one most likely text: not with --num-samples, --logprobs or --items")
    model, name = load_model(checkpoint, device, compile, quantize, threads)
    if beam is not None:
        _print_beam(model, prime, length, beam, [unescape(text) for text in stop], output)
        return
    if items is not None or model.line_items:
        stops = [unescape(text) for text in stop]
        _print_items(model, items or DEFAULT_ITEMS, prime, length, seed, stops, sampling, output)
        return
    if on_unknown == "skip":
        prime, dropped = model.vocab.without_unknown(prime)
        if dropped:
            shown = " ".join(repr(c) for c in dropped)
            click.echo(f"warning: dropped prime character(s) outside the vocabulary: {shown}", err=True)
    stops = [unescape(text) for text in stop]
    if logprobs is not None:
        scored = model.stream_scored(
            prime, length, seed=seed, num_samples=num_samples, stop=stops, logprobs=logprobs, **sampling
        )
        _print_scores(scored, output)
        return
    pieces = model.stream(prime, length, **sampling, seed=seed, num_samples=num_samples, stop=stops)
    seed = model.last_seed  # the one drawn when --seed was not given, for the separators and header

    if output is None and num_samples == 1:  # stream as it is produced
        click.echo(prime, nl=False)
        drawn = []
        for _, piece in pieces:
            click.echo(piece, nl=False)
            drawn.append(piece)
        click.echo()
        _report_copies(model, ["".join(drawn)], copies)
        return
    texts = collect(pieces, num_samples)
    _report_copies(model, texts, copies)
    body = "".join(
        (f"----- sample {i + 1} of {num_samples} (seed {seed + i}) -----\n" if num_samples > 1 else "")
        + prime
        + text
        + "\n"
        for i, text in enumerate(texts)
    )
    if output is None:
        click.echo(body, nl=False)
        return
    header = (
        "" if no_header else _sample_header(str(checkpoint or name), prime, length, seed, num_samples, stops, sampling)
    )
    _write_new_file(output, header + body)
    click.echo(f"wrote {num_samples} sample(s) to {output}", err=True)


def _copies_option(value: str) -> int | None:
    if value == "off":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"must be off or a whole number >= 1, got {value!r}", param_hint="'--copies'")
    return int(value)


def _report_copies(model: CharModel, texts: list[str], min_chars: int | None) -> None:
    """--copies: a line on stderr per sample (stdout stays the text)."""
    if min_chars is None:
        return
    try:
        for i, text in enumerate(texts):
            line = model.copies(text, min_chars).line()
            click.echo(f"sample {i + 1}: {line}" if len(texts) > 1 else line, err=True)
    except NotChecked as exc:
        click.echo(f"copies: not checked: {exc}", err=True)


def _print_items(
    model: CharModel,
    count: int,
    prime: str,
    length: int,
    seed: int | None,
    stops: list[str],
    sampling: dict[str, Any],
    output: Path | None,
) -> None:
    """--items: whole items on stdout (or in --output), then one line on stderr saying how many are new."""
    items = model.generate_items(count, prime, max_length=length, seed=seed, stop=stops, **sampling)
    body = "".join(item.text + "\n" for item in items)
    if output is None:
        click.echo(body, nl=False)
    else:
        _write_new_file(output, body)
    new = sum(item.new for item in items)
    cut = sum(not item.whole for item in items)
    click.echo(
        f"{new} of {len(items)} items are new (not in the training text), {len(items) - new} copied from it"
        + (f"; {cut} reached --length {length} before ending and were cut" if cut else "")
        + (f"; only {len(items)} of {count}: the model kept ending items at once" if len(items) < count else "")
        + f" (seed {model.last_seed})",
        err=True,
    )


def _print_scores(pieces: Iterator[Piece], output: Path | None) -> None:
    """--logprobs: one JSON line per character drawn (stdout, or a new --output file)."""
    offsets: dict[int, int] = {}
    lines = []
    for piece in pieces:
        for score in piece.scores:
            offset = offsets.get(piece.row.tag, 0)
            offsets[piece.row.tag] = offset + 1
            record = {"sample": piece.row.tag, "offset": offset, "char": score.char, "logprob": score.logprob}
            record["top_logprobs"] = [{"char": char, "logprob": value} for char, value in score.top]
            line = json.dumps(record, ensure_ascii=False)
            if output is None:
                click.echo(line)
            else:
                lines.append(line + "\n")
    if output is not None:
        _write_new_file(output, "".join(lines))
        click.echo(f"wrote {len(lines)} character(s) with their log-probabilities to {output}", err=True)


def _print_beam(model: CharModel, prime: str, length: int, beam: int, stops: list[str], output: Path | None) -> None:
    """--beam: the most likely continuation, then its log-probability on stderr."""
    found = model.most_likely(prime, length, beam=beam, stop=stops)
    if output is None:
        click.echo(prime + found.text)
    else:
        _write_new_file(output, prime + found.text + "\n")
    per_char = found.logprob / max(len(found.text), 1)
    click.echo(
        f"beam {beam}: {len(found.text)} characters, ended by {found.ended_by}; log-probability "
        f"{found.logprob:.2f} nats ({per_char:.3f} per character)",
        err=True,
    )


def _write_new_file(output: Path, text: str) -> None:
    try:
        with open(output, "x", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise CharRNNError(f"cannot write {output}: {exc.strerror or exc}") from None


def _sample_header(
    checkpoint: str, prime: str, length: int, seed: int, num_samples: int, stops: list[str], sampling: dict[str, Any]
) -> str:
    lines = [
        "charrnn generate",
        f"checkpoint: {checkpoint}",
        f"prime: {prime!r}",
        Sampling(**sampling).describe(),
        f"length: {length}  samples: {num_samples}  seed: {seed}"
        + (" (sample i: seed + i)" if num_samples > 1 else ""),
        f"stop: {', '.join(repr(s) for s in stops) or 'none'}",
    ]
    return "".join(f"# {line}\n" for line in lines) + "\n"
