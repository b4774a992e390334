import numpy as np
import pytest
import torch

from charrnn import vocab as vocab_module
from charrnn.errors import CharRNNError
from charrnn.vocab import UnknownCharactersError, Vocab, one_hot


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
