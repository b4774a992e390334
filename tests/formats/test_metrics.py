"""metrics.csv (charrnn/formats/metrics.py): a row per validation, appended across resumes."""

import csv
import dataclasses

from charrnn.formats.metrics import METRICS_FILE
from charrnn.training.loop import fit
from charrnn.training.policy import resume_run, start_run
from tests.conftest import quiet


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
    ]
    assert int(rows[1]["chars_seen"]) == 6 * config.batch_size * config.seq_len
    assert float(rows[1]["chars_per_second"]) > 0 and float(rows[1]["elapsed_seconds"]) > float(
        rows[0]["elapsed_seconds"]
    )
    resumed = resume_run(out / "last.pt", overrides={"max_steps": 9}, device="cpu", log=quiet)
    fit(resumed, log=quiet, progress_bar=False)
    assert (out / METRICS_FILE).read_bytes().startswith(first)  # appended, never rewritten
    assert [row["step"] for row in read_csv(out / METRICS_FILE)] == ["3", "6", "9"]
