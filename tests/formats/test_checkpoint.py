import os
import pickle
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from charrnn.checkpoint import FORMAT_VERSION, REQUIRED_KEYS, load_checkpoint, model_from_checkpoint, save_checkpoint
from charrnn.errors import CharRNNError
from charrnn.trainer import start_run
from tests.conftest import quiet

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
    run.train_step()
    return run, run.save("last.pt")


def test_checkpoint_holds_only_plain_types_and_everything_to_resume(saved_run):
    run, path = saved_run
    checkpoint = load_checkpoint(path)
    assert_plain(checkpoint)
    assert checkpoint["format_version"] == FORMAT_VERSION
    assert set(REQUIRED_KEYS) <= set(checkpoint)
    assert checkpoint["vocab"] == list(run.vocab.chars)
    assert len(checkpoint["rng"]["torch"]) == 1 and checkpoint["rng"]["torch"][0].dtype == torch.uint8
    assert checkpoint["progress"]["step"] == 1
    assert [t.shape for t in checkpoint["hidden_state"]] == [(2, 4, 32), (2, 4, 32)]


def test_save_is_atomic_and_leaves_no_temporary_files(saved_run):
    run, path = saved_run
    run.train_step()
    run.save("last.pt")
    assert sorted(os.listdir(path.parent)) == ["last.pt"]
    assert load_checkpoint(path)["progress"]["step"] == 2


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
    run.train_step()
    with pytest.raises(CharRNNError, match=f"could not write checkpoint .*{reason}.*untouched"):
        run.save("last.pt")
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["last.pt"]  # no temporary file left behind


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
        load_checkpoint(broken)


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
        load_checkpoint(garbled)


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
        load_checkpoint(hostile)
    assert not marker.exists()


def test_foreign_and_future_files_are_named_as_such(saved_run, tmp_path):
    _, path = saved_run
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CharRNNError, match="no charrnn format marker"):
        load_checkpoint(foreign)
    checkpoint = torch.load(path, weights_only=True)
    future = tmp_path / "future.pt"
    torch.save({**checkpoint, "format_version": FORMAT_VERSION + 1}, future)
    with pytest.raises(CharRNNError, match="upgrade charrnn"):
        load_checkpoint(future)
    incomplete = tmp_path / "incomplete.pt"
    del checkpoint["optimizer_state"]
    torch.save(checkpoint, incomplete)
    with pytest.raises(CharRNNError, match="missing optimizer_state"):
        load_checkpoint(incomplete)


def test_weights_that_do_not_fit_the_config_are_reported(saved_run):
    _, path = saved_run
    checkpoint = load_checkpoint(path)
    checkpoint["model_config"]["hidden_size"] = 64
    with pytest.raises(CharRNNError, match="does not fit its config"):
        model_from_checkpoint(checkpoint)


def test_save_checkpoint_writes_what_load_checkpoint_reads(tmp_path, saved_run):
    _, path = saved_run
    payload = {k: v for k, v in load_checkpoint(path).items() if not k.startswith("format")}
    copy = tmp_path / "nested" / "copy.pt"
    save_checkpoint(payload, copy)
    reloaded = load_checkpoint(copy)
    assert reloaded["vocab"] == payload["vocab"]
    assert all(torch.equal(reloaded["model_state"][k], v) for k, v in payload["model_state"].items())
    assert pickle.dumps(reloaded["rng"]["python"]) == pickle.dumps(payload["rng"]["python"])


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
        load_checkpoint(flipped)


_SAVE_FOREVER = """
import sys, torch
from charrnn.checkpoint import REQUIRED_KEYS, save_checkpoint
payload = {key: None for key in REQUIRED_KEYS}
step = 0
while True:
    step += 1
    payload["progress"] = {"step": step}
    payload["model_state"] = {"w": torch.full((4_000_000,), float(step))}
    save_checkpoint(payload, sys.argv[1])
    print(step, flush=True)
"""


def test_a_process_killed_mid_save_never_leaves_a_half_written_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.0, 0.017, 0.041):
        process = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(path)], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one whole save done
        time.sleep(delay)
        process.kill()
        process.wait()
        checkpoint = load_checkpoint(path)
        assert torch.all(checkpoint["model_state"]["w"] == checkpoint["progress"]["step"])
