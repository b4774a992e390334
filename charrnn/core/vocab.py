"""The vocabulary encoder: characters <-> label ids, and ids -> one-hot vectors.

The vocabulary is the sorted set of distinct characters of the training text. Ids are kept in the
smallest integer dtype that holds them (uint8 for a typical English book), and encoding is
vectorised through a code-point lookup table, a chunk at a time, so a 100 MB book costs about its
own size in ids and a few small temporary arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.errors import CharRNNError

# Characters encoded per chunk: bounds the temporary code-point arrays (16 MB at most) whatever the text size.
_CHUNK_CHARS = 4 * 1024 * 1024
_NUM_CODE_POINTS = 0x110000  # U+0000 .. U+10FFFF


class UnknownCharactersError(CharRNNError):
    """The text has characters the vocabulary does not contain."""

    def __init__(self, unknown: Sequence[str], vocab_size: int, what: str = "text"):
        self.unknown = tuple(unknown)
        shown = " ".join(repr(c) for c in self.unknown[:20])
        more = f" and {len(self.unknown) - 20} more" if len(self.unknown) > 20 else ""
        super().__init__(
            f"the {what} has {len(self.unknown)} character(s) outside the model's "
            f"{vocab_size}-character vocabulary: {shown}{more}"
        )


def _code_points(text: str) -> Iterable[np.ndarray]:
    """Yield the text's Unicode code points one chunk at a time: uint8 for an ASCII chunk (a quarter
    of the memory and several times faster than UTF-32), uint32 otherwise."""
    for start in range(0, len(text), _CHUNK_CHARS):
        chunk = text[start : start + _CHUNK_CHARS]
        if chunk.isascii():  # O(1): Python keeps the flag
            yield np.frombuffer(chunk.encode("ascii"), dtype=np.uint8)
        else:
            yield np.frombuffer(chunk.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharacterSet:
    """The distinct characters of one or many texts, collected a text at a time: one flag per
    Unicode code point (1.1 MB), so that a corpus of many files never needs its text all at once."""

    def __init__(self) -> None:
        self.seen = np.zeros(_NUM_CODE_POINTS, dtype=bool)

    def add(self, text: str) -> None:
        for code_points in _code_points(text):
            counts = np.bincount(code_points)  # faster than seen[code_points] = True
            self.seen[: counts.size] |= counts > 0

    def chars(self) -> list[str]:
        """The characters seen, sorted (a Vocab's order)."""
        return [chr(cp) for cp in np.flatnonzero(self.seen)]


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer dtype torch can index with that holds ids 0 .. vocab_size-1."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


class Vocab:
    """An ordered set of single characters; a character's id is its position."""

    def __init__(self, chars: Sequence[str]):
        chars = tuple(chars)
        if not chars:
            raise CharRNNError("the vocabulary is empty: the text has no characters")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise CharRNNError("the vocabulary must be a list of single characters")
        if list(chars) != sorted(set(chars)):
            raise CharRNNError("the vocabulary must be sorted and free of duplicates")
        self.chars = chars
        self.dtype = id_dtype(len(chars))
        code_points = np.array([ord(c) for c in chars], dtype=np.int64)
        # table[code point] = id, or -1; the extra last slot catches every larger code point. Signed
        # for the -1, and no wider than needed: the lookup's output is the size of a chunk.
        table_dtype = np.int16 if len(chars) <= 1 << 15 else np.int32
        self._table = np.full(int(code_points[-1]) + 2, -1, dtype=table_dtype)
        self._table[code_points] = np.arange(len(chars), dtype=table_dtype)
        self._char_array = np.array(chars, dtype=object)

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """The sorted distinct characters of ``text``, found without a Python-level loop."""
        seen = CharacterSet()
        seen.add(text)
        return cls(seen.chars())

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab({len(self)} characters)"

    def _lookup(self, code_points: np.ndarray) -> np.ndarray:
        """Ids for an array of code points; -1 where a character is not in the vocabulary."""
        return np.take(self._table, code_points, mode="clip")  # larger code points: the last slot, -1

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, sorted."""
        unknown: set[str] = set()
        for code_points in _code_points(text):
            unknown.update(chr(cp) for cp in np.unique(code_points[self._lookup(code_points) < 0]))
        return sorted(unknown)

    def without_unknown(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every character outside the vocabulary dropped, and those characters."""
        unknown = self.unknown_chars(text)
        if not unknown:
            return text, []
        return text.translate(dict.fromkeys(map(ord, unknown))), unknown  # in C, not a loop per character

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """Label-encode ``text`` to a 1-D array of ids (dtype ``self.dtype``).

        Raises UnknownCharactersError, naming the characters, if any is outside the vocabulary:
        an unknown character never silently becomes id 0. ``what`` names the text in that message.
        """
        ids = np.empty(len(text), dtype=self.dtype)
        start = 0
        for code_points in _code_points(text):
            chunk_ids = self._lookup(code_points)
            if (chunk_ids < 0).any():
                raise UnknownCharactersError(self.unknown_chars(text), len(self), what)
            ids[start : start + chunk_ids.size] = chunk_ids
            start += chunk_ids.size
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """The text for a sequence of ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.cpu().numpy()
        return "".join(self._char_array[np.asarray(ids, dtype=np.int64)])


def one_hot(ids: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(...,) integer ids -> (..., V) one-hot vectors of ``dtype``."""
    return F.one_hot(ids.long(), vocab_size).to(dtype)
