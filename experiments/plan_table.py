"""What the plan chooses for each text and budget of issue 30's table, from a fixed speed table.

Usage: python experiments/plan_table.py [--speeds 128=46801,256=20449,...]

``charrnn plan TEXT --time-limit T`` measures the speeds itself; this script takes them as given
(by default the 2-layer speeds measured on this project's 2-core CPU on a quiet machine,
2026-12-07, batch 16 x 100, `python experiments/plan_table.py --measure` measures them here), so
that the table can be made while other runs keep the machine busy.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from charrnn.config import ModelConfig, TrainConfig
from charrnn.training.plan import TextFacts
from charrnn.training.planner import make_plan
from charrnn.training.speeds import Shape, SpeedBook, Workload

QUIET_SPEEDS = {128: 46_801, 256: 20_449, 384: 12_497, 512: 7_789, 768: 3_421, 1024: 2_000}
TEXTS = {  # training characters, validation split's characters, alphabet, documents
    "tinyshakespeare": TextFacts(1_003_855, 111_539, 65, 1),
    "War and Peace": TextFacts(2_876_592, 319_621, 82, 1),
    "100 KB of War and Peace": TextFacts(90_000, 10_000, 67, 1),
    "Python's standard library (31 MB)": TextFacts(28_356_683, 3_150_742, 1_093, 1_786),
}
BUDGETS = (3, 10, 30, 60)


class FixedSpeeds:
    """A speed table in place of measurements."""

    busy = 0.0

    def __init__(self, table: dict[int, float]):
        self.table = table

    def chars_per_second(self, shape: Shape) -> float:
        return self.table[shape.hidden_size]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speeds", default=",".join(f"{h}={s}" for h, s in QUIET_SPEEDS.items()))
    parser.add_argument("--measure", action="store_true", help="measure the speeds on this machine instead")
    parser.add_argument("--markdown", action="store_true", help="one table row per text")
    args = parser.parse_args()
    if args.measure:
        work = Workload(65, 16, 100, "lstm", "full", torch.device("cpu"))
        speeds = SpeedBook(work)
    else:
        speeds = FixedSpeeds({int(h): float(s) for h, s in (pair.split("=") for pair in args.speeds.split(","))})
    if args.markdown:
        print("| text | " + " | ".join(f"{minutes} min" for minutes in BUDGETS) + " |")
        print("|---" * (len(BUDGETS) + 1) + "|")
    for name, split in TEXTS.items():
        text = dataclasses.replace(split, val_chars=min(split.val_chars, TrainConfig().val_chars))  # scored
        plans = [make_plan(text, ModelConfig(), TrainConfig(time_limit=m), {"time_limit"}, speeds) for m in BUDGETS]
        if args.markdown:
            print(f"| {name} | " + " | ".join(_cell(plan) for plan in plans) + " |")
            continue
        print(f"{name}: {text.describe()}")
        for minutes, plan in zip(BUDGETS, plans, strict=True):
            print(f"  {minutes:>3} min  {plan.line().removeprefix('plan: ')}  ({plan.steps:,} steps)")


def _cell(plan) -> str:
    regularised = f"{plan.dropout:g}" + (f" / {plan.weight_drop:g}" if plan.weight_drop else "")
    head = ", adaptive" if plan.head == "adaptive" else ""
    return f"{plan.shape}, {regularised}, lr {plan.lr:g}{head}: {plan.steps:,} steps, {plan.passes:,.1f} passes"


if __name__ == "__main__":
    main()
