"""uvicorn, set up so that no connection holds the server's memory or a row for long.

uvicorn closes a kept-alive connection that stays quiet between requests, but not one that opens
and never finishes a request's head (idle, or slowloris), and it waits forever on a client that
stops reading a response. The protocol here (uvicorn's h11 one) adds both: a request's head must
arrive within ``HEAD_SECONDS`` of the connection opening (or of the previous response), and a
connection whose client reads nothing for ``stall`` seconds while its buffer is full is aborted
(its streams are then cancelled, as for any client that leaves).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 5  # a connection that has not sent a whole request head this long after opening is closed
KEEP_ALIVE_SECONDS = 5  # uvicorn's default: a kept-alive connection quiet this long is closed
MAX_CONNECTIONS = 1024  # beyond this many at once, uvicorn answers 503 at once
HEADER_BYTES = 16 * 1024  # the most of a request's head uvicorn's h11 buffers
SEND_BUFFER_BYTES = 64 * 1024  # the kernel's send buffer per connection (it doubles it): ample for text


def protocol(stall: float, on_stall: Callable[[], None]) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with the two timeouts (``on_stall`` counts an aborted connection)."""

    class Guarded(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is not None:  # a response the client does not read waits here, not in megabytes of kernel buffer
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            self._stalled: asyncio.TimerHandle | None = None
            self._head: asyncio.TimerHandle | None = None
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            if self._head is not None:
                self._head.cancel()
            self._head = self.loop.call_later(HEAD_SECONDS, self._head_too_slow)

        def _head_too_slow(self) -> None:
            self._head = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()  # no request under way: it opened, or half-sent one, and went quiet

        def handle_events(self) -> None:
            super().handle_events()
            if self._head is not None and self.cycle is not None and not self.cycle.response_complete:
                self._head.cancel()  # a whole head has arrived: the request is under way
                self._head = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_head()  # the next request's head, if any, gets as long

        def connection_lost(self, exc: Exception | None) -> None:
            for timer in (self._head, self._stalled):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

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
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=HEADER_BYTES,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)
