"""What ships inside the package (charrnn/bundled.py): the text and the model, usable from anywhere."""

import json
import os

import pytest

import charrnn
from charrnn.bundled import bundled_book, bundled_model
from charrnn.formats.checkpoint import Checkpoint
from tests.conftest import BUNDLED_BOOK, run_cli


def test_the_package_holds_the_book_and_a_generation_only_model():
    assert bundled_book().read_bytes() == BUNDLED_BOOK.read_bytes()
    checkpoint = Checkpoint.load(bundled_model())
    assert not checkpoint.resumable and checkpoint.vocab.chars == tuple(sorted(set(BUNDLED_BOOK.read_text())))
    assert checkpoint.best_val_loss < 1.6 and bundled_model().stat().st_size < 5_000_000


def test_load_with_no_path_is_the_bundled_model():
    model = charrnn.load(device="cpu")
    assert model.path == bundled_model() and model.model.config.hidden_size == 256
    text = model.generate("ROMEO:", 200, seed=1)
    assert len(text) == 200 and set(text) <= set(model.vocab.chars)


@pytest.mark.slow
def test_generate_and_train_work_from_any_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    generated = run_cli("generate", "--prime", "ROMEO:", "--length", 80, "--seed", 2, cwd=elsewhere)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout.startswith("ROMEO:") and len(generated.stdout) == 6 + 80 + 1
    assert "no CHECKPOINT given: using the bundled Shakespeare model" in generated.stderr

    # Wide batches: the whole validation split (111,539 characters) is scored at the end.
    options = [
        "--hidden-size",
        8,
        "--batch-size",
        64,
        "--seq-len",
        64,
        "--max-steps",
        1,
        "--no-sample",
        "--no-progress",
    ]
    trained = run_cli("train", *options, cwd=elsewhere)
    assert trained.returncode == 0, trained.stderr
    assert "no text given: using the bundled tinyshakespeare.txt" in trained.stderr
    info = json.loads(run_cli("info", "checkpoints/tinyshakespeare/last.pt", "--json", cwd=elsewhere).stdout)
    assert info["text_chars"] == 1_115_394 and os.path.samefile(info["text_path"], bundled_book())


@pytest.mark.slow
def test_the_bundled_model_cannot_be_resumed_and_says_why(tmp_path):
    result = run_cli("train", "--resume", bundled_model(), "--out", tmp_path / "run")
    assert result.returncode == 1 and "for generation only" in result.stderr and "Traceback" not in result.stderr
