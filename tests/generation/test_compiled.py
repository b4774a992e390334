"""The compiled generation step and the runtime that chooses it (charrnn/generation/compiled.py, runtime.py).

Building a compiled step takes seconds, so one tiny LSTM shape is built once per session (into
the session's cache, conftest.compile_cache) and shared; the CLI test reuses the same shape.
"""

import pytest
import torch

import charrnn
from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation import compiled, runtime
from charrnn.generation.compiled import SPLIT, WIDE, CompiledStepper, StreamRange
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.sample import collect, stream_samples
from charrnn.generation.stepper import WIDE_BATCH, Stepper
from charrnn.sampling import Sampling
from tests.conftest import run_cli, step_notes

VOCAB = Vocab.from_text("abcdefghijklmnopqrstuvwxyz ,.\n")


def make_model(seed: int = 3, hidden: int = 24) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(len(VOCAB), ModelConfig(hidden_size=hidden, num_layers=2, dropout=0.0)).eval()


@pytest.fixture(scope="session")
def built(compile_cache) -> CompiledStepper:
    """A compiled step for a tiny LSTM, below WIDE_BATCH streams."""
    notes = []
    stepper = StepRuntime(make_model(), compile="on", note=notes.append).stepper(1)
    assert isinstance(stepper, CompiledStepper) and stepper.serves(1), notes
    assert any("compiling the float32 generation step" in note for note in notes)
    return stepper


def texts(model, runtime=None, sampling=Sampling(), stop=(), num_samples=1, length=300, seed=5):
    pieces = stream_samples(
        model, VOCAB, "the ", length, sampling, seed=seed, num_samples=num_samples, stop=stop, runtime=runtime
    )
    return collect(pieces, num_samples)


@pytest.mark.slow
def test_the_compiled_step_computes_what_the_eager_step_does(built):
    eager = Stepper(make_model())
    for streams in (1, 3, WIDE_BATCH - 1):  # one build serves every count in its range
        state = tuple(torch.randn_like(t) for t in eager.init_state(streams))
        ids = torch.randint(0, len(VOCAB), (streams,))
        expected_logits, expected_state = eager.step(ids, state)
        logits, new_state = built.step(ids, state)
        torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(new_state, expected_state, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampling, stop",
    [
        (Sampling(temperature=0.8), ()),  # the draw runs inside the compiled step
        (Sampling(temperature=1.3), ("e ",)),
        (Sampling(top_k=5), ()),  # compiled step, eager draw
        (Sampling(top_p=0.9, temperature=0.7), ()),
        (Sampling(greedy=True), ()),
    ],
)
def test_a_seed_gives_the_same_text_compiled_and_eager(built, sampling, stop):
    model = make_model()
    compiled_runtime = StepRuntime(model, compile="on")  # loads the session's build
    assert texts(model, compiled_runtime, sampling, stop, num_samples=3) == texts(model, None, sampling, stop, 3)
    assert compiled_runtime.kind == "compiled float32"


