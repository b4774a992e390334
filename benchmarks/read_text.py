"""Time and peak memory to read and encode a 100 MB text, the way training does.

Usage: python benchmarks/read_text.py [--quick] [--megabytes 100] [--rounds N]

Targets: a 100 MB text is read and encoded in <= 10 s with a peak RSS <= 1 GB (10^9 bytes), ids
in the smallest integer dtype that holds the vocabulary. The texts are written on the fly to a
temporary directory, each exactly --megabytes x 10^6 bytes (MB below is always 10^6 bytes):

    English   tinyshakespeare's lines, shuffled afresh for each copy: ASCII, 1 byte per character
    CJK       ~9,000 distinct CJK characters, Zipf-like, a newline every ~50: 3 bytes per character
              in UTF-8, 2 in Python's str
    stress    English with CRLF line ends, curly apostrophes (2 bytes per character in Python) and
              one emoji at the very end, which makes Python hold the whole text at 4 bytes per
              character: the most memory a 100 MB text can take as a str
    many      the English text cut at line ends into --files files (3,000 by default) in one
              directory: a collection, read as `charrnn train DIRECTORY` reads it

Set-ups, each run in a fresh process whose own peak RSS (ru_maxrss) is reported; the runs are
interleaved (charrnn, reference, naive, charrnn, ...) because this machine's speed drifts:

    charrnn      corpus.scan -> Vocab -> corpus.lay_out, as a new training run does (TrainConfig's
                 defaults): every file read twice, once hashed, the ids allocated at their final size
    read+decode  Path.read_bytes().decode("utf-8") and nothing else: the least any reader can do
                 (the reference for time; it imports no torch)
    naive        the tutorials' way (e.g. "Let's build GPT"): open().read(), sorted(set(text)),
                 torch.tensor([stoi[c] for c in text], dtype=torch.long); on the first --naive-megabytes
                 of the file only, since at 100 MB it needs about 2 GB

Seconds exclude interpreter start-up and imports; "import MB" is the RSS after the imports, so
peak - import is what the work itself costs. The files are in the page cache (just written).
The parent process stays small and generates the texts in a child of its own: on Linux a
child's ru_maxrss starts from its parent's high-water mark, which survives fork + exec.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import Series, print_ratio, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "corpora" / "tinyshakespeare.txt"
MB = 10**6
TARGET_SECONDS = 10.0
TARGET_PEAK_BYTES = 10**9
TEXTS = {
    "english": "English (ASCII)",
    "cjk": "CJK (~9,000 distinct characters)",
    "stress": "stress (English, CRLF, curly quotes, one emoji at the end)",
    "many": "many files (the English text in one directory)",
}
SETUPS = {
    "charrnn": "charrnn (the training path)",
    "read": "read+decode (reference)",
    "naive": "naive [stoi[c] for c in text]",
}


# --- the texts (run in a child process) -------------------------------------------------------


def utf8_prefix(data: bytes, max_bytes: int) -> bytes:
    """The longest start of ``data`` of at most ``max_bytes`` bytes that cuts no character in two."""
    end = min(max_bytes, len(data))
    while end < len(data) and (data[end] & 0xC0) == 0x80:  # data[end] continues a character
        end -= 1
    return data[:end]


def write_exactly(path: Path, pieces, num_bytes: int) -> None:
    """Write the UTF-8 byte strings of ``pieces`` up to ``num_bytes``, cut between characters and
    padded with newlines to exactly ``num_bytes``."""
    written = 0
    with open(path, "wb") as file:
        for piece in pieces:
            kept = utf8_prefix(piece, num_bytes - written)
            file.write(kept)
            written += len(kept)
            if len(kept) < len(piece):
                break
        file.write(b"\n" * (num_bytes - written))


def english_pieces(rng):
    """tinyshakespeare again and again, its lines in a new order each time."""
    lines = BOOK.read_text(encoding="utf-8").splitlines(keepends=True)
    while True:
        yield "".join(lines[i] for i in rng.permutation(len(lines))).encode("utf-8")


def cjk_pieces(rng, vocab_size: int = 9000, piece_chars: int = 4_000_000):
    """Characters drawn Zipf-like from ``vocab_size`` CJK ideographs, about 2% newlines; the
    first piece holds every one of them."""
    import numpy as np  # see make_texts

    weights = 1.0 / np.arange(1, vocab_size + 1)
    first = True
    while True:
        ids = rng.choice(vocab_size, size=piece_chars, p=weights / weights.sum())
        if first:
            ids[:vocab_size] = np.arange(vocab_size)
            first = False
        code_points = (0x4E00 + ids).astype(np.uint32)
        code_points[rng.random(piece_chars) < 0.02] = ord("\n")
        yield code_points.tobytes().decode("utf-32-le").encode("utf-8")


def split_into_files(source: Path, directory: Path, files: int) -> None:
    """Cut ``source`` at line ends into ``files`` files of about equal size."""
    data = source.read_bytes()
    directory.mkdir()
    start = 0
    for index in range(files):
        end = len(data) if index == files - 1 else data.find(b"\n", (index + 1) * len(data) // files) + 1
        (directory / f"{index:05d}.txt").write_bytes(data[start:end])
        start = end


def make_texts(workdir: Path, num_bytes: int, naive_bytes: int, files: int) -> None:
    """Write every text and the start of each for the naive set-up (in a child: see the docstring)."""
    import numpy as np  # imported here, never in the parent process, which must stay small

    rng = np.random.default_rng(0)
    write_exactly(workdir / "english.txt", english_pieces(rng), num_bytes)
    write_exactly(workdir / "cjk.txt", cjk_pieces(rng), num_bytes)
    emoji = "\U0001f642".encode("utf-8")
    stress = (workdir / "english.txt").read_bytes().replace(b"'", "\u2019".encode()).replace(b"\n", b"\r\n")
    write_exactly(workdir / "stress.txt", [stress], num_bytes - len(emoji))
    with open(workdir / "stress.txt", "ab") as file:
        file.write(emoji)
    split_into_files(workdir / "english.txt", workdir / "many", files)
    write_exactly(workdir / "many.naive.txt", [(workdir / "english.txt").read_bytes()], naive_bytes)
    for name in ("english", "cjk", "stress"):
        raw = (workdir / f"{name}.txt").read_bytes()
        write_exactly(workdir / f"{name}.naive.txt", [raw], naive_bytes)


# --- one measured run (in a fresh child process) ----------------------------------------------


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_charrnn(path: str) -> dict:
    import numpy
    import torch

    from charrnn.config import TrainConfig
    from charrnn.core.corpus import TextFormat, lay_out, scan
    from charrnn.core.vocab import Vocab

    config = TrainConfig()
    text_format = TextFormat.of(config)
    import_bytes = peak_rss_bytes()
    started = time.perf_counter()
    found = scan([path], text_format, warn=print)
    vocab = Vocab(found.characters)
    corpus, train_ids, val_ids = lay_out(found, vocab, text_format, val_frac=config.val_frac)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "import_bytes": import_bytes,
        "chars": len(train_ids) + len(val_ids),
        "documents": len(corpus.documents),
        "vocab": len(vocab),
        "dtype": str(train_ids.dtype),
        "versions": f"numpy {numpy.__version__}, torch {torch.__version__}",
    }


def run_read(path: str) -> dict:
    import_bytes = peak_rss_bytes()
    started = time.perf_counter()
    files = sorted(Path(path).iterdir()) if Path(path).is_dir() else [Path(path)]
    chars = sum(len(file.read_bytes().decode("utf-8")) for file in files)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "import_bytes": import_bytes, "chars": chars}


def run_naive(path: str) -> dict:
    import torch

    import_bytes = peak_rss_bytes()
    started = time.perf_counter()
    with open(path, encoding="utf-8") as file:
        text = file.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "import_bytes": import_bytes, "chars": len(train_data) + len(val_data)}


def child(setup: str, path: str) -> None:
    sys.path.insert(0, str(ROOT))
    result = {"charrnn": run_charrnn, "read": run_read, "naive": run_naive}[setup](path)
    result["peak_bytes"] = peak_rss_bytes()
    files = list(Path(path).iterdir()) if Path(path).is_dir() else [Path(path)]
    result["file_bytes"] = sum(file.stat().st_size for file in files)
    print(json.dumps(result))


def measure(setup: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", setup, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.splitlines()[-1])


# --- the report -------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def spread(values: list[float], scale: float, digits: int) -> str:
    """min / median / max of ``values`` / ``scale``."""
    scaled = [value / scale for value in values]
    return " / ".join(f"{v:>7,.{digits}f}" for v in (min(scaled), statistics.median(scaled), max(scaled)))


def report(text: str, results: dict[str, list[dict]]) -> None:
    charrnn = results["charrnn"]
    first = charrnn[0]
    print(
        f"\n{TEXTS[text]}: {first['file_bytes'] / MB:,.1f} MB, {first['chars']:,} characters, "
        f"V = {first['vocab']:,}, ids {first['dtype']}, {first['documents']:,} file(s)"
    )
    print(f"  {'set-up':<44} {'seconds: min / median / max':>27}   {'peak RSS MB: min / median / max':>31}   import MB")
    series = {}
    for setup, runs in results.items():
        file_mb = runs[0]["file_bytes"] / MB
        label = SETUPS[setup] + (f" (first {file_mb:,.0f} MB)" if setup == "naive" else "")
        seconds = [run["seconds"] for run in runs]
        peaks = [run["peak_bytes"] for run in runs]
        imports = statistics.median(run["import_bytes"] for run in runs) / MB
        print(f"  {label:<44} {spread(seconds, 1, 2):>27}   {spread(peaks, MB, 0):>31}   {imports:>9,.0f}")
        series[setup] = Series(label, [file_mb / s for s in seconds])
    print_table("  speed (MB of file per second)", list(series.values()), "MB/s")
    print_ratio("charrnn time / read+decode time, same file", series["read"], series["charrnn"])
    print_ratio("naive time / charrnn time, per MB", series["charrnn"], series["naive"])
    for setup in ("charrnn", "naive"):
        runs = results[setup]
        file_bytes = runs[0]["file_bytes"]
        peak = statistics.median(run["peak_bytes"] for run in runs)
        work = statistics.median(run["peak_bytes"] - run["import_bytes"] for run in runs)
        print(
            f"  {SETUPS[setup]}: median peak RSS {peak / file_bytes:.2f} x its file's size; "
            f"peak - import {work / file_bytes:.2f} x"
        )
    slowest = max(run["seconds"] for run in charrnn)
    highest = max(run["peak_bytes"] for run in charrnn)
    print(
        f"  targets at {first['file_bytes'] / MB:,.0f} MB: time <= {TARGET_SECONDS:.0f} s "
        f"{'met' if slowest <= TARGET_SECONDS else 'NOT MET'} (slowest run {slowest:.2f} s); "
        f"peak RSS <= {TARGET_PEAK_BYTES / MB:,.0f} MB {'met' if highest <= TARGET_PEAK_BYTES else 'NOT MET'} "
        f"(highest {highest / MB:,.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7 (under 3 minutes)")
    parser.add_argument("--rounds", type=int, help="runs of each set-up on each text")
    parser.add_argument("--megabytes", type=int, default=100, help="size of each text, in 10^6 bytes")
    parser.add_argument("--files", type=int, default=3000, help="files the 'many' text is cut into")
    parser.add_argument("--naive-megabytes", type=int, default=10, help="how much of each text the naive set-up reads")
    parser.add_argument("--child", nargs=2, metavar=("SETUP", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--make-texts", nargs=4, metavar=("DIR", "BYTES", "NAIVE", "FILES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.make_texts:
        make_texts(Path(args.make_texts[0]), *map(int, args.make_texts[1:]))
        return
    rounds = args.rounds or (3 if args.quick else 7)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--make-texts",
                tmp,
                *map(str, (args.megabytes * MB, args.naive_megabytes * MB, args.files)),
            ],
            check=True,
        )
        print(
            f"texts written in {time.perf_counter() - started:.0f} s; {rounds} rounds, each set-up in a fresh process, "
            "interleaved"
        )
        results = {text: {setup: [] for setup in SETUPS} for text in TEXTS}
        for _ in range(rounds):
            for text in TEXTS:
                for setup in SETUPS:
                    name = f"{text}.naive.txt" if setup == "naive" else "many" if text == "many" else f"{text}.txt"
                    path = workdir / name
                    results[text][setup].append(measure(setup, path))
    print(f"machine: {machine()}, {results['english']['charrnn'][0]['versions']}")
    print("read and encode as training does: corpus.scan -> Vocab -> corpus.lay_out")
    for text in TEXTS:
        report(text, results[text])


if __name__ == "__main__":
    main()
