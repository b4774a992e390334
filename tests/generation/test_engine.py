"""The batched engine (charrnn/generation/engine.py): many streams, one step, the same text as alone."""

import threading

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.engine import Engine, Stream
from charrnn.generation.sample import collect, sample_decoder, stream_samples
from charrnn.sampling import Sampling

VOCAB = Vocab(sorted(set("the quick brown fox jumps over a lazy dog.\n")))


@pytest.fixture
def model():
    torch.manual_seed(0)
    # float64: a batched multiply then rounds like a single row's, so batch and alone agree exactly
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=16, num_layers=2, dropout=0.0)).double().eval()


def run_all(model, streams, max_streams=64):
    """Submit every stream, step until all have ended; the text and finish reason of each."""
    texts = {id(s): "" for s in streams}
    reasons = {}
    ended = threading.Event()

    def emit(events):
        for piece in events:
            texts[id(piece.row)] += piece.text
            if piece.finish:
                reasons[id(piece.row)] = piece.finish
        if len(reasons) == len(streams):
            ended.set()

    engine = Engine(sample_decoder(model, VOCAB, None, 1, 0), emit, max_streams=max_streams)
    for stream in streams:
        engine.submit(stream)
    runner = threading.Thread(target=engine.run)
    runner.start()
    assert ended.wait(60)
    engine.close()
    runner.join(10)
    return [(texts[id(s)], reasons[id(s)]) for s in streams], engine


def alone(model, prompt, length, sampling, seed, stop=()):
    pieces = stream_samples(model, VOCAB, prompt, length, sampling, seed=seed, stop=stop)
    return collect(pieces, 1)[0]


def test_streams_stepped_together_write_what_each_writes_alone(model):
    settings = [
        Sampling(),
        Sampling(temperature=0.5),
        Sampling(top_k=3),
        Sampling(top_p=0.8),
        Sampling(greedy=True),
        Sampling(min_p=0.2, repetition_penalty=1.5),
        Sampling(frequency_penalty=1.0, presence_penalty=-0.5),
    ]
    streams = [Stream("the ", 50 + 7 * i, sampling, seed=i) for i, sampling in enumerate(settings)]
    results, engine = run_all(model, streams)
    for (text, reason), stream in zip(results, streams, strict=True):
        assert reason == "length"
        assert text == alone(model, stream.prompt, stream.limit, stream.sampling, stream.seed)
    assert engine.largest_batch == len(streams) and engine.characters == sum(s.limit for s in streams)
    assert engine.steps == max(s.limit for s in streams)  # one step for all of them at a time


def test_a_batch_smaller_than_the_requests_serves_them_in_turn(model):
    streams = [Stream("a ", 30, Sampling(), seed=i) for i in range(5)]
    results, engine = run_all(model, streams, max_streams=2)
    assert [text for text, _ in results] == [alone(model, "a ", 30, Sampling(), i) for i in range(5)]
    assert engine.largest_batch == 2


def test_stop_texts_length_zero_and_cancelled_streams(model):
    full = alone(model, "the ", 80, Sampling(), 9)
    stop = full[20:22]
    stopped = Stream("the ", 80, Sampling(), 9, stops=[stop])
    empty = Stream("the ", 0, Sampling(), 1)
    cancelled = Stream("the ", 10_000, Sampling(), 2)
    results, engine = run_all(model, [stopped, empty])
    assert results == [(full[: full.find(stop)], "stop"), ("", "length")]

    started = threading.Event()
    engine = Engine(sample_decoder(model, VOCAB, None, 1, 0), lambda events: started.set())
    cancelled.cancelled = False
    engine.submit(cancelled)
    runner = threading.Thread(target=engine.run)
    runner.start()
    assert started.wait(30)
    cancelled.cancelled = True  # its client went away
    for _ in range(1000):
        if engine.active == 0:
            break
        threading.Event().wait(0.01)
    assert engine.active == 0 and engine.characters < 10_000 and cancelled.finish_reason is None
    engine.close()
    runner.join(10)
    assert not runner.is_alive()
