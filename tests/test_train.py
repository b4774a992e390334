import dataclasses
import math
import random

import pytest
import torch

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.model import ONE_HOT_MAX_VOCAB
from charrnn.trainer import fit, resume_run, start_run
from conftest import quiet


def train(text_path, model_config, train_config, out_dir):
    """Train a new run to its end, quietly, on the CPU."""
    run = start_run(text_path, model_config, train_config, out_dir=out_dir, device="cpu", log=quiet)
    return fit(run, log=quiet, progress_bar=False)


def test_a_tiny_text_is_overfit_to_near_zero_loss(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat on the mat. " * 40)
    result = train(
        text,
        ModelConfig(hidden_size=48, num_layers=1, dropout=0.0),
        TrainConfig(batch_size=2, seq_len=24, lr=1e-2, max_steps=150, eval_every=50, save_every=150, val_frac=0.2),
        out_dir=tmp_path / "run",
    )
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["metrics"][-1]["train_loss"] < 0.05
    assert result.last_val_loss < 0.05
    assert checkpoint["metrics"][0]["val_loss"] > 10 * result.last_val_loss  # it did learn


def test_run_writes_last_and_best_and_counts_steps(book_slice, tmp_path, tiny_model, tiny_train):
    result = train(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run")
    assert result.step == 12
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert last["progress"]["step"] == 12
    assert [m["step"] for m in last["metrics"]] == [4, 8, 12]
    assert best["best_val_loss"] == min(m["val_loss"] for m in last["metrics"])
    assert best["progress"]["step"] == min(last["metrics"], key=lambda m: m["val_loss"])["step"]


def test_max_epochs_ends_the_run_after_whole_passes(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=None, max_epochs=2)
    run = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "run", device="cpu", log=quiet)
    windows = run.train_batches.num_windows
    result = fit(run, log=quiet, progress_bar=False)
    assert result.step == 2 * windows
    assert run.progress.epoch == 2 and run.progress.window == 0


def test_checkpoint_round_trip_gives_identical_logits(book_slice, tmp_path, tiny_model, tiny_train):
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    for _ in range(3):
        run.train_step()
    path = run.save("last.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    assert raw["progress"]["step"] == 3
    model, vocab = model_from_checkpoint(load_checkpoint(path))
    assert vocab == run.vocab
    ids = torch.randint(0, len(vocab), (2, 9))
    run.model.eval()
    model.eval()
    assert torch.equal(model(ids)[0], run.model(ids)[0])


def test_resume_continues_step_count_optimizer_and_position(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, dataclasses.replace(tiny_train, max_steps=6), out_dir=out)
    saved = load_checkpoint(out / "last.pt")
    run = resume_run(out / "last.pt", overrides={"max_steps": 10}, device="cpu", log=quiet)
    assert run.progress.step == 6 and run.progress.window == saved["progress"]["window"]
    assert torch.equal(run.state[0], saved["hidden_state"][0]) and run.state[0].abs().sum() > 0
    adam = run.optimizer.state_dict()["state"][0]
    assert adam["step"].item() == 6
    assert torch.equal(adam["exp_avg"], saved["optimizer_state"]["state"][0]["exp_avg"])
    result = fit(run, log=quiet, progress_bar=False)
    assert result.step == 10
    assert run.optimizer.state_dict()["state"][0]["step"].item() == 10


def test_stop_and_resume_gives_bit_identical_weights(book_slice, tmp_path, tiny_model, tiny_train):
    config = dataclasses.replace(tiny_train, max_steps=10, eval_every=3, save_every=3)
    straight = start_run(book_slice, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False)

    train(book_slice, tiny_model, dataclasses.replace(config, max_steps=4), out_dir=tmp_path / "b")
    torch.manual_seed(999)  # whatever happens in between must not matter
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 10}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)

    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert torch.equal(straight.state[0], resumed.state[0])


def test_resume_refuses_to_change_the_architecture_but_takes_a_new_lr(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, tiny_train, out_dir=out)
    with pytest.raises(CharRNNError, match="--hidden-size is 32 in this run and cannot change"):
        resume_run(out / "last.pt", overrides={"hidden_size": 64}, device="cpu", log=quiet)
    notes = []
    run = resume_run(out / "last.pt", overrides={"lr": 1e-4, "hidden_size": 32}, device="cpu", log=notes.append)
    assert run.optimizer.param_groups[0]["lr"] == 1e-4 and run.train_config.lr == 1e-4
    assert any("lr changes from 0.002 to 0.0001" in note for note in notes)


def test_a_new_run_never_overwrites_an_existing_one(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, tiny_train, out_dir=out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(CharRNNError, match="already holds a run"):
        start_run(book_slice, tiny_model, tiny_train, out_dir=out, device="cpu", log=quiet)
    assert (out / "last.pt").read_bytes() == before


def test_resume_on_a_text_with_new_characters_names_them(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    train(book_slice, tiny_model, tiny_train, out_dir=out)
    before = (out / "last.pt").read_bytes()
    other = tmp_path / "other.txt"
    other.write_text(book_slice.read_text() + "\u00e9\u00df")
    with pytest.raises(CharRNNError, match="2 character.* outside the model's .*'\u00df' '\u00e9'"):
        resume_run(out / "last.pt", text_path=other, device="cpu", log=quiet)
    assert (out / "last.pt").read_bytes() == before


def test_a_diverging_run_stops_without_writing_non_finite_weights(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=out, device="cpu", log=quiet)
    run.train_step()
    run.save("last.pt")
    before = (out / "last.pt").read_bytes()
    with torch.no_grad():
        run.model.head.bias.fill_(math.inf)
    with pytest.raises(CharRNNError, match="diverged at step 2.*last good weights.*lower --lr"):
        fit(run, log=quiet, progress_bar=False)
    assert (out / "last.pt").read_bytes() == before
    assert run.progress.step == 1


def test_exact_resume_holds_on_the_large_vocabulary_path(tmp_path, tiny_model, tiny_train):
    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(ONE_HOT_MAX_VOCAB + 88)]
    book = tmp_path / "large.txt"
    book.write_text("".join(chars) + "".join(rng.choice(chars) for _ in range(5000)), encoding="utf-8")
    config = dataclasses.replace(tiny_train, max_steps=6, eval_every=3, save_every=3)
    straight = start_run(book, tiny_model, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    assert straight.model.input_mode == "lookup"
    fit(straight, log=quiet, progress_bar=False)
    train(book, tiny_model, dataclasses.replace(config, max_steps=3), out_dir=tmp_path / "b")
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 6}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_resume_reads_the_older_single_tensor_rng_format_and_refuses_a_malformed_one(
    book_slice, tmp_path, tiny_model, tiny_train
):
    out = tmp_path / "run"
    train(book_slice, tiny_model, dataclasses.replace(tiny_train, max_steps=4), out_dir=out)
    checkpoint = load_checkpoint(out / "last.pt")
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    checkpoint["rng"]["torch"] = checkpoint["rng"]["torch"][0]  # as written before one state per process
    torch.save(checkpoint, old)
    run = resume_run(old, overrides={"max_steps": 5}, device="cpu", log=quiet)
    assert torch.equal(torch.get_rng_state(), checkpoint["rng"]["torch"])
    assert fit(run, log=quiet, progress_bar=False).step == 5

    checkpoint["rng"]["torch"] = "not a state"
    torch.save(checkpoint, old)
    with pytest.raises(CharRNNError, match="random-number state is malformed"):
        resume_run(old, overrides={"max_steps": 6}, device="cpu", log=quiet)
