"""What fine-tuning buys: validation loss after N steps from the bundled Shakespeare model versus
N steps from scratch, on a second text (docs/your-own-text.md).

Usage: python benchmarks/finetune_gain.py [--text ../shared/corpora/warpeace.txt] [--steps 1000]
                                           [--eval-every 100] [--seeds 1 2]

Both runs train the bundled model's architecture (2 x 256 LSTM) with the same batch (16 x 100),
the same steps and seed, and score the same validation split (the last 10% of the text), so the
losses compare character for character. Each takes its own command's defaults, as a user would:

    scratch    charrnn train TEXT --max-steps N                 (lr 3e-3, 100 warm-up steps)
    finetune   charrnn finetune BASE TEXT --extend-vocab --max-steps N   (lr 3e-3, 20 warm-up steps)

The text's characters that Shakespeare lacks (War and Peace has accented letters, for one) are
added with --extend-vocab. Prints the validation loss at every --eval-every steps for each run,
then the table for the docs. Losses are counted in steps, not seconds, so the machine's speed
does not enter; a fine-tuning step costs the same as a training step.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from charrnn.bundled import bundled_model
from charrnn.config import FINETUNE_DEFAULTS, TrainConfig
from charrnn.formats.checkpoint import Checkpoint
from charrnn.training.loop import fit
from charrnn.training.policy import finetune_run, start_run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = ROOT.parent / "shared" / "corpora" / "warpeace.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        metavar="LR:WARMUP",
        help="also fine-tune at these learning rates and warm-ups (e.g. 3e-3:100): which default pays?",
    )
    parser.add_argument("--no-scratch", action="store_true", help="fine-tuning runs only")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    base = bundled_model()
    architecture = Checkpoint.load(base).model_config
    curves: dict[tuple[str, int], list[tuple[int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            common = {"max_steps": args.steps, "eval_every": args.eval_every, "save_every": args.steps, "seed": seed}
            common["sample_every"] = 0
            scratch = TrainConfig(**common)
            tuned = dataclasses.replace(scratch, **FINETUNE_DEFAULTS)
            setups = {} if args.no_scratch else {"scratch": scratch}
            setups["finetune"] = tuned
            for variant in args.variants:
                lr, warmup = variant.split(":")
                setups[f"finetune {variant}"] = dataclasses.replace(scratch, lr=float(lr), warmup_steps=int(warmup))
            for name, config in setups.items():
                out_dir = Path(tmp) / f"{name}-{seed}"
                if name == "scratch":
                    run = start_run(args.text, architecture, config, out_dir=out_dir, device="cpu", log=_quiet)
                else:
                    run = finetune_run(
                        base, args.text, config, extend_vocab=True, out_dir=out_dir, device="cpu", log=_quiet
                    )
                before = _val_loss(run)
                fit(run, log=_quiet, progress_bar=False)
                curve = [(0, before)] + [(row["step"], row["val_loss"]) for row in run.metrics]
                curves[name, seed] = curve
                print(f"{name:18s} seed {seed}: " + "  ".join(f"{s}:{v:.3f}" for s, v in curve), flush=True)
    _table(curves, args.seeds, list(setups))


def _val_loss(run) -> float:
    """The validation loss before any step (the base model's own, after the vocabulary grew)."""
    loss, _ = run.validate()
    run.best_val_loss = None  # not a result of training
    run.metrics.clear()
    return loss


def _table(curves: dict[tuple[str, int], list[tuple[int, float]]], seeds: list[int], names: list[str]) -> None:
    steps = [step for step, _ in curves[names[0], seeds[0]]]
    print(f"\nvalidation loss (nats/char) by steps, median of seeds {seeds} [min-max]")
    headings = {"scratch": "from scratch", "finetune": "fine-tuned from Shakespeare"}
    print("| steps | " + " | ".join(headings.get(name, name) for name in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for i, step in enumerate(steps):
        cells = []
        for name in names:
            values = [curves[name, seed][i][1] for seed in seeds]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]")
        print(f"| {step} | " + " | ".join(cells) + " |")
    best = {name: min(loss for seed in seeds for _, loss in curves[name, seed][1:]) for name in names}
    print("best validation loss of each (what best.pt keeps): " + ", ".join(f"{n} {v:.3f}" for n, v in best.items()))


def _quiet(message: str) -> None:
    pass


if __name__ == "__main__":
    sys.exit(main())
