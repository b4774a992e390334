"""`charrnn plot`: a run's learning curves, drawn from its metrics.csv.

matplotlib is an optional extra (``pip install "charrnn[plot]"``): training and generation never
need it, so it is imported only here, when a plot is asked for.
"""

from __future__ import annotations

import math
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.formats.metrics import METRICS_FILE, read_rows

MISSING_MATPLOTLIB = 'charrnn plot needs matplotlib: install it with  pip install "charrnn[plot]"'
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"  # blue and red: tests/test_plot.py looks for them


def plot_run(run_dir: str | Path, out: str | Path) -> Path:
    """Draw train and val loss against characters seen and against training time; write ``out``.

    The format follows ``out``'s suffix (PNG, SVG, PDF: whatever matplotlib writes).
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state
    except ImportError:
        raise CharRNNError(MISSING_MATPLOTLIB) from None
    run_dir, out = Path(run_dir), Path(out)
    rows = read_rows(run_dir)
    if not rows:
        raise CharRNNError(f"{run_dir / METRICS_FILE} has no rows yet: it gets one at each validation")

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    by_chars, by_time = figure.subplots(1, 2, sharey=True)
    curves = {
        by_chars: ("chars_seen", 1e-6, "characters seen (millions)"),
        by_time: ("elapsed_seconds", 1 / 60, "training time (minutes)"),
    }
    for axes, (column, scale, label) in curves.items():
        for loss, color, name in (("train_loss", TRAIN_COLOR, "train"), ("val_loss", VAL_COLOR, "validation")):
            points = [
                (row[column] * scale, row[loss]) for row in rows if row[column] is not None and row[loss] is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.5, label=name)
        axes.set_xlabel(label)
        axes.grid(alpha=0.3)
    by_chars.set_ylabel("loss (nats per character)")
    bits = by_time.secondary_yaxis("right", functions=(lambda nats: nats / math.log(2), lambda b: b * math.log(2)))
    bits.set_ylabel("bits per character")
    by_chars.legend()
    val_losses = [row["val_loss"] for row in rows if row["val_loss"] is not None]
    best = f"best val {min(val_losses):.4f} nats/char" if val_losses else "no validation yet"
    figure.suptitle(f"{run_dir.resolve().name}: {len(rows)} validations, {best}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=110)
    except (OSError, ValueError) as exc:
        raise CharRNNError(f"cannot write {out}: {getattr(exc, 'strerror', None) or exc}") from None
    return out
