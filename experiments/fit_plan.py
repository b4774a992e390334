"""Fit the plan's loss rule to measured runs (charrnn/training/scaling.py holds the result).

Usage: python experiments/fit_plan.py [experiments/plan_runs.csv] [--leave-one-out]

Needs scipy (`pip install scipy`; only this script does). Each row of the CSV is one finished run:
its text, the characters it trains on (U), its shape, its steps (D = steps x 1,600 characters)
and its best validation loss. The model fitted is

    loss = E(text) + a / N^alpha + b / D_eff^beta

with N the recurrent parameters and D_eff the characters seen, repeated passes discounted with
the scale R (``LossFit.effective_chars``). E is one number per text (its own floor); a, alpha,
b, beta and R are shared by every text, and they are what the plan uses. The script prints the
fitted values as the line to paste into scaling.py, each run's residual, and with
--leave-one-out each run's error when it is predicted from a fit to the others.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from charrnn.training.scaling import recurrent_parameters
from charrnn.training.speeds import Shape


@dataclass(frozen=True)
class LossFit:
    """loss - E(text) ≈ a / N_eff^alpha + b / D_eff^beta: N recurrent parameters, D characters seen,
    both discounted past what U characters of text can feed (``effective``)."""

    a: float
    alpha: float
    b: float
    beta: float
    repeat_scale: float  # R_D: passes beyond the first are worth less and less, on this scale
    chars_per_parameter: float  # U characters feed about U / this parameters at full value
    excess_scale: float  # R_N: parameters beyond those are worth less and less, on this scale

    def effective_chars(self, seen: float, unique: float) -> float:
        return effective(seen, unique, self.repeat_scale)

    def effective_parameters(self, parameters: float, unique: float) -> float:
        return effective(parameters, unique / self.chars_per_parameter, self.excess_scale)

    def excess(self, parameters: float, seen: float, unique: float) -> float:
        """Predicted loss above the text's own floor, in nats per character."""
        n_eff = self.effective_parameters(parameters, unique)
        return self.a / n_eff**self.alpha + self.b / self.effective_chars(seen, unique) ** self.beta


def effective(amount: float, useful: float, scale: float) -> float:
    """``amount`` counted in full up to ``useful``, and beyond it with returns that fade on ``scale``
    (Muennighoff et al., 2023): at most ``useful`` x (1 + scale)."""
    if amount <= useful:
        return amount
    return useful * (1 + scale * (1 - math.exp(-(amount / useful - 1) / scale)))


HERE = Path(__file__).resolve().parent
CHARS_PER_STEP = 16 * 100
FIT_LR = 0.003  # the rate of every run of the first grid


def read_runs(path: Path) -> list[dict]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    runs = []
    for row in csv.DictReader(lines):
        if float(row["lr"]) != FIT_LR:
            continue  # the law is fitted at one learning rate: the runs at others measured the rate
        row["parameters"] = recurrent_parameters(Shape(int(row["layers"]), int(row["hidden"])))
        row["seen"] = int(row["steps"]) * CHARS_PER_STEP
        row["unique"] = int(row["train_chars"])
        row["loss"] = float(row["best_val"])
        runs.append(row)
    return runs


def unpack(theta: np.ndarray, texts: list[str]) -> tuple[dict[str, float], LossFit]:
    floors = dict(zip(texts, theta[: len(texts)], strict=True))
    log_a, alpha, log_b, beta, log_r, log_c, log_rn = theta[len(texts) :]
    fit = LossFit(math.exp(log_a), alpha, math.exp(log_b), beta, math.exp(log_r), math.exp(log_c), math.exp(log_rn))
    return floors, fit


def predict(runs: list[dict], floors: dict[str, float], fit: LossFit) -> np.ndarray:
    return np.array([floors[r["text"]] + fit.excess(r["parameters"], r["seen"], r["unique"]) for r in runs])


def fit_runs(runs: list[dict], texts: list[str]) -> tuple[dict[str, float], LossFit]:
    losses = np.array([r["loss"] for r in runs])
    shared = [math.log(20.0), 0.3, math.log(50.0), 0.3, math.log(15.0), math.log(0.2), math.log(5.0)]
    start = np.array([1.0] * len(texts) + shared)
    low = [0.0] * len(texts) + [-10, 0.05, -10, 0.05, math.log(1.0), math.log(0.001), math.log(0.1)]
    high = [3.0] * len(texts) + [15, 1.5, 15, 1.5, math.log(200.0), math.log(100.0), math.log(100.0)]

    def residuals(theta: np.ndarray) -> np.ndarray:
        floors, fit = unpack(theta, texts)
        return predict(runs, floors, fit) - losses

    result = least_squares(residuals, start, bounds=(low, high))
    return unpack(result.x, texts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="?", default=HERE / "plan_runs.csv", type=Path)
    parser.add_argument("--leave-one-out", action="store_true")
    args = parser.parse_args()
    runs = read_runs(args.runs)
    texts = sorted({r["text"] for r in runs})
    floors, fit = fit_runs(runs, texts)
    predicted = predict(runs, floors, fit)
    print(f"{len(runs)} runs, {len(texts)} texts")
    print(
        f"LOSS_FIT = LossFit(a={fit.a:.4g}, alpha={fit.alpha:.4g}, b={fit.b:.4g}, beta={fit.beta:.4g}, "
        f"repeat_scale={fit.repeat_scale:.4g}, chars_per_parameter={fit.chars_per_parameter:.4g}, "
        f"excess_scale={fit.excess_scale:.4g})"
    )
    print("floors E(text): " + ", ".join(f"{text} {value:.4f}" for text, value in floors.items()))
    print(f"{'run':<18} {'N':>9} {'D':>11} {'passes':>7} {'best val':>9} {'fit':>7} {'error':>7}")
    for run, value in zip(runs, predicted, strict=True):
        passes = run["seen"] / run["unique"]
        print(
            f"{run['run']:<18} {run['parameters']:>9,} {run['seen']:>11,} {passes:>7.1f} {run['loss']:>9.4f} "
            f"{value:>7.4f} {value - run['loss']:>+7.4f}"
        )
    errors = predicted - np.array([r["loss"] for r in runs])
    print(f"rms error {math.sqrt(float(np.mean(errors**2))):.4f}, largest {float(np.max(np.abs(errors))):.4f}")
    if args.leave_one_out:
        held_out = []
        for i, run in enumerate(runs):
            rest = runs[:i] + runs[i + 1 :]
            if run["text"] not in {r["text"] for r in rest}:
                continue  # its text's floor cannot be known without it
            floors_i, fit_i = fit_runs(rest, sorted({r["text"] for r in rest}))
            held_out.append(float(predict([run], floors_i, fit_i)[0]) - run["loss"])
            print(f"  left out {run['run']:<18} predicted error {held_out[-1]:+.4f}")
        print(f"leave-one-out rms error {math.sqrt(float(np.mean(np.square(held_out)))):.4f}")


if __name__ == "__main__":
    main()
