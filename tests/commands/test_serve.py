"""`charrnn serve` (charrnn/commands/serve.py, server.py): the real server, over real HTTP.

One server process per test module, on a free port, serving the session's tiny model. Clients:
raw HTTP (httpx), OpenAI's own Python client, and many at once.
"""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

import charrnn
from tests.conftest import running_server
from tests.hostile_load import rss_mb

pytestmark = pytest.mark.slow  # every test talks to a `charrnn serve` process


@pytest.fixture(scope="module")
def server(tiny_run):
    # The eager step: streaming is checked at a pace where text visibly arrives in pieces.
    options = ("--max-tokens", 500, "--max-n", 4, "--device", "cpu", "--compile", "off")
    with running_server(tiny_run.best, *options) as (url, process):
        yield url, process, tiny_run


def complete(url, **body):
    return httpx.post(f"{url}/v1/completions", json=body, timeout=60)


def sse_events(response) -> list:
    events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def test_it_binds_to_localhost_and_names_its_model(server):
    url, process, run = server
    assert url.startswith("http://127.0.0.1:")
    model = httpx.get(f"{url}/v1/models").json()["data"][0]
    assert model["id"] == "run/best" and model["object"] == "model"
    facts = model["charrnn"]
    assert facts["hidden_size"] == 32 and facts["vocab"] == "".join(charrnn.load(run.best, "cpu").vocab.chars)


def test_a_completion_is_what_the_model_generates_for_the_seed(server):
    url, _, run = server
    answer = complete(url, prompt="ROMEO:", max_tokens=40, seed=3, temperature=0.8)
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "text_completion" and body["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 40,
        "total_tokens": 46,
    }
    [choice] = body["choices"]
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    expected = charrnn.load(run.best, "cpu").generate("ROMEO:", 40, seed=3, temperature=0.8)
    assert choice["text"] == expected  # one stream: the same draws as `charrnn generate`


