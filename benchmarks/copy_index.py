"""The copy report's index (charrnn/core/copies.py) over a large corpus: build time, peak memory,
and the time to check a generated text.

Usage: python benchmarks/copy_index.py [--megabytes 100] [--repeats 3]

The corpus is real text of this machine: the Python source files under the interpreter's prefix
(the standard library and installed packages), each once, joined to ``--megabytes`` MB. Each
repeat runs in a fresh process (for its own peak RSS) and times, interleaved:

    read    reading the files again and hashing them: what every copy check does before it trusts
            a cached index (the reference)
    build   the suffix array (libdivsufsort through pydivsufsort) over the UTF-8 bytes
    check   the report for 2,000 characters: half copied from the corpus, half not

and prints min/median/max of each, and build / read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def corpus_files(megabytes: int) -> list[Path]:
    files, seen, size = [], set(), 0
    for path in sorted(Path(sys.prefix).rglob("*.py")) + sorted(Path(sys.base_prefix).rglob("*.py")):
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        files.append(path)
        size += len(data)
        if size >= megabytes * 1_000_000:
            break
    return files


def one_run(listing: str) -> dict:
    """In this (fresh) process: read, build, check; the figures and the peak RSS."""
    import resource

    from charrnn.core.copies import CopyIndex

    files = [Path(line) for line in Path(listing).read_text().splitlines()]
    began = time.perf_counter()
    texts = []
    for path in files:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        texts.append(data.decode("utf-8"))
    text = "\x1c".join(texts)
    read = time.perf_counter() - began
    began = time.perf_counter()
    index = CopyIndex.build(text)
    build = time.perf_counter() - began
    sample = text[len(text) // 2 : len(text) // 2 + 1000] + "".join(reversed(text[5000:6000]))
    began = time.perf_counter()
    report = index.report(sample)
    check = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"chars": len(text), "bytes": len(index.data), "read": read, "build": build, "check": check,
            "peak_mb": peak, "share": report.share}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one-run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(one_run(args.one_run)))
        return
    files = corpus_files(args.megabytes)
    listing = Path("/tmp/charrnn-copy-index-files.txt")
    listing.write_text("\n".join(map(str, files)))
    runs = []
    for repeat in range(args.repeats):
        result = subprocess.run([sys.executable, __file__, "--one-run", str(listing)], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(result.stderr)
        runs.append(json.loads(result.stdout))
        figures = runs[-1]
        size = f"{figures['bytes'] / 1e6:.1f} MB ({len(files):,} files)"
        print(f"run {repeat + 1}: {size}: read {figures['read']:.2f} s, "
              f"build {figures['build']:.2f} s, check 2,000 characters {figures['check'] * 1000:.0f} ms "
              f"({figures['share']:.0%} copied), peak RSS {figures['peak_mb']:.0f} MB", flush=True)  # fmt: skip
    for name in ("read", "build", "check", "peak_mb"):
        values = [run[name] for run in runs]
        print(f"{name}: {min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f} (min/median/max)")
    ratios = sorted(run["build"] / run["read"] for run in runs)
    print(f"build / read: {ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
