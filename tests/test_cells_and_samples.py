"""--cell gru|rnn end to end, the samples printed while training, and older checkpoints' names."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

import charrnn
from charrnn.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from charrnn.commands.cli import main
from charrnn.config import ModelConfig
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import quiet

TINY = ["--hidden-size", "32", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train_resume_generate_and_describe(book_slice, tmp_path, cell):
    out = tmp_path / cell
    trained = invoke("train", book_slice, "--out", out, "--cell", cell, "--max-steps", 4, "--eval-every", 2, *TINY)
    assert trained.exit_code == 0, trained.output
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["model_config"]["cell"] == cell
    assert [tuple(t.shape) for t in checkpoint["hidden_state"]] == [(2, 4, 32)]  # h only: no cell state c

    changed = invoke("train", "--resume", out / "last.pt", "--cell", "lstm", "--no-progress")
    assert changed.exit_code == 1 and f"--cell is {cell} in this run and cannot change" in changed.output
    resumed = invoke("train", "--resume", out / "last.pt", "--max-steps", 6, "--no-progress", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 6

    first = invoke("generate", out / "best.pt", "--prime", "ROMEO:", "--length", 60, "--seed", 3)
    again = invoke("generate", out / "best.pt", "--prime", "ROMEO:", "--length", 60, "--seed", 3)
    assert first.exit_code == 0 and first.stdout == again.stdout and len(first.stdout) == len("ROMEO:") + 61
    info = invoke("info", out / "last.pt")
    assert f"2 x 32 {cell.upper()}" in info.output


def test_a_gru_run_resumes_bit_identically(book_slice, tmp_path, tiny_train):
    model_config = ModelConfig(hidden_size=32, num_layers=2, dropout=0.1, cell="gru")
    config = dataclasses.replace(tiny_train, max_steps=8, eval_every=3, save_every=3)
    straight = start_run(book_slice, model_config, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False)
    stopped = start_run(book_slice, model_config, dataclasses.replace(config, max_steps=3),
                        out_dir=tmp_path / "b", device="cpu", log=quiet)  # fmt: skip
    fit(stopped, log=quiet, progress_bar=False)
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 8}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert torch.equal(straight.state[0], resumed.state[0])


def test_checkpoints_from_before_cells_still_load(book_slice, tmp_path):
    # Until --cell existed the recurrent module was called `lstm` and configs had no cell.
    run = start_run(book_slice, ModelConfig(hidden_size=16), out_dir=tmp_path / "run", device="cpu", log=quiet)
    payload = run.checkpoint_payload()
    payload["model_state"] = {name.replace("rnn.", "lstm.", 1): t for name, t in payload["model_state"].items()}
    del payload["model_config"]["cell"]
    save_checkpoint(payload, tmp_path / "old.pt")
    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))
    assert model.cell == "lstm"
    assert torch.equal(model.rnn.weight_hh_l1, run.model.rnn.weight_hh_l1)


def test_a_sample_is_printed_at_each_validation_and_at_the_end(book_slice, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", book_slice, "--out", out, "--max-steps", 5, "--eval-every", 2,
                    "--sample-length", 40, *TINY)  # fmt: skip
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
    every = invoke("train", book_slice, "--out", tmp_path / "a", "--max-steps", 6, "--eval-every", 6,
                   "--sample-every", 3, "--sample-length", 20, *TINY)  # fmt: skip
    assert every.exit_code == 0, every.output
    assert [line.split()[3] for line in every.stdout.splitlines() if line.startswith("  sample at step")] == ["3", "6"]
    silent = invoke("train", book_slice, "--out", tmp_path / "b", "--max-steps", 4, "--eval-every", 2, "--no-sample", *TINY)
    assert silent.exit_code == 0 and "sample at step" not in silent.stdout and "val loss" in silent.stdout
    both = invoke("train", book_slice, "--out", tmp_path / "c", "--no-sample", "--sample-every", 3, *TINY)
    assert both.exit_code == 2 and "contradict" in both.output


def test_sampling_while_training_changes_nothing_in_the_training(book_slice, tmp_path, tiny_model, tiny_train):
    weights = {}
    for sample_every in (0, 1):
        config = dataclasses.replace(tiny_train, max_steps=5, sample_every=sample_every, sample_length=30)
        run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / str(sample_every), device="cpu", log=quiet)
        fit(run, log=quiet, progress_bar=False)
        weights[sample_every] = run.model.state_dict()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
