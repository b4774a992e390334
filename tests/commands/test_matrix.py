"""Every command that loads a model, on every input path and every cell.

A model's input path depends on its alphabet: up to 512 characters the ids become one-hot
vectors, above that the model looks up rows of its input weights instead. A bug on one path
(issue 15: generation from a lookup-path model crashed on int16 ids) must fail here, so each
case runs a real command on a real checkpoint of each kind and checks what it printed.
"""

from __future__ import annotations

import json
import math

import pytest

import charrnn
from tests.conftest import MATRIX_CASES, invoke

LENGTH = 30


@pytest.fixture(params=MATRIX_CASES, ids=["-".join(case) for case in MATRIX_CASES])
def run(request, matrix_runs):
    """One trained run directory (best.pt, last.pt) and its text, per cell, input path and head."""
    return matrix_runs[request.param]


def assert_clean(result, exit_code=0):
    """The exit code, and no traceback anywhere in what the command printed."""
    printed = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in printed, printed
    assert result.exit_code == exit_code, (result.exit_code, printed, result.exception)


def test_the_fixture_covers_both_input_paths(matrix_runs):
    for (_, path, head), run in matrix_runs.items():
        model = charrnn.load(run.checkpoint, "cpu").model
        assert (model.input_path, model.config.head) == (path, head)
    assert {path for _, path, _ in matrix_runs} == {"one-hot", "lookup"}


def test_generate_streams_one_sample(run):
    result = invoke("generate", run.checkpoint, "--prime", run.prime, "--length", LENGTH, "--seed", 1)
    assert_clean(result)
    assert result.stdout.endswith("\n")
    text = result.stdout[:-1]
    assert text.startswith(run.prime)
    assert len(text) == len(run.prime) + LENGTH
    assert set(text) <= run.vocab


def test_generate_several_samples_at_once(run):
    result = invoke(
        "generate", run.checkpoint, "--prime", run.prime, "--length", LENGTH, "--seed", 1, "--num-samples", 3
    )
    assert_clean(result)
    parts = result.stdout.split("----- sample ")[1:]
    assert len(parts) == 3
    for part in parts:
        header, _, body = part.partition("-----\n")
        sample = body[:-1]  # each sample ends with a newline
        assert sample.startswith(run.prime) and len(sample) == len(run.prime) + LENGTH, (header, sample)
        assert set(sample) <= run.vocab


def test_generate_to_a_file(run, tmp_path):
    out = tmp_path / "samples.txt"
    result = invoke(
        "generate",
        run.checkpoint,
        "--prime",
        run.prime,
        "--length",
        LENGTH,
        "--seed",
        2,
        "--output",
        out,
        "--no-header",
    )
    assert_clean(result)
    text = out.read_text(encoding="utf-8")[:-1]
    assert len(text) == len(run.prime) + LENGTH and set(text) <= run.vocab


def test_the_api_streams_the_text_it_generates(run):
    model = charrnn.load(run.checkpoint, "cpu")
    whole = model.generate(run.prime, LENGTH, seed=5)
    pieces = "".join(piece for _, piece in model.stream(run.prime, LENGTH, seed=5))
    assert len(whole) == LENGTH and set(whole) <= run.vocab
    assert pieces == whole
    several = model.generate(run.prime, LENGTH, seed=5, num_samples=2)
    assert several[0] == whole and len(several[1]) == LENGTH


def test_evaluate(run):
    result = invoke("evaluate", run.checkpoint, run.text, "--json")
    assert_clean(result)
    scores = json.loads(result.stdout)
    assert math.isfinite(scores["nats_per_char"]) and scores["nats_per_char"] > 0
    assert scores["chars_scored"] > 100


@pytest.mark.slow
def test_dynamic_evaluation_adapts_through_either_head(run):
    scores = {}
    for lr in (0, 0.1):
        result = invoke("evaluate", run.checkpoint, run.text, "--dynamic", "--dynamic-lr", lr, "--json")
        assert_clean(result)
        scores[lr] = json.loads(result.stdout)["dynamic"]["nats_per_char"]
    assert math.isfinite(scores[0.1]) and scores[0.1] > 0
    assert scores[0.1] != scores[0]  # gradients reached the weights: with lr 0 they stay as trained


def test_explain(run):
    result = invoke("explain", run.text, "--checkpoint", run.checkpoint)
    assert_clean(result)
    assert f"V={len(run.vocab)} characters" in result.stdout
    loss = float(result.stdout.split("loss = ")[1].split()[0])
    assert math.isfinite(loss) and loss > 0


def test_info(run):
    result = invoke("info", run.checkpoint, "--json")
    assert_clean(result)
    facts = json.loads(result.stdout)
    assert facts["vocab_size"] == len(run.vocab)
    assert facts["model_config"]["cell"] == run.cell
    assert facts["model_config"]["head"] == run.head
    assert ("adaptive softmax head" in invoke("info", run.checkpoint).stdout) == (run.head == "adaptive")


def test_top_k_one_and_top_p_near_zero_are_greedy(run):
    # The k most likely characters must be read off the right columns, whichever head scores them.
    common = ["generate", run.checkpoint, "--prime", run.prime, "--length", LENGTH, "--compile", "off"]
    greedy = invoke(*common, "--greedy")
    assert_clean(greedy)
    for option in (["--top-k", 1], ["--top-p", 1e-6]):
        for temperature in (0.5, 2.0):
            drawn = invoke(*common, *option, "--temperature", temperature, "--seed", 3)
            assert_clean(drawn)
            assert drawn.stdout == greedy.stdout, (option, temperature)


def test_resume(run, tmp_path):
    out = tmp_path / "resumed"
    result = invoke("train", "--resume", run.last, "--max-steps", 4, "--out", out, "--no-progress")
    assert_clean(result)
    assert "resuming" in result.stdout and "step 4:" in result.stdout
    facts = json.loads(invoke("info", out / "last.pt", "--json").stdout)
    assert facts["step"] == 4 and math.isfinite(facts["last_val_loss"])
