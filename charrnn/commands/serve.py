"""`charrnn serve`: the model behind an OpenAI-compatible HTTP API and a page (charrnn/commands/server.py).

Starlette and uvicorn are the `serve` extra; without them this command says how to install them.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import click

from charrnn.commands.common import EXISTING_FILE, declared_options, load_model
from charrnn.config import Acceleration, Placement
from charrnn.errors import CharRNNError

MISSING = 'charrnn serve needs Starlette and uvicorn: install them with  pip install "charrnn[serve]"'


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
@declared_options("serve", Placement, Acceleration)
def serve(
    checkpoint: Path | None,
    host: str,
    port: int,
    max_tokens: int,
    max_n: int,
    max_streams: int,
    device: str,
    threads: str,
    compile: str,
    quantize: str,
) -> None:
    """Serve CHECKPOINT (default: the bundled Shakespeare model) over HTTP.

    OpenAI's completions API at /v1/completions (streaming too), the model at /v1/models, and a
    page to try it at /. Concurrent requests are stepped together as one batch.

    \b
    Examples:
      charrnn serve
      charrnn serve checkpoints/tinyshakespeare/best.pt --port 8080
      charrnn serve run/best.pt --quantize int8

    A server runs for long: with --compile auto it builds the compiled step (once per model
    shape, cached) before it starts listening.
    """
    try:
        import uvicorn

        from charrnn.commands.server import Limits, Server, create_app
    except ImportError:
        raise CharRNNError(MISSING) from None
    _check_port_is_free(host, port)
    model, name = load_model(checkpoint, device, compile, quantize, threads)
    server = Server(model, name, Limits(max_tokens=max_tokens, max_n=max_n), max_streams)
    http = uvicorn.Server(uvicorn.Config(create_app(server), host=host, port=port, log_level="warning"))
    # The HTTP side runs in a thread (it mostly waits); the engine's steps run on the main thread,
    # where torch's CPU kernels are fastest. Ctrl-C or SIGTERM stops both.
    listener = threading.Thread(target=http.run, name="charrnn-http", daemon=True)
    listener.start()
    while not http.started:
        if not listener.is_alive():
            raise CharRNNError(f"the server could not start on {host}:{port}")
        time.sleep(0.05)
    click.echo(f"serving {name} at http://{host}:{port}/  (OpenAI API at /v1; Ctrl-C stops)", err=True)
    # Each small torch op lets go of the GIL; with the HTTP thread busy, taking it back could wait
    # a whole switch interval (5 ms by default) per op. A short interval keeps the steps flowing.
    sys.setswitchinterval(0.0002)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.engine.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        http.should_exit = True
        listener.join(timeout=10)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the server as Ctrl-C does


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
