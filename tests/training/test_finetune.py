"""Fine-tuning (charrnn/training/finetune.py, policy.finetune_run): weights carried over, the vocabulary grown."""

import dataclasses

import pytest
import torch

from charrnn.config import FINETUNE_DEFAULTS, TrainConfig
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.finetune import grow_vocabulary
from charrnn.training.loop import fit
from charrnn.training.policy import finetune_run, resume_run
from tests.conftest import PINNED_THREADS, quiet

SETTINGS = TrainConfig(batch_size=4, seq_len=16, max_steps=4, eval_every=2, save_every=2, sample_every=0)
TUNING = dataclasses.replace(SETTINGS, **FINETUNE_DEFAULTS)


def test_growing_the_vocabulary_keeps_every_known_row_and_column_exactly(tiny_model):
    old, new = Vocab("abcd"), Vocab("Zabcd\u00e9")
    model = CharRNN(len(old), tiny_model)
    grown = grow_vocabulary(model, old, new)
    kept = [new.chars.index(c) for c in old.chars]
    assert torch.equal(grown.rnn.weight_ih_l0[:, kept], model.rnn.weight_ih_l0)
    assert torch.equal(grown.head.weight[kept], model.head.weight) and torch.equal(
        grown.head.bias[kept], model.head.bias
    )
    assert torch.equal(grown.rnn.weight_hh_l1, model.rnn.weight_hh_l1)
    added = [new.chars.index(c) for c in "Z\u00e9"]
    mean_column = model.rnn.weight_ih_l0.mean(dim=1)
    for i in added:
        assert torch.allclose(grown.rnn.weight_ih_l0[:, i], mean_column)
        assert not grown.head.weight[i].any()
    # the same text, in the old ids and the new: the same logits for the known characters
    ids_old = torch.tensor([[0, 1, 2, 3, 2, 1]])
    ids_new = torch.tensor([[kept[i] for i in ids_old[0].tolist()]])
    model.eval(), grown.eval()
    torch.testing.assert_close(grown(ids_new)[0][:, kept], model(ids_old)[0])


def test_finetuning_starts_from_the_base_weights_and_records_the_base(tiny_run, book_slice, tmp_path):
    run = finetune_run(tiny_run.last, book_slice, TUNING, out_dir=tmp_path / "ft", device="cpu", log=quiet)
    base = Checkpoint.load(tiny_run.last)
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, base.model_state[name]), name
    assert run.progress.step == 0 and not run.optimizer.state  # a fresh optimizer and schedule
    assert run.train_config.warmup_steps == FINETUNE_DEFAULTS["warmup_steps"] < TrainConfig.warmup_steps
    fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    saved = Checkpoint.load(tmp_path / "ft" / "last.pt")
    assert saved.base["path"] == str(tiny_run.last.resolve()) and len(saved.base["sha256"]) == 64
    assert saved.progress.step == 4


def test_new_characters_are_refused_by_name_unless_the_vocabulary_may_grow(tiny_run, book_slice, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(book_slice.read_text() + "\u00e9\u00e8 Zo\u00eb", encoding="utf-8")
    refusal = (
        r"4 characters \('Z' '\u00e8' '\u00e9' '\u00eb'\) of the text are not in the vocabulary of .*--extend-vocab"
    )
    with pytest.raises(CharRNNError, match=refusal):
        finetune_run(tiny_run.last, other, TUNING, out_dir=tmp_path / "ft", device="cpu", log=quiet)
    assert not (tmp_path / "ft").exists()
    messages = []
    run = finetune_run(
        tiny_run.last, other, TUNING, extend_vocab=True, out_dir=tmp_path / "ft", device="cpu", log=messages.append
    )
    base = Checkpoint.load(tiny_run.last)
    assert set(run.vocab.chars) - set(base.vocab.chars) >= {"\u00e9", "\u00e8"}
    assert any(m.startswith(f"vocabulary grown from {len(base.vocab)} to {len(run.vocab)}") for m in messages)
    # A new character starts near its frequency in the new text: neither certain nor impossible.
    probabilities = torch.softmax(run.model(run.train_batches.window(0)[0])[0], dim=1)  # (B·T, V)
    acute = probabilities[:, run.vocab.chars.index("\u00e9")].mean().item()
    assert 1e-5 < acute < 0.01


def test_a_finetuning_run_resumes_exactly_like_any_run(tiny_run, book_slice, tmp_path):
    config = dataclasses.replace(TUNING, max_steps=6, lr_schedule="constant", warmup_steps=0)  # steps 1-3 alike
    straight = finetune_run(tiny_run.last, book_slice, config, out_dir=tmp_path / "a", device="cpu", log=quiet)
    fit(straight, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    first = finetune_run(
        tiny_run.last,
        book_slice,
        dataclasses.replace(config, max_steps=3),
        out_dir=tmp_path / "b",
        device="cpu",
        log=quiet,
    )
    fit(first, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    resumed = resume_run(tmp_path / "b" / "last.pt", overrides={"max_steps": 6}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert Checkpoint.load(tmp_path / "b" / "last.pt").base == Checkpoint.load(tmp_path / "a" / "last.pt").base


def test_finetune_refuses_a_file_that_is_not_a_charrnn_model(book_slice, tmp_path):
    with pytest.raises(CharRNNError, match="slice.txt is not a charrnn checkpoint"):
        finetune_run(book_slice, book_slice, TUNING, out_dir=tmp_path / "ft", device="cpu", log=quiet)


def test_an_adaptive_model_fine_tunes_on_its_own_characters_and_refuses_new_ones(matrix_runs, tmp_path):
    run = matrix_runs["lstm", "one-hot", "adaptive"]
    same = finetune_run(run.last, run.text, TUNING, out_dir=tmp_path / "same", device="cpu", log=quiet)
    base = Checkpoint.load(run.last)
    assert torch.equal(same.model.head.rank, base.model().head.rank)  # the clusters the base was trained with
    assert fit(same, log=quiet, progress_bar=False, threads=PINNED_THREADS).step == SETTINGS.max_steps
    other = tmp_path / "other.txt"
    other.write_text(run.text.read_text(encoding="utf-8") + "\u00e9", encoding="utf-8")
    with pytest.raises(CharRNNError, match="adaptive head.*cannot take new characters"):
        finetune_run(run.last, other, TUNING, extend_vocab=True, out_dir=tmp_path / "new", device="cpu", log=quiet)
    assert not (tmp_path / "new" / "last.pt").exists()
