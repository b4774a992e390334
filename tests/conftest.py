"""Shared test fixtures: small texts, tiny configurations, the CLI runner, and tiny trained runs.

Everything that trains is built once per test session (``scope="session"``) and shared: tests
read these runs and never write into them (a resume writes to a directory of its own).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from charrnn.config import ModelConfig, TrainConfig

BUNDLED_BOOK = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
# Exact resume is bit-exact under a fixed thread count; ``--threads auto`` moves the count with the
# machine's load, and a kernel may add in another order on another count (charrnn/threads.py).
# Tests that compare weights across runs pin it.
PINNED_THREADS = 1


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory) -> Iterator[Path]:
    """Compiled generation steps go to a cache of the session's own (never ~/.cache), shared by
    every test and every CLI process the tests start, so that each model shape is built once."""
    path = tmp_path_factory.mktemp("compile-cache")
    before = os.environ.get("CHARRNN_CACHE")
    os.environ["CHARRNN_CACHE"] = str(path)
    yield path
    if before is None:
        del os.environ["CHARRNN_CACHE"]
    else:
        os.environ["CHARRNN_CACHE"] = before


@pytest.fixture(autouse=True)
def torch_threads() -> Iterator[None]:
    """Put torch's thread count back after each test: ``--threads auto`` moves it for the whole
    process, and a later test's step would otherwise split its multiplies differently."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def book_slice(tmp_path: Path) -> Path:
    """The first 6,000 characters of the bundled book, as a file of its own."""
    path = tmp_path / "slice.txt"
    path.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    return path


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(hidden_size=32, num_layers=2, dropout=0.1)


@pytest.fixture
def tiny_train() -> TrainConfig:
    # The rate is pinned (not the defaults, which are tuned for full-size runs) so that these
    # tests keep meaning the same thing when the defaults are re-tuned.
    return TrainConfig(
        batch_size=4,
        seq_len=16,
        max_steps=12,
        eval_every=4,
        save_every=4,
        seed=7,
        lr=2e-3,
        lr_schedule="constant",
        warmup_steps=0,
    )


def step_notes(notes: list[str]) -> list[str]:
    """The notes a runtime gave about its step, without ``--threads auto``'s (which follow the
    machine's load, not the test)."""
    return [note for note in notes if not note.startswith("threads: ")]


def quiet(message: str) -> None:
    """A log function that drops messages (keeps test output readable)."""


