"""A corpus from several sources (charrnn/core/corpus.py): which files, in what order, and how they are laid out."""

import os

import numpy as np
import pytest

from charrnn.core.corpus import DOCUMENT_SEPARATOR, TextFormat, find_files, item_digests, lay_out, read_joined, scan
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError

UTF8 = TextFormat()


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def laid_out(sources, val_frac=0.25, **options):
    warnings = []
    found = scan(sources, UTF8, warn=warnings.append, **options)
    vocab = Vocab(found.characters)
    corpus, train, val = lay_out(found, vocab, UTF8, val_frac=val_frac, line_items=options.get("line_items", False))
    return corpus, vocab.decode(train), vocab.decode(val), warnings


def test_a_directory_stands_for_its_files_in_path_order_without_hidden_ones(tmp_path):
    for name in ("b.txt", "a/z.txt", "a/b.txt", "c.md", ".hidden.txt", ".git/config", "B.txt"):
        write(tmp_path / "books" / name, name)
    found = [path.relative_to(tmp_path / "books").as_posix() for path, _ in find_files([tmp_path / "books"])]
    assert found == ["B.txt", "a/b.txt", "a/z.txt", "b.txt", "c.md"]


def test_sources_keep_their_order_patterns_are_sorted_and_a_file_counts_once(tmp_path):
    one = write(tmp_path / "one.txt", "1")
    for name in ("p2.txt", "p1.txt", "p3.md"):
        write(tmp_path / "poems" / name, name)
    files = find_files([one, str(tmp_path / "poems" / "*.txt"), tmp_path / "poems", one])
    assert [path.name for path, _ in files] == ["one.txt", "p1.txt", "p2.txt", "p3.md"]
    assert [named for _, named in files] == [True, False, False, False]


def test_documents_are_joined_by_the_separator_and_each_gives_its_tail_to_validation(tmp_path):
    write(tmp_path / "d" / "1.txt", "abcdefgh")
    write(tmp_path / "d" / "2.txt", "ijklmnop")
    corpus, train, val, _ = laid_out([tmp_path / "d"])
    assert train == "abcdef" + DOCUMENT_SEPARATOR + "ijklmn"
    assert val == "gh" + DOCUMENT_SEPARATOR + "op"
    assert corpus.separator == DOCUMENT_SEPARATOR and corpus.chars == len(train) + len(val)
    assert [d.chars for d in corpus.documents] == [8, 8] and all(len(d.sha256) == 64 for d in corpus.documents)


def test_one_document_is_laid_out_as_before_without_a_separator(tmp_path):
    corpus, train, val, _ = laid_out([write(tmp_path / "book.txt", "abcdefgh")])
    assert (train, val, corpus.separator) == ("abcdef", "gh", None)


def test_a_val_file_is_the_whole_validation_split_and_is_not_trained_on(tmp_path):
    write(tmp_path / "d" / "1.txt", "abcdefgh")
    held_out = write(tmp_path / "d" / "held.txt", "hgfedcba")
    corpus, train, val, _ = laid_out([tmp_path / "d"], val_file=held_out)
    assert (train, val) == ("abcdefgh", "hgfedcba")
    assert [os.path.basename(d.path) for d in corpus.documents] == ["1.txt"]
    assert corpus.val_document.path == str(held_out)


def test_empty_and_binary_files_in_a_directory_are_skipped_with_one_warning(tmp_path):
    write(tmp_path / "d" / "text.txt", "some text")
    (tmp_path / "d" / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (tmp_path / "d" / "empty.txt").write_bytes(b"")
    corpus, train, _, warnings = laid_out([tmp_path / "d"])
    assert [os.path.basename(d.path) for d in corpus.documents] == ["text.txt"]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped 2 empty or binary file(s)")
    assert "image.png" in warnings[0] and "empty.txt" in warnings[0]


def test_a_binary_file_named_on_its_own_is_refused(tmp_path):
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\x00\x00")
    with pytest.raises(CharRNNError, match="image.png looks binary"):
        scan([binary], UTF8)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "has no files in it"),
        (lambda tmp: str(tmp / "*.nothing"), "no file matches the pattern"),
        (lambda tmp: tmp / "missing.txt", "missing.txt does not exist"),
        (
            lambda tmp: os.symlink(tmp / "gone", tmp / "link.txt") or tmp / "link.txt",
            "cannot read .*link.txt: No such file",
        ),
    ],
    ids=["empty directory", "pattern matching nothing", "missing file", "unreadable file"],
)
def test_sources_that_give_no_text_are_refused_in_one_line(tmp_path, make, message):
    with pytest.raises(CharRNNError, match=message):
        scan([make(tmp_path)], UTF8)


