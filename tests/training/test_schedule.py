"""The learning-rate schedule (charrnn/training/schedule.py), alone and as training follows it."""

import dataclasses
import math

import pytest
import torch

from charrnn.config import TrainConfig
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from charrnn.training.schedule import Anneal, fraction_done, learning_rate
from charrnn.training.stopping import StopRules
from tests.conftest import PINNED_THREADS, quiet


def rate(schedule, step, done, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1):
    config = TrainConfig(lr_schedule=schedule, lr=lr, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    return learning_rate(config, step, done)


def scheduled_rate(run) -> float:
    """The rate ``fit`` gives the run's next step."""
    return learning_rate(run.train_config, run.progress.step, StopRules(run).fraction_done())


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
    config = dataclasses.replace(
        tiny_train, max_steps=8, eval_every=100, lr_schedule="linear", warmup_steps=2, min_lr_ratio=0.0
    )
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    seen = []
    for _ in range(8):
        run.train_step(scheduled_rate(run))
        seen.append(run.optimizer.param_groups[0]["lr"])
    lr = config.lr
    assert seen == pytest.approx([lr / 2, lr, lr * 6 / 8, lr * 5 / 8, lr * 4 / 8, lr * 3 / 8, lr * 2 / 8, lr / 8])


def test_warm_up_takes_at_most_a_quarter_of_a_short_run(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=12, eval_every=100, lr_schedule="constant", warmup_steps=100)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    assert scheduled_rate(run) == config.lr  # a constant schedule has no warm-up at all
    run.train_config = dataclasses.replace(config, lr_schedule="cosine")
    seen = []
    for _ in range(4):
        seen.append(scheduled_rate(run))
        run.train_step(seen[-1])
    # A quarter of the 12 steps ends the warm-up: the rate follows max(step / 100, done / 0.25).
    assert seen[:3] == pytest.approx([config.lr / 100, config.lr / 3, 2 * config.lr / 3])
    floor = config.lr * config.min_lr_ratio
    assert seen[3] == pytest.approx(floor + (config.lr - floor) * (1 + math.cos(math.pi / 4)) / 2)


def test_a_time_budget_ends_the_warm_up_at_a_quarter_of_it():
    # 1,000 warm-up steps, but a quarter of the time budget has gone by at step 20: the peak is reached.
    assert rate("cosine", 20, 0.125, warmup_steps=1000) == pytest.approx(1e-2 * 0.5)
    assert rate("cosine", 20, 0.25, warmup_steps=1000) == pytest.approx(1e-3 + 9e-3 * (1 + math.cos(math.pi / 4)) / 2)


def test_stop_and_resume_is_bit_identical_with_the_schedule_on(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(
        tiny_train, max_steps=10, eval_every=3, save_every=3, lr_schedule="cosine", warmup_steps=3
    )
    straight = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    # Stopped after step 4 (as Ctrl-C would: last.pt saved), with the same horizon of 10 steps.
    first = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "b", device="cpu", log=quiet)
    for _ in range(4):
        first.train_step(scheduled_rate(first))
    first.save("last.pt")
    resumed = resume_run(tmp_path / "b" / "last.pt", device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] < config.lr


def test_an_anneal_runs_a_fifth_of_the_steps_so_far_or_to_the_schedules_end():
    config = TrainConfig(lr=1e-2, min_lr_ratio=0.1)
    anneal = Anneal.starting(100, 1000, start_lr=5e-3, start_seconds=60.0)
    assert anneal.end_step == 120
    assert anneal.learning_rate(config, 100, 60.0, None) == pytest.approx(5e-3)
    assert anneal.learning_rate(config, 110, 70.0, None) == pytest.approx((5e-3 + 1e-3) / 2)
    assert anneal.learning_rate(config, 120, 80.0, None) == pytest.approx(1e-3)
    # a time budget that ends sooner drives it by time, as it drives the schedule
    assert anneal.learning_rate(config, 101, 70.0, 80.0) == pytest.approx((5e-3 + 1e-3) / 2)
    assert Anneal.starting(900, 1000, 5e-3, 0.0).end_step == 1000  # not 1,080: the run's own end comes first
    assert Anneal.starting(2, 1000, 5e-3, 0.0).end_step == 3  # at least one step
