"""uvicorn, set up so that no connection holds the server's memory or a row for long.

uvicorn closes a kept-alive connection that stays quiet between requests, but not one that opens
and never sends a request, and it waits forever on a client that stops reading a response. The
protocol here (uvicorn's h11 one) adds both: a connection quiet for ``idle`` seconds from the
start is closed, and one whose client has read nothing for ``stall`` seconds while its buffer is
full is aborted (its streams are then cancelled, as for any client that leaves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

IDLE_SECONDS = 5  # a connection that sends nothing this long is closed (uvicorn's keep-alive default)
MAX_CONNECTIONS = 1024  # beyond this many at once, uvicorn answers 503 at once
HEADER_BYTES = 16 * 1024  # the most of a request's head uvicorn's h11 buffers


def protocol(stall: float, on_stall: Callable[[], None]) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with the two timeouts (``on_stall`` counts an aborted connection)."""

    class Guarded(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._stalled: asyncio.TimerHandle | None = None
            # The keep-alive timer from the start: a connection that never sends a request is closed too.
            self.timeout_keep_alive_task = self.loop.call_later(IDLE_SECONDS, self.timeout_keep_alive_handler)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stalled is None:
                self._stalled = self.loop.call_later(stall, self._abort_stalled)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._stalled is not None:
                self._stalled.cancel()
                self._stalled = None

        def _abort_stalled(self) -> None:
            self._stalled = None
            if not self.transport.is_closing():
                on_stall()
                self.transport.abort()  # connection_lost: the app's streams see the client gone

    return Guarded


def http_server(app, host: str, port: int, stall: float, on_stall: Callable[[], None]) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # charrnn writes its own lines (serving/app.py: Guard)
        http=protocol(stall, on_stall),
        timeout_keep_alive=IDLE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=HEADER_BYTES,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)
