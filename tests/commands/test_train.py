"""`charrnn train` (charrnn/commands/train.py): in-process with click's CliRunner, and as real processes."""

import signal
import time

import pytest
import torch

from charrnn.core.data import StreamBatches, read_text, split_train_val
from charrnn.formats.checkpoint import Checkpoint
from charrnn.generation.evaluate import loss_sum
from tests.conftest import PINNED_THREADS, TINY, invoke, run_cli, start_cli


def step_of(path) -> int:
    return Checkpoint.load(path).progress.step


def test_a_run_writes_its_files_and_resumes_where_it_stopped(own_run):
    written = sorted(p.name for p in own_run.dir.iterdir() if not p.name.startswith("copies-index."))  # generate's
    assert written == ["best.pt", "config.toml", "last.pt", "metrics.csv"]
    resumed = invoke("train", "--resume", own_run.last, "--max-steps", 11, "--no-progress", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert "at step 8" in resumed.stdout and "max_steps changes from 8 to 11" in resumed.stdout
    assert step_of(own_run.last) == 11


def test_the_precision_option_reaches_the_run(book_slice, tmp_path):
    result = invoke("train", book_slice, "--out", tmp_path / "run", "--max-steps", 1, "--precision", "fp32", *TINY)
    assert result.exit_code == 0, result.output
    assert Checkpoint.load(tmp_path / "run" / "last.pt").train_config("last.pt").precision == "fp32"
    bad = invoke("train", book_slice, "--out", tmp_path / "other", "--precision", "fp8", *TINY)
    assert bad.exit_code == 2 and "--precision" in bad.output


def test_a_text_of_one_distinct_character_trains_and_generates(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("a" * 300)
    trained = invoke("train", text, "--out", tmp_path / "run", "--max-steps", 3, *TINY)
    assert trained.exit_code == 0, trained.output
    generated = invoke("generate", tmp_path / "run" / "best.pt", "--prime", "a", "--length", 20)
    assert generated.exit_code == 0 and generated.stdout == "a" * 21 + "\n"


def test_resume_on_a_text_with_new_characters_exits_1_naming_them(own_run, tmp_path):
    before = own_run.last.read_bytes()
    other = tmp_path / "other.txt"
    other.write_text(own_run.text.read_text() + "K\u00e9")
    result = invoke("train", other, "--resume", own_run.last, "--no-progress")
    assert result.exit_code == 1
    assert "2 characters ('K' '\u00e9') of the text are not in the model's vocabulary" in result.output
    assert own_run.last.read_bytes() == before


def test_bad_text_files(tmp_path):
    missing = invoke("train", tmp_path / "nope.txt", *TINY)
    assert missing.exit_code == 1 and "nope.txt does not exist: give text files, directories" in missing.output
    (tmp_path / "nothing").mkdir()
    directory = invoke("train", tmp_path / "nothing", *TINY)
    assert directory.exit_code == 1 and "has no files in it" in directory.output
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = invoke("train", empty, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and "is empty" in result.output
    short = tmp_path / "short.txt"
    short.write_text("just a few words")
    result = invoke("train", short, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and "fewer than the 65" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--val-frac", "nan"),
        ("--val-frac", "1"),
        ("--dropout", "nan"),
        ("--dropout", "1"),
        ("--lr", "0"),
        ("--lr", "inf"),
        ("--grad-clip", "nan"),
        ("--batch-size", "0"),
        ("--seed", str(2**70)),
        ("--device", "tpu"),
    ],
)
def test_bad_training_options_are_usage_errors(book_slice, tmp_path, option, value):
    result = invoke("train", book_slice, "--out", tmp_path / "run", *TINY, option, value)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_runtime_problems_with_the_text_or_the_machine_exit_1(tmp_path, monkeypatch):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 ".encode("latin-1") * 400)
    result = invoke("train", latin1, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and "not valid UTF-8 (byte offset 3)" in result.output

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = invoke("train", latin1, "--decode-errors", "replace", "--out", a_file / "run", *TINY)
    assert result.exit_code == 1 and "cannot create the run directory" in result.output
    assert "Traceback" not in result.output

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke(
        "train", latin1, "--decode-errors", "replace", "--out", tmp_path / "run", *TINY[:-2], "--device", "cuda"
    )
    assert result.exit_code == 1 and "no CUDA GPU" in result.output


def test_a_run_on_replaced_bytes_resumes_without_repeating_the_option(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait, ".encode("latin-1") * 100)
    first = invoke("train", latin1, "--decode-errors", "replace", "--out", tmp_path / "run", "--max-steps", 2, *TINY)
    assert first.exit_code == 0, first.output
    resumed = invoke("train", "--resume", tmp_path / "run" / "last.pt", "--max-steps", 3, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert Checkpoint.load(tmp_path / "run" / "last.pt").train_config("last.pt").decode_errors == "replace"


def test_resuming_an_older_checkpoint_in_place_never_overwrites_a_newer_last(own_run, tmp_path):
    older = own_run.dir / "older.pt"  # e.g. a best.pt from before the last improvement
    older.write_bytes(own_run.last.read_bytes())
    invoke("train", "--resume", own_run.last, "--max-steps", 12, "--no-progress")
    before = own_run.last.read_bytes()
    assert step_of(own_run.last) == 12

    refused = invoke("train", "--resume", older, "--max-steps", 14, "--no-progress")
    assert refused.exit_code == 1 and "is at step 12, later than this checkpoint (step 8)" in refused.output
    assert own_run.last.read_bytes() == before
    branched = invoke("train", "--resume", older, "--max-steps", 14, "--no-progress", "--out", tmp_path / "branch")
    assert branched.exit_code == 0, branched.output
    assert step_of(tmp_path / "branch" / "last.pt") == 14


@pytest.mark.parametrize(
    "option, value, saved", [("--hidden-size", 64, 32), ("--cell", "gru", "lstm"), ("--seq-len", 8, 16)]
)
def test_resume_refuses_to_change_the_model_or_the_data_layout(own_run, option, value, saved):
    before = own_run.last.read_bytes()
    result = invoke("train", "--resume", own_run.last, option, value, "--no-progress")
    assert result.exit_code == 1 and f"{option} is {saved} in this run and cannot change" in result.output
    assert own_run.last.read_bytes() == before


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_and_the_saved_checkpoint_survives(book_slice, tmp_path):
    out = tmp_path / "run"
    never = 10**6
    process = start_cli(
        "train", book_slice, "--out", out, "--max-steps", never, "--eval-every", never, "--save-every", 2, *TINY
    )
    deadline = time.monotonic() + 60
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert step_of(out / "last.pt") > 0
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "last.pt"]


@pytest.mark.slow
def test_exact_resume_across_processes_with_dropout(book_slice, tmp_path):
    # A constant rate: the resume moves --max-steps, and with it a decaying schedule's end. The
    # first two runs share this process; the resume is a process of its own, as after a reboot.
    # Bit-exact under a fixed thread count (--threads auto follows the machine's load).
    pinned = ["--threads", PINNED_THREADS]
    options = [*TINY, *pinned, "--dropout", "0.3", "--eval-every", 3, "--save-every", 3, "--lr-schedule", "constant"]
    straight = invoke("train", book_slice, "--out", tmp_path / "a", "--max-steps", 20, *options)
    assert straight.exit_code == 0, straight.output
    first = invoke("train", book_slice, "--out", tmp_path / "b", "--max-steps", 10, *options)
    assert first.exit_code == 0, first.output
    second = run_cli("train", "--resume", tmp_path / "b" / "last.pt", "--max-steps", 20, "--no-progress", *pinned)
    assert second.returncode == 0, second.stderr
    a = Checkpoint.load(tmp_path / "a" / "last.pt")
    b = Checkpoint.load(tmp_path / "b" / "last.pt")
    a.progress.elapsed_seconds = b.progress.elapsed_seconds
    assert b.progress == a.progress and a.progress.step == 20
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_saves_and_resume_continues(book_slice, tmp_path, signum, exit_code):
    out = tmp_path / "run"
    never = 10**6
    process = start_cli(
        "train", book_slice, "--out", out, "--max-steps", never, "--eval-every", never, "--save-every", never, *TINY
    )
    try:
        assert process.stdout.readline().startswith("plan: 2 x 32 LSTM")  # TINY gives the width
        assert process.stdout.readline().startswith("training on")
        time.sleep(1.0)  # some steps in
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:  # a failed assert must not leave a million-step run behind
        process.kill()
        process.wait()
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    step = step_of(out / "last.pt")
    assert step > 0 and f"at step {step}" in stdout

    resumed = invoke("train", "--resume", out / "last.pt", "--max-steps", step + 2, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert step_of(out / "last.pt") == step + 2


def test_config_toml_repeats_a_run_exactly(tiny_run, tmp_path):
    config = tiny_run.dir / "config.toml"
    assert f'text = "{tiny_run.text.resolve()}"' in config.read_text()
    options = ["--no-progress", "--device", "cpu", "--threads", PINNED_THREADS]  # as tiny_run was trained
    again = invoke("train", "--config", config, "--out", tmp_path / "again", *options)
    assert again.exit_code == 0, again.output
    first, second = Checkpoint.load(tiny_run.last), Checkpoint.load(tmp_path / "again" / "last.pt")
    assert second.saved_train_config == first.saved_train_config and second.model_config == first.model_config
    for name, tensor in first.model_state.items():
        assert torch.equal(tensor, second.model_state[name]), name


def test_the_command_line_wins_over_the_config_file(tiny_run, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('hidden_size = 16\nmax_steps = 2\nlr_schedule = "constant"\n')
    result = invoke("train", tiny_run.text, "--config", config, "--max-steps", 3, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    saved = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved.model_config.hidden_size == 32  # TINY gives --hidden-size 32
    assert saved.progress.step == 3 and saved.saved_train_config["lr_schedule"] == "constant"


@pytest.mark.parametrize(
    "content, message",
    [
        ("hiden_size = 16\n", "unknown option(s): hiden_size"),
        ("lr = -1.0\n", "lr must be > 0, got -1.0"),
        ('cell = "lstmx"\n', "cell must be one of lstm, gru, rnn, got 'lstmx'"),
        ("max_steps = [\n", "not valid TOML"),
        ("[model]\nhidden_size = 3\n", "has a table [model]"),
    ],
)
def test_a_bad_config_file_is_refused_before_anything_is_written(tiny_run, tmp_path, content, message):
    config = tmp_path / "run.toml"
    config.write_text(content)
    result = invoke("train", tiny_run.text, "--config", config, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_validation_scores_a_val_chars_sample_spread_over_a_longer_split(book_slice, tmp_path):
    out = tmp_path / "run"
    options = [*TINY, "--max-steps", 4, "--eval-every", 4, "--no-sample", "--threads", PINNED_THREADS]
    result = invoke("train", book_slice, "--out", out, "--plan", "off", "--val-chars", 202, *options)
    assert result.exit_code == 0, result.output
    assert "each validation scores 200 of the validation split's 600 characters" in result.output
    saved = Checkpoint.load(out / "last.pt")
    model = saved.model()
    _, val_ids = split_train_val(saved.vocab.encode(read_text(book_slice)), 0.1)
    on_sample = loss_sum(model, StreamBatches(val_ids, 4, 16, full_windows=False, sample=202))
    on_split = loss_sum(model, StreamBatches(val_ids, 4, 16, full_windows=False))
    assert on_sample[1] == 200 and on_split[1] == 596  # 4 streams, one 50-character piece each: 200 of 202
    assert saved.last_val_loss == pytest.approx(on_sample[0] / on_sample[1], rel=1e-5)
    assert saved.last_val_loss != pytest.approx(on_split[0] / on_split[1], rel=1e-5)
    assert "on a 200-character sample of the split" in invoke("info", out / "last.pt").stdout
    whole = invoke("train", book_slice, "--out", tmp_path / "whole", "--plan", "off", "--val-chars", 0, *options)
    assert "each validation scores" not in whole.output
    assert "sample" not in invoke("info", tmp_path / "whole" / "last.pt").stdout
    assert Checkpoint.load(tmp_path / "whole" / "last.pt").last_val_loss == pytest.approx(
        on_split[0] / on_split[1], rel=1e-3
    )


def test_anneal_after_ends_a_run_whose_validation_stalls(tmp_path):
    # A phrase to learn by heart, and a validation tail of its letters in random order: the more
    # the model learns the phrase, the worse it scores the tail, so validation stalls at once.
    shuffled = torch.Generator().manual_seed(3)
    letters = "the casonm."
    tail = "".join(letters[i] for i in torch.randint(len(letters), (1100,), generator=shuffled).tolist())
    text = tmp_path / "stall.txt"
    text.write_text("the cat sat on the mat. " * 400 + tail, encoding="utf-8")
    out = tmp_path / "run"
    shape = ("--plan", "off", "--hidden-size", 16, "--batch-size", 4, "--seq-len", 16, "--lr", 1e-2, "--threads", 1)
    budget = ("--max-steps", 300, "--eval-every", 10, "--anneal-after", 2, "--no-sample", "--no-progress")
    result = run_cli("train", text, "--out", out, *shape, *budget)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    announced = next(i for i, line in enumerate(lines) if line.startswith("no new best in 2 validations: annealing"))
    stalled = int(lines[announced - 1].split()[1])  # "step N (m:ss): ... val loss": the one that found it
    end = stalled + -(-stalled // 5)  # a fifth of the steps so far, rounded up
    assert f"by step {end}, where the run ends" in result.stdout
    assert f"stopping at step {end}: no new best in 2 validations at step {stalled}" in result.stdout
    assert step_of(out / "last.pt") == end < 300
    assert "anneal_after = 2" in (out / "config.toml").read_text()
