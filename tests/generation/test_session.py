"""A stream whose state lives on (charrnn/generation/session.py): what `charrnn chat` relies on."""

import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.sample import Sampling, collect, stream_samples
from charrnn.generation.session import Session

VOCAB = Vocab(sorted(set("the quick brown fox jumps over a lazy dog.\n")))


def make_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=16, num_layers=2, dropout=0.0)).double().eval()


def test_a_session_writes_what_a_single_sample_writes():
    model = make_model()
    session = Session(model, VOCAB, seed=4)
    session.feed("the ")
    expected = collect(stream_samples(model, VOCAB, "the ", 60, Sampling(), seed=4), 1)[0]
    assert "".join(session.generate(60)) == expected


def test_going_on_later_or_after_an_interruption_is_going_on_at_once():
    model = make_model()
    straight = Session(model, VOCAB, seed=1)
    straight.feed("a lazy ")
    whole = "".join(straight.generate(50))

    parts = Session(model, VOCAB, seed=1)
    parts.feed("a lazy ")
    pieces = parts.generate(50)
    first = "".join(next(pieces) for _ in range(17))
    pieces.close()  # as a Ctrl-C in the middle would
    rest = "".join(parts.generate(33))
    assert first + rest == whole
    assert parts.text == "a lazy " + whole[:-1]  # everything but the last character is read in


def test_feeding_text_continues_the_state_and_reset_forgets_it():
    model = make_model()
    session = Session(model, VOCAB, seed=2)
    session.feed("the quick ")
    session.feed("brown ")
    joined = Session(model, VOCAB, seed=2)
    joined.feed("the quick brown ")
    torch.testing.assert_close(session.state, joined.state, rtol=0, atol=1e-12)
    session.reset()
    assert session.text == "" and not session.state[0].any()
    assert torch.equal(session.logits, model.logits_from_state(model.init_state(1)))
