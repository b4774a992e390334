"""`charrnn serve`: the model behind an OpenAI-compatible HTTP API and a page (charrnn/commands/server.py).

Starlette and uvicorn are the `serve` extra; without them this command says how to install them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

from charrnn.commands.common import EXISTING_FILE, declared_options, load_model
from charrnn.config import Placement
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
@declared_options("serve", Placement)
def serve(
    checkpoint: Path | None, host: str, port: int, max_tokens: int, max_n: int, max_streams: int, device: str
) -> None:
    """Serve CHECKPOINT (default: the bundled Shakespeare model) over HTTP.

    OpenAI's completions API at /v1/completions (streaming too), the model at /v1/models, and a
    page to try it at /. Concurrent requests are stepped together as one batch.

    \b
    Examples:
      charrnn serve
      charrnn serve checkpoints/tinyshakespeare/best.pt --port 8080
    """
    try:
        import uvicorn

        from charrnn.commands.server import Limits, create_app
    except ImportError:
        raise CharRNNError(MISSING) from None
    _check_port_is_free(host, port)
    model, name = load_model(checkpoint, device)
    app = create_app(model, name, Limits(max_tokens=max_tokens, max_n=max_n), max_streams=max_streams)
    click.echo(f"serving {name} at http://{host}:{port}/  (OpenAI API at /v1; Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port_is_free(host: str, port: int) -> None:
    """One clear line now, rather than uvicorn's log after the model has loaded."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CharRNNError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port") from None
