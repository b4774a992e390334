"""The Python API: ``charrnn.load``, ``charrnn.train``, ``charrnn.finetune`` and ``charrnn.describe``.
The CLI is a thin layer over these.

model = charrnn.load("checkpoints/tinyshakespeare/best.pt")
print(model.generate("ROMEO:", 200, temperature=0.8, seed=1))
print(model.evaluate(open("play.txt").read()).bits_per_char)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.bundled import bundled_model
from charrnn.config import (
    FINETUNE_DEFAULTS,
    Acceleration,
    DynamicEvaluation,
    ModelConfig,
    Placement,
    SampleConfig,
    TrainConfig,
)
from charrnn.core.corpus import ITEM_START
from charrnn.core.devices import resolve_device
from charrnn.core.model import CharRNN, count_parameters
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.formats.export import is_export, load_export
from charrnn.generation.evaluate import Evaluation, evaluate_dynamic, evaluate_text
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.sample import Sampling, collect, stream_samples
from charrnn.options import build, declared
from charrnn.threads import parse_threads
from charrnn.training.loop import TrainResult, fit
from charrnn.training.policy import Sources, finetune_run, start_run
from charrnn.training.reporting import Log, log_to_stdout


@dataclass(frozen=True)
class Item:
    """One generated line item (``CharModel.generate_items``)."""

    text: str
    new: bool  # not one of the lines the model was trained on (validation lines included)
    whole: bool  # it ended with a newline within the length limit, rather than being cut there


class CharModel:
    """A trained model, ready to generate and to evaluate. Made by ``charrnn.load``.

    ``last_seed`` is the seed the latest ``generate`` / ``stream`` call used (the one it drew
    when given ``seed=None``): pass it back as ``seed=`` to draw the same samples again.
    """

    def __init__(self, model: CharRNN, checkpoint: Checkpoint, path: Path, runtime: StepRuntime | None = None):
        self.model = model
        self.runtime = runtime or StepRuntime(model)  # which step generation runs (compiled, int8)
        self.vocab: Vocab = checkpoint.vocab
        self.path = path
        self.checkpoint = checkpoint  # evaluate reads the run's layout from it; generation never does
        self.last_seed: int | None = None

    def __repr__(self) -> str:
        return f"CharModel({self.path}: {self.describe_size()}, device {self.model.device})"

    def describe_size(self) -> str:
        """'2 x 256 LSTM, 873,793 parameters, 65 characters'."""
        config = self.model.config
        return (
            f"{config.num_layers} x {config.hidden_size} {config.cell.upper()}, "
            f"{count_parameters(self.model):,} parameters, {len(self.vocab)} characters"
        )

    def stream(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        seed: int | None = SampleConfig.seed,
        num_samples: int = SampleConfig.num_samples,
        stop: str | Sequence[str] = (),
        **sampling: Any,
    ) -> Iterator[tuple[int, str]]:
        """(sample index, text piece) as the samples grow. ``sampling`` takes the ``Sampling``
        fields (temperature, top_k, top_p, greedy); see ``generate`` for all the options."""
        if seed is None:  # drawn here, not in stream_samples, so that it can be kept in last_seed
            seed = secrets.randbits(31)  # short enough to type back
        pieces = stream_samples(
            self.model,
            self.vocab,
            prime,
            length,
            Sampling(**sampling),
            seed=seed,
            num_samples=num_samples,
            stop=stop,
            runtime=self.runtime,
        )
        self.last_seed = seed  # only once the arguments passed the checks
        return pieces

    def generate(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        temperature: float = SampleConfig.temperature,
        top_k: int | None = SampleConfig.top_k,
        top_p: float | None = SampleConfig.top_p,
        greedy: bool = SampleConfig.greedy,
        seed: int | None = SampleConfig.seed,
        num_samples: int | None = None,
        stop: str | Sequence[str] = (),
    ) -> str | list[str]:
        """Text that continues ``prime`` (the prime itself not included).

        ``temperature`` divides the logits; ``top_k`` / ``top_p`` restrict the draw to the k most
        likely characters / the smallest set reaching probability p (combinable); ``greedy``
        always takes the most likely one. A sample ends after ``length`` characters or just
        before the leftmost place where a ``stop`` text (one str, or several) occurs in it; only
        the generated text is searched, not the prime. ``num_samples=N`` returns a list of N
        samples drawn as one batch, sample i with seed ``seed + i`` (all in 0 .. 2**64 - 1);
        without it, one string. ``seed=None`` draws a seed and keeps it in ``last_seed``.
        """
        count = 1 if num_samples is None else num_samples  # 0 is refused, not taken for 1
        pieces = self.stream(
            prime,
            length,
            seed=seed,
            num_samples=count,
            stop=stop,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
        )
        texts = collect(pieces, count)
        return texts if num_samples is not None else texts[0]

    @property
    def line_items(self) -> bool:
        """Whether the model was trained with --line-items (and so knows its training items)."""
        return self.checkpoint.corpus.item_digests is not None

    def generate_items(
        self,
        count: int,
        prime: str = "",
        *,
        max_length: int = SampleConfig.length,
        seed: int | None = SampleConfig.seed,
        **sampling: Any,
    ) -> list[Item]:
        """``count`` items drawn side by side, each from the state after a newline (where training
        started every item) and ending at the next newline, or after ``max_length`` characters.
        ``prime`` begins every item; ``sampling`` as for ``generate``. Whether each is new is read
        off the digests of the training items that a --line-items checkpoint keeps."""
        if not self.line_items:
            raise CharRNNError(f"{self.path} was not trained with --line-items: it has no items to draw")
        pieces = self.stream(ITEM_START + prime, max_length, seed=seed, num_samples=count, stop=ITEM_START, **sampling)
        texts = collect(pieces, count)
        known = self.checkpoint.corpus.known_items([prime + text for text in texts])
        return [
            Item((prime + text).strip(), new=not seen, whole=len(text) < max_length)
            for text, seen in zip(texts, known, strict=True)
        ]

    def evaluate(
        self, text: str, *, batch_size: int | None = None, seq_len: int | None = None, strict: bool = False
    ) -> Evaluation:
        """Cross-entropy of the model on ``text`` (nats, bits per character, perplexity).

        Scored as the trainer scores its validation split: B = ``batch_size`` contiguous streams
        (by default the training batch size) of (n - 1) // B characters each, the state carried.
        Every character but the first is scored once, less the last (n - 1) mod B, which do not
        fill a stream (``chars_scored`` says how many were); ``batch_size=1`` leaves none out and
        gives each character all of the text before it as context. Characters outside the
        vocabulary are counted and removed first (``strict=True`` raises instead). A model loaded
        with ``quantize="int8"`` is scored through its int8 step, as it generates.
        """
        needed = tuple(name for name, given in (("batch_size", batch_size), ("seq_len", seq_len)) if given is None)
        if needed:
            remedy = "give the batch size and sequence length (--batch-size, --seq-len)"
            saved = self.checkpoint.layout(self.path, needed, remedy)
            batch_size, seq_len = batch_size or saved.batch_size, seq_len or saved.seq_len
        # int8 is scored through its step, a compiled one if it is cached (never built for this)
        stepper = self.runtime.stepper(batch_size, work=0) if self.runtime.quantize == "int8" else None
        return evaluate_text(
            self.model, self.vocab, text, batch_size, seq_len, strict, stepper=stepper, threads=self.runtime.threads
        )

    def evaluate_dynamic(
        self,
        text: str,
        *,
        seq_len: int = DynamicEvaluation.dynamic_seq_len,
        lr: float = DynamicEvaluation.dynamic_lr,
        decay: float = DynamicEvaluation.dynamic_decay,
        strict: bool = False,
    ) -> Evaluation:
        """Cross-entropy on ``text`` under dynamic evaluation (Krause et al., 2018): scored in one
        stream, ``seq_len`` characters at a time, each segment learned from (one SGD step of size
        ``lr``, pulled back toward the trained weights by ``decay``) only after it is scored. The
        model itself is not changed. Compare it with ``evaluate``'s static figure, not mix them."""
        return evaluate_dynamic(self.model, self.vocab, text, seq_len, lr, decay, strict)


