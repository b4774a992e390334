"""The training loop: truncated BPTT over contiguous streams, validation, checkpoints, resume.

All the state a run needs lives on one ``TrainingRun`` object and goes into every checkpoint, so
that stopping after step k and resuming gives, on the CPU, bit-for-bit the weights of a run that
never stopped: model, optimizer, data position (epoch, window), the carried hidden state and the
RNG states (dropout).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from charrnn import __version__
from charrnn.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from charrnn.config import FIXED_ON_RESUME, ModelConfig, TrainConfig
from charrnn.data import StreamBatches, read_text, split_train_val
from charrnn.devices import resolve_device
from charrnn.distributed import Distributed
from charrnn.errors import CharRNNError
from charrnn.evaluate import loss_sum
from charrnn.metrics import append_row
from charrnn.model import CharRNN, State, count_parameters, detach
from charrnn.precision import Precision, resolve_precision
from charrnn.sample import Sampling, collect, stream_samples
from charrnn.schedule import fraction_done, learning_rate
from charrnn.vocab import UnknownCharactersError, Vocab

Log = Callable[[str], None]


def log_to_stdout(message: str) -> None:
    """Print above the progress bar, flushed so that a log file or pipe sees it at once."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


@dataclass
class Progress:
    """Where a run is. Saved in every checkpoint; ``step`` counts from the run's very start."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # full passes over the training split completed
    window: int = 0  # next window of the current pass
    chars_seen: int = 0  # training characters consumed
    elapsed_seconds: float = 0.0  # training wall time, summed over resumes


@dataclass
class TrainResult:
    """What a call to ``train`` or ``resume`` ended with."""

    out_dir: Path
    step: int
    best_val_loss: float | None
    last_val_loss: float | None
    stopped_by_signal: int | None = None  # SIGINT / SIGTERM number if interrupted


class TrainingRun:
    """The complete, explicit state of one training run, and the operations on it."""

    def __init__(
        self,
        *,
        vocab: Vocab,
        model: CharRNN,
        model_config: ModelConfig,
        train_config: TrainConfig,
        text_path: Path,
        text_chars: int,
        train_batches: StreamBatches,
        val_batches: StreamBatches,
        out_dir: Path,
        device: torch.device,
        dist: Distributed,
    ):
        self.vocab = vocab
        self.model = model
        self.model_config = model_config
        self.train_config = train_config
        self.text_path = text_path
        self.text_chars = text_chars  # length of the training text (split included)
        self.train_batches = train_batches
        self.val_batches = val_batches
        self.out_dir = out_dir
        self.device = device
        self.dist = dist
        # Under torchrun the training forward goes through DDP, which averages the gradients of
        # all processes during backward; validation and checkpoints use the plain model.
        self.trained_model = DistributedDataParallel(model) if dist.enabled else model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
        self.precision: Precision = resolve_precision(train_config.precision, device)
        self.scaler = self.precision.grad_scaler()  # a pass-through unless fp16
        self.state: State = model.init_state(train_batches.batch_size)  # this process's streams
        # Reading a number off a GPU waits for all queued work, so there the divergence check
        # is deferred: the flag below collects it on the device, and check_finite reads it
        # before anything is validated or saved. On the CPU a read is free: each step checks.
        self.check_each_step = device.type == "cpu"
        self._finite = torch.ones((), dtype=torch.bool, device=device)
        self._checked_step = 0  # the last step known to be finite
        self.progress = Progress()
        # Training seconds the schedule and the time limit go by: the same on every process
        # (under torchrun, the processes agree on it; see TrainLoop).
        self.agreed_seconds = 0.0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.metrics: list[dict[str, Any]] = []

    # --- the loop's three operations ------------------------------------------------------------

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the next window; returns its loss in nats per character.

        The loss comes back as a 0-dim tensor on the device: turning it into a number would make
        the host wait for a GPU, so callers read losses in bulk, now and then.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        x, y = self.train_batches.window(self.progress.window)  # (B, T) each
        with self.precision.autocast():
            logits, state = self.trained_model(x, self.state)  # (B·T, V)
        loss = F.cross_entropy(logits.float(), y.reshape(-1))  # targets (B·T,); float32 under autocast
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        max_norm = self.train_config.grad_clip if self.train_config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # Under fp16 the scaler itself skips steps whose gradients overflow (and lowers the
        # scale); only a non-finite loss means the run diverged.
        finite = torch.isfinite(loss) if self.scaler.is_enabled() else torch.isfinite(loss) & torch.isfinite(grad_norm)
        if self.check_each_step:
            if not finite.item():
                raise self._diverged(f"at step {self.progress.step + 1} (loss {loss.item()}): the step was not applied")
        else:
            self._finite &= finite
        self.scaler.step(self.optimizer)
        self.scaler.update()

        # Carried into the next window with its gradient history cut; float32 whatever autocast did.
        self.state = tuple(t.float() for t in detach(state))
        progress = self.progress
        progress.step += 1
        progress.window += 1
        progress.chars_seen += y.numel() * self.dist.world_size  # all processes
        if progress.window == self.train_batches.num_windows:
            # End of a pass: every stream starts again at its beginning, so the state does too.
            progress.epoch += 1
            progress.window = 0
            self.state = self.model.init_state(self.train_batches.batch_size)
        return loss.detach()

    @property
    def time_limit_seconds(self) -> float | None:
        limit = self.train_config.time_limit
        return None if limit is None else limit * 60

    def learning_rate(self) -> float:
        """The schedule's rate for the next step."""
        config = self.train_config
        done = fraction_done(self.progress.step, self.total_steps(), self.agreed_seconds, self.time_limit_seconds)
        return learning_rate(config.lr_schedule, config.lr, self.progress.step, done,
                             warmup_steps=config.warmup_steps, min_lr_ratio=config.min_lr_ratio)  # fmt: skip

    def check_finite(self) -> None:
        """Raise if any step since the last check had a non-finite loss or gradient.

        Called before every validation and save, so that non-finite weights never reach a
        checkpoint. Each CPU step is checked as it happens; on a GPU this is the one read.
        """
        if not self.check_each_step and not self._finite.item():
            raise self._diverged(f"between steps {self._checked_step + 1} and {self.progress.step}")
        self._checked_step = self.progress.step

    def _diverged(self, when: str) -> CharRNNError:
        return CharRNNError(
            f"training diverged {when}; the checkpoints on disk keep the last good weights. "
            "Resume from last.pt with a lower --lr"
        )

    def validate(self, train_loss: float, chars_per_second: float | None = None) -> bool:
        """Score the whole val split, add a metrics row (and to metrics.csv), save best.pt if it improved.

        ``train_loss`` is the mean training loss since the last validation. Returns whether the
        validation loss is a new best.
        """
        self.check_finite()
        # Each process scores its own streams; the sums over all processes give the split's mean.
        with self.precision.autocast():
            total, count = self.dist.sum(list(loss_sum(self.model, self.val_batches)), self.device)
        val_loss = total / count
        self.last_val_loss = val_loss
        progress = self.progress
        self.metrics.append({
            "step": progress.step, "epoch": progress.epoch, "chars_seen": progress.chars_seen,
            "elapsed_seconds": round(progress.elapsed_seconds, 3), "train_loss": train_loss,
            "val_loss": val_loss, "lr": self.optimizer.param_groups[0]["lr"], "chars_per_second": chars_per_second,
        })  # fmt: skip
        if self.dist.is_main:
            append_row(self.out_dir, self.metrics[-1])
        improved = self.best_val_loss is None or val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss
            self.save("best.pt")
        return improved

    def sample_text(self) -> str:
        """A short sample from the model as it is now, framed for the log.

        Always the same seed and an empty prime, so that successive samples differ only by what
        the model has learnt. Sampling draws from its own generator and leaves the model's
        weights and mode as they were, so training (and exact resume) is unaffected.
        """
        config = self.train_config
        sampling = Sampling()
        pieces = stream_samples(self.model, self.vocab, "", config.sample_length, sampling, seed=config.seed)
        text = collect(pieces, 1)[0]
        lines = text.replace("\r", "").split("\n")
        header = f"  sample at step {self.progress.step} (temperature {sampling.temperature:g}):"
        return "\n".join([header, *(f"  | {line}" for line in lines)])

    def save(self, name: str) -> Path:
        """Write the whole run state to ``out_dir/name`` atomically (rank 0 writes; all wait)."""
        path = self.out_dir / name
        self.check_finite()
        payload = self.checkpoint_payload()  # every process takes part: it gathers their state
        failure = None
        if self.dist.is_main:
            try:
                save_checkpoint(payload, path)
            except CharRNNError as exc:
                failure = exc
        if self.dist.max(int(failure is not None), self.device):  # also the barrier after the write
            raise failure or CharRNNError(f"rank 0 could not write {path}; see its message")
        return path

    # --- checkpoint contents --------------------------------------------------------------------

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything needed to generate and to resume, as plain types and CPU tensors.

        Under torchrun this is a collective: the hidden state of every process's streams and
        every process's RNG state are gathered, so the checkpoint describes the whole run.
        """
        # One RNG state per process (each draws its own dropout masks), in rank order.
        rng: dict[str, Any] = {"torch": self._gather_rng(torch.get_rng_state()), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = self._gather_rng(torch.cuda.get_rng_state(self.device))
        hidden_state = [self.dist.gather(t.detach(), dim=1, device=self.device) for t in self.state]  # (L, B, H)
        return {
            "charrnn_version": __version__,
            "torch_version": str(torch.__version__),  # a str subclass that weights_only refuses
            "model_config": dataclasses.asdict(self.model_config),
            "vocab": list(self.vocab.chars),
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "train_config": dataclasses.asdict(self.train_config),
            "text_path": str(self.text_path),
            "text_chars": self.text_chars,
            "optimizer_state": _to_cpu(self.optimizer.state_dict()),
            "scaler_state": _to_cpu(self.scaler.state_dict()),  # {} unless fp16
            "progress": dataclasses.asdict(self.progress),
            "hidden_state": hidden_state,
            "processes": self.dist.world_size,
            "rng": rng,
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "metrics": list(self.metrics),
        }

    def _gather_rng(self, state: torch.Tensor) -> list[torch.Tensor]:
        return list(self.dist.gather(state[None], dim=0, device=self.device))  # P states

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Take over optimizer, position, hidden state, metrics and RNG states from a checkpoint.

        The RNG states are set last, after everything that might draw random numbers.
        """
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        for group in self.optimizer.param_groups:  # a resume may change the learning rate
            group["lr"] = self.train_config.lr
        if checkpoint.get("scaler_state") and self.scaler.is_enabled():  # fp16 then and now
            self.scaler.load_state_dict(checkpoint["scaler_state"])
        self.progress = Progress(**checkpoint["progress"])
        self._checked_step = self.progress.step
        saved_state = checkpoint["hidden_state"]  # [h, c] or [h], each (L, B, H) over all the run's streams
        expected = (self.model_config.num_layers, self.train_config.batch_size, self.model_config.hidden_size)
        if len(saved_state) != self.model.state_size or any(tuple(t.shape) != expected for t in saved_state):
            raise CharRNNError("the checkpoint's hidden state does not fit its own config")
        rows = slice(self.dist.rank * self.train_batches.batch_size, (self.dist.rank + 1) * self.train_batches.batch_size)
        self.state = tuple(t[:, rows].to(self.device) for t in saved_state)  # this process's streams
        if self.progress.window >= self.train_batches.num_windows:  # the text got shorter
            self.progress.window = 0
            self.progress.epoch += 1
            self.state = self.model.init_state(self.train_batches.batch_size)
        self.best_val_loss = checkpoint["best_val_loss"]
        self.last_val_loss = checkpoint["last_val_loss"]
        self.metrics = list(checkpoint["metrics"])
        self.agreed_seconds = self.progress.elapsed_seconds
        rng = checkpoint["rng"]
        torch_states, cuda_states = _rng_states(rng.get("torch")), _rng_states(rng.get("cuda"))
        exact = len(torch_states) == self.dist.world_size  # same number of processes as saved
        mine = self.dist.rank if exact else 0
        torch.set_rng_state(torch_states[mine])
        if cuda_states and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_states[min(mine, len(cuda_states) - 1)], self.device)
        if not exact and self.dist.rank:  # re-shared streams: fresh, distinct dropout draws
            torch.manual_seed(self.train_config.seed + self.dist.rank + self.progress.step)
        random.setstate(rng["python"])

    def total_steps(self) -> int:
        """The step at which this run ends: the earlier of --max-steps and --max-epochs."""
        config = self.train_config
        limits = []
        if config.max_steps is not None:
            limits.append(config.max_steps)
        if config.max_epochs is not None:
            limits.append(config.max_epochs * self.train_batches.num_windows)
        if not limits:
            raise CharRNNError("set --max-steps or --max-epochs so that training can end")
        return min(limits)


