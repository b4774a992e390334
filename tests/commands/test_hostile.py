"""Issue 34's hostile-input round, one named regression test per case: each input gets one clear
line and the right exit code, or the documented behaviour (never a traceback, a hang or lost data).
The property-based tests over every numeric option are in tests/test_properties.py."""

import os
import stat
import threading

import httpx
import pytest

from charrnn.bundled import bundled_model
from tests.conftest import BUNDLED_BOOK, TINY, invoke, running_server

SMALL = ["--max-steps", "2", "--eval-every", "2", *TINY, "--no-sample"]


def one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output and len([line for line in lines if "rror" in line]) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    return path


@pytest.mark.slow  # a server process and two streaming clients
def test_case_1_one_clients_bad_row_never_touches_another_clients_stream(tiny_run):
    with running_server(tiny_run.best, "--compile", "off") as (url, _):
        body = {"prompt": "ROMEO:", "max_tokens": 1000, "seed": 4, "stream": False}
        alone = httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()["choices"][0]
        answers = {}
        first = threading.Thread(
            target=lambda: answers.update(a=httpx.post(f"{url}/v1/completions", json=body, timeout=120).json())
        )
        first.start()
        hostile = {"prompt": "A", "max_tokens": 1, "top_p": 1e-50, "temperature": 1e-50}
        second = httpx.post(f"{url}/v1/completions", json=hostile, timeout=60)
        first.join(120)
        assert second.status_code == 200 and len(second.json()["choices"][0]["text"]) == 1
        choice = answers["a"]["choices"][0]
        assert choice["finish_reason"] == "length" and choice["text"] == alone["text"]
        assert answers["a"]["usage"]["completion_tokens"] == 1000


@pytest.mark.slow  # a server process
def test_case_2_a_body_that_is_not_declared_json_is_refused(tiny_run):
    with running_server(tiny_run.best, "--compile", "off") as (url, _):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": content_type} if content_type else {}
            answer = httpx.post(f"{url}/v1/completions", content=b'{"prompt": "A"}', headers=headers)
            assert answer.status_code == 415 and "application/json" in answer.json()["error"]["message"]
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "A", "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("option", [["--top-p", "1e-50"], ["--temperature", "1e-50"], ["--top-p", "5e-324"]])
def test_cases_3_and_11_vanishing_top_p_or_temperature_draw_greedy_text(tiny_run, option):
    greedy = invoke("generate", tiny_run.best, "--prime", "A", "--length", 40, "--greedy")
    result = invoke("generate", tiny_run.best, "--prime", "A", "--length", 40, "--seed", 1, *option)
    assert result.exit_code == 0, result.output
    assert result.stdout == greedy.stdout and result.stdout != "A" + "\n" * 41


