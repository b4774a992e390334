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
import tempfile
import time

import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig, TrainConfig
from charrnn.generation.evaluate import loss_sum
from charrnn.training.policy import start_run
from charrnn.training.reporting import silent
from charrnn.training.schedule import learning_rate


def add_weight_drop(rnn: torch.nn.Module, p: float) -> None:
    """DropConnect on the recurrent weights: one mask per window, shared by every stream and step."""
    names = [f"weight_hh_l{layer}" for layer in range(rnn.num_layers)]
    plain_forward = rnn.forward

    def forward(inputs, hx=None):
        if not rnn.training:
            return plain_forward(inputs, hx)
        dropped = {name: F.dropout(getattr(rnn, name), p, True) for name in names}
        rnn.forward = plain_forward
        try:
            return torch.func.functional_call(rnn, dropped, (inputs, hx))
        finally:
            rnn.forward = forward

    rnn.forward = forward


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
    parser.add_argument("--ema", type=float, nargs="*", default=[0, 0.998, 0.999, 0.9995])
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--label", default="")
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
            ModelConfig(args.hidden, args.layers, args.dropout),
            config,
            out_dir=f"{out}/run",
            device="cpu",
            log=silent,
        )
        if args.weight_drop:
            add_weight_drop(run.model.rnn, args.weight_drop)
        if args.weight_decay:
            for group in run.optimizer.param_groups:
                group["weight_decay"] = args.weight_decay
        params = list(run.model.parameters())
        # Bias-corrected EMAs start at zero; decay 0 stands for a tail average, weight 9 / (10 + step).
        averages = {decay: [torch.zeros_like(p) for p in params] for decay in args.ema}
        best: dict[str, tuple[float, int]] = {}
        started = time.perf_counter()
        for step in range(args.steps):
            run.train_step(learning_rate(config, step, step / args.steps))
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
