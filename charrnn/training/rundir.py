"""The run directory: the one place that decides whether a run may write to a directory."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint

# Any of these in a directory means a run wrote there: a new run would overwrite or append to it.
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.toml")


def refuse_to_overwrite(out_dir: Path) -> None:
    """A new run never writes into a directory another run wrote to."""
    for name in RUN_FILES:
        if (out_dir / name).exists():
            resume = (
                f"continue it with `charrnn train --resume {shlex.quote(str(out_dir / 'last.pt'))}` or "
                if (out_dir / "last.pt").exists()
                else ""
            )
            raise CharRNNError(f"{out_dir} already holds a run ({name}): {resume}choose another --out")


def refuse_to_go_back(last_path: Path, step: int) -> None:
    """Resuming an older checkpoint (say best.pt) in place would overwrite a newer last.pt."""
    last_step = Checkpoint.load(last_path).progress.step
    if last_step > step:
        raise CharRNNError(
            f"{last_path} is at step {last_step}, later than this checkpoint (step {step}); "
            f"resuming here would overwrite it: pass --out to continue in another directory"
        )


def prepare_out_dir(out_dir: Path) -> None:
    """Create the run directory now, so a bad --out fails before any training, not at the first save."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"cannot create the run directory {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise CharRNNError(f"the run directory {out_dir} is not writable: choose another --out")
