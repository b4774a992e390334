"""Files in, a run's two splits out: which documents a run reads, and how they become ids.

    sources ─► find_files ─► scan (pass 1: size, hash, characters) ─► the caller picks the vocabulary
                           ─► lay_out (pass 2: ids) ─► train ids, val ids, and the Corpus record

Sources are files, directories and glob patterns, taken in the order given. A directory stands for
every file below it, hidden ones (".git", ".DS_Store") left out, in the order of their paths
relative to it, compared as strings; a pattern for the files it matches, sorted the same way. A
file reached twice counts once. Empty and binary files found in a directory or by a pattern are
skipped with a warning; named on their own, they are refused.

Several documents are joined by DOCUMENT_SEPARATOR (U+001C, ASCII's "file separator"), which is
then a character of the vocabulary: a training window that runs from one document into the next
sees where one ended, instead of reading two unrelated texts as one. The validation split is the
last ``val_frac`` of every document, joined the same way, so every document is in it; or all of
--val-file, which is then not trained on.

With ``line_items`` each non-blank line of every document is one item (spaces around it dropped).
The items are shuffled with the run's seed (a sorted list of names would otherwise put every "Z"
in the validation split) and written one per line after a leading newline, so that every item,
the first included, starts right after a "\\n": that newline is the item-start marker, and
generation starts each item from the state after a "\\n", as training saw it.

Memory: every document is read twice, one at a time: once for its length, characters and hash,
once to encode it into id arrays allocated at their final size, so thousands of files cost their
ids plus the largest file. A lone file's text is kept from pass 1 instead (reading it again would
only cost time and memory). Line items are shuffled, so all of them are held as strings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.config import TrainConfig
from charrnn.core.data import NotTextError, read_text
from charrnn.core.paths import find_files
from charrnn.core.vocab import CharacterSet, Vocab
from charrnn.errors import CharRNNError

DOCUMENT_SEPARATOR = "\x1c"  # U+001C FILE SEPARATOR: between documents, in the vocabulary
ITEM_START = "\n"  # with line_items, every item follows one
_SHOWN_SKIPPED = 5


@dataclass(frozen=True)
class TextFormat:
    """How a file's bytes become text: the codec, what to do with bytes it cannot decode, line ends."""

    encoding: str = "utf-8"
    decode_errors: str = "strict"
    newlines: str = "normalize"

    @classmethod
    def of(cls, train_config: TrainConfig) -> TextFormat:
        return cls(train_config.encoding, train_config.decode_errors, train_config.newlines)

    def read(self, path: str | os.PathLike) -> str:
        return read_text(path, self.decode_errors, encoding=self.encoding, newlines=self.newlines)


@dataclass(frozen=True)
class Document:
    """One file of a corpus as it was read: enough to find it again and to tell if it changed."""

    path: str  # absolute
    bytes: int  # its size on disk
    sha256: str  # of its bytes on disk
    chars: int  # its length as text, after decoding and line-end normalisation


@dataclass
class Corpus:
    """What a run trains on, as its checkpoints record it."""

    documents: list[Document]
    chars: int  # characters laid out in both splits, separators and item starts included
    val_document: Document | None = None  # --val-file, if given
    separator: str | None = None  # DOCUMENT_SEPARATOR when there are several documents
    item_digests: np.ndarray | None = None  # line items: sorted 64-bit digests of every item (int64)
    sources: list[str] = field(default_factory=list)  # as given, for config.toml

    @property
    def recorded(self) -> bool:
        """Whether the documents' hashes were recorded (charrnn 0.2 kept only a path and a length)."""
        return all(d.sha256 for d in self.documents)

    @property
    def path(self) -> str:
        """The first document: what older checkpoints recorded as the run's one text."""
        return self.documents[0].path

    def describe(self) -> str:
        """'book.txt' or '312 files from lyrics/' for messages."""
        if len(self.documents) == 1:
            return Path(self.path).name
        if 0 < len(self.sources) <= 3:
            where = ", ".join(self.sources)
        else:  # no sources recorded, or a resume's list of every document
            where = os.path.commonpath([d.path for d in self.documents])
        return f"{len(self.documents):,} files from {where}"

    def known_items(self, items: Sequence[str]) -> np.ndarray:
        """For each item: whether it is one of the run's items (bool array); all False if none kept."""
        if self.item_digests is None or not len(items):
            return np.zeros(len(items), dtype=bool)
        return np.isin(item_digests(items), self.item_digests)


