"""`charrnn explain` prints the shapes the real model really produces."""

import re

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.core.data import StreamBatches, split_train_val
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from tests.conftest import invoke


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
    model = CharRNN(len(vocab), ModelConfig(hidden_size=hidden, num_layers=layers)).eval()
    ids = vocab.encode(text)
    train_ids, _ = split_train_val(ids, 0.1)
    batches = StreamBatches(train_ids, batch, seq, full_windows=True)
    x, y = batches.window(0)
    seen = {}
    model.rnn.register_forward_hook(
        lambda m, i, o: seen.update(one_hot=i[0], h0=i[1][0], c0=i[1][1], out=o[0], h=o[1][0], c=o[1][1])
    )  # the initial state is the LSTM's input (i), the final state its output (o)
    model.head.register_forward_hook(lambda m, i, o: seen.update(head_in=i[0]))
    with torch.no_grad():
        logits, _ = model(x)
    assert seen["c0"].shape == seen["h0"].shape and not seen["h0"].any()  # zeros, as the report says
    return {
        "text": (len(text),),
        "ids": ids.shape,
        "train ids": train_ids.shape,
        "streams": tuple(batches.inputs.shape),
        "x": tuple(x.shape),
        "one-hot(x)": tuple(seen["one_hot"].shape),
        "initial h, c": tuple(seen["h0"].shape),
        "LSTM output": tuple(seen["out"].shape),
        "final h": tuple(seen["h"].shape),
        "final c": tuple(seen["c"].shape),
        "reshape": tuple(seen["head_in"].shape),
        "logits": tuple(logits.shape),
        "y": tuple(y.shape),
        "y.reshape(-1)": tuple(y.reshape(-1).shape),
        "loss": (),
    }


@pytest.mark.parametrize("hidden, layers, batch, seq", [(16, 1, 3, 5), (24, 3, 2, 7)])
def test_printed_shapes_are_the_real_shapes(book_slice, hidden, layers, batch, seq):
    result = invoke(
        "explain",
        str(book_slice),
        "--hidden-size",
        str(hidden),
        "--num-layers",
        str(layers),
        "--batch-size",
        str(batch),
        "--seq-len",
        str(seq),
    )
    assert result.exit_code == 0, result.output
    expected = real_shapes(book_slice.read_text(), hidden, layers, batch, seq)
    assert printed_shapes(result.output) == expected
    assert f"LSTM layer {layers - 1}" in result.output and "Linear head" in result.output


@pytest.mark.slow
def test_explain_a_checkpoint_with_gate_traces(book_slice, tmp_path):
    run = tmp_path / "run"
    trained = invoke(
        "train",
        str(book_slice),
        "--out",
        str(run),
        "--max-steps",
        "2",
        "--hidden-size",
        "12",
        "--batch-size",
        "3",
        "--seq-len",
        "6",
        "--no-progress",
    )
    assert trained.exit_code == 0, trained.output
    result = invoke("explain", str(book_slice), "--checkpoint", str(run / "best.pt"), "--trace-gates")
    assert result.exit_code == 0, result.output
    shapes = printed_shapes(result.output)
    assert shapes["x"] == (3, 6) and shapes["LSTM output"] == (3, 6, 12)
    assert re.search(r"layer 1: input \+0\.\d+  forget \+0\.\d+  cell [+-]0\.\d+  output \+0\.\d+", result.output)
    error = float(re.search(r"max \|difference\| (\S+)", result.output).group(1))
    assert error < 1e-5


def test_explain_refuses_fresh_model_options_with_a_checkpoint(book_slice, tmp_path):
    fake = tmp_path / "x.pt"
    fake.write_bytes(b"")
    result = invoke("explain", str(book_slice), "--checkpoint", str(fake), "--hidden-size", "8")
    assert result.exit_code == 2


def test_explain_a_checkpoint_whose_training_config_lacks_what_it_needs(book_slice, tmp_path):
    run = tmp_path / "run"
    trained = invoke(
        "train",
        str(book_slice),
        "--out",
        str(run),
        "--max-steps",
        "1",
        "--hidden-size",
        "8",
        "--batch-size",
        "3",
        "--seq-len",
        "6",
        "--no-progress",
    )
    assert trained.exit_code == 0, trained.output
    checkpoint = torch.load(run / "last.pt", weights_only=True)  # the file's own dict, to edit
    checkpoint["train_config"] = {**checkpoint["train_config"], "warmup_steps": 100}  # a newer charrnn's key
    odd = tmp_path / "odd.pt"
    torch.save(checkpoint, odd)
    result = invoke("explain", str(book_slice), "--checkpoint", str(odd))
    assert result.exit_code == 0, result.output  # unknown keys are ignored
    assert printed_shapes(result.output)["x"] == (3, 6)

    del checkpoint["train_config"]["seq_len"]
    torch.save(checkpoint, odd)
    result = invoke("explain", str(book_slice), "--checkpoint", str(odd))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().endswith("has no seq_len: give --batch-size and --seq-len")
    given = invoke("explain", str(book_slice), "--checkpoint", str(odd), "--seq-len", "5")
    assert given.exit_code == 0 and printed_shapes(given.output)["x"] == (3, 5)

    del checkpoint["train_config"]["val_frac"]
    torch.save(checkpoint, odd)
    result = invoke("explain", str(book_slice), "--checkpoint", str(odd), "--seq-len", "5")
    assert result.exit_code == 1 and "has no val_frac: explain a fresh model (no --checkpoint)" in result.output


def test_a_non_utf8_text_gets_advice_that_fits_explain(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 ".encode("latin-1") * 400)
    result = invoke("explain", str(latin1), "--hidden-size", "8")
    assert result.exit_code == 1
    assert result.output.strip().endswith("latin1.txt is not valid UTF-8 (byte offset 3): convert it to UTF-8")
    assert "--decode-errors" not in result.output


def test_explain_shows_the_one_hot_tensor_for_a_large_vocabulary_too(tmp_path):
    from charrnn.core.model import ONE_HOT_MAX_VOCAB

    vocab_size = ONE_HOT_MAX_VOCAB + 10  # trained through the row lookup, explained as one-hot
    book = tmp_path / "large.txt"
    book.write_text("".join(chr(0x4E00 + i % vocab_size) for i in range(4000)), encoding="utf-8")
    result = invoke("explain", str(book), "--hidden-size", "8", "--batch-size", "2", "--seq-len", "5")
    assert result.exit_code == 0, result.output
    assert printed_shapes(result.output)["one-hot(x)"] == (2, 5, vocab_size)
