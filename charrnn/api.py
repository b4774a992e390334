"""The Python API: ``charrnn.load`` and ``charrnn.train``. The CLI is a thin layer over these.

    model = charrnn.load("checkpoints/tinyshakespeare/best.pt")
    print(model.generate("ROMEO:", 200, temperature=0.8, seed=1))
    print(model.evaluate(open("play.txt").read()).bits_per_char)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.devices import resolve_device
from charrnn.evaluate import Evaluation, evaluate_text
from charrnn.model import CharLSTM, count_parameters
from charrnn.sample import Sampling, collect, stream_samples
from charrnn.trainer import Log, TrainResult, fit, log_to_stdout, start_run
from charrnn.vocab import Vocab


class CharModel:
    """A trained model, ready to generate and to evaluate. Made by ``charrnn.load``."""

    def __init__(self, model: CharLSTM, vocab: Vocab, checkpoint: dict[str, Any], path: Path):
        self.model = model
        self.vocab = vocab
        self.path = path
        self.train_config = TrainConfig(**checkpoint["train_config"])

    def __repr__(self) -> str:
        config = self.model.config
        return (
            f"CharModel({self.path}: {config.num_layers}x{config.hidden_size} LSTM, "
            f"vocabulary {len(self.vocab)}, device {self.model.head.weight.device})"
        )

    def stream(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        seed: int | None = None,
        num_samples: int = SampleConfig.num_samples,
        stop: Sequence[str] = (),
        **sampling: Any,
    ) -> Iterator[tuple[int, str]]:
        """(sample index, text piece) as the samples grow. ``sampling`` takes the ``Sampling``
        fields (temperature, top_k, top_p, greedy); see ``generate`` for all the options."""
        return stream_samples(
            self.model, self.vocab, prime, length, Sampling(**sampling), seed=seed, num_samples=num_samples, stop=stop
        )

    def generate(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        temperature: float = SampleConfig.temperature,
        top_k: int | None = SampleConfig.top_k,
        top_p: float | None = SampleConfig.top_p,
        greedy: bool = SampleConfig.greedy,
        seed: int | None = None,
        num_samples: int | None = None,
        stop: Sequence[str] = (),
    ) -> str | list[str]:
        """Text that continues ``prime`` (the prime itself not included).

        ``temperature`` divides the logits; ``top_k`` / ``top_p`` restrict the draw to the k most
        likely characters / the smallest set reaching probability p (combinable); ``greedy``
        always takes the most likely one. A sample ends after ``length`` characters or just before
        any text in ``stop``. ``num_samples=N`` returns a list of N samples drawn as one batch,
        sample i with seed ``seed + i``; without it, one string.
        """
        count = num_samples or 1
        pieces = self.stream(
            prime, length, seed=seed, num_samples=count, stop=stop,
            temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
        )  # fmt: skip
        texts = collect(pieces, count)
        return texts if num_samples is not None else texts[0]

    def evaluate(
        self, text: str, *, batch_size: int | None = None, seq_len: int | None = None, strict: bool = False
    ) -> Evaluation:
        """Cross-entropy over all of ``text`` (nats, bits per character, perplexity).

        Scored as the trainer scores its validation split: ``batch_size`` contiguous streams (by
        default the training batch size) with the state carried; ``batch_size=1`` gives every
        character all of the text before it as context. Characters outside the vocabulary are
        counted and left out (``strict=True`` raises instead).
        """
        return evaluate_text(
            self.model, self.vocab, text,
            batch_size or self.train_config.batch_size, seq_len or self.train_config.seq_len, strict,
        )  # fmt: skip


def load(path: str | os.PathLike, device: str = "auto") -> CharModel:
    """Load a checkpoint for generation and evaluation, on ``device`` (auto: cuda, mps, cpu)."""
    checkpoint = load_checkpoint(path)
    model, vocab = model_from_checkpoint(checkpoint, resolve_device(device))
    return CharModel(model.eval(), vocab, checkpoint, Path(path))


def train(
    text_path: str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    log: Log = log_to_stdout,
    progress_bar: bool = True,
    **options: Any,
) -> TrainResult:
    """Train a new model on ``text_path`` to the end; ``options`` are ModelConfig / TrainConfig fields.

    For example ``charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/a")``.
    Ctrl-C stops it cleanly after the current step, with last.pt saved.
    """
    model_fields = {field.name for field in dataclasses.fields(ModelConfig)}
    train_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = set(options) - model_fields - train_fields
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    model_config = ModelConfig(**{k: v for k, v in options.items() if k in model_fields})
    train_config = TrainConfig(**{k: v for k, v in options.items() if k in train_fields})
    run = start_run(text_path, model_config, train_config, out_dir=out_dir, device=device, log=log)
    return fit(run, log=log, progress_bar=progress_bar)


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds and how it was made, as plain JSON-ready values (``charrnn info``)."""
    path = Path(path)
    checkpoint = load_checkpoint(path)
    model, vocab = model_from_checkpoint(checkpoint)
    progress = checkpoint["progress"]
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "model_config": dataclasses.asdict(model.config),
        "parameters": count_parameters(model),
        "vocab_size": len(vocab),
        "vocab": list(vocab.chars),
        "text_path": checkpoint["text_path"],
        "text_chars": checkpoint["text_chars"],
        "train_config": checkpoint["train_config"],
        "step": progress["step"],
        "epoch": progress["epoch"],
        "chars_seen": progress["chars_seen"],
        "elapsed_seconds": progress["elapsed_seconds"],
        "best_val_loss": checkpoint["best_val_loss"],
        "last_val_loss": checkpoint["last_val_loss"],
        "torch_version": checkpoint.get("torch_version"),
        "charrnn_version": checkpoint.get("charrnn_version"),
        "format_version": checkpoint["format_version"],
    }