def load(
    path: str | os.PathLike | None = None,
    device: str = "auto",
    *,
    compile: str = Acceleration.compile,
    quantize: str = Acceleration.quantize,
    threads: str | int = Placement.threads,
    note: Callable[[str], None] | None = None,
) -> CharModel:
    """Load a checkpoint for generation and evaluation, on ``device`` (auto: cuda, mps, cpu).

    Without ``path``, the Shakespeare model that ships with charrnn (docs/bundled-model.md);
    ``path`` may also be a directory written by `charrnn export`. ``compile`` (auto, on, off) and
    ``quantize`` (none, int8) choose the generation step (docs/performance.md); ``threads`` the
    CPU threads (a number, or "auto": measured as it generates); ``note`` hears, once each, why a
    faster step is not in use, and what the thread count became.
    """
    path = bundled_model() if path is None else path
    checkpoint = load_export(path) if is_export(path) else Checkpoint.load(path)
    model = checkpoint.model(resolve_device(device)).eval()
    return CharModel(model, checkpoint, Path(path), StepRuntime(model, compile, quantize, note, threads))


def train(
    text: Sources,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    threads: str | int = Placement.threads,
    log: Log = log_to_stdout,
    progress_bar: bool = True,
    **options: Any,
) -> TrainResult:
    """Train a new model on ``text`` (a file, a directory, a glob pattern, or a list of them) to the end.
    ``options`` are the options of ``charrnn train`` (see docs/options.md, or
    ``inspect.signature(charrnn.train)``), named as in Python.

    For example ``charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/a")``.
    Ctrl-C stops it cleanly after the current step, with last.pt saved. ``threads``: CPU threads,
    a number or "auto" (measured as training goes: docs/performance.md).
    """
    model_config, train_config = _configs(options, TRAIN_OPTIONS)
    _check_threads(threads)  # refused before anything is written
    run = start_run(text, model_config, train_config, out_dir=out_dir, device=device, log=log)
    return fit(run, log=log, progress_bar=progress_bar, threads=threads)


