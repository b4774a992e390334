"""Training throughput of `charrnn train` in 1 process vs 2 processes under torchrun (DDP, CPU).

Usage: python benchmarks/ddp_throughput.py [--quick] [--text PATH]

Runs the real command line in fresh processes, alternating the two set-ups (A B A B ...) because
a shared machine's speed drifts, and reads training characters per second from each run's own
checkpoint (characters seen / training seconds, validation and start-up excluded). Both set-ups
train the same global batch: 1 process x 32 streams, and 2 processes x 16 streams.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from charrnn.formats.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--hidden-size", "128", "--num-layers", "2", "--seq-len", "64"]  # the guide's SMALL shape


def run_once(processes: int, text: Path, steps: int, workdir: Path, index: int) -> float:
    out = workdir / f"p{processes}_{index}"
    common = [
        "train",
        str(text),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--eval-every",
        str(10 * steps),
        "--save-every",
        str(10 * steps),
        "--no-progress",
        "--device",
        "cpu",
        *SMALL,
        "--batch-size",
        str(32 // processes),
    ]
    if processes == 1:
        command = [sys.executable, "-m", "charrnn", *common]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(processes),
            "-m",
            "charrnn",
            *common,
        ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    progress = dataclasses.asdict(Checkpoint.load(out / "last.pt").progress)
    return progress["chars_seen"] / progress["elapsed_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (under 3 minutes)")
    parser.add_argument("--text", type=Path, default=ROOT / "corpora" / "tinyshakespeare.txt")
    args = parser.parse_args()
    steps, repeats = (30, 3) if args.quick else (100, 5)

    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as workdir:
        for index in range(repeats):
            for processes in (1, 2):  # interleaved
                rates[processes].append(run_once(processes, args.text, steps, Path(workdir), index))

    print(f"charrnn train, SMALL shape (2 x 128, seq 64), global batch 32, {steps} steps x {repeats} runs each")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available to one process")
    print(f"{'set-up':<28} {'min':>10} {'median':>10} {'max':>10}   training chars/s")
    for processes, label in ((1, "1 process x 32 streams"), (2, "2 processes x 16 streams")):
        values = rates[processes]
        print(f"{label:<28} {min(values):>10,.0f} {statistics.median(values):>10,.0f} {max(values):>10,.0f}")
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    print(
        f"ratio 2 processes / 1 process (per interleaved pair): min {min(ratios):.2f}, "
        f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