@dataclass
class Scan:
    """Pass 1 over a corpus: its documents and the characters they hold."""

    documents: list[Document]
    characters: list[str]  # of the training documents, separator or item start included, sorted
    val_document: Document | None
    val_characters: list[str]
    separator: str | None
    sources: list[str]
    lone_text: str | None = field(default=None, repr=False)  # a corpus of one file: its text, for pass 2

    @property
    def name(self) -> str:
        """A run directory's default name: the text file's stem, or the name of the first source."""
        if len(self.documents) == 1:
            return Path(self.documents[0].path).stem
        first = Path(self.sources[0]).resolve()  # "." has no name; its absolute path has
        return first.name if first.is_dir() else Path(self.documents[0].path).parent.name


def scan(
    sources: Sequence[str | os.PathLike],
    text_format: TextFormat,
    *,
    val_file: str | os.PathLike | None = None,
    line_items: bool = False,
    warn: Callable[[str], None] = print,
) -> Scan:
    """Pass 1: read every document once for its size, hash and characters; nothing is kept."""
    val_path = Path(os.path.abspath(val_file)) if val_file is not None else None
    everything = find_files(sources)
    files = [(path, named) for path, named in everything if path != val_path]
    if everything and not files:
        raise CharRNNError(
            f"{val_file} is both the text and the --val-file: validate on another file, or leave --val-file "
            "out to hold out the end of the text"
        )
    documents, characters, lone_text = [], CharacterSet(), None
    for document, text in _documents(files, sources, text_format, warn):
        characters.add(text)
        documents.append(document)
        lone_text = text if len(files) == 1 else None
        del text  # before the next file is read: one file's text at a time
    separator = DOCUMENT_SEPARATOR if len(documents) > 1 and not line_items else None
    extra = [ITEM_START] if line_items else [separator] if separator else []
    val_document, val_characters = None, []
    if val_path is not None:
        val_document, val_text = _read_document(val_path, text_format)
        val_characters = Vocab.from_text(val_text).chars
    return Scan(
        documents=documents,
        characters=sorted(set(characters.chars()) | set(extra)),
        val_document=val_document,
        val_characters=list(val_characters),
        separator=separator,
        sources=[str(s) for s in sources],
        lone_text=lone_text,
    )


def read_joined(
    sources: Sequence[str | os.PathLike], text_format: TextFormat, separator: str, warn: Callable[[str], None] = print
) -> str:
    """All the text of ``sources`` as one string, documents joined by ``separator`` (``evaluate``)."""
    return separator.join(text for _, text in _documents(find_files(sources), sources, text_format, warn))


def _documents(
    files: list[tuple[Path, bool]], sources: Sequence[str | os.PathLike], text_format: TextFormat, warn: Callable
) -> Iterator[tuple[Document, str]]:
    """Each file's document and text, one at a time; empty and binary files that were not named on
    their own are skipped, with one warning at the end."""
    skipped, read = [], 0
    for path, named in files:
        try:
            document, text = _read_document(path, text_format)
        except NotTextError:
            if named:
                raise
            skipped.append(path)
            continue
        read += 1
        yield document, text
        del text  # not held here while the caller reads the next file
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:_SHOWN_SKIPPED])
        more = f" and {len(skipped) - _SHOWN_SKIPPED} more" if len(skipped) > _SHOWN_SKIPPED else ""
        warn(f"warning: skipped {len(skipped)} empty or binary file(s): {shown}{more}")
    if not read:
        raise CharRNNError(f"no text files in {', '.join(map(str, sources))}: every file found is empty or binary")


def _read_document(path: Path, text_format: TextFormat) -> tuple[Document, str]:
    text = text_format.read(path)
    digest = file_sha256(path)  # the page cache has the bytes: hashing them again is cheap
    return Document(str(path), path.stat().st_size, digest, len(text)), text


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks (never the whole file at once)."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None


def describe_characters(chars: Sequence[str]) -> str:
    """ "2 characters ('é' 'ü')" for messages; the document separator is named, not shown."""
    shown = " ".join("U+001C (the document separator)" if c == DOCUMENT_SEPARATOR else repr(c) for c in chars[:20])
    more = f" and {len(chars) - 20} more" if len(chars) > 20 else ""
    return f"{len(chars)} character{'' if len(chars) == 1 else 's'} ({shown}{more})"