@pytest.mark.slow  # reads 560,000 characters
def test_case_4_a_very_long_prime_is_read_in_pieces(tiny_run, tmp_path):
    prime = tmp_path / "prime.txt"
    prime.write_text((tiny_run.text.read_text(encoding="utf-8") * 100)[:560_000], encoding="utf-8")
    result = invoke("generate", tiny_run.best, "--prime-file", prime, "--length", 20, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 560_000 + 20 + 1


@pytest.mark.parametrize("encoding", ["rot13", "base64", "hex", "klingon"])
def test_case_5_an_encoding_that_is_not_a_text_codec_is_refused(text, tmp_path, encoding):
    for command in (
        ["train", text, "--out", tmp_path / "run", *SMALL],
        ["evaluate", bundled_model(), text],
    ):
        one_line_error(invoke(*command, "--encoding", encoding), 2, "--encoding")
    assert not (tmp_path / "run").exists()


def test_case_6_dynamic_evaluation_that_diverges_says_so(text):
    one_line_error(invoke("evaluate", bundled_model(), text, "--dynamic", "--dynamic-lr", 1000), 2)
    result = invoke("evaluate", bundled_model(), text, "--dynamic", "--dynamic-lr", 10)
    assert result.exit_code in (0, 1) and "Traceback" not in result.output
    if result.exit_code == 1:
        one_line_error(result, 1, "diverged", "--dynamic-lr")
    else:
        assert "perplexity" in result.output and len(result.output) < 2000


@pytest.mark.parametrize(
    "config, message",
    [
        ("hidden_size = [16]", "hidden_size must be int"),
        ("hidden_size = true", "hidden_size must be int"),
        ("hidden_size = 16.5", "hidden_size must be int"),
        ('lr = "0.01"', "lr must be a number"),
        ("text = 5", "text must be a path"),
        ("text = []", "text must be a path"),
        ("hidden_size = 0", "hidden_size must be >= 1"),
        ("no_such_option = 1", "unknown option(s): no_such_option"),
        ("hidden_size = = 3", "is not valid TOML"),
    ],
)
def test_cases_7_and_12_a_config_of_the_wrong_types_is_refused_in_one_line(tmp_path, text, config, message):
    path = tmp_path / "config.toml"
    path.write_text(config + "\n", encoding="utf-8")
    one_line_error(invoke("train", text, "--config", path, "--out", tmp_path / "run", *SMALL), 2, message)
    assert not (tmp_path / "run").exists()


def test_case_7_a_config_that_is_not_utf8_is_refused(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text("hidden_size = 16\n", encoding="utf-16")
    one_line_error(invoke("train", text, "--config", path, "--out", tmp_path / "run"), 2, "is not UTF-8 text")


def test_case_8_export_to_a_place_it_cannot_write_says_so(tmp_path):
    afile = tmp_path / "somefile"
    afile.write_text("x")
    for target in (afile / "x", "/proc/x"):
        one_line_error(invoke("export", bundled_model(), target), 1, "cannot write")


@pytest.mark.slow  # exports a model (ONNX included)
def test_case_17_an_export_has_the_permissions_of_any_new_directory(tmp_path):
    out = tmp_path / "export"
    assert invoke("export", bundled_model(), out).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask for f in out.iterdir())


def test_case_9_links_that_loop_neither_hang_nor_read_a_file_twice(tmp_path):
    from charrnn.core.paths import find_files

    books = tmp_path / "d"
    (books / "sub").mkdir(parents=True)
    (books / "a.txt").write_text("one")
    (books / "sub" / "b.txt").write_text("two")
    (books / "self").symlink_to("../d")
    (books / "dot").symlink_to(".")
    (books / "again.txt").symlink_to("a.txt")
    for source in (str(books / "**" / "*.txt"), books, str(books / "*")):
        found = sorted(path.name for path, _ in find_files([source]))
        assert found == ["a.txt", "b.txt"], source


def test_case_10_num_samples_has_a_cap(tiny_run):
    one_line_error(invoke("generate", tiny_run.best, "--num-samples", 1_000_000), 2, "--num-samples")


def test_case_14_a_directory_with_any_run_file_is_not_overwritten(tmp_path, text):
    out = tmp_path / "old"
    out.mkdir()
    (out / "metrics.csv").write_text("step,val_loss\n1,2.0\n")
    (out / "config.toml").write_text("hidden_size = 8\n")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    one_line_error(invoke("train", text, "--out", out, *SMALL), 1, "already holds a run")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_case_15_a_finetunes_config_says_how_to_repeat_the_finetune(tiny_run, tmp_path, text):
    out = tmp_path / "tuned"
    assert invoke("finetune", tiny_run.best, text, "--out", out, "--max-steps", 1, "--no-progress").exit_code == 0
    header = (out / "config.toml").read_text(encoding="utf-8").splitlines()[:2]
    assert "fine-tune of" in header[0] and "charrnn finetune" in header[1] and "train --config" not in "".join(header)


def test_case_18_a_utf16_file_with_a_bom_is_read_as_utf16(tmp_path):
    from charrnn.core.data import read_text

    for encoding in ("utf-16", "utf-32"):
        path = tmp_path / f"{encoding}.txt"
        path.write_text("Ça va?\r\nOui.\n", encoding=encoding)  # the codec writes its BOM
        assert read_text(path) == "Ça va?\nOui.\n"


def test_case_19_the_text_as_its_own_val_file_is_named(tmp_path, text):
    one_line_error(invoke("train", text, "--val-file", text, "--out", tmp_path / "r", *SMALL), 1, "both the text and")


def test_case_21_evaluate_names_what_it_left_out_and_refuses_a_foreign_text(tmp_path):
    model = bundled_model()
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("ROMEO: ÿ hello " * 50 + "".join(chr(0x4E00 + i) for i in range(40)), encoding="utf-8")
    result = invoke("evaluate", model, mixed)
    assert result.exit_code == 0 and "41 distinct character(s)" in result.output and "and 21 more" in result.output
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("".join(chr(0x4E00 + i % 300) for i in range(3000)) + "ROMEO", encoding="utf-8")
    one_line_error(invoke("evaluate", model, foreign), 1, "outside the model's 65-character vocabulary")


def test_case_22_a_run_directory_for_a_checkpoint_says_which_file_to_give(tiny_run):
    one_line_error(invoke("generate", tiny_run.dir), 1, "is a directory", "best.pt")
