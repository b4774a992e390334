"""The run policy (charrnn/training/policy.py): what a start and a resume restore, change and refuse."""

import dataclasses

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.formats.runconfig import read_run_config
from charrnn.training.loop import fit
from charrnn.training.policy import FIXED_ON_RESUME, resume_run, start_run
from tests.conftest import PINNED_THREADS, quiet


def train(text_path, model_config, train_config, out_dir):
    """Train a new run to its end, quietly, on the CPU."""
    run = start_run(text_path, model_config, train_config, out_dir=out_dir, device="cpu", log=quiet)
    return fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)


def test_what_a_resume_may_not_change_is_every_model_option_and_the_data_layout():
    model_fields = {field.name for field in dataclasses.fields(ModelConfig)}
    data_layout = {"batch_size", "seq_len", "val_frac", "seed", "val_file", "line_items", "newlines"}
    planning = {"plan"}  # a resumed run keeps the plan it started with
    scoring = {"val_chars"}  # and the characters its best.pt is chosen on
    assert set(FIXED_ON_RESUME) == model_fields | data_layout | planning | scoring


def test_a_resume_takes_a_new_limit_and_rate_for_the_rest_of_the_run(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, dataclasses.replace(tiny_train, max_steps=4), out)
    notes = []
    run = resume_run(
        out / "last.pt", overrides={"max_steps": 6, "lr": 5e-4, "seed": tiny_train.seed}, device="cpu", log=notes.append
    )
    assert run.train_config.max_steps == 6 and run.train_config.lr == 5e-4
    assert "note: max_steps changes from 4 to 6" in notes and "note: lr changes from 0.002 to 0.0005" in notes
    assert not any("seed" in note for note in notes)  # given, but unchanged: no notice, no refusal
    with pytest.raises(CharRNNError, match="unknown option.*: colour"):
        resume_run(out / "last.pt", overrides={"colour": "red"}, device="cpu", log=quiet)


def test_a_resume_without_its_text_says_how_to_pass_it(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    text = tmp_path / "moved.txt"
    text.write_bytes(book_slice.read_bytes())
    train(text, tiny_model, dataclasses.replace(tiny_train, max_steps=2), out)
    text.unlink()
    with pytest.raises(CharRNNError, match="training text .*moved.txt is gone: pass the text"):
        resume_run(out / "last.pt", device="cpu", log=quiet)
    run = resume_run(out / "last.pt", sources=book_slice, overrides={"max_steps": 3}, device="cpu", log=quiet)
    assert run.progress.step == 2


def test_every_run_directory_gets_its_resolved_options(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, tiny_train, out)
    saved = read_run_config(out / "config.toml")
    expected = {**dataclasses.asdict(tiny_model), **dataclasses.asdict(tiny_train), "text": str(book_slice.resolve())}
    expected["plan"] = "off"  # start_run without ``given`` trains the configs as they are: unplanned
    assert saved == {name: value for name, value in expected.items() if value is not None}
    resume_run(out / "last.pt", overrides={"max_steps": 20}, device="cpu", log=quiet)
    assert read_run_config(out / "config.toml")["max_steps"] == 20  # the resumed run's options now


def test_a_resume_restores_the_rng_state_the_checkpoint_holds(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, dataclasses.replace(tiny_train, max_steps=4), out)
    saved = Checkpoint.load(out / "last.pt")
    torch.manual_seed(12345)
    resume_run(out / "last.pt", overrides={"max_steps": 5}, device="cpu", log=quiet)
    assert torch.equal(torch.get_rng_state(), saved.rng.torch[0])
