"""What a run shows (charrnn/training/reporting.py): progress, validation lines, samples, the end."""

import dataclasses
import fcntl
import os
import pty
import random
import struct
import termios

import pytest
import torch

import charrnn
from charrnn.formats.metrics import read_rows
from charrnn.training import reporting
from charrnn.training.loop import fit
from charrnn.training.policy import start_run
from tests.conftest import PINNED_THREADS, TINY, invoke, quiet, run_cli, start_cli


def test_a_sample_is_printed_at_each_validation_and_at_the_end(book_slice, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "train", book_slice, "--out", out, "--max-steps", 5, "--eval-every", 2, "--sample-length", 40, *TINY
    )
    assert result.exit_code == 0, result.output
    headers = [line for line in result.stdout.splitlines() if line.startswith("  sample at step")]
    assert [header.split()[3] for header in headers] == ["2", "4", "5"]
    blocks = result.stdout.split("  sample at step")[1:]
    for block in blocks:
        body = [line[4:] for line in block.splitlines()[1:] if line.startswith("  | ")]
        assert len("\n".join(body)) == 40  # the sample's characters, its newlines included

    model = charrnn.load(out / "last.pt")
    expected = model.generate("", 40, seed=1234)  # the run's seed, an empty prime
    last_body = "\n".join(line[4:] for line in blocks[-1].splitlines()[1:] if line.startswith("  | "))
    assert last_body == expected.replace("\r", "")


def test_sample_every_and_no_sample(book_slice, tmp_path):
    every = invoke(
        "train",
        book_slice,
        "--out",
        tmp_path / "a",
        "--max-steps",
        6,
        "--eval-every",
        6,
        "--sample-every",
        3,
        "--sample-length",
        20,
        *TINY,
    )
    assert every.exit_code == 0, every.output
    assert [line.split()[3] for line in every.stdout.splitlines() if line.startswith("  sample at step")] == ["3", "6"]
    silent = invoke(
        "train", book_slice, "--out", tmp_path / "b", "--max-steps", 4, "--eval-every", 2, "--no-sample", *TINY
    )
    assert silent.exit_code == 0 and "sample at step" not in silent.stdout and "val loss" in silent.stdout
    both = invoke("train", book_slice, "--out", tmp_path / "c", "--no-sample", "--sample-every", 3, *TINY)
    assert both.exit_code == 2 and "contradict" in both.output


def test_sampling_while_training_changes_nothing_in_the_training(book_slice, tmp_path, tiny_model, tiny_train):
    weights = {}
    for sample_every in (0, 1):
        config = dataclasses.replace(tiny_train, max_steps=5, sample_every=sample_every, sample_length=30)
        run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / str(sample_every), device="cpu", log=quiet)
        fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
        weights[sample_every] = run.model.state_dict()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_validation_lines_and_the_final_summary(book_slice, tmp_path, tiny_model, tiny_train):
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    notes = []
    fit(run, log=notes.append, progress_bar=False)
    lines = [note for note in notes if note.startswith("step ") and "val loss" in note and "(" in note]
    assert [line.split()[1] for line in lines] == ["4", "8", "12"]
    for line, row in zip(lines, run.metrics, strict=True):
        assert f"val loss {row['val_loss']:.4f}" in line and f"train loss {row['train_loss']:.4f}" in line
    best = min(row["val_loss"] for row in run.metrics)
    assert notes[-2] == f"step 12: best val loss {best:.4f} nats/char; checkpoints in {tmp_path / 'run'}"
    assert notes[-1].startswith("generate with: charrnn generate")


def test_without_a_terminal_progress_is_a_plain_line_now_and_then(
    book_slice, tmp_path, tiny_model, tiny_train, monkeypatch, capsys
):
    monkeypatch.setattr(reporting, "PLAIN_LINE_SECONDS", 0.0)  # a line at every step, to see them in a short run
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    fit(run, log=quiet, progress_bar=True)
    stderr = capsys.readouterr().err
    assert "\r" not in stderr
    lines = stderr.splitlines()
    assert len(lines) >= 6 and all(line.startswith("step ") and "chars/s=" in line for line in lines)
    assert lines[-1].startswith("step 12/12 ")


@pytest.mark.slow
def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(book_slice, tmp_path):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    options = [
        "--max-steps",
        6,
        "--hidden-size",
        16,
        "--batch-size",
        4,
        "--seq-len",
        16,
        "--no-sample",
        "--device",
        "cpu",
    ]
    process = start_cli("train", book_slice, "--out", tmp_path / "run", *options, stderr=follower)
    os.close(follower)
    stdout, _ = process.communicate(timeout=120)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other side is closed and everything has been read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert process.returncode == 0, stdout
    redraws = drawn.decode().split("\r")
    assert len(redraws) > 2 and any("6/6" in redraw for redraw in redraws), drawn


@pytest.mark.parametrize("progress", [True, False])
def test_no_progress_shows_nothing_on_stderr(
    book_slice, tmp_path, tiny_model, tiny_train, capsys, progress, monkeypatch
):
    monkeypatch.setattr(reporting, "PLAIN_LINE_SECONDS", 0.0)
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    fit(run, log=quiet, progress_bar=progress)
    assert (capsys.readouterr().err != "") == progress


@pytest.mark.slow
def test_a_run_that_learns_its_text_by_heart_says_so_at_the_end(tmp_path):
    # Random letters: nothing in the training split predicts the validation split, so all the
    # model can learn is the training text itself, and validation climbs while training falls.
    letters = random.Random(3).choices("abcdefgh", k=3000)
    text = tmp_path / "noise.txt"
    text.write_text("".join(letters), encoding="utf-8")
    out = tmp_path / "run"
    options = ["--hidden-size", "128", "--batch-size", "4", "--seq-len", "32", "--lr", "0.01"]
    result = run_cli(
        "train", text, "--out", out, *options, "--lr-schedule", "constant", "--max-epochs", 16,
        "--eval-every", 40, "--no-sample", "--no-progress", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: the model overfits")]
    assert len(notes) == 1, result.stdout
    best = min(read_rows(out), key=lambda row: row["val_loss"])
    assert f"from {best['val_loss']:.4f} (step {int(best['step'])}, kept in best.pt)" in notes[0]
    assert f"a budget that ends near step {int(best['step'])}" in notes[0]  # planned: its regularisation was chosen


def test_the_overfitting_note_needs_validation_up_and_training_down():
    def rows(*pairs):
        return [{"step": 100 * i, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(pairs, 1)]

    overfit = rows((2.0, 2.0), (1.5, 1.6), (1.2, 1.7))
    assert "--weight-drop 0.3" in reporting.overfitting_note(overfit)
    assert "--weight-drop" not in reporting.overfitting_note(overfit, finetuning=True)  # not a finetune option
    planned = reporting.overfitting_note(overfit, planned=True)  # the plan chose the regularisation
    assert "--weight-drop" not in planned and "a budget that ends near step 200" in planned
    assert reporting.overfitting_note(rows((2.0, 2.0), (1.5, 1.6), (1.2, 1.61))) is None  # val flat
    assert reporting.overfitting_note(rows((2.0, 2.0), (1.5, 1.6), (1.6, 1.7))) is None  # both rose: not this
    assert reporting.overfitting_note(rows((2.0, 2.0), (1.2, 1.7))) is None  # too few validations to say
