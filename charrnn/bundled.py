"""What ships inside the package: the tinyshakespeare text, and a small model trained on it.

Both are package data (charrnn/assets/), so `charrnn train` and `charrnn generate` work right after
`pip install`, from any directory, with no download. docs/bundled-model.md says how the model was made.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BOOK_NAME = "tinyshakespeare.txt"
MODEL_NAME = "shakespeare.pt"


def _asset(name: str) -> Path:
    return Path(str(resources.files("charrnn") / "assets" / name))


def bundled_book() -> Path:
    """The tinyshakespeare text (1,115,394 characters)."""
    return _asset(BOOK_NAME)


def bundled_model() -> Path:
    """A 2 x 256 LSTM trained on tinyshakespeare by charrnn's own `charrnn train` (weights only)."""
    return _asset(MODEL_NAME)