def lay_out(
    found: Scan,
    vocab: Vocab,
    text_format: TextFormat,
    *,
    val_frac: float,
    line_items: bool = False,
    seed: int = 0,
) -> tuple[Corpus, np.ndarray, np.ndarray]:
    """Pass 2: the corpus record and its (train ids, val ids), encoded with ``vocab``.

    Raises UnknownCharactersError (naming the file) for characters outside ``vocab``.
    """
    if line_items:
        train_ids, val_ids, digests = _lay_out_items(found, vocab, text_format, val_frac, seed)
    else:
        train_ids, val_ids = _lay_out_documents(found, vocab, text_format, val_frac)
        digests = None
    corpus = Corpus(
        documents=found.documents,
        chars=len(train_ids) + len(val_ids),
        val_document=found.val_document,
        separator=found.separator,
        item_digests=digests,
        sources=found.sources,
    )
    return corpus, train_ids, val_ids


def _lay_out_documents(
    found: Scan, vocab: Vocab, text_format: TextFormat, val_frac: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each document's head to train, its tail (``val_frac`` of it) to val, separators between."""
    held_out = found.val_document is not None
    heads = [d.chars - (0 if held_out else int(round(d.chars * val_frac))) for d in found.documents]
    if found.lone_text is not None and not held_out:  # one file: its two splits are views, not copies
        ids, found.lone_text = vocab.encode(found.lone_text, what=f"text {found.documents[0].path}"), None  # let go
        return ids[: heads[0]], ids[heads[0] :]
    tails = [d.chars - head for head, d in zip(heads, found.documents, strict=True)]
    train = _Filler(sum(heads), sum(map(bool, heads)), vocab, found.separator)
    val = _Filler(sum(tails), sum(map(bool, tails)), vocab, found.separator)
    for head, document in zip(heads, found.documents, strict=True):
        ids = _encode_document(document, vocab, text_format)
        train.append(ids[:head])
        val.append(ids[head:])
    if held_out:
        val = _Filler(found.val_document.chars, 1, vocab, None)
        val.append(_encode_document(found.val_document, vocab, text_format, "validation file"))
    return train.ids, val.ids


class _Filler:
    """An id array allocated at its final size and filled piece by piece, a separator between pieces."""

    def __init__(self, chars: int, pieces: int, vocab: Vocab, separator: str | None):
        separators = max(pieces - 1, 0) if separator else 0
        self.ids = np.empty(chars + separators, dtype=vocab.dtype)
        self.separator = vocab.encode(separator)[0] if separator else None
        self.filled = 0

    def append(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self.filled and self.separator is not None:
            self.ids[self.filled] = self.separator
            self.filled += 1
        self.ids[self.filled : self.filled + len(ids)] = ids
        self.filled += len(ids)


def _encode_document(document: Document, vocab: Vocab, text_format: TextFormat, what: str = "text") -> np.ndarray:
    text = text_format.read(document.path)
    if len(text) != document.chars:
        raise CharRNNError(f"{document.path} changed while it was being read: run the command again")
    return vocab.encode(text, what=f"{what} {document.path}")


def _lay_out_items(
    found: Scan, vocab: Vocab, text_format: TextFormat, val_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line items: shuffled, the last ``val_frac`` of them (or the val file's) held out."""
    items = [item for document in found.documents for item in _items(text_format.read(document.path))]
    if found.val_document is not None:
        val_items = _items(text_format.read(found.val_document.path))
        train_items = items
    else:
        order = np.random.default_rng(seed).permutation(len(items))
        items = [items[i] for i in order]
        num_val = int(round(len(items) * val_frac))
        train_items, val_items = items[: len(items) - num_val], items[len(items) - num_val :]
    if len(train_items) < 2 or not val_items:
        raise CharRNNError(
            f"--line-items found {len(train_items)} training and {len(val_items)} validation item(s): "
            "give a text with more non-blank lines"
        )
    digests = np.unique(item_digests(items + (val_items if found.val_document is not None else [])))
    train_ids = vocab.encode(_item_text(train_items), what="the items")
    val_ids = vocab.encode(_item_text(val_items), what="the validation items")
    return train_ids, val_ids, digests


def _items(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _item_text(items: Sequence[str]) -> str:
    return ITEM_START + ITEM_START.join(items) + ITEM_START


def item_digests(items: Sequence[str]) -> np.ndarray:
    """64-bit digests of items (int64): a run keeps these, not the items, to tell a new item from a
    copied one (8 bytes an item; two different items share a digest with odds of about 1 in 2^64
    per pair)."""
    return np.array([_digest(item.strip()) for item in items], dtype=np.int64)


def _digest(item: str) -> int:
    raw = hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "little", signed=True)
