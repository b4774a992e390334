"""`charrnn serve` under concurrent streaming clients, next to offline generation of 16 samples.

Usage: python benchmarks/serve_throughput.py [--quick] [--checkpoint CKPT] [--length N]

Starts the real server (a process of its own) on the bundled model (or CKPT) and, round after
round, times in turn (A B C D ...):

    offline, 16 samples   charrnn.load(CKPT).generate(..., num_samples=16) in this process:
                          what `charrnn generate --num-samples 16` does
    1 / 4 / 16 clients    that many streaming requests at once (httpx, server-sent events),
                          each for N characters; aggregate characters per second, and the time
                          from sending a request to its first character

The clients run in this process, on the same 2 cores as the server, as a local user's would.
Targets (issue 17): 16 clients >= 0.7x the offline 16-sample rate and >= 4x the 1-client rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import Series, print_ratio, print_table  # noqa: E402

import charrnn  # noqa: E402
from charrnn.bundled import bundled_model  # noqa: E402

PROMPT = "ROMEO:"
CLIENTS = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "charrnn", "serve", str(checkpoint), "--port", str(port), "--max-n", "16"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).raise_for_status()
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {process.communicate()[1]}") from None
            time.sleep(0.2)


async def one_stream(http: httpx.AsyncClient, url: str, length: int, seed: int) -> tuple[int, float]:
    """Characters received, and seconds from sending the request to the first character."""
    body = {"prompt": PROMPT, "max_tokens": length, "seed": seed, "stream": True, "temperature": 0.8}
    started, first, received = time.perf_counter(), None, 0
    async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                text = json.loads(line[6:])["choices"][0]["text"]
                if text and first is None:
                    first = time.perf_counter() - started
                received += len(text)
    return received, first


async def clients_round(url: str, clients: int, length: int, round_index: int) -> tuple[float, list[float]]:
    """Aggregate characters per second of ``clients`` concurrent streams, and their first-character times."""
    async with httpx.AsyncClient(timeout=300) as http:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(http, url, length, 1000 * round_index + i) for i in range(clients)))
        seconds = time.perf_counter() - started
    received = sum(chars for chars, _ in results)
    assert received == clients * length, f"{received} characters, expected {clients * length}"
    return received / seconds, [first for _, first in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds (under 3 minutes)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--length", type=int, default=300, help="characters per stream")
    args = parser.parse_args()
    checkpoint = args.checkpoint or bundled_model()
    rounds = 3 if args.quick else 8
    model = charrnn.load(checkpoint, device="cpu")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs; {model.describe_size()}; {args.length} characters a stream"
    )

    port = free_port()
    server = start_server(checkpoint, port)
    url = f"http://127.0.0.1:{port}"
    offline = Series("offline generate, 16 samples at once", [])
    served = {clients: Series(f"serve, {clients} streaming client(s)", []) for clients in CLIENTS}
    first_chars: dict[int, list[float]] = {clients: [] for clients in CLIENTS}
    client_cpu: dict[int, list[float]] = {clients: [] for clients in CLIENTS}  # this process's CPU / wall
    try:
        for round_index in range(rounds + 1):  # round 0 warms up (first calls, caches) and is not counted
            started = time.perf_counter()
            model.generate(PROMPT, args.length, num_samples=16, seed=round_index)
            rate = 16 * args.length / (time.perf_counter() - started)
            if round_index:
                offline.rates.append(rate)
            for clients in CLIENTS:
                wall, cpu = time.perf_counter(), time.process_time()
                rate, firsts = asyncio.run(clients_round(url, clients, args.length, round_index))
                client_cpu[clients].append((time.process_time() - cpu) / (time.perf_counter() - wall))
                if round_index:
                    served[clients].rates.append(rate)
                    first_chars[clients] += firsts
    finally:
        server.terminate()
        server.communicate(timeout=30)

    print_table(f"{rounds} rounds, interleaved", [offline, *served.values()], "characters/s, all streams")
    print_ratio("16 clients / offline 16 samples", served[16], offline, target="median >= 0.7")
    print_ratio("16 clients / 1 client", served[16], served[1], target="median >= 4")
    print("time to the first character (request sent -> first text event), median [max]; CPU the clients used:")
    for clients in CLIENTS:
        times, cpu = first_chars[clients], statistics.median(client_cpu[clients])
        print(
            f"  {clients:>2} client(s): {statistics.median(times) * 1000:7.1f} ms  [{max(times) * 1000:.1f} ms]"
            f"   clients: {cpu:.0%} of a core"
        )


if __name__ == "__main__":
    main()
