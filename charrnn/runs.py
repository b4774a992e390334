"""The Python API for runs: ``charrnn.train``, ``charrnn.finetune`` and ``charrnn.describe``
(``charrnn.load`` and the model it returns: charrnn/api.py). The CLI is a thin layer over these."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from charrnn.config import FINETUNE_DEFAULTS, ModelConfig, Placement, TrainConfig
from charrnn.core.data import sample_layout
from charrnn.core.model import count_parameters
from charrnn.formats.checkpoint import Checkpoint
from charrnn.options import build, declared, list_as_keywords
from charrnn.threads import parse_threads, use_fixed_threads
from charrnn.training.loop import TrainResult, fit
from charrnn.training.policy import Sources, finetune_run, start_run
from charrnn.training.reporting import Log, log_to_stdout


def train(
    text: Sources,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    threads: str | int = Placement.threads,
    log: Log = log_to_stdout,
    progress_bar: bool = True,
    **options: Any,
) -> TrainResult:
    """Train a new model on ``text`` (a file, a directory, a glob pattern, or a list of them) to the end.
    ``options`` are the options of ``charrnn train`` (see docs/options.md, or
    ``inspect.signature(charrnn.train)``), named as in Python.

    For example ``charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/a")``.
    Ctrl-C stops it cleanly after the current step, with last.pt saved. ``threads``: CPU threads,
    a number or "auto" (measured as training goes: docs/performance.md).
    """
    model_config, train_config = _configs(options, TRAIN_OPTIONS)
    _check_threads(threads)  # refused before anything is written
    use_fixed_threads(threads)  # before the plan measures speeds
    run = start_run(text, model_config, train_config, given=set(options), out_dir=out_dir, device=device, log=log)
    return fit(run, log=log, progress_bar=progress_bar, threads=threads)


def finetune(
    base: str | os.PathLike,
    text: Sources,
    *,
    extend_vocab: bool = False,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    threads: str | int = Placement.threads,
    log: Log = log_to_stdout,
    progress_bar: bool = True,
    **options: Any,
) -> TrainResult:
    """Fine-tune the model in ``base`` on ``text`` with a fresh optimizer and schedule, to the end.

    ``options`` are those of ``charrnn finetune``: ``FINETUNE_DEFAULTS`` replace a few of train's
    defaults (a shorter warm-up), and the dropout defaults to the base model's.
    ``extend_vocab=True`` adds the text's new characters to the model instead of refusing them.
    """
    options = {**FINETUNE_DEFAULTS, **options}
    dropout = options.get("dropout")  # None: the base model's
    if dropout is None:
        options.pop("dropout", None)
    _, train_config = _configs(options, FINETUNE_OPTIONS)  # checks a given dropout too
    _check_threads(threads)
    run = finetune_run(
        base, text, train_config, dropout=dropout, extend_vocab=extend_vocab, out_dir=out_dir, device=device, log=log
    )
    return fit(run, log=log, progress_bar=progress_bar, threads=threads)


def _configs(options: dict[str, Any], allowed: list) -> tuple[ModelConfig, TrainConfig]:
    """The configs for a training call's keyword options; TypeError names any it does not take."""
    unknown = set(options) - {opt.name for opt in allowed}
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    try:
        return build(ModelConfig, options), build(TrainConfig, options)
    except ValueError as exc:
        raise TypeError(str(exc)) from None


def _check_threads(threads: str | int) -> None:
    """A bad ``threads`` is a TypeError, as every other bad training option is."""
    try:
        parse_threads(threads)
    except ValueError as exc:
        raise TypeError(str(exc)) from None


def _with_options(function: Any, command: str) -> list:
    """List the options of ``command`` in ``function``'s signature; return them."""
    options = [opt for cls in (ModelConfig, TrainConfig) for opt in declared(cls) if command in opt.spec.commands]
    defaults = {**FINETUNE_DEFAULTS, "dropout": None} if command == "finetune" else {}
    list_as_keywords(function, options, defaults)
    return options


TRAIN_OPTIONS = _with_options(train, "train")
FINETUNE_OPTIONS = _with_options(finetune, "finetune")


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds and how it was made, as plain JSON-ready values (``charrnn info``)."""
    path = Path(path)
    checkpoint = Checkpoint.load(path)
    model = checkpoint.model()
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "model_config": dataclasses.asdict(model.config),
        "parameters": count_parameters(model),
        "input_path": model.input_path,
        "vocab_size": len(checkpoint.vocab),
        "vocab": list(checkpoint.vocab.chars),
        "text_path": checkpoint.corpus.path,
        "text_chars": checkpoint.corpus.chars,
        "documents": [dataclasses.asdict(d) for d in checkpoint.corpus.documents],
        "val_document": None if checkpoint.corpus.val_document is None else checkpoint.corpus.val_document.path,
        "line_items": None if checkpoint.corpus.item_digests is None else len(checkpoint.corpus.item_digests),
        "base": checkpoint.base,
        "plan": checkpoint.plan,
        "train_config": checkpoint.saved_train_config,
        **dataclasses.asdict(checkpoint.progress),
        "best_val_loss": checkpoint.best_val_loss,
        "last_val_loss": checkpoint.last_val_loss,
        "val_sample": _val_sample(checkpoint),
        "torch_version": checkpoint.torch_version,
        "charrnn_version": checkpoint.charrnn_version,
        "format_version": checkpoint.format_version,
        "resumable": checkpoint.resumable,
    }


def _val_sample(checkpoint: Checkpoint) -> int | None:
    """The characters each validation scored when the split was longer than --val-chars (the
    sample's exact layout), or None when it scored the whole split."""
    saved = checkpoint.saved_train_config
    sample, corpus = saved.get("val_chars", 0), checkpoint.corpus
    if not sample or "val_frac" not in saved:
        return None
    split = corpus.val_document.chars if corpus.val_document else round(corpus.chars * saved["val_frac"])
    if sample >= split:
        return None
    pieces, length = sample_layout(saved.get("batch_size", TrainConfig.batch_size), sample)
    return pieces * length
