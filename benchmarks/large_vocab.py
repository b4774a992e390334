"""Training speed and memory with a large vocabulary (~9,000 characters, like a Chinese book).

Usage: python benchmarks/large_vocab.py [--quick] [--crossover]

A one-hot input is a column lookup in the first layer's weights. charrnn takes it as a lookup
once the vocabulary is large (``charrnn.core.model.ONE_HOT_MAX_VOCAB``), instead of building a
(B, T, V) float tensor and multiplying it by W_ih. Set-ups, timed alternately step by step
(A B A B ...) at charrnn's default sizes (2 x 256, batch 32, seq 100):

    charrnn            the real training step (``train_one_step``), lookup inputs
    charrnn one-hot    the same step with the model forced to explicit float one-hot inputs
    minimal one-hot    the tutorials' loop (benchmarks/train_step.py): float one-hot, nn.LSTM

and charrnn at V = 65 (tinyshakespeare) for scale. The synthetic text draws ~9,000 CJK characters
with Zipf-like frequencies. Peak memory is each set-up's peak RSS in a fresh process (5 steps).
``--crossover`` also times one-hot vs lookup at V = 128 .. 4,096: how the threshold was chosen.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, print_table, training_step  # noqa: E402
from train_step import MinimalLoop  # noqa: E402

from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.training.policy import start_run  # noqa: E402
from charrnn.training.run import TrainingRun  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
LAYERS, HIDDEN, BATCH, SEQ = 2, 256, 32, 100  # charrnn's defaults
FAR = 10**9  # no validation or checkpoint inside the timed steps


def synthetic_text(path: Path, vocab_size: int, num_chars: int, seed: int = 0) -> None:
    """Write ``num_chars`` characters drawn from ``vocab_size`` CJK characters, Zipf-like."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab_size + 1)
    ids = rng.choice(vocab_size, size=num_chars, p=weights / weights.sum())
    ids[:vocab_size] = np.arange(vocab_size)  # every character appears at least once
    code_points = (0x4E00 + ids).astype(np.uint32)  # CJK Unified Ideographs
    path.write_text(code_points.tobytes().decode("utf-32-le"), encoding="utf-8")


def make_run(text: Path, out: Path, input_path: str | None = None) -> TrainingRun:
    run = start_run(
        text,
        ModelConfig(HIDDEN, LAYERS),
        TrainConfig(batch_size=BATCH, seq_len=SEQ, max_steps=FAR, eval_every=FAR, save_every=FAR),
        out_dir=out,
        device="cpu",
        log=lambda message: None,
    )
    if input_path is not None:  # force a path the vocabulary size would not choose
        run.model.forward = functools.partial(run.model.forward, input_path=input_path)
    return run


def make_minimal(run: TrainingRun) -> MinimalLoop:
    return MinimalLoop(run.train_batches.inputs.reshape(-1).long(), len(run.vocab), LAYERS, HIDDEN, BATCH, SEQ)


def peak_rss_mb(text: Path, setup: str) -> float:
    """Peak RSS (MB) of a fresh process that builds ``setup`` on ``text`` and trains 5 steps."""
    code = (
        "import sys, tempfile; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "import large_vocab as lv\n"
        "path = None if sys.argv[3] == 'charrnn' else 'one-hot'\n"
        "run = lv.make_run(Path(sys.argv[2]), Path(tempfile.mkdtemp()) / 'run', path)\n"
        "step = lv.make_minimal(run).step if sys.argv[3] == 'minimal' else lv.training_step(run)\n"
        "for _ in range(5): step()\n"
        # VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's peak.
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])\n"  # kB
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(text), setup],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.split()[-1]) / 1024


def crossover(workdir: Path, rounds: int) -> None:
    print(f"crossover: lookup vs one-hot training step, {LAYERS} x {HIDDEN}, batch {BATCH}, seq {SEQ}")
    for vocab_size in (128, 256, 512, 1024, 2048, 4096):
        text = workdir / f"v{vocab_size}.txt"
        synthetic_text(text, vocab_size, 400_000)
        lookup = training_step(make_run(text, workdir / f"lookup{vocab_size}", "lookup"))
        one_hot = training_step(make_run(text, workdir / f"onehot{vocab_size}", "one-hot"))
        chars = BATCH * SEQ
        series = interleave([("lookup", lookup, chars), ("one-hot", one_hot, chars)], rounds=rounds)
        print_ratio(f"V {vocab_size:>5}: lookup / one-hot speed", series[0], series[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under 3 minutes)")
    parser.add_argument("--crossover", action="store_true", help="also time one-hot vs lookup at V = 128 .. 4,096")
    parser.add_argument("--vocab", type=int, default=9000, help="distinct characters in the synthetic text")
    args = parser.parse_args()
    rounds = 8 if args.quick else 25

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        big = workdir / "large_vocab.txt"
        synthetic_text(big, args.vocab, 2_000_000)
        lookup_run = make_run(big, workdir / "lookup")
        minimal = make_minimal(lookup_run)
        small_run = make_run(BOOK, workdir / "small")
        chars = BATCH * SEQ
        series = interleave(
            [
                ("charrnn (lookup inputs)", training_step(lookup_run), chars),
                (
                    "charrnn forced to float one-hot",
                    training_step(make_run(big, workdir / "one_hot", "one-hot")),
                    chars,
                ),
                ("minimal float one-hot loop", minimal.step, chars),
                (f"charrnn at V {len(small_run.vocab)} (tinyshakespeare)", training_step(small_run), chars),
            ],
            rounds=rounds,
        )
        vocab_size = len(lookup_run.vocab)
        print_table(
            f"V {vocab_size:,}: {LAYERS} x {HIDDEN} LSTM, batch {BATCH}, seq {SEQ}; {rounds} steps each",
            series,
            "training chars/s",
        )
        print_ratio("charrnn / minimal float one-hot", series[0], series[2], target="median >= 2.5")
        print_ratio("charrnn / charrnn forced to one-hot", series[0], series[1])
        print_ratio(f"charrnn at V {vocab_size:,} / at V 65", series[0], series[3])
        print(f"peak RSS of a fresh process (build + 5 steps), V {vocab_size:,}:")
        for setup, label in (
            ("charrnn", "charrnn (lookup)"),
            ("onehot", "charrnn forced to one-hot"),
            ("minimal", "minimal float one-hot"),
        ):
            print(f"  {label:<44} {peak_rss_mb(big, setup):>8,.0f} MB")
        one_hot_mb = BATCH * SEQ * vocab_size * 4 / 2**20
        print(
            f"  (one (B, T, V) float32 one-hot input alone is {one_hot_mb:,.0f} MB; "
            "charrnn's lookup path never builds it)"
        )
        if args.crossover:
            crossover(workdir, rounds=max(4, rounds // 2))


if __name__ == "__main__":
    main()
