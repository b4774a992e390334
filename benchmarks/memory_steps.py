"""Training memory against the number of steps: it should stay flat.

Usage: python benchmarks/memory_steps.py [--quick]

Trains the SMALL shape (2 x 128, batch 32, seq 64) on tinyshakespeare through ``fit``,
the body of `charrnn train`, with a validation and a checkpoint write every 250 steps, and prints
the process's resident memory (VmRSS), the number of live tensors and the length of the metrics
history as the steps go by. A leak (a loss kept with its graph, a state never detached, a history
that keeps tensors) shows up as growth between the first checkpoint and the last.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
import warnings
from pathlib import Path

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.training.loop import fit
from charrnn.training.policy import start_run

BOOK = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
EVERY = 250  # validation and checkpoint interval, in steps


def resident_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmRSS"))
    return int(kb) / 1024


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on some deprecated torch objects warns
        warnings.simplefilter("ignore")
        return sum(1 for thing in gc.get_objects() if isinstance(thing, torch.Tensor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,500 steps instead of 6,000 (under 3 minutes)")
    args = parser.parse_args()
    total = 1500 if args.quick else 6000
    marks = {EVERY, 2 * EVERY, total // 2, total}

    with tempfile.TemporaryDirectory() as workdir:
        config = TrainConfig(batch_size=32, seq_len=64, max_steps=total, eval_every=EVERY, save_every=EVERY)
        run = start_run(
            BOOK,
            ModelConfig(128, 2, 0.1),
            config,
            out_dir=Path(workdir) / "run",
            device="cpu",
            log=lambda message: None,
        )
        print(f"torch {torch.__version__}; SMALL 2 x 128, batch 32, seq 64; validation and save every {EVERY} steps")
        print(f"  {'step':>6} {'RSS MB':>8} {'tensors':>8} {'metrics rows':>13}")
        rows = []
        for step in sorted(marks):  # each a multiple of EVERY: fit's end is a validation and save anyway
            run.train_config = dataclasses.replace(config, max_steps=step)
            fit(run, log=lambda message: None, progress_bar=False)
            rows.append((step, resident_mb(), live_tensors(), len(run.metrics)))
            print(f"  {step:>6} {rows[-1][1]:>8.1f} {rows[-1][2]:>8} {rows[-1][3]:>13}")
    (first_step, first_mb, first_tensors, _), (last_step, last_mb, last_tensors, _) = rows[1], rows[-1]
    print(
        f"from step {first_step} to {last_step}: RSS {last_mb - first_mb:+.1f} MB "
        f"(ratio {last_mb / first_mb:.3f}), live tensors {last_tensors - first_tensors:+d}   (target: flat)"
    )


if __name__ == "__main__":
    main()
