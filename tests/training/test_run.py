"""A training run's state and its operations (charrnn/training/run.py), driven by ``fit``."""

import dataclasses
import math
import random

import pytest
import torch

from charrnn.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from charrnn.core.model import ONE_HOT_MAX_VOCAB
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import PINNED_THREADS, quiet


def train(text_path, model_config, train_config, out_dir):
    """Train a new run to its end, quietly, on the CPU."""
    run = start_run(text_path, model_config, train_config, out_dir=out_dir, device="cpu", log=quiet)
    return fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)


def test_a_tiny_text_is_overfit_to_near_zero_loss(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat on the mat. " * 40)
    result = train(
        text,
        ModelConfig(hidden_size=48, num_layers=1, dropout=0.0, weight_drop=0.0),  # nothing holds it back
        TrainConfig(batch_size=2, seq_len=24, lr=1e-2, max_steps=150, eval_every=50, save_every=150, val_frac=0.2),
        out_dir=tmp_path / "run",
    )
    checkpoint = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert checkpoint.metrics[-1]["train_loss"] < 0.05
    assert result.last_val_loss < 0.05
    assert checkpoint.metrics[0]["val_loss"] > 10 * result.last_val_loss  # it did learn


def test_run_writes_last_and_best_and_counts_steps(book_slice, tmp_path, tiny_model, tiny_train):
    result = train(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run")
    assert result.step == 12
    last = Checkpoint.load(tmp_path / "run" / "last.pt")
    best = Checkpoint.load(tmp_path / "run" / "best.pt")
    assert last.progress.step == 12
    assert [m["step"] for m in last.metrics] == [4, 8, 12]
    assert best.best_val_loss == min(m["val_loss"] for m in last.metrics)
    assert best.progress.step == min(last.metrics, key=lambda m: m["val_loss"])["step"]


@pytest.mark.slow
def test_max_epochs_ends_the_run_after_whole_passes(book_slice, tmp_path, tiny_model, tiny_train):
    short = tmp_path / "short.txt"
    short.write_text(book_slice.read_text()[:1500])
    config = dataclasses.replace(tiny_train, max_steps=None, max_epochs=2)
    run = start_run(short, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    windows = run.train_batches.num_windows
    result = fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    assert windows == (1350 - 1) // 4 // 16 and result.step == 2 * windows  # 1,350 training characters
    assert run.progress.epoch == 2 and run.progress.window == 0


@pytest.mark.slow
def test_without_max_epochs_a_time_limit_alone_ends_the_run(book_slice, tmp_path, tiny_model, tiny_train):
    short = tmp_path / "short.txt"
    short.write_text(book_slice.read_text()[:200])  # two windows per pass: many passes in a second
    untimed = dataclasses.replace(tiny_train, max_steps=None, max_epochs=None, eval_every=10**6, save_every=10**6)
    run = start_run(short, tiny_model, untimed, out_dir=tmp_path / "untimed", device="cpu", log=quiet)
    windows = run.train_batches.num_windows
    assert run.total_steps() == DEFAULT_EPOCHS * windows  # no limit given: the default number of passes
    timed = dataclasses.replace(untimed, time_limit=0.05)  # 3 s, a second of it kept for the final save
    run = start_run(short, tiny_model, timed, out_dir=tmp_path / "timed", device="cpu", log=quiet)
    assert run.total_steps() == math.inf
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert "the time limit of 0.05 min is reached" in " ".join(notes)
    assert result.step // windows == run.progress.epoch > DEFAULT_EPOCHS  # the budget, not the pass count, ended it


def test_checkpoint_round_trip_gives_identical_logits(book_slice, tmp_path, tiny_model, tiny_train):
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    for _ in range(3):
        run.train_step(tiny_train.lr)
    path = run.save("last.pt")
    saved = Checkpoint.load(path)
    assert saved.progress.step == 3
    model, vocab = saved.model(), saved.vocab
    assert vocab == run.vocab
    ids = torch.randint(0, len(vocab), (2, 9))
    run.model.eval()
    model.eval()
    assert torch.equal(model(ids)[0], run.model(ids)[0])


def test_resume_continues_step_count_optimizer_and_position(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, dataclasses.replace(tiny_train, max_steps=6), out_dir=out)
    saved = Checkpoint.load(out / "last.pt")
    run = resume_run(out / "last.pt", overrides={"max_steps": 10}, device="cpu", log=quiet)
    assert run.progress.step == 6 and run.progress.window == saved.progress.window
    assert torch.equal(run.state[0], saved.hidden_state[0]) and run.state[0].abs().sum() > 0
    adam = run.optimizer.state_dict()["state"][0]
    assert adam["step"].item() == 6
    assert torch.equal(adam["exp_avg"], saved.optimizer_state["state"][0]["exp_avg"])
    result = fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    assert result.step == 10
    assert run.optimizer.state_dict()["state"][0]["step"].item() == 10


def test_stop_and_resume_gives_bit_identical_weights(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=10, eval_every=3, save_every=3)
    straight = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)

    train(book_slice, tiny_model, dataclasses.replace(config, max_steps=4), out_dir=tmp_path / "b")
    torch.manual_seed(999)  # whatever happens in between must not matter
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 10}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)

    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert torch.equal(straight.state[0], resumed.state[0])


def test_a_diverging_run_stops_without_writing_non_finite_weights(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=out, device="cpu", log=quiet)
    run.train_step(tiny_train.lr)
    run.save("last.pt")
    before = (out / "last.pt").read_bytes()
    with torch.no_grad():
        run.model.head.bias.fill_(math.inf)
    with pytest.raises(CharRNNError, match="diverged at step 2.*last good weights.*lower --lr"):
        fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    assert (out / "last.pt").read_bytes() == before
    assert run.progress.step == 1


def test_exact_resume_holds_on_the_large_vocabulary_path(tmp_path, tiny_model, tiny_train):
    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(ONE_HOT_MAX_VOCAB + 88)]
    book = tmp_path / "large.txt"
    book.write_text("".join(chars) + "".join(rng.choice(chars) for _ in range(5000)), encoding="utf-8")
    config = dataclasses.replace(tiny_train, max_steps=6, eval_every=3, save_every=3)
    straight = start_run(book, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    assert straight.model.input_path == "lookup"
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    train(book, tiny_model, dataclasses.replace(config, max_steps=3), out_dir=tmp_path / "b")
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 6}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_resume_bit_identically(book_slice, tmp_path, tiny_train, cell):
    model_config = ModelConfig(hidden_size=32, num_layers=2, dropout=0.1, cell=cell)
    config = dataclasses.replace(tiny_train, max_steps=8, eval_every=3, save_every=3)
    straight = start_run(book_slice, model_config, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    train(book_slice, model_config, dataclasses.replace(config, max_steps=3), out_dir=tmp_path / "b")
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 8}, device="cpu", log=quiet)
    assert [tuple(t.shape) for t in resumed.state] == [(2, 4, 32)]  # h only: no cell state c
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert torch.equal(straight.state[0], resumed.state[0])
