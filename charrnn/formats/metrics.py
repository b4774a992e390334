"""metrics.csv: one row per validation, appended as the run goes and across resumes.

The file is the run's learning curve in a form any tool (a spreadsheet, pandas, `charrnn plot`) reads. Rows
are only ever appended (a resume adds to it, it never starts it again), so a run stopped and
resumed keeps one history.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from charrnn.errors import CharRNNError

METRICS_FILE = "metrics.csv"
REQUIRED = ("step", "elapsed_seconds", "chars_seen", "train_loss", "val_loss", "lr", "chars_per_second")
# Added with --threads (the CPU threads in use): a run resumed from an older release keeps its file's columns.
COLUMNS = (*REQUIRED, "threads")


def append_row(run_dir: Path, row: dict) -> None:
    """Append one validation's row (the header too, if the file is new or empty)."""
    path = run_dir / METRICS_FILE
    new = not path.exists() or path.stat().st_size == 0
    try:
        columns = COLUMNS if new else _header(path)
        with path.open("a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({name: _format(row.get(name)) for name in columns})
    except OSError as exc:
        raise CharRNNError(f"cannot append to {path}: {exc.strerror or exc}") from None


def _header(path: Path) -> tuple[str, ...]:
    """The columns an existing file has (an older release's lack the newer ones)."""
    with path.open(newline="", encoding="utf-8") as file:
        header = next(csv.reader(file), [])
    return tuple(name for name in COLUMNS if name in header) or COLUMNS


def read_rows(run_dir: Path) -> list[dict[str, float | None]]:
    """The rows of ``run_dir/metrics.csv`` as numbers (None where a value is missing)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [name for name in REQUIRED if name not in (reader.fieldnames or ())]
            if missing:
                raise CharRNNError(f"{path} is not a charrnn metrics file: it has no column {', '.join(missing)}")
            rows = [{name: _number(row.get(name), path) for name in COLUMNS} for row in reader]
    except FileNotFoundError:
        raise CharRNNError(
            f"{path} does not exist: `charrnn train` writes it in the run directory at each validation"
        ) from None
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CharRNNError(f"{path} is not a charrnn metrics file (not UTF-8 text)") from None
    return rows


def _number(text: str | None, path: Path) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise CharRNNError(f"{path} holds {text!r} where a number belongs: it is damaged") from None


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)
