"""CPU settings charrnn could choose, each measured rather than guessed.

Usage: python benchmarks/cpu_settings.py [--quick]

1. oneDNN (mkldnn) for nn.LSTM on the CPU, on (torch's default) vs off, for charrnn's real
   training step at BIG and SMALL and for scoring validation windows (inference).
2. Intra-op threads for generation: all cores (torch's default) vs 1, single stream and 16.
3. Intra-op threads for training: all cores vs 1 (SMALL).

Each comparison flips the setting between alternating units of work (A B A B ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, training_step  # noqa: E402
from train_step import BOOK, SHAPES  # noqa: E402

import charrnn  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.generation.evaluate import loss_sum  # noqa: E402
from charrnn.training.policy import start_run  # noqa: E402
from charrnn.training.run import TrainingRun  # noqa: E402

FAR = 10**9


def with_onednn(enabled: bool, work: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with torch.backends.mkldnn.flags(enabled=enabled):
            work()

    return run


def with_threads(threads: int, work: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            work()
        finally:
            torch.set_num_threads(before)

    return run


def compare(label: str, work_a: Callable[[], None], work_b: Callable[[], None], units: float, rounds: int) -> None:
    series = interleave([("a", work_a, units), ("b", work_b, units)], rounds=rounds)
    print_ratio(label, series[0], series[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under 3 minutes)")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch's default {cores} intra-op threads")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("1. oneDNN on / off (speed ratio > 1: on is faster)")
        for shape in ("BIG", "SMALL"):
            layers, hidden, batch, seq = SHAPES[shape]
            run = start_run(
                BOOK,
                ModelConfig(hidden, layers),
                TrainConfig(batch_size=batch, seq_len=seq, max_steps=FAR, eval_every=FAR, save_every=FAR),
                out_dir=workdir / shape,
                device="cpu",
                log=lambda message: None,
            )
            step = training_step(run)
            rounds = (6 if shape == "BIG" else 30) if args.quick else (20 if shape == "BIG" else 100)
            chars = batch * seq
            compare(
                f"{shape} training step, oneDNN on / off",
                with_onednn(True, step),
                with_onednn(False, step),
                chars,
                rounds,
            )
            if shape == "SMALL":

                def validate(run: TrainingRun = run) -> None:
                    loss_sum(run.model, run.val_batches)

                compare(
                    f"{shape} validation pass, oneDNN on / off",
                    with_onednn(True, validate),
                    with_onednn(False, validate),
                    1,
                    3 if args.quick else 8,
                )
                compare(
                    f"{shape} training step, {cores} threads / 1 thread",
                    with_threads(cores, step),
                    with_threads(1, step),
                    chars,
                    rounds,
                )

        print(f"2. generation (2 x 512), {cores} threads / 1 thread (> 1: all cores faster)")
        run = start_run(
            BOOK, ModelConfig(512, 2), TrainConfig(), out_dir=workdir / "sample", device="cpu", log=lambda message: None
        )
        model = charrnn.load(run.save("last.pt"), device="cpu")
        for streams, length in ((1, 500), (16, 150)):

            def generate(streams: int = streams, length: int = length) -> None:
                model.generate("ROMEO:", length, seed=1, num_samples=streams)

            compare(
                f"{streams} stream(s)",
                with_threads(cores, generate),
                with_threads(1, generate),
                streams * length,
                5 if args.quick else 15,
            )


if __name__ == "__main__":
    main()
