"""The plan (charrnn/training/plan.py): what it chooses for a text, a budget and a machine's speeds,
what it leaves to the user, and how a run keeps it."""

import dataclasses
import json

import pytest
import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.core.corpus import TextFormat, scan
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.plan import ADAPTIVE_FROM, MAX_PASSES, Budget, TextFacts
from charrnn.training.planner import make_plan
from charrnn.training.scaling import (
    LONG_RATE,
    PARAMS_PER_CHAR,
    REGULARISATION,
    SHORT_RATE,
    SHORT_RATE_WIDTH,
    SHORT_RUN_STEPS,
    STEPS_PER_UNIT,
    WIDER_PARAMS_PER_CHAR,
    learning_rate,
    recurrent_parameters,
    regularisation,
)
from charrnn.training.speeds import Shape, SpeedBook, Workload
from tests.conftest import PINNED_THREADS, invoke

# Training speeds of the 2-layer shapes on this project's 2-core CPU (chars/s, batch 16 x 100).
MEASURED = {128: 46_801, 256: 20_449, 384: 12_497, 512: 7_789, 768: 3_421, 1024: 2_000}


class Speeds:
    """The speeds a machine would measure (a table instead of a stopwatch), and which were asked for."""

    busy = 0.0  # no other program held a core

    def __init__(self, table=MEASURED):
        self.table, self.asked = table, []

    def chars_per_second(self, shape: Shape) -> float:
        self.asked.append(shape)
        return self.table.get(shape.hidden_size, 60_000)


BOOK = TextFacts(train_chars=1_000_000, val_chars=111_000, alphabet=65, documents=1)


def plan_for(text=BOOK, given=(), speeds=None, **options):
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in options.items() if k in names})
    train = TrainConfig(**{k: v for k, v in options.items() if k not in names})
    return make_plan(text, model, train, set(given) | set(options), speeds or Speeds())


