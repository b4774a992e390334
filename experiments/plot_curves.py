"""Validation curves of several runs on one text, against passes over it: where more passes stop paying.

Usage: python experiments/plot_curves.py --out FILE --train-chars N [--title T] LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each run's metrics.csv gives one curve; ``--train-chars`` (the training split's length) turns
characters seen into passes, the axis on which a shape reaches what its text can teach it.
Needs matplotlib (``pip install "charrnn[plot]"``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from charrnn.formats.metrics import read_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--train-chars", required=True, type=int)
    parser.add_argument("--title", default="")
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    args = parser.parse_args()

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    for entry in args.runs:
        label, _, run_dir = entry.partition("=")
        rows = [row for row in read_rows(Path(run_dir)) if row["val_loss"] is not None]
        passes = [row["chars_seen"] / args.train_chars for row in rows]
        losses = [row["val_loss"] for row in rows]
        best = min(losses)
        axes.plot(passes, losses, marker="o", markersize=2, linewidth=1.2, label=f"{label}: best {best:.4f}")
    axes.set_xlabel("passes over the training text")
    axes.set_ylabel("validation loss (nats per character)")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title(args.title)
    bottom, _ = axes.get_ylim()
    axes.set_ylim(bottom, bottom + 0.35)  # the late part of the curves, where the runs differ
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