def test_a_directory_of_nothing_but_binary_files_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"\x00\x01")
    with pytest.raises(CharRNNError, match="no text files in .*every file found is empty or binary"):
        scan([tmp_path / "d"], UTF8)


def test_any_codec_and_every_line_end_convention(tmp_path):
    old_mac = write(tmp_path / "mac.txt", "caf\u00e9\rna\u00efve\r\n\u20ac", encoding="cp1252")
    cp1252 = TextFormat(encoding="cp1252")
    assert cp1252.read(old_mac) == "caf\u00e9\nna\u00efve\n\u20ac"
    assert TextFormat(encoding="cp1252", newlines="keep").read(old_mac) == "caf\u00e9\rna\u00efve\r\n\u20ac"
    with pytest.raises(CharRNNError, match=r"mac.txt is not valid UTF-8 \(byte offset 3\): pass the file's --encoding"):
        UTF8.read(old_mac)
    utf16 = write(tmp_path / "u16.txt", "\ufeffline one\r\nline two\r", encoding="utf-16-le")
    assert TextFormat(encoding="utf-16-le").read(utf16) == "line one\nline two\n"
    with pytest.raises(CharRNNError, match="unknown encoding 'klingon'"):
        TextFormat(encoding="klingon").read(utf16)


def test_line_items_are_shuffled_whole_lines_each_after_a_newline(tmp_path):
    names = [f"name{i:02d}" for i in range(40)]
    text = write(tmp_path / "names.txt", "\n\n".join(f"  {name} " for name in names) + "\n")
    corpus, train, val, _ = laid_out([text], val_frac=0.25, line_items=True)
    train_items, val_items = train.split("\n")[1:-1], val.split("\n")[1:-1]
    assert train.startswith("\n") and val.startswith("\n") and train.endswith("\n")
    assert len(train_items) == 30 and len(val_items) == 10
    assert sorted(train_items + val_items) == names  # stripped, none lost, no blank ones
    assert train_items != sorted(train_items)  # shuffled: a sorted list would hold out only the last names
    assert corpus.known_items(["name07", "name39", "name40", "  name07 "]).tolist() == [True, True, False, True]
    assert sorted(corpus.item_digests.tolist()) == sorted(item_digests(names).tolist())


def test_evaluate_reads_documents_joined_by_what_the_model_knows(tmp_path):
    write(tmp_path / "d" / "1.txt", "one\r\n")
    write(tmp_path / "d" / "2.txt", "two")
    assert read_joined([tmp_path / "d"], UTF8, DOCUMENT_SEPARATOR) == "one\n" + DOCUMENT_SEPARATOR + "two"
    assert read_joined([tmp_path / "d"], UTF8, "") == "one\ntwo"


def test_ids_are_as_compact_as_the_vocabulary_allows(tmp_path):
    for i in range(30):
        write(tmp_path / "many" / f"{i:03d}.txt", "abc" * (i + 1))
    found = scan([tmp_path / "many"], UTF8)
    corpus, train, val = lay_out(found, Vocab(found.characters), UTF8, val_frac=0.1)
    assert train.dtype == val.dtype == np.uint8
    assert len(train) + len(val) == sum(3 * (i + 1) for i in range(30)) + 2 * 29 - sum(
        1 for i in range(30) if round(3 * (i + 1) * 0.1) == 0
    )
