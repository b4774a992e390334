import numpy as np
import pytest
import torch

from charrnn.core import vocab as vocab_module
from charrnn.core.vocab import UnknownCharactersError, Vocab, one_hot
from charrnn.errors import CharRNNError


def test_vocabulary_is_the_sorted_distinct_characters():
    vocab = Vocab.from_text("hello, world\n")
    assert vocab.chars == tuple(sorted(set("hello, world\n")))
    assert len(vocab) == 10


@pytest.mark.parametrize("text", ["To be, or not to be\n", "春眠不覺曉，處處聞啼鳥。", "emoji 🙂 and ünïcødé\r\n\t"])
def test_encode_decode_round_trip(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(torch.from_numpy(ids)) == text


def test_ids_use_the_smallest_dtype_that_holds_the_vocabulary():
    assert Vocab.from_text("abc").encode("cab").dtype == np.uint8
    assert Vocab([chr(0x4E00 + i) for i in range(300)]).dtype == np.int16
    assert Vocab([chr(0x4E00 + i) for i in range(40000)]).dtype == np.int32


def test_ids_are_positions_in_the_sorted_vocabulary():
    vocab = Vocab.from_text("cab")
    assert vocab.encode("abcab").tolist() == [0, 1, 2, 0, 1]


def test_unknown_characters_are_an_error_that_names_them():
    vocab = Vocab.from_text("abc")
    with pytest.raises(UnknownCharactersError) as info:
        vocab.encode("abxcz\u2603")
    assert info.value.unknown == ("x", "z", "\u2603")
    assert "'x'" in str(info.value) and "3-character vocabulary" in str(info.value)


def test_encoding_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK_CHARS", 7)
    text = "the quick brown fox jumps over the lazy dog, 12 times 🙂"
    vocab = Vocab.from_text(text)
    assert vocab == Vocab(sorted(set(text)))
    assert vocab.decode(vocab.encode(text)) == text
    with pytest.raises(UnknownCharactersError):
        vocab.encode(text + "Q")


def test_one_hot_marks_exactly_the_id():
    ids = torch.tensor([[0, 2], [1, 1]], dtype=torch.uint8)
    vectors = one_hot(ids, 3)
    assert vectors.shape == (2, 2, 3) and vectors.dtype == torch.float32
    assert torch.equal(vectors.argmax(-1), ids.long())
    assert torch.equal(vectors.sum(-1), torch.ones(2, 2))


def test_vocabulary_must_be_sorted_single_characters():
    for bad in (["b", "a"], ["ab"], ["a", "a"], []):
        with pytest.raises(CharRNNError):
            Vocab(bad)


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.int16), (1 << 15, np.int16), ((1 << 15) + 1, np.int32)],
)
def test_ids_are_the_smallest_dtype_that_holds_the_vocabulary_at_its_limits(vocab_size, dtype):
    chars = [chr(0x20 + i) for i in range(vocab_size)]  # ASCII first, then wider characters
    vocab = Vocab(chars)
    ids = vocab.encode(chars[-1] + chars[0] + chars[-1])
    assert ids.dtype == dtype
    assert ids.tolist() == [vocab_size - 1, 0, vocab_size - 1]


def test_unknown_characters_are_found_in_ascii_and_wide_chunks_inside_and_beyond_the_table(monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK_CHARS", 4)
    cjk_vocab = Vocab.from_text("春眠不覺曉abc")  # a long lookup table, ids in int16
    with pytest.raises(UnknownCharactersError) as info:
        cjk_vocab.encode("abcabcZ春眠")  # 'Z' lies inside the table, in an ASCII chunk
    assert info.value.unknown == ("Z",)
    gap_vocab = Vocab.from_text("ac")  # 'b' is a hole in a short table, '中' lies beyond it
    with pytest.raises(UnknownCharactersError) as info:
        gap_vocab.encode("acacb\u4e2d")
    assert info.value.unknown == ("b", "\u4e2d")


def test_vocabulary_of_text_mixing_ascii_and_wide_chunks(monkeypatch):
    monkeypatch.setattr(vocab_module, "_CHUNK_CHARS", 3)
    text = "abc" * 3 + "春眠不覺曉" + "xyz" + "\U0001f642\n"
    vocab = Vocab.from_text(text)
    assert vocab.chars == tuple(sorted(set(text)))
    assert vocab.decode(vocab.encode(text)) == text


def test_without_unknown_drops_exactly_the_unknown_characters():
    vocab = Vocab.from_text("abc ")
    kept, unknown = vocab.without_unknown("a\u2603b c\U0001f642a\u2603")
    assert kept == "ab ca" and unknown == ["\u2603", "\U0001f642"]
    assert vocab.without_unknown("cab") == ("cab", [])
