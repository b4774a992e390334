"""Inside a model reading a text: what each unit of each layer holds after every character, and
which units follow a property of the text (the quote cell, the line-length cell of Karpathy's
"Unreasonable Effectiveness" essay, found by measurement rather than by eye).

A unit is one number of a layer's state: ``h1:37`` is unit 37 of layer 1's hidden state, ``c2:5``
unit 5 of layer 2's cell (an LSTM has both, a GRU or plain RNN only h). How well a unit follows a
property is Pearson's correlation between its value after each character and the property at
that character, over the whole text: r = cov(a, p) / (sd(a) sd(p)), from -1 to 1. A unit that
never moves, or a property that never changes, has r = 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab

# Properties with a name, beside regular expressions: position in the line (characters since the
# last line break, 0 at its first character).
BUILT_IN = ("line-position",)
STATE_NAMES = ("h", "c")  # the state tensors in the order a cell keeps them


@dataclass(frozen=True)
class Activations:
    """Every unit's value after each character of ``text``: ``values`` (T, U)."""

    text: str
    names: list[str]  # U unit names, "h1:0" ... in the order of the columns
    values: np.ndarray  # (T, U) float32

    def unit(self, name: str) -> np.ndarray:
        """One unit's values (T,); KeyError naming the unit if there is none of that name."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no unit {name!r}: units are named like {self.names[0]!r} to {self.names[-1]!r}") from None


@torch.inference_mode()
def activations(model: CharRNN, vocab: Vocab, text: str) -> Activations:
    """Read ``text`` one character at a time from the zero state (as generation reads a prime,
    dropout off) and keep every layer's state after each: (T, S·L·H) for S state tensors."""
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(vocab.encode(text, what="text")).to(model.device).long()  # (T,)
        state = model.init_state(1)  # S tensors of (L, 1, H)
        rows = []
        for t in range(len(ids)):
            _, state = model(ids[t : t + 1].view(1, 1), state)
            rows.append(torch.cat([part[:, 0, :].reshape(-1) for part in state]))  # (S·L·H,)
    finally:
        model.train(was_training)
    layers, hidden = model.config.num_layers, model.config.hidden_size
    names = [
        f"{STATE_NAMES[s]}{layer + 1}:{unit}"
        for s in range(len(state))
        for layer in range(layers)
        for unit in range(hidden)
    ]
    values = torch.stack(rows).float().cpu().numpy() if rows else np.zeros((0, len(names)), np.float32)
    return Activations(text, names, values)


def text_property(text: str, pattern: str) -> np.ndarray:
    """The property ``pattern`` names, per character (T,): a built-in name, or a regular
    expression whose matches mark the characters inside them 1 (the rest 0).

    Raises ValueError for a pattern that is not a regular expression, or that matches nothing."""
    if pattern == "line-position":
        positions = np.zeros(len(text), np.float32)
        column = 0
        for i, char in enumerate(text):
            positions[i] = column
            column = 0 if char == "\n" else column + 1
        return positions
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression ({exc}) nor one of {', '.join(BUILT_IN)}") from None
    inside = np.zeros(len(text), np.float32)
    for match in regex.finditer(text):
        inside[match.start() : match.end()] = 1.0
    if not inside.any():
        raise ValueError(f"{pattern!r} matches nothing in the text: no property to follow")
    return inside


def correlations(acts: Activations, prop: np.ndarray) -> np.ndarray:
    """Pearson's r of every unit with ``prop`` (U,); 0 where either does not vary."""
    a = acts.values.astype(np.float64)
    p = prop.astype(np.float64)
    a_centred = a - a.mean(axis=0)
    p_centred = p - p.mean()
    spread = np.sqrt((a_centred**2).sum(axis=0) * (p_centred**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a_centred * p_centred[:, None]).sum(axis=0) / spread
    return np.where(spread > 0, r, 0.0)


def rank_units(acts: Activations, prop: np.ndarray, top: int = 10) -> list[tuple[str, float]]:
    """The ``top`` units whose values follow ``prop`` best (by |r|), with r."""
    r = correlations(acts, prop)
    order = np.argsort(-np.abs(r), kind="stable")[:top]
    return [(acts.names[j], float(r[j])) for j in order]


def surprising_spans(logprobs: list[float], width: int = 12, count: int = 10) -> list[tuple[int, int, float]]:
    """The ``count`` stretches of at most ``width`` scored characters that surprise the model most
    (largest summed -log p), none overlapping: (start, end, nats) with ``start`` the index into
    ``logprobs``, most surprising first."""
    surprise = -np.asarray(logprobs, np.float64)
    if not len(surprise):
        return []
    width = min(width, len(surprise))
    sums = np.convolve(surprise, np.ones(width), mode="valid")  # sums[i]: characters i .. i + width - 1
    taken = np.zeros(len(surprise), bool)
    spans = []
    for start in np.argsort(-sums, kind="stable"):
        if taken[start : start + width].any():
            continue
        taken[start : start + width] = True
        spans.append((int(start), int(start + width), float(sums[start])))
        if len(spans) == count:
            break
    return spans