def test_a_longer_time_budget_never_gets_a_smaller_model_and_gets_a_bigger_one_eventually():
    sizes = [plan_for(time_limit=minutes).shape.hidden_size for minutes in (1, 3, 10, 30, 60, 240, 2000)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def test_the_chosen_shape_is_the_widest_the_budget_trains_enough_and_the_text_can_feed():
    plan = plan_for(time_limit=30)
    trained = [o for o in plan.options if o.steps >= STEPS_PER_UNIT * o.shape.hidden_size and o.fits_text]
    assert plan.shape == trained[-1].shape and len(plan.options) >= 3
    assert all(o.shape.hidden_size < plan.shape.hidden_size for o in trained[:-1])
    # characters seen follow the measured speed: a faster shape sees more in the same time
    seen = {option.shape.hidden_size: option.chars_seen for option in plan.options}
    assert seen[128] > seen[256] > seen[384]
    small = TextFacts(train_chars=90_000, val_chars=10_000, alphabet=67, documents=1)
    on_small = plan_for(small, time_limit=30)
    assert on_small.shape.hidden_size == 256  # 2 x 384 has more than PARAMS_PER_CHAR parameters a character
    assert not [o for o in on_small.options if o.shape.hidden_size == 384][0].fits_text


def test_a_shape_wider_than_the_default_needs_more_text_per_parameter_than_the_default_does():
    corpus = dataclasses.replace(BOOK, train_chars=5_000_000, val_chars=550_000)
    assert plan_for(corpus, time_limit=60).shape.hidden_size == 768  # an hour trains it enough; 5 M feed it
    novel = dataclasses.replace(BOOK, train_chars=3_000_000, val_chars=330_000)
    assert plan_for(novel, time_limit=60).shape.hidden_size == 512  # 3 M do not
    hour_on_book = plan_for(time_limit=60)
    by_width = {option.shape.hidden_size: option for option in hour_on_book.options}
    assert hour_on_book.shape.hidden_size == 384 and not by_width[512].fits_text  # 1 M characters do not
    assert by_width[512].steps >= STEPS_PER_UNIT * 512
    assert recurrent_parameters(Shape(2, 512)) < PARAMS_PER_CHAR * BOOK.train_chars  # the default's bound would
    small = TextFacts(train_chars=90_000, val_chars=10_000, alphabet=67, documents=1)
    assert recurrent_parameters(Shape(2, 256)) > WIDER_PARAMS_PER_CHAR * small.train_chars
    assert plan_for(small, time_limit=3).shape.hidden_size == 256  # the default width keeps its own bound


def test_more_passes_over_a_text_get_more_regularisation():
    small = TextFacts(train_chars=90_000, val_chars=10_000, alphabet=67, documents=1)
    big = TextFacts(train_chars=30_000_000, val_chars=3_000_000, alphabet=90, documents=1000)
    on_small, on_big = plan_for(small, time_limit=10), plan_for(big, time_limit=10)
    assert on_small.passes > 40 > 1 > on_big.passes
    assert (on_small.dropout, on_small.weight_drop) == REGULARISATION[-1][1:]
    assert (on_big.dropout, on_big.weight_drop) == REGULARISATION[0][1:]
    assert regularisation(1) < regularisation(20) < regularisation(100)


def test_a_short_run_gets_a_faster_learning_rate_a_wide_one_less_and_a_long_one_the_tested_default():
    short, long = plan_for(time_limit=3), plan_for(time_limit=60)
    assert short.steps < SHORT_RUN_STEPS <= long.steps and short.shape.hidden_size <= SHORT_RATE_WIDTH
    assert short.lr == SHORT_RATE > long.lr == LONG_RATE == TrainConfig().lr
    rates = [learning_rate(2_000, hidden) for hidden in (128, 256, 384, 512, 1024)]
    assert rates == sorted(rates, reverse=True) and rates[0] == SHORT_RATE and rates[-1] == LONG_RATE
    assert learning_rate(100, 256) == learning_rate(4_999, 256) > learning_rate(5_000, 256)
    wide = plan_for(time_limit=3, hidden_size=384)
    assert LONG_RATE < wide.lr < SHORT_RATE
    _, train = short.apply(ModelConfig(), TrainConfig())
    assert train.lr == short.lr and f"lr {short.lr:g}" in short.line()
    assert f"learning rate: {SHORT_RATE:g} (" in "\n".join(short.reasons())


def test_what_the_user_gives_wins_over_the_plan():
    plan = plan_for(time_limit=3, hidden_size=96, dropout=0.05, head="adaptive", eval_every=7, lr=1e-3)
    model, train = plan.apply(ModelConfig(hidden_size=96, dropout=0.05, head="adaptive"), TrainConfig(eval_every=7))
    assert plan.shape == Shape(2, 96) and model.hidden_size == 96 and model.num_layers == 2
    assert model.dropout == 0.05 and model.head == "adaptive" and train.eval_every == 7
    assert plan.lr == 1e-3 and "learning rate: 0.001 (given)" in "\n".join(plan.reasons())
    assert set(plan.kept) >= {"hidden_size", "dropout", "head", "eval_every", "lr"}
    layers_given = plan_for(time_limit=30, num_layers=3)
    assert layers_given.shape.num_layers == 3


def test_a_large_alphabet_gets_the_adaptive_head_and_a_small_one_the_full_head():
    cjk = TextFacts(train_chars=150_000, val_chars=17_000, alphabet=ADAPTIVE_FROM + 2000, documents=1)
    assert plan_for(cjk, time_limit=3).head == "adaptive"
    assert plan_for(time_limit=3).head == "full"


def test_no_budget_becomes_a_number_of_steps_that_takes_the_default_time():
    plan = plan_for()
    assert plan.budget == Budget() and not plan.budget.given
    model, train = plan.apply(ModelConfig(), TrainConfig())
    assert train.max_steps == plan.max_steps == plan.steps > 0
    assert 0.8 * 600 < plan.seconds <= 600  # the validations take the rest
    assert "10 minutes' worth" in "\n".join(plan.reasons())


def test_under_a_step_budget_the_shape_is_the_one_the_default_shapes_time_for_it_would_get():
    plan = plan_for(max_steps=20_000)
    assert plan.steps == 20_000 and plan.chars_seen == 20_000 * 1600  # the run makes exactly those steps
    default_time = 20_000 * 1600 / MEASURED[256]  # seconds the default 2 x 256 takes for them
    assert plan.shape == plan_for(time_limit=default_time / 60).shape
    assert plan.shape.hidden_size > 256  # 20,000 steps of 2 x 256 is time enough for a wider model


def test_validation_of_a_big_text_is_spaced_out_so_it_takes_a_small_share_of_the_time():
    big = TextFacts(train_chars=30_000_000, val_chars=3_000_000, alphabet=90, documents=1000)
    assert plan_for(time_limit=10).eval_every == 400  # tinyshakespeare: the default
    spaced = plan_for(big, time_limit=60)
    assert spaced.eval_every > 2000 and spaced.eval_every <= -(-spaced.steps // 2)  # still twice in the run


def test_the_plan_times_the_validation_sample_so_a_big_text_trains_for_more_of_its_budget(book_slice):
    found = scan([book_slice], TextFormat())
    assert TextFacts.of(found, TrainConfig(val_chars=0)).val_chars == 600  # the whole split
    assert TextFacts.of(found, TrainConfig(val_chars=100)).val_chars == 100
    big = TextFacts(train_chars=30_000_000, val_chars=3_000_000, alphabet=90, documents=1000)
    sampled = dataclasses.replace(big, val_chars=500_000)
    same_shape = {"time_limit": 3, "hidden_size": 128}
    assert plan_for(sampled, **same_shape).steps > 1.1 * plan_for(big, **same_shape).steps
    assert plan_for(sampled, time_limit=3).shape.hidden_size > plan_for(big, time_limit=3).shape.hidden_size


def test_the_big_shapes_are_not_measured_once_the_predicted_loss_turns_up():
    speeds = Speeds()
    plan_for(time_limit=3, speeds=speeds)
    assert Shape(2, 1024) not in speeds.asked


def test_speeds_are_measured_once_and_then_read_from_the_cache(tmp_path):
    work = Workload(vocab_size=20, batch_size=2, seq_len=8, cell="lstm", head="full", device=torch.device("cpu"))
    first = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 0.0)
    speed = first.chars_per_second(Shape(1, 8))
    second = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 0.0)
    assert second.chars_per_second(Shape(1, 8)) == speed > 0
    assert first.measured == [Shape(1, 8)] and second.measured == []
    (tmp_path / "speeds.json").write_text("{not json", encoding="utf-8")  # a damaged cache: measured again
    third = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 0.0)
    assert third.chars_per_second(Shape(1, 8)) > 0 and third.measured == [Shape(1, 8)]


