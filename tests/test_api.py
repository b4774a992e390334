"""Generation options, evaluation, inspection and the Python API, through the CLI and directly."""

import json
import math
import random

import pytest
import torch
from click.testing import CliRunner

import charrnn
import charrnn.cli
from charrnn.checkpoint import load_checkpoint
from charrnn.commands.cli import main
from charrnn.config import ModelConfig
from tests.conftest import quiet

TINY = ["--hidden-size", "32", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained on a slice of the bundled book (shared: read-only in the tests)."""
    from conftest import BUNDLED_BOOK

    root = tmp_path_factory.mktemp("api")
    text = root / "slice.txt"
    text.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    result = invoke("train", text, "--out", root / "run", "--max-steps", 8, "--eval-every", 4, *TINY)
    assert result.exit_code == 0, result.output
    return root / "run", text


def test_num_samples_are_separated_and_reproducible(trained, monkeypatch):
    run, _ = trained
    real_load = charrnn.cli.load

    def load_float64(path, device):
        # In float32 a batch's matrix multiply may round differently in the last bit from a
        # single row's and so flip a draw; in float64 sample i is exactly the single sample.
        model = real_load(path, device)
        model.model.double()
        return model

    monkeypatch.setattr(charrnn.cli, "load", load_float64)
    args = ("generate", run / "last.pt", "--prime", "ROMEO:", "--length", 40, "--num-samples", 3, "--seed", 9)
    first, again = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout
    parts = first.stdout.split("----- sample ")[1:]
    assert [p.split(" ", 1)[0] for p in parts] == ["1", "2", "3"]
    assert "(seed 9)" in parts[0] and "(seed 11)" in parts[2]
    single = invoke("generate", run / "last.pt", "--prime", "ROMEO:", "--length", 40, "--seed", 11)
    assert parts[2].split("-----\n", 1)[1] == single.stdout  # sample 3 is the single sample with seed + 2


def test_greedy_and_top_k_1_agree_and_top_p_runs(trained):
    run, _ = trained
    greedy = invoke("generate", run / "last.pt", "--prime", "ROMEO:", "--length", 30, "--greedy")
    top1 = invoke("generate", run / "last.pt", "--prime", "ROMEO:", "--length", 30, "--top-k", 1, "--seed", 5)
    assert greedy.exit_code == 0 and greedy.stdout == top1.stdout
    nucleus = invoke("generate", run / "last.pt", "--length", 30, "--top-p", 0.9, "--top-k", 10, "--seed", 5)
    assert nucleus.exit_code == 0 and len(nucleus.stdout) == 31
    bad = invoke("generate", run / "last.pt", "--top-p", "1.5")
    assert bad.exit_code == 2


def test_prime_file_stop_and_output_with_header(trained, tmp_path):
    run, _ = trained
    prime_file = tmp_path / "prime.txt"
    prime_file.write_text("First Citizen:\r\n", encoding="utf-8")  # CRLF is read as LF
    plain = invoke("generate", run / "last.pt", "--prime-file", prime_file, "--length", 300, "--seed", 3)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("First Citizen:\n")
    generated = plain.stdout[len("First Citizen:\n"):-1]
    assert "e" in generated
    stopped = invoke("generate", run / "last.pt", "--prime-file", prime_file, "--length", 300, "--seed", 3,
                     "--stop", "e", "--stop", "\\n\\n")
    end = min(i for i in (generated.find("e"), generated.find("\n\n")) if i >= 0)
    assert stopped.stdout == "First Citizen:\n" + generated[:end] + "\n"

    out = tmp_path / "samples.txt"
    written = invoke("generate", run / "last.pt", "--prime", "ROMEO:", "--length", 50, "--seed", 3,
                     "--top-p", 0.8, "--output", out)
    assert written.exit_code == 0 and written.stdout == ""
    header, body = out.read_text(encoding="utf-8").split("\n\n", 1)
    assert "# checkpoint: " in header and "# prime: 'ROMEO:'" in header and "seed: 3" in header
    assert "top-p: 0.8" in header and body.startswith("ROMEO:") and len(body) == 6 + 50 + 1
    again = invoke("generate", run / "last.pt", "--output", out)
    assert again.exit_code == 1 and "already exists" in again.output
    both = invoke("generate", run / "last.pt", "--prime", "x", "--prime-file", prime_file)
    assert both.exit_code == 2


def test_evaluate_matches_the_validation_loss_the_trainer_reported(trained, tmp_path):
    run, text = trained
    checkpoint = load_checkpoint(run / "last.pt")
    book = text.read_text(encoding="utf-8")
    val_text = book[len(book) - round(len(book) * 0.1):]
    val_file = tmp_path / "val.txt"
    val_file.write_text(val_text, encoding="utf-8")
    result = invoke("evaluate", run / "last.pt", val_file, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["nats_per_char"] == pytest.approx(checkpoint["last_val_loss"], rel=1e-6)
    assert figures["bits_per_char"] == pytest.approx(figures["nats_per_char"] / math.log(2))
    assert figures["perplexity"] == pytest.approx(math.exp(figures["nats_per_char"]))
    human = invoke("evaluate", run / "last.pt", val_file)
    assert f"{figures['nats_per_char']:.4f} nats/char" in human.stdout and "bits/char" in human.stdout


def test_evaluate_reports_and_leaves_out_unknown_characters(trained, tmp_path):
    run, text = trained
    odd = tmp_path / "odd.txt"
    odd.write_text(text.read_text(encoding="utf-8")[:800] + "\u00e9\u00e9\u2603", encoding="utf-8")
    result = invoke("evaluate", run / "last.pt", odd)
    assert result.exit_code == 0, result.output
    assert "left out 3 character(s) outside the vocabulary: '\u00e9' x2, '\u2603' x1" in result.stderr
    strict = invoke("evaluate", run / "last.pt", odd, "--strict")
    assert strict.exit_code == 1 and "'\u2603'" in strict.output


def test_evaluate_is_near_zero_on_an_overfit_text_and_near_log_v_on_random_text(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat on the mat. " * 40)
    charrnn.train(text, out_dir=tmp_path / "run", hidden_size=48, num_layers=1, dropout=0.0, batch_size=2,
                  seq_len=24, lr=1e-2, max_steps=150, eval_every=150, val_frac=0.2, device="cpu", log=quiet,
                  progress_bar=False)
    model = charrnn.load(tmp_path / "run" / "last.pt", device="cpu")
    assert model.evaluate(text.read_text()).nats_per_char < 0.05
    rng = random.Random(0)
    noise = "".join(rng.choice(model.vocab.chars) for _ in range(3000))
    untrained = tmp_path / "fresh.txt"
    untrained.write_text(noise)
    charrnn.train(untrained, out_dir=tmp_path / "fresh", hidden_size=16, max_steps=1, device="cpu", log=quiet,
                  progress_bar=False, batch_size=4, seq_len=16, lr=1e-6)
    fresh = charrnn.load(tmp_path / "fresh" / "last.pt", device="cpu")
    assert fresh.evaluate(noise).nats_per_char == pytest.approx(math.log(len(fresh.vocab)), abs=0.05)


def test_info_shows_what_the_checkpoint_was_trained_with(trained):
    run, text = trained
    result = invoke("info", run / "last.pt", "--vocab")
    assert result.exit_code == 0, result.output
    assert "2 x 32 LSTM" in result.stdout and "batch 4 x 16" in result.stdout and "step 8" in result.stdout
    assert str(text.resolve()) in result.stdout and "vocab " in result.stdout and "\\n" in result.stdout
    facts = json.loads(invoke("info", run / "last.pt", "--json").stdout)
    assert facts["model_config"] == {"hidden_size": 32, "num_layers": 2, "dropout": ModelConfig.dropout, "cell": "lstm"}
    assert facts["step"] == 8 and facts["train_config"]["seq_len"] == 16 and "vocab" not in facts
    assert facts["parameters"] > 0 and facts["best_val_loss"] <= facts["last_val_loss"]


def test_python_api_generate_evaluate_and_train(trained, tmp_path):
    run, text = trained
    model = charrnn.load(run / "best.pt", device="cpu")
    one = model.generate("ROMEO:", 30, temperature=0.7, seed=2)
    assert isinstance(one, str) and len(one) == 30 and one == model.generate("ROMEO:", 30, temperature=0.7, seed=2)
    many = model.generate("ROMEO:", 30, temperature=0.7, seed=2, num_samples=3)
    assert isinstance(many, list) and len(many) == 3 and many[0] == one
    assert model.generate("ROMEO:", 30, greedy=True) == model.generate("ROMEO:", 30, top_k=1, seed=8)
    assert model.evaluate(text.read_text()).chars_scored > 0
    with pytest.raises(TypeError, match="unknown training option"):
        charrnn.train(text, hiden_size=3)
    with pytest.raises(charrnn.CharRNNError, match="already holds a run"):
        charrnn.train(text, out_dir=run, log=quiet, progress_bar=False)


def test_python_api_stop_num_samples_and_the_seed_it_drew(trained):
    run, _ = trained
    model = charrnn.load(run / "best.pt", device="cpu")
    full = model.generate("ROMEO:", 200, seed=4)
    stop = next(full[i : i + 3] for i in range(20, 150) if full[i : i + 3].isalpha())
    assert min(full.find(c) for c in stop) < full.find(stop)  # a stop per character would end it sooner
    assert model.generate("ROMEO:", 200, seed=4, stop=stop) == full[: full.find(stop)]
    assert model.generate("ROMEO:", 200, seed=4, stop=[stop]) == full[: full.find(stop)]

    for bad in (0, -1):
        with pytest.raises(charrnn.CharRNNError, match="number of samples must be 1 or more"):
            model.generate("ROMEO:", 10, num_samples=bad)
    with pytest.raises(charrnn.CharRNNError, match="seed must be an integer"):
        model.generate("ROMEO:", 10, seed=2**64)

    drawn = model.generate("ROMEO:", 60)
    seed = model.last_seed
    assert isinstance(seed, int) and model.generate("ROMEO:", 60, seed=seed) == drawn
    several = model.generate("ROMEO:", 60, num_samples=2)
    assert several == model.generate("ROMEO:", 60, num_samples=2, seed=model.last_seed)
    assert model.last_seed != seed  # a fresh draw each time


def test_a_checkpoint_with_an_odd_training_config_generates_and_explains_what_is_missing(trained, tmp_path):
    run, text = trained
    checkpoint = load_checkpoint(run / "last.pt")
    checkpoint["train_config"] = {**checkpoint["train_config"], "warmup_steps": 100}  # a newer charrnn's key
    del checkpoint["train_config"]["batch_size"]
    odd = tmp_path / "odd.pt"
    torch.save(checkpoint, odd)

    model = charrnn.load(odd, device="cpu")
    assert len(model.generate("ROMEO:", 20, seed=1)) == 20  # generation never reads it
    with pytest.raises(charrnn.CharRNNError, match="training config in .*odd.pt has no batch_size: give the batch"):
        model.evaluate(text.read_text())
    assert model.evaluate(text.read_text(), batch_size=2).chars_scored > 0  # seq_len is there, batch_size given

    result = invoke("evaluate", odd, text)
    assert result.exit_code == 1 and "has no batch_size" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert invoke("evaluate", odd, text, "--batch-size", 2).exit_code == 0
    assert invoke("generate", odd, "--length", 5).exit_code == 0
    described = invoke("info", odd)
    assert described.exit_code == 0 and "batch ? x 16" in described.stdout  # shown as far as it goes

    checkpoint["train_config"]["batch_size"] = "four"
    torch.save(checkpoint, odd)
    with pytest.raises(charrnn.CharRNNError, match=r"unusable batch_size \('four'\)"):
        charrnn.load(odd).evaluate(text.read_text())
