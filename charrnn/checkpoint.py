"""One checkpoint format, one atomic writer, one safe loader.

A checkpoint is a dict of plain types (str, int, float, bool, None, list, tuple, dict) and
tensors, so it loads with ``torch.load(weights_only=True)``: loading never runs code from the
file. One file holds everything ``generate`` needs (model config, vocabulary, weights) and
everything ``train --resume`` needs on top (optimizer, data position, carried hidden state, RNG
states, metrics).

    format, format_version, charrnn_version, torch_version
    model_config: dict          vocab: list[str]          model_state: state_dict
    train_config: dict          text_path: str            text_chars: int
    optimizer_state: dict       progress: dict            hidden_state: [h, c] (LSTM) or [h], each (L, B, H)
    rng: dict                   best_val_loss, last_val_loss: float | None
    metrics: list[dict]
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import zipfile
from pathlib import Path
from typing import Any

import torch

from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "model_config", "vocab", "model_state", "train_config", "text_path", "text_chars",
    "optimizer_state", "progress", "hidden_state", "rng", "best_val_loss", "last_val_loss",
    "metrics",
)  # fmt: skip


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and only
    then replace ``path`` (``os.replace`` is atomic): a crash, a full disk or a second Ctrl-C
    leaves either the old file or the new one, never half of one, and no temporary file behind.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path, "xb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as RuntimeError
        _remove_quietly(tmp_path)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write failed"
        raise CharRNNError(
            f"could not write checkpoint {path}: {reason}; any earlier {path.name} is untouched. "
            "Check for free disk space and write permission, or choose another --out"
        ) from None
    except BaseException:  # e.g. a second Ctrl-C in the middle of the write
        _remove_quietly(tmp_path)
        raise
    _fsync_directory(path.parent)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a charrnn checkpoint; tensors land on the CPU whatever wrote them.

    ``weights_only=True`` is always passed and never retried without: a file that needs
    arbitrary unpickling is refused, not executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"checkpoint {path} does not exist (or is not a file)")
    corrupted = CharRNNError(f"{path} is not a charrnn checkpoint or is corrupted")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is foreign
        raise corrupted
    damaged = _first_damaged_record(path)
    if damaged is not None:
        raise CharRNNError(
            f"{path} is corrupted: its record {damaged!r} fails the CRC-32 check (the file was "
            "damaged after it was written); use another checkpoint"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # garbage, rather than a reference to code
            raise corrupted from None
        raise CharRNNError(
            f"{path} is not a charrnn checkpoint: it holds objects other than plain data "
            "(possibly code), and charrnn refuses to load those"
        ) from None
    except (RuntimeError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile, OSError):
        raise corrupted from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CharRNNError(f"{path} is not a charrnn checkpoint (no charrnn format marker)")
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CharRNNError(
            f"{path} has checkpoint format version {version!r}, but this charrnn reads up to "
            f"{FORMAT_VERSION}: upgrade charrnn"
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CharRNNError(f"{path} is an incomplete charrnn checkpoint: missing {', '.join(missing)}")
    return checkpoint


def _first_damaged_record(path: Path) -> str | None:
    """Name of the first zip record whose bytes do not match their stored CRC-32, if any.

    torch.load does not check these checksums, so a flipped bit in the weights would otherwise
    load silently; reading the file once more costs about 2 ms per MB.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return str(path.name)


def model_from_checkpoint(
    checkpoint: dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[CharRNN, Vocab]:
    """The model (weights loaded, on ``device``) and vocabulary stored in a loaded checkpoint."""
    try:
        vocab = Vocab(checkpoint["vocab"])
        model = CharRNN(len(vocab), ModelConfig(**checkpoint["model_config"]))
        model.load_state_dict(_renamed_weights(checkpoint["model_state"]))
    except (TypeError, ValueError, RuntimeError, CharRNNError) as exc:
        raise CharRNNError(f"the checkpoint's model does not fit its config: {exc}") from None
    return model.to(device), vocab


def _renamed_weights(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights under the model's current names: checkpoints from before --cell call the
    recurrent module ``lstm`` (``lstm.weight_ih_l0``, ...), now ``rnn``."""
    return {("rnn." + name[len("lstm."):] if name.startswith("lstm.") else name): tensor
            for name, tensor in model_state.items()}  # fmt: skip
