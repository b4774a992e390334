"""`charrnn serve` deployed: keys, /health, /metrics, admission, timeouts, logprobs, chat, CORS, logs.

Every test talks to a real `charrnn serve` process over real HTTP (httpx, OpenAI's client, raw
sockets); the hostile load is tests/hostile_load.py at a smaller size than the benchmark's.
"""

import json
import os
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, invoke, running_server, start_cli
from tests.hostile_load import PROMPT, run_attack

pytestmark = pytest.mark.slow  # every test starts a `charrnn serve` process
EAGER = ("--device", "cpu", "--compile", "off")


@pytest.fixture(scope="module")
def server(tiny_run):
    with running_server(tiny_run.best, *EAGER, "--metrics", "--max-tokens", 2000) as (url, process):
        yield url, process, tiny_run


def post(url, path, key=None, **body):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)


# -- keys -------------------------------------------------------------------------------------


def test_keys_from_the_option_the_file_and_the_environment_guard_every_route_but_health(tiny_run, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the class's key\nfile-key\n\n", encoding="utf-8")
    options = (*EAGER, "--api-key", "cli-key", "--api-key-file", keys, "--metrics")
    with running_server(tiny_run.best, *options, env={"CHARRNN_API_KEY": "env-key"}) as (url, process):
        routes = [("GET", "/v1/models"), ("GET", "/stats"), ("GET", "/metrics"), ("POST", "/v1/completions")]
        routes.append(("POST", "/v1/chat/completions"))
        body = {"prompt": PROMPT, "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}
        for method, path in routes:
            for given in (None, "Bearer wrong-key", "Basic cli-key", "Bearer cli-keyx"):
                headers = {"Authorization": given} if given else {}
                answer = httpx.request(method, f"{url}{path}", json=body, headers=headers)
                assert answer.status_code == 401, (path, given)
                assert answer.json()["error"]["code"] == "invalid_api_key"
            for key in ("cli-key", "file-key", "env-key"):
                answer = httpx.request(method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200, (path, key, answer.text)
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # no key needed
        assert 'id="key-box"' in httpx.get(url).text  # the page's HTML, which then asks for the key
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="env-key")
        assert client.completions.create(model="m", prompt=PROMPT, max_tokens=5).choices[0].finish_reason == "length"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope").models.list()
    assert all(key not in process.log for key in ("cli-key", "file-key", "env-key"))  # never logged
    assert "GET /v1/models 401" in process.log


def test_a_key_file_without_keys_is_one_clear_line(tiny_run, tmp_path):
    empty = tmp_path / "keys.txt"
    empty.write_text("# nobody yet\n", encoding="utf-8")
    result = invoke("serve", tiny_run.best, "--api-key-file", empty)
    assert result.exit_code == 1 and "holds no key: write one per line" in result.output


# -- health, while a compiled step is built ----------------------------------------------------


def test_health_says_503_while_the_compiled_step_is_built_then_200(tiny_run, tmp_path):
    port = free_port()
    env = {"CHARRNN_CACHE": str(tmp_path / "cache")}  # an empty cache: the step is built now, for seconds
    process = start_cli(
        "serve", tiny_run.best, "--port", port, "--host", "0.0.0.0", "--device", "cpu", "--compile", "on",
        env={**os.environ, **env},
    )  # fmt: skip
    url, seen, models_while_loading = f"http://127.0.0.1:{port}", [], None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"{url}/health", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 503 and models_while_loading is None:
                models_while_loading = httpx.get(f"{url}/v1/models")
            if status == 200:
                break
            time.sleep(0.1)
        answer = post(url, "/v1/completions", prompt=PROMPT, max_tokens=20, seed=1)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert seen == [503, 200], (seen, err)
    assert models_while_loading.status_code == 503 and models_while_loading.json()["error"]["code"] == "loading"
    assert models_while_loading.headers["retry-after"] == "1"
    assert answer.status_code == 200 and len(answer.json()["choices"][0]["text"]) == 20
    assert "warning: serving on 0.0.0.0 with no API key" in err


# -- metrics -----------------------------------------------------------------------------------


def metric_values(url) -> dict:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def test_metrics_parse_and_count_the_requests_made(server):
    url, _, _ = server
    before = metric_values(url)
    for _ in range(3):
        assert post(url, "/v1/completions", prompt=PROMPT, max_tokens=7).status_code == 200
    assert post(url, "/v1/completions", prompt=PROMPT, max_tokens=-1).status_code == 400
    assert (
        post(url, "/v1/chat/completions", messages=[{"role": "user", "content": "Hi"}], max_tokens=4).status_code == 200
    )
    after = metric_values(url)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("charrnn_requests_total", endpoint="/v1/completions", status="200") == 3
    assert grew("charrnn_requests_total", endpoint="/v1/completions", status="400") == 1
    assert grew("charrnn_requests_total", endpoint="/v1/chat/completions", status="200") == 1
    assert grew("charrnn_characters_total") >= 3 * 7 + 1
    assert grew("charrnn_time_to_first_character_seconds_count") == 4
    assert grew("charrnn_step_seconds_count") >= 7 and grew("charrnn_batch_size_count") >= 7
    assert after[("charrnn_active_streams", ())] == 0 and after[("charrnn_ready", ())] == 1


# -- logprobs ----------------------------------------------------------------------------------


def test_echoed_logprobs_of_a_text_are_what_evaluate_scores(server, tmp_path):
    url, _, run = server
    text = run.text.read_text(encoding="utf-8")[1000:1800]
    body = post(url, "/v1/completions", prompt=text, max_tokens=0, echo=True, logprobs=3).json()
    [choice] = body["choices"]
    scores = choice["logprobs"]
    assert choice["text"] == text and scores["tokens"] == list(text) and scores["text_offset"] == list(range(len(text)))
    assert scores["token_logprobs"][0] is None and scores["top_logprobs"][0] is None  # nothing predicts the first
    assert all(
        len(top) == 3 and max(top.values()) >= value
        for top, value in zip(scores["top_logprobs"][1:], scores["token_logprobs"][1:], strict=True)
    )
    sample = tmp_path / "sample.txt"
    sample.write_text(text, encoding="utf-8")
    result = invoke("evaluate", run.best, sample, "--batch-size", 1, "--json", "--device", "cpu")
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    mean = -sum(scores["token_logprobs"][1:]) / (len(text) - 1)
    assert abs(mean - evaluated["nats_per_char"]) < 1e-4


def test_generated_logprobs_follow_the_text_whole_and_streamed(server):
    url, _, _ = server
    whole = post(url, "/v1/completions", prompt=PROMPT, max_tokens=40, seed=4, logprobs=2).json()["choices"][0]
    scores = whole["logprobs"]
    assert "".join(scores["tokens"]) == whole["text"] and scores["text_offset"] == list(range(6, 46))
    pairs = zip(scores["token_logprobs"], scores["top_logprobs"], strict=True)
    assert all(value <= 0 and len(top) == 2 for value, top in pairs)
    with httpx.stream(
        "POST",
        f"{url}/v1/completions",
        json={
            "prompt": PROMPT,
            "max_tokens": 40,
            "seed": 4,
            "logprobs": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=60,
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    chunks = [event["choices"][0] for event in events[:-1]]
    streamed = {key: [v for chunk in chunks for v in chunk["logprobs"][key]] for key in scores}
    assert "".join(chunk["text"] for chunk in chunks) == whole["text"]
    assert streamed["tokens"] == scores["tokens"] and streamed["text_offset"] == scores["text_offset"]
    # The same numbers, up to the float sums of another thread count (the tuner may change it between requests)
    assert streamed["token_logprobs"] == pytest.approx(scores["token_logprobs"], abs=1e-5)
    for mine, theirs in zip(streamed["top_logprobs"], scores["top_logprobs"], strict=True):
        assert mine.keys() == theirs.keys() and all(mine[c] == pytest.approx(theirs[c], abs=1e-5) for c in mine)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 40


# -- chat --------------------------------------------------------------------------------------


def test_chat_with_the_openai_client_is_the_completion_of_the_rendered_messages(server):
    url, _, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    messages = [
        {"role": "system", "content": "A scene."},
        {"role": "user", "content": "Who is there?", "name": "BERNARDO"},
    ]
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=120, seed=9, temperature=0.9, n=2)
    prime = "SYSTEM:\nA scene.\n\nBERNARDO:\nWho is there?\n\nASSISTANT:\n"  # docs/serving.md#chat
    same = post(url, "/v1/completions", prompt=prime, max_tokens=120, seed=9, temperature=0.9, n=2, stop="\n\n").json()
    assert [c.message.content for c in reply.choices] == [c["text"] for c in same["choices"]]
    assert [c.finish_reason for c in reply.choices] == [c["finish_reason"] for c in same["choices"]]
    assert reply.choices[0].message.role == "assistant" and reply.object == "chat.completion"
    assert reply.usage.prompt_tokens == 2 * len(prime)
    stream = client.chat.completions.create(
        model="m", messages=messages, max_tokens=120, seed=9, temperature=0.9, stream=True,
        stream_options={"include_usage": True}, logprobs=True, top_logprobs=2,
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == reply.choices[0].message.content and chunks[0].choices[0].delta.role == "assistant"
    scored = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    assert "".join(entry.token for entry in scored) == text and all(len(e.top_logprobs) == 2 for e in scored)
    assert chunks[-1].usage.completion_tokens >= len(text) and not chunks[-1].choices


def test_a_chat_stops_where_its_format_says_a_message_ends(tiny_run):
    with running_server(tiny_run.best, *EAGER, "--chat-format", "lines") as (url, _):
        answer = post(url, "/v1/chat/completions", messages=[{"role": "user", "content": "Hi"}], max_tokens=300, seed=2)
        body = answer.json()["choices"][0]
        plain = post(url, "/v1/completions", prompt="Hi\n", max_tokens=300, seed=2).json()["choices"][0]["text"]
    assert body["message"]["content"] == plain.split("\n")[0] and "\n" not in body["message"]["content"]
    assert body["finish_reason"] == ("stop" if "\n" in plain else "length")


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, "'messages[0].role' must be one of"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text parts"),
        ({"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2}, "needs 'logprobs': true"),
        ({"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 21}, "from 0 to 20"),
    ],
)
def test_bad_chat_requests_are_4xx_json(server, body, message):
    url, process, _ = server
    answer = post(url, "/v1/chat/completions", **body)
    assert answer.status_code == 400 and message in answer.json()["error"]["message"] and process.poll() is None


# -- admission, deadlines, stalled clients -------------------------------------------------------


def test_past_the_rows_and_the_queue_a_request_gets_503_and_a_late_one_times_out(tiny_run):
    options = (*EAGER, "--max-streams", 1, "--max-queue", 1, "--max-tokens", 100_000, "--request-timeout", 3)
    with running_server(tiny_run.best, *options) as (url, _):
        long = {"prompt": PROMPT, "max_tokens": 100_000, "stream": True}
        with (
            httpx.Client(timeout=60) as first,
            httpx.Client(timeout=60) as second,
            first.stream("POST", f"{url}/v1/completions", json=long) as holding,
        ):
            held_lines = holding.iter_lines()  # kept: a dropped iterator closes the connection
            next(held_lines)  # it has its row
            with second.stream("POST", f"{url}/v1/completions", json=long) as waiting:
                refused = post(url, "/v1/completions", prompt=PROMPT, max_tokens=5)
                assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["code"] == "overloaded"
                events = [line for line in waiting.iter_lines() if line.startswith("data: {")]
                reasons = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in events]
                assert reasons == ["timeout"]  # it waited for a row until its deadline ended it
        began = time.perf_counter()
        timed_out = post(url, "/v1/completions", prompt=PROMPT, max_tokens=100_000).json()["choices"][0]
        assert timed_out["finish_reason"] == "timeout" and 0 < len(timed_out["text"]) < 100_000
        assert time.perf_counter() - began < 30
        stats = httpx.get(f"{url}/stats").json()
        assert stats["rejected"] == 1 and stats["timed_out"] >= 2 and stats["active_streams"] == 0


def test_a_client_that_stops_reading_is_cut_off_and_its_rows_freed(tiny_run):
    import asyncio

    from tests.hostile_load import silent

    options = (*EAGER, "--max-tokens", 100_000, "--stall-timeout", 1)
    with running_server(tiny_run.best, *options) as (url, _):
        held = []
        port = int(url.rsplit(":", 1)[1])
        asyncio.run(silent(("127.0.0.1", port), 100_000, held, n=4))  # ~1 MB of events, never read
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = httpx.get(f"{url}/stats").json()
            if stats["cut_off"] and not stats["active_streams"]:
                break
            time.sleep(0.5)
        held[0].close()
        assert stats["cut_off"] == 1 and stats["active_streams"] == 0
        assert stats["characters"] < 4 * 100_000  # the rows were freed before their length
        assert post(url, "/v1/completions", prompt=PROMPT, max_tokens=5).status_code == 200


# -- CORS and the access log -----------------------------------------------------------------------


def test_cors_is_off_unless_an_origin_is_named(server, tiny_run):
    url, _, _ = server
    preflight = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(f"{url}/v1/completions", headers=preflight).headers
    simple = httpx.get(f"{url}/v1/models", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in simple.headers
    with running_server(tiny_run.best, *EAGER, "--cors-origin", "http://class.example") as (named, _):
        allowed = {**preflight, "Origin": "http://class.example", "Access-Control-Request-Headers": "authorization"}
        answer = httpx.options(f"{named}/v1/completions", headers=allowed)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "http://class.example"
        assert httpx.options(f"{named}/v1/completions", headers=preflight).status_code == 400


def test_the_access_log_has_no_text_unless_asked(tiny_run):
    secret = "ROMEO: a secret"
    for options, shown in (((), False), (("--log-prompts",), True)):
        with running_server(tiny_run.best, *EAGER, *options) as (url, process):
            text = post(url, "/v1/completions", prompt=secret, max_tokens=30, seed=1).json()["choices"][0]["text"]
        lines = [line for line in process.log.splitlines() if "POST /v1/completions 200" in line]
        assert len(lines) == 1 and lines[0].startswith("127.0.0.1 ")
        assert (secret in lines[0]) == shown and (json.dumps(text)[1:-1] in lines[0]) == shown


# -- hostile load ----------------------------------------------------------------------------------


def test_under_a_hostile_load_every_well_behaved_request_is_right_and_the_server_stays_up(tiny_run):
    with running_server(tiny_run.best, *EAGER) as (url, process):
        report, texts = run_attack(
            url, process.pid, clients=16, rounds=3, length=200, silent_clients=4, idle_connections=50
        )
        assert report.wrong == [] and report.completed == 48, report.summary()
        for seed, seen in texts.items():
            quiet = post(url, "/v1/completions", prompt=PROMPT, max_tokens=200, seed=seed, temperature=0.9)
            assert set(seen) == {quiet.json()["choices"][0]["text"]}, seed
        statuses = {"body over 1 MB": 413, "invalid UTF-8": 400, "nested JSON": 400, "malformed header": 400}
        assert report.hostile == {**statuses, "left mid-stream": 200}, report.summary()
        assert report.idle_closed == 50  # idle and half-sent heads closed after 5 s
        assert report.peak_rss_mb < report.start_rss_mb + 150, report.summary()  # the bound docs/serving.md states
        assert httpx.get(f"{url}/health").status_code == 200 and process.poll() is None
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/stats").json()["active_streams"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(f"{url}/stats").json()["active_streams"] == 0
