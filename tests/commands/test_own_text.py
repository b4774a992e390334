"""Training on a user's own text through the CLI: collections, encodings, fine-tuning, line items, bad input."""

import json
import re

import pytest

from charrnn.core.corpus import DOCUMENT_SEPARATOR
from charrnn.formats.checkpoint import Checkpoint
from tests.conftest import BUNDLED_BOOK, QUIET_CPU, TINY, invoke, run_cli

SMALL = ["--batch-size", "4", "--seq-len", "16", *QUIET_CPU]  # finetune takes no architecture options
PLAY = BUNDLED_BOOK.read_text(encoding="utf-8")[:9000]


def lyrics_folder(root):
    """Three songs in two folders, a hidden file and an image: a collection as users have them."""
    for i, name in enumerate(["side-a/01.txt", "side-a/02.txt", "side-b/03.txt"]):
        path = root / "lyrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PLAY[i * 3000 : (i + 1) * 3000], encoding="utf-8")
    (root / "lyrics" / ".notes.txt").write_text("private\u2603", encoding="utf-8")
    (root / "lyrics" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    return root / "lyrics"


def test_train_on_a_directory_and_a_pattern_records_every_document(tmp_path):
    folder = lyrics_folder(tmp_path)
    extra = tmp_path / "extra.txt"
    extra.write_text(PLAY[:2000], encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("train", folder, str(tmp_path / "ext*.txt"), "--out", out, "--max-steps", "2", *TINY)
    assert result.exit_code == 0, result.output
    assert "warning: skipped 1 empty or binary file(s): " in result.output and "cover.jpg" in result.output
    assert "training on 4 files from" in result.output
    checkpoint = Checkpoint.load(out / "last.pt")
    names = [d.path.removeprefix(str(tmp_path) + "/") for d in checkpoint.corpus.documents]
    assert names == ["lyrics/side-a/01.txt", "lyrics/side-a/02.txt", "lyrics/side-b/03.txt", "extra.txt"]
    assert DOCUMENT_SEPARATOR in checkpoint.vocab.chars and "\u2603" not in checkpoint.vocab.chars
    assert all(d.bytes > 0 and re.fullmatch("[0-9a-f]{64}", d.sha256) for d in checkpoint.corpus.documents)
    info = invoke("info", out / "last.pt")
    assert f"trained on     4 files under {tmp_path}" in info.output
    # evaluate reads the folder as training did: the documents joined by the separator the model knows
    scored = invoke("evaluate", out / "last.pt", folder, "--json", "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    facts = json.loads(scored.output.splitlines()[-1])
    assert facts["unknown_chars"] == {} and facts["chars_scored"] > 8000
    assert "cover.jpg" in scored.output  # the skipped image, named on stderr
    # The run resumes from the documents it recorded, with no TEXT given.
    resumed = invoke("train", "--resume", out / "last.pt", "--max-steps", "3", "--no-progress")
    assert resumed.exit_code == 0 and "not the run's own text" not in resumed.output
    # --config repeats it: config.toml lists the sources.
    again = invoke("train", "--config", out / "config.toml", "--out", tmp_path / "again", "--max-steps", "1")
    assert again.exit_code == 0, again.output
    assert Checkpoint.load(tmp_path / "again" / "last.pt").corpus.documents == checkpoint.corpus.documents


def test_a_windows_1252_file_with_old_mac_line_ends(tmp_path):
    text = tmp_path / "letters.txt"
    text.write_bytes(("Caf\u00e9 cr\u00e8me, \u20ac5.\r" * 200).encode("cp1252"))
    refused = invoke("train", text, *TINY)
    assert refused.exit_code == 1
    assert refused.output.strip().endswith(
        "letters.txt is not valid UTF-8 (byte offset 3): pass the file's --encoding (e.g. cp1252), "
        "or --decode-errors replace to replace undecodable bytes"
    )
    out = tmp_path / "run"
    result = invoke("train", text, "--encoding", "cp1252", "--out", out, "--max-steps", "1", *TINY)
    assert result.exit_code == 0, result.output
    vocab = Checkpoint.load(out / "last.pt").vocab.chars
    assert "\r" not in vocab and "\n" in vocab and "\u20ac" in vocab and "\u00e8" in vocab
    kept = invoke(
        "train", text, "--encoding", "cp1252", "--newlines", "keep", "--out", tmp_path / "k", "--max-steps", "1", *TINY
    )
    assert kept.exit_code == 0 and "\r" in Checkpoint.load(tmp_path / "k" / "last.pt").vocab.chars
    scored = invoke("evaluate", out / "last.pt", text, "--encoding", "cp1252", "--json")
    assert scored.exit_code == 0 and json.loads(scored.output)["unknown_chars"] == {}


def test_finetune_refuses_new_characters_then_grows_the_vocabulary_and_resumes(tiny_run, tmp_path):
    text = tmp_path / "french.txt"
    text.write_text(PLAY[:6000].replace("e", "\u00e9"), encoding="utf-8")  # the tiny run's text, e made é
    out = tmp_path / "ft"
    refused = invoke("finetune", tiny_run.last, text, "--out", out, *SMALL)
    assert refused.exit_code == 1
    assert "1 character ('\u00e9') of the text is not in the vocabulary of" in refused.output
    assert "--extend-vocab" in refused.output and not out.exists()
    grown = invoke("finetune", tiny_run.last, text, "--extend-vocab", "--out", out, "--max-steps", "2", *SMALL)
    assert grown.exit_code == 0, grown.output
    assert "vocabulary grown from" in grown.output and f"fine-tuning {tiny_run.last} on french.txt" in grown.output
    checkpoint = Checkpoint.load(out / "last.pt")
    assert "\u00e9" in checkpoint.vocab.chars and checkpoint.saved_train_config["warmup_steps"] == 20
    assert checkpoint.base["path"] == str(tiny_run.last.resolve())
    assert f"fine-tuned from {tiny_run.last.resolve()}" in invoke("info", out / "last.pt").output
    resumed = invoke("finetune", "--resume", out / "last.pt", "--max-steps", "3", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert Checkpoint.load(out / "last.pt").progress.step == 3


def test_finetune_on_something_that_is_not_a_model_loses_nothing(tiny_run, tmp_path):
    text = tmp_path / "book.txt"
    text.write_text(PLAY, encoding="utf-8")
    out = tiny_run.dir  # holds a run: nothing in it may change
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    not_a_model = invoke("finetune", text, text, *SMALL)
    assert not_a_model.exit_code == 1 and "book.txt is not a charrnn checkpoint" in not_a_model.output
    onto_a_run = invoke("finetune", tiny_run.last, text, "--out", out, *SMALL)
    assert onto_a_run.exit_code == 1 and "already holds a run" in onto_a_run.output
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    usage = invoke("finetune", tiny_run.last)
    assert usage.exit_code == 2 and "give the base checkpoint and the text" in usage.output


@pytest.mark.slow
def test_line_items_generate_whole_items_and_say_how_many_are_new(tmp_path):
    names = sorted({word.lower() for word in re.findall(r"[A-Za-z]{4,}", BUNDLED_BOOK.read_text()[:40000])})
    text = tmp_path / "words.txt"
    text.write_text("\n".join(names) + "\n", encoding="utf-8")
    out = tmp_path / "words"
    trained = invoke("train", text, "--line-items", "--out", out, "--max-steps", "30", "--hidden-size", "48", *SMALL)
    assert trained.exit_code == 0, trained.output
    assert "items held out for validation" in invoke("info", out / "best.pt").output
    result = run_cli("generate", out / "best.pt", "--items", "12", "--seed", "5", "--length", "40", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    items = result.stdout.splitlines()
    assert len(items) == 12 and all(item and "\n" not in item for item in items)  # that many, every time
    summary = re.fullmatch(
        r"(\d+) of (\d+) items are new \(not in the training text\), (\d+) copied from it.*\n",
        result.stderr.splitlines()[-1] + "\n",
    )
    assert summary, result.stderr
    new, total, copied = map(int, summary.groups())
    assert total == len(items) and new + copied == total
    assert new == sum(item not in names for item in items)  # the digests agree with the list itself
    again = run_cli("generate", out / "best.pt", "--items", "12", "--seed", "5", "--length", "40", "--device", "cpu")
    assert again.stdout == result.stdout  # a seed gives the same items
    plain = invoke("generate", out / "best.pt", "--items", "3", "--prime", "th", "--seed", "1", "--device", "cpu")
    assert all(line.startswith("th") for line in plain.stdout.splitlines())
    # issue 34 #13: a stop text ends items early, but there are still that many (empty ones drawn again)
    stopped = invoke("generate", out / "best.pt", "--items", "5", "--stop", "e", "--seed", "2", "--device", "cpu")
    assert stopped.exit_code == 0 and len(stopped.stdout.splitlines()) == 5
    assert all(line and "e" not in line for line in stopped.stdout.splitlines())
    split = invoke("generate", out / "best.pt", "--items", "3", "--prime", "a\nb", "--device", "cpu")
    assert split.exit_code == 1 and "an item is one line" in split.output


def test_items_need_a_line_items_model(tiny_run):
    result = invoke("generate", tiny_run.last, "--items", "3", "--device", "cpu")
    assert result.exit_code == 1 and "was not trained with --line-items" in result.output


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "the directory .*empty has no files in it"),
        (lambda tmp: str(tmp / "*.nothing"), r"no file matches the pattern .*\*\.nothing"),
        (lambda tmp: (tmp / "gone.txt").symlink_to(tmp / "nowhere") or tmp / "gone.txt", "cannot read .*gone.txt"),
    ],
    ids=["empty directory", "glob matching nothing", "unreadable file"],
)
def test_sources_with_no_text_exit_1_in_one_line(tmp_path, make_source, message):
    result = invoke("train", make_source(tmp_path), "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and re.search(message, result.output), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_val_file_with_characters_the_training_text_lacks(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text(PLAY, encoding="utf-8")
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(PLAY[:500] + "\u00fc\u00df", encoding="utf-8")
    result = invoke("train", text, "--val-file", held_out, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 1
    assert (
        "2 characters ('\u00df' '\u00fc') of the validation file" in result.output and "held-out.txt" in result.output
    )
    assert not (tmp_path / "run").exists()
