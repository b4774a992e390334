from itertools import pairwise

import numpy as np
import pytest
import torch

from charrnn.core.data import SAMPLE_PIECE, StreamBatches, read_text, split_train_val
from charrnn.errors import CharRNNError


def positions(n: int) -> np.ndarray:
    """Ids equal to their own position in the text, so every id says where it came from."""
    return np.arange(n, dtype=np.int32)


def test_targets_are_the_inputs_shifted_by_one_character():
    batches = StreamBatches(positions(1000), batch_size=4, seq_len=10, full_windows=True)
    for index in range(batches.num_windows):
        x, y = batches.window(index)
        assert x.shape == y.shape == (4, 10)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)


def test_each_row_is_a_contiguous_stream_that_continues_across_windows():
    ids = positions(1001)
    batches = StreamBatches(ids, batch_size=4, seq_len=10, full_windows=True)
    stream_len = 1000 // 4
    rows = torch.cat([batches.window(i)[0] for i in range(batches.num_windows)], dim=1)  # (B, W·T)
    for b in range(4):
        expected = ids[b * stream_len : b * stream_len + batches.num_windows * 10]
        assert rows[b].tolist() == expected.tolist()
    # the last input of window i, row b, is followed by the first input of window i+1, row b
    x0, _ = batches.window(0)
    x1, _ = batches.window(1)
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)


def test_training_windows_are_full_and_validation_windows_cover_every_character():
    ids = positions(1001)  # 250 inputs per stream with B = 4
    train = StreamBatches(ids, batch_size=4, seq_len=60, full_windows=True)
    assert train.num_windows == 4 and train.num_chars == 4 * 240
    val = StreamBatches(ids, batch_size=4, seq_len=60, full_windows=False)
    assert val.num_windows == 5 and val.num_chars == 1000
    last_x, last_y = val.window(4)
    assert last_x.shape == (4, 10)
    scored = torch.cat([val.window(i)[1] for i in range(val.num_windows)], dim=1)
    assert sorted(scored.reshape(-1).tolist()) == list(range(1, 1001))


def test_a_validation_sample_is_short_pieces_spread_evenly_over_the_split():
    ids = positions(100_001)
    sampled = StreamBatches(ids, batch_size=4, seq_len=60, full_windows=False, sample=16_000)
    assert sampled.sampled and sampled.num_chars == 16_000 and sampled.split_chars == 100_001
    x = torch.cat([sampled.window(i)[0] for i in range(sampled.num_windows)], dim=1)  # (B, n)
    y = torch.cat([sampled.window(i)[1] for i in range(sampled.num_windows)], dim=1)
    assert torch.equal(y, x + 1)  # every target is its input's next character, across pieces too
    flat = x.reshape(-1).tolist()
    starts = [flat[0]] + [b for a, b in pairwise(flat) if b != a + 1]
    assert len(starts) == 16_000 // SAMPLE_PIECE  # a whole number of pieces per stream
    gaps = {b - a for a, b in pairwise(starts)}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert starts[0] == 0 and starts[-1] + SAMPLE_PIECE == 100_000  # from end to end
    tiny = StreamBatches(ids, batch_size=4, seq_len=60, full_windows=False, sample=2)
    assert tiny.num_chars == 4  # fewer characters than streams: one per stream
    whole = StreamBatches(ids, batch_size=4, seq_len=60, full_windows=False, sample=100_000)
    assert not whole.sampled and whole.num_chars == 100_000  # a sample as long as the split is all of it


def test_val_is_the_tail_of_the_text():
    ids = positions(1000)
    train, val = split_train_val(ids, 0.1)
    assert len(train) == 900 and len(val) == 100
    assert val[0] == 900 and val[-1] == 999 and train[-1] == 899


def test_too_short_a_text_says_its_length_and_the_minimum():
    with pytest.raises(CharRNNError, match=r"has 100 characters, fewer than the 321 .*--batch-size 4 and --seq-len 80"):
        StreamBatches(positions(100), batch_size=4, seq_len=80, full_windows=True, name="text")


def test_read_text_drops_a_bom_and_normalises_windows_line_ends(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes("\ufeffFirst line\r\nSecond line\r\n".encode("utf-8"))
    assert read_text(path) == "First line\nSecond line\n"


def test_read_text_refuses_empty_binary_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CharRNNError, match="is empty"):
        read_text(empty)
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"PNG\x00\x01\x02")
    with pytest.raises(CharRNNError, match="binary .NUL byte at offset 3"):
        read_text(binary)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CharRNNError, match="not valid UTF-8 .byte offset 3"):
        read_text(latin1)
    assert read_text(latin1, decode_errors="replace") == "caf\ufffd au lait"


def read_whole(raw: bytes, decode_errors: str) -> str:
    """The obvious reading that read_text must match: decode it all, drop a BOM, replace CRLF, then CR."""
    text = raw.decode("utf-8", errors=decode_errors)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Pieces of files that meet at awkward places: CR/LF next to cut, invalid and multi-byte characters.
FRAGMENTS = [
    b"a",
    b"\r",
    b"\n",
    b"\r\n",
    "\ufeff".encode(),
    "\u00e9".encode(),
    "\u4e2d".encode(),
    "\U0001f642".encode(),
    b"\xff",
    b"\xe4",
    b"\xb8",
    b"\xf0\x9f",
    b"\xed\xa0\x80",
    b"\xc3",
]


def test_read_text_gives_the_text_and_errors_of_decoding_the_whole_file_then_normalising(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "book.txt"
    for _ in range(600):
        raw = b"".join(FRAGMENTS[i] for i in rng.integers(len(FRAGMENTS), size=rng.integers(1, 12)))
        path.write_bytes(raw)
        assert read_text(path, decode_errors="replace") == read_whole(raw, "replace"), raw
        try:
            expected = read_whole(raw, "strict")
        except UnicodeDecodeError as exc:
            with pytest.raises(CharRNNError, match=rf"not valid UTF-8 \(byte offset {exc.start}\)"):
                read_text(path)
        else:
            assert read_text(path) == expected, raw


def test_invalid_utf8_offset_is_the_files_own_after_a_bom_and_crlf_line_ends(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(b"\xef\xbb\xbfab\r\ncd\r\n\r\n\xffef")
    with pytest.raises(CharRNNError, match=r"byte offset 13\)"):
        read_text(path)
    assert read_text(path, decode_errors="replace") == "ab\ncd\n\n\ufffdef"


def test_read_text_turns_every_line_end_into_lf_unless_told_to_keep_them_and_drops_only_a_leading_bom(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes("\ufeff\ufeffa\rb\r\r\nc\n\rd\r".encode("utf-8"))
    assert read_text(path) == "\ufeffa\nb\n\nc\n\nd\n"
    assert read_text(path, newlines="keep") == "\ufeffa\rb\r\r\nc\n\rd\r"


def test_a_nul_byte_makes_a_file_binary_even_after_invalid_utf8(tmp_path):
    path = tmp_path / "mixed.bin"
    path.write_bytes(b"ab\xffcd\x00ef")
    with pytest.raises(CharRNNError, match="binary .NUL byte at offset 5"):
        read_text(path)


def test_read_text_says_a_file_it_cannot_read(tmp_path):
    with pytest.raises(CharRNNError, match="cannot read .*missing.txt"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(CharRNNError, match="cannot read"):
        read_text(tmp_path)
