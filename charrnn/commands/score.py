"""`charrnn score`: how surprising a text is to a model, character by character, and which units
of the model follow a property of the text (charrnn/generation/inside.py).

Every number is the model's own log-probability of a character given all of the text before it,
as `charrnn evaluate TEXT --batch-size 1` scores it (minus their mean is its figure).
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import click

from charrnn.api import CharModel, load
from charrnn.commands.common import EXISTING_FILE, declared_options
from charrnn.config import Placement, TrainConfig
from charrnn.core.corpus import DOCUMENT_SEPARATOR, TextFormat, read_joined
from charrnn.errors import CharRNNError
from charrnn.generation.decoder import MAX_LOGPROBS, CharScore
from charrnn.generation.inside import BUILT_IN, Activations, rank_units, surprising_spans, text_property

PAGE_UNITS = 20  # units a page carries (values of every character each), the best-ranked first


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE)
@click.argument("text", nargs=-1, required=True)
@click.option(
    "--top", type=click.IntRange(0, MAX_LOGPROBS), default=3, help="Likeliest alternatives shown per character."
)
@click.option(
    "--find",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Rank the units by how well they follow this property: a regular expression (inside its "
    f"matches = 1) or {', '.join(BUILT_IN)}; repeatable.",
)
@click.option("--units", type=click.IntRange(1), default=10, help="Units listed per --find pattern.")
@click.option(
    "--unit",
    "named_units",
    multiple=True,
    metavar="NAME",
    help="Also put this unit on the --html page (such as c2:326: layer 2's cell, unit 326); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a self-contained page: the text coloured by surprise (or by a unit), alternatives on hover.",
)
@declared_options("score", TrainConfig, Placement)
def score(
    checkpoint: Path,
    text: tuple[str, ...],
    top: int,
    patterns: tuple[str, ...],
    units: int,
    named_units: tuple[str, ...],
    as_json: bool,
    html_out: Path | None,
    encoding: str,
    newlines: str,
    decode_errors: str,
    device: str,
    threads: str,
) -> None:
    """Score every character of TEXT under CHECKPOINT: its log-probability and the likeliest
    alternatives, the most surprising stretches, and (--find) the units that track a property.

    \b
    Examples:
      charrnn score run/best.pt play.txt
      charrnn score run/best.pt play.txt --html play.html
      charrnn score run/best.pt play.txt --find '"[^"]*"' --find line-position --html cells.html

    TEXT is read as `charrnn evaluate` reads it; characters outside the model's vocabulary are
    left out (and named), as there. The mean is `charrnn evaluate TEXT --batch-size 1`'s figure.
    """
    model = load(checkpoint, device, threads=threads)
    separator = DOCUMENT_SEPARATOR if DOCUMENT_SEPARATOR in model.vocab.chars else ""
    joined = read_joined(text, TextFormat(encoding, decode_errors, newlines), separator, warn=_warn)
    kept, unknown = model.vocab.without_unknown(joined)
    if unknown:
        _warn(f"warning: left out {len(joined) - len(kept):,} characters the model has never seen: "
              + " ".join(repr(c) for c in sorted(unknown)[:20]))  # fmt: skip
    if len(kept) < 2:
        raise CharRNNError("the text needs at least 2 characters the model knows to be scored")
    report = Report.of(model, kept, top, patterns, units, named_units)
    if html_out is not None:
        try:
            html_out.write_text(report.page(checkpoint), encoding="utf-8")
        except OSError as exc:
            raise CharRNNError(f"cannot write {html_out}: {exc.strerror or exc}") from None
        _warn(f"wrote {html_out}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.rankings:
        click.echo(report.ranking(), nl=False)
    elif html_out is None:
        click.echo(report.table(), nl=False)
    _warn(report.summary())


def _warn(line: str) -> None:
    click.echo(line, err=True)


class Report:
    """A scored text, the surprising spans, and the units ranked for each pattern."""

    def __init__(self, text: str, scores: list[CharScore], rankings: dict, acts: Activations | None, named=()):
        self.text, self.scores, self.rankings, self.acts = text, scores, rankings, acts
        self.named = list(named)  # units asked for by name (--unit), carried by the page first
        self.nats = -sum(s.logprob for s in scores) / len(scores)
        self.spans = surprising_spans([s.logprob for s in scores])

    @classmethod
    def of(cls, model: CharModel, text: str, top: int, patterns: tuple[str, ...], units: int, named=()) -> Report:
        scores = model.score(text, top)
        rankings, acts = {}, None
        if patterns or named:
            acts = model.activations(text)
            for pattern in patterns:
                try:
                    prop = text_property(text, pattern)
                except ValueError as exc:
                    raise CharRNNError(f"--find: {exc}") from None
                rankings[pattern] = rank_units(acts, prop, units)
        for name in named:
            if name not in acts.names:
                shown = f"{acts.names[0]} to {acts.names[-1]}"
                raise CharRNNError(f"--unit: this model has no unit {name!r}: its units are named {shown}")
        return cls(text, scores, rankings, acts, named)

    def summary(self) -> str:
        return (
            f"{len(self.scores):,} characters scored: {self.nats:.4f} nats/char, "
            f"{self.nats / math.log(2):.4f} bits/char (as evaluate --batch-size 1)"
        )

    def ranking(self) -> str:
        """For each --find pattern, its best-following units and their r."""
        lines = []
        for pattern, ranked in self.rankings.items():
            lines.append(f"units that follow {pattern} (Pearson r):")
            lines += [f"  {name:>8}  {r:+.3f}" for name, r in ranked]
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        """A line per scored character (tab-separated), then the most surprising stretches."""
        lines = ["offset\tchar\tlogprob\tbits\tlikeliest"]
        for i, s in enumerate(self.scores, start=1):
            alternatives = "  ".join(f"{c!r} {math.exp(v):.3f}" for c, v in s.top)
            lines.append(f"{i}\t{s.char!r}\t{s.logprob:.4f}\t{-s.logprob / math.log(2):.3f}\t{alternatives}")
        lines.append("most surprising:")
        lines += [f"  {nats / math.log(2):6.1f} bits  {self.text[a + 1 : b + 1]!r}" for a, b, nats in self.spans]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "nats_per_char": self.nats,
            "bits_per_char": self.nats / math.log(2),
            "chars_scored": len(self.scores),
            "characters": [
                {
                    "offset": i,
                    "char": s.char,
                    "logprob": s.logprob,
                    "top_logprobs": [{"char": c, "logprob": v} for c, v in s.top],
                }
                for i, s in enumerate(self.scores, start=1)
            ],
            "surprising": [
                {"start": a + 1, "end": b + 1, "text": self.text[a + 1 : b + 1], "nats": n} for a, b, n in self.spans
            ],
            "units": {
                pattern: [{"unit": name, "r": r} for name, r in ranked] for pattern, ranked in self.rankings.items()
            },
        }

    def page(self, checkpoint: Path) -> str:
        """One HTML file with everything inline: no network, no script from elsewhere."""
        spans = [f'<span class="c" data-i="0">{html.escape(self.text[0])}</span>']
        for i, s in enumerate(self.scores, start=1):
            alternatives = ", ".join(f"{c!r} {math.exp(v):.3f}" for c, v in s.top)
            bits = -s.logprob / math.log(2)
            tip = f"{s.char!r}: p = {math.exp(s.logprob):.4f}, {bits:.2f} bits; likeliest: {alternatives}"
            spans.append(
                f'<span class="c" data-i="{i}" data-logprob="{s.logprob:.6f}" title="{html.escape(tip)}">'
                f"{html.escape(s.char)}</span>"
            )
        ranked_names = [name for ranked in self.rankings.values() for name, _ in ranked]
        chosen = list(dict.fromkeys(self.named + ranked_names[:PAGE_UNITS]))
        unit_data = {
            name: {"r": {p: r for p, ranked in self.rankings.items() for n, r in ranked if n == name},
                   "values": [round(float(v), 3) for v in self.acts.unit(name)]}
            for name in chosen
        }  # fmt: skip
        surprising = "".join(
            f'<li><a href="#" data-start="{a + 1}" data-end="{b + 1}">'
            f"{html.escape(repr(self.text[a + 1 : b + 1]))}</a> {n / math.log(2):.1f} bits</li>"
            for a, b, n in self.spans
        )
        template = (resources.files("charrnn") / "commands" / "score.html").read_text(encoding="utf-8")
        facts = f"{checkpoint}: {self.summary()}"
        return (
            template.replace("{{facts}}", html.escape(facts))
            .replace("{{text}}", "".join(spans))
            .replace("{{surprising}}", surprising)
            .replace("{{units}}", json.dumps(unit_data).replace("</", "<\\/"))
        )
