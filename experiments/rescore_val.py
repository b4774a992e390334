"""Score a run's checkpoint on its own validation split: the whole split, or the --val-chars sample
that validation scores now.

Usage: python experiments/rescore_val.py TEXT CHECKPOINT... [--val-chars N] [--threads 1]

Runs made before --val-chars existed scored the whole split; on a text whose split is longer
than the sample (the 31 MB collection of docs/results.md) this puts old and new runs on one footing.
The split is laid out exactly as training laid it out, from the checkpoint's own settings.
"""

from __future__ import annotations

import argparse

import torch

from charrnn.core.corpus import TextFormat, lay_out, scan
from charrnn.core.data import StreamBatches
from charrnn.formats.checkpoint import Checkpoint
from charrnn.generation.evaluate import loss_sum


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("text", help="the text (file or folder) the runs trained on")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--val-chars", type=int, default=500_000, help="0: the whole split")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        checkpoint = Checkpoint.load(path)
        config = checkpoint.train_config(path)
        text_format = TextFormat.of(config)
        found = scan([args.text], text_format, val_file=config.val_file, line_items=config.line_items, warn=print)
        layout = {"val_frac": config.val_frac, "line_items": config.line_items, "seed": config.seed}
        _, _, val_ids = lay_out(found, checkpoint.vocab, text_format, **layout)
        sample = args.val_chars or None
        batches = StreamBatches(val_ids, config.batch_size, config.seq_len, full_windows=False, sample=sample)
        total, count = loss_sum(checkpoint.model(), batches)
        print(f"{path}: {total / count:.4f} nats/char over {count:,} of the split's {len(val_ids):,} characters")


if __name__ == "__main__":
    main()
