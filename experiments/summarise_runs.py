"""One line per finished run: steps, best validation loss, and training characters per second.

Usage: python experiments/summarise_runs.py RUN_DIR [RUN_DIR ...]

Reads each run's metrics.csv (one row per validation). The speed is the whole run's: characters
trained on divided by the seconds spent in training steps (validations and saves left out), so
that the loss of runs on different machines can be read beside how fast each machine was.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def summarise(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "metrics.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seconds, chars_before = 0.0, 0
    for row in rows:
        chars = int(row["chars_seen"]) - chars_before
        seconds += chars / float(row["chars_per_second"])
        chars_before = int(row["chars_seen"])
    return {
        "steps": int(rows[-1]["step"]),
        "best_val_loss": min(float(row["val_loss"]) for row in rows),
        "chars_per_second": chars_before / seconds,
        "minutes": float(rows[-1]["elapsed_seconds"]) / 60,
    }


def main() -> None:
    losses = []
    for name in sys.argv[1:]:
        facts = summarise(Path(name))
        losses.append(facts["best_val_loss"])
        print(
            f"{name}: {facts['steps']:,} steps, best val {facts['best_val_loss']:.4f}, "
            f"{facts['chars_per_second']:,.0f} training chars/s, {facts['minutes']:.1f} min trained"
        )
    if len(losses) > 1:
        print(f"mean {statistics.mean(losses):.4f}, spread (max - min) {max(losses) - min(losses):.4f}")


if __name__ == "__main__":
    main()
