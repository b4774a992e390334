"""Property-based tests (Hypothesis) over every numeric input a person can give: each extreme value
is either refused cleanly (exit 2 with one line, a one-line chat error, a 4xx JSON error, a
ValueError naming the setting) or gives valid text of the promised length. Fixed budgets keep them
in the fast tier; the examples include the values that broke before (issue 34)."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn
from charrnn.commands.chat import Chat
from charrnn.config import ModelConfig, TrainConfig
from charrnn.options import declared
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS
from charrnn.sampling import Sampling
from tests.conftest import invoke

BUDGET = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
EXTREME_FLOATS = [0.0, -0.0, 5e-324, 2.2e-308, 1e-300, 1e-50, 1e-38, 1e300, 1.7e308, -1.0, -1e300]
SPECIAL_FLOATS = [math.inf, -math.inf, math.nan]
EXTREME_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63)]
floats = st.one_of(st.sampled_from(EXTREME_FLOATS + SPECIAL_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
ints = st.one_of(st.sampled_from(EXTREME_INTS), st.integers(min_value=-(2**70), max_value=2**70))
LENGTH = 12


@pytest.fixture(scope="module")
def model(tiny_run):
    return charrnn.load(tiny_run.best, "cpu", compile="off")


def extreme(opt) -> st.SearchStrategy:
    return st.booleans() if opt.type is bool else ints if opt.type is int else floats


def sampling_values() -> st.SearchStrategy[dict]:
    """A few sampling settings at once, each an extreme value of its type."""
    return st.fixed_dictionaries({}, optional={opt.name: extreme(opt) for opt in SAMPLING_OPTIONS})


def is_valid(settings_: dict) -> bool:
    try:
        Sampling(**settings_).check()
    except ValueError:
        return False
    return True


@BUDGET
@given(values=sampling_values())
def test_api_any_sampling_values_are_refused_by_name_or_draw_text_of_the_length(model, values):
    if not is_valid(values):
        with pytest.raises(charrnn.CharRNNError) as refused:
            model.generate("RO", LENGTH, seed=1, **values)
        assert any(name in str(refused.value) for name in values)
        return
    text = model.generate("RO", LENGTH, seed=1, **values)
    assert len(text) == LENGTH and set(text) <= set(model.vocab.chars)


GENERATE_NUMBERS = [opt for opt in SAMPLING_OPTIONS if opt.type is not bool] + [
    opt for opt in declared(charrnn.SampleConfig) if opt.type in (int, float) and opt.name != "length"
]


@BUDGET
@given(data=st.data())
def test_cli_generate_any_number_for_any_option_is_exit_2_or_text(model, tiny_run, data):
    opt = data.draw(st.sampled_from(GENERATE_NUMBERS))
    value = data.draw(extreme(opt))
    if opt.name in ("num_samples", "beam") and isinstance(value, int) and value > 0:
        value = min(value, 10_001 if opt.name == "num_samples" else 65)  # the caps' edges, not a long job
    result = invoke("generate", tiny_run.best, "--prime", "RO", "--length", LENGTH, "--seed", 1, opt.flag, value)
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    if result.exit_code == 2:
        assert opt.flag in result.output and result.output.count("Error") == 1
        return
    if opt.name == "items":  # a valid count, on a model that has no items
        assert result.exit_code == 1 and "was not trained with --line-items" in result.output
        return
    assert result.exit_code == 0, result.output
    if opt.name == "logprobs":
        assert len(result.stdout.splitlines()) == LENGTH
    elif opt.name not in ("num_samples", "items"):
        assert len(result.stdout) == len("RO") + LENGTH + 1


EVALUATE_NUMBERS = ["--batch-size", "--seq-len", "--dynamic-lr", "--dynamic-decay", "--dynamic-seq-len"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(flag=st.sampled_from(EVALUATE_NUMBERS), value=st.one_of(floats, ints))
def test_cli_evaluate_any_number_is_a_clean_refusal_or_a_finite_score(tiny_run, tmp_path_factory, flag, value):
    text = tmp_path_factory.getbasetemp() / "evaluate.txt"
    if not text.exists():
        text.write_text(tiny_run.text.read_text(encoding="utf-8")[:400], encoding="utf-8")
    if flag in ("--batch-size", "--seq-len", "--dynamic-seq-len") and isinstance(value, int) and value > 0:
        value = min(value, 500)  # larger ones are valid but only slower
    result = invoke("evaluate", tiny_run.best, text, "--dynamic", flag, value, "--json")
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code:
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    else:
        assert "nats_per_char" in result.stdout and "NaN" not in result.stdout


@BUDGET
@given(data=st.data())
def test_chat_commands_any_value_is_one_error_line_or_a_new_setting(model, data, capsys):
    job = [o for o in declared(charrnn.SampleConfig) if o.name in ("length", "seed")]
    opt = data.draw(st.sampled_from(SAMPLING_OPTIONS + job))
    value = data.draw(st.one_of(extreme(opt), st.sampled_from(["off", "on", "", "1e-50", "9" * 30])))
    chat = Chat(model.session(seed=1), 5)
    before = chat.show()
    chat.command(f"/{opt.name.replace('_', '-')} {value}")
    out, err = capsys.readouterr()
    if err:
        assert err.count("\n") == 1 and err.startswith("error: /") and chat.show() == before
    pieces = list(chat.session.generate(5))
    assert len("".join(pieces)) == 5


@BUDGET
@given(values=sampling_values(), max_tokens=st.one_of(ints, st.integers(0, 30)))
def test_http_any_values_are_a_4xx_json_error_or_text_of_the_length(served, values, max_tokens):
    body = {"prompt": "RO", "max_tokens": max_tokens, "seed": 1, **values}
    # json.dumps writes NaN and Infinity, as a careless client would (httpx's json= refuses them)
    content = json.dumps(body).encode()
    answer = served.post("/v1/completions", content=content, headers={"Content-Type": "application/json"})
    if answer.status_code != 200:
        assert 400 <= answer.status_code < 500 and answer.json()["error"]["message"]
        return
    choice = answer.json()["choices"][0]
    assert is_valid(values) and 0 <= max_tokens <= 500 and len(choice["text"]) == max_tokens


@pytest.fixture(scope="module")
def served(tiny_run):
    """The HTTP app in-process, with its engine on a thread: the same app `charrnn serve` runs."""
    import threading

    from starlette.testclient import TestClient

    from charrnn.commands.serving.app import create_app
    from charrnn.commands.serving.requests import Limits
    from charrnn.commands.serving.state import Deployment, Server

    server = Server("tiny", Deployment(limits=Limits(max_tokens=500), max_streams=8))
    app = create_app(server)
    server.ready(charrnn.load(tiny_run.best, "cpu", compile="off"))
    runner = threading.Thread(target=server.engine.run, daemon=True)
    runner.start()
    with TestClient(app) as client:
        yield client
    server.engine.close()
    runner.join(10)


TRAIN_OPTIONS = [opt for cls in (ModelConfig, TrainConfig) for opt in declared(cls) if "train" in opt.spec.commands]
WRONG_TYPES = {
    int: st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    float: st.one_of(st.booleans(), st.text(max_size=5), st.lists(st.floats(allow_nan=False), max_size=2)),
    str: st.one_of(st.booleans(), st.integers(), st.lists(st.text(max_size=3), max_size=2)),
    bool: st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=False)),
}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        # a TOML basic string is a JSON string, except that TOML wants DEL escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(value)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_config_of_any_wrong_type_is_refused_in_one_line_before_anything_is_written(tiny_run, tmp_path_factory, data):
    opt = data.draw(st.sampled_from(TRAIN_OPTIONS))
    value = data.draw(WRONG_TYPES[opt.type])
    root = tmp_path_factory.mktemp("config")
    config = root / "config.toml"
    config.write_text(f"{opt.name} = {toml_value(value)}\n", encoding="utf-8")
    result = invoke("train", tiny_run.text, "--config", config, "--out", root / "run", "--no-progress")
    assert result.exit_code == 2, (opt.name, value, result.output)
    assert "Traceback" not in result.output and opt.name in result.output
    assert not (root / "run").exists()
