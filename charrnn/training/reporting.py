"""What a run tells its user: progress, a line per validation (and metrics.csv), samples, the end.

Progress goes to stderr: on a terminal as a tqdm bar redrawn in place; otherwise (a log file, a
pipe, CI) as a plain line every ``PLAIN_LINE_SECONDS``, so that a long run's log stays readable
instead of filling with carriage-return redraws. Everything else is logged (stdout by default).
Only rank 0 reports. Nothing here reads a number off the device per step: losses are summed where
they live and read when the progress is shown.
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

import torch
from tqdm import tqdm

from charrnn.config import SampleConfig
from charrnn.formats.metrics import append_row
from charrnn.generation.sample import collect, stream_samples
from charrnn.sampling import Sampling
from charrnn.training.run import TrainingRun
from charrnn.training.stopping import StopRules

Log = Callable[[str], None]
REFRESH_SECONDS = 0.5  # how often a terminal's bar shows the latest loss and speed
PLAIN_LINE_SECONDS = 30.0  # how often a progress line is written when stderr is not a terminal
OVERFIT_MARGIN = 0.02  # nats/char: validation this far above its best, training this far below its own


def log_to_stdout(message: str) -> None:
    """Print above the progress bar, flushed so that a log file or pipe sees it at once."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def silent(message: str) -> None:
    """The log of every process but rank 0."""


class Reporter:
    """The progress display, the validation lines and metrics.csv, samples and the final summary."""

    def __init__(
        self, run: TrainingRun, rules: StopRules, log: Log, progress: bool = True, stream: TextIO | None = None
    ):
        self.run = run
        self.rules = rules
        self.log = log if run.dist.is_main else silent
        stream = sys.stderr if stream is None else stream
        shown = progress and run.dist.is_main
        self.plain = shown and not stream.isatty()  # a log: plain lines, no redraws
        self.stream = stream
        self.bar = tqdm(
            total=rules.end_step if math.isfinite(rules.end_step) else None,
            initial=run.progress.step,
            unit="step",
            dynamic_ncols=True,
            file=stream,
            disable=not shown or self.plain,
        )
        self.interval = PLAIN_LINE_SECONDS if self.plain else REFRESH_SECONDS
        config = run.train_config
        self.sample_every = config.eval_every if config.sample_every is None else config.sample_every  # 0: off
        self.chars_per_step = config.batch_size * config.seq_len  # over all processes
        self._loss_sum = torch.zeros((), device=run.device)  # training losses since the last validation
        self._loss_count = 0
        self._train_seconds_at_validation = 0.0
        self._shown = (time.perf_counter(), 0.0, 0, 0.0)  # at the last display: time, loss sum, count, train seconds

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()

    def step(self, loss: torch.Tensor) -> None:
        """Count a training step's loss; show progress when it is time to."""
        self._loss_sum += loss
        self._loss_count += 1
        self.bar.update(1)
        now = time.perf_counter()
        if (self.plain or not self.bar.disable) and now - self._shown[0] >= self.interval:
            self._show_progress(now)

    def _show_progress(self, now: float) -> None:
        """Mean loss and chars/s over the steps since the last display (one read of the device)."""
        loss_sum, train_seconds = self._loss_sum.item(), self.rules.train_seconds
        _, shown_sum, shown_count, shown_seconds = self._shown
        self._shown = (now, loss_sum, self._loss_count, train_seconds)
        if self._loss_count <= shown_count:
            return
        loss = (loss_sum - shown_sum) / (self._loss_count - shown_count)
        rate = self.chars_per_step * (self._loss_count - shown_count) / (train_seconds - shown_seconds)
        val = "-" if self.run.last_val_loss is None else f"{self.run.last_val_loss:.3f}"
        status = f"loss={loss:.3f} val={val} chars/s={rate:,.0f}"
        end_step, left = self.rules.end_step, self.rules.seconds_left()
        if left is not None:  # the end (and so the ETA) is where the time runs out
            step_seconds = train_seconds / self.rules.steps_here
            end_step = min(end_step, self.run.progress.step + max(0, int(left / step_seconds)))
        if self.plain:
            minutes, seconds = divmod(int(self.run.progress.elapsed_seconds), 60)
            print(
                f"step {self.run.progress.step}/{end_step} ({minutes}:{seconds:02d}) {status}",
                file=self.stream,
                flush=True,
            )
        else:
            self.bar.total = end_step
            self.bar.set_postfix_str(status, refresh=False)

    def validation(self, val_loss: float, improved: bool, threads: int | None = None) -> None:
        """Record a validation: a metrics row (in the run and in metrics.csv) and a log line;
        ``threads``: the CPU threads the steps since the last one ran on (at the end of them)."""
        run, progress = self.run, self.run.progress
        seconds = self.rules.train_seconds - self._train_seconds_at_validation
        row = {
            "step": progress.step,
            "epoch": progress.epoch,
            "chars_seen": progress.chars_seen,
            "elapsed_seconds": round(progress.elapsed_seconds, 3),
            "train_loss": self._loss_sum.item() / self._loss_count,
            "val_loss": val_loss,
            "lr": run.optimizer.param_groups[0]["lr"],
            "chars_per_second": self.chars_per_step * self._loss_count / seconds if seconds > 0 else None,
            "threads": threads,
        }
        run.metrics.append(row)
        if run.dist.is_main:
            append_row(run.out_dir, row)
        self._train_seconds_at_validation = self.rules.train_seconds
        self._loss_sum.zero_()
        self._loss_count = 0
        self._shown = (self._shown[0], 0.0, 0, self.rules.train_seconds)
        minutes, secs = divmod(int(row["elapsed_seconds"]), 60)
        self.log(
            f"step {row['step']} ({minutes}:{secs:02d}): train loss {row['train_loss']:.4f}, "
            f"val loss {val_loss:.4f} ({val_loss / math.log(2):.3f} bits/char)" + (" *best*" if improved else "")
        )

    @property
    def sample_due(self) -> bool:
        return bool(self.sample_every) and self.run.dist.is_main and self.rules.due(self.sample_every)

    def sample(self) -> None:
        """Log a short sample from the model as it is now.

        Always the same seed and an empty prime, so that successive samples differ only by what
        the model has learnt. Sampling draws from its own generator and leaves the model's
        weights and mode as they were, so training (and exact resume) is unaffected.
        """
        run, config = self.run, self.run.train_config
        sampling = Sampling()
        pieces = stream_samples(
            run.model, run.vocab, SampleConfig.prime, config.sample_length, sampling, seed=config.seed
        )
        lines = collect(pieces, 1)[0].replace("\r", "").split("\n")
        header = f"  sample at step {run.progress.step} (temperature {sampling.temperature:g}):"
        self.log("\n".join([header, *(f"  | {line}" for line in lines)]))

    def ended(self, signum: int | None) -> None:
        """Why the run stopped, where its checkpoints are, and what to type next."""
        run = self.run
        message = self.rules.message()
        if message:
            self.log(message)
        last = run.out_dir / "last.pt"
        if signum:
            self.log(f"stopped by {signal.Signals(signum).name} at step {run.progress.step}; saved {last}")
        note = overfitting_note(run.metrics, finetuning=run.base is not None, planned=run.plan is not None)
        if note:
            self.log(note)
        best = "n/a" if run.best_val_loss is None else f"{run.best_val_loss:.4f} nats/char"
        self.log(f"step {run.progress.step}: best val loss {best}; checkpoints in {run.out_dir}")
        if signum:
            self.log(f"resume with: charrnn train --resume {last}")
        else:
            self.log(f'generate with: charrnn generate {shlex.quote(str(run.out_dir / "best.pt"))} --prime "..."')


