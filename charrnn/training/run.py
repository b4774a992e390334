"""One training run's complete, explicit state, and the operations on it: a step, a validation, a save.

Everything a run is goes into its checkpoints, so that stopping after step k and resuming gives,
on the CPU, bit-for-bit the weights of a run that never stopped: model, optimizer, data position
(epoch, window), the carried hidden state and the RNG states (dropout). Who builds a run, and what a
resume may change, is ``charrnn.training.policy``; when it steps, stops and reports is ``loop``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from charrnn.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from charrnn.core.cells import State
from charrnn.core.corpus import Corpus
from charrnn.core.data import StreamBatches
from charrnn.core.heads import AdaptiveHead
from charrnn.core.model import CharRNN, detach
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint, Progress, RngStates
from charrnn.generation.evaluate import loss_sum
from charrnn.training.distributed import Distributed
from charrnn.training.precision import resolve_precision


class TrainingRun:
    """What a run trains (model, data, configs), where it is (progress, hidden state, scores) and how."""

    def __init__(
        self,
        *,
        vocab: Vocab,
        model: CharRNN,
        train_config: TrainConfig,
        corpus: Corpus,
        train_batches: StreamBatches,
        val_batches: StreamBatches,
        out_dir: Path,
        device: torch.device,
        dist: Distributed,
    ):
        self.vocab = vocab
        self.model = model
        self.train_config = train_config
        self.corpus = corpus
        self.train_batches = train_batches
        self.val_batches = val_batches
        self.out_dir = out_dir
        self.device = device
        self.dist = dist
        # Under torchrun the training forward goes through DDP, which averages the gradients of
        # all processes during backward; validation and checkpoints use the plain model.
        # An adaptive head's rare clusters get no gradient in a window without their characters.
        unused = model.config.head == "adaptive"
        self.trained_model = DistributedDataParallel(model, find_unused_parameters=unused) if dist.enabled else model
        # The fused kernel updates each tensor in one pass instead of about eight: on a 2-core CPU
        # it halves the optimizer's share of a large-alphabet step (docs/performance.md).
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, fused=fused)
        self.precision = resolve_precision(train_config.precision, device)
        self.scaler = self.precision.grad_scaler()  # a pass-through unless fp16
        self.guard = DivergenceGuard(device)
        self.progress = Progress()
        self.state: State = model.init_state(train_batches.batch_size)  # this process's streams
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.metrics: list[dict] = []  # one row per validation, saved in every checkpoint
        self.base: dict[str, str] | None = None  # a fine-tuning run's base model: {path, sha256}
        self.plan: dict | None = None  # how a planned run was planned: {line, reasons, shape}

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def rank_characters(self) -> None:
        """Sort an adaptive head's characters by their counts in the whole training split (every
        process's streams): a new run's first act. A no-op for the full head."""
        if isinstance(self.model.head, AdaptiveHead):
            counts = torch.bincount(self.train_batches.targets.reshape(-1).long(), minlength=len(self.vocab))
            totals = self.dist.sum(counts.double().tolist(), self.device)  # (V,) over all processes
            self.model.head.sort_by(torch.tensor(totals))

    def total_steps(self) -> float:
        """The step at which this run ends: the earlier of --max-steps and --max-epochs.

        Without either, a run with a --time-limit has no last step (infinity: only its budget ends
        it). An unplanned run (--plan off, or one from before plans) without --max-epochs or
        --time-limit also stops after DEFAULT_EPOCHS passes, as charrnn 0.5 did; a planned one
        trains its --max-steps (a planned run given no budget has steps from its plan).
        """
        config = self.train_config
        epochs = config.max_epochs
        if epochs is None and config.time_limit is None and (config.plan == "off" or config.max_steps is None):
            epochs = DEFAULT_EPOCHS
        limits = [config.max_steps] if config.max_steps is not None else []
        if epochs is not None:
            limits.append(epochs * self.train_batches.num_windows)
        return min(limits, default=math.inf)

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimizer step at rate ``lr`` on the next window; returns its loss in nats per character.

        The loss comes back as a 0-dim tensor on the device: turning it into a number would make
        the host wait for a GPU, so callers read losses in bulk, now and then.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.train_batches.window(self.progress.window)  # (B, T) each
        with self.precision.autocast():
            loss, state = self.trained_model(x, self.state, targets=y)  # mean over B·T, float32
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        max_norm = self.train_config.grad_clip if self.train_config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # Under fp16 the scaler itself skips steps whose gradients overflow (and lowers the
        # scale); only a non-finite loss means the run diverged.
        finite = torch.isfinite(loss) if self.scaler.is_enabled() else torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.guard.observe(finite, self.progress.step + 1, loss)
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

    def validate(self) -> tuple[float, bool]:
        """Score the whole val split: (loss in nats per character, whether it is a new best).

        A new best is saved as best.pt at once.
        """
        self.guard.check(self.progress.step)
        # Each process scores its own streams; the sums over all processes give the split's mean.
        with self.precision.autocast():
            total, count = self.dist.sum(list(loss_sum(self.model, self.val_batches)), self.device)
        val_loss = total / count
        self.last_val_loss = val_loss
        improved = self.best_val_loss is None or val_loss < self.best_val_loss
        if improved:
            self.best_val_loss = val_loss
            self.save("best.pt")
        return val_loss, improved

    def save(self, name: str) -> Path:
        """Write the whole run state to ``out_dir/name`` atomically (rank 0 writes; all wait)."""
        path = self.out_dir / name
        self.guard.check(self.progress.step)
        checkpoint = self.snapshot()  # every process takes part: it gathers their state
        failure = None
        if self.dist.is_main:
            try:
                checkpoint.save(path)
            except CharRNNError as exc:
                failure = exc
        if self.dist.max(int(failure is not None), self.device):  # also the barrier after the write
            raise failure or CharRNNError(f"rank 0 could not write {path}; see its message")
        return path

    def snapshot(self) -> Checkpoint:
        """Everything needed to generate and to resume.

        Under torchrun this is a collective: the hidden state of every process's streams and
        every process's RNG state are gathered, so the checkpoint describes the whole run.
        """
        rng = RngStates(torch=self._gather_rng(torch.get_rng_state()), python=random.getstate())
        if self.device.type == "cuda":
            rng.cuda = self._gather_rng(torch.cuda.get_rng_state(self.device))
        return Checkpoint(
            model_config=self.model_config,
            vocab=self.vocab,
            model_state=self.model.state_dict(),
            saved_train_config=dataclasses.asdict(self.train_config),
            corpus=self.corpus,
            base=self.base,
            plan=self.plan,
            progress=self.progress,
            optimizer_state=self.optimizer.state_dict(),
            scaler_state=self.scaler.state_dict(),  # {} unless fp16
            hidden_state=[self.dist.gather(t.detach(), dim=1, device=self.device) for t in self.state],  # (L, B, H)
            processes=self.dist.world_size,
            rng=rng,
            best_val_loss=self.best_val_loss,
            last_val_loss=self.last_val_loss,
            metrics=self.metrics,
        )

    def _gather_rng(self, state: torch.Tensor) -> list[torch.Tensor]:
        return list(self.dist.gather(state[None], dim=0, device=self.device))  # P states


def restore(run: TrainingRun, checkpoint: Checkpoint) -> None:
    """Take over optimizer, position, hidden state, scores and RNG states from a checkpoint.

    The RNG states are set last, after everything that might draw random numbers.
    """
    run.optimizer.load_state_dict(checkpoint.optimizer_state)
    for group in run.optimizer.param_groups:  # a resume may change the learning rate
        group["lr"] = run.train_config.lr
    if checkpoint.scaler_state and run.scaler.is_enabled():  # fp16 then and now
        run.scaler.load_state_dict(checkpoint.scaler_state)
    run.progress = dataclasses.replace(checkpoint.progress)
    run.guard.checked_step = run.progress.step
    expected = (run.model_config.num_layers, run.train_config.batch_size, run.model_config.hidden_size)
    saved_state = checkpoint.hidden_state  # over all the run's streams
    if len(saved_state) != run.model.cell.state_size or any(tuple(t.shape) != expected for t in saved_state):
        raise CharRNNError("the checkpoint's hidden state does not fit its own config")
    share = run.train_batches.batch_size
    rows = slice(run.dist.rank * share, (run.dist.rank + 1) * share)
    run.state = tuple(t[:, rows].to(run.device) for t in saved_state)  # this process's streams
    if run.progress.window >= run.train_batches.num_windows:  # the text got shorter
        run.progress.window = 0
        run.progress.epoch += 1
        run.state = run.model.init_state(share)
    run.base = checkpoint.base
    run.best_val_loss = checkpoint.best_val_loss
    run.last_val_loss = checkpoint.last_val_loss
    run.metrics = list(checkpoint.metrics)
    rng = checkpoint.rng
    exact = len(rng.torch) == run.dist.world_size  # the same number of processes as saved
    mine = run.dist.rank if exact else 0
    torch.set_rng_state(rng.torch[mine])
    if rng.cuda and run.device.type == "cuda":
        torch.cuda.set_rng_state(rng.cuda[min(mine, len(rng.cuda) - 1)], run.device)
    if not exact and run.dist.rank:  # re-shared streams: fresh, distinct dropout draws
        torch.manual_seed(run.train_config.seed + run.dist.rank + run.progress.step)
    random.setstate(rng.python)


class DivergenceGuard:
    """Stops a run whose loss or gradients stop being finite, before any bad weights are saved.

    Reading a number off a GPU waits for all queued work, so there the check is deferred: a flag
    collects it on the device, and ``check`` reads it before anything is validated or saved. On
    the CPU a read is free, so each step is checked as it happens.
    """

    def __init__(self, device: torch.device):
        self.each_step = device.type == "cpu"
        self._finite = torch.ones((), dtype=torch.bool, device=device)
        self.checked_step = 0  # the last step known to be finite

    def observe(self, finite: torch.Tensor, step: int, loss: torch.Tensor) -> None:
        if not self.each_step:
            self._finite &= finite
        elif not finite.item():
            raise _diverged(f"at step {step} (loss {loss.item()}): the step was not applied")

    def check(self, step: int) -> None:
        """Raise if any step since the last check had a non-finite loss or gradient."""
        if not self.each_step and not self._finite.item():
            raise _diverged(f"between steps {self.checked_step + 1} and {step}")
        self.checked_step = step


def _diverged(when: str) -> CharRNNError:
    return CharRNNError(
        f"training diverged {when}; the checkpoints on disk keep the last good weights. "
        "Resume from last.pt with a lower --lr"
    )
