"""The decoder (charrnn/generation/decoder.py): the only caller of the step and the draw, the
sampling rules it applies, its log-probabilities and its beam search."""

import ast
import math
from pathlib import Path

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.draw import draw, filter_logits, penalise
from charrnn.generation.sample import most_likely, stream_pieces
from charrnn.sampling import Sampling

PACKAGE = Path(__file__).resolve().parents[2] / "charrnn"
VOCAB = Vocab(sorted(set("the quick brown fox jumps over a lazy dog.\n")))
# Where the step and the draw may be called: the decoder, and the modules that define them (a
# compiled graph runs the draw after its step; a compiled stepper's step calls its step_and_draw).
OWNERS = {"decoder.py", "beam.py", "draw.py", "stepper.py", "compiled.py", "compiled_int8.py"}
STEP_AND_DRAW = {"step", "step_and_draw", "draw", "draw_with_uniforms", "filter_logits", "penalise"}


def make_model(dtype=torch.float64) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=16, num_layers=2, dropout=0.0)).to(dtype).eval()


def calls_in(path: Path) -> list[str]:
    """The functions and methods called in a module, as "name" or "receiver.name"."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                receiver = func.value.attr if isinstance(func.value, ast.Attribute) else getattr(func.value, "id", "")
                names.append(f"{receiver}.{func.attr}")
            else:
                names.append(getattr(func, "id", ""))
    return names


def step_or_draw_calls(path: Path) -> set[str]:
    return {call for call in calls_in(path) if call.rpartition(".")[2] in STEP_AND_DRAW}


def test_nothing_but_the_decoder_calls_the_step_or_the_draw():
    modules = [p for p in PACKAGE.rglob("*.py") if p.name not in OWNERS or p.parent.name != "generation"]
    found = {str(p.relative_to(PACKAGE)): step_or_draw_calls(p) for p in modules}
    # Calling the decoder is what every front-end does; the others are not generation steps: an
    # optimizer's, the thread tuner's, the trainer's report, and the step `charrnn export` traces
    # into its graph (formats/export.py: a step's definition, as the compiled graphs are).
    allowed = {"decoder.step", "tuner.step", "report.step", "scaler.step", "optimizer.step"}
    offenders = {name: calls - allowed for name, calls in found.items() if calls - allowed}
    assert offenders == {"formats/export.py": {".step"}}  # Stepper.from_weights(...).step(...)
    assert {"self.draw", "stepper.step", "self._draw"} & step_or_draw_calls(PACKAGE / "generation" / "decoder.py")


def scores(model, prime, text) -> list[float]:
    """Each character's log-probability under nn.LSTM itself, reading prime + text in one pass."""
    ids = torch.from_numpy(VOCAB.encode(prime + text)).long().view(1, -1)
    logits, _ = model(ids[:, :-1])  # (P + T - 1, V)
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return [log_probs[len(prime) - 1 + i, int(ids[0, len(prime) + i])].item() for i in range(len(text))]


def generated(model, prime="the ", length=40, seed=3, **settings):
    pieces = list(stream_pieces(model, VOCAB, prime, length, Sampling(**settings), seed=seed, logprobs=3))
    return "".join(p.text for p in pieces), [s for p in pieces for s in p.scores]


@pytest.mark.parametrize("settings", [{}, {"temperature": 0.3, "top_k": 4}, {"repetition_penalty": 2.0}])
def test_logprobs_are_the_models_own_before_temperature_and_filters(settings):
    model = make_model()
    text, drawn = generated(model, **settings)
    assert "".join(s.char for s in drawn) == text and len(drawn) == 40
    expected = scores(model, "the ", text)
    assert [s.logprob for s in drawn] == pytest.approx(expected, abs=1e-9)
    for score in drawn:
        values = [value for _, value in score.top]
        assert len(score.top) == 3 and values == sorted(values, reverse=True)
        assert values[0] >= score.logprob and math.isclose(sum(math.exp(v) for v in values) <= 1, True)


def test_logprobs_follow_the_text_shown_when_a_stop_holds_characters_back():
    model = make_model()
    full, _ = generated(model, length=200, seed=8)
    stop = full[50:53]
    pieces = list(stream_pieces(model, VOCAB, "the ", 200, Sampling(), seed=8, stop=[stop], logprobs=0))
    text = "".join(p.text for p in pieces)
    assert text == full[: full.index(stop)] and pieces[-1].finish == "stop"
    assert "".join(s.char for p in pieces for s in p.scores) == text


