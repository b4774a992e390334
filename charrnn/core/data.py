"""Text in, (B, T) windows out.

A split of N label ids is cut into B equal contiguous streams, one per batch row, and served as
windows of T characters. Row b of window i+1 continues row b of window i, which is what lets the
trainer carry the LSTM state from one window to the next (truncated BPTT):

    ids:      a b c d e f g h i j k l m n o p q r s t u v w x y     (N = 25, B = 3, T = 4)

    inputs    stream 0: a b c d | e f g h          targets: b c d e | f g h i
    (B, n)    stream 1: i j k l | m n o p                   j k l m | n o p q
              stream 2: q r s t | u v w x                   r s t u | v w x y
                        window 0  window 1

Targets are the inputs shifted by one character in the original text, so every character but the
first (and the < B left over at the end) is predicted exactly once per pass.
"""

from __future__ import annotations

import codecs
import math
import os
from pathlib import Path

import numpy as np
import torch

from charrnn.config import NEWLINES
from charrnn.encodings import text_codec
from charrnn.errors import CharRNNError


class NotTextError(CharRNNError):
    """The file is empty or binary: a directory scan skips such files, a file named alone is refused."""


def read_text(
    path: str | os.PathLike, decode_errors: str = "strict", *, encoding: str = "utf-8", newlines: str = "normalize"
) -> str:
    """Read a text file the way training, evaluation and resume all see it.

    A leading byte-order mark is dropped, and with ``newlines="normalize"`` Windows (CRLF) and
    old Mac (bare CR) line ends become "\\n", so the same book saved on two systems gives the same
    characters and no generated text carries a CR that makes a terminal overwrite its own line;
    ``"keep"`` keeps them as they are. Empty files and files with NUL characters (binary) raise
    NotTextError; text the codec cannot decode is refused with the byte offset, unless
    ``decode_errors="replace"`` turns it into U+FFFD.

    For UTF-8 the BOM and the line ends are dealt with in the bytes, before decoding, so a big
    book is held at most as its bytes plus its text (or, for a moment, two copies of its bytes),
    never also as a second, normalised copy of the text, which Python stores at up to 4 bytes per
    character. That gives the same text: CR and LF are never part of a multi-byte character, and
    U+FFFD never stands for either. Other codecs (UTF-16, say) may use those bytes inside a
    character, so there the text is decoded first and normalised after.
    """
    if newlines not in NEWLINES:
        raise CharRNNError(f"newlines must be one of {', '.join(NEWLINES)}, not {newlines!r}")
    codec = codec_name(encoding)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw:
        raise NotTextError(f"{path} is empty: give a text file with some characters in it")
    if codec == "utf-8":  # the default: a UTF-16 or UTF-32 byte-order mark says what the file is
        codec = next((name for bom, name in WIDE_BOMS if raw.startswith(bom)), codec)
    if codec != "utf-8":
        return _decode_other(path, raw, codec, decode_errors, newlines)
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise NotTextError(f"{path} looks binary (NUL byte at offset {nul}): give a plain text file")
    text_start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    if newlines == "normalize":
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # the same object when there is no CR
    try:
        return str(memoryview(raw)[text_start:], "utf-8", decode_errors)  # a view: no copy of the bytes
    except UnicodeDecodeError:
        del raw  # room for reading the file again to find the offset
    raise _undecodable(path, "UTF-8", _invalid_offset(path, "utf-8"))


# Characters in each piece of a validation sample (StreamBatches' ``sample``): long enough that
# the state has context for nearly all of a piece, short enough for hundreds of pieces.
SAMPLE_PIECE = 2000
# A file that starts with one of these is in that encoding (UTF-32's marks first: UTF-32-LE's
# begins with UTF-16-LE's).
WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def codec_name(encoding: str) -> str:
    """Python's own name for a text ``encoding``; one line if it is none (``encodings.text_codec``)."""
    try:
        return text_codec(encoding)
    except ValueError as exc:
        raise CharRNNError(str(exc)) from None


def _decode_other(path: str | os.PathLike, raw: bytes, codec: str, decode_errors: str, newlines: str) -> str:
    """read_text for any codec but UTF-8: decode, then drop a BOM and normalise the line ends."""
    try:
        text = raw.decode(codec, decode_errors)
    except UnicodeDecodeError as exc:
        raise _undecodable(path, codec, exc.start) from None
    text = text.removeprefix("\ufeff")  # UTF-16 and UTF-8-sig drop their own; a BOM is never text
    nul = text.find("\x00")
    if nul >= 0:
        raise NotTextError(f"{path} looks binary (NUL character at position {nul}): give a plain text file")
    if newlines == "normalize":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _undecodable(path: str | os.PathLike, codec: str, offset: int | str) -> CharRNNError:
    return CharRNNError(
        f"{path} is not valid {codec} (byte offset {offset}): pass the file's --encoding (e.g. cp1252), "
        "or --decode-errors replace to replace undecodable bytes"
    )


