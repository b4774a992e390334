"""Shared test fixtures: small texts and tiny configurations that train in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from charrnn.config import ModelConfig, TrainConfig

BUNDLED_BOOK = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"


@pytest.fixture
def book_slice(tmp_path: Path) -> Path:
    """The first 6,000 characters of the bundled book, as a file of its own."""
    path = tmp_path / "slice.txt"
    path.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    return path


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(hidden_size=32, num_layers=2, dropout=0.1)


@pytest.fixture
def tiny_train() -> TrainConfig:
    # The rate is pinned (not the defaults, which are tuned for full-size runs) so that these
    # tests keep meaning the same thing when the defaults are re-tuned.
    return TrainConfig(batch_size=4, seq_len=16, max_steps=12, eval_every=4, save_every=4, seed=7,
                       lr=2e-3, lr_schedule="constant", warmup_steps=0)  # fmt: skip


def quiet(message: str) -> None:
    """A log function that drops messages (keeps test output readable)."""
