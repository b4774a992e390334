"""config.toml: a run's resolved options, written into its directory and read back by --config.

    # charrnn 0.5.0: the options this run resolved to. Repeat it with
    #   charrnn train --config checkpoints/tinyshakespeare/config.toml --out NEW_DIR
    text = "/home/me/corpora/tinyshakespeare.txt"      (a list when the run read several sources)
    hidden_size = 256
    ...

Flat ``name = value`` lines, named as the Python API names options (``hidden_size``, not
``--hidden-size``). An option whose value is "not set" (``time_limit`` without a limit) is written
as a comment, since TOML has no null. Reading is Python's own ``tomllib``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

RUN_CONFIG_FILE = "config.toml"


def write_run_config(
    out_dir: Path,
    sources: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    base: str | None = None,
    plan: dict | None = None,
) -> Path:
    """Write ``out_dir/config.toml`` (replacing the one an earlier session of the run wrote).
    ``base``: the checkpoint a fine-tune started from (its file says how to repeat that instead)."""
    path = out_dir / RUN_CONFIG_FILE
    if base is None:
        how = [f"# charrnn {__version__}: the options this run resolved to. Repeat it with"]
        how.append(f"#   charrnn train --config {shlex.quote(str(path))} --out NEW_DIR")
    else:  # finetune takes no --config: `train --config` would train from scratch
        how = [f"# charrnn {__version__}: the options of a fine-tune of {base}."]
        how.append(f"# Repeat it with  charrnn finetune {shlex.quote(base)} TEXT --out NEW_DIR  and these as flags.")
    if plan:  # what the plan chose is in the values below, so a repeat keeps the same model
        how.append(f"# {plan['line']}")
    lines = [
        *how,
        f"text = {_toml_value(_absolute(sources[0]) if len(sources) == 1 else [_absolute(s) for s in sources])}",
    ]
    for config in (model_config, train_config):
        for name, value in dataclasses.asdict(config).items():
            lines.append(f"# {name}: not set" if value is None else f"{name} = {_toml_value(value)}")
    try:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CharRNNError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _absolute(source: str) -> str:
    """A source as a path that works from any directory (a glob pattern stays a pattern)."""
    return os.path.abspath(source)


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``name = value`` pairs of a TOML file, as a flat dict; one clear error if it is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CharRNNError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CharRNNError(
            f"{path} is not UTF-8 text (byte offset {exc.start}): save it as UTF-8, as TOML asks"
        ) from None
    tables = [name for name, value in values.items() if isinstance(value, dict)]
    if tables:
        raise CharRNNError(f"{path} has a table [{tables[0]}]: write options as plain `name = value` lines")
    return values
