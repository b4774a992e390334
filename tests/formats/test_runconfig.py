"""config.toml (charrnn/formats/runconfig.py): what a run writes is what --config reads back."""

import dataclasses
from pathlib import Path

import pytest

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.formats.runconfig import read_run_config, write_run_config


def test_every_value_round_trips_exactly(tmp_path):
    text = Path('/books/"quoted" \\ back\\slash, café ☃.txt')
    model = ModelConfig(hidden_size=7, cell="gru", dropout=0.125)
    train = TrainConfig(lr=1 / 3, time_limit=2.5, max_epochs=None, patience=4, decode_errors="replace")
    path = write_run_config(tmp_path, [str(text)], model, train)
    values = read_run_config(path)
    assert values.pop("text") == str(text)
    expected = {**dataclasses.asdict(model), **dataclasses.asdict(train)}
    assert values == {name: value for name, value in expected.items() if value is not None}
    assert "# max_epochs: not set" in path.read_text(encoding="utf-8")  # TOML has no null


def test_a_file_that_is_not_flat_toml_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = \n")
    with pytest.raises(CharRNNError, match="broken.toml is not valid TOML"):
        read_run_config(broken)
    nested = tmp_path / "nested.toml"
    nested.write_text("[train]\nlr = 0.1\n")
    with pytest.raises(CharRNNError, match=r"has a table \[train\]"):
        read_run_config(nested)
    with pytest.raises(CharRNNError, match="cannot read"):
        read_run_config(tmp_path / "missing.toml")