def test_a_speed_measured_while_another_program_held_a_core_is_used_but_not_kept(tmp_path):
    work = Workload(vocab_size=20, batch_size=2, seq_len=8, cell="lstm", head="full", device=torch.device("cpu"))
    busy = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 1.0)
    assert busy.chars_per_second(Shape(1, 8)) > 0 and busy.busy == 1.0
    again = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 0.0)
    again.chars_per_second(Shape(1, 8))
    assert again.measured == [Shape(1, 8)]  # nothing was kept: measured anew


def test_a_planned_run_says_its_plan_keeps_it_in_its_files_and_keeps_it_on_resume(book_slice, tmp_path):
    out = tmp_path / "run"
    options = ["--batch-size", 4, "--seq-len", 16, "--threads", PINNED_THREADS, "--no-progress", "--no-sample"]
    result = invoke("train", book_slice, "--out", out, "--max-steps", 6, *options)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("plan: "))
    assert "LSTM" in line and "6 steps" in line
    checkpoint = Checkpoint.load(out / "last.pt")
    assert checkpoint.plan["line"] == line
    assert checkpoint.model_config.hidden_size == checkpoint.plan["shape"][1]
    assert f"# {line}" in (out / "config.toml").read_text(encoding="utf-8")
    info = invoke("info", out / "last.pt")
    assert "planned        " + line.removeprefix("plan: ") in info.stdout
    resumed = invoke(
        "train", "--resume", out / "last.pt", "--max-steps", 8, "--threads", PINNED_THREADS, "--no-progress"
    )
    assert resumed.exit_code == 0, resumed.output
    assert f"{line} (kept from the run's start)" in resumed.output
    assert Checkpoint.load(out / "last.pt").plan["line"] == line


