"""Generation speed of this checkout against another one (say, the commit before a change).

Usage: python benchmarks/generate_versions.py BASELINE_DIR [--candidate DIR] [--rounds 6] [--length 3000]
       (each a checkout's root, e.g. made with  git worktree add /tmp/before HEAD~3; the candidate
       defaults to this checkout: give a worktree instead if you will edit files while it runs)

Each measurement is a fresh process that imports charrnn from one checkout, loads the bundled
model (2 x 256 LSTM), generates once to warm up (and, with --compile on, to build or load the
compiled step into a cache directory shared by the run), then times ``CharModel.generate`` of
--length characters for each stream count, at temperature 0.8 with a fixed seed (what `charrnn
generate` runs). Processes alternate (baseline, this, baseline, this, ...) so that both meet the
same machine; the table gives characters per second, min / median / max over the rounds, and
the ratio of medians, this / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
STEPS = {"eager": ("off", "none"), "compiled": ("on", "none"), "int8": ("on", "int8")}

# Run in the measured process: everything it prints is one JSON line of rates.
TIMED = """
import json, sys, time, torch, charrnn
compile, quantize, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
streams = [int(s) for s in sys.argv[4].split(",")]
torch.set_num_threads(int(sys.argv[5]))
model = charrnn.load(None, "cpu", compile=compile, quantize=quantize, threads=int(sys.argv[5]))
rates = {}
for n in streams:
    model.generate("ROMEO:", length, num_samples=n, seed=1, temperature=0.8)  # warm-up (and build)
    started = time.perf_counter()
    model.generate("ROMEO:", length, num_samples=n, seed=2, temperature=0.8)
    rates[n] = n * length / (time.perf_counter() - started)
print(json.dumps({"kind": model.runtime.kind, "rates": rates}))
"""


def measure(checkout: Path, step: str, length: int, streams: str, threads: int, cache: str) -> tuple[str, dict]:
    compile, quantize = STEPS[step]
    env = {**os.environ, "PYTHONPATH": str(checkout), "CHARRNN_CACHE": cache}
    command = [sys.executable, "-c", TIMED, compile, quantize, str(length), streams, str(threads)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=checkout, check=True)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["kind"], {int(n): rate for n, rate in answer["rates"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--candidate", type=Path, default=HERE)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--length", type=int, default=3000)
    parser.add_argument("--streams", default="1,16")
    parser.add_argument("--steps", default="eager,compiled,int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    checkouts = {"baseline": args.baseline.resolve(), "this": args.candidate.resolve()}
    with tempfile.TemporaryDirectory() as cache:
        for step in args.steps.split(","):
            rates: dict[tuple[str, int], list[float]] = {}
            kinds = {}
            for round_index in range(args.rounds + 1):  # round 0 builds the compiled steps: not counted
                for name, checkout in checkouts.items():
                    kinds[name], measured = measure(checkout, step, args.length, args.streams, args.threads, cache)
                    for n, rate in measured.items():
                        if round_index:
                            rates.setdefault((name, n), []).append(rate)
            print(f"\n{step} ({kinds['baseline']} / {kinds['this']}), {args.length} characters, {args.rounds} rounds:")
            for n in (int(s) for s in args.streams.split(",")):
                row = []
                for name in checkouts:
                    values = rates[(name, n)]
                    row.append(statistics.median(values))
                    print(
                        f"  {n:>2} stream(s) {name:>8}: {min(values):9,.0f} {statistics.median(values):9,.0f} "
                        f"{max(values):9,.0f} chars/s (min median max)"
                    )
                print(f"  {n:>2} stream(s) this / baseline (medians): {row[1] / row[0]:.3f}")


if __name__ == "__main__":
    main()
