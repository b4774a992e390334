"""`charrnn export` (charrnn/formats/export.py): files other programs load, checked with their own readers."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import charrnn
from tests.conftest import invoke, run_cli


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    result = invoke("export", tiny_run.best, out)
    assert result.exit_code == 0, result.output
    return out


def charrnn_logits(checkpoint, ids: np.ndarray, streams: int = 1) -> np.ndarray:
    """charrnn's own next-character logits after each id, (T, S, V), the same ids in every stream."""
    model = charrnn.load(checkpoint, device="cpu").model
    with torch.inference_mode():
        batch = torch.from_numpy(ids).repeat(streams, 1)  # (S, T)
        logits, _ = model(batch)  # (S·T, V)
    return logits.view(streams, len(ids), -1).transpose(0, 1).numpy()


@pytest.mark.slow
def test_export_writes_the_four_files_and_says_so(exported, tiny_run):
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json",
        "model.onnx",
        "model.safetensors",
        "vocab.json",
    ]
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    vocab = json.loads((exported / "vocab.json").read_text(encoding="utf-8"))
    model = charrnn.load(tiny_run.best, device="cpu")
    assert vocab == list(model.vocab.chars)
    assert (config["cell"], config["num_layers"], config["hidden_size"], config["vocab_size"]) == (
        "lstm",
        2,
        32,
        len(vocab),
    )
    assert config["gates"] == ["input", "forget", "cell", "output"] and config["state"] == ["h", "c"]


@pytest.mark.slow
def test_the_safetensors_file_alone_reproduces_charrnns_logits(exported, tiny_run):
    from safetensors.numpy import load_file

    weights = load_file(str(exported / "model.safetensors"))  # the documented names, read without charrnn
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    layers, hidden = config["num_layers"], config["hidden_size"]
    ids = np.array(charrnn.load(tiny_run.best).vocab.encode("ROMEO: what say you?"), dtype=np.int64)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    h, c = np.zeros((layers, hidden), np.float32), np.zeros((layers, hidden), np.float32)
    computed = []
    for i in ids:  # an LSTM in numpy, from the tensor names in charrnn/formats/export.py
        x = np.eye(config["vocab_size"], dtype=np.float32)[i]
        for k in range(layers):
            gates = (
                weights[f"rnn.weight_ih_l{k}"] @ x
                + weights[f"rnn.bias_ih_l{k}"]
                + weights[f"rnn.weight_hh_l{k}"] @ h[k]
                + weights[f"rnn.bias_hh_l{k}"]
            )
            gi, gf, gg, go = np.split(gates, 4)
            c[k] = sigmoid(gf) * c[k] + sigmoid(gi) * np.tanh(gg)
            h[k] = sigmoid(go) * np.tanh(c[k])
            x = h[k]
        computed.append(weights["head.weight"] @ x + weights["head.bias"])
    np.testing.assert_allclose(np.stack(computed), charrnn_logits(tiny_run.best, ids)[:, 0], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("streams", [1, 5])
def test_onnxruntime_reproduces_charrnns_logits_over_200_steps(exported, tiny_run, streams):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["ids", "h", "c"]
    assert [o.name for o in session.get_outputs()] == ["logits", "h_out", "c_out"]
    text = tiny_run.text.read_text(encoding="utf-8")[:200]
    ids = np.array(charrnn.load(tiny_run.best).vocab.encode(text), dtype=np.int64)
    expected = charrnn_logits(tiny_run.best, ids, streams)  # (200, S, V)
    h = c = np.zeros((2, streams, 32), np.float32)
    for t, i in enumerate(ids):
        logits, h, c = session.run(None, {"ids": np.full(streams, i, np.int64), "h": h, "c": c})
        np.testing.assert_allclose(logits, expected[t], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_generate_reads_an_export_back(exported, tiny_run):
    from_export = run_cli("generate", exported, "--length", 120, "--seed", 4, "--prime", "TH", "--device", "cpu")
    from_checkpoint = run_cli(
        "generate", tiny_run.best, "--length", 120, "--seed", 4, "--prime", "TH", "--device", "cpu"
    )
    assert from_export.returncode == 0, from_export.stderr
    assert from_export.stdout == from_checkpoint.stdout and len(from_export.stdout) > 120


@pytest.mark.slow
def test_an_existing_outdir_is_refused_and_left_alone(exported, tiny_run):
    before = {p.name: p.read_bytes() for p in exported.iterdir()}
    result = invoke("export", tiny_run.best, exported)
    assert result.exit_code == 1 and "already exists" in result.output and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in exported.iterdir()} == before


def test_no_onnx_writes_the_rest(tiny_run, tmp_path):
    result = invoke("export", tiny_run.best, tmp_path / "out", "--no-onnx")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    assert charrnn.load(tmp_path / "out").generate("T", 30, seed=1) == charrnn.load(tiny_run.best).generate(
        "T", 30, seed=1
    )


def test_without_the_export_extra_it_says_which_pip_install_fixes_it(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if not installed
    result = invoke("export", tiny_run.best, tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: charrnn export needs the export extra: pip install 'charrnn[export]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_directory_that_is_not_an_export_is_one_clear_line(tmp_path):
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    result = run_cli("generate", tmp_path, "--length", 5)
    assert result.returncode == 1 and "is not a readable charrnn export" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_numpy_and_onnxruntime_sampler_in_the_docs_runs_on_an_export(exported, tmp_path):
    import subprocess

    page = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text(encoding="utf-8")
    code = page.split("<!-- sampler -->\n```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) < 30  # as the issue asks: a whole sampler in under 30 lines
    script = tmp_path / "sample.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run([sys.executable, script, exported], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) > 300


@pytest.mark.slow
def test_an_adaptive_head_exports_and_onnxruntime_reproduces_its_log_probabilities(matrix_runs, tmp_path):
    import onnxruntime

    run = matrix_runs["lstm", "lookup", "adaptive"]  # 600 characters: three clusters
    out = tmp_path / "adaptive"
    result = invoke("export", run.checkpoint, out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["head"] == "adaptive"
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array(charrnn.load(run.checkpoint).vocab.encode(run.text.read_text(encoding="utf-8")[:50]), np.int64)
    expected = charrnn_logits(run.checkpoint, ids, streams=2)  # (50, 2, V)
    h = c = np.zeros((2, 2, 8), np.float32)
    for t, i in enumerate(ids):
        logits, h, c = session.run(None, {"ids": np.full(2, i, np.int64), "h": h, "c": c})
        np.testing.assert_allclose(logits, expected[t], rtol=0, atol=1e-4)
    prime = run.prime
    assert charrnn.load(out).generate(prime, 40, seed=2) == charrnn.load(run.checkpoint).generate(prime, 40, seed=2)
