"""Generation speed: charrnn's generate path (eager, compiled, int8) vs a minimal nn.LSTM sampler
and vs the float32 matrix-multiply floor, at 1 and 16 streams.

Usage: python benchmarks/sample_speed.py [--quick] [--hidden-size 512] [--num-layers 2]

"charrnn generate" rows are what `charrnn generate` runs: ``charrnn.load`` a checkpoint (with
--compile off or on, --quantize none or int8), then ``CharModel.generate`` (prime, one character
per step, temperature, per-sample seeded draws, stop-text watch, text assembly). "minimal" is the
sampler the popular PyTorch char-RNNs write: one ``nn.LSTM`` call per character on a one-hot
(N, 1, V) input, softmax with temperature, ``torch.multinomial``. "matrix multiplies alone" runs
only the step's float32 multiplies (one per layer and the head, same shapes, weights and layout)
as many times: the floor that no float32 sampler of this model can beat here. Same weights (a
2 x 512 model on tinyshakespeare's 65 characters, untrained: speed does not depend on the
values), the same prime and length; every set-up is timed once per round, in turn (A B C ...).

The compiled step is built first, into an empty cache directory, and that build is timed: with
the eager and compiled rates it gives the length from which compiling pays (``BREAK_EVEN_CHARS``
in charrnn/generation/runtime.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, print_table  # noqa: E402

import charrnn  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.core.model import CharRNN  # noqa: E402
from charrnn.generation.stepper import Stepper, project  # noqa: E402
from charrnn.training.policy import start_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
PRIME = "ROMEO:"
TEMPERATURE = 0.8


@torch.inference_mode()
def minimal_sample(model: CharRNN, prime_ids: list[int], length: int, num_samples: int, seed: int) -> list[list[int]]:
    """The tutorials' sampler, on the same weights: nn.LSTM called once per character."""
    generator = torch.Generator().manual_seed(seed)
    vocab_size = model.vocab_size
    ids = torch.tensor(prime_ids).repeat(num_samples, 1)  # (N, P)
    outputs, state = model.rnn(F.one_hot(ids, vocab_size).float())  # (N, P, H)
    logits = model.head(outputs[:, -1])  # (N, V)
    drawn = []
    for _ in range(length):
        probs = torch.softmax(logits / TEMPERATURE, dim=-1)
        ids = torch.multinomial(probs, 1, generator=generator)  # (N, 1)
        drawn.append(ids[:, 0].tolist())
        outputs, state = model.rnn(F.one_hot(ids, vocab_size).float(), state)  # (N, 1, H)
        logits = model.head(outputs[:, -1])
    return drawn


@torch.inference_mode()
def multiplies_alone(stepper: Stepper, length: int, num_samples: int) -> None:
    """Only the float32 matrix multiplies of ``length`` generation steps for ``num_samples``
    streams, laid out as the stepper lays them out."""
    weights = stepper.weights
    names = [key[: -len(".weight")] for key in weights if key.endswith(".weight")]
    operands = [
        (torch.zeros(num_samples, weights[f"{n}.weight"].shape[1]), weights[f"{n}.bias"], weights[f"{n}.weight"])
        for n in names
    ]
    blocks = [weights[f"{n}.blocks"] for n in names]
    for _ in range(length):
        for (x, bias, weight), split in zip(operands, blocks, strict=True):
            project(x, bias, weight, split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter texts, fewer rounds (about 5 minutes, builds included)"
    )
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    args = parser.parse_args()
    rounds = 5 if args.quick else 15

    with tempfile.TemporaryDirectory() as workdir:
        os.environ["CHARRNN_CACHE"] = str(Path(workdir) / "cache")  # an empty cache: the build is timed
        run = start_run(
            BOOK,
            ModelConfig(args.hidden_size, args.num_layers),
            TrainConfig(),
            out_dir=Path(workdir) / "run",
            device="cpu",
            log=lambda message: None,
        )
        checkpoint = run.save("last.pt")
        eager = charrnn.load(checkpoint, device="cpu", compile="off")
        compiled = charrnn.load(checkpoint, device="cpu", compile="on", note=lambda m: print(f"  [{m}]"))
        int8 = charrnn.load(checkpoint, device="cpu", quantize="int8", compile="off")
        compiled_int8 = charrnn.load(
            checkpoint, device="cpu", quantize="int8", compile="on", note=lambda m: print(f"  [{m}]")
        )
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"CPU {torch.backends.cpu.get_cpu_capability()}; "
            f"{args.num_layers} x {args.hidden_size} LSTM, V {len(eager.vocab)}, prime {PRIME!r}, "
            f"temperature {TEMPERATURE}"
        )
        build_seconds = {}
        for num_samples in (1, 16):
            for model, kind in ((compiled, "float32"), (compiled_int8, "int8")):
                started = time.perf_counter()
                model.generate(PRIME, 1, num_samples=num_samples)  # builds the step for this many streams
                build_seconds[kind, num_samples] = time.perf_counter() - started
                seconds = build_seconds[kind, num_samples]
                print(f"  building the compiled {kind} step for {num_samples} stream(s): {seconds:.1f} s")
        prime_ids = eager.vocab.encode(PRIME).tolist()
        stepper = Stepper(eager.model)
        for num_samples, length in ((1, 1000 if args.quick else 3000), (16, 300 if args.quick else 1000)):
            chars = num_samples * length

            def generator(model: charrnn.CharModel, num_samples: int = num_samples, length: int = length):
                return lambda: model.generate(PRIME, length, temperature=TEMPERATURE, seed=1, num_samples=num_samples)

            def minimal(num_samples: int = num_samples, length: int = length) -> None:
                minimal_sample(eager.model, prime_ids, length, num_samples, seed=1)

            def floor(num_samples: int = num_samples, length: int = length) -> None:
                multiplies_alone(stepper, length, num_samples)

            series = interleave(
                [
                    ("matrix multiplies alone (fp32 floor)", floor, chars),
                    ("charrnn generate, eager fp32", generator(eager), chars),
                    ("charrnn generate, compiled fp32", generator(compiled), chars),
                    ("charrnn generate, eager int8", generator(int8), chars),
                    ("charrnn generate, compiled int8", generator(compiled_int8), chars),
                    ("minimal nn.LSTM sampler", minimal, chars),
                ],
                rounds=rounds,
            )
            print_table(
                f"{num_samples} stream(s) x {length} characters; {rounds} rounds", series, "chars/s, all streams"
            )
            floor_series, eager_series, compiled_series, int8_series, compiled_int8_series, minimal_series = series
            print_ratio("eager fp32 / floor", eager_series, floor_series)
            print_ratio("compiled fp32 / floor", compiled_series, floor_series, ">= 0.90")
            print_ratio("eager int8 / floor", int8_series, floor_series)
            print_ratio("compiled int8 / floor", compiled_int8_series, floor_series, ">= 1.50")
            print_ratio("compiled fp32 / minimal nn.LSTM sampler", compiled_series, minimal_series)
            if num_samples == 1:
                saved = 1 / statistics.median(eager_series.rates) - 1 / statistics.median(compiled_series.rates)
                if saved > 0:
                    print(
                        f"  compiling pays from about {build_seconds['float32', 1] / saved:,.0f} characters "
                        f"({build_seconds['float32', 1]:.1f} s build / {saved * 1e6:.0f} us saved per character)"
                    )
                else:
                    print("  compiling saves nothing per character here")
        same = eager.generate(PRIME, 2000, seed=7) == compiled.generate(PRIME, 2000, seed=7)
        print(f"same 2,000 characters for seed 7, eager and compiled: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
