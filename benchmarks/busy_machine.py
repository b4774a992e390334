"""Speed on a machine that is not ours alone: --threads auto against every fixed count.

Usage: python benchmarks/busy_machine.py [--rounds 3] [--seconds 20] [--quick] [--load quiet|one|all]
       [--job train|"generate x1"|"generate x16"]

Three jobs, each in a fresh process as a user runs it, for a fixed stretch of wall time:

    train        charrnn's training step (``train_one_step``) on tinyshakespeare, the default
                 model and batch (2 x 256 LSTM, 16 x 100 characters a step)
    generate x1  ``CharModel.generate`` on the bundled model, eager step, one stream
    generate x16 the same, sixteen streams

under three loads: quiet; one core busy; every core busy. The load is burner processes this
script starts and stops (``while True: pass``, what issue 33 measured with). Every --threads
setting (auto, 1 .. cores) runs once per round, in turn, so the machine's drift is spread evenly;
each run's rate counts everything auto does (its first measurement, its later looks). The table
gives min / median / max over rounds, and the ratio of auto to the best fixed count of the same
load and job, per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
JOBS = ("train", "generate x1", "generate x16")
BURNER = "while True: pass"


def child(job: str, threads: str, seconds: float) -> None:
    """Run ``job`` for ``seconds`` with ``--threads threads``; print its rate as JSON."""
    import torch

    torch.manual_seed(0)
    if job == "train":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import tempfile

        from interleave import training_step

        from charrnn.config import ModelConfig, TrainConfig
        from charrnn.training.policy import start_run

        with tempfile.TemporaryDirectory() as out:
            run = start_run(
                BOOK, ModelConfig(), TrainConfig(), out_dir=Path(out) / "run", device="cpu", log=lambda m: None
            )
            step = training_step(run, threads=threads)
            chars = run.train_config.batch_size * run.train_config.seq_len
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                step()
                done += chars
            rate = done / (time.perf_counter() - started)
    else:
        import charrnn

        streams = 16 if job.endswith("x16") else 1
        model = charrnn.load(device="cpu", compile="off", threads=threads)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            texts = model.generate("ROMEO:", 500, num_samples=streams, seed=done)
            done += sum(len(text) for text in texts)
        rate = done / (time.perf_counter() - started)
    print(json.dumps({"rate": rate}))


def measure(job: str, threads: str, seconds: float) -> float:
    command = [sys.executable, __file__, "--child", job, threads, str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])["rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of each run")
    parser.add_argument("--quick", action="store_true", help="one round of 8 s (a smoke test, not figures)")
    parser.add_argument("--load", choices=("quiet", "one", "all"), action="append", help="only these loads")
    parser.add_argument("--job", choices=JOBS, action="append", help="only these jobs")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job, threads, seconds = args.child
        child(job, threads, float(seconds))
        return
    if args.quick:
        args.rounds, args.seconds = 1, 8.0
    sys.path.insert(0, str(ROOT))
    import torch

    from charrnn.cores import usable_cores

    cores = usable_cores()
    settings = ["auto", *(str(count) for count in range(1, cores + 1))]
    loads = {"quiet": 0, "one core busy": 1, f"all {cores} cores busy": cores}
    if args.load:
        keys = dict(zip(("quiet", "one", "all"), loads, strict=True))
        loads = {keys[key]: loads[keys[key]] for key in args.load}
    jobs = args.job or JOBS
    print(f"torch {torch.__version__}, {cores} usable cores, {os.cpu_count()} CPUs")
    print(f"{args.rounds} rounds of {args.seconds:g} s per run")
    results: dict[tuple[str, str, str], list[float]] = {}
    for load, burners in loads.items():
        processes = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(burners)]
        try:
            time.sleep(1)
            for _ in range(args.rounds):
                for job in jobs:
                    for setting in settings:
                        results.setdefault((load, job, setting), []).append(measure(job, setting, args.seconds))
        finally:
            for process in processes:
                process.kill()
                process.wait()
    print()
    print(f"  {'load':<22} {'job':<14} {'--threads':<10} {'min':>9} {'median':>9} {'max':>9}   chars/s")
    for (load, job, setting), rates in results.items():
        low, mid, high = min(rates), statistics.median(rates), max(rates)
        print(f"  {load:<22} {job:<14} {setting:<10} {low:>9,.0f} {mid:>9,.0f} {high:>9,.0f}")
    print()
    print("auto / the best fixed count (the one with the highest median), per round:")
    for load in loads:
        for job in jobs:
            fixed = {s: results[load, job, s] for s in settings if s != "auto"}
            best = max(fixed, key=lambda s: statistics.median(fixed[s]))
            per_round = [a / b for a, b in zip(results[load, job, "auto"], fixed[best], strict=True)]
            low, mid, high = min(per_round), statistics.median(per_round), max(per_round)
            print(f"  {load:<22} {job:<14} best fixed {best:<3} ratio min {low:.2f}, median {mid:.2f}, max {high:.2f}")


if __name__ == "__main__":
    main()
