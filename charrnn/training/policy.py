"""The run policy: how a run starts, and what a resume restores, may change, and refuses.

    start_run     a new run: read and lay out the text, a fresh model, a new run directory
    finetune_run  a new run from a trained model's weights (its vocabulary grown if asked), with a
                  fresh optimizer and schedule; the checkpoints record the base model
    resume_run    a saved run, restored exactly: weights, optimizer, position, hidden state, RNG
                  states and scores; options that shape the model or the data are refused, the rest
                  (learning rate, limits, schedule, ...) change with a notice

Both return a ``TrainingRun`` ready for ``charrnn.training.loop.fit``; neither trains. Every run
directory gets the run's resolved options as config.toml (``charrnn train --config`` reads it).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from charrnn.config import FINETUNE_DEFAULTS, ModelConfig, TrainConfig
from charrnn.core.corpus import Scan, TextFormat, describe_characters, file_sha256, lay_out, scan
from charrnn.core.data import StreamBatches
from charrnn.core.devices import resolve_device
from charrnn.core.model import CharRNN, count_parameters
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.formats.runconfig import write_run_config
from charrnn.options import declared
from charrnn.training.distributed import Distributed
from charrnn.training.finetune import grow_vocabulary, init_new_rows
from charrnn.training.plan import Plan
from charrnn.training.planner import plan_for, plan_run
from charrnn.training.precision import resolve_precision
from charrnn.training.reporting import Log, log_to_stdout, silent
from charrnn.training.run import TrainingRun, restore
from charrnn.training.rundir import prepare_out_dir, refuse_to_go_back, refuse_to_overwrite

# Options a resume keeps from the checkpoint: changing them would make the saved weights,
# optimizer state, data position or hidden state meaningless.
FIXED_ON_RESUME = tuple(
    opt.name for cls in (ModelConfig, TrainConfig) for opt in declared(cls) if opt.spec.fixed_on_resume
)


Sources = str | os.PathLike | Sequence[str | os.PathLike]


def start_run(
    sources: Sources,
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    *,
    given: Collection[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
) -> TrainingRun:
    """A new run on ``sources`` (text files, directories, glob patterns), ready for ``fit``.

    ``given``: the options the user set. With it, and ``train_config.plan`` "auto", the rest of the
    model's shape and regularisation is planned for the text, budget and machine
    (``charrnn.training.plan``); without it the configs are used as they are.
    ``out_dir`` defaults to ``checkpoints/<name of the text>``; a directory that already holds a
    run is refused rather than overwritten. Under torchrun, ``train_config.batch_size`` streams
    go to each process (the run's batch is that times the number of processes).
    """
    device, dist = _join(device)
    log = log if dist.is_main else silent
    train_config = _for_this_run(train_config, dist)
    found = _scan(sources, train_config, device, log)
    out_dir = Path(out_dir) if out_dir is not None else Path("checkpoints") / found.name
    refuse_to_overwrite(out_dir)
    plan = None
    if given is not None and train_config.plan == "auto":
        model_config, train_config, plan = plan_run(found, model_config, train_config, given, device, dist)
        if plan is not None:
            log(plan.line())
    else:  # recorded as it ran: a repeat with --config must not plan what this run did not
        train_config = dataclasses.replace(train_config, plan="off")
    vocab = Vocab(found.characters)
    torch.manual_seed(train_config.seed)  # the same initial weights in every process
    model = CharRNN(len(vocab), model_config)
    if dist.rank:
        torch.manual_seed(train_config.seed + dist.rank)  # but its own dropout masks
    run = _build_run(found, vocab, model, train_config, out_dir, device, dist, plan=plan and plan.to_dict())
    run.rank_characters()
    _announce(run, "training on", log)
    return run


def plan_only(
    sources: Sources,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    given: Collection[str],
    device: str = "auto",
    log: Log = log_to_stdout,
) -> Plan:
    """The plan ``start_run`` would make for these sources and options (`charrnn plan`): the text
    is read and speeds measured, but nothing is trained or written (except the speed cache)."""
    torch_device = resolve_device(device)
    found = _scan(sources, train_config, torch_device, log)
    return plan_for(found, model_config, train_config, given, torch_device)


def finetune_run(
    base_path: str | os.PathLike,
    sources: Sources,
    train_config: TrainConfig = TrainConfig(**FINETUNE_DEFAULTS),
    *,
    dropout: float | None = None,
    extend_vocab: bool = False,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
) -> TrainingRun:
    """A new run that starts from the weights in ``base_path`` (any charrnn checkpoint, generation-only
    ones included) and trains them on ``sources`` with a fresh optimizer and schedule.

    Characters of the text that the base model lacks are refused, naming them, unless
    ``extend_vocab``, which grows the model (``charrnn.training.finetune``). ``dropout`` replaces
    the base model's. ``out_dir`` defaults to ``checkpoints/<name of the text>-finetuned``.
    """
    base_path = Path(base_path)
    base = Checkpoint.load(base_path)
    device, dist = _join(device)
    log = log if dist.is_main else silent
    train_config = _for_this_run(train_config, dist)
    found = _scan(sources, train_config, device, log)
    out_dir = Path(out_dir) if out_dir is not None else Path("checkpoints") / f"{found.name}-finetuned"
    refuse_to_overwrite(out_dir)
    added = sorted(set(found.characters) - set(base.vocab.chars))
    if added and not extend_vocab:
        raise CharRNNError(
            f"{describe_characters(added)} of the text {'is' if len(added) == 1 else 'are'} not in the vocabulary of "
            f"{base_path}: pass --extend-vocab to add {'it' if len(added) == 1 else 'them'} (the model's "
            "existing characters keep their weights), or remove them from the text"
        )
    vocab = Vocab(sorted(set(base.vocab.chars) | set(added)))
    model_config = base.model_config if dropout is None else dataclasses.replace(base.model_config, dropout=dropout)
    model = grow_vocabulary(base.model(), base.vocab, vocab, model_config)
    torch.manual_seed(train_config.seed + dist.rank)  # dropout draws
    run = _build_run(found, vocab, model, train_config, out_dir, device, dist, base=str(base_path.resolve()))
    run.base = {"path": str(base_path.resolve()), "sha256": file_sha256(base_path)}
    if added:
        init_new_rows(run.model, base.vocab, vocab, run.train_batches)
        log(f"vocabulary grown from {len(base.vocab)} to {len(vocab)} characters: {describe_characters(added)} added")
    _announce(run, f"fine-tuning {base_path} on", log)
    return run


def resume_run(
    checkpoint_path: str | os.PathLike,
    *,
    sources: Sources | None = None,
    out_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
) -> TrainingRun:
    """The run saved in ``checkpoint_path``, restored exactly, ready for ``fit``.

    ``overrides`` maps option names to new values: run options (``lr``, ``max_steps``, ...)
    change with a notice; those in FIXED_ON_RESUME are refused if they differ. The run's own
    documents are read again unless ``sources`` are given; checkpoints go to the checkpoint's own
    directory unless ``out_dir`` is given.
    """
    checkpoint_path = Path(checkpoint_path)
    device, dist = _join(device)
    log = log if dist.is_main else silent
    overrides = dict(overrides or {})
    if "batch_size" in overrides:  # given per process, like a new run's
        overrides["batch_size"] *= dist.world_size
    checkpoint = Checkpoint.load(checkpoint_path)
    if not checkpoint.resumable:
        raise CharRNNError(
            f"{checkpoint_path} holds a model for generation only (no optimizer or data position): it cannot be "
            "resumed; fine-tune it instead (`charrnn finetune CHECKPOINT TEXT`)"
        )
    model = checkpoint.model()
    saved_config = _without_planned_limit(checkpoint, checkpoint_path, overrides, log)
    train_config = _apply_overrides(model.config, saved_config, overrides, log)
    if train_config.batch_size % dist.world_size:
        raise CharRNNError(
            f"this run has {train_config.batch_size} streams, which {dist.world_size} processes cannot share "
            f"equally: resume it with a number of processes that divides {train_config.batch_size}"
        )
    if checkpoint.processes != dist.world_size:
        log(
            f"note: the run's {train_config.batch_size} streams were trained by {checkpoint.processes} process(es) "
            f"and now by {dist.world_size}: each takes {train_config.batch_size // dist.world_size}; weights, "
            "optimizer, position and hidden state carry over exactly, dropout draws start afresh"
        )

    saved = checkpoint.corpus
    if sources is None:
        gone = [d.path for d in saved.documents if not Path(d.path).is_file()]
        if gone:
            raise CharRNNError(
                f"the run's training text {gone[0]} is gone{f' (and {len(gone) - 1} more)' if len(gone) > 1 else ''}: "
                f"pass the text, e.g. `charrnn train TEXT --resume {checkpoint_path}`"
            )
        sources = [d.path for d in saved.documents]

    out_dir = Path(out_dir) if out_dir is not None else checkpoint_path.parent
    if out_dir.resolve() != checkpoint_path.parent.resolve():
        refuse_to_overwrite(out_dir)
    elif checkpoint_path.name != "last.pt" and (out_dir / "last.pt").is_file():
        refuse_to_go_back(out_dir / "last.pt", checkpoint.progress.step)

    found = _scan(sources, train_config, device, log)
    run = _build_run(
        found,
        checkpoint.vocab,
        model,
        train_config,
        out_dir,
        device,
        dist,
        remedy="a resumed run keeps its vocabulary",
        base=None if checkpoint.base is None else checkpoint.base["path"],
        plan=checkpoint.plan,  # kept: the plan the run started with
    )
    if checkpoint.plan:
        log(f"{checkpoint.plan['line']} (kept from the run's start)")
    same_text = [(d.path, d.sha256) for d in found.documents] == [(d.path, d.sha256) for d in saved.documents]
    if not same_text and (saved.recorded or run.corpus.chars != saved.chars):  # before 0.3: no hashes to compare
        log(f"note: resuming on {run.corpus.describe()} ({run.corpus.chars:,} characters), not the run's own text")
    restore(run, checkpoint)
    log(f"resuming {checkpoint_path} at step {run.progress.step} (epoch {run.progress.epoch})")
    return run


def _without_planned_limit(checkpoint: Checkpoint, path: Path, overrides: Mapping[str, Any], log: Log) -> TrainConfig:
    """The saved config, less the step limit its plan set when the resume gives a new budget: a
    user's --time-limit or --max-epochs, not a limit the user never set, decides the new end."""
    saved = checkpoint.train_config(path)
    planned_steps = (checkpoint.plan or {}).get("chose", {}).get("max_steps")
    new_budget = {"time_limit", "max_epochs"} & set(overrides) and "max_steps" not in overrides
    if planned_steps is None or not new_budget or saved.max_steps != planned_steps:
        return saved
    log(f"note: the plan's own limit of {planned_steps:,} steps gives way to the new budget")
    return dataclasses.replace(saved, max_steps=None)


def _apply_overrides(
    model_config: ModelConfig, train_config: TrainConfig, overrides: dict[str, Any], log: Log
) -> TrainConfig:
    """The saved training config with a resume's option changes applied; FIXED_ON_RESUME refused."""
    changes = {}
    for config in (model_config, train_config):
        for field in dataclasses.fields(config):
            if field.name not in overrides:
                continue
            new, old = overrides.pop(field.name), getattr(config, field.name)
            if new == old:
                continue
            if field.name in FIXED_ON_RESUME:
                raise CharRNNError(
                    f"--{field.name.replace('_', '-')} is {old} in this run and cannot change on "
                    f"resume (it shapes the model or the data); drop the option, or start a new run"
                )
            changes[field.name] = new
            log(f"note: {field.name} changes from {'none' if old is None else old} to {'none' if new is None else new}")
    if overrides:
        raise CharRNNError(f"unknown option(s) for resume: {', '.join(sorted(overrides))}")
    return dataclasses.replace(train_config, **changes)


def _for_this_run(train_config: TrainConfig, dist: Distributed) -> TrainConfig:
    """A new run's config as its checkpoints keep it: the batch over all processes, and --val-file
    as an absolute path, so that a resume from another directory finds it."""
    val_file = None if train_config.val_file is None else os.path.abspath(train_config.val_file)
    return dataclasses.replace(train_config, batch_size=train_config.batch_size * dist.world_size, val_file=val_file)


def _scan(sources: Sources, train_config: TrainConfig, device: torch.device, log: Log) -> Scan:
    """Pass 1 over the run's text, once the precision is known to be possible here (before reading or writing)."""
    resolve_precision(train_config.precision, device)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    return scan(
        sources,
        TextFormat.of(train_config),
        val_file=train_config.val_file,
        line_items=train_config.line_items,
        warn=log,
    )


def _announce(run: TrainingRun, doing: str, log: Log) -> None:
    if run.dist.enabled:
        share, total = run.train_batches.batch_size, run.train_config.batch_size
        log(f"{run.dist.world_size} processes x {share} streams = batch {total}")
    log(
        f"{doing} {run.corpus.describe()}: {run.corpus.chars:,} characters, vocabulary {len(run.vocab)}, "
        f"{count_parameters(run.model):,} parameters, device {run.device}"
    )
    if run.val_batches.sampled:
        log(
            f"each validation scores {run.val_batches.num_chars * run.dist.world_size:,} of the validation split's "
            f"{run.val_batches.split_chars:,} characters, in pieces spread over it (--val-chars 0 scores all)"
        )


def _build_run(
    found: Scan,
    vocab: Vocab,
    model: CharRNN,
    train_config: TrainConfig,
    out_dir: Path,
    device: torch.device,
    dist: Distributed,
    remedy: str = "",
    base: str | None = None,
    plan: dict | None = None,
) -> TrainingRun:
    """Check the characters, lay out the text for this process, make the run directory and the run.

    ``train_config.batch_size`` is the run's total number of streams; each process trains on
    its own equal share of them. ``remedy`` ends the message for characters outside ``vocab``.
    """
    outside = sorted(set(found.characters) - set(vocab.chars))
    if outside:
        raise CharRNNError(f"{describe_characters(outside)} of the text are not in the model's vocabulary: {remedy}")
    outside = sorted(set(found.val_characters) - set(vocab.chars))
    if outside:
        raise CharRNNError(
            f"{describe_characters(outside)} of the validation file {found.val_document.path} are not in the training "
            "text's vocabulary: remove them from it, or train on a text that has them"
        )
    corpus, train_ids, val_ids = lay_out(
        found,
        vocab,
        TextFormat.of(train_config),
        val_frac=train_config.val_frac,
        line_items=train_config.line_items,
        seed=train_config.seed,
    )
    share = (dist.rank, dist.world_size)
    B, T = train_config.batch_size, train_config.seq_len
    train_batches = StreamBatches(train_ids, B, T, full_windows=True, device=device, name="training split", part=share)
    val_name = "validation file" if found.val_document else f"validation split ({train_config.val_frac:g} of the text)"
    sample = train_config.val_chars or None  # 0: the whole split
    val_batches = StreamBatches(
        val_ids, B, T, full_windows=False, device=device, name=val_name, part=share, sample=sample
    )
    prepare_out_dir(out_dir)
    run = TrainingRun(
        vocab=vocab,
        model=model.to(device),
        train_config=train_config,
        corpus=corpus,
        train_batches=train_batches,
        val_batches=val_batches,
        out_dir=out_dir,
        device=device,
        dist=dist,
    )
    run.plan = plan
    if dist.is_main:
        per_process = dataclasses.replace(train_config, batch_size=B // dist.world_size)
        write_run_config(out_dir, corpus.sources, model.config, per_process, base=base, plan=run.plan)
    return run


def _join(device_name: str) -> tuple[torch.device, Distributed]:
    """The device to train on and, under torchrun, this process's place among the others."""
    device = resolve_device(device_name)
    dist = Distributed.from_environment(device)
    return dist.device(device), dist
