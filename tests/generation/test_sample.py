import math

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import UnknownCharactersError, Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.draw import draw, filter_logits
from charrnn.generation.sample import collect, stream_samples
from charrnn.generation.stepper import WIDE_BATCH, Stepper
from charrnn.generation.stops import StopWatch
from charrnn.sampling import Sampling

VOCAB = Vocab.from_text("abcdefghijklmnopqrstuvwxyz ,.\n")


def make_model(dtype=torch.float32) -> CharRNN:
    torch.manual_seed(3)
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=24, num_layers=2, dropout=0.5)).to(dtype)


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


def test_top_k_keeps_exactly_k_when_logits_tie():
    logits = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    for k in (1, 2, 3):
        kept = torch.isfinite(filter_logits(logits, top_k=k, top_p=None))  # (N, V)
        assert kept.sum(dim=-1).tolist() == [k, k]
        assert not kept[0, [0, 4]].any()  # k of the three tied best ones
    kept = torch.isfinite(filter_logits(logits, top_k=4, top_p=None))
    assert kept[0].tolist() == [True, True, True, True, False] and kept[1].sum() == 4


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.05, 0.4, 0.3, 0.2, 0.05]])
    logits = probs.log()
    # sorted: 0.4, 0.3, 0.2, ...: 0.4 < 0.6 <= 0.4 + 0.3, so exactly those two stay
    assert torch.isfinite(filter_logits(logits, None, 0.6)).tolist() == [[False, True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, None, 0.69)).sum() == 2  # clear of the 0.7 boundary
    assert torch.isfinite(filter_logits(logits, None, 0.71)).sum() == 3
    assert torch.isfinite(filter_logits(logits, None, 0.1)).tolist() == [[False, True, False, False, False]]


def test_top_p_reached_exactly_keeps_the_set_that_reaches_it():
    # Four equal logits: each probability is exactly 1/4 and every partial sum is exact, so
    # p = 1/2 is reached exactly by two characters, with no float rounding either way.
    logits = torch.zeros(1, 4)
    assert torch.isfinite(filter_logits(logits, None, 0.5)).sum() == 2
    assert torch.isfinite(filter_logits(logits, None, 0.75)).sum() == 3
    assert torch.isfinite(filter_logits(logits, None, 0.5 + 1e-6)).sum() == 3


def test_draws_follow_the_filtered_distribution():
    draws = 5000
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).log().expand(draws, 4)
    uniforms = torch.rand(draws, generator=torch.Generator().manual_seed(0))
    ids = draw(logits, [Sampling(temperature=1.0, top_k=3)] * draws, uniforms)
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


def record_steps(monkeypatch, model) -> list:
    """Patch the generation step and hook nn.LSTM: returns the calls, as ("lstm", (B, T)) or ("step", (N,))."""
    calls = []
    model.rnn.register_forward_hook(lambda module, inputs, output: calls.append(("lstm", tuple(inputs[0].shape[:2]))))
    real_step = Stepper.step

    def step(self, ids, state):
        calls.append(("step", tuple(ids.shape)))
        return real_step(self, ids, state)

    monkeypatch.setattr(Stepper, "step", step)
    return calls


def test_a_batch_is_one_forward_per_step(monkeypatch):
    model = make_model()
    calls = record_steps(monkeypatch, model)
    generate_samples(model, VOCAB, "the ", 10, seed=1, num_samples=5)
    assert calls == [("lstm", (1, 4))] + [("step", (5,))] * 9  # the prime once, then all 5 rows together


@pytest.mark.parametrize(
    "sampling, num_samples",
    [
        (Sampling(), 1),
        (Sampling(temperature=1.3, top_k=5), 3),
        (Sampling(temperature=0.6, top_p=0.9), 2),
        (Sampling(temperature=0.9), WIDE_BATCH),  # the stepper's other layout
    ],
)
def test_the_fast_step_gives_the_same_text_as_nn_lstm(sampling, num_samples):
    model = make_model()
    fast, plain = (
        collect(
            stream_samples(model, VOCAB, "the ", 300, sampling, seed=5, num_samples=num_samples, fast=fast), num_samples
        )
        for fast in (True, False)
    )
    assert fast == plain
    assert all(len(text) == 300 for text in fast)


