"""Dynamic evaluation (charrnn/generation/evaluate.py): scored before it adapts, and it adapts."""

import torch

import charrnn
from charrnn.generation.evaluate import evaluate_dynamic, evaluate_text


def test_without_updates_it_is_static_evaluation_in_one_stream(tiny_run):
    model = charrnn.load(tiny_run.last, "cpu")
    text = tiny_run.text.read_text(encoding="utf-8")[:1500]
    static = evaluate_text(model.model, model.vocab, text, batch_size=1, seq_len=20)
    frozen = evaluate_dynamic(model.model, model.vocab, text, seq_len=20, lr=0.0, decay=0.0)
    assert frozen.chars_scored == static.chars_scored == len(text) - 1 and frozen.streams == 1
    assert abs(frozen.nats_per_char - static.nats_per_char) < 1e-5


def test_each_segment_is_scored_before_the_model_learns_from_it(tiny_run):
    model = charrnn.load(tiny_run.last, "cpu")
    one_segment = tiny_run.text.read_text(encoding="utf-8")[:21]  # 20 scored characters, one update after
    static = evaluate_text(model.model, model.vocab, one_segment, batch_size=1, seq_len=20)
    adapted = evaluate_dynamic(model.model, model.vocab, one_segment, seq_len=20, lr=10.0, decay=0.0)
    assert abs(adapted.nats_per_char - static.nats_per_char) < 1e-5  # a huge step, taken too late to matter


def test_it_learns_a_pattern_the_model_never_saw_and_leaves_the_model_as_it_was(tiny_run):
    model = charrnn.load(tiny_run.last, "cpu")
    before = {name: tensor.clone() for name, tensor in model.model.state_dict().items()}
    text = "the cat sat on the mat. " * 60  # characters it knows, in an order it never read
    static = model.evaluate(text, batch_size=1, seq_len=20)
    adapted = model.evaluate_dynamic(text)
    assert adapted.nats_per_char < static.nats_per_char - 0.3
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
