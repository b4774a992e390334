"""Dynamic evaluation on tinyshakespeare's validation split: how its defaults were chosen, and what
it gains (docs/results.md#dynamic-evaluation).

Usage: python benchmarks/dynamic_eval.py [CHECKPOINT] [--quick]

CHECKPOINT defaults to the bundled model. The validation split is the last 10% of the text, as
training holds it out. Its first half (50,000 characters) chooses the step size, decay and segment
length from a small grid; the second half, which the choice never saw, and the whole split are
then scored with the choice. Every figure is in one stream, so the static figure it is compared
with is ``evaluate --batch-size 1`` (each character with all the text before it as context).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import charrnn
from charrnn.core.data import split_train_val

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
TUNE_CHARS = 50_000
GRID = [  # (lr, decay, segment length)
    (0.01, 0.0, 20),
    (0.03, 0.0, 20),
    (0.1, 0.0, 20),
    (0.05, 0.001, 20),
    (0.1, 0.001, 20),
    (0.2, 0.001, 20),
    (0.1, 0.01, 20),
    (0.1, 0.001, 10),
    (0.1, 0.001, 40),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="the grid on 10,000 characters, and no full split")
    args = parser.parse_args()
    model = charrnn.load(args.checkpoint, "cpu")
    ids = model.vocab.encode(BOOK.read_text(encoding="utf-8"))
    _, val_ids = split_train_val(ids, 0.1)
    val = model.vocab.decode(val_ids)
    tune_chars = 10_000 if args.quick else TUNE_CHARS
    tune, rest = val[:tune_chars], val[tune_chars:]
    print(f"model: {args.checkpoint or 'bundled'}; validation split {len(val):,} characters, tuned on {len(tune):,}")

    def static(text: str) -> float:
        return model.evaluate(text, batch_size=1, seq_len=100).nats_per_char

    def dynamic(text: str, lr: float, decay: float, seq_len: int) -> float:
        return model.evaluate_dynamic(text, seq_len=seq_len, lr=lr, decay=decay).nats_per_char

    print(f"\nfirst {len(tune):,} characters: static {static(tune):.4f} nats/char")
    print("| lr | decay | segment | dynamic | seconds |")
    print("|---|---|---|---|---|")
    scores = {}
    for lr, decay, seq_len in GRID:
        started = time.perf_counter()
        score = scores[lr, decay, seq_len] = dynamic(tune, lr, decay, seq_len)
        print(f"| {lr:g} | {decay:g} | {seq_len} | {score:.4f} | {time.perf_counter() - started:.0f} |")
    lr, decay, seq_len = min(scores, key=scores.get)
    print(f"chosen: lr {lr:g}, decay {decay:g}, segment {seq_len}")
    parts = [("the rest (never tuned on)", rest)] + ([] if args.quick else [("the whole split", val)])
    for name, text in parts:
        before, after = static(text), dynamic(text, lr, decay, seq_len)
        print(f"{name}: static {before:.4f}, dynamic {after:.4f} nats/char ({after - before:+.4f})")


if __name__ == "__main__":
    main()
