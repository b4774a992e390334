"""Stopping rules (charrnn/training/stopping.py): the time budget, patience and signals."""

import dataclasses
import os
import signal

import pytest
import torch

from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from charrnn.training.stopping import validations_since_best
from tests.conftest import PINNED_THREADS, quiet


@pytest.mark.slow
def test_a_time_limit_stops_the_run_with_a_final_validation_and_save(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(
        tiny_train,
        max_steps=10**6,
        max_epochs=None,
        eval_every=10**6,
        save_every=10**6,
        time_limit=0.05,
        lr_schedule="cosine",
    )  # 3 s: the first-validation reserve guessed before one is timed is 1 s of it, and a busy machine is slow
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert f"stopping at step {result.step}: the time limit of 0.05 min is reached" in " ".join(notes)
    assert run.metrics[-1]["step"] == result.step  # the final validation
    assert Checkpoint.load(tmp_path / "run" / "last.pt").progress.step == result.step
    # With a million steps to go, only the time budget can have moved the cosine schedule along
    # (by steps it would still be at lr x 0.99999...; how far time moved it depends on the load).
    assert run.optimizer.param_groups[0]["lr"] < config.lr * 0.999
    # A resume under the same limit has nothing left to do; a larger limit continues.
    again = resume_run(tmp_path / "run" / "last.pt", device="cpu", log=quiet)
    again.progress.elapsed_seconds = max(again.progress.elapsed_seconds, 3.0)
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


def scripted_validation(monkeypatch, losses_by_step: dict[int, float]) -> dict:
    """Make every validation of the run put in ``holder["run"]`` score the loss scripted for its step."""
    holder = {}
    monkeypatch.setattr(
        "charrnn.training.run.loss_sum", lambda model, batches: (losses_by_step[holder["run"].progress.step], 1.0)
    )
    return holder


def applied_rates(run) -> list[float]:
    """Record the rate of every step ``fit`` makes from now on."""
    rates, train_step = [], run.train_step
    run.train_step = lambda lr: rates.append(lr) or train_step(lr)
    return rates


def test_anneal_after_a_stall_takes_the_rate_to_its_floor_and_ends_the_run(
    book_slice, tmp_path, tiny_model, tiny_train, monkeypatch
):
    # best at step 4, then two validations without a new best: the anneal starts at step 8 and
    # takes a fifth of those 8 steps (2), so the run ends at step 10 of its 40
    holder = scripted_validation(monkeypatch, {2: 3.0, 4: 2.0, 6: 2.5, 8: 2.1, 10: 1.9})
    config = dataclasses.replace(tiny_train, max_steps=40, eval_every=2, save_every=100, anneal_after=2)
    run = holder["run"] = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    rates, notes = applied_rates(run), []
    result = fit(run, log=notes.append, progress_bar=False)
    assert result.step == 10 and result.best_val_loss == 1.9  # the anneal's own validation is the best
    floor = config.lr * config.min_lr_ratio
    assert rates[:8] == [config.lr] * 8  # the schedule (constant) until the stall
    assert rates[8:] == pytest.approx([config.lr, floor + (config.lr - floor) / 2])  # cosine, half way at step 9
    assert (
        "no new best in 2 validations: annealing the rate from 2.00e-03 to 2.00e-04 by step 10, where the run ends"
        in notes
    )
    assert any(note.startswith("stopping at step 10: no new best in 2 validations at step 8") for note in notes)
    # resumed with a larger budget, the run knows from its validations that it has ended
    resumed = resume_run(tmp_path / "run" / "last.pt", overrides={"max_steps": 80}, device="cpu", log=quiet)
    messages = []
    assert fit(resumed, log=messages.append, progress_bar=False).step == 10
    assert messages == [
        "nothing to do: the run ended at step 10, annealed after its validation stalled at step 8 (--anneal-after)"
    ]


def test_an_anneal_stops_and_resumes_bit_identically(book_slice, tmp_path, tiny_model, tiny_train, monkeypatch):
    losses = {5: 3.0, 10: 2.0, 15: 2.5, 20: 2.1, 24: 2.2}  # stalled at step 20: anneal to step 24
    config = dataclasses.replace(
        tiny_train, max_steps=100, eval_every=5, save_every=100, anneal_after=2, lr_schedule="cosine", warmup_steps=3
    )
    holder = scripted_validation(monkeypatch, losses)
    straight = holder["run"] = start_run(
        book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet
    )
    assert fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS).step == 24

    halted = holder["run"] = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "b", device="cpu", log=quiet)
    rates, train_step = applied_rates(halted), halted.train_step

    def step_then_signal(lr):  # SIGTERM during step 22: the run saves last.pt after it and stops
        loss = train_step(lr)
        if len(rates) == 22:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    halted.train_step = step_then_signal
    assert fit(halted, log=quiet, progress_bar=False, threads=PINNED_THREADS).stopped_by_signal == signal.SIGTERM
    resumed = holder["run"] = resume_run(tmp_path / "b" / "last.pt", device="cpu", log=quiet)
    assert resumed.progress.step == 22
    assert fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS).step == 24
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_anneal_after_given_on_resume_looks_forward_not_into_the_past(
    book_slice, tmp_path, tiny_model, tiny_train, monkeypatch
):
    # the run stalled at step 8 without the option; resumed with it, it anneals from its next
    # validation (step 12, still no new best), not from a step 8 that never annealed
    holder = scripted_validation(monkeypatch, {2: 3.0, 4: 2.0, 6: 2.5, 8: 2.1, 10: 2.2, 12: 2.3, 14: 2.4, 15: 2.4})
    config = dataclasses.replace(tiny_train, max_steps=10, eval_every=2, save_every=100)
    run = holder["run"] = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    fit(run, log=quiet, progress_bar=False)
    overrides = {"max_steps": 40, "anneal_after": 2}
    resumed = holder["run"] = resume_run(tmp_path / "run" / "last.pt", overrides=overrides, device="cpu", log=quiet)
    notes = []
    assert fit(resumed, log=notes.append, progress_bar=False).step == 15  # 12 + a fifth of 12, rounded up
    assert any(note.startswith("no new best in 2 validations: annealing") for note in notes)
    assert [row["step"] for row in resumed.metrics if row.get("anneal")] == [12]