def finetune(
    base: str | os.PathLike,
    text: Sources,
    *,
    extend_vocab: bool = False,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    threads: str | int = Placement.threads,
    log: Log = log_to_stdout,
    progress_bar: bool = True,
    **options: Any,
) -> TrainResult:
    """Fine-tune the model in ``base`` on ``text`` with a fresh optimizer and schedule, to the end.

    ``options`` are those of ``charrnn finetune``: ``FINETUNE_DEFAULTS`` replace a few of train's
    defaults (a shorter warm-up), and the dropout defaults to the base model's.
    ``extend_vocab=True`` adds the text's new characters to the model instead of refusing them.
    """
    options = {**FINETUNE_DEFAULTS, **options}
    dropout = options.get("dropout")  # None: the base model's
    if dropout is None:
        options.pop("dropout", None)
    _, train_config = _configs(options, FINETUNE_OPTIONS)  # checks a given dropout too
    _check_threads(threads)
    run = finetune_run(
        base, text, train_config, dropout=dropout, extend_vocab=extend_vocab, out_dir=out_dir, device=device, log=log
    )
    return fit(run, log=log, progress_bar=progress_bar, threads=threads)


def _configs(options: dict[str, Any], allowed: list) -> tuple[ModelConfig, TrainConfig]:
    """The configs for a training call's keyword options; TypeError names any it does not take."""
    unknown = set(options) - {opt.name for opt in allowed}
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    try:
        return build(ModelConfig, options), build(TrainConfig, options)
    except ValueError as exc:
        raise TypeError(str(exc)) from None


def _check_threads(threads: str | int) -> None:
    """A bad ``threads`` is a TypeError, as every other bad training option is."""
    try:
        parse_threads(threads)
    except ValueError as exc:
        raise TypeError(str(exc)) from None


def _with_options(function: Any, command: str) -> list:
    """Give ``function`` a signature listing the options of ``command`` as keyword arguments
    (help(), IDEs and the options test read it); return those options."""
    options = [opt for cls in (ModelConfig, TrainConfig) for opt in declared(cls) if command in opt.spec.commands]
    defaults = {**FINETUNE_DEFAULTS, "dropout": None} if command == "finetune" else {}
    own = [p for p in inspect.signature(function).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    function.__signature__ = inspect.signature(function).replace(
        parameters=[
            *own,
            *(
                inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(opt.name, opt.default))
                for opt in options
            ),
        ]
    )
    return options


TRAIN_OPTIONS = _with_options(train, "train")
FINETUNE_OPTIONS = _with_options(finetune, "finetune")


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds and how it was made, as plain JSON-ready values (``charrnn info``)."""
    path = Path(path)
    checkpoint = Checkpoint.load(path)
    model = checkpoint.model()
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "model_config": dataclasses.asdict(model.config),
        "parameters": count_parameters(model),
        "input_path": model.input_path,
        "vocab_size": len(checkpoint.vocab),
        "vocab": list(checkpoint.vocab.chars),
        "text_path": checkpoint.corpus.path,
        "text_chars": checkpoint.corpus.chars,
        "documents": [dataclasses.asdict(d) for d in checkpoint.corpus.documents],
        "val_document": None if checkpoint.corpus.val_document is None else checkpoint.corpus.val_document.path,
        "line_items": None if checkpoint.corpus.item_digests is None else len(checkpoint.corpus.item_digests),
        "base": checkpoint.base,
        "train_config": checkpoint.saved_train_config,
        **dataclasses.asdict(checkpoint.progress),
        "best_val_loss": checkpoint.best_val_loss,
        "last_val_loss": checkpoint.last_val_loss,
        "torch_version": checkpoint.torch_version,
        "charrnn_version": checkpoint.charrnn_version,
        "format_version": checkpoint.format_version,
        "resumable": checkpoint.resumable,
    }
