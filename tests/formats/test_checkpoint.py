"""The checkpoint format (charrnn/formats/checkpoint.py): contents, atomic saves, safe loading, migration."""

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import FORMAT_VERSION, Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import PINNED_THREADS, invoke, quiet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def assert_plain(value, where="checkpoint"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where} has key {key!r}"
            assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            assert_plain(item, f"{where}[{index}]")
    else:
        assert type(value) in PLAIN, f"{where} is a {type(value).__name__}"


@pytest.fixture
def saved_run(book_slice, tmp_path, tiny_model, tiny_train):
    run = start_run(book_slice, tiny_model, tiny_train, out_dir=tmp_path / "run", device="cpu", log=quiet)
    run.train_step(tiny_train.lr)
    return run, run.save("last.pt")


def test_checkpoint_holds_only_plain_types_and_everything_to_resume(saved_run):
    run, path = saved_run
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert_plain(raw)
    assert raw["format"] == "charrnn-checkpoint" and raw["format_version"] == FORMAT_VERSION
    checkpoint = Checkpoint.load(path)
    assert checkpoint.vocab == run.vocab and checkpoint.model_config == run.model_config
    assert checkpoint.corpus == run.corpus and checkpoint.corpus.path == str(run.corpus.path)
    assert len(checkpoint.rng.torch) == 1 and checkpoint.rng.torch[0].dtype == torch.uint8
    assert checkpoint.progress.step == 1 and checkpoint.processes == 1
    assert [t.shape for t in checkpoint.hidden_state] == [(2, 4, 32), (2, 4, 32)]
    assert checkpoint.optimizer_state["state"][0]["step"].item() == 1


def test_save_is_atomic_and_leaves_no_temporary_files(saved_run):
    run, path = saved_run
    run.train_step(run.train_config.lr)
    run.save("last.pt")
    assert sorted(os.listdir(path.parent)) == ["config.toml", "last.pt"]
    assert Checkpoint.load(path).progress.step == 2


def _disk_full(payload, file, **kwargs):
    """torch.save on a full disk: half a checkpoint is written, then the write fails."""
    file.write(b"x" * 1000)
    raise OSError(28, "No space left on device")


