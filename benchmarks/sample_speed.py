"""Generation speed: charrnn's generate path vs a minimal nn.LSTM sampler, 1 and 16 streams.

Usage: python benchmarks/sample_speed.py [--quick] [--hidden-size 512] [--num-layers 2]

"charrnn" is what `charrnn generate` runs: ``charrnn.load`` a checkpoint, then
``CharModel.generate`` (prime, then one character per step through ``Stepper``, temperature,
per-sample seeded draws, stop-text watch, text assembly). "minimal" is the sampler the popular
PyTorch char-RNNs write: one ``nn.LSTM`` call per character on a one-hot (N, 1, V) input, softmax
with temperature, ``torch.multinomial``. Same weights (a 2 x 512 model on tinyshakespeare's 65
characters; untrained: speed does not depend on the values), the same prime and length; the two
are timed alternately, one whole generation each (A B A B ...). "matrix multiplies alone" runs
only the generation step's multiplies (one per layer and the head, same shapes and weights) as
many times: the arithmetic floor on this machine, which no sampler of this model can beat in float32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave, print_ratio, print_table  # noqa: E402

import charrnn  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.core.model import CharRNN  # noqa: E402
from charrnn.generation.stepper import Stepper  # noqa: E402
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
def multiplies_alone(stepper: Stepper, hidden_size: int, length: int, num_samples: int) -> None:
    """Only the matrix multiplies of ``length`` generation steps for ``num_samples`` streams,
    laid out as the stepper lays them out."""
    h = torch.zeros(num_samples, hidden_size)
    gates = torch.zeros(4 * hidden_size)
    for _ in range(length):
        stepper.first_hh(h, gates)  # (N, H) x (H, 4H)
        for projection, *_ in stepper.upper:
            projection(torch.cat([h, h], dim=1), gates)  # (N, 2H) x (2H, 4H)
        stepper.head(h, stepper.head_bias)  # (N, H) x (H, V)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter texts, fewer rounds (under 3 minutes)")
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    args = parser.parse_args()
    rounds = 5 if args.quick else 15

    with tempfile.TemporaryDirectory() as workdir:
        run = start_run(
            BOOK,
            ModelConfig(args.hidden_size, args.num_layers),
            TrainConfig(),
            out_dir=Path(workdir) / "run",
            device="cpu",
            log=lambda message: None,
        )
        model = charrnn.load(run.save("last.pt"), device="cpu")
    prime_ids = model.vocab.encode(PRIME).tolist()
    with torch.inference_mode():
        stepper = Stepper(model.model)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.num_layers} x {args.hidden_size} LSTM, "
        f"V {len(model.vocab)}, prime {PRIME!r}, temperature {TEMPERATURE}"
    )
    for num_samples, length in ((1, 1000 if args.quick else 3000), (16, 300 if args.quick else 1000)):
        chars = num_samples * length

        def charrnn_generate(num_samples: int = num_samples, length: int = length) -> None:
            model.generate(PRIME, length, temperature=TEMPERATURE, seed=1, num_samples=num_samples)

        def minimal(num_samples: int = num_samples, length: int = length) -> None:
            minimal_sample(model.model, prime_ids, length, num_samples, seed=1)

        def floor(num_samples: int = num_samples, length: int = length) -> None:
            multiplies_alone(stepper, args.hidden_size, length, num_samples)

        series = interleave(
            [
                ("charrnn generate", charrnn_generate, chars),
                ("minimal nn.LSTM sampler", minimal, chars),
                ("matrix multiplies alone (floor)", floor, chars),
            ],
            rounds=rounds,
        )
        target = ">= 2,000 chars/s" if num_samples == 1 else ">= 15,000 chars/s in total"
        print_table(
            f"{num_samples} stream(s) x {length} characters; {rounds} rounds (target {target})",
            series,
            "chars/s, all streams",
        )
        print_ratio("charrnn / minimal", series[0], series[1])
        print_ratio("charrnn / matrix multiplies alone", series[0], series[2])


if __name__ == "__main__":
    main()
