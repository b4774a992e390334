"""The Python API for a trained model: ``charrnn.load`` and the ``CharModel`` it returns
(training runs: charrnn/runs.py). The CLI's generate, chat, serve and evaluate are thin layers over these.

model = charrnn.load("checkpoints/tinyshakespeare/best.pt")
print(model.generate("ROMEO:", 200, temperature=0.8, seed=1))
print(model.evaluate(open("play.txt").read()).bits_per_char)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.bundled import BOOK_NAME, bundled_book, bundled_model
from charrnn.config import Acceleration, DynamicEvaluation, ModelConfig, Placement, SampleConfig
from charrnn.core.copies import MIN_COPY, CopyIndex, CopyReport, copy_index
from charrnn.core.corpus import ITEM_START, TextFormat
from charrnn.core.devices import resolve_device
from charrnn.core.model import CharRNN, count_parameters
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.formats.export import is_export, load_export
from charrnn.generation.beam import Beam
from charrnn.generation.decoder import CharScore, Decoder, Piece
from charrnn.generation.engine import Engine, Events
from charrnn.generation.evaluate import Evaluation, evaluate_dynamic, evaluate_text, score_chars
from charrnn.generation.inside import Activations, activations
from charrnn.generation.runtime import StepRuntime
from charrnn.generation.sample import collect, collect_steps, most_likely, stream_steps
from charrnn.generation.session import Session
from charrnn.options import list_as_keywords
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS
from charrnn.sampling import Sampling

MAX_ITEM_ROUNDS = 10  # draws of the missing items before generate_items gives fewer than asked


@dataclass(frozen=True)
class Item:
    """One generated line item (``CharModel.generate_items``)."""

    text: str
    new: bool  # not one of the lines the model was trained on (validation lines included)
    whole: bool  # it ended with a newline within the length limit, rather than being cut there


# Texts that ship with charrnn, as a run's record names them: the bundled model's training text.
SHIPPED = {f"{BOOK_NAME} (bundled with charrnn)": bundled_book()}


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
        self._copy_index: CopyIndex | None = None  # built (or read from beside the run) on first use

    def __repr__(self) -> str:
        return f"CharModel({self.path}: {self.describe_size()}, device {self.model.device})"

    def describe_size(self) -> str:
        """'2 x 256 LSTM, 873,793 parameters, 65 characters'."""
        config = self.model.config
        return (
            f"{config.num_layers} x {config.hidden_size} {config.cell.upper()}, "
            f"{count_parameters(self.model):,} parameters, {len(self.vocab)} characters"
        )

    @property
    def config(self) -> ModelConfig:
        """The architecture: layers, hidden size, cell, head."""
        return self.model.config

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

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
        """(sample index, text piece) as the samples grow; see ``generate`` for the options."""
        steps = self._steps(prime, length, seed, num_samples, stop, None, sampling)
        return ((piece.row.tag, piece.text) for step in steps for piece in step if piece.text)

    def stream_scored(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        seed: int | None = SampleConfig.seed,
        num_samples: int = SampleConfig.num_samples,
        stop: str | Sequence[str] = (),
        logprobs: int | None = 0,
        **sampling: Any,
    ) -> Iterator[Piece]:
        """The decoder's pieces as the samples grow: ``piece.row.tag`` is the sample index,
        ``piece.text`` the text, ``piece.scores`` a ``CharScore`` per character of it (its
        log-probability under the model, before temperature and filters, and the ``logprobs``
        most likely alternatives, up to 20), ``piece.finish`` "length" or "stop" at the end."""
        steps = self._steps(prime, length, seed, num_samples, stop, logprobs, sampling)
        return (piece for step in steps for piece in step)

    def _steps(
        self,
        prime: str,
        length: int,
        seed: int | None,
        num_samples: int,
        stop: str | Sequence[str],
        logprobs: int | None,
        sampling: dict[str, Any],
    ) -> Iterator[list[Piece]]:
        """``stream_steps`` on this model (a seed drawn and kept in ``last_seed`` when none is given)."""
        if seed is None:  # drawn here, so that it can be kept in last_seed
            seed = secrets.randbits(31)  # short enough to type back
        steps = stream_steps(
            self.model,
            self.vocab,
            prime,
            length,
            self._sampling(sampling),
            seed=seed,
            num_samples=num_samples,
            stop=stop,
            logprobs=logprobs,
            runtime=self.runtime,
        )
        self.last_seed = seed  # only once the arguments passed the checks
        return steps

    def generate(
        self,
        prime: str = SampleConfig.prime,
        length: int = SampleConfig.length,
        *,
        seed: int | None = SampleConfig.seed,
        num_samples: int | None = None,
        stop: str | Sequence[str] = (),
        **sampling: Any,
    ) -> str | list[str]:
        """Text that continues ``prime`` (the prime itself not included).

        ``sampling`` takes the settings of ``charrnn.sampling.Sampling`` (the same as `charrnn
        generate`'s flags; see its signature): ``temperature`` divides the logits; ``top_k`` /
        ``top_p`` / ``min_p`` restrict the draw; ``greedy`` always takes the most likely one;
        ``frequency_penalty``, ``presence_penalty``, ``repetition_penalty`` (with
        ``repetition_window``) discourage repeats. A sample ends after ``length`` characters or
        just before the leftmost place where a ``stop`` text (one str, or several) occurs in it;
        only the generated text is searched, not the prime. ``num_samples=N`` returns a list of N
        samples drawn as one batch, sample i with seed ``seed + i`` (all in 0 .. 2**64 - 1);
        without it, one string. ``seed=None`` draws a seed and keeps it in ``last_seed``.
        """
        count = 1 if num_samples is None else num_samples  # 0 is refused, not taken for 1
        texts = collect_steps(self._steps(prime, length, seed, count, stop, None, sampling), count)
        return texts if num_samples is not None else texts[0]

    def most_likely(
        self, prime: str = SampleConfig.prime, length: int = SampleConfig.length, *, beam: int = 4, stop=()
    ) -> Beam:
        """Beam search: the continuation of ``prime`` with the highest total log-probability that
        ``beam`` hypotheses find (``.text``, ``.logprob`` in nats, ``.ended_by``), ``length``
        characters long or ending before a ``stop`` text. Deterministic; never less likely than
        greedy decoding (``beam=1``)."""
        return most_likely(self.model, self.vocab, prime, length, beam, stop=stop, runtime=self.runtime)

    def session(self, seed: int | None = None, **sampling: Any) -> Session:
        """One stream that lives on between calls (what `charrnn chat` runs): ``feed`` text,
        ``generate`` from where it is, ``reset``. Steps through a cached compiled step if there
        is one, but builds none (a conversation has no known length); the thread count changes
        silently (a conversation is not a log)."""
        self.runtime.threads.log = lambda message: None
        decoder = Decoder(self.model, self.vocab, self.runtime.stepper(1, work=0), self.runtime.threads)
        return Session(decoder, seed, self._sampling(sampling))

    def engine(
        self,
        emit: Callable[[Events], None],
        max_streams: int = 64,
        observe: Callable[[float, int], None] | None = None,
    ) -> Engine:
        """Many streams stepped together as they come and go (what `charrnn serve` runs): the
        compiled step for any number of streams is built (once per shape, cached) when it pays.
        ``observe(seconds, batch)`` is called after every step."""
        decoder = Decoder(self.model, self.vocab, self.runtime.stepper(None), self.runtime.threads)
        return Engine(decoder, emit, max_streams, observe=observe)

    @staticmethod
    def _sampling(settings: dict[str, Any]) -> Sampling:
        unknown = set(settings) - {opt.name for opt in SAMPLING_OPTIONS}
        if unknown:
            raise TypeError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        return Sampling(**settings)

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
        stop: str | Sequence[str] = (),
        **sampling: Any,
    ) -> list[Item]:
        """``count`` items, each drawn from the state after a newline (where training started
        every item) and ending at the next newline, at a ``stop`` text, or after ``max_length``
        characters. ``prime`` begins every item (one line: no newline in it); ``sampling`` as for
        ``generate``. An item that comes out empty is drawn again (with the next seeds: item i of
        round r uses seed + r·count + i), so there are ``count`` of them unless the model keeps
        writing empty ones (``MAX_ITEM_ROUNDS``). Whether each is new is read off the digests of
        the training items that a --line-items checkpoint keeps."""
        if not self.line_items:
            raise CharRNNError(f"{self.path} was not trained with --line-items: it has no items to draw")
        if "\n" in prime:
            raise CharRNNError("an item is one line: give a prime without a line break")
        stops = [ITEM_START, *([stop] if isinstance(stop, str) else stop)]
        base = secrets.randbits(31) if seed is None else seed
        texts: list[str] = []
        for round_index in range(MAX_ITEM_ROUNDS):
            wanted = count - len(texts)
            round_seed = base + round_index * count
            pieces = self.stream(
                ITEM_START + prime, max_length, seed=round_seed, num_samples=wanted, stop=stops, **sampling
            )
            texts += [text for text in collect(pieces, wanted) if (prime + text).strip()]
            if len(texts) == count:
                break
        self.last_seed = base
        known = self.checkpoint.corpus.known_items([prime + text for text in texts])
        return [
            Item((prime + text).strip(), new=not seen, whole=len(text) < max_length)
            for text, seen in zip(texts, known, strict=True)
        ]

    def score(self, text: str, top: int = 0) -> list[CharScore]:
        """Every character of ``text`` after the first, given all the text before it: its
        log-probability (nats) and the ``top`` (at most 20) likeliest characters in its place. Minus
        their mean is ``evaluate(text, batch_size=1)``. Unknown characters raise
        ``UnknownCharactersError``."""
        return score_chars(self.model, self.vocab, text, top)

    def copies(self, text: str, min_chars: int = MIN_COPY) -> CopyReport:
        """How much of ``text`` lies in stretches of at least ``min_chars`` characters found in the
        training text, and the longest such stretch. The training text is read again from the
        documents the run recorded (hash-checked); its index is cached beside the run. Raises
        ``NotChecked`` (one line: why) when the text is gone or changed or the extra is missing."""
        if self._copy_index is None:
            corpus = self.checkpoint.corpus
            text_format = TextFormat.of(self.checkpoint.train_config(self.path))
            cache = self.path.parent / "copies-index.json"
            writable = cache.parent.is_dir() and os.access(cache.parent, os.W_OK) and self.path != bundled_model()
            documents, separator = corpus.documents, corpus.separator or ""
            self._copy_index = copy_index(documents, separator, text_format, cache if writable else None, SHIPPED)
        return self._copy_index.report(text, min_chars)

    def activations(self, text: str) -> Activations:
        """Every unit of every layer after each character of ``text`` (read from the zero state):
        ``values`` (T, units), ``names`` such as "h1:37" and "c2:5" (generation/inside.py)."""
        return activations(self.model, self.vocab, text)

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
    if Path(path).is_dir() and not is_export(path):  # a run directory, say
        inside = next((Path(path) / name for name in ("best.pt", "last.pt") if (Path(path) / name).is_file()), None)
        hint = f"give a checkpoint in it, such as {inside}" if inside else "give a checkpoint file (a .pt)"
        raise CharRNNError(f"{path} is a directory: {hint}")
    checkpoint = load_export(path) if is_export(path) else Checkpoint.load(path)
    model = checkpoint.model(resolve_device(device)).eval()
    return CharModel(model, checkpoint, Path(path), StepRuntime(model, compile, quantize, note, threads))


for _method in (
    CharModel.stream,
    CharModel.stream_scored,
    CharModel.generate,
    CharModel.generate_items,
    CharModel.session,
):
    list_as_keywords(_method, SAMPLING_OPTIONS)