def invoke(*args) -> Result:
    """Run `charrnn ARGS...` in-process, as a user would type it (every argument as a string)."""
    from charrnn.commands.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m charrnn ARGS...` as a separate process."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], capture_output=True, text=True, **kwargs)


def start_cli(*args, **kwargs) -> subprocess.Popen:
    """Start `python -m charrnn ARGS...` as a separate process (stdout and stderr piped, as text)."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], text=True, **streams)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_process(
    checkpoint: Path | None, *options, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`charrnn serve CHECKPOINT OPTIONS` started on a free port (not yet ready); its URL and process.
    Its output goes to a file (a pipe nobody reads would fill with access log lines and stop the
    server); once stopped (SIGTERM, as a service manager does), ``process.log`` holds it. A server
    that has not exited 30 s after SIGTERM fails the test, with its output."""
    import tempfile

    port = port or free_port()
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed below)
    arguments = ["serve"] + ([checkpoint] if checkpoint is not None else [])
    process = start_cli(*arguments, "--port", port, *options, stdout=log, stderr=subprocess.STDOUT,
                        env={**os.environ, **(env or {})})  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            log.seek(0)
            pytest.fail(f"charrnn serve was still running 30 s after SIGTERM; its output:\n{log.read()}")
        finally:
            log.seek(0)
            process.log = log.read()
            log.close()


@contextlib.contextmanager
def running_server(
    checkpoint: Path | None,
    *options,
    patience: float = 60,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``serve_process``, once its /health says ready (within ``patience`` seconds: a server that
    builds a compiled step first needs minutes)."""
    import httpx

    with serve_process(checkpoint, *options, env=env, port=port) as (url, process):
        deadline = time.monotonic() + patience
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    yield url, process
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"charrnn serve did not answer within {patience:g} s:\n{process.log}")


# Options of a tiny, fast model for the CLI.
QUIET_CPU = ["--no-sample", "--no-progress", "--device", "cpu"]
TINY = ["--hidden-size", "32", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--device", "cpu"]


@dataclass(frozen=True)
class TrainedRun:
    dir: Path  # best.pt, last.pt, metrics.csv, config.toml
    text: Path

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TrainedRun:
    """A small model trained for 8 steps on a slice of the bundled book. Shared by the whole
    session: tests only read it (a test that resumes writes to a directory of its own)."""
    root = tmp_path_factory.mktemp("tiny_run")
    text = root / "slice.txt"
    text.write_text(BUNDLED_BOOK.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    options = ["--max-steps", 8, "--eval-every", 4, "--threads", PINNED_THREADS]  # pinned: tests repeat it exactly
    result = invoke("train", text, "--out", root / "run", *options, *TINY)
    assert result.exit_code == 0, result.output
    return TrainedRun(root / "run", text)


@pytest.fixture
def own_run(tiny_run, tmp_path) -> TrainedRun:
    """A copy of ``tiny_run`` that a test may resume, change or damage."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.dir, copy)
    return TrainedRun(copy, tiny_run.text)


# --- one tiny run per cell and input path (tests/commands/test_matrix.py) ---------------------

MATRIX_CELLS = ("lstm", "gru", "rnn")
MATRIX_PATHS = ("one-hot", "lookup")
# Every cell with the full head, and the LSTM with the adaptive one too (the head does not depend on the cell).
MATRIX_CASES = [(cell, path, "full") for cell in MATRIX_CELLS for path in MATRIX_PATHS] + [
    ("lstm", path, "adaptive") for path in MATRIX_PATHS
]
LOOKUP_ALPHABET = 600  # above the 512 characters where models switch to the lookup input path


@dataclass(frozen=True)
class TinyRun:
    cell: str
    path: str  # "one-hot" or "lookup"
    head: str  # "full" or "adaptive"
    text: Path  # the training text
    checkpoint: Path  # best.pt
    last: Path  # last.pt
    vocab: frozenset[str]  # the characters generated text may contain
    prime: str  # two characters of the text


def synthetic_text(alphabet_size: int, length: int, seed: int) -> str:
    """A text over ``alphabet_size`` distinct CJK characters (all of them present), with lines."""
    rng = random.Random(seed)
    alphabet = [chr(0x4E00 + i) for i in range(alphabet_size)]
    common = alphabet[:40]  # a skewed distribution, as real text has
    body = [rng.choice(common) if rng.random() < 0.8 else rng.choice(alphabet) for _ in range(length)]
    text = "".join(alphabet) + "".join(c if i % 24 else "\n" for i, c in enumerate(body, start=1))
    return text


@pytest.fixture(scope="session")
def matrix_runs(tmp_path_factory) -> dict[tuple[str, str, str], TinyRun]:
    """Tiny trained runs: every cell, on a small alphabet and on one above the lookup threshold; and
    the LSTM with an adaptive head on both."""
    root = tmp_path_factory.mktemp("matrix")
    texts = {
        "one-hot": BUNDLED_BOOK.read_text(encoding="utf-8")[:4000],
        "lookup": synthetic_text(LOOKUP_ALPHABET, 3400, seed=3),
    }
    for path, text in texts.items():
        (root / f"{path}.txt").write_text(text, encoding="utf-8")
    runs = {}
    for cell, path, head in MATRIX_CASES:
        text, text_file, out = texts[path], root / f"{path}.txt", root / f"{cell}-{path}-{head}"
        options = ["--hidden-size", 8, "--batch-size", 2, "--seq-len", 8, "--max-steps", 2, "--eval-every", 2]
        result = invoke("train", text_file, "--out", out, "--cell", cell, "--head", head, *options, *QUIET_CPU)
        assert result.exit_code == 0, result.output
        runs[cell, path, head] = TinyRun(
            cell=cell,
            path=path,
            head=head,
            text=text_file,
            checkpoint=out / "best.pt",
            last=out / "last.pt",
            vocab=frozenset(text),
            prime=text[:2],
        )
    return runs
