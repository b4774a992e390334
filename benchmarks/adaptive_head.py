"""The adaptive softmax head against the full one on a large alphabet: speed, then loss per budget.

Usage: python benchmarks/adaptive_head.py LARGE_TEXT [--rounds 12] [--minutes 3] [--seeds 1 2]

LARGE_TEXT is a text with thousands of distinct characters, e.g. from
``python benchmarks/cjk_example.py poems.txt --alphabet 9000 --kb 1000``.

1. Speed. The real training step (``train_one_step``: forward, loss, backward, clipping, Adam) of
   the default model (2 x 256 LSTM, batch 16, seq 100) on three set-ups, timed interleaved:
   tinyshakespeare with the full head (V = 65, the reference), LARGE_TEXT with the full head and
   LARGE_TEXT with the adaptive head. Ratios are per round, against the V = 65 rate.
2. Loss per budget (with --minutes): ``charrnn train LARGE_TEXT --time-limit M --seed S --head H``
   as a user runs it, alternating the heads, and the best validation loss and steps of each run
   (read back with ``charrnn info --json``). Skip with --minutes 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, print_table, training_step  # noqa: E402

from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.training.policy import start_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"


def speed(large_text: Path, rounds: int, workdir: Path) -> None:
    far = 10**9  # no validation or checkpoint inside the timed steps
    config = TrainConfig(max_steps=far, eval_every=far, save_every=far)
    setups = []
    for name, text, head in (
        ("V=65 full (reference)", BOOK, "full"),
        ("large full", large_text, "full"),
        ("large adaptive", large_text, "adaptive"),
    ):
        run = start_run(
            text, ModelConfig(head=head), config, out_dir=workdir / name.split()[0] / head, device="cpu", log=print
        )
        name = name.replace("large", f"V={len(run.vocab)}")
        setups.append((name, training_step(run), config.batch_size * config.seq_len))
    series = interleave(setups, rounds=rounds, warmup=2)
    print_table(f"training step, default model, {rounds} rounds", series, "training chars/s")
    print_ratio(f"{series[1].name} / V=65", series[1], series[0])
    print_ratio(f"{series[2].name} / V=65", series[2], series[0], target="median >= 0.4")
    print_ratio("adaptive / full at the large V", series[2], series[1])


def budget(large_text: Path, minutes: float, seeds: list[int], workdir: Path) -> None:
    results: dict[str, list[tuple[float, int]]] = {"full": [], "adaptive": []}
    for seed in seeds:
        for head in ("full", "adaptive"):
            out = workdir / f"{head}-{seed}"
            command = [sys.executable, "-m", "charrnn", "train", str(large_text), "--head", head]
            command += ["--time-limit", str(minutes), "--seed", str(seed), "--out", str(out)]
            command += ["--no-progress", "--no-sample", "--device", "cpu"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            info = subprocess.run(
                [sys.executable, "-m", "charrnn", "info", str(out / "last.pt"), "--json"],
                check=True,
                capture_output=True,
                text=True,
            )
            facts = json.loads(info.stdout)
            results[head].append((facts["best_val_loss"], facts["step"]))
            print(f"  {head:<9} seed {seed}: best val {facts['best_val_loss']:.4f} nats/char at {facts['step']} steps")
    print(f"best validation loss after {minutes:g} min (mean over seeds {seeds}):")
    for head, rows in results.items():
        losses = [loss for loss, _ in rows]
        spread = max(losses) - min(losses)
        steps = statistics.mean(step for _, step in rows)
        print(f"  {head:<9} {statistics.mean(losses):.4f} (spread {spread:.4f}), {steps:,.0f} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", type=Path)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as workdir:
        if args.rounds:
            speed(args.text, args.rounds, Path(workdir))
        if args.minutes:
            budget(args.text, args.minutes, args.seeds, Path(workdir))


if __name__ == "__main__":
    main()
