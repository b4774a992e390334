"""Did the model write this, or copy it from the book? How much of a text appears in the training text.

The training text is indexed once by a suffix array (libdivsufsort, through ``pydivsufsort``: the
`copies` extra), built over its UTF-8 bytes in about 7 s and 6 bytes per byte of text for 100 MB
(docs/look-inside.md), and cached beside the run. For each character of a generated text the
index gives the longest stretch starting there that occurs somewhere in the training text (the
"matching statistics": each is found by binary search in the sorted suffixes, starting from one
less than the previous one's, which is always found). A copied span is such a stretch of at least
``min_chars`` characters; the report says what share of the text lies inside one, and the longest.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.core.corpus import Document, TextFormat, file_sha256

# A copy is a stretch of this many characters or more found in the training text. 20 is about four
# words: text of another book shares shorter stretches with any long book (common phrases, names),
# and hardly ever this long (docs/look-inside.md#copies measures both sides).
MIN_COPY = 20
MISSING = 'the copy report needs the copies extra (pydivsufsort): pip install "charrnn[copies]"'


@dataclass(frozen=True)
class CopyReport:
    """How much of a text lies in stretches found in the training text."""

    chars: int  # characters checked
    min_chars: int  # the shortest stretch that counts as copied
    copied: int  # characters inside copied stretches
    longest: int  # characters of the longest stretch found in the training text
    longest_text: str
    spans: tuple[tuple[int, int], ...] = ()  # the copied stretches merged: [start, end) character offsets

    @property
    def share(self) -> float:
        return self.copied / self.chars if self.chars else 0.0

    def line(self) -> str:
        shown = self.longest_text if len(self.longest_text) <= 60 else self.longest_text[:57] + "..."
        return (
            f"copies: {self.share:.0%} of {self.chars:,} characters lie in stretches of {self.min_chars}+ found in "
            f"the training text; the longest is {self.longest} characters: {shown!r}"
        )


class CopyIndex:
    """A suffix array over a text's UTF-8 bytes, for finding the longest stretches it shares."""

    def __init__(self, data: np.ndarray, suffixes: np.ndarray):
        self.data, self.suffixes = data, suffixes  # (n,) uint8; (n,) int32/int64 sorted suffix starts

    @classmethod
    def build(cls, text: str) -> CopyIndex:
        from pydivsufsort import divsufsort

        data = np.frombuffer(bytearray(text.encode("utf-8", "surrogatepass")), dtype=np.uint8)
        return cls(data, divsufsort(data) if len(data) else np.zeros(0, np.int32))

    def save(self, path: Path, fingerprint: dict) -> None:
        """Write the suffix array beside a run (``path``: its fingerprint, what it was built from;
        the array beside it as .npy). The text itself is not copied: it is read again, and checked."""
        np.save(path.with_suffix(".npy"), np.asarray(self.suffixes))
        path.write_text(json.dumps(fingerprint), encoding="utf-8")

    @staticmethod
    def load_suffixes(path: Path, fingerprint: dict, size: int) -> np.ndarray | None:
        """The suffix array saved at ``path`` if it was built from what ``fingerprint`` describes."""
        try:
            if json.loads(path.read_text(encoding="utf-8")) != fingerprint:
                return None
            suffixes = np.load(path.with_suffix(".npy"), mmap_mode="c")  # writable, as the C search needs
        except (OSError, ValueError):
            return None
        return suffixes if len(suffixes) == size else None

    def _occurs(self, pattern: bytes) -> bool:
        from pydivsufsort import sa_search

        return sa_search(self.data, self.suffixes, pattern)[0] > 0

    def matches(self, text: str) -> np.ndarray:
        """For each character of ``text``: the length in characters of the longest stretch
        starting there that occurs in the indexed text (T,)."""
        pieces = [char.encode("utf-8", "surrogatepass") for char in text]
        ends = np.cumsum([len(piece) for piece in pieces])  # byte offset after each character
        starts = ends - np.array([len(piece) for piece in pieces], dtype=ends.dtype) if len(pieces) else ends
        data = b"".join(pieces)
        lengths = np.zeros(len(text), np.int64)
        known = 0  # bytes found at the previous start, less what was passed: found again here
        for i, start in enumerate(starts.tolist()):
            low, high = known, len(data) - start  # found a match of ``low`` bytes; none longer than ``high``
            step = 8
            while low < high:  # gallop up until a length fails ...
                trial = min(high, low + step)
                if not self._occurs(data[start : start + trial]):
                    high = trial - 1
                    break
                low, step = trial, step * 2
            while low < high:  # ... then halve: the longest length that still occurs
                middle = (low + high + 1) // 2
                if self._occurs(data[start : start + middle]):
                    low = middle
                else:
                    high = middle - 1
            # whole characters only: those whose last byte lies inside the match
            lengths[i] = np.searchsorted(ends, start + low, side="right") - i
            following = starts[i + 1] if i + 1 < len(starts) else start
            known = max(0, low - (following - start))
        return lengths

    def report(self, text: str, min_chars: int = MIN_COPY) -> CopyReport:
        lengths = self.matches(text)
        covered = np.zeros(len(text) + 1, np.int64)
        for i in np.flatnonzero(lengths >= min_chars):  # mark each copied stretch [i, i + length)
            covered[i] += 1
            covered[i + lengths[i]] -= 1
        inside = np.concatenate([[False], np.cumsum(covered)[:-1] > 0, [False]])  # (T + 2,)
        edges = np.flatnonzero(inside[1:] != inside[:-1])  # starts and ends of the copied stretches
        spans = tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))
        best = int(np.argmax(lengths)) if len(text) else 0
        longest = int(lengths[best]) if len(text) else 0
        copied = sum(b - a for a, b in spans)
        return CopyReport(len(text), min_chars, copied, longest, text[best : best + longest], spans)


