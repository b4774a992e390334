"""Several `charrnn serve` processes behind a reverse proxy, configured as docs/serving.md says.

The Caddy and nginx configurations are read from the docs themselves (their ports swapped for
free ones), so the documented setup is the tested one: requests through the proxy reach both
servers; with one stopped they are still answered; a server restarted and still building its
compiled step gets no request until its /health says 200.
"""

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, running_server, serve_process
from tests.hostile_load import PROMPT

pytestmark = pytest.mark.slow  # servers, a proxy, and a compiled step being built
SERVING_DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
EAGER = ("--device", "cpu", "--compile", "off")


def documented(kind: str) -> str:
    [block] = re.findall(rf"```{kind}\n(.*?)```", SERVING_DOC.read_text(encoding="utf-8"), re.DOTALL)
    return block


def with_ports(config: str, first: int, second: int, proxy: int) -> str:
    return config.replace("8001", str(first)).replace("8002", str(second)).replace("8080", str(proxy))


@contextlib.contextmanager
def proxy(kind: str, config: str, directory: Path):
    """Caddy or nginx running ``config`` (the documented block), as this user, in ``directory``."""
    binary = "caddy" if kind == "caddyfile" else "nginx"
    if shutil.which(binary) is None:
        pytest.fail(
            f"the proxy tests need {binary} on PATH: on Debian, apt-get install caddy nginx-light", pytrace=False
        )
    if kind == "caddyfile":
        path = directory / "Caddyfile"
        path.write_text("{\n\tadmin off\n}\n" + config, encoding="utf-8")
        command = ["caddy", "run", "--config", str(path), "--adapter", "caddyfile"]
        env = {**os.environ, "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}
    else:
        path = directory / "nginx.conf"
        temp = " ".join(
            f"{name}_temp_path {directory / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        path.write_text(
            f"daemon off; master_process off; pid {directory}/nginx.pid; error_log {directory}/error.log;\n"
            f"events {{}}\nhttp {{ access_log off; {temp}\n{config}\n}}\n",
            encoding="utf-8",
        )
        command, env = ["nginx", "-c", str(path), "-p", str(directory)], None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=30)


def health(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code
    except httpx.TransportError:
        return None


def complete(url: str) -> tuple[int, str]:
    answer = httpx.post(f"{url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 30}, timeout=60)
    return answer.status_code, answer.json()["choices"][0]["text"] if answer.status_code == 200 else answer.text


@pytest.mark.parametrize("kind", ["caddyfile", "nginx"])
def test_two_servers_behind_the_documented_proxy(kind, tiny_run, tmp_path):
    port_a, port_b, port_proxy = free_port(), free_port(), free_port()
    front = f"http://127.0.0.1:{port_proxy}"
    with contextlib.ExitStack() as stack:
        server_a = running_server(tiny_run.best, *EAGER, port=port_a)
        url_a, _ = stack.enter_context(server_a)
        url_b, _ = stack.enter_context(running_server(tiny_run.best, *EAGER, port=port_b))
        process = stack.enter_context(proxy(kind, with_ports(documented(kind), port_a, port_b, port_proxy), tmp_path))
        deadline = time.monotonic() + 60
        while health(front) != 200:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.2)

        answers = [complete(front) for _ in range(20)]
        assert all(status == 200 and len(text) == 30 for status, text in answers), answers
        assert all(httpx.get(f"{url}/stats").json()["characters"] > 0 for url in (url_a, url_b))  # both served

        server_a.__exit__(None, None, None)  # one server stopped: the other answers everything ...
        assert health(url_a) is None
        time.sleep(3)  # ... once the proxy has noticed (Caddy: its next health check; docs/serving.md)
        answers = [complete(front) for _ in range(10)]
        assert all(status == 200 for status, _ in answers), answers

        # Restarted with an empty compile cache: it loads (503) for seconds while the proxy keeps going.
        env = {**os.environ, "CHARRNN_CACHE": str(tmp_path / "cache")}
        restarted = serve_process(tiny_run.best, "--device", "cpu", "--compile", "on", env=env, port=port_a)
        _, process_a = stack.enter_context(restarted)
        while health(url_a) != 503:
            assert process_a.poll() is None, process_a.args
            time.sleep(0.05)
        during = []
        while health(url_a) == 503 and len(during) < 20:
            during.append(complete(front))
        assert len(during) >= 3 and all(status == 200 for status, _ in during), during
