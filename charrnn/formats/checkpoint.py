"""The checkpoint format: one typed object, one atomic writer, one safe loader, one migration path.

This is the only module that knows the file's keys. A checkpoint holds everything ``generate``
needs (model config, vocabulary, weights) and everything ``train --resume`` needs on top
(optimizer, data position, carried hidden state, RNG states, metrics), as plain types and tensors,
so that it loads with ``torch.load(weights_only=True)``: loading never runs code from the file.

Format 2 (charrnn 0.2), the file's dict:

    format, format_version, charrnn_version, torch_version
    model_config: dict          vocab: list[str]          model_state: state_dict ("rnn.*", "head.*")
    train_config: dict          corpus: {path, chars; since 0.3 also documents, sources, ...} (_corpus_dict)
    base: {path, sha256} | None (optional: a fine-tuning run's base model)
    plan: {line, reasons, shape} | None (optional, since 0.6: how a planned run was planned)
    optimizer_state: dict       scaler_state: dict ({} unless fp16)
    progress: dict              hidden_state: [h, c] (LSTM) or [h], each (L, B, H) over all streams
    processes: int              rng: {torch: [P uint8 tensors], cuda: [...] (optional), python: tuple}

A generation-only checkpoint (``for_generation``) has an empty optimizer state and hidden state
and ``rng: None``.
    best_val_loss, last_val_loss: float | None          metrics: list[dict]

Older formats are migrated on load (``MIGRATIONS``): format 1 is what charrnn 0.1.0 wrote.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from charrnn.config import (
    MODEL_OPTIONS_BEFORE_THEY_EXISTED,
    TRAIN_OPTIONS_BEFORE_THEY_EXISTED,
    ModelConfig,
    TrainConfig,
)
from charrnn.core.corpus import Corpus, Document
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.files import write_atomically
from charrnn.formats.migrations import MIGRATIONS
from charrnn.version import __version__

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 2
_REQUIRED = (
    "model_config",
    "vocab",
    "model_state",
    "train_config",
    "corpus",
    "optimizer_state",
    "progress",
    "hidden_state",
    "rng",
    "best_val_loss",
    "last_val_loss",
    "metrics",
)


@dataclass
class Progress:
    """Where a run is; ``step`` counts from the run's very start, across resumes."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # full passes over the training split completed
    window: int = 0  # next window of the current pass
    chars_seen: int = 0  # training characters consumed
    elapsed_seconds: float = 0.0  # training wall time, summed over resumes


