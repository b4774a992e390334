import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.model import CharLSTM
from charrnn.sample import generate
from charrnn.vocab import UnknownCharactersError, Vocab

VOCAB = Vocab.from_text("abcdefghijklmnopqrstuvwxyz ,.\n")


def make_model() -> CharLSTM:
    torch.manual_seed(3)
    return CharLSTM(len(VOCAB), ModelConfig(hidden_size=24, num_layers=2, dropout=0.5))


def sample(model, prime="the ", length=60, temperature=1.0, seed=5) -> str:
    return "".join(generate(model, VOCAB, prime, length, temperature, seed))


def test_same_seed_same_text_and_different_seed_different_text():
    model = make_model()
    first = sample(model)
    assert len(first) == 60 and set(first) <= set(VOCAB.chars)
    assert sample(model) == first
    assert sample(model, seed=6) != first


def test_tiny_temperature_is_greedy_and_does_not_overflow():
    model = make_model().eval()
    text = sample(model, prime="the ", length=30, temperature=1e-3)
    context = "the "
    for character in text:  # each character is the argmax after everything before it
        logits, _ = model(torch.from_numpy(VOCAB.encode(context)).long().view(1, -1))
        assert VOCAB.chars[logits[-1].argmax().item()] == character
        context += character


def test_generation_carries_state_instead_of_rerunning_the_context():
    model = make_model()
    calls = []
    model.lstm.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[1]))
    sample(model, prime="the ", length=20)
    assert calls[0] == 4 and all(steps == 1 for steps in calls[1:])
    assert len(calls) == 20  # the prime, then one single-step pass per character but the last


def test_empty_prime_and_zero_length_are_defined():
    model = make_model()
    assert len(sample(model, prime="", length=10)) == 10
    assert sample(model, prime="abc", length=0) == ""


def test_generation_leaves_the_model_in_the_mode_it_found():
    model = make_model().train()
    sample(model, length=5)
    assert model.training


def test_bad_arguments_raise_before_any_text():
    model = make_model()
    with pytest.raises(UnknownCharactersError, match="prime has 2 character"):
        generate(model, VOCAB, "ABc", 10, 1.0, 0)
    for temperature in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CharRNNError, match="temperature"):
            generate(model, VOCAB, "a", 10, temperature, 0)
