"""One stream of text whose state lives on between calls: what `charrnn chat` talks to.

``stream_samples`` starts from a prime and forgets everything when it ends. A session is one
decoder row that stays: it keeps the model's state (and what it drew last) after each call, so
the next call can go on exactly where the last one stopped, or feed more text first, or start
afresh. An interrupted call (Ctrl-C in the middle) leaves the session consistent: the state
always matches the text shown so far (the decoder reads a drawn character only when the next one
is wanted).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from charrnn.generation.decoder import Decoder, Row
from charrnn.sampling import Sampling


class Session:
    """A single stream: ``feed`` text into it, ``generate`` from it; ``reset`` forgets it all."""

    def __init__(self, decoder: Decoder, seed: int | None = None, sampling: Sampling = Sampling()):
        self.decoder = decoder
        self.sampling = sampling  # used by the next ``generate``
        self.last_seed = secrets.randbits(31) if seed is None else seed
        self.row = Row(sampling, self.last_seed, remembers=True)  # its settings may change to penalised ones
        self.reset()

    def seed(self, seed: int) -> None:
        """Draw from here on as a fresh generator seeded with ``seed`` would."""
        self.row.reseed(seed)
        self.last_seed = seed

    def reset(self) -> None:
        """Back to the zero state, as if nothing had been read or written (the seed goes on)."""
        if self.row in self.decoder.rows:
            self.decoder.remove(self.row)
        fresh = Row(self.sampling, self.last_seed, remembers=True)
        fresh.uniforms = self.row.uniforms  # the random numbers go on where they were
        self.row = fresh
        self.decoder.add("", [self.row])
        self.text = ""  # everything fed and generated since the last reset

    def feed(self, text: str) -> None:
        """Read ``text`` into the state (the characters must be in the vocabulary)."""
        self.decoder.feed(self.row, text)
        self.text += text

    def generate(self, length: int) -> Iterator[str]:
        """Up to ``length`` characters from where the session is, one at a time, drawn with
        ``self.sampling``. Stopping the iterator at any point (or a KeyboardInterrupt inside it)
        leaves the session at the text shown."""
        self.sampling.check()  # ValueError naming the setting
        self.row.sampling = self.sampling
        for _ in range(length):
            for piece in self.decoder.step():
                self.text += piece.text
                yield piece.text