@dataclass
class RngStates:
    """Random-number states to resume with: one torch (and CUDA) state per process, in rank order."""

    torch: list[torch.Tensor]
    python: tuple
    cuda: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Checkpoint:
    """A loaded or about-to-be-saved checkpoint. Build the model with ``model()``."""

    model_config: ModelConfig
    vocab: Vocab
    model_state: dict[str, torch.Tensor]
    saved_train_config: dict[str, Any]  # as stored: read through ``train_config`` / ``layout``
    corpus: Corpus  # the documents the run trained on
    progress: Progress
    optimizer_state: dict[str, Any]
    hidden_state: list[torch.Tensor]  # [h, c] or [h], each (L, B, H) over all the run's streams
    rng: RngStates | None  # None in a generation-only checkpoint
    best_val_loss: float | None
    last_val_loss: float | None
    metrics: list[dict[str, Any]]
    scaler_state: dict[str, Any] = field(default_factory=dict)
    processes: int = 1  # how many processes trained the run's streams
    base: dict[str, str] | None = None  # a fine-tuning run's base model: {path, sha256}
    plan: dict[str, Any] | None = None  # a planned run's plan: {line, reasons, shape}
    charrnn_version: str = __version__
    torch_version: str = field(default_factory=lambda: str(torch.__version__))
    format_version: int = FORMAT_VERSION

    # --- reading ---------------------------------------------------------------------------------

    @property
    def resumable(self) -> bool:
        """Whether it holds a run's whole state, or only what generation needs (``for_generation``)."""
        return self.rng is not None and bool(self.optimizer_state) and bool(self.hidden_state)

    def for_generation(self) -> Checkpoint:
        """A copy with what generation needs only: no optimizer, hidden or RNG state (a third of the
        size). It generates, evaluates and explains like the original; it cannot be resumed."""
        return dataclasses.replace(self, optimizer_state={}, scaler_state={}, hidden_state=[], rng=None)

    def model(self, device: torch.device | str = "cpu") -> CharRNN:
        """The model with the saved weights, on ``device``."""
        try:
            model = CharRNN(len(self.vocab), self.model_config)
            model.load_state_dict(self.model_state)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CharRNNError(f"the checkpoint's model does not fit its config: {exc}") from None
        return model.to(device)

    def train_config(self, path: str | os.PathLike) -> TrainConfig:
        """The run's whole training config, as a resume needs it."""
        try:
            return TrainConfig(**{**TRAIN_OPTIONS_BEFORE_THEY_EXISTED, **self.saved_train_config})
        except TypeError as exc:
            raise CharRNNError(f"{path} has a training config this charrnn cannot read: {exc}") from None

    def layout(self, path: str | os.PathLike, needed: tuple[str, ...], remedy: str) -> TrainConfig:
        """The training config for a command that only needs a few fields of it (``needed``).

        Unknown keys (a newer charrnn's) are ignored. A needed field that is missing or unusable
        raises CharRNNError ending with ``remedy``: a silent default would lay the text out
        differently from the run.
        """
        saved = self.saved_train_config
        for name in needed:
            value = saved.get(name)
            if name == "val_frac":
                usable = isinstance(value, float) and 0 < value < 1
            else:  # batch_size, seq_len
                usable = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            if value is None:
                raise CharRNNError(f"the training config in {path} has no {name}: {remedy}")
            if not usable:
                raise CharRNNError(f"the training config in {path} has an unusable {name} ({value!r}): {remedy}")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        usable_fields = {name: value for name, value in saved.items() if name in known and name in needed}
        return TrainConfig(**usable_fields)

    # --- writing ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The file's contents: plain types and CPU tensors only."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "charrnn_version": self.charrnn_version,
            "torch_version": self.torch_version,
            "model_config": dataclasses.asdict(self.model_config),
            "vocab": list(self.vocab.chars),
            "model_state": {name: tensor.detach().cpu() for name, tensor in self.model_state.items()},
            "train_config": dict(self.saved_train_config),
            "corpus": _corpus_dict(self.corpus),
            "base": self.base,
            "plan": self.plan,
            "optimizer_state": _to_cpu(self.optimizer_state),
            "scaler_state": _to_cpu(self.scaler_state),
            "progress": dataclasses.asdict(self.progress),
            "hidden_state": [t.detach().cpu() for t in self.hidden_state],
            "processes": self.processes,
            "rng": None
            if self.rng is None
            else {"torch": self.rng.torch, "cuda": self.rng.cuda, "python": self.rng.python},
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "metrics": list(self.metrics),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically.

        The bytes go to a temporary file in the same directory, are flushed and fsynced, and only
        then replace ``path`` (``os.replace`` is atomic): a crash, a full disk or a second Ctrl-C
        leaves either the old file or the new one, never half of one, and no temporary file behind.
        """
        path = Path(path)
        payload = self.to_dict()
        try:
            write_atomically(path, lambda file: torch.save(payload, file))
        except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as RuntimeError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write failed"
            raise CharRNNError(
                f"could not write checkpoint {path}: {reason}; any earlier {path.name} is untouched. "
                "Check for free disk space and write permission, or choose another --out"
            ) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Load, check and (if older) migrate a checkpoint; tensors land on the CPU whatever wrote them."""
        path = Path(path)
        raw = _read(path)
        version = raw.get("format_version")
        while version in MIGRATIONS:
            raw, version = MIGRATIONS[version](raw), version + 1
        missing = [key for key in _REQUIRED if key not in raw]
        if missing:
            raise CharRNNError(f"{path} is an incomplete charrnn checkpoint: missing {', '.join(missing)}")
        try:
            checkpoint = cls(
                model_config=ModelConfig(**{**MODEL_OPTIONS_BEFORE_THEY_EXISTED, **raw["model_config"]}),
                vocab=Vocab(raw["vocab"]),
                model_state=raw["model_state"],
                saved_train_config=dict(raw["train_config"]) if isinstance(raw["train_config"], dict) else {},
                corpus=_corpus(raw["corpus"]),
                base=raw.get("base"),
                plan=_plan(raw.get("plan")),
                progress=Progress(**raw["progress"]),
                optimizer_state=raw["optimizer_state"],
                hidden_state=list(raw["hidden_state"]),
                rng=_rng_states(raw["rng"]),
                best_val_loss=raw["best_val_loss"],
                last_val_loss=raw["last_val_loss"],
                metrics=list(raw["metrics"]),
                scaler_state=raw.get("scaler_state") or {},
                processes=raw.get("processes", 1),
                charrnn_version=str(raw.get("charrnn_version", "unknown")),
                torch_version=str(raw.get("torch_version", "unknown")),
                format_version=raw["format_version"],
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise CharRNNError(f"the checkpoint {path} does not fit its own format: {exc}") from None
        return checkpoint


def _read(path: Path) -> dict[str, Any]:
    """The file's dict, refused unless it is an undamaged charrnn checkpoint this version can read.

    ``weights_only=True`` is always passed and never retried without: a file that needs
    arbitrary unpickling is refused, not executed.
    """
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
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # garbage, rather than a reference to code
            raise corrupted from None
        raise CharRNNError(
            f"{path} is not a charrnn checkpoint: it holds objects other than plain data "
            "(possibly code), and charrnn refuses to load those"
        ) from None
    except (RuntimeError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile, OSError):
        raise corrupted from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CharRNNError(f"{path} is not a charrnn checkpoint (no charrnn format marker)")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CharRNNError(
            f"{path} has checkpoint format version {version!r}, but this charrnn reads 1 to "
            f"{FORMAT_VERSION}: upgrade charrnn"
        )
    return raw


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


def _plan(saved: Any) -> dict[str, Any] | None:
    """A planned run's record, or None when there is none or it is not one (it is only shown)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("line"), str):
        return None
    if not isinstance(saved.get("reasons"), list) or not isinstance(saved.get("chose", {}), dict):
        return None
    return saved


def _corpus_dict(corpus: Corpus) -> dict[str, Any]:
    """The corpus record: ``path`` and ``chars`` as charrnn 0.2 wrote them, then what 0.3 adds."""
    return {
        "path": corpus.path,
        "chars": corpus.chars,
        "documents": [dataclasses.asdict(d) for d in corpus.documents],  # {path, bytes, sha256, chars}
        "sources": list(corpus.sources),
        "val_document": None if corpus.val_document is None else dataclasses.asdict(corpus.val_document),
        "separator": corpus.separator,
        "items": None if corpus.item_digests is None else torch.from_numpy(corpus.item_digests),  # int64 digests
    }


def _corpus(saved: dict[str, Any]) -> Corpus:
    """The corpus record; one written by charrnn 0.2 becomes a single document without a hash."""
    documents = [Document(**d) for d in saved.get("documents") or []]
    if not documents:
        documents = [Document(str(saved["path"]), 0, "", int(saved["chars"]))]
    items = saved.get("items")
    return Corpus(
        documents=documents,
        chars=int(saved["chars"]),
        val_document=Document(**saved["val_document"]) if saved.get("val_document") else None,
        separator=saved.get("separator"),
        item_digests=None if items is None else items.numpy(),
        sources=list(saved.get("sources") or []),
    )


def _rng_states(saved: Any) -> RngStates | None:
    """The RNG states, checked: a malformed one cannot be resumed exactly. None: generation only."""
    if saved is None:
        return None
    malformed = CharRNNError("the checkpoint's saved random-number state is malformed: it cannot be resumed exactly")
    if not isinstance(saved, dict) or "python" not in saved:
        raise malformed
    lists = {}
    for key in ("torch", "cuda"):
        states = saved.get(key) or []
        if not isinstance(states, list) or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in states
        ):
            raise malformed
        lists[key] = states
    if not lists["torch"]:
        raise malformed
    return RngStates(torch=lists["torch"], cuda=lists["cuda"], python=saved["python"])


def _to_cpu(value: Any) -> Any:
    """A copy of a nested dict/list structure with every tensor moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