def _read_only(source, target):
    """os.replace in a directory we may not write to."""
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "module, name, fault, reason",
    [(torch, "save", _disk_full, "No space left on device"), (os, "replace", _read_only, "Permission denied")],
    ids=["disk-full", "read-only"],
)
def test_a_failed_save_keeps_the_previous_checkpoint(saved_run, monkeypatch, module, name, fault, reason):
    run, path = saved_run
    before = path.read_bytes()
    monkeypatch.setattr(module, name, fault)
    run.train_step(run.train_config.lr)
    with pytest.raises(CharRNNError, match=f"could not write checkpoint .*{reason}.*untouched"):
        run.save("last.pt")
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["config.toml", "last.pt"]  # no temporary file left behind


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n", os.urandom(4096), "truncate"],
    ids=["empty", "text", "random", "truncated"],
)
def test_broken_files_are_refused_with_a_clear_message(saved_run, tmp_path, content):
    _, path = saved_run
    if content == "truncate":
        content = path.read_bytes()[: path.stat().st_size // 2]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(content)
    with pytest.raises(CharRNNError, match="is not a charrnn checkpoint or is corrupted"):
        Checkpoint.load(broken)


def test_a_zip_archive_with_a_garbled_pickle_is_refused(saved_run, tmp_path):
    _, path = saved_run
    garbled = tmp_path / "garbled.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(garbled, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("data.pkl"):
                data = data[:10] + bytes(range(200, 256)) + data[66:]
            target.writestr(item, data)
    with pytest.raises(CharRNNError, match="is not a charrnn checkpoint or is corrupted"):
        Checkpoint.load(garbled)


class _WritesAMarker:
    """Unpickling this would call os.system: a hostile checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "charrnn-checkpoint", "payload": _WritesAMarker(marker)}, hostile, pickle_protocol=2)
    with pytest.raises(CharRNNError, match="refuses to load"):
        Checkpoint.load(hostile)
    assert not marker.exists()


def test_foreign_and_future_files_are_named_as_such(saved_run, tmp_path):
    _, path = saved_run
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CharRNNError, match="no charrnn format marker"):
        Checkpoint.load(foreign)
    checkpoint = torch.load(path, weights_only=True)
    future = tmp_path / "future.pt"
    torch.save({**checkpoint, "format_version": FORMAT_VERSION + 1}, future)
    with pytest.raises(CharRNNError, match="upgrade charrnn"):
        Checkpoint.load(future)
    incomplete = tmp_path / "incomplete.pt"
    del checkpoint["optimizer_state"]
    torch.save(checkpoint, incomplete)
    with pytest.raises(CharRNNError, match="missing optimizer_state"):
        Checkpoint.load(incomplete)


def test_weights_that_do_not_fit_the_config_are_reported(saved_run):
    _, path = saved_run
    checkpoint = Checkpoint.load(path)
    checkpoint.model_config = dataclasses.replace(checkpoint.model_config, hidden_size=64)
    with pytest.raises(CharRNNError, match="does not fit its config"):
        checkpoint.model()


def test_save_writes_what_load_reads(tmp_path, saved_run):
    _, path = saved_run
    original = Checkpoint.load(path)
    copy = tmp_path / "nested" / "copy.pt"
    original.save(copy)
    reloaded = Checkpoint.load(copy)
    assert reloaded.vocab == original.vocab and reloaded.progress == original.progress
    assert reloaded.saved_train_config == original.saved_train_config and reloaded.metrics == original.metrics
    assert all(torch.equal(reloaded.model_state[k], v) for k, v in original.model_state.items())
    assert pickle.dumps(reloaded.rng.python) == pickle.dumps(original.rng.python)


def test_a_single_flipped_byte_in_the_weights_is_detected(saved_run, tmp_path):
    _, path = saved_run
    with zipfile.ZipFile(path) as archive:
        record = next(info for info in archive.infolist() if "/data/" in info.filename)
        with archive.open(record) as stream:
            first_bytes = stream.read(64)
    data = bytearray(path.read_bytes())
    offset = data.index(first_bytes, record.header_offset)  # where the tensor's bytes start
    data[offset + 10] ^= 0x01
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CharRNNError, match=f"corrupted: its record '{record.filename}' fails the CRC-32 check"):
        Checkpoint.load(flipped)


_SAVE_FOREVER = """
import sys, torch
from charrnn.formats.checkpoint import Checkpoint
checkpoint = Checkpoint.load(sys.argv[2])
step = 0
while True:
    step += 1
    checkpoint.progress.step = step
    checkpoint.model_state = {"w": torch.full((4_000_000,), float(step))}
    checkpoint.save(sys.argv[1])
    print(step, flush=True)
"""


@pytest.mark.slow
def test_a_process_killed_mid_save_never_leaves_a_half_written_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.0, 0.017, 0.041):
        process = subprocess.Popen(
            [sys.executable, "-c", _SAVE_FOREVER, str(path), str(FIXTURES / "release-0.1.0-last.pt")],
            stdout=subprocess.PIPE,
            text=True,
        )
        process.stdout.readline()  # one whole save done
        time.sleep(delay)
        process.kill()
        process.wait()
        checkpoint = Checkpoint.load(path)
        assert torch.all(checkpoint.model_state["w"] == checkpoint.progress.step)


# --- checkpoints written by earlier releases -------------------------------------------------------

EXPECTED = json.loads((FIXTURES / "release-0.1.0-expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def release_0_1_0(tmp_path) -> Path:
    """last.pt written by charrnn 0.1.0 (see tests/fixtures/README.md), in a directory of its own."""
    shutil.copy(FIXTURES / "release-0.1.0-last.pt", tmp_path / "last.pt")
    return tmp_path / "last.pt"


def test_a_0_1_0_checkpoint_is_migrated_on_load(release_0_1_0):
    raw = torch.load(release_0_1_0, weights_only=True)
    assert raw["format_version"] == 1 and "text_path" in raw  # really the old format
    checkpoint = Checkpoint.load(release_0_1_0)
    assert checkpoint.format_version == 1 and checkpoint.charrnn_version == "0.1.0"
    assert checkpoint.corpus.path == raw["text_path"] and checkpoint.corpus.chars == 3000
    assert checkpoint.model_config.cell == "lstm" and checkpoint.progress.step == 4
    # Options that did not exist yet read as what 0.1.0 trained with, not as today's defaults.
    assert (checkpoint.model_config.weight_drop, checkpoint.model_config.head) == (0.0, "full")
    assert checkpoint.train_config(release_0_1_0).val_chars == 0  # it scored its whole split
    assert len(checkpoint.rng.torch) == 1


def test_a_0_1_0_checkpoint_generates_what_0_1_0_generated(release_0_1_0):
    model = charrnn.load(release_0_1_0, "cpu")
    text = model.generate(EXPECTED["generate_prime"], EXPECTED["generate_length"], seed=EXPECTED["generate_seed"])
    assert text == EXPECTED["generated"]


def test_a_0_1_0_checkpoint_resumes_to_the_weights_0_1_0_reached(release_0_1_0, tmp_path):
    text = FIXTURES / "release-0.1.0.txt"
    run = resume_run(release_0_1_0, sources=text, overrides={"max_steps": 6}, device="cpu", log=quiet)
    fit(run, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    expected = torch.load(FIXTURES / "release-0.1.0-resumed-to-6-weights.pt", weights_only=True)
    # Bit for bit on the machine that wrote the fixture; another CPU's kernels may round the last
    # bits differently, so the comparison allows float32 rounding (a resume that lost state is off by far more).
    for name, tensor in run.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert run.best_val_loss == pytest.approx(EXPECTED["best_val_loss"], abs=1e-5)
    resaved = torch.load(release_0_1_0, weights_only=True)  # written again, in today's format
    assert resaved["format_version"] == FORMAT_VERSION and resaved["corpus"]["chars"] == 3000


def test_a_0_1_0_checkpoint_works_with_every_command(release_0_1_0, tmp_path):
    info = invoke("info", release_0_1_0)
    assert info.exit_code == 0 and "format 1, written by charrnn 0.1.0" in info.stdout
    generated = invoke("generate", release_0_1_0, "--prime", "Fi", "--length", 40, "--seed", 1)
    assert generated.stdout == "Fi" + EXPECTED["generated"] + "\n"
    scored = invoke("evaluate", release_0_1_0, FIXTURES / "release-0.1.0.txt", "--json")
    assert scored.exit_code == 0 and json.loads(scored.stdout)["chars_scored"] == 2998
    explained = invoke("explain", FIXTURES / "release-0.1.0.txt", "--checkpoint", release_0_1_0)
    assert explained.exit_code == 0 and "H=8 hidden" in explained.stdout


def test_checkpoints_from_before_cells_still_load(saved_run, tmp_path):
    # Until --cell existed the recurrent module was called `lstm` and configs had no cell.
    run, path = saved_run
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 1
    raw["model_state"] = {name.replace("rnn.", "lstm.", 1): t for name, t in raw["model_state"].items()}
    del raw["model_config"]["cell"]
    corpus = raw.pop("corpus")
    raw["text_path"], raw["text_chars"] = corpus["path"], corpus["chars"]
    torch.save(raw, tmp_path / "old.pt")
    model = Checkpoint.load(tmp_path / "old.pt").model()
    assert model.cell.name == "lstm"
    assert torch.equal(model.rnn.weight_hh_l1, run.model.rnn.weight_hh_l1)


def test_a_malformed_rng_state_is_refused(saved_run, tmp_path):
    _, path = saved_run
    raw = torch.load(path, weights_only=True)
    raw["rng"]["torch"] = "not a state"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CharRNNError, match="random-number state is malformed"):
        Checkpoint.load(tmp_path / "bad.pt")
