"""`charrnn serve`: the model behind an OpenAI-compatible HTTP API and a page (charrnn/commands/serving/).

Starlette and uvicorn are the `serve` extra; without them this command says how to install them.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from charrnn.commands.common import EXISTING_FILE, declared_options, load_model, model_name
from charrnn.commands.serving.requests import CHAT_FORMATS, Limits
from charrnn.config import Acceleration, Placement
from charrnn.errors import CharRNNError

STOP_SECONDS = 15  # a stopped server that is still exiting this long after the signal exits at once
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # a service manager's stop, and Ctrl-C
MISSING = 'charrnn serve needs the serve extra (Starlette, uvicorn, prometheus-client): pip install "charrnn[serve]"'


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE, required=False)
@click.option("--host", default="127.0.0.1", help="Address to listen on; 0.0.0.0 opens it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="Port to listen on.")
@click.option("--max-tokens", type=click.IntRange(1), default=2000, help="Most characters one choice may ask for.")
@click.option("--max-n", type=click.IntRange(1), default=8, help="Most choices (n x prompts) one request may ask for.")
@click.option(
    "--max-streams",
    type=click.IntRange(1),
    default=64,
    help="Most streams stepped together; requests beyond wait for a free row.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=256,
    help="Most choices that may wait for a row; a request beyond gets 503 with Retry-After.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0, min_open=True),
    default=300.0,
    help="Seconds a request may take, waiting included; then it ends with finish_reason 'timeout'.",
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(0, min_open=True),
    default=15.0,
    help="Seconds a client may read nothing while its response waits; then it is cut off and counted.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Require this key (Authorization: Bearer KEY) on every route but /health; repeatable. "
    "Also read from $CHARRNN_API_KEY.",
)
@click.option(
    "--api-key-file",
    type=EXISTING_FILE,
    default=None,
    help="Require any of the keys in this file, one per line (# starts a comment).",
)
@click.option(
    "--cors-origin", "cors_origins", multiple=True, help="Let pages from this origin call the API; repeatable."
)
@click.option("--metrics", is_flag=True, help="Serve Prometheus metrics at /metrics.")
@click.option(
    "--chat-format",
    type=click.Choice(sorted(CHAT_FORMATS)),
    default="play",
    show_default=True,
    help="How /v1/chat/completions writes messages into the prime: 'play' puts each under a NAME: line "
    "and the reply ends at a blank line; 'lines' gives each a line and the reply one line.",
)
@click.option("--log-prompts", is_flag=True, help="Write prompts and generated text into the access log lines.")
@click.option("--access-log/--no-access-log", default=True, help="A line on stderr per request (no text in it).")
@declared_options("serve", Placement, Acceleration)
def serve(
    checkpoint: Path | None,
    host: str,
    port: int,
    max_tokens: int,
    max_n: int,
    max_streams: int,
    max_queue: int,
    request_timeout: float,
    stall_timeout: float,
    api_keys: tuple[str, ...],
    api_key_file: Path | None,
    cors_origins: tuple[str, ...],
    metrics: bool,
    chat_format: str,
    log_prompts: bool,
    access_log: bool,
    device: str,
    threads: str,
    compile: str,
    quantize: str,
) -> None:
    """Serve CHECKPOINT (default: the bundled Shakespeare model) over HTTP.

    OpenAI's completions and chat completions APIs at /v1 (streaming too), the model at
    /v1/models, a health check at /health, and a page to try it at /. Concurrent requests are
    stepped together as one batch.

    \b
    Examples:
      charrnn serve
      charrnn serve checkpoints/tinyshakespeare/best.pt --port 8080
      charrnn serve run/best.pt --host 0.0.0.0 --api-key-file keys.txt --metrics

    The port opens at once; /health answers 503 until the model has loaded (with --compile auto,
    it builds the compiled step first: once per model shape, cached).
    """
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharRNNError(MISSING) from None
    from charrnn.commands.serving.app import create_app
    from charrnn.commands.serving.listener import http_server
    from charrnn.commands.serving.state import Deployment, Server

    keys = _keys(api_keys, api_key_file)
    if not keys and not _loopback(host):
        click.echo(f"warning: serving on {host} with no API key: anyone who can reach it can use it", err=True)
    _check_port_is_free(host, port)
    deployment = Deployment(
        limits=Limits(max_tokens=max_tokens, max_n=max_n),
        max_streams=max_streams,
        max_queue=max_queue,
        request_timeout=request_timeout,
        keys=keys,
        cors_origins=cors_origins,
        log_prompts=log_prompts,
        access_log=access_log,
        metrics=metrics,
        chat=CHAT_FORMATS[chat_format],
    )
    server = Server(model_name(checkpoint), deployment)
    on_stall = lambda: server.counts.__setitem__("cut_off", server.counts["cut_off"] + 1)
    http = http_server(create_app(server), host, port, stall_timeout, on_stall)
    # The HTTP side runs in a thread (it mostly waits); the engine's steps run on the main thread,
    # where torch's CPU kernels are fastest. Ctrl-C or SIGTERM stops both.
    listener = threading.Thread(target=http.run, name="charrnn-http", daemon=True)
    listener.start()
    stop = threading.Event()
    previous = {number: signal.signal(number, stop_handler(stop, STOP_SECONDS)) for number in STOP_SIGNALS}
    try:
        while not http.started:
            if not listener.is_alive():
                raise CharRNNError(f"the server could not start on {host}:{port}")
            time.sleep(0.05)
        click.echo(f"listening at http://{host}:{port}/ (GET /health: 503 until the model has loaded)", err=True)
        model, name = load_model(checkpoint, device, compile, quantize, threads)
        server.ready(model)
        if stop.is_set():  # a stop that came while the step compiled, its interrupt lost inside torch
            raise KeyboardInterrupt
        click.echo(f"serving {name} at http://{host}:{port}/  (OpenAI API at /v1; Ctrl-C stops)", err=True)
        # Each small torch op lets go of the GIL; with the HTTP thread busy, taking it back could
        # wait a whole switch interval (5 ms by default) per op. A short interval keeps steps flowing.
        sys.setswitchinterval(0.0002)
        server.engine.run()
    except KeyboardInterrupt:
        pass  # the handler has already bounded the rest of the exit
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        http.should_exit = True
        listener.join(timeout=10)


def _keys(given: tuple[str, ...], key_file: Path | None) -> tuple[str, ...]:
    """The API keys from --api-key, --api-key-file and $CHARRNN_API_KEY; an empty key is refused."""
    keys = [*given]
    if os.environ.get("CHARRNN_API_KEY"):
        keys.append(os.environ["CHARRNN_API_KEY"])
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CharRNNError(f"cannot read the API key file {key_file}: {exc}") from None
        from_file = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not from_file:
            raise CharRNNError(f"the API key file {key_file} holds no key: write one per line")
        keys += from_file
    if any(not key.strip() or any(c.isspace() for c in key) for key in keys):
        raise CharRNNError("an API key must be one word, with no spaces: check --api-key and $CHARRNN_API_KEY")
    return tuple(dict.fromkeys(keys))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def stop_handler(stop: threading.Event, seconds: float) -> Callable[[int, object], None]:
    """The handler for SIGTERM and Ctrl-C: it sets ``stop``, gives the rest of the exit ``seconds``
    (then ends the process), and raises KeyboardInterrupt to end the server as Ctrl-C does.

    The bound starts here, not where the interrupt is caught, because the interrupt can be lost: raised
    while torch.export traced the generation step, it came out as a TypeError, which the eager
    fallback caught, and the server went on to serve (CI, 2026-12-08). The process now ends either
    way; an interrupt lost while loading is also noticed through ``stop`` once the model is ready.
    Open connections get uvicorn's 5 s; a half-built cache file is discarded."""

    def exit_now() -> None:
        sys.stderr.write(f"charrnn serve: still stopping after {seconds:g} s: exiting now\n")
        sys.stderr.flush()
        os._exit(0)

    def handle(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set()
            timer = threading.Timer(seconds, exit_now)
            timer.daemon = True
            timer.start()
        raise KeyboardInterrupt

    return handle


def _check_port_is_free(host: str, port: int) -> None:
    """One clear line now, rather than uvicorn's log after the model has loaded."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror:
            raise CharRNNError(f"cannot listen on {host}: not a host name or address: give an IP address") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CharRNNError(f"cannot listen on {host}:{port}: the port is in use: pass another --port") from None
            raise CharRNNError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}: give an address of this machine "
                "(127.0.0.1, or 0.0.0.0 for all of them)"
            ) from None