def _invalid_offset(path: str | os.PathLike, codec: str) -> int | str:
    """Where the file stops decoding, found in the file as it is on disk: the text that failed
    to decode had lost its BOM and the CR of each CRLF, so its offsets are not the file's."""
    try:
        Path(path).read_bytes().decode(codec)
    except UnicodeDecodeError as exc:
        return exc.start
    except OSError:
        pass
    return "unknown: the file changed while it was read"


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) views of ``ids``; val is the last ``val_frac`` of the text."""
    num_val = int(round(len(ids) * val_frac))
    return ids[: len(ids) - num_val], ids[len(ids) - num_val :]


def too_short(chars: int, batch_size: int, seq_len: int, full_windows: bool = True) -> bool:
    """Whether a split of ``chars`` cannot give ``batch_size`` streams (with ``full_windows``) a whole window each."""
    return (chars - 1) // batch_size < (seq_len if full_windows else 1)


def check_length(chars: int, batch_size: int, seq_len: int, full_windows: bool, name: str) -> None:
    """Refuse a split too short for ``batch_size`` streams of (with ``full_windows``) a whole window each."""
    min_stream_len = seq_len if full_windows else 1
    if too_short(chars, batch_size, seq_len, full_windows):
        options = f"--batch-size {batch_size}" + (f" and --seq-len {seq_len}" if full_windows else "")
        raise CharRNNError(
            f"the {name} has {chars:,} characters, fewer than the {batch_size * min_stream_len + 1:,} that "
            f"{options} need: use a longer text or smaller values"
        )


class StreamBatches:
    """One split laid out as B contiguous streams and served as (B, T) windows.

    With ``full_windows=True`` (training) every window is exactly T long and the < T leftover
    characters of each stream are skipped; with ``False`` (validation) the last window is shorter
    so that every character of the split is scored. ``part=(i, n)`` keeps the i-th of n equal
    blocks of streams: one data-parallel process's share of the same global layout. ``sample``
    scores at most that many characters (``_sample_pieces``), so that scoring a long split costs
    a bounded time.
    """

    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        seq_len: int,
        *,
        full_windows: bool,
        device: torch.device | str = "cpu",
        name: str = "text",
        part: tuple[int, int] = (0, 1),
        sample: int | None = None,
    ):
        stream_len = (len(ids) - 1) // batch_size  # n: inputs per stream
        check_length(len(ids), batch_size, seq_len, full_windows, name)
        index, count = part  # this process keeps rows [index·B/count, (index+1)·B/count)
        if batch_size % count:
            raise CharRNNError(f"{batch_size} streams cannot be shared equally by {count} processes")
        rows = slice(index * batch_size // count, (index + 1) * batch_size // count)
        self.split_chars = len(ids)
        self.sampled = sample is not None and sample < batch_size * stream_len
        if self.sampled:
            inputs, targets = _sample_pieces(ids, batch_size, sample)
            stream_len = inputs.shape[1]
        else:
            flat = torch.from_numpy(np.ascontiguousarray(ids[: batch_size * stream_len + 1]))
            inputs = flat[:-1].view(batch_size, stream_len)  # (B, n)
            targets = flat[1:].view(batch_size, stream_len)  # (B, n): inputs shifted by one
        self.inputs = inputs[rows].to(device)  # (B/count, n)
        self.targets = targets[rows].to(device)
        self.batch_size = batch_size // count
        self.seq_len = seq_len
        if full_windows:
            self.num_windows = stream_len // seq_len
        else:
            self.num_windows = math.ceil(stream_len / seq_len)

    @property
    def num_chars(self) -> int:
        """Characters scored in one pass over all windows."""
        return self.batch_size * min(self.inputs.shape[1], self.num_windows * self.seq_len)

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``index``: inputs x and targets y, both (B, T) int64 (T shorter at the end)."""
        start = index * self.seq_len
        stop = start + self.seq_len
        x = self.inputs[:, start:stop].long()  # (B, T)
        y = self.targets[:, start:stop].long()  # (B, T)
        return x, y


def sample_layout(batch_size: int, sample: int) -> tuple[int, int]:
    """(pieces, characters per piece) of a ``sample``-character validation sample over ``batch_size``
    streams: a whole number of pieces per stream, at least one character each."""
    pieces = batch_size * max(1, sample // (batch_size * SAMPLE_PIECE))
    return pieces, max(1, sample // pieces)


def _sample_pieces(ids: np.ndarray, batch_size: int, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (B, n): ``sample`` characters of ``ids`` as pieces of about
    SAMPLE_PIECE characters spread evenly over it, a whole number of pieces per stream, each
    stream's pieces in the split's order. On a collection of files, hundreds of short pieces
    scored five models 0.007-0.015 nats/char above the whole split; B long ones, -0.01 to -0.08."""
    pieces, length = sample_layout(batch_size, sample)
    starts = np.linspace(0, len(ids) - 1 - length, pieces).astype(np.int64)
    positions = (starts[:, None] + np.arange(length)).reshape(-1)  # (pieces·length,)
    inputs = torch.from_numpy(ids[positions]).view(batch_size, -1)  # (B, n)
    targets = torch.from_numpy(ids[positions + 1]).view(batch_size, -1)  # (B, n): each input's next character
    return inputs, targets
