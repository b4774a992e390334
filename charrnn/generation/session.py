"""One stream of text whose state lives on between calls: what `charrnn chat` talks to.

``stream_samples`` starts from a prime and forgets everything when it ends. A session keeps the
model's state (and its prediction of the next character) after each call, so the next call can
go on exactly where the last one stopped, or feed more text first, or start afresh. An
interrupted call (Ctrl-C in the middle) leaves the session consistent: the state always matches
the text shown so far.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import torch

from charrnn.core.cells import State
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.generation.compiled import CompiledSteps
from charrnn.generation.sample import Sampling, next_ids
from charrnn.generation.stepper import Stepper
from charrnn.threads import ThreadTuner, timed_step


class Session:
    """A single stream: ``feed`` text into it, ``generate`` from it; ``reset`` forgets it all."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        seed: int | None = None,
        stepper: Stepper | CompiledSteps | None = None,
        threads: ThreadTuner | None = None,
    ):
        self.model = model.eval()
        self.vocab = vocab
        self.stepper = stepper or Stepper(model)  # compiled or int8: chosen by generation/runtime.py
        self.threads = threads  # the CPU thread count, measured as it steps (charrnn/threads.py)
        self.generator = torch.Generator(device=model.device)
        self.seed(secrets.randbits(31) if seed is None else seed)
        self.reset()

    def seed(self, seed: int) -> None:
        """Draw from here on as a fresh generator seeded with ``seed`` would."""
        self.generator.manual_seed(seed)
        self.last_seed = seed

    @torch.inference_mode()
    def reset(self) -> None:
        """Back to the zero state, as if nothing had been read or written."""
        self.state: State = self.model.init_state(1)
        self.logits = self.model.logits_from_state(self.state)  # (1, V): the prediction for the next character
        self.pending: int | None = None  # a character shown but not yet read into the state
        self.text = ""  # everything fed and generated since the last reset

    @torch.inference_mode()
    def feed(self, text: str) -> None:
        """Read ``text`` into the state (the characters must be in the vocabulary)."""
        ids = torch.from_numpy(self.vocab.encode(text, what="prime")).to(self.model.device)
        self._catch_up()
        if len(ids):
            logits, state = self.model(ids.view(1, -1), self.state)  # (P, V)
            self.state, self.logits = state, logits[-1:]
            self.text += text

    def generate(self, length: int, sampling: Sampling = Sampling()) -> Iterator[str]:
        """Up to ``length`` characters from where the session is, one at a time.

        Each character is read into the state before the next is drawn, so stopping the iterator
        at any point (or a KeyboardInterrupt inside it) leaves the session at the text shown.
        """
        sampling.check()
        for _ in range(length):
            with torch.inference_mode():
                self._catch_up()
                self.pending = int(next_ids(self.logits, sampling, [self.generator])[0])
            yield self.vocab.chars[self.pending]

    def _catch_up(self) -> None:
        """Read the last character shown into the state, if it was not yet."""
        if self.pending is None:
            return
        ids = torch.tensor([self.pending], device=self.model.device)
        with timed_step(self.threads):
            logits, state = self.stepper.step(ids, self.state)  # (1, V)
        self.state, self.logits = state, logits
        self.text += self.vocab.chars[self.pending]
        self.pending = None
