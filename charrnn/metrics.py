"""metrics.csv: one row per validation, appended as the run goes and across resumes.

The file is the run's learning curve in a form any tool reads; ``charrnn plot`` draws it. Rows
are only ever appended (a resume adds to it, it never starts it again), so a run stopped and
resumed keeps one history.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from charrnn.errors import CharRNNError

METRICS_FILE = "metrics.csv"
COLUMNS = ("step", "elapsed_seconds", "chars_seen", "train_loss", "val_loss", "lr", "chars_per_second")


def append_row(run_dir: Path, row: dict) -> None:
    """Append one validation's row (the header too, if the file is new or empty)."""
    path = run_dir / METRICS_FILE
    new = not path.exists() or path.stat().st_size == 0
    try:
        with path.open("a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({name: _format(row.get(name)) for name in COLUMNS})
    except OSError as exc:
        raise CharRNNError(f"cannot append to {path}: {exc.strerror or exc}") from None


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)


def read_rows(run_dir: Path) -> list[dict[str, float | None]]:
    """The rows of ``run_dir/metrics.csv`` as numbers (None where a value is missing)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise CharRNNError(f"{path} does not exist: pass a run directory that charrnn train wrote")
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or not {"step", "val_loss"} <= set(reader.fieldnames):
                raise CharRNNError(f"{path} is not a charrnn metrics file (no step and val_loss columns)")
            return [{name: float(value) if value else None for name, value in row.items() if name} for row in reader]
    except ValueError as exc:
        raise CharRNNError(f"{path} has a value that is not a number: {exc}") from None
