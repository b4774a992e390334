"""A stream whose state lives on (charrnn/generation/session.py): what `charrnn chat` relies on."""

import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.sample import collect, sample_decoder, stream_samples
from charrnn.generation.session import Session
from charrnn.sampling import Sampling

VOCAB = Vocab(sorted(set("the quick brown fox jumps over a lazy dog.\n")))


def make_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=16, num_layers=2, dropout=0.0)).double().eval()


def session_on(model, seed, sampling=Sampling()) -> Session:
    return Session(sample_decoder(model, VOCAB, None, 1, 0), seed, sampling)


def test_a_session_writes_what_a_single_sample_writes():
    model = make_model()
    for sampling in (Sampling(), Sampling(top_k=4, frequency_penalty=0.5), Sampling(greedy=True)):
        session = session_on(model, 4, sampling)
        session.feed("the ")
        expected = collect(stream_samples(model, VOCAB, "the ", 60, sampling, seed=4), 1)[0]
        assert "".join(session.generate(60)) == expected


def test_going_on_later_or_after_an_interruption_is_going_on_at_once():
    model = make_model()
    straight = session_on(model, 1)
    straight.feed("a lazy ")
    whole = "".join(straight.generate(50))

    parts = session_on(model, 1)
    parts.feed("a lazy ")
    pieces = parts.generate(50)
    first = "".join(next(pieces) for _ in range(17))
    pieces.close()  # as a Ctrl-C in the middle would
    assert parts.text == "a lazy " + first  # the text shown so far, no more
    rest = "".join(parts.generate(33))
    assert first + rest == whole
    assert parts.text == "a lazy " + whole
    parts.feed("dog")  # the last character drawn is read before the new text
    straight.feed("dog")
    assert torch.equal(parts.decoder.fresh_logits, straight.decoder.fresh_logits)


def test_feeding_text_continues_the_state_and_reset_forgets_it():
    model = make_model()
    session = session_on(model, 2)
    session.feed("the quick ")
    session.feed("brown ")
    joined = session_on(model, 2)
    joined.feed("the quick brown ")
    torch.testing.assert_close(session.decoder.state, joined.decoder.state, rtol=0, atol=1e-12)
    session.reset()
    assert session.text == "" and not session.decoder.state[0].any()
    assert torch.equal(session.decoder.fresh_logits, model.logits_from_state(model.init_state(1)))