def test_n_choices_stop_texts_and_echo(server):
    url, _, _ = server
    body = complete(url, prompt="ROMEO:", max_tokens=60, n=3, seed=5).json()
    texts = [choice["text"] for choice in body["choices"]]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2] and len(set(texts)) == 3
    stop = texts[0][10:12]
    stopped = complete(url, prompt="ROMEO:", max_tokens=60, seed=5, stop=[stop, "\n\n\n"]).json()["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["text"] == texts[0][: texts[0].find(stop)]
    echoed = complete(url, prompt="ROMEO:", max_tokens=10, seed=5, echo=True).json()["choices"][0]
    assert echoed["text"] == "ROMEO:" + texts[0][:10]


def test_streaming_sends_the_same_text_as_events_then_done(server):
    url, _, _ = server
    # 500 characters: several of the engine's 5 ms emit intervals even for a fast step
    whole = complete(url, prompt="ROMEO:", max_tokens=500, seed=7, n=2).json()["choices"]
    with httpx.stream(
        "POST",
        f"{url}/v1/completions",
        json={"prompt": "ROMEO:", "max_tokens": 500, "seed": 7, "n": 2, "stream": True},
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    texts, reasons = ["", ""], [None, None]
    for event in events:
        choice = event["choices"][0]
        texts[choice["index"]] += choice["text"]
        reasons[choice["index"]] = choice["finish_reason"] or reasons[choice["index"]]
    assert texts == [choice["text"] for choice in whole] and reasons == ["length", "length"]
    assert len(events) > 2  # text arrives as it is drawn, not at the end


def test_the_openai_client_works_unchanged(server):
    url, _, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    [model] = client.models.list().data
    completion = client.completions.create(model=model.id, prompt="ROMEO:", max_tokens=30, seed=11, n=2)
    assert [len(choice.text) for choice in completion.choices] == [30, 30]
    assert completion.usage.completion_tokens == 60
    streamed = client.completions.create(model=model.id, prompt="ROMEO:", max_tokens=30, seed=11, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == completion.choices[0].text
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model=model.id, prompt="R", temperature=-1)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        ({"prompt": 5}, 400, "'prompt' must be str or list"),
        ({"prompt": "a", "max_tokens": "ten"}, 400, "'max_tokens' must be int"),
        ({"prompt": "a", "stream": "yes"}, 400, "'stream' must be boolean"),
        ({"prompt": "a", "temperature": 0}, 400, "'temperature' must be > 0, got 0"),
        ({"prompt": "a", "top_p": 0}, 400, "'top_p' must be > 0, got 0"),
        ({"prompt": "a", "top_p": 1.5}, 400, "'top_p' must be <= 1, got 1.5"),
        ({"prompt": "a", "min_p": -1}, 400, "'min_p' must be >= 0, got -1"),
        ({"prompt": "a", "presence_penalty": "x"}, 400, "'presence_penalty' must be int or float"),
        ({"prompt": "a", "max_tokens": 501}, 400, "'max_tokens' must be from 0 to 500"),
        ({"prompt": "a", "n": 5}, 400, "'n' must be from 1 to 4"),
        ({"prompt": "caf\u00e9 \u2603"}, 400, "never seen: '\u00e9' '\u2603'"),
        ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4"),
    ],
)
def test_bad_requests_get_a_4xx_json_error_and_the_server_stays_up(server, body, status, message):
    url, process, _ = server
    if isinstance(body, bytes):
        answer = httpx.post(f"{url}/v1/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        answer = complete(url, **body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(f"{url}/v1/models").status_code == 200 and process.poll() is None


def test_unknown_paths_and_methods_are_json_errors_too(server):
    url, _, _ = server
    missing = httpx.get(f"{url}/v1/engines")
    assert missing.status_code == 404 and "Not Found" in missing.json()["error"]["message"]
    wrong = httpx.get(f"{url}/v1/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["message"]


def test_the_page_is_served_by_charrnn_itself(server):
    url, _, _ = server
    page = httpx.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="generate"' in page.text and 'id="stop"' in page.text and "/v1/completions" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_concurrent_requests_are_stepped_together(server):
    url, _, _ = server

    async def many():
        async with httpx.AsyncClient(timeout=60) as client:
            bodies = [{"prompt": "ROMEO:", "max_tokens": 200, "seed": i} for i in range(8)]
            return await asyncio.gather(*(client.post(f"{url}/v1/completions", json=body) for body in bodies))

    before = httpx.get(f"{url}/stats").json()
    answers = asyncio.run(many())
    after = httpx.get(f"{url}/stats").json()
    assert all(len(answer.json()["choices"][0]["text"]) == 200 for answer in answers)
    assert after["characters"] - before["characters"] == 8 * 200
    assert after["steps"] - before["steps"] < 8 * 200 / 2  # stepped as a batch, not one after another
    assert after["largest_batch"] >= 4


def test_a_client_that_goes_away_mid_stream_frees_its_stream(server):
    url, _, _ = server
    body = {"prompt": "ROMEO:", "max_tokens": 500, "stream": True, "n": 4}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        assert httpx.get(f"{url}/stats").json()["active_streams"] >= 1
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/stats").json()["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{url}/stats").json()["active_streams"] == 0


def test_32_streaming_clients_at_once_all_finish_and_memory_stays_bounded(server):
    url, process, run = server
    vocab = set(charrnn.load(run.best, "cpu").vocab.chars)

    async def client(http, index):
        texts = []
        for round_ in range(2):
            body = {"prompt": "ROMEO:", "max_tokens": 100, "seed": 100 * index + round_, "stream": True}
            async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
                assert response.status_code == 200
                text, done = "", False
                async for line in response.aiter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: "):
                        text += json.loads(line[6:])["choices"][0]["text"]
                assert done
                texts.append(text)
        return texts

    async def load():
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.wait_for(asyncio.gather(*(client(http, i) for i in range(32))), timeout=180)

    before = rss_mb(process.pid)
    results = asyncio.run(load())
    assert all(len(text) == 100 and set(text) <= vocab for texts in results for text in texts)
    assert rss_mb(process.pid) < before + 150  # 64 requests later, no memory kept per request
    assert httpx.get(f"{url}/stats").json()["active_streams"] == 0


def test_without_the_serve_extra_it_says_what_to_install(tiny_run, monkeypatch):
    import builtins

    from tests.conftest import invoke

    real_import = builtins.__import__

    def no_uvicorn(name, *args, **kwargs):
        if name == "uvicorn":
            raise ImportError("no uvicorn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    result = invoke("serve", tiny_run.best)
    assert result.exit_code == 1
    assert (
        result.output.strip() == "Error: charrnn serve needs the serve extra (Starlette, uvicorn, prometheus-client): "
        'pip install "charrnn[serve]"'
    )


def test_a_port_in_use_is_one_clear_line(tiny_run):
    from tests.conftest import invoke

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = invoke("serve", tiny_run.best, "--port", taken.getsockname()[1])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1:" in result.output and "--port" in result.output


def test_a_compiled_server_answers_with_the_same_text(server):
    url, _, run = server  # the eager server
    request = {"prompt": "ROMEO:", "max_tokens": 120, "seed": 11, "n": 3, "temperature": 0.9}
    eager = [choice["text"] for choice in complete(url, **request).json()["choices"]]
    # --compile on: built once per model shape (or taken from the session's cache) before it listens
    with running_server(run.best, "--device", "cpu", "--compile", "on", patience=600) as (compiled_url, _):
        compiled = [choice["text"] for choice in complete(compiled_url, **request).json()["choices"]]
    assert compiled == eager and len(set(eager)) == 3


# The server's stop handler, in a process of its own whose work swallows every exception, as torch.export
# did with the KeyboardInterrupt raised inside it while a step compiled (the server then went on serving).
SWALLOWING_WORK = """
import signal, threading, time
from charrnn.commands.serve import STOP_SIGNALS, stop_handler
stop = threading.Event()
for number in STOP_SIGNALS:
    signal.signal(number, stop_handler(stop, 1.0))
said = False
while True:
    try:  # all of it: the signal may come before print has returned
        if not said:
            print("working", flush=True)
            said = True
        time.sleep(0.01)
    except BaseException:
        pass
"""


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_a_stop_ends_the_server_even_if_its_interrupt_is_swallowed(stop_signal):
    process = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_WORK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "working\n"
        process.send_signal(getattr(signal, stop_signal))
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "still stopping after 1 s: exiting now" in err
