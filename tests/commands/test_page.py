"""The page `charrnn serve` shows (charrnn/commands/page.html), in a real headless Chromium.

One server per module (the session's tiny model, up to 2,000 characters a request) and one
browser, a Chromium driven by Playwright. The page generates the text the API gives for
the same request, stops a stream mid-way (and the server frees it), and shows the server's
message for a bad value. The browser is the one tests/browser.py finds (or installs).
"""

import json
import math
import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import offline_chromium
from tests.conftest import running_server

pytestmark = pytest.mark.slow  # a server and a browser
MAX_TOKENS = 2000
PATIENCE_MS = 15_000  # for waits on generation, which a busy 2-core machine slows down


@pytest.fixture(scope="module")
def server(tiny_run):
    # The page does not depend on the step: the eager one starts at once (test_serve.py checks the compiled one).
    options = ("--max-tokens", MAX_TOKENS, "--device", "cpu", "--compile", "off")
    with running_server(tiny_run.best, *options) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    with offline_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, server):
    """The page, loaded and showing its model; fails the test if its script throws."""
    page = browser.new_page(locale="en-US")  # "1,234 parameters"
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(error))
    page.set_default_timeout(PATIENCE_MS)
    page.goto(server)
    expect(page.locator("#model")).not_to_have_text("loading the model...")
    yield page
    page.close()
    assert not script_errors


def stats(server) -> dict:
    return httpx.get(f"{server}/stats").json()


def generated_length(page) -> int:
    return page.evaluate("document.getElementById('generated').textContent.length")


