"""`charrnn plot`: a real image of a run's curves, and clear messages when it cannot draw one."""

import sys

import numpy as np
import pytest

from charrnn.commands.plot import TRAIN_COLOR, VAL_COLOR
from charrnn.formats.metrics import append_row
from tests.conftest import invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir, rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    for step, train_loss, val_loss in rows:
        append_row(
            run_dir,
            {
                "step": step,
                "elapsed_seconds": 10.0 * step,
                "chars_seen": 3200 * step,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": 2e-3,
                "chars_per_second": 320.0,
            },
        )


def pixels_of(image: np.ndarray, color: str) -> int:
    """How many pixels of ``image`` (H, W, 3 or 4 floats) are ``color`` (#rrggbb), give or take antialiasing."""
    target = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - target).max(axis=-1) < 0.05).sum())


@pytest.mark.slow
def test_plot_writes_a_png_of_both_curves(tmp_path):
    import matplotlib.image as image_module  # the [plot] extra: the README's test command installs it

    run = tmp_path / "run"
    write_metrics(run, [(100, 3.0, 2.9), (200, 2.2, 2.3), (300, 1.8, 2.0), (400, 1.6, 1.9)])
    result = invoke("plot", run)
    assert result.exit_code == 0, result.output
    png = run / "loss.png"
    assert result.output.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = image_module.imread(png)  # decodes the file: a truncated or fake PNG fails here
    height, width = image.shape[:2]
    assert width > 600 and height > 300
    train_pixels, val_pixels = pixels_of(image, TRAIN_COLOR), pixels_of(image, VAL_COLOR)
    assert train_pixels > 500 and val_pixels > 500  # both curves (two panels each) are drawn

    # A run with no validation loss yet draws the training curve alone.
    write_metrics(tmp_path / "no_val", [(100, 3.0, None), (200, 2.5, None)])
    (tmp_path / "no_val" / "last.pt").write_bytes(b"")  # a checkpoint names its run directory
    alone = invoke("plot", tmp_path / "no_val" / "last.pt", "--out", tmp_path / "alone.png")
    assert alone.exit_code == 0, alone.output
    image = image_module.imread(tmp_path / "alone.png")
    assert pixels_of(image, TRAIN_COLOR) > 500 and pixels_of(image, VAL_COLOR) == 0


def test_plot_redraws_its_own_file_but_never_overwrites_a_given_one(tmp_path):
    run = tmp_path / "run"
    write_metrics(run, [(100, 3.0, 2.9), (200, 2.2, 2.3)])
    assert invoke("plot", run).exit_code == 0
    first = (run / "loss.png").read_bytes()
    write_metrics(run, [(300, 1.8, 2.0)])
    assert invoke("plot", run).exit_code == 0
    assert (run / "loss.png").read_bytes() != first  # redrawn with the new row

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"not yours")
    refused = invoke("plot", run, "--out", mine)
    assert refused.exit_code == 1 and "already exists" in refused.output
    assert mine.read_bytes() == b"not yours"


def test_without_matplotlib_plot_says_how_to_install_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_metrics(run, [(100, 3.0, 2.9)])
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = invoke("plot", run)
    assert result.exit_code == 1
    assert result.output.strip() == 'Error: charrnn plot needs matplotlib: install it with  pip install "charrnn[plot]"'
    assert not (run / "loss.png").exists()


def test_plot_explains_a_missing_or_foreign_metrics_file(tmp_path):
    (tmp_path / "empty_run").mkdir()
    missing = invoke("plot", tmp_path / "empty_run")
    assert missing.exit_code == 1 and "metrics.csv does not exist" in missing.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metrics.csv").write_text("a,b\n1,2\n")
    result = invoke("plot", foreign)
    assert result.exit_code == 1 and "not a charrnn metrics file" in result.output
