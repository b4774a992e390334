"""Every front-end is a loop over the one decoder: `charrnn generate`, the API, chat's session and
serve's engine write the same text for a seed, whatever the sampling settings and the step
(eager, compiled, int8); and a character banned inside the shared draw never comes out of any."""

import math
import threading

import pytest
import torch

import charrnn
from charrnn.generation import draw as draw_module
from charrnn.generation.engine import Stream
from charrnn.sampling import Sampling
from tests.conftest import PINNED_THREADS, invoke

SETTINGS = [
    {"temperature": 0.7},
    {"top_k": 5},
    {"top_p": 0.9, "temperature": 1.2},
    {"min_p": 0.1},
    {"greedy": True},
    {"frequency_penalty": 0.8},
    {"presence_penalty": 0.6},
    {"repetition_penalty": 1.4, "repetition_window": 16},
]
STEPS = {"eager": ("off", "none"), "compiled": ("on", "none"), "int8": ("on", "int8")}
KINDS = {"eager": "float32", "compiled": "compiled float32", "int8": "compiled int8"}  # what must run
PRIME, LENGTH, SEED = "ROMEO:", 80, 21


def flags(settings: dict) -> list:
    out = []
    for name, value in settings.items():
        out += [f"--{name.replace('_', '-')}"] if value is True else [f"--{name.replace('_', '-')}", value]
    return out


def by_generate(checkpoint, compile, quantize, settings) -> str:
    step = ["--compile", compile, "--quantize", quantize, "--threads", PINNED_THREADS, "--device", "cpu"]
    result = invoke(
        "generate", checkpoint, "--prime", PRIME, "--length", LENGTH, "--seed", SEED, *step, *flags(settings)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(PRIME) and result.stdout.endswith("\n")
    return result.stdout[len(PRIME) : -1]


def by_session(model, settings) -> str:
    session = model.session(seed=SEED, **settings)
    session.feed(PRIME)
    return "".join(session.generate(LENGTH))


def by_engine(model, settings) -> str:
    pieces, ended = [], threading.Event()

    def emit(events):
        for piece in events:
            pieces.append(piece.text)
            if piece.finish:
                ended.set()

    engine = model.engine(emit)
    engine.submit(Stream(PRIME, LENGTH, Sampling(**settings), SEED))
    runner = threading.Thread(target=engine.run)
    runner.start()
    assert ended.wait(120)
    engine.close()
    runner.join(30)
    return "".join(pieces)


def texts_of_every_front_end(checkpoint, step: str, settings: dict) -> dict[str, str]:
    compile, quantize = STEPS[step]
    notes = []
    model = charrnn.load(
        checkpoint, "cpu", compile=compile, quantize=quantize, threads=PINNED_THREADS, note=notes.append
    )
    texts = {
        "generate": by_generate(checkpoint, compile, quantize, settings),
        "api": model.generate(PRIME, LENGTH, seed=SEED, **settings),
        "chat": by_session(model, settings),
        "serve": by_engine(model, settings),
    }
    assert model.runtime.kind == KINDS[step], notes  # not a silent fall back to the eager step
    return texts


@pytest.mark.slow  # four front-ends, each setting
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(s))
def test_every_front_end_writes_the_same_text_for_a_seed_eagerly(tiny_run, settings):
    texts = texts_of_every_front_end(tiny_run.best, "eager", settings)
    assert len(texts["api"]) == LENGTH and len(set(texts.values())) == 1, texts


@pytest.mark.slow  # builds the compiled float32 and int8 steps with the ban traced into them
def test_a_banned_character_never_comes_out_of_any_front_end_or_step(tiny_run, tmp_path, monkeypatch):
    """The canary: ban one character inside the shared draw (filters every draw, greedy included,
    and is traced into the compiled steps built here); no front-end, on no step, ever writes it,
    and under the ban too every front-end writes the same text for a seed."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))  # the compiled steps are built with the ban
    vocab = charrnn.load(tiny_run.best, "cpu", compile="off").vocab
    banned = "e"
    real = draw_module.filter_logits

    def banning(logits, *args, **kwargs):
        index = torch.tensor([vocab.chars.index(banned)], device=logits.device)
        return real(logits, *args, **kwargs).index_fill(-1, index, -math.inf)

    monkeypatch.setattr(draw_module, "filter_logits", banning)
    allowed = charrnn.load(tiny_run.best, "cpu", compile="off").generate(PRIME, 2000, seed=1, temperature=1.5)
    monkeypatch.setattr(draw_module, "filter_logits", real)
    assert banned in charrnn.load(tiny_run.best, "cpu", compile="off").generate(PRIME, 2000, seed=1, temperature=1.5)
    assert banned not in allowed  # the canary works eagerly before it is trusted below
    monkeypatch.setattr(draw_module, "filter_logits", banning)
    for step in STEPS:
        for settings in SETTINGS:
            texts = texts_of_every_front_end(tiny_run.best, step, settings)
            assert len(set(texts.values())) == 1, (step, settings, texts)
            assert len(texts["api"]) == LENGTH and banned not in texts["api"], (step, settings)
