"""The `charrnn` command end to end: in-process with click's CliRunner, and as real processes."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import main

TINY = ["--hidden-size", "32", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def trained(book_slice, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", book_slice, "--out", out, "--max-steps", 6, "--eval-every", 3, *TINY)
    assert result.exit_code == 0, result.output
    return out


def test_train_generate_resume(trained):
    assert (trained / "last.pt").is_file() and (trained / "best.pt").is_file()

    first = invoke("generate", trained / "best.pt", "--prime", "ROMEO:", "--length", 200, "--seed", 1)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("ROMEO:")
    assert len(first.stdout) == len("ROMEO:") + 200 + 1  # and a final newline
    again = invoke("generate", trained / "best.pt", "--prime", "ROMEO:", "--length", 200, "--seed", 1)
    assert again.stdout == first.stdout

    resumed = invoke("train", "--resume", trained / "last.pt", "--max-steps", 9, "--no-progress", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert "at step 6" in resumed.stdout and "max_steps changes from 6 to 9" in resumed.stdout
    assert load_checkpoint(trained / "last.pt")["progress"]["step"] == 9


def test_length_zero_prints_just_the_prime(trained):
    result = invoke("generate", trained / "last.pt", "--prime", "MENENIUS", "--length", 0)
    assert result.exit_code == 0, result.output
    assert result.stdout == "MENENIUS\n"


def test_empty_prime_starts_from_the_zero_state(trained):
    result = invoke("generate", trained / "last.pt", "--length", 50, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 51


def test_an_empty_prime_file_is_the_empty_prime(trained, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    from_file = invoke("generate", trained / "last.pt", "--prime-file", empty, "--length", 40, "--seed", 3)
    assert from_file.exit_code == 0, from_file.output
    from_option = invoke("generate", trained / "last.pt", "--prime", "", "--length", 40, "--seed", 3)
    assert from_file.stdout == from_option.stdout


def test_a_non_utf8_prime_file_gets_advice_that_fits_generate(trained, tmp_path):
    latin1 = tmp_path / "prime.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    result = invoke("generate", trained / "last.pt", "--prime-file", latin1)
    assert result.exit_code == 1
    assert result.output.strip().endswith("prime.txt is not valid UTF-8 (byte offset 3): convert it to UTF-8")
    assert "--decode-errors" not in result.output


def test_seeds_up_to_2_64_minus_1_for_all_the_samples(trained):
    top = 2**64 - 1
    assert invoke("generate", trained / "last.pt", "--length", 5, "--seed", top).exit_code == 0
    too_big = invoke("generate", trained / "last.pt", "--length", 5, "--seed", top + 1)
    assert too_big.exit_code == 2 and "--seed" in too_big.output
    negative = invoke("generate", trained / "last.pt", "--length", 5, "--seed", -1)
    assert negative.exit_code == 2 and "--seed" in negative.output
    batch = invoke("generate", trained / "last.pt", "--length", 5, "--seed", top, "--num-samples", 3)
    assert batch.exit_code == 2 and "--seed" in batch.output and f"at most {top - 2}" in batch.output
    fits = invoke("generate", trained / "last.pt", "--length", 5, "--seed", top - 2, "--num-samples", 3)
    assert fits.exit_code == 0 and f"(seed {top})" in fits.stdout


def test_a_random_seed_is_reported_and_reproduces_the_samples(trained):
    drawn = invoke("generate", trained / "last.pt", "--length", 30, "--num-samples", 2)
    assert drawn.exit_code == 0, drawn.output
    seed = int(drawn.stdout.split("(seed ", 1)[1].split(")", 1)[0])
    again = invoke("generate", trained / "last.pt", "--length", 30, "--num-samples", 2, "--seed", seed)
    assert again.stdout == drawn.stdout


def test_the_precision_option_reaches_the_run(book_slice, tmp_path):
    result = invoke("train", book_slice, "--out", tmp_path / "run", "--max-steps", 1, "--precision", "fp32", *TINY)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["precision"] == "fp32"
    bad = invoke("train", book_slice, "--out", tmp_path / "other", "--precision", "fp8", *TINY)
    assert bad.exit_code == 2 and "--precision" in bad.output


def test_unknown_prime_characters_can_be_skipped_with_a_warning(trained):
    result = invoke("generate", trained / "last.pt", "--prime", "Zebra ROMEO", "--length", 5, "--seed", 1,
                    "--on-unknown", "skip")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ebra ROMEO") and len(result.stdout) == len("ebra ROMEO") + 5 + 1
    assert "dropped prime character(s) outside the vocabulary: 'Z'" in result.stderr
    plain = invoke("generate", trained / "last.pt", "--prime", "ebra ROMEO", "--length", 5, "--seed", 1)
    assert plain.stdout == result.stdout


def test_a_text_of_one_distinct_character_trains_and_generates(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("a" * 300)
    trained = invoke("train", text, "--out", tmp_path / "run", "--max-steps", 3, *TINY)
    assert trained.exit_code == 0, trained.output
    generated = invoke("generate", tmp_path / "run" / "best.pt", "--prime", "a", "--length", 20)
    assert generated.exit_code == 0 and generated.stdout == "a" * 21 + "\n"


def test_resume_on_a_text_with_new_characters_exits_1_naming_them(trained, book_slice, tmp_path):
    before = (trained / "last.pt").read_bytes()
    other = tmp_path / "other.txt"
    other.write_text(book_slice.read_text() + "K\u00e9")
    result = invoke("train", other, "--resume", trained / "last.pt", "--no-progress")
    assert result.exit_code == 1
    assert "2 character(s) outside the model's" in result.output and "'K' '\u00e9'" in result.output
    assert (trained / "last.pt").read_bytes() == before


@pytest.mark.parametrize("temperature", ["0", "-1", "nan", "inf"])
def test_bad_temperature_is_a_usage_error(trained, temperature):
    result = invoke("generate", trained / "last.pt", "--temperature", temperature)
    assert result.exit_code == 2 and "temperature" in result.output


def test_unknown_prime_characters_exit_1_and_name_them(trained):
    result = invoke("generate", trained / "last.pt", "--prime", "caf\u00e9 \u2603")
    assert result.exit_code == 1
    assert "'\u00e9'" in result.output and "'\u2603'" in result.output and "Traceback" not in result.output


def test_bad_text_files(tmp_path):
    missing = invoke("train", tmp_path / "nope.txt", *TINY)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    directory = invoke("train", tmp_path, *TINY)
    assert directory.exit_code == 2
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
    [("--val-frac", "nan"), ("--val-frac", "1"), ("--dropout", "nan"), ("--dropout", "1"), ("--lr", "0"),
     ("--lr", "inf"), ("--grad-clip", "nan"), ("--batch-size", "0"), ("--seed", str(2**70)), ("--device", "tpu")],
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
    result = invoke("train", latin1, "--decode-errors", "replace", "--out", tmp_path / "run", *TINY[:-2],
                    "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA GPU" in result.output


def test_a_run_on_replaced_bytes_resumes_without_repeating_the_option(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait, ".encode("latin-1") * 100)
    first = invoke("train", latin1, "--decode-errors", "replace", "--out", tmp_path / "run", "--max-steps", 2, *TINY)
    assert first.exit_code == 0, first.output
    resumed = invoke("train", "--resume", tmp_path / "run" / "last.pt", "--max-steps", 3, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["decode_errors"] == "replace"


def test_resuming_an_older_checkpoint_in_place_never_overwrites_a_newer_last(trained, tmp_path):
    older = trained / "older.pt"  # e.g. a best.pt from before the last improvement
    older.write_bytes((trained / "last.pt").read_bytes())
    invoke("train", "--resume", trained / "last.pt", "--max-steps", 12, "--no-progress")
    before = (trained / "last.pt").read_bytes()
    assert load_checkpoint(trained / "last.pt")["progress"]["step"] == 12

    refused = invoke("train", "--resume", older, "--max-steps", 14, "--no-progress")
    assert refused.exit_code == 1 and "is at step 12, later than this checkpoint (step 6)" in refused.output
    assert (trained / "last.pt").read_bytes() == before
    branched = invoke("train", "--resume", older, "--max-steps", 14, "--no-progress", "--out", tmp_path / "branch")
    assert branched.exit_code == 0, branched.output
    assert load_checkpoint(tmp_path / "branch" / "last.pt")["progress"]["step"] == 14


def test_corrupt_checkpoint_exits_1(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for args in (["generate", bad], ["train", "--resume", bad, "--no-progress"]):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.output.strip().endswith("bad.pt is not a charrnn checkpoint or is corrupted")


def test_resume_refuses_a_different_architecture(trained):
    before = (trained / "last.pt").read_bytes()
    result = invoke("train", "--resume", trained / "last.pt", "--hidden-size", 64, "--no-progress")
    assert result.exit_code == 1 and "--hidden-size is 32 in this run" in result.output
    assert (trained / "last.pt").read_bytes() == before


def test_a_second_ctrl_c_quits_at_once_and_the_saved_checkpoint_survives(book_slice, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", str(book_slice), "--out", str(out), "--max-steps", "1000000",
         "--eval-every", "1000000", "--save-every", "2", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert load_checkpoint(out / "last.pt")["progress"]["step"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_exact_resume_across_processes_with_dropout(book_slice, tmp_path):
    # A constant rate: the resume moves --max-steps, and with it a decaying schedule's end.
    options = [*TINY, "--dropout", "0.3", "--eval-every", 3, "--save-every", 3, "--lr-schedule", "constant"]
    straight = run_cli("train", book_slice, "--out", tmp_path / "a", "--max-steps", 20, *options)
    assert straight.returncode == 0, straight.stderr
    first = run_cli("train", book_slice, "--out", tmp_path / "b", "--max-steps", 10, *options)
    assert first.returncode == 0, first.stderr
    second = run_cli("train", "--resume", tmp_path / "b" / "last.pt", "--max-steps", 20, "--no-progress")
    assert second.returncode == 0, second.stderr
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["progress"] == {**a["progress"], "elapsed_seconds": b["progress"]["elapsed_seconds"]}
    for name, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][name]), name


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_saves_and_resume_continues(book_slice, tmp_path, signum, exit_code):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", str(book_slice), "--out", str(out), "--max-steps", "1000000",
         "--eval-every", "1000000", "--save-every", "1000000", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().startswith("training on")
    time.sleep(1.0)  # some steps in
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(out / "last.pt")["progress"]["step"]
    assert step > 0 and f"at step {step}" in stdout

    resumed = run_cli("train", "--resume", out / "last.pt", "--max-steps", step + 2, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == step + 2