def overfitting_note(metrics: list[dict], *, finetuning: bool = False, planned: bool = False) -> str | None:
    """A line for a run whose validation loss climbed back up while its training loss kept falling.

    Such a run learnt this text by heart after its best step: best.pt still holds that step, but
    the time after it was wasted, and a user giving a longer budget gets no better model. The line
    says so and what helps (measured in docs/results.md). None for any other run.
    """
    rows = [
        row for row in metrics if isinstance(row.get("val_loss"), float) and isinstance(row.get("train_loss"), float)
    ]
    if len(rows) < 3:
        return None
    best = min(rows, key=lambda row: row["val_loss"])
    last = rows[-1]
    climbed = last["val_loss"] - best["val_loss"] >= OVERFIT_MARGIN
    still_learning = best["train_loss"] - last["train_loss"] >= OVERFIT_MARGIN
    if not (climbed and still_learning):
        return None
    # A fine-tune keeps its base model's architecture, weight drop included: only dropout is open.
    remedy = "a higher --dropout" if finetuning else "--weight-drop 0.3 --dropout 0.25"
    advice = f"a run this long needs {remedy}, or more text"
    if planned:  # the plan chose the regularisation for this many passes, and it was not enough
        advice = f"more text would help, or a budget that ends near step {best['step']}"
    return (
        f"note: the model overfits: val loss rose from {best['val_loss']:.4f} (step {best['step']}, kept in "
        f"best.pt) to {last['val_loss']:.4f} while train loss fell to {last['train_loss']:.4f}; {advice} "
        "(docs/training.md#overfitting)"
    )
