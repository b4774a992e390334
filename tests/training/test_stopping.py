"""Stopping rules (charrnn/training/stopping.py): the time budget, patience and signals."""

import dataclasses
import os
import signal

import pytest

from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from charrnn.training.stopping import validations_since_best
from tests.conftest import quiet


@pytest.mark.slow
def test_a_time_limit_stops_the_run_with_a_final_validation_and_save(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(
        tiny_train,
        max_steps=10**6,
        max_epochs=None,
        eval_every=10**6,
        save_every=10**6,
        time_limit=0.02,
        lr_schedule="cosine",
    )  # 1.2 s
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert f"stopping at step {result.step}: the time limit of 0.02 min is reached" in " ".join(notes)
    assert run.metrics[-1]["step"] == result.step  # the final validation
    assert Checkpoint.load(tmp_path / "run" / "last.pt").progress.step == result.step
    # With a million steps to go, only the time budget can have moved the cosine schedule along
    # (by steps it would still be at lr x 0.99999...; how far time moved it depends on the load).
    assert run.optimizer.param_groups[0]["lr"] < config.lr * 0.999
    # A resume under the same limit has nothing left to do; a larger limit continues.
    again = resume_run(tmp_path / "run" / "last.pt", device="cpu", log=quiet)
    again.progress.elapsed_seconds = max(again.progress.elapsed_seconds, 1.2)
    notes.clear()
    assert fit(again, log=notes.append, progress_bar=False).step == result.step
    assert "resume with a larger --time-limit" in notes[0]


def test_patience_stops_after_that_many_validations_without_a_new_best(
    book_slice, tmp_path, tiny_model, tiny_train, monkeypatch
):
    losses = iter([3.0, 2.0, 2.5, 2.1, 2.2, 1.0, 1.0])  # best at the 2nd; then three without a new best
    monkeypatch.setattr("charrnn.training.run.loss_sum", lambda model, batches: (next(losses), 1.0))
    config = dataclasses.replace(tiny_train, max_steps=20, eval_every=2, save_every=100, patience=3)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert result.step == 10 and [row["val_loss"] for row in run.metrics] == [3.0, 2.0, 2.5, 2.1, 2.2]
    assert any("no new best validation loss in 3 validations" in note for note in notes)
    assert (tmp_path / "run" / "last.pt").exists()
    assert validations_since_best([{"val_loss": v} for v in (2.0, 1.0, 1.0)]) == 1  # a tie is no new best
    assert validations_since_best([]) == 0


def test_a_signal_stops_the_run_after_the_current_step_with_last_pt_saved(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=50, eval_every=4, save_every=100)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []

    def log(message):  # the user presses Ctrl-C as the validation at step 4 is printed
        notes.append(message)
        if message.startswith("step 4 "):
            os.kill(os.getpid(), signal.SIGINT)

    result = fit(run, log=log, progress_bar=False)
    assert result.stopped_by_signal == signal.SIGINT and result.step == 4
    assert Checkpoint.load(tmp_path / "run" / "last.pt").progress.step == 4
    assert any(note.startswith("stopped by SIGINT at step 4") for note in notes)
    assert any(note.startswith("resume with: charrnn train --resume") for note in notes)