def test_penalties_move_the_logits_as_openai_and_ctrl_define_them():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    drawn = torch.tensor([[2.0, 1.0, 0.0, 0.0]])  # character 0 drawn twice, character 1 once
    recent = torch.tensor([[0.0, 1.0, 0.0, 1.0]])  # characters 1 and 3 in the repetition window
    out = penalise(logits, drawn, recent, [Sampling(frequency_penalty=0.5, presence_penalty=0.25)])
    assert out.tolist() == [[2.0 - 1.0 - 0.25, -1.0 - 0.5 - 0.25, 0.5, 3.0]]
    out = penalise(logits, drawn, recent, [Sampling(repetition_penalty=2.0)])
    assert out.tolist() == [[2.0, -2.0, 0.5, 1.5]]  # a negative logit multiplied, a positive divided


def test_min_p_keeps_what_is_at_least_p_times_as_likely_as_the_best():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), None, None, 0.3))
    assert kept.tolist() == [[True, True, True, False]]  # 0.15 >= 0.3 x 0.5; 0.05 is not
    assert torch.isfinite(filter_logits(probs.log(), None, None, 1.0)).sum() == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"top_p": 1e-50},
        {"top_p": 5e-324},
        {"temperature": 1e-50},
        {"temperature": 5e-324},
        {"temperature": 1e300},
        {"min_p": 1.0, "temperature": 1e-300},
        {"repetition_penalty": 0.01, "frequency_penalty": -2.0, "presence_penalty": -2.0},
        {"repetition_penalty": 100.0, "frequency_penalty": 2.0, "top_p": 1e-300},
    ],
)
def test_extreme_settings_still_draw_valid_text_of_the_length_asked(settings):
    model = make_model(torch.float32)
    text, _ = generated(model, length=60, **settings)
    assert len(text) == 60 and set(text) <= set(VOCAB.chars)


def test_a_vanishing_temperature_or_top_p_is_greedy_not_a_newline():
    model = make_model(torch.float32)
    greedy, _ = generated(model, greedy=True)
    assert generated(model, temperature=1e-50)[0] == greedy
    assert generated(model, top_p=1e-50)[0] == greedy


def test_a_ban_in_the_shared_draw_reaches_every_draw(monkeypatch):
    """The eager half of the canary (test_frontends.py runs it through every front-end and step)."""
    from charrnn.generation import draw as draw_module

    banned = VOCAB.chars.index("e")
    real = draw_module.filter_logits

    def banning(logits, *args, **kwargs):
        return real(logits, *args, **kwargs).index_fill(-1, torch.tensor([banned]), -math.inf)

    monkeypatch.setattr(draw_module, "filter_logits", banning)
    logits = torch.zeros(3, len(VOCAB))
    logits[:, banned] = 50.0  # by far the most likely
    rows = [Sampling(), Sampling(greedy=True), Sampling(top_k=2, frequency_penalty=1.0)]
    assert banned not in draw(logits, rows, torch.rand(3)).tolist()


def total_logprob(model, prime, text) -> float:
    return sum(scores(model, prime, text))


@pytest.mark.parametrize("prime, length, width", [("the ", 30, 4), ("a lazy", 50, 8), ("", 20, 3), ("dog.", 40, 2)])
def test_beam_search_is_never_less_likely_than_greedy_and_scores_its_own_text(prime, length, width):
    model = make_model()
    greedy = "".join(p.text for p in stream_pieces(model, VOCAB, prime, length, Sampling(greedy=True), seed=0))
    beam = most_likely(model, VOCAB, prime, length, width)
    assert len(beam.text) == length and beam.ended_by == "length"
    if prime:  # the empty prime's first character has no "previous" row in one pass: skip that check
        assert beam.logprob == pytest.approx(total_logprob(model, prime, beam.text), abs=1e-9)
        assert beam.logprob >= total_logprob(model, prime, greedy) - 1e-9
    assert most_likely(model, VOCAB, prime, length, width) == beam  # deterministic
    assert most_likely(model, VOCAB, prime, length, 1).text == greedy  # width 1 is greedy decoding


def test_beam_search_ends_at_a_stop_text_and_counts_it():
    model = make_model()
    long = most_likely(model, VOCAB, "the ", 60, 4)
    stop = long.text[10:12]
    ended = most_likely(model, VOCAB, "the ", 60, 4, stop=[stop])
    assert ended.ended_by == "stop" and stop not in ended.text
    assert ended.logprob == pytest.approx(total_logprob(model, "the ", ended.text + stop), abs=1e-9)


def test_beam_arguments_are_checked():
    with pytest.raises(CharRNNError, match="beam width"):
        most_likely(make_model(), VOCAB, "a", 5, 0)
