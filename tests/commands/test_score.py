"""`charrnn score` (charrnn/commands/score.py, generation/inside.py): per-character surprise,
the units that follow a property of the text, and the page that shows both."""

import json
import math
import random

import pytest
import torch

import charrnn
from charrnn.generation.inside import rank_units, surprising_spans, text_property
from tests.conftest import invoke

BRACKETS = r"\[[^\]]*\]"


def json_line(output: str) -> dict:
    """The report in a command's output (stderr's lines are mixed in by the test runner)."""
    [line] = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(line)


def bracket_text(size: int, seed: int) -> str:
    """Words of letters or digits; a fifth of the time a bracketed group of 3-8 of them, whose
    letters are upper case. Digits and spaces look the same inside and out, so only a unit that
    remembers the open bracket follows "inside" well: the planted feature."""
    rng = random.Random(seed)

    def word() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3)))
        return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 5)))

    pieces, length = [], 0
    while length < size:
        piece = f"[{' '.join(word().upper() for _ in range(rng.randint(3, 8)))}]" if rng.random() < 0.2 else word()
        pieces.append(piece)
        length += len(piece) + 1
    return " ".join(pieces)


@pytest.fixture
def sample(tiny_run, tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text(tiny_run.text.read_text(encoding="utf-8")[2000:2600], encoding="utf-8")
    return path


def test_the_mean_of_the_scores_is_evaluates_figure_through_the_cli_and_the_api(tiny_run, sample):
    scored = invoke("score", tiny_run.best, sample, "--json", "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    report = json_line(scored.output)
    evaluated = json.loads(invoke("evaluate", tiny_run.best, sample, "--batch-size", 1, "--json").output)
    assert abs(report["nats_per_char"] - evaluated["nats_per_char"]) < 1e-4
    assert report["chars_scored"] == evaluated["chars_scored"] == 599
    text = sample.read_text(encoding="utf-8")
    characters = report["characters"]
    assert "".join(c["char"] for c in characters) == text[1:] and [c["offset"] for c in characters] == list(
        range(1, 600)
    )
    assert all(len(c["top_logprobs"]) == 3 and c["top_logprobs"][0]["logprob"] >= c["logprob"] for c in characters)
    model = charrnn.load(tiny_run.best, "cpu")
    api = model.score(text, top=3)
    assert abs(-sum(s.logprob for s in api) / len(api) - model.evaluate(text, batch_size=1).nats_per_char) < 1e-4
    assert [round(s.logprob, 6) for s in api] == [round(c["logprob"], 6) for c in characters]


def test_the_table_lists_each_character_and_the_most_surprising_stretches(tiny_run, sample):
    result = invoke("score", tiny_run.best, sample, "--top", 2)
    lines = result.output.splitlines()
    assert lines[0] == "offset\tchar\tlogprob\tbits\tlikeliest" and len(lines[1].split("\t")) == 5
    assert "most surprising:" in lines and "599 characters scored:" in result.output


def test_characters_the_model_never_saw_are_left_out_and_named(tiny_run, tmp_path):
    odd = tmp_path / "odd.txt"
    odd.write_text("ROMEO: caf\u00e9 is here", encoding="utf-8")
    result = invoke("score", tiny_run.best, odd, "--json")
    assert result.exit_code == 0 and "left out 1 characters the model has never seen: '\u00e9'" in result.output
    bad = invoke("score", tiny_run.best, odd, "--find", "([")
    assert bad.exit_code == 1 and "--find: '([' is not a regular expression" in bad.output
    no_unit = invoke("score", tiny_run.best, odd, "--unit", "c9:0")
    assert (
        no_unit.exit_code == 1
        and "--unit: this model has no unit 'c9:0': its units are named h1:0 to c2:31" in no_unit.output
    )


def test_surprising_spans_are_the_largest_sums_and_do_not_overlap():
    logprobs = [-0.1] * 30
    logprobs[5], logprobs[20] = -9.0, -5.0
    spans = surprising_spans(logprobs, width=4, count=3)
    assert spans[0][0] <= 5 < spans[0][1] and spans[1][0] <= 20 < spans[1][1]
    assert spans[0][2] == pytest.approx(9.3) and all(
        a[1] <= b[0] or b[1] <= a[0] for a in spans for b in spans if a != b
    )


def test_line_position_counts_from_each_line_break():
    assert text_property("ab\ncde\n", "line-position").tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert text_property("x [ab] y", BRACKETS).tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


@pytest.mark.slow  # trains a model (a few seconds)
def test_a_planted_feature_is_found_in_the_trained_model_and_not_in_a_random_one(tmp_path):
    train, held_out = tmp_path / "train.txt", tmp_path / "held.txt"
    train.write_text(bracket_text(40_000, seed=1), encoding="utf-8")
    held_out.write_text(bracket_text(3_000, seed=2), encoding="utf-8")
    options = ["--plan", "off", "--hidden-size", 32, "--num-layers", 1, "--max-steps", 300, "--seq-len", 50]
    trained = invoke(
        "train", train, "--out", tmp_path / "run", *options, "--no-sample", "--no-progress", "--device", "cpu"
    )
    assert trained.exit_code == 0, trained.output
    result = invoke("score", tmp_path / "run" / "best.pt", held_out, "--find", BRACKETS, "--json")
    ranked = json_line(result.output)["units"][BRACKETS]
    assert abs(ranked[0]["r"]) >= 0.7 and abs(ranked[0]["r"]) >= abs(ranked[-1]["r"])

    model = charrnn.load(tmp_path / "run" / "best.pt", "cpu")
    text = held_out.read_text(encoding="utf-8")
    inside = text_property(text, BRACKETS)
    best_random = 0.0
    for seed in range(5):  # the same shape, its weights drawn afresh
        torch.manual_seed(seed)
        for module in model.model.modules():
            if module is not model.model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        best_random = max(best_random, abs(rank_units(model.activations(text), inside, 1)[0][1]))
    assert best_random < 0.7, best_random


@pytest.mark.slow  # starts Chromium
def test_the_page_has_one_element_per_character_with_its_probability(tiny_run, sample, tmp_path):
    from tests.browser import offline_chromium

    page_file = tmp_path / "score.html"
    result = invoke(
        "score", tiny_run.best, sample, "--html", page_file, "--find", "line-position", "--unit", "h1:3", "--json"
    )
    report = json_line(result.output)
    with offline_chromium() as browser:
        page = browser.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        spans = page.eval_on_selector_all(
            "#text .c", "spans => spans.map(s => [s.textContent, s.dataset.logprob, s.title])"
        )
        assert "".join(text for text, _, _ in spans) == sample.read_text(encoding="utf-8")
        assert spans[0][1] is None  # nothing predicts the first character
        for (char, logprob, title), scored in zip(spans[1:], report["characters"], strict=True):
            assert char == scored["char"] and float(logprob) == pytest.approx(scored["logprob"], abs=1e-6)
            best = scored["top_logprobs"][0]
            assert (
                f"p = {math.exp(scored['logprob']):.4f}" in title
                and f"{best['char']!r} {math.exp(best['logprob']):.3f}" in title
            )
        acts = charrnn.load(tiny_run.best, "cpu").activations(sample.read_text(encoding="utf-8"))
        for unit in (report["units"]["line-position"][0]["unit"], "h1:3"):  # the best-ranked, and one named
            page.select_option("#colour-by", unit)
            values = page.eval_on_selector_all("#text .c", "spans => spans.map(s => Number(s.dataset.unit))")
            assert values == pytest.approx(acts.unit(unit).tolist(), abs=2e-3)
    assert requests == [page_file.as_uri()]  # nothing fetched from anywhere else
