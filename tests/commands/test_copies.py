"""The copy report (charrnn/core/copies.py): how much of a text is found in the training text,
through the API and after `charrnn generate`."""

import pytest

import charrnn
from charrnn.core.copies import CopyIndex, NotChecked
from tests.conftest import TINY, invoke

# Prose of this project's own (not from any book the tests train on): the "other book".
OTHER_BOOK = (
    "The tram stopped twice before the bridge, and each time the driver leaned out to argue with "
    "a man selling umbrellas. Nobody on board minded; the rain had not started yet, and the river "
    "below was the colour of weak tea. A girl near the back counted the lamps on the far bank."
)


def test_the_longest_stretch_at_each_place_is_what_a_plain_search_finds():
    corpus = "the cat sat on the mat. the dog sat on the log. a cat is not a dog."
    index = CopyIndex.build(corpus)
    text = "a dog sat on the mat, the cat is not"
    lengths = index.matches(text)
    for i, length in enumerate(lengths.tolist()):
        assert text[i : i + length] in corpus and (i + length == len(text) or text[i : i + length + 1] not in corpus)
    report = index.report(text, min_chars=10)
    start = lengths.tolist().index(max(lengths))
    assert report.longest == max(lengths) and report.longest_text == text[start : start + report.longest]
    covered = {j for i, length in enumerate(lengths.tolist()) if length >= 10 for j in range(i, i + length)}
    assert report.copied == len(covered) == 30
    assert report.spans == ((1, 20), (25, 36)) and {j for a, b in report.spans for j in range(a, b)} == covered


def test_text_from_the_book_is_copied_and_text_from_another_is_not(tiny_run):
    model = charrnn.load(tiny_run.best, "cpu")
    book = tiny_run.text.read_text(encoding="utf-8")
    pasted = model.copies(book[3000:3600])
    assert pasted.share >= 0.95 and pasted.longest == 600
    other = model.copies("".join(c for c in OTHER_BOOK if c in model.vocab.chars))
    assert other.longest < 20 and other.copied == 0  # a few letters or words at most
    assert (tiny_run.dir / "copies-index.json").exists()  # cached beside the run


@pytest.mark.slow  # trains a model for a few hundred steps
def test_an_overfit_models_samples_are_long_copies_and_generate_says_so(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 4)
    options = ["--plan", "off", "--max-steps", 600, "--max-epochs", 10_000, "--lr", "0.01", "--dropout", 0]
    options += ["--hidden-size", 64, "--batch-size", 4, "--seq-len", 32, "--no-sample", "--no-progress"]
    trained = invoke("train", text, "--out", tmp_path / "run", *options)
    assert trained.exit_code == 0, trained.output
    result = invoke("generate", tmp_path / "run" / "best.pt", "--prime", "Now", "--length", 200, "--seed", 1,
                    "--temperature", "0.3", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0
    [line] = [line for line in result.output.splitlines() if line.startswith("copies: ")]
    share = int(line.split("%")[0].removeprefix("copies: "))
    longest = int(line.split("the longest is ")[1].split(" characters")[0])
    assert share >= 80 and longest >= 60, line


def test_a_changed_or_missing_training_text_is_one_line_and_generation_goes_on(tiny_run, tmp_path):
    text = tmp_path / "mine.txt"  # a text of this test's own: it is changed, then removed
    text.write_text(tiny_run.text.read_text(encoding="utf-8"), encoding="utf-8")
    trained = invoke(
        "train", text, "--out", tmp_path / "run", "--max-steps", 4, "--eval-every", 4, *TINY, "--no-sample"
    )
    assert trained.exit_code == 0, trained.output
    best = tmp_path / "run" / "best.pt"
    text.write_text(text.read_text(encoding="utf-8") + "one more line\n", encoding="utf-8")
    changed = invoke("generate", best, "--length", 30, "--seed", 1, "--device", "cpu")
    assert changed.exit_code == 0 and "copies: not checked: the training text" in changed.output
    assert "has changed since the run read it" in changed.output
    text.unlink()
    gone = invoke("generate", best, "--length", 30, "--seed", 1, "--device", "cpu", "--num-samples", 2)
    assert gone.exit_code == 0 and gone.output.count("copies: not checked") == 1 and "is gone" in gone.output
    quiet = invoke("generate", best, "--length", 30, "--copies", "off", "--device", "cpu")
    assert quiet.exit_code == 0 and "copies" not in quiet.output
    with pytest.raises(NotChecked, match="is gone"):
        charrnn.load(best, "cpu").copies("anything")
