"""Compare training set-ups for the defaults (issue 20): one step-driven run, with averaged weights.

Usage: python experiments/defaults_search.py TEXT --steps 9000 [--lr 3e-3] [--dropout 0.2] ...

Each run trains the real ``TrainingRun`` for a fixed number of steps with a step-driven schedule,
so its result does not depend on how busy the machine is (two can share it). At every validation
it scores the raw weights and, for each ``--ema`` decay, an exponential moving average of them,
and prints one JSON line; the last line is the summary.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.generation.evaluate import loss_sum
from charrnn.training.policy import start_run
from charrnn.training.reporting import silent
from charrnn.training.schedule import learning_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("text")
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--weight-drop", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--min-lr-ratio", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--grad-clip", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam's second-moment decay")
    parser.add_argument("--ema", type=float, nargs="*", default=[0, 0.998, 0.999, 0.9995])
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--rotate", action="store_true", help="start the streams at a new random place in the text every epoch"
    )
    args = parser.parse_args()

    config = TrainConfig(
        batch_size=args.batch,
        seq_len=args.seq,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup,
        grad_clip=args.grad_clip,
        seed=args.seed,
        max_steps=args.steps,
        max_epochs=None,
    )
    with tempfile.TemporaryDirectory() as out:
        run = start_run(
            args.text,
            ModelConfig(args.hidden, args.layers, args.dropout, weight_drop=args.weight_drop),
            config,
            out_dir=f"{out}/run",
            device="cpu",
            log=silent,
        )
        for group in run.optimizer.param_groups:
            group["weight_decay"] = args.weight_decay
            group["betas"] = (group["betas"][0], args.beta2)
        params = list(run.model.parameters())
        # Bias-corrected EMAs start at zero; decay 0 stands for a tail average, weight 9 / (10 + step).
        averages = {decay: [torch.zeros_like(p) for p in params] for decay in args.ema}
        best: dict[str, tuple[float, int]] = {}
        started = time.perf_counter()
        for step in range(args.steps):
            run.train_step(learning_rate(config, step, step / args.steps))
            if args.rotate and run.progress.window == 0:
                rotate_streams(run.train_batches, seed=args.seed * 1000 + run.progress.epoch)
            with torch.no_grad():
                for decay, average in averages.items():
                    weight = 9 / (10 + step) if decay == 0 else 1 - decay
                    torch._foreach_lerp_(average, params, weight)
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                scores = {"raw": score(run)}
                for decay, average in averages.items():
                    correction = 1 if decay == 0 else 1 - decay ** (step + 1)
                    with swapped(params, [a / correction for a in average]):
                        scores[f"ema{decay}"] = score(run)
                for name, value in scores.items():
                    if name not in best or value < best[name][0]:
                        best[name] = (value, step + 1)
                row = {"step": step + 1, "seconds": round(time.perf_counter() - started), **scores}
                print(json.dumps(row), flush=True)
        summary = {"label": args.label, **vars(args), "best": best}
        print(json.dumps(summary), flush=True)


def rotate_streams(batches, seed: int) -> None:
    """Lay the training split out again from a random place (wrapping round its end), so that the
    next pass cuts its windows, and starts its streams, somewhere else. One process only."""
    rows, length = batches.inputs.shape
    if not hasattr(batches, "original"):  # (B·n + 1,) the ids as first laid out
        batches.original = torch.cat([batches.inputs.reshape(-1), batches.targets[-1, -1:]])
    shift = random.Random(seed).randrange(len(batches.original) - 1)
    rotated = torch.roll(batches.original[:-1], -shift)
    rotated = torch.cat([rotated, rotated[:1]])  # the text wraps: its last character is followed by its first
    batches.inputs = rotated[:-1].view(rows, length)
    batches.targets = rotated[1:].view(rows, length)


def score(run) -> float:
    run.model.eval()
    total, count = loss_sum(run.model, run.val_batches)
    run.model.train()
    return round(total / count, 4)


class swapped:
    """Evaluate with other weights in the model's parameters, then put the trained ones back."""

    def __init__(self, params, weights):
        self.params, self.weights = params, weights

    def __enter__(self):
        self.saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, w in zip(self.params, self.weights, strict=True):
                p.copy_(w)

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, w in zip(self.params, self.saved, strict=True):
                p.copy_(w)


if __name__ == "__main__":
    main()