def _rng_states(saved: Any) -> list[torch.Tensor]:
    """The per-process RNG states of a checkpoint, as a list (possibly empty).

    Checkpoints from before one state was kept per process hold a single tensor.
    """
    if saved is None:
        return []
    states = [saved] if isinstance(saved, torch.Tensor) else saved
    if not isinstance(states, list) or not states or not all(
        isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in states
    ):
        raise CharRNNError("the checkpoint's saved random-number state is malformed: it cannot be resumed exactly")
    return states


def _to_cpu(value: Any) -> Any:
    """A copy of a nested dict/list structure with every tensor moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


# --- building a run ---------------------------------------------------------------------------


def _build_run(
    *,
    text_path: Path,
    vocab: Vocab | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: Path,
    device: torch.device,
    dist: Distributed,
    model: CharRNN | None = None,
) -> TrainingRun:
    """Read and lay out the text; build a fresh model unless one is given; make the run.

    ``train_config.batch_size`` is the run's total number of streams; each process trains on
    its own equal share of them.
    """
    resolve_precision(train_config.precision, device)  # refuse an impossible choice before reading or writing
    text = read_text(text_path, train_config.decode_errors)
    if vocab is None:
        vocab = Vocab.from_text(text)
    try:
        ids = vocab.encode(text, what=f"text {text_path}")
    except UnknownCharactersError as exc:
        raise CharRNNError(f"{exc}. A resumed run keeps its vocabulary: train a new model on this text") from None
    del text
    train_ids, val_ids = split_train_val(ids, train_config.val_frac)
    share = (dist.rank, dist.world_size)
    train_batches = StreamBatches(
        train_ids, train_config.batch_size, train_config.seq_len,
        full_windows=True, device=device, name="training split", part=share,
    )  # fmt: skip
    val_batches = StreamBatches(
        val_ids, train_config.batch_size, train_config.seq_len, full_windows=False, device=device,
        name=f"validation split ({train_config.val_frac:g} of the text)", part=share,
    )  # fmt: skip
    if model is None:
        torch.manual_seed(train_config.seed)  # the same initial weights in every process
        model = CharRNN(len(vocab), model_config)
        if dist.rank:
            torch.manual_seed(train_config.seed + dist.rank)  # but its own dropout masks
    model.to(device)
    _prepare_out_dir(out_dir)
    return TrainingRun(
        vocab=vocab, model=model, model_config=model_config, train_config=train_config,
        text_path=text_path, text_chars=len(ids), train_batches=train_batches,
        val_batches=val_batches, out_dir=out_dir, device=device, dist=dist,
    )  # fmt: skip


def _join(device_name: str) -> tuple[torch.device, Distributed]:
    """The device to train on and, under torchrun, this process's place among the others."""
    device = resolve_device(device_name)
    dist = Distributed.from_environment(device)
    return dist.device(device), dist