def test_plan_off_trains_the_fixed_defaults(book_slice, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "train", book_slice, "--out", out, "--max-steps", 1, "--plan", "off", "--no-progress", "--no-sample"
    )
    assert result.exit_code == 0, result.output
    assert "plan: " not in result.output
    checkpoint = Checkpoint.load(out / "last.pt")
    assert checkpoint.plan is None and checkpoint.model_config == ModelConfig()


def test_charrnn_plan_prints_the_plan_and_its_reasons_without_training(book_slice, tmp_path):
    result = invoke("plan", book_slice, "--max-epochs", 30, "--dropout", 0.4)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("plan: ") and "<- chosen" in result.stdout
    assert "dropout 0.4" in result.stdout.splitlines()[0] and "kept as given: dropout" in result.stdout
    as_json = json.loads(invoke("plan", book_slice, "--max-epochs", 30, "--json").stdout)
    assert as_json["options"]["hidden_size"] == as_json["shape"][1]
    assert not list(tmp_path.glob("**/*.pt"))
    refused = invoke("plan", book_slice, "--plan", "off")
    assert refused.exit_code == 2 and "nothing to plan" in refused.output


@pytest.mark.parametrize("budget", [["--time-limit", "0.5"], ["--max-steps", "300"], []])
def test_every_budget_gives_a_plan_line(book_slice, budget):
    result = invoke("plan", book_slice, *budget)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("plan: 2 x ")


def test_a_time_budget_a_small_text_cannot_fill_ends_at_the_passes_that_still_teach():
    small = TextFacts(train_chars=90_000, val_chars=10_000, alphabet=67, documents=1)
    plan = plan_for(small, time_limit=60)
    assert plan.passes == pytest.approx(MAX_PASSES) and plan.max_steps == plan.steps
    assert plan.seconds < 60 * 60 and "of the 60 min" in plan.line()
    _, train = plan.apply(ModelConfig(), TrainConfig(time_limit=60))
    assert train.max_steps == plan.steps and train.time_limit == 60
    book = plan_for(time_limit=10)  # a book fills ten minutes: the clock ends it
    assert book.passes < MAX_PASSES and book.max_steps is None


def test_the_python_api_plans_too_and_keeps_what_it_is_given(book_slice, tmp_path):
    import charrnn

    charrnn.train(
        book_slice, out_dir=tmp_path / "a", max_steps=2, batch_size=4, seq_len=16, progress_bar=False, log=print
    )
    planned = Checkpoint.load(tmp_path / "a" / "last.pt")
    assert planned.plan is not None and planned.model_config.hidden_size == planned.plan["shape"][1]
    charrnn.train(book_slice, out_dir=tmp_path / "b", max_steps=2, hidden_size=24, dropout=0.05, progress_bar=False)
    given = Checkpoint.load(tmp_path / "b" / "last.pt")
    assert given.model_config.hidden_size == 24 and given.model_config.dropout == 0.05
    assert "hidden_size" in given.plan["reasons"][-1] and "dropout" in given.plan["reasons"][-1]


