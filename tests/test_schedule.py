"""Learning-rate schedule, time limit, patience and metrics.csv."""

import csv
import dataclasses
import math

import pytest
import torch
from tqdm import tqdm

from charrnn.metrics import METRICS_FILE
from charrnn.schedule import fraction_done, learning_rate
from charrnn.trainer import TrainLoop, fit, resume_run, start_run, validations_since_best
from conftest import quiet


def rate(schedule, step, done, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1):
    return learning_rate(schedule, lr, step, done, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)


def test_the_schedule_warms_up_then_decays_to_its_floor():
    assert rate("cosine", 0, 0.0) == pytest.approx(1e-3)  # first warm-up step: lr / 10
    assert rate("cosine", 4, 0.0) == pytest.approx(5e-3)
    assert rate("cosine", 9, 0.01) == pytest.approx(1e-2)  # the last warm-up step reaches lr
    assert rate("cosine", 10, 0.0) == pytest.approx(1e-2)
    assert rate("cosine", 50, 0.5) == pytest.approx((1e-2 + 1e-3) / 2)
    assert rate("cosine", 80, 0.75) == pytest.approx(1e-3 + 9e-3 * (1 + math.cos(0.75 * math.pi)) / 2)
    assert rate("cosine", 100, 1.0) == pytest.approx(1e-3)
    assert rate("linear", 50, 0.25) == pytest.approx(1e-3 + 9e-3 * 0.75)
    assert rate("linear", 100, 1.0) == pytest.approx(1e-3)
    assert rate("constant", 0, 0.9) == 1e-2  # no warm-up either
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        rate("step", 0, 0.0)


def test_the_time_budget_drives_the_schedule_when_it_binds():
    assert fraction_done(100, 1000, 30.0, None) == pytest.approx(0.1)
    assert fraction_done(100, 1000, 30.0, 60.0) == pytest.approx(0.5)  # time is further along
    assert fraction_done(900, 1000, 30.0, 60.0) == pytest.approx(0.9)
    assert fraction_done(100, 1000, 90.0, 60.0) == 1.0


def test_the_optimizer_follows_the_schedule_step_by_step(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=8, eval_every=100, lr_schedule="linear", warmup_steps=2,
                                 min_lr_ratio=0.0)  # fmt: skip
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    seen = []
    for _ in range(8):
        run.train_step()
        seen.append(run.optimizer.param_groups[0]["lr"])
    lr = config.lr
    assert seen == pytest.approx([lr / 2, lr, lr * 6 / 8, lr * 5 / 8, lr * 4 / 8, lr * 3 / 8, lr * 2 / 8, lr / 8])


def test_warm_up_takes_at_most_a_quarter_of_a_short_run(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=12, eval_every=100, lr_schedule="constant", warmup_steps=100)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    assert run.learning_rate() == config.lr  # a constant schedule has no warm-up at all
    run.train_config = dataclasses.replace(config, lr_schedule="cosine")
    seen = []
    for _ in range(4):
        seen.append(run.learning_rate())
        run.train_step()
    # A quarter of the 12 steps ends the warm-up: the rate follows max(step / 100, done / 0.25).
    assert seen[:3] == pytest.approx([config.lr / 100, config.lr / 3, 2 * config.lr / 3])
    assert seen[3] == pytest.approx(run.train_config.lr * 0.1 + 0.9 * config.lr * (1 + math.cos(math.pi / 4)) / 2)


def test_a_time_budget_ends_the_warm_up_at_a_quarter_of_it():
    # 1,000 warm-up steps, but a quarter of the time budget has gone by at step 20: the peak is reached.
    assert rate("cosine", 20, 0.125, warmup_steps=1000) == pytest.approx(1e-2 * 0.5)
    assert rate("cosine", 20, 0.25, warmup_steps=1000) == pytest.approx(1e-3 + 9e-3 * (1 + math.cos(math.pi / 4)) / 2)


def test_stop_and_resume_is_bit_identical_with_the_schedule_on(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=10, eval_every=3, save_every=3, lr_schedule="cosine",
                                 warmup_steps=3)  # fmt: skip
    straight = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False)
    # Stopped after step 4 (as Ctrl-C would: last.pt saved), with the same horizon of 10 steps.
    first = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "b", device="cpu", log=quiet)
    loop = TrainLoop(first, tqdm(disable=True), quiet)
    for _ in range(4):
        loop.step()
    first.save("last.pt")
    resumed = resume_run(tmp_path / "b" / "last.pt", device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] < config.lr


def test_a_time_limit_stops_the_run_with_a_final_validation_and_save(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=10**6, max_epochs=None, eval_every=10**6,
                                 save_every=10**6, time_limit=0.02)  # 1.2 s  # fmt: skip
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert 0 < result.step < 10**6
    assert any("the time limit of 0.02 min is reached" in note for note in notes)
    assert run.metrics[-1]["step"] == result.step  # the final validation
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["progress"]["step"] == result.step
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
    monkeypatch.setattr("charrnn.trainer.loss_sum", lambda model, batches: (next(losses), 1.0))
    config = dataclasses.replace(tiny_train, max_steps=20, eval_every=2, save_every=100, patience=3)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    result = fit(run, log=notes.append, progress_bar=False)
    assert result.step == 10 and [row["val_loss"] for row in run.metrics] == [3.0, 2.0, 2.5, 2.1, 2.2]
    assert any("no new best validation loss in 3 validations" in note for note in notes)
    assert (tmp_path / "run" / "last.pt").exists()
    assert validations_since_best([{"val_loss": v} for v in (2.0, 1.0, 1.0)]) == 1  # a tie is no new best
    assert validations_since_best([]) == 0


def read_csv(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_metrics_csv_gets_a_row_per_validation_and_is_appended_on_resume(book_slice, tmp_path, tiny_model,
                                                                          tiny_train):  # fmt: skip
    out = tmp_path / "run"
    config = dataclasses.replace(tiny_train, max_steps=6, eval_every=3, save_every=3)
    fit(start_run(book_slice, tiny_model, config, out_dir=out, device="cpu", log=quiet), log=quiet, progress_bar=False)
    first = (out / METRICS_FILE).read_bytes()
    rows = read_csv(out / METRICS_FILE)
    assert [row["step"] for row in rows] == ["3", "6"]
    assert list(rows[0]) == ["step", "elapsed_seconds", "chars_seen", "train_loss", "val_loss", "lr", "chars_per_second"]
    assert int(rows[1]["chars_seen"]) == 6 * config.batch_size * config.seq_len
    assert float(rows[1]["chars_per_second"]) > 0 and float(rows[1]["elapsed_seconds"]) > float(rows[0]["elapsed_seconds"])
    resumed = resume_run(out / "last.pt", overrides={"max_steps": 9}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)
    assert (out / METRICS_FILE).read_bytes().startswith(first)  # appended, never rewritten
    assert [row["step"] for row in read_csv(out / METRICS_FILE)] == ["3", "6", "9"]