def _refuse_to_overwrite(out_dir: Path) -> None:
    for name in ("last.pt", "best.pt"):
        if (out_dir / name).exists():
            raise CharRNNError(
                f"{out_dir} already holds a run ({name}): continue it with "
                f"`charrnn train --resume {out_dir / 'last.pt'}` or choose another --out"
            )


def _prepare_out_dir(out_dir: Path) -> None:
    """Create the run directory now, so a bad --out fails before any training, not at the first save."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"cannot create the run directory {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise CharRNNError(f"the run directory {out_dir} is not writable: choose another --out")


def start_run(
    text_path: str | Path,
    model_config: ModelConfig = ModelConfig(),
    train_config: TrainConfig = TrainConfig(),
    *,
    out_dir: str | Path | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
) -> TrainingRun:
    """A new run on the text at ``text_path``, ready for ``fit``; nothing is trained yet.

    ``out_dir`` defaults to ``checkpoints/<text file stem>``; a directory that already holds a
    run is refused rather than overwritten. Under torchrun, ``train_config.batch_size`` streams
    go to each process (the run's batch is that times the number of processes).
    """
    text_path = Path(text_path).resolve()
    out_dir = Path(out_dir) if out_dir is not None else Path("checkpoints") / text_path.stem
    _refuse_to_overwrite(out_dir)
    device, dist = _join(device)
    train_config = dataclasses.replace(train_config, batch_size=train_config.batch_size * dist.world_size)
    run = _build_run(
        text_path=text_path, vocab=None, model_config=model_config, train_config=train_config,
        out_dir=out_dir, device=device, dist=dist,
    )  # fmt: skip
    log = log if dist.is_main else _silent
    if dist.enabled:
        log(f"{dist.world_size} processes x {run.train_batches.batch_size} streams = batch {train_config.batch_size}")
    log(
        f"training on {text_path.name}: {run.text_chars:,} characters, vocabulary {len(run.vocab)}, "
        f"{count_parameters(run.model):,} parameters, device {run.device}"
    )
    return run


def resume_run(
    checkpoint_path: str | Path,
    *,
    text_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
) -> TrainingRun:
    """The run saved in ``checkpoint_path``, restored exactly, ready for ``fit``.

    ``overrides`` maps config field names to new values. Run options (``lr``, ``max_steps``, ...)
    change with a notice; the architecture and data layout (``FIXED_ON_RESUME``) cannot change.
    The text is read from the path in the checkpoint unless ``text_path`` is given; checkpoints
    go to the checkpoint's own directory unless ``out_dir`` is given.
    """
    checkpoint_path = Path(checkpoint_path)
    device, dist = _join(device)
    log = log if dist.is_main else _silent
    overrides = dict(overrides or {})
    if "batch_size" in overrides:  # given per process, like a new run's
        overrides["batch_size"] *= dist.world_size
    checkpoint = load_checkpoint(checkpoint_path)
    model, vocab = model_from_checkpoint(checkpoint)
    try:
        saved_train_config = TrainConfig(**checkpoint["train_config"])
    except TypeError as exc:
        raise CharRNNError(f"{checkpoint_path} has a training config this charrnn cannot read: {exc}") from None
    train_config = _apply_overrides(model.config, saved_train_config, overrides, log)
    saved_processes = checkpoint.get("processes", 1)
    if train_config.batch_size % dist.world_size:
        raise CharRNNError(
            f"this run has {train_config.batch_size} streams, which {dist.world_size} processes cannot share "
            f"equally: resume it with a number of processes that divides {train_config.batch_size}"
        )
    if saved_processes != dist.world_size:
        log(
            f"note: the run's {train_config.batch_size} streams were trained by {saved_processes} process(es) "
            f"and now by {dist.world_size}: each takes {train_config.batch_size // dist.world_size}; weights, "
            "optimizer, position and hidden state carry over exactly, dropout draws start afresh"
        )

    saved_text = Path(checkpoint["text_path"])
    if text_path is None:
        if not saved_text.is_file():
            raise CharRNNError(
                f"the run's training text {saved_text} is gone: pass the text file, "
                f"e.g. `charrnn train TEXT_FILE --resume {checkpoint_path}`"
            )
        text_path = saved_text
    text_path = Path(text_path).resolve()

    out_dir = Path(out_dir) if out_dir is not None else checkpoint_path.parent
    if out_dir.resolve() != checkpoint_path.parent.resolve():
        _refuse_to_overwrite(out_dir)
    elif checkpoint_path.name != "last.pt" and (out_dir / "last.pt").is_file():
        _refuse_to_go_back(out_dir / "last.pt", checkpoint["progress"]["step"])

    run = _build_run(
        text_path=text_path, vocab=vocab, model_config=model.config, train_config=train_config,
        out_dir=out_dir, device=device, dist=dist, model=model,
    )  # fmt: skip
    if text_path != saved_text or run.text_chars != checkpoint["text_chars"]:
        log(f"note: resuming on {text_path} ({run.text_chars:,} characters), not the run's own text")
    run.restore(checkpoint)
    log(f"resuming {checkpoint_path} at step {run.progress.step} (epoch {run.progress.epoch})")
    return run


def _silent(message: str) -> None:
    """The log of every process but rank 0."""


def _refuse_to_go_back(last_path: Path, step: int) -> None:
    """Resuming an older checkpoint (say best.pt) in place would overwrite a newer last.pt."""
    last_step = load_checkpoint(last_path)["progress"]["step"]
    if last_step > step:
        raise CharRNNError(
            f"{last_path} is at step {last_step}, later than this checkpoint (step {step}); "
            f"resuming here would overwrite it: pass --out to continue in another directory"
        )


def _apply_overrides(
    model_config: ModelConfig, train_config: TrainConfig, overrides: dict[str, Any], log: Log
) -> TrainConfig:
    """The saved training config with a resume's option changes applied.

    Changing a field in FIXED_ON_RESUME (every model field among them) is refused.
    """
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
            log(f"note: {field.name} changes from {old} to {new}")
    if overrides:
        raise CharRNNError(f"unknown option(s) for resume: {', '.join(sorted(overrides))}")
    return dataclasses.replace(train_config, **changes)


# --- the loop -------------------------------------------------------------------------------


class _StopOnSignal:
    """Turn the first SIGINT / SIGTERM into a request to stop after the current step.

    A second signal ends the process at once, as KeyboardInterrupt (SIGINT) or SystemExit(143)
    (SIGTERM); checkpoint writes are atomic, so the previous last.pt survives it. Handlers are only installed from the main thread.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class TrainLoop:
    """The body of ``fit``, one step per call: the step, its bookkeeping, validation, saves, progress.

    Nothing here reads a number off the device per step: losses are summed where they are, and
    the progress bar shows their mean since its last refresh (about twice a second).
    benchmarks/train_step.py times exactly this against a minimal hand-written nn.LSTM loop.
    """

    refresh_seconds = 0.5  # how often the progress bar's loss and chars/s are brought up to date

    def __init__(self, run: TrainingRun, bar: tqdm, log: Log):
        self.run = run
        self.bar = bar
        self.log = log
        self.end_step = run.total_steps()
        self.ended_early: str | None = None  # why the run ended before end_step: "time limit", "patience"
        # Processes agree on the clock every step on the CPU; on a GPU that read waits for the
        # queued work, so there every few steps.
        self.agree_every = 1 if run.device.type == "cpu" else 8
        self._finish_seconds: float | None = None  # the longest validation + save seen: kept in reserve
        self.chars_per_step = run.train_config.batch_size * run.train_config.seq_len  # over all processes
        self.saved_at: int | None = None
        config = run.train_config
        self.sample_every = config.eval_every if config.sample_every is None else config.sample_every  # 0: off
        self._started = time.perf_counter()
        self._elapsed_before = run.progress.elapsed_seconds
        self._loss_sum = torch.zeros((), device=run.device)  # training losses since the last validation
        self._loss_count = 0
        self._train_seconds = 0.0  # time in training steps (validation and saves excluded)
        self._steps_here = 0  # steps taken by this loop (this session)
        self._train_seconds_at_validation = 0.0
        self._shown = (self._started, 0.0, 0, 0.0)  # at the bar's last refresh: time, loss sum, count, train seconds

    @property
    def done(self) -> bool:
        return self.run.progress.step >= self.end_step or self.ended_early is not None

    def step(self) -> None:
        run, config, progress = self.run, self.run.train_config, self.run.progress
        step_started = time.perf_counter()
        self._loss_sum += run.train_step()
        now = time.perf_counter()
        self._loss_count += 1
        self._steps_here += 1
        self._train_seconds += now - step_started
        progress.elapsed_seconds = self._elapsed_before + now - self._started
        self.bar.update(1)
        if not self.bar.disable and now - self._shown[0] >= self.refresh_seconds:
            self._refresh_bar(now)
        if run.time_limit_seconds is None:
            run.agreed_seconds = progress.elapsed_seconds  # nothing goes by the clock: no need to agree
        elif progress.step % self.agree_every == 0 or progress.step == self.end_step:
            run.agreed_seconds = run.dist.max(round(progress.elapsed_seconds * 1000), run.device) / 1000
            if self._time_is_up():
                self.ended_early = "time limit"
        at_end = progress.step == self.end_step or self.ended_early is not None
        finish_started = time.perf_counter()
        if progress.step % config.eval_every == 0 or at_end:
            self._validate()
            if config.patience is not None and not at_end and validations_since_best(run.metrics) >= config.patience:
                self.ended_early = "patience"
                at_end = True
        if progress.step % config.save_every == 0 or at_end:
            run.save("last.pt")
            self.saved_at = progress.step
        if self.sample_every and run.dist.is_main and (progress.step % self.sample_every == 0 or at_end):
            self.log(run.sample_text())
        finished = time.perf_counter() - finish_started
        self._finish_seconds = max(self._finish_seconds or 0.0, finished)
        if at_end and self.ended_early:
            self.log(self._ended_early_message())

    def _time_is_up(self) -> bool:
        """Whether one more stretch of steps, then the final validation and save, would pass the limit.

        Every process must decide alike, so the decision is agreed (the largest wins).
        """
        run = self.run
        step_seconds = self._train_seconds / max(1, self._steps_here)
        reserve = self._finish_seconds if self._finish_seconds else (
            run.val_batches.num_windows * step_seconds / 2 + 1.0  # no validation timed yet: a guess
        )  # fmt: skip
        up = run.agreed_seconds + self.agree_every * step_seconds + reserve >= run.time_limit_seconds
        return bool(run.dist.max(int(up), run.device))

    def _ended_early_message(self) -> str:
        run = self.run
        if self.ended_early == "patience":
            return (f"stopping at step {run.progress.step}: no new best validation loss in "
                    f"{run.train_config.patience} validations (--patience)")  # fmt: skip
        minutes = run.progress.elapsed_seconds / 60
        return (f"stopping at step {run.progress.step}: the time limit of {run.train_config.time_limit:g} min is "
                f"reached ({minutes:.1f} min trained; the final validation and save take the rest)")  # fmt: skip

    def _refresh_bar(self, now: float) -> None:
        """Mean loss and chars/s over the steps since the last refresh (one read of the device)."""
        loss_sum = self._loss_sum.item()
        _, shown_sum, shown_count, shown_seconds = self._shown
        if self._loss_count > shown_count:
            loss = (loss_sum - shown_sum) / (self._loss_count - shown_count)
            rate = self.chars_per_step * (self._loss_count - shown_count) / (self._train_seconds - shown_seconds)
            val = "-" if self.run.last_val_loss is None else f"{self.run.last_val_loss:.3f}"
            self.bar.set_postfix_str(f"loss={loss:.3f} val={val} chars/s={rate:,.0f}", refresh=False)
            limit = self.run.time_limit_seconds
            if limit is not None:  # the bar's end (and so its ETA) is where the time runs out
                step_seconds = self._train_seconds / self._steps_here
                left = limit - self.run.progress.elapsed_seconds - (self._finish_seconds or 0.0)
                self.bar.total = min(self.end_step, self.run.progress.step + max(0, int(left / step_seconds)))
        self._shown = (now, loss_sum, self._loss_count, self._train_seconds)

    def _validate(self) -> None:
        train_loss = self._loss_sum.item() / self._loss_count
        seconds = self._train_seconds - self._train_seconds_at_validation
        chars_per_second = self.chars_per_step * self._loss_count / seconds if seconds > 0 else None
        self._train_seconds_at_validation = self._train_seconds
        self._loss_sum.zero_()
        self._loss_count = 0
        self._shown = (self._shown[0], 0.0, 0, self._train_seconds)
        improved = self.run.validate(train_loss=train_loss, chars_per_second=chars_per_second)
        row = self.run.metrics[-1]
        minutes, seconds = divmod(int(row["elapsed_seconds"]), 60)
        self.log(
            f"step {row['step']} ({minutes}:{seconds:02d}): train loss {row['train_loss']:.4f}, "
            f"val loss {row['val_loss']:.4f} ({row['val_loss'] / math.log(2):.3f} bits/char)"
            + (" *best*" if improved else "")
        )


def validations_since_best(metrics: list[dict[str, Any]]) -> int:
    """How many validations have gone by since the best one (0 when the last is the best)."""
    losses = [row["val_loss"] for row in metrics]
    if not losses:
        return 0
    best_index = min(range(len(losses)), key=lambda index: (losses[index], index))
    return len(losses) - 1 - best_index


def progress_bar_for(run: TrainingRun, enabled: bool = True) -> tqdm:
    """The tqdm bar ``fit`` draws on stderr (rank 0 only)."""
    return tqdm(
        total=run.total_steps(), initial=run.progress.step, unit="step", dynamic_ncols=True,
        disable=not (enabled and run.dist.is_main), file=sys.stderr,
    )  # fmt: skip


def fit(run: TrainingRun, *, log: Log = log_to_stdout, progress_bar: bool = True) -> TrainResult:
    """Train ``run`` until its step limit or a signal; validate and save along the way and at the end.

    SIGINT / SIGTERM stop it after the current step with last.pt saved; the result says which.
    """
    progress = run.progress
    dist = run.dist
    log = log if dist.is_main else _silent
    end_step = run.total_steps()
    if progress.step >= end_step:
        log(f"nothing to do: the run is at step {progress.step} and stops at {end_step}")
        return _result(run, None)
    limit = run.time_limit_seconds
    if limit is not None and progress.elapsed_seconds >= limit:
        log(f"nothing to do: the run has trained {progress.elapsed_seconds / 60:.1f} min, its --time-limit is "
            f"{run.train_config.time_limit:g}; resume with a larger --time-limit")  # fmt: skip
        return _result(run, None)

    # torchrun passes a signal to every process, not always before the same step: they agree
    # (one tiny all-reduce, a no-op for a single process) so that all stop after the same one.
    # On a GPU that read waits for the queued work, so there they agree every few steps.
    signum = 0  # the signal that stops the run, agreed by all processes
    with _StopOnSignal() as stop, progress_bar_for(run, progress_bar) as bar:
        loop = TrainLoop(run, bar, log)
        while not loop.done and not signum:
            loop.step()
            if progress.step % loop.agree_every == 0:
                signum = dist.max(stop.signum or 0, run.device)
        if not signum:  # stopped at the end, perhaps between two agreements
            signum = dist.max(stop.signum or 0, run.device)
        if signum and loop.saved_at != progress.step:
            run.save("last.pt")
    if signum:
        log(f"stopped by {signal.Signals(signum).name} at step {progress.step}; saved {run.out_dir / 'last.pt'}")
    return _result(run, signum or None)


def _result(run: TrainingRun, signum: int | None) -> TrainResult:
    return TrainResult(
        out_dir=run.out_dir, step=run.progress.step, best_val_loss=run.best_val_loss,
        last_val_loss=run.last_val_loss, stopped_by_signal=signum,
    )  # fmt: skip