@pytest.mark.slow
def test_an_adaptive_head_compiles_and_computes_what_the_eager_step_does(compile_cache):
    torch.manual_seed(4)
    model = CharRNN(len(VOCAB), ModelConfig(hidden_size=24, num_layers=2, dropout=0.0, head="adaptive")).eval()
    model.head.sort_by(torch.rand(len(VOCAB)))
    stepper = StepRuntime(model, compile="on", note=lambda note: None).stepper(1)
    assert isinstance(stepper, CompiledStepper) and stepper.serves(1)
    eager = Stepper(model)
    state = tuple(torch.randn_like(t) for t in eager.init_state(3))
    ids = torch.randint(0, len(VOCAB), (3,))
    expected_logits, expected_state = eager.step(ids, state)
    logits, new_state = stepper.step(ids, state)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(new_state, expected_state, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_more_streams_than_a_compiled_step_takes_run_eagerly(built, monkeypatch):
    monkeypatch.setattr(compiled, "MAX_STREAMS", 2)  # the real bound, 4096, lies past a range not built here
    eager = Stepper(make_model())
    state, ids = eager.init_state(3), torch.tensor([1, 2, 3])
    assert built.serves(2) and not built.serves(3)
    torch.testing.assert_close(built.step(ids, state), eager.step(ids, state), rtol=0, atol=0)  # eager, exactly


@pytest.mark.slow
def test_a_second_runtime_loads_the_cached_build_instead_of_building(built, monkeypatch):
    def no_build(*args):
        raise AssertionError("built again")

    monkeypatch.setattr(CompiledStepper, "build", no_build)
    notes = []
    stepper = StepRuntime(make_model(seed=9), compile="auto", note=notes.append).stepper(2, work=10)
    assert stepper.serves(2) and step_notes(notes) == []  # other weights, same shape: the same build, silently


@pytest.mark.slow
def test_a_different_shape_has_a_different_cache_file(built):
    same_shape, wider = Stepper(make_model(seed=4)), Stepper(make_model(hidden=32))
    assert compiled.package_path(same_shape, SPLIT) == compiled.package_path(built.eager, SPLIT)
    assert compiled.package_path(wider, SPLIT) != compiled.package_path(built.eager, SPLIT)
    assert compiled.package_path(same_shape, WIDE) != compiled.package_path(same_shape, SPLIT)
    assert StreamRange.of(WIDE_BATCH - 1) is SPLIT and StreamRange.of(WIDE_BATCH) is WIDE


def test_auto_builds_only_when_the_job_is_long_enough(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))  # nothing cached
    built_for = []
    monkeypatch.setattr(CompiledStepper, "build", lambda self, streams: built_for.append(streams) or 1 / 0)
    notes = []
    auto = StepRuntime(make_model(), compile="auto", note=notes.append)
    assert not auto.stepper(1, work=500).serves(1)
    assert built_for == [] and step_notes(notes) == []  # a short sample is not told about compiling
    assert not auto.stepper(1, work=runtime.BREAK_EVEN_CHARS - 1).serves(1)
    assert built_for == [] and "pays from" in step_notes(notes)[0]  # a long one is, once
    auto.stepper(1, work=runtime.BREAK_EVEN_CHARS)
    assert built_for == [SPLIT]


def test_a_failed_build_says_why_once_and_generates_eagerly(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))

    def broken(*args):
        raise RuntimeError("no working C++ compiler\ndetails...")

    monkeypatch.setattr(CompiledStepper, "build", broken)
    notes = []
    model = make_model()
    failing = StepRuntime(model, compile="on", note=notes.append)
    assert texts(model, failing) == texts(model) and texts(model, failing, seed=6) == texts(model, seed=6)
    notes = step_notes(notes)
    assert len(notes) == 2 and notes[0].startswith("compiling the float32 generation step for 1-15 streams")
    assert notes[1] == "could not compile the generation step (no working C++ compiler): generating with the eager step"


def test_a_damaged_cache_file_is_removed_and_generation_goes_on(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    path = compiled.package_path(Stepper(make_model()), SPLIT, "step")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a package")
    notes = []
    model = make_model()
    assert texts(model, StepRuntime(model, note=notes.append)) == texts(model)
    assert not path.exists() and "could not load the compiled step" in step_notes(notes)[0]


def test_compile_off_and_non_float32_models_run_the_eager_step():
    notes = []
    assert type(StepRuntime(make_model(), compile="off").stepper(1)) is Stepper
    double = StepRuntime(make_model().double(), compile="on", note=notes.append).stepper(1)
    assert type(double) is Stepper and "float32 models on the CPU" in step_notes(notes)[0]


@pytest.mark.slow
def test_generate_compile_on_in_a_process_prints_the_same_text_as_compile_off(tiny_run):
    common = ["generate", tiny_run.best, "--prime", "ROMEO:", "--length", 200, "--seed", 3, "--device", "cpu"]
    eager = run_cli(*common, "--compile", "off")
    fast = run_cli(*common, "--compile", "on", timeout=600)
    assert eager.returncode == fast.returncode == 0, fast.stderr
    assert fast.stdout == eager.stdout and len(eager.stdout) > 200
    again = run_cli(*common, "--compile", "auto")  # cached now: used without a word
    assert again.stdout == eager.stdout and "eager step" not in again.stderr


def test_the_api_takes_compile_and_refuses_unknown_modes(tiny_run):
    model = charrnn.load(tiny_run.best, device="cpu", compile="off")
    model.generate("the", 20, seed=1)
    assert model.runtime.kind == "float32"
    with pytest.raises(CharRNNError, match="compile must be auto, on or off"):
        charrnn.load(tiny_run.best, device="cpu", compile="fast")