def test_a_time_limit_with_a_step_limit_plans_for_whichever_ends_first():
    alone = plan_for(time_limit=60)
    with_steps = plan_for(time_limit=60, max_steps=500)
    assert all(option.chars_seen <= 500 * 1600 for option in with_steps.options)
    assert with_steps.steps <= 500 and with_steps.shape.hidden_size < alone.shape.hidden_size
    assert "whichever ends first" in with_steps.budget.describe()
    small = TextFacts(train_chars=90_000, val_chars=10_000, alphabet=67, documents=1)
    assert plan_for(small, time_limit=60, max_epochs=100).max_steps is None  # the user's limit stands


def test_validation_comes_at_least_twice_however_big_the_validation_split():
    big = TextFacts(train_chars=30_000_000, val_chars=3_000_000, alphabet=90, documents=1000)
    plan = plan_for(big)
    assert plan.eval_every <= -(-plan.steps // 2)


def test_a_damaged_speed_in_the_cache_is_measured_again(tmp_path):
    work = Workload(vocab_size=20, batch_size=2, seq_len=8, cell="lstm", head="full", device=torch.device("cpu"))
    key = SpeedBook(work, tmp_path / "speeds.json")._key(Shape(1, 8))
    for bad in ("Infinity", "0", "-5", "true", '"fast"'):
        (tmp_path / "speeds.json").write_text(f'{{"{key}": {bad}}}', encoding="utf-8")
        book = SpeedBook(work, tmp_path / "speeds.json", others=lambda: lambda: 0.0)
        assert 0 < book.chars_per_second(Shape(1, 8)) < float("inf") and book.measured == [Shape(1, 8)]


@pytest.mark.slow
def test_a_resume_with_a_new_budget_is_not_held_by_the_step_limit_the_plan_set(book_slice, tmp_path):
    out = tmp_path / "run"
    options = ["--batch-size", 4, "--seq-len", 16, "--threads", PINNED_THREADS, "--no-progress", "--no-sample"]
    first = invoke("train", book_slice, "--out", out, "--hidden-size", 16, "--eval-every", 1000, *options)
    assert first.exit_code == 0, first.output  # no budget: the plan's steps, here MAX_PASSES over a small text
    saved = Checkpoint.load(out / "last.pt")
    assert saved.plan["chose"]["max_steps"] == saved.progress.step and saved.progress.epoch == MAX_PASSES
    more = invoke("train", "--resume", out / "last.pt", "--max-epochs", MAX_PASSES + 5, *options[4:])
    assert more.exit_code == 0, more.output
    assert f"the plan's own limit of {saved.progress.step:,} steps gives way to the new budget" in more.output
    assert Checkpoint.load(out / "last.pt").progress.epoch == MAX_PASSES + 5


def test_a_config_file_from_before_plans_repeats_its_run_unplanned_on_its_whole_split(tiny_run, tmp_path):
    lines = (tiny_run.dir / "config.toml").read_text(encoding="utf-8").splitlines()
    old = tmp_path / "old.toml"  # as charrnn 0.5 wrote it: every option, no plan, no validation sample
    kept = [line for line in lines if not line.startswith(("plan =", "# plan:", "val_chars ="))]
    assert len(kept) == len(lines) - 3
    old.write_text("\n".join(kept), encoding="utf-8")
    result = invoke("train", "--config", old, "--out", tmp_path / "again", "--no-progress", "--threads", PINNED_THREADS)
    assert result.exit_code == 0, result.output
    assert "plan: " not in result.output
    saved = Checkpoint.load(tmp_path / "again" / "last.pt").saved_train_config
    assert (saved["plan"], saved["val_chars"]) == ("off", 0)


def test_a_text_too_short_to_train_on_is_refused_before_any_plan(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("hello", encoding="utf-8")
    for command in ("plan", "train"):
        result = invoke(command, short, "--out", tmp_path / "run") if command == "train" else invoke(command, short)
        assert result.exit_code == 1 and "fewer than" in result.output and "plan: " not in result.output
