"""`charrnn explain` prints the shapes the real model really produces."""

import re

import pytest
import torch
from click.testing import CliRunner

from charrnn.cli import main
from charrnn.config import ModelConfig
from charrnn.data import StreamBatches, split_train_val
from charrnn.model import CharLSTM
from charrnn.vocab import Vocab


def printed_shapes(output: str) -> dict[str, tuple[int, ...]]:
    """stage name -> shape, from the report's table."""
    table = output.split("  stage ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    shapes = {}
    for line in table:
        match = re.match(r"^  (\S.*?)\s+\(([\d, ]*)\)\s{2,}", line)
        assert match, line
        shapes[match.group(1)] = tuple(int(n) for n in match.group(2).replace(" ", "").split(",") if n)
    return shapes


def real_shapes(text: str, hidden: int, layers: int, batch: int, seq: int) -> dict[str, tuple[int, ...]]:
    """The same stages measured here, independently of explain.py."""
    vocab = Vocab.from_text(text)
    model = CharLSTM(len(vocab), ModelConfig(hidden_size=hidden, num_layers=layers)).eval()
    ids = vocab.encode(text)
    train_ids, _ = split_train_val(ids, 0.1)
    batches = StreamBatches(train_ids, batch, seq, full_windows=True)
    x, y = batches.window(0)
    seen = {}
    model.lstm.register_forward_hook(lambda m, i, o: seen.update(one_hot=i[0], out=o[0], h=o[1][0], c=o[1][1]))
    model.head.register_forward_hook(lambda m, i, o: seen.update(head_in=i[0]))
    with torch.no_grad():
        logits, _ = model(x)
    return {
        "text": (len(text),), "ids": ids.shape, "train ids": train_ids.shape,
        "streams": tuple(batches.inputs.shape), "x": tuple(x.shape), "one-hot(x)": tuple(seen["one_hot"].shape),
        "initial h, c": tuple(seen["h"].shape), "LSTM output": tuple(seen["out"].shape),
        "final h": tuple(seen["h"].shape), "final c": tuple(seen["c"].shape),
        "reshape": tuple(seen["head_in"].shape), "logits": tuple(logits.shape), "y": tuple(y.shape),
        "y.reshape(-1)": tuple(y.reshape(-1).shape), "loss": (),
    }  # fmt: skip


@pytest.mark.parametrize("hidden, layers, batch, seq", [(16, 1, 3, 5), (24, 3, 2, 7)])
def test_printed_shapes_are_the_real_shapes(book_slice, hidden, layers, batch, seq):
    result = CliRunner().invoke(main, [
        "explain", str(book_slice), "--hidden-size", str(hidden), "--num-layers", str(layers),
        "--batch-size", str(batch), "--seq-len", str(seq),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = real_shapes(book_slice.read_text(), hidden, layers, batch, seq)
    assert printed_shapes(result.output) == expected
    assert f"LSTM layer {layers - 1}" in result.output and "Linear head" in result.output


def test_explain_a_checkpoint_with_gate_traces(book_slice, tmp_path):
    run = tmp_path / "run"
    trained = CliRunner().invoke(main, [
        "train", str(book_slice), "--out", str(run), "--max-steps", "2", "--hidden-size", "12",
        "--batch-size", "3", "--seq-len", "6", "--no-progress",
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(main, ["explain", str(book_slice), "--checkpoint", str(run / "best.pt"), "--trace-gates"])
    assert result.exit_code == 0, result.output
    shapes = printed_shapes(result.output)
    assert shapes["x"] == (3, 6) and shapes["LSTM output"] == (3, 6, 12)
    assert re.search(r"layer 1: input \+0\.\d+  forget \+0\.\d+  cell [+-]0\.\d+  output \+0\.\d+", result.output)
    error = float(re.search(r"max \|difference\| (\S+)", result.output).group(1))
    assert error < 1e-5


def test_explain_refuses_fresh_model_options_with_a_checkpoint(book_slice, tmp_path):
    fake = tmp_path / "x.pt"
    fake.write_bytes(b"")
    result = CliRunner().invoke(main, ["explain", str(book_slice), "--checkpoint", str(fake), "--hidden-size", "8"])
    assert result.exit_code == 2
