"""The int8 generation step (charrnn/generation/stepper.py ``Int8Stepper``) and --quantize int8."""

import json

import pytest
import torch

import charrnn
from charrnn.config import ModelConfig
from charrnn.core.cells import CELL_NAMES
from charrnn.core.model import CharRNN
from charrnn.generation import runtime
from charrnn.generation.compiled_int8 import Int8CompiledStepper
from charrnn.generation.draw import draw_with_uniforms
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.stepper import Int8Stepper, Stepper
from tests.conftest import BUNDLED_BOOK, invoke, step_notes

V, H = 40, 64


def make_model(cell: str) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(V, ModelConfig(hidden_size=H, num_layers=2, dropout=0.0, cell=cell)).eval()


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("streams", [1, 20])
def test_int8_steps_stay_close_to_float32_and_keep_no_float32_weight_copies(cell, streams):
    model = make_model(cell)
    exact, int8 = Stepper(model), Int8Stepper(model)
    # the recurrent multiplies keep no float32 copy; a small alphabet's head stays float32
    assert sorted(name for name in int8.weights if name.endswith(".weight")) == ["head.weight"]
    assert sorted(int8.packed) == (["0.hh", "1.hh", "1.ih"] if cell == "gru" else ["0.hh", "1.cat"])
    state = exact_state = int8_state = tuple(torch.randn_like(t) * 0.5 for t in model.init_state(streams))
    ids = torch.randint(0, V, (streams, 30))
    for t in range(ids.shape[1]):
        logits, exact_state = exact.step(ids[:, t], exact_state)
        quantized, int8_state = int8.step(ids[:, t], int8_state)
        # 8-bit weights: close, not equal (the bundled model's loss changes by 0.0004 nats/char)
        assert (quantized - logits).abs().max() < 0.05 * logits.abs().max()
        assert not torch.equal(quantized, logits)
    assert state[0].shape == int8_state[0].shape


@pytest.fixture(scope="module")
def shakespeare_val(tmp_path_factory):
    """30,000 characters of the bundled model's validation split."""
    path = tmp_path_factory.mktemp("val") / "val.txt"
    path.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[-30_000:], encoding="utf-8")
    return path


@pytest.mark.slow
def test_int8_changes_the_bundled_models_loss_by_at_most_five_thousandths(shakespeare_val):
    result = invoke("evaluate", charrnn.load().path, shakespeare_val, "--quantize", "int8", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    change = facts["int8"]["change_nats_per_char"]
    assert 0 < abs(change) <= 0.005  # the bound; int8 is not float32, so not exactly 0
    assert facts["int8"]["nats_per_char"] == pytest.approx(facts["nats_per_char"] + change)


@pytest.mark.slow
def test_evaluate_prints_the_int8_figure_beside_float32(shakespeare_val):
    result = invoke("evaluate", charrnn.load().path, shakespeare_val, "--quantize", "int8", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].startswith("int8 weights: ") and "nats/char against float32)" in lines[2]


def test_generate_quantize_int8_through_the_cli_and_the_api(tiny_run):
    result = invoke("generate", tiny_run.best, "--quantize", "int8", "--length", 80, "--seed", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    model = charrnn.load(tiny_run.best, device="cpu", quantize="int8")
    assert result.stdout == model.generate("", 80, seed=2) + "\n"
    assert model.runtime.kind == "int8"


def test_int8_unavailable_says_why_once_and_generates_in_float32(monkeypatch):
    def refuse(self, model, parts=None):
        raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")

    monkeypatch.setattr(runtime.Int8Stepper, "__init__", refuse)
    notes = []
    chosen = StepRuntime(make_model("lstm"), quantize="int8", note=notes.append)
    assert type(chosen.stepper(1)) is Stepper and type(chosen.stepper(4)) is Stepper
    assert step_notes(notes) == [
        "int8 is unavailable here (Didn't find engine for operation quantized::linear_prepack NoQEngine): "
        "generating in eager float32"
    ]


@pytest.mark.slow
def test_a_compiled_int8_step_computes_what_the_eager_int8_step_does():
    model = make_model("lstm")
    notes = []
    chosen = StepRuntime(model, compile="on", quantize="int8", note=notes.append).stepper(3)
    assert isinstance(chosen, Int8CompiledStepper) and chosen.serves(3), notes
    eager = Int8Stepper(model)
    state = tuple(torch.randn_like(t) * 0.5 for t in model.init_state(3))
    ids = torch.randint(0, V, (3,))
    for _ in range(5):
        expected_logits, expected_state = eager.step(ids, state)
        logits, new_state = chosen.step(ids, state)
        # the same int8 multiplies; the arithmetic between them compiled: float rounding apart
        torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(new_state, expected_state, rtol=0, atol=1e-5)
        state, ids = expected_state, expected_logits.argmax(dim=-1)
    uniforms = torch.rand(3)
    temperatures = torch.tensor([0.7, 1.3, 0.7])  # one per row
    drawn, logits, _ = chosen.step_and_draw(ids, state, uniforms, temperatures)
    assert torch.equal(drawn, draw_with_uniforms(logits, uniforms, temperatures))


def test_an_int8_gru_runs_eagerly_and_says_so_when_compiling_was_asked():
    notes = []
    chosen = StepRuntime(make_model("gru"), compile="on", quantize="int8", note=notes.append).stepper(1)
    assert type(chosen) is Int8Stepper
    assert step_notes(notes) == ["int8 GRU steps run eagerly (only LSTM and RNN int8 steps are compiled)"]
