"""`charrnn evaluate` and `charrnn info` (charrnn/commands/inspect.py) as a user runs them."""

import json
import math

import pytest
import torch

import charrnn
from charrnn.config import ModelConfig
from charrnn.formats.checkpoint import Checkpoint
from tests.conftest import invoke


def test_evaluate_prints_the_figures_as_text_and_as_json(tiny_run):
    result = invoke("evaluate", tiny_run.last, tiny_run.text, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    scored = charrnn.load(tiny_run.last, "cpu").evaluate(tiny_run.text.read_text(encoding="utf-8"))
    assert figures["nats_per_char"] == pytest.approx(scored.nats_per_char, rel=1e-9)
    assert figures["chars_scored"] == scored.chars_scored and figures["streams"] == 4
    assert figures["bits_per_char"] == pytest.approx(figures["nats_per_char"] / math.log(2))
    human = invoke("evaluate", tiny_run.last, tiny_run.text)
    assert f"{figures['nats_per_char']:.4f} nats/char" in human.stdout
    assert f"{figures['bits_per_char']:.4f} bits/char" in human.stdout
    one_stream = json.loads(invoke("evaluate", tiny_run.last, tiny_run.text, "--json", "--batch-size", 1).stdout)
    assert one_stream["streams"] == 1 and one_stream["chars_scored"] == len(tiny_run.text.read_text()) - 1


@pytest.mark.slow
def test_evaluate_dynamic_reports_a_second_figure_beside_the_static_one(tiny_run):
    options = ["--dynamic", "--dynamic-lr", "0.5", "--dynamic-seq-len", "10", "--device", "cpu"]
    result = invoke("evaluate", tiny_run.last, tiny_run.text, "--json", *options)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    static = json.loads(invoke("evaluate", tiny_run.last, tiny_run.text, "--json").stdout)
    assert figures["nats_per_char"] == static["nats_per_char"]  # the static figure is untouched
    dynamic = figures["dynamic"]
    expected = charrnn.load(tiny_run.last, "cpu").evaluate_dynamic(
        tiny_run.text.read_text(encoding="utf-8"), seq_len=10, lr=0.5
    )
    assert dynamic["nats_per_char"] == pytest.approx(expected.nats_per_char, rel=1e-6)
    assert (dynamic["streams"], dynamic["seq_len"], dynamic["lr"]) == (1, 10, 0.5)
    assert dynamic["nats_per_char"] < static["nats_per_char"]  # its own training text, learned as it is read
    human = invoke("evaluate", tiny_run.last, tiny_run.text, *options).stdout.splitlines()
    assert human[2].startswith("dynamic evaluation (1 stream, an update every 10 characters, lr 0.5")
    assert f"{dynamic['nats_per_char']:.4f} nats/char" in human[3] and "against the static figure" in human[3]


def test_evaluate_reports_and_leaves_out_unknown_characters(tiny_run, tmp_path):
    odd = tmp_path / "odd.txt"
    odd.write_text(tiny_run.text.read_text(encoding="utf-8")[:800] + "\u00e9\u00e9\u2603", encoding="utf-8")
    result = invoke("evaluate", tiny_run.last, odd)
    assert result.exit_code == 0, result.output
    assert (
        "left out 3 occurrence(s) (0.4% of the text) of 2 distinct character(s) outside the vocabulary: "
        "'\u00e9' x2, '\u2603' x1"
    ) in result.stderr
    strict = invoke("evaluate", tiny_run.last, odd, "--strict")
    assert strict.exit_code == 1 and "'\u2603'" in strict.output


def test_info_shows_what_the_checkpoint_was_trained_with(tiny_run):
    result = invoke("info", tiny_run.last, "--vocab")
    assert result.exit_code == 0, result.output
    assert "2 x 32 LSTM" in result.stdout and "batch 4 x 16" in result.stdout and "step 8" in result.stdout
    assert "(one-hot inputs)" in result.stdout
    assert str(tiny_run.text.resolve()) in result.stdout and "vocab " in result.stdout and "\\n" in result.stdout
    facts = json.loads(invoke("info", tiny_run.last, "--json").stdout)
    assert facts["model_config"] == {
        "hidden_size": 32,
        "num_layers": 2,
        "dropout": ModelConfig.dropout,
        "weight_drop": ModelConfig.weight_drop,
        "cell": "lstm",
        "head": "full",
    }
    assert facts["step"] == 8 and facts["train_config"]["seq_len"] == 16 and "vocab" not in facts
    model = charrnn.load(tiny_run.last, "cpu").model
    assert facts["parameters"] == sum(p.numel() for p in model.parameters())
    metrics = Checkpoint.load(tiny_run.last).metrics
    assert facts["best_val_loss"] == min(row["val_loss"] for row in metrics)
    assert facts["last_val_loss"] == metrics[-1]["val_loss"]


def test_a_checkpoint_with_an_odd_training_config_generates_and_explains_what_is_missing(tiny_run, tmp_path):
    raw = torch.load(tiny_run.last, weights_only=True)  # the file's own dict, to edit
    raw["train_config"] = {**raw["train_config"], "warmup_steps": 100, "a_newer_option": 1}
    del raw["train_config"]["batch_size"]
    odd = tmp_path / "odd.pt"
    torch.save(raw, odd)

    model = charrnn.load(odd, device="cpu")
    assert model.generate("ROMEO:", 20, seed=1) == charrnn.load(tiny_run.last, "cpu").generate("ROMEO:", 20, seed=1)
    text = tiny_run.text.read_text()
    with pytest.raises(charrnn.CharRNNError, match="training config in .*odd.pt has no batch_size: give the batch"):
        model.evaluate(text)
    assert model.evaluate(text, batch_size=2).streams == 2  # seq_len is there, batch_size given

    result = invoke("evaluate", odd, tiny_run.text)
    assert result.exit_code == 1 and "has no batch_size" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert invoke("evaluate", odd, tiny_run.text, "--batch-size", 2).exit_code == 0
    described = invoke("info", odd)
    assert described.exit_code == 0 and "batch ? x 16" in described.stdout  # shown as far as it goes

    raw["train_config"]["batch_size"] = "four"
    torch.save(raw, odd)
    with pytest.raises(charrnn.CharRNNError, match=r"unusable batch_size \('four'\)"):
        charrnn.load(odd).evaluate(text)
