"""charrnn's training step vs a minimal hand-written nn.LSTM loop of the same shapes.

Usage: python benchmarks/train_step.py [--quick] [--shapes BIG,SMALL]

"charrnn" is the path `charrnn train` runs, one call of ``train_one_step`` per step: the data
window, the forward pass, the loss, backward, clipping, the optimizer, the divergence check, the
bookkeeping and the progress display (plain lines into /dev/null, as in a log). Validation and checkpoint writes are
pushed past the end: they are not per-step costs. "minimal" is the loop the PyTorch tutorials
write: one-hot inputs, nn.LSTM, dropout, Linear, cross-entropy, Adam, clipping, the state
detached; the same model as charrnn's (dropout after every LSTM layer), so the ratio measures the
per-step overhead and nothing else. Both train on tinyshakespeare with the same sizes; steps are
timed alternately (A B A B ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, print_table, training_step  # noqa: E402

from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.training.policy import start_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
# The guide's standard shapes: (layers, hidden, batch, seq).
SHAPES = {"BIG": (2, 512, 64, 100), "SMALL": (2, 128, 32, 64)}
DROPOUT = 0.1  # charrnn's default, in both loops


class MinimalLoop:
    """A plain char-RNN training loop, written the way most tutorials write it."""

    def __init__(self, ids: torch.Tensor, vocab_size: int, layers: int, hidden: int, batch: int, seq: int):
        torch.manual_seed(0)
        self.lstm = nn.LSTM(vocab_size, hidden, layers, batch_first=True, dropout=DROPOUT)
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(hidden, vocab_size)
        self.params = [*self.lstm.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=2e-3)
        stream_len = (len(ids) - 1) // batch
        self.x = ids[: batch * stream_len].view(batch, stream_len)  # (B, n)
        self.y = ids[1 : batch * stream_len + 1].view(batch, stream_len)
        self.vocab_size, self.hidden, self.seq = vocab_size, hidden, seq
        self.windows = stream_len // seq
        self.window = 0
        self.state = None

    def step(self) -> None:
        start = self.window * self.seq
        x = self.x[:, start : start + self.seq]  # (B, T)
        y = self.y[:, start : start + self.seq]
        inputs = F.one_hot(x, self.vocab_size).float()  # (B, T, V)
        outputs, state = self.lstm(inputs, self.state)  # (B, T, H)
        logits = self.head(self.dropout(outputs).reshape(-1, self.hidden))  # (B·T, V)
        loss = F.cross_entropy(logits, y.reshape(-1))
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        self.state = (state[0].detach(), state[1].detach())
        self.window = (self.window + 1) % self.windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 3 minutes)")
    parser.add_argument("--shapes", default="BIG,SMALL", help="comma-separated: BIG, SMALL")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as workdir, open(os.devnull, "w") as devnull:
        for shape in args.shapes.split(","):
            layers, hidden, batch, seq = SHAPES[shape]
            rounds = {"BIG": 12, "SMALL": 60}[shape] if args.quick else {"BIG": 40, "SMALL": 200}[shape]
            far = 10**9  # no validation or checkpoint inside the timed steps
            run = start_run(
                BOOK,
                ModelConfig(hidden, layers, DROPOUT),
                TrainConfig(batch_size=batch, seq_len=seq, max_steps=far, eval_every=far, save_every=far),
                out_dir=Path(workdir) / shape,
                device="cpu",
                log=lambda message: None,
            )
            step = training_step(run, stream=devnull)  # progress as in a log: a plain line now and then
            book_ids = run.train_batches.inputs.reshape(-1).long()  # the training split, in order
            minimal = MinimalLoop(book_ids, len(run.vocab), layers, hidden, batch, seq)
            chars = batch * seq
            series = interleave(
                [("charrnn train_one_step", step, chars), ("minimal nn.LSTM loop", minimal.step, chars)],
                rounds=rounds,
                warmup=2,
            )
            title = (
                f"{shape}: {layers} x {hidden} LSTM, batch {batch}, seq {seq}, V {len(run.vocab)}; {rounds} steps each"
            )
            print_table(title, series, "training chars/s")
            print_ratio("charrnn / minimal", series[0], series[1], target="median >= 0.95")


if __name__ == "__main__":
    main()