def test_stop_texts_end_a_sample_before_them():
    model = make_model()
    full = sample(model, length=300, seed=4)
    stop = full[100:103]  # a text the sample is sure to produce
    first_at = full.index(stop)
    assert sample(model, length=300, seed=4, stop=[stop]) == full[:first_at]
    assert sample(model, length=300, seed=4, stop=["never produced", stop]) == full[:first_at]
    assert sample(model, length=300, seed=4, stop=["\u2603"]) == full  # a stop never reached


def cut(stops, text: str) -> str:
    """What a sample ``text`` shows with these stops, fed one character at a time."""
    watch, shown = StopWatch(stops), ""
    for character in text:
        if watch.stopped:
            break
        shown += watch.feed(character)
    return shown + watch.flush()


@pytest.mark.parametrize(
    "stops, text, shown",
    [
        (["bb", "a"], "xabbc", "x"),  # the leftmost stop wins, not the first in the list
        (["bc", "abc"], "xabcd", "x"),  # both complete on "c": the one that starts earlier wins
        (["abcd", "bc"], "xabcd", "x"),  # "bc" completes first, but "abcd" starts earlier
        (["abcd", "bc"], "xabce", "xa"),  # "abcd" did not come: "bc" ends it
        (["abcd", "bc"], "xabc", "xa"),  # the sample's length ran out before "abcd" could
        (["ab"], "xaab", "xa"),
        (["ab"], "xaa", "xaa"),  # a held-back start of a stop is shown at the end
        ([""], "xy", "xy"),  # an empty stop never matches
    ],
)
def test_a_sample_ends_at_the_leftmost_stop(stops, text, shown):
    assert cut(stops, text) == shown


def test_stops_end_a_real_sample_at_the_leftmost_match():
    model = make_model()
    full = sample(model, length=300, seed=4)
    later, longer = full[101:103], full[100:106]  # "later" completes first, "longer" starts first
    assert full.find(longer) < full.find(later)  # so that the list order would give another answer
    assert sample(model, length=300, seed=4, stop=[later, longer]) == full[: full.find(longer)]


def test_a_single_stop_string_is_one_stop_text():
    model = make_model()
    full = sample(model, length=300, seed=4)
    stop = full[100:103]
    assert min(full.find(c) for c in stop) < full.find(stop)  # one character of it comes earlier
    assert sample(model, length=300, seed=4, stop=stop) == full[: full.find(stop)]


def test_stops_are_matched_in_the_generated_text_only():
    model = make_model()
    full = sample(model, prime="the ", length=300, seed=4)
    spanning = " " + full[0]  # begins in the prime, ends in the first generated character
    expected = full[: full.find(spanning)] if spanning in full else full
    assert expected  # matching across the prime would have ended the sample before any text
    assert sample(model, prime="the ", length=300, seed=4, stop=[spanning]) == expected


@pytest.mark.parametrize("seed, num_samples", [(-1, 1), (2**64, 1), (2**64 - 1, 2), (1.5, 1), ("7", 1)])
def test_seeds_out_of_range_raise_before_any_text(seed, num_samples):
    with pytest.raises(CharRNNError, match="seed must be an integer from 0 to"):
        stream_samples(make_model(), VOCAB, "a", 5, seed=seed, num_samples=num_samples)


def test_the_largest_seeds_work():
    model = make_model(torch.float64)  # float64: the batch of 2 rounds exactly like a single row
    top = generate_samples(model, VOCAB, "a", 20, seed=2**64 - 1)
    pair = generate_samples(model, VOCAB, "a", 20, seed=2**64 - 2, num_samples=2)
    assert pair[1] == top[0] and pair[0] != top[0]


def test_generation_carries_state_instead_of_rerunning_the_context(monkeypatch):
    model = make_model()
    calls = record_steps(monkeypatch, model)
    sample(model, prime="the ", length=20)
    # the prime in one pass, then one single-character step per character but the last
    assert calls == [("lstm", (1, 4))] + [("step", (1,))] * 19


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
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"frequency_penalty": 3.0}, "frequency_penalty"),
    ],
)
def test_bad_sampling_values_raise_before_any_text(sampling, message):
    with pytest.raises(CharRNNError, match=message):
        generate(make_model(), VOCAB, "a", 10, Sampling(**sampling))


def test_unknown_prime_characters_raise_before_any_text():
    with pytest.raises(UnknownCharactersError, match="prime has 2 character"):
        generate(make_model(), VOCAB, "ABc", 10)