class NotChecked(Exception):
    """Why a text's copies cannot be checked: one line for the user."""


def training_text(documents: list[Document], separator: str, text_format: TextFormat, shipped: dict[str, Path]) -> str:
    """The text a run trained on, read again from the documents it recorded (their validation
    tails included: text of the same book), each checked against its recorded SHA-256; a document
    named in ``shipped`` (the bundled book) is the package's own copy. ``NotChecked`` says why
    not, when a document is gone, changed or was never hashed."""
    texts = []
    for document in documents:
        if document.path in shipped:
            texts.append(text_format.read(shipped[document.path]))
            continue
        if not document.sha256:
            raise NotChecked(
                "the model's record holds no hashes of its training text (an export, or a run of charrnn 0.2)"
            )
        path = Path(document.path)
        if not path.is_file():
            raise NotChecked(f"the training text {document.path} is gone")
        if file_sha256(path) != document.sha256:
            raise NotChecked(f"the training text {document.path} has changed since the run read it")
        texts.append(text_format.read(path))
    return separator.join(texts)


def copy_index(
    documents: list[Document], separator: str, text_format: TextFormat, cache: Path | None, shipped: dict[str, Path]
) -> CopyIndex:
    """The index of a run's training text: from ``cache`` if it was built from the same documents,
    else built now (and saved there, when the run's directory can be written)."""
    try:
        import pydivsufsort  # noqa: F401
    except ImportError:
        raise NotChecked(MISSING) from None
    text = training_text(documents, separator, text_format, shipped)
    fingerprint = {"sha256": [d.sha256 for d in documents], "separator": separator, "format": str(text_format)}
    data = np.frombuffer(bytearray(text.encode("utf-8", "surrogatepass")), dtype=np.uint8)
    if cache is not None:
        suffixes = CopyIndex.load_suffixes(cache, fingerprint, len(data))
        if suffixes is not None:
            return CopyIndex(data, suffixes)
    index = CopyIndex.build(text)
    if cache is not None:
        with contextlib.suppress(OSError):  # a directory one cannot write: no cache, same answer
            index.save(cache, fingerprint)
    return index
