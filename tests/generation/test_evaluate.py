"""Scoring a text (charrnn/generation/evaluate.py): the trainer's validation loss, and its limits."""

import math
import random

import pytest

import charrnn
from charrnn.formats.checkpoint import Checkpoint
from tests.conftest import quiet


def test_scoring_the_validation_text_gives_the_validation_loss_the_trainer_reported(tiny_run):
    book = tiny_run.text.read_text(encoding="utf-8")
    val_text = book[len(book) - round(len(book) * 0.1) :]
    scored = charrnn.load(tiny_run.last, "cpu").evaluate(val_text)
    assert scored.nats_per_char == pytest.approx(Checkpoint.load(tiny_run.last).last_val_loss, rel=1e-6)
    assert scored.bits_per_char == pytest.approx(scored.nats_per_char / math.log(2))
    assert scored.perplexity == pytest.approx(math.exp(scored.nats_per_char))


def test_every_character_but_the_first_of_each_stream_is_scored_once(tiny_run):
    model = charrnn.load(tiny_run.last, "cpu")
    text = tiny_run.text.read_text(encoding="utf-8")[:1001]
    assert model.evaluate(text, batch_size=1).chars_scored == 1000
    assert model.evaluate(text, batch_size=3).chars_scored == 3 * (1000 // 3)
    default = model.evaluate(text)  # the run's batch of 4 streams
    assert (default.streams, default.chars_scored) == (4, 1000)


def test_unknown_characters_are_counted_and_left_out_or_refused(tiny_run):
    model = charrnn.load(tiny_run.last, "cpu")
    text = tiny_run.text.read_text(encoding="utf-8")[:801]
    odd = model.evaluate(text + "\u00e9\u00e9\u2603")
    assert odd.unknown == {"\u00e9": 2, "\u2603": 1}
    assert odd.nats_per_char == model.evaluate(text).nats_per_char
    with pytest.raises(charrnn.CharRNNError, match="2 character.*outside the model's .*'\u00e9' '\u2603'"):
        model.evaluate(text + "\u00e9\u00e9\u2603", strict=True)


def test_near_zero_on_an_overfit_text_and_near_log_v_on_random_text(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat on the mat. " * 40)
    charrnn.train(
        text,
        out_dir=tmp_path / "run",
        hidden_size=48,
        num_layers=1,
        dropout=0.0,
        batch_size=2,
        seq_len=24,
        lr=1e-2,
        max_steps=150,
        eval_every=150,
        val_frac=0.2,
        lr_schedule="constant",
        device="cpu",
        log=quiet,
        progress_bar=False,
    )
    model = charrnn.load(tmp_path / "run" / "last.pt", device="cpu")
    assert model.evaluate(text.read_text()).nats_per_char < 0.05
    rng = random.Random(0)
    noise = "".join(rng.choice(model.vocab.chars) for _ in range(3000))
    untrained = tmp_path / "fresh.txt"
    untrained.write_text(noise)
    charrnn.train(
        untrained,
        out_dir=tmp_path / "fresh",
        hidden_size=16,
        max_steps=1,
        device="cpu",
        log=quiet,
        progress_bar=False,
        batch_size=4,
        seq_len=16,
        lr=1e-6,
    )
    fresh = charrnn.load(tmp_path / "fresh" / "last.pt", device="cpu")
    assert fresh.evaluate(noise).nats_per_char == pytest.approx(math.log(len(fresh.vocab)), abs=0.05)
