"""A hostile load on a running `charrnn serve`: well-behaved streaming clients among bad ones.

Used at full size by benchmarks/serve_hostile.py and at a smaller one by
tests/commands/test_deploy.py. In one asyncio loop, at once:

    well-behaved   ``clients`` x ``rounds`` streaming requests, one after another per client,
                   each for ``length`` characters with its own seed: each must end with
                   finish_reason "length" and the very text a quiet request with that seed gets
    silent         ``silent`` clients that send a streaming request and never read a byte
    idle           ``idle`` connections that send nothing at all (or half a request head)
    hostile        a body over 1 MB, invalid UTF-8, JSON nested 100,000 deep, a malformed
                   header line, and a client that leaves after its first chunk

while the server's resident memory is sampled every 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from dataclasses import dataclass, field

import httpx

PROMPT = "ROMEO:"
IDLE_CHECK_SECONDS = 7  # the idle connections are checked this long after they opened (the server's limit: 5 s)


@dataclass
class Report:
    completed: int = 0  # well-behaved requests that ended correctly
    wrong: list[str] = field(default_factory=list)  # what went wrong with the others
    first_char: list[float] = field(default_factory=list)  # seconds, send -> first text, per request
    hostile: dict[str, object] = field(default_factory=dict)  # each hostile case's outcome
    idle_closed: int = 0  # idle connections the server had closed by the end
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    seconds: float = 0.0
    characters: int = 0

    @property
    def p95_first_char(self) -> float:
        ttfc = sorted(self.first_char) or [float("nan")]
        return ttfc[min(len(ttfc) - 1, int(0.95 * len(ttfc)))]

    def summary(self) -> str:
        ttfc, p95 = sorted(self.first_char) or [float("nan")], self.p95_first_char
        return (
            f"{self.completed} requests correct, {len(self.wrong)} wrong; {self.characters:,} characters in "
            f"{self.seconds:.1f} s ({self.characters / max(self.seconds, 1e-9):,.0f} chars/s); time to first "
            f"character min {ttfc[0] * 1000:.0f} ms, median {statistics.median(ttfc) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {ttfc[-1] * 1000:.0f} ms; server RSS {self.start_rss_mb:.0f} MB "
            f"at the start, {self.peak_rss_mb:.0f} MB at most; idle connections closed by the server: "
            f"{self.idle_closed}; hostile: {self.hostile}"
        )


def rss_mb(pid: int) -> float:
    """A process's resident memory (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def request_bytes(host: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = {"Host": host, "Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
    return f"POST /v1/completions HTTP/1.1\r\n{lines}\r\n".encode() + body


async def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (or ``timeout``)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)  # not drained first: the server may answer (413) before it has read it all
        return await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def well_behaved(client: httpx.AsyncClient, url: str, seed: int, length: int, report: Report, expected: dict):
    body = {"prompt": PROMPT, "max_tokens": length, "seed": seed, "temperature": 0.9, "stream": True}
    began, first, text, reason = time.perf_counter(), None, "", None
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                report.wrong.append(f"seed {seed}: status {response.status_code}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[len("data: ") :])["choices"][0]
                if choice["text"] and first is None:
                    first = time.perf_counter() - began
                text += choice["text"]
                reason = choice["finish_reason"] or reason
    except httpx.HTTPError as exc:
        report.wrong.append(f"seed {seed}: {type(exc).__name__} {exc}")
        return
    expected.setdefault(seed, [])
    if reason != "length" or len(text) != length:
        report.wrong.append(f"seed {seed}: {len(text)} characters, finish_reason {reason}")
        return
    expected[seed].append(text)
    report.completed += 1
    report.characters += len(text)
    report.first_char.append(first)


async def silent(address: tuple[str, int], length: int, held: list[socket.socket], n: int = 1):
    """A streaming request whose client never reads: a small receive buffer, never drained."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, address)
    body = json.dumps({"prompt": PROMPT, "max_tokens": length, "n": n, "stream": True}).encode()
    await loop.sock_sendall(sock, request_bytes(f"{address[0]}:{address[1]}", body))
    held.append(sock)


async def idle(address: tuple[str, int], half: bool, held: list[tuple]):
    reader, writer = await asyncio.open_connection(*address)
    if half:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    held.append((reader, writer))


async def hostile_cases(url: str, address: tuple[str, int], report: Report):
    host = f"{address[0]}:{address[1]}"
    closing = {"Connection": "close"}
    bodies = {
        "body over 1 MB": json.dumps({"prompt": "a" * (1 << 20)}).encode(),
        "invalid UTF-8": b'{"prompt": "\xff\xfe"}',
        "nested JSON": b"[" * 100_000 + b"]" * 100_000,
    }
    for case, body in bodies.items():
        report.hostile[case] = status_of(await raw_exchange(address, request_bytes(host, body, closing)))
    malformed = b"GET /health HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n"
    report.hostile["malformed header"] = status_of(await raw_exchange(address, malformed))
    async with httpx.AsyncClient(timeout=60) as client:  # leaves after its first chunk
        body = {"prompt": PROMPT, "max_tokens": 2000, "stream": True}  # the default --max-tokens
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            async for _ in response.aiter_bytes():
                break
        report.hostile["left mid-stream"] = response.status_code


async def attack(
    url: str,
    pid: int,
    clients: int,
    rounds: int,
    length: int,
    silent_clients: int,
    idle_connections: int,
    hostile: bool = True,
):
    """Run the load; the report (and the texts each seed gave, to compare with a quiet request)."""
    host, port = url.removeprefix("http://").split(":")
    address = (host, int(port))
    report, expected = Report(start_rss_mb=rss_mb(pid)), {}
    held_sockets: list[socket.socket] = []
    held_idle: list[tuple] = []
    sampling = True

    async def sample_memory():
        while sampling:
            report.peak_rss_mb = max(report.peak_rss_mb, rss_mb(pid))
            await asyncio.sleep(0.05)

    async def one_client(client, index):
        for r in range(rounds):
            await well_behaved(
                client, url, seed=(index * rounds + r) % 8, length=length, report=report, expected=expected
            )

    sampler = asyncio.create_task(sample_memory())
    began = time.perf_counter()
    await asyncio.gather(*(idle(address, i % 4 == 0, held_idle) for i in range(idle_connections)))
    await asyncio.gather(*(silent(address, 4 * length, held_sockets) for _ in range(silent_clients)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=180, limits=limits) as client:
        bad = [hostile_cases(url, address, report)] if hostile else []
        await asyncio.gather(*bad, *(one_client(client, i) for i in range(clients)))
    report.seconds = time.perf_counter() - began
    if held_idle:
        await asyncio.sleep(max(0.0, began + IDLE_CHECK_SECONDS - time.perf_counter()))

    async def closed_by_server(reader, writer) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1 << 16), 0.5) == b""
        except (TimeoutError, ConnectionError):
            return False
        finally:
            writer.close()

    report.idle_closed = sum(await asyncio.gather(*(closed_by_server(*pair) for pair in held_idle)))
    for sock in held_sockets:
        sock.close()
    sampling = False
    await sampler
    return report, expected


def run_attack(url: str, pid: int, **sizes) -> tuple[Report, dict[int, list[str]]]:
    return asyncio.run(attack(url, pid, **sizes))
