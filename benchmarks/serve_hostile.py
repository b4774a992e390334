"""`charrnn serve` under a hostile load (issue 31): how the well-behaved clients fare among bad ones.

Usage: python benchmarks/serve_hostile.py [--checkpoint CKPT] [--clients 64] [--rounds 3]
                                          [--length 300] [--silent 8] [--idle 200] [--repeats 3]

Starts the real server (a process of its own; the bundled model unless CKPT) and runs
tests/hostile_load.py against it: ``clients`` streaming clients x ``rounds`` requests each, plus
``silent`` clients that never read, ``idle`` connections that send nothing or half a request
head, a body over 1 MB, invalid UTF-8, JSON nested 100,000 deep, a malformed header and a client
that leaves mid-stream. Beside it, for reference in the same run, the same well-behaved clients
with no hostile ones (A B A B ...). Prints each run's figures, then min/median/max of time to
first character (median per run) and the peak RSS, hostile over quiet.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.hostile_load import PROMPT, run_attack  # noqa: E402


def start_server(checkpoint: str | None, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "charrnn", "serve", *([checkpoint] if checkpoint else []), "--port", str(port)]
    process = subprocess.Popen([*command, "--no-access-log"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def check_texts(url: str, length: int, texts: dict[int, list[str]]) -> int:
    """How many well-behaved texts differ from what a quiet request with their seed gets."""
    wrong = 0
    for seed, seen in texts.items():
        body = {"prompt": PROMPT, "max_tokens": length, "seed": seed, "temperature": 0.9}
        quiet = httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]
        wrong += sum(text != quiet for text in seen)
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--silent", type=int, default=8)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    port = 8000 + (hash(time.time()) % 1000)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = start_server(args.checkpoint, port, log)
        try:
            figures = {"hostile": [], "quiet": []}
            for repeat in range(args.repeats):
                for kind in ("quiet", "hostile"):  # interleaved: A B A B ...
                    hostile = kind == "hostile"
                    report, texts = run_attack(
                        url,
                        server.pid,
                        clients=args.clients,
                        rounds=args.rounds,
                        length=args.length,
                        silent_clients=args.silent if hostile else 0,
                        idle_connections=args.idle if hostile else 0,
                        hostile=hostile,
                    )
                    mismatched = check_texts(url, args.length, texts)
                    alive = server.poll() is None and httpx.get(f"{url}/health").status_code == 200
                    print(f"{kind} #{repeat + 1}: {report.summary()}; texts unlike a quiet request's: "
                          f"{mismatched}; server up: {alive}", flush=True)  # fmt: skip
                    figures[kind].append(report)
            print()
            for name, value in (
                ("median time to first character (ms)", lambda r: statistics.median(r.first_char) * 1000),
                ("p95 time to first character (ms)", lambda r: r.p95_first_char * 1000),
                ("peak server RSS (MB)", lambda r: r.peak_rss_mb),
                ("characters per second", lambda r: r.characters / r.seconds),
            ):  # fmt: skip
                quiet = [value(r) for r in figures["quiet"]]
                hostile = [value(r) for r in figures["hostile"]]
                ratios = sorted(h / q for h, q in zip(hostile, quiet, strict=True))
                print(f"{name}: quiet {min(quiet):.0f}/{statistics.median(quiet):.0f}/{max(quiet):.0f}, hostile "
                      f"{min(hostile):.0f}/{statistics.median(hostile):.0f}/{max(hostile):.0f} (min/median/max); "
                      f"hostile / quiet {ratios[0]:.2f}/{statistics.median(ratios):.2f}/{ratios[-1]:.2f}")  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
