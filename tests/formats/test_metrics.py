"""metrics.csv (charrnn/formats/metrics.py): a row per validation, appended across resumes."""

import csv
import dataclasses
import os

from charrnn.formats.metrics import METRICS_FILE, append_row, read_rows
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import PINNED_THREADS, quiet


def read_csv(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_metrics_csv_gets_a_row_per_validation_and_is_appended_on_resume(book_slice, tmp_path, tiny_model, tiny_train):
    out = tmp_path / "run"
    config = dataclasses.replace(tiny_train, max_steps=6, eval_every=3, save_every=3)
    fit(start_run(book_slice, tiny_model, config, out_dir=out, device="cpu", log=quiet), log=quiet, progress_bar=False)
    first = (out / METRICS_FILE).read_bytes()
    rows = read_csv(out / METRICS_FILE)
    assert [row["step"] for row in rows] == ["3", "6"]
    assert list(rows[0]) == [
        "step",
        "elapsed_seconds",
        "chars_seen",
        "train_loss",
        "val_loss",
        "lr",
        "chars_per_second",
        "threads",
    ]
    assert all(1 <= int(row["threads"]) <= os.cpu_count() for row in rows)  # the count the steps ran on
    assert int(rows[1]["chars_seen"]) == 6 * config.batch_size * config.seq_len
    assert float(rows[1]["chars_per_second"]) > 0 and float(rows[1]["elapsed_seconds"]) > float(
        rows[0]["elapsed_seconds"]
    )
    resumed = resume_run(out / "last.pt", overrides={"max_steps": 9}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False, threads=PINNED_THREADS)
    assert (out / METRICS_FILE).read_bytes().startswith(first)  # appended, never rewritten
    assert [row["step"] for row in read_csv(out / METRICS_FILE)] == ["3", "6", "9"]


def test_a_file_from_before_the_threads_column_keeps_its_columns_on_resume(tmp_path):
    old = "step,elapsed_seconds,chars_seen,train_loss,val_loss,lr,chars_per_second\n3,1.5,96,4.1,4.0,0.002,64\n"
    (tmp_path / METRICS_FILE).write_text(old, encoding="utf-8")
    append_row(tmp_path, {"step": 6, "elapsed_seconds": 3.0, "chars_seen": 192, "threads": 2})
    rows = read_csv(tmp_path / METRICS_FILE)
    assert [row["step"] for row in rows] == ["3", "6"] and "threads" not in rows[1]
    assert [row["threads"] for row in read_rows(tmp_path)] == [None, None]