def test_it_shows_the_model_and_streams_the_apis_text(server, page, tmp_path):
    facts = httpx.get(f"{server}/v1/models").json()["data"][0]["charrnn"]
    expect(page.locator("#model")).to_have_text(
        f"run/best: 2 x 32 LSTM, {facts['parameters']:,} parameters, {facts['vocab_size']} characters, "
        f"validation loss {facts['best_val_loss']:.3f} nats/char"
    )
    assert page.get_attribute("#length", "max") == str(MAX_TOKENS)

    page.fill("#prime", "ROMEO:")
    page.fill("#length", "60")
    page.fill("#seed", "3")
    page.click("#generate")
    expect(page.locator("#output .prime")).to_have_text("ROMEO:")
    page.wait_for_function("document.getElementById('generated').textContent.length > 0")
    finished = re.compile(r"^done: 60 characters \(length reached\); \d+% in stretches of 20\+ characters found")
    expect(page.locator("#status")).to_have_text(finished, timeout=PATIENCE_MS)  # and its copies checked
    expect(page.locator("#generate")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()

    shown = page.text_content("#generated")
    temperature = float(page.input_value("#temperature"))
    body = {"prompt": "ROMEO:", "max_tokens": 60, "seed": 3, "temperature": temperature}
    answer = httpx.post(f"{server}/v1/completions", json=body, timeout=60).json()
    assert len(shown) == 60 and shown == answer["choices"][0]["text"]

    screenshot = tmp_path / "page.png"
    page.screenshot(path=screenshot)
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_stop_ends_the_stream_in_the_page_and_on_the_server(server, page):
    drawn_before = stats(server)["characters"]
    page.fill("#length", str(MAX_TOKENS))
    page.click("#generate")
    page.wait_for_function("document.getElementById('generated').textContent.length > 0")
    seen = generated_length(page)
    page.wait_for_function(f"document.getElementById('generated').textContent.length > {seen}")  # it grows
    expect(page.locator("#status")).to_have_text("generating...")
    assert stats(server)["active_streams"] == 1
    page.click("#stop")

    status = page.locator("#status")
    expect(status).to_have_text(re.compile(r"stopped after \d+ characters"))
    assert status.text_content() == f"stopped after {generated_length(page)} characters"
    assert generated_length(page) < MAX_TOKENS
    expect(page.locator("#generate")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    stopped = page.text_content("#generated")
    page.wait_for_timeout(500)
    assert page.text_content("#generated") == stopped

    deadline = time.monotonic() + 5
    while stats(server)["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = stats(server)
    assert after["active_streams"] == 0
    assert after["characters"] - drawn_before < MAX_TOKENS  # freed mid-way, not run to its end


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("#temperature", "0", "'temperature' must be > 0, got 0"),
        ("#prime", "ROMEO \u2603", "the prompt has characters the model has never seen: '\u2603'"),
    ],
    ids=["temperature 0", "unseen character"],
)
def test_a_bad_value_shows_the_servers_message(page, field, value, message):
    page.fill(field, value)
    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_have_text(message)
    expect(status).to_have_class("error")
    expect(page.locator("#generate")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()


def test_with_a_key_the_page_asks_for_it_and_then_works(tiny_run, browser):
    options = ("--max-tokens", MAX_TOKENS, "--device", "cpu", "--compile", "off", "--api-key", "class-key")
    with running_server(tiny_run.best, *options) as (url, _):
        page = browser.new_page(locale="en-US")
        script_errors = []
        page.on("pageerror", lambda error: script_errors.append(error))
        page.set_default_timeout(PATIENCE_MS)
        page.goto(url)
        expect(page.locator("#key-box")).to_be_visible()
        expect(page.locator("#model")).to_have_text("this server needs an API key")
        page.fill("#key", "wrong-key")
        page.click("#use-key")
        expect(page.locator("#model")).to_have_text("that key was refused: give another")
        page.fill("#key", "class-key")
        page.click("#use-key")
        expect(page.locator("#model")).to_contain_text("run/best: 2 x 32 LSTM")
        expect(page.locator("#key-box")).to_be_hidden()
        page.fill("#prime", "ROMEO:")
        page.fill("#length", "40")
        page.fill("#seed", "5")
        page.click("#generate")
        expect(page.locator("#status")).to_have_text(re.compile(r"^done: 40 characters \(length reached\); \d+%"))
        temperature = float(page.input_value("#temperature"))
        body = {"prompt": "ROMEO:", "max_tokens": 40, "seed": 5, "temperature": temperature}
        answer = httpx.post(f"{url}/v1/completions", json=body, headers={"Authorization": "Bearer class-key"}).json()
        assert page.text_content("#generated") == answer["choices"][0]["text"]
        page.close()
    assert not script_errors


def test_analyse_colours_each_character_by_the_apis_numbers(server, page):
    text = "ROMEO:\nIs the day so young?"
    page.click("#show-analyse")
    expect(page.locator("#analyse-view")).to_be_visible()
    expect(page.locator("#generate-view")).to_be_hidden()
    page.fill("#analyse-text", text)
    page.fill("#analyse-top", "3")
    page.click("#analyse")
    expect(page.locator("#analyse-status")).to_contain_text(f"{len(text) - 1} characters scored")
    shown = page.eval_on_selector_all(
        "#analysis .c", "spans => spans.map(s => [s.textContent, s.dataset.logprob, s.title, s.style.backgroundColor])"
    )
    body = {"prompt": text, "max_tokens": 0, "echo": True, "logprobs": 3}
    scores = httpx.post(f"{server}/v1/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]
    assert [char for char, *_ in shown] == scores["tokens"] == list(text)
    assert shown[0][1] is None and shown[0][2] == ""  # the first character has no probability
    for (_, logprob, title, colour), value, top in zip(
        shown[1:], scores["token_logprobs"][1:], scores["top_logprobs"][1:], strict=True
    ):
        assert float(logprob) == pytest.approx(value, abs=1e-9)
        assert f"p = {math.exp(value):.4f}" in title and len(top) == 3
        assert all(f"{json.dumps(c)} {math.exp(v):.3f}" in title for c, v in top.items())
        alpha = float(colour.rsplit(",", 1)[1].rstrip(")")) if colour.startswith("rgba") else 1.0
        assert alpha == pytest.approx(min(1, -value / math.log(2) / 8), abs=0.005)  # CSS keeps 8 bits of alpha


def test_generated_text_that_is_copied_from_the_book_is_underlined(browser, tmp_path):
    from tests.conftest import invoke

    book = tmp_path / "verse.txt"
    book.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 4)
    options = ["--plan", "off", "--max-steps", 600, "--max-epochs", 10_000, "--lr", "0.01", "--dropout", 0]
    options += ["--hidden-size", 64, "--batch-size", 4, "--seq-len", 32, "--no-sample", "--no-progress"]
    assert invoke("train", book, "--out", tmp_path / "run", *options).exit_code == 0  # learns the verse by heart
    with running_server(tmp_path / "run" / "best.pt", "--device", "cpu", "--compile", "off") as (url, _):
        page = browser.new_page()
        page.set_default_timeout(PATIENCE_MS)
        page.goto(url)
        expect(page.locator("#model")).to_contain_text("run/best")
        page.fill("#prime", "Now")
        page.fill("#length", "150")
        page.fill("#seed", "1")
        page.fill("#temperature", "0.3")
        page.click("#generate")
        expect(page.locator("#status")).to_contain_text("found in the training text (underlined)")
        generated = page.text_content("#generated")
        underlined = page.eval_on_selector_all("#generated u.copied", "us => us.map(u => u.textContent)")
        report = httpx.post(f"{url}/v1/copies", json={"text": generated}).json()
        assert underlined == [generated[a:b] for a, b in report["spans"]] and report["share"] > 0.8
        page.close()
