import math

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.model import CharLSTM
from charrnn.sample import Sampling, collect, filter_logits, next_ids, stream_samples
from charrnn.vocab import UnknownCharactersError, Vocab

VOCAB = Vocab.from_text("abcdefghijklmnopqrstuvwxyz ,.\n")


def make_model(dtype=torch.float32) -> CharLSTM:
    torch.manual_seed(3)
    return CharLSTM(len(VOCAB), ModelConfig(hidden_size=24, num_layers=2, dropout=0.5)).to(dtype)


def generate(model, vocab, prime, length, sampling=Sampling(), *, seed=None, stop=()):
    """One sample's pieces."""
    return (piece for _, piece in stream_samples(model, vocab, prime, length, sampling, seed=seed, stop=stop))


def generate_samples(model, vocab, prime, length, sampling=Sampling(), *, seed=None, num_samples=1):
    pieces = stream_samples(model, vocab, prime, length, sampling, seed=seed, num_samples=num_samples)
    return collect(pieces, num_samples)


def sample(model, prime="the ", length=60, seed=5, stop=(), **sampling) -> str:
    sampling = Sampling(**{"temperature": 1.0, **sampling})
    return "".join(generate(model, VOCAB, prime, length, sampling, seed=seed, stop=stop))


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
    assert sample(model, prime="the ", length=30, greedy=True, seed=99) == text


def test_top_k_1_is_greedy():
    model = make_model()
    greedy = sample(model, greedy=True)
    assert sample(model, top_k=1, seed=1) == greedy
    assert sample(model, top_k=1, seed=2, temperature=3.0) == greedy


def test_top_k_keeps_exactly_the_k_best():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    kept = filter_logits(logits, top_k=2, top_p=None)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.4, 0.3, 0.2, 0.05]])
    logits = probs.log()
    # sorted: 0.4, 0.3, 0.2, ...: 0.4 < 0.6 <= 0.4 + 0.3, so exactly those two stay
    assert torch.isfinite(filter_logits(logits, None, 0.6)).tolist() == [[False, True, True, False, False]]
    # p = 0.7 is reached by 0.4 + 0.3 exactly: still two
    assert torch.isfinite(filter_logits(logits, None, 0.7)).sum() == 2
    assert torch.isfinite(filter_logits(logits, None, 0.71)).sum() == 3
    assert torch.isfinite(filter_logits(logits, None, 0.1)).tolist() == [[False, True, False, False, False]]


def test_draws_follow_the_filtered_distribution():
    draws = 5000
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).log().expand(draws, 4)
    generators = [torch.Generator().manual_seed(i) for i in range(draws)]
    ids = next_ids(logits, Sampling(temperature=1.0, top_k=3), generators)
    frequencies = torch.bincount(ids, minlength=4) / draws
    assert frequencies[0] == 0  # filtered out, never drawn
    torch.testing.assert_close(frequencies, torch.tensor([0.0, 2 / 9, 3 / 9, 4 / 9]), atol=0.03, rtol=0)


def test_a_batch_of_samples_equals_the_samples_drawn_one_by_one():
    model = make_model(torch.float64)
    sampling = Sampling(temperature=1.0, top_p=0.95)
    batch = generate_samples(model, VOCAB, "the ", 40, sampling, seed=10, num_samples=4)
    assert len(batch) == 4 and len(set(batch)) == 4
    one_by_one = [generate_samples(model, VOCAB, "the ", 40, sampling, seed=10 + i)[0] for i in range(4)]
    assert batch == one_by_one


def test_a_batch_is_one_forward_per_step():
    model = make_model()
    batch_sizes = []
    model.lstm.register_forward_hook(lambda module, inputs, output: batch_sizes.append(tuple(inputs[0].shape[:2])))
    generate_samples(model, VOCAB, "the ", 10, seed=1, num_samples=5)
    assert batch_sizes == [(1, 4)] + [(5, 1)] * 9  # the prime once, then all 5 rows together


def test_stop_texts_end_a_sample_before_them():
    model = make_model()
    full = sample(model, length=300, seed=4)
    stop = full[100:103]  # a text the sample is sure to produce
    first_at = full.index(stop)
    assert sample(model, length=300, seed=4, stop=[stop]) == full[:first_at]
    assert sample(model, length=300, seed=4, stop=["never produced", stop]) == full[:first_at]
    assert sample(model, length=300, seed=4, stop=["\u2603"]) == full  # a stop never reached


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


@pytest.mark.parametrize(
    "sampling, message",
    [({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
     ({"temperature": math.nan}, "temperature"), ({"temperature": math.inf}, "temperature"),
     ({"top_k": 0}, "top-k"), ({"top_p": 0.0}, "top-p"), ({"top_p": 1.5}, "top-p")],
)
def test_bad_sampling_values_raise_before_any_text(sampling, message):
    with pytest.raises(CharRNNError, match=message):
        generate(make_model(), VOCAB, "a", 10, Sampling(**sampling))


def test_unknown_prime_characters_raise_before_any_text():
    with pytest.raises(UnknownCharactersError, match="prime has 2 character"):
        generate(make_model(), VOCAB, "ABc", 10)
