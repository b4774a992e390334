"""Cold start: seconds from running `charrnn generate CHECKPOINT --length 1` to its first character.

Usage: python benchmarks/cold_start.py [--rounds 7]

Each round starts fresh processes, in turn (A B C D ...): `python -c "import torch"` (the floor
any PyTorch program pays), then `charrnn generate` of the bundled model with --compile off, with
--compile auto (no compiled step cached: what a first run does), and with --compile on once its
compiled step is cached (loading it pulls in TorchInductor's runtime). The clock stops at the
first byte of generated text on stdout (the prime is empty).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

GENERATE = [sys.executable, "-m", "charrnn", "generate", "--length", "1"]
COMMANDS = {
    "python -c 'import torch' (floor)": [sys.executable, "-c", "import torch; print('x', flush=True)"],
    "charrnn generate --compile off": [*GENERATE, "--compile", "off"],
    "charrnn generate (auto, nothing cached)": GENERATE,
    "charrnn generate --compile on (cached)": [*GENERATE, "--compile", "on"],
}


def first_output_seconds(command: list[str], env: dict[str, str]) -> float:
    """Seconds until the process writes its first byte to stdout (then it is left to finish)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    process.stdout.read(1)
    seconds = time.perf_counter() - started
    process.communicate()
    assert process.returncode == 0, command
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as empty:
        cached = {**os.environ, "CHARRNN_CACHE": cache}
        subprocess.run(COMMANDS["charrnn generate --compile on (cached)"], env=cached, capture_output=True, check=True)
        envs = [os.environ, {**os.environ, "CHARRNN_CACHE": empty}, {**os.environ, "CHARRNN_CACHE": empty}, cached]
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.rounds):
            for (name, command), env in zip(COMMANDS.items(), envs, strict=True):
                times[name].append(first_output_seconds(command, dict(env)))
    print(f"{args.rounds} rounds, seconds to the first character on stdout (min / median / max)")
    floor = times["python -c 'import torch' (floor)"]
    for name, values in times.items():
        above = statistics.median([t - f for t, f in zip(values, floor, strict=True)])
        print(
            f"  {name:<42} {min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"
            f"   (+{above:.2f} s over importing torch)"
        )


if __name__ == "__main__":
    main()
