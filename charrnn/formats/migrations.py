"""Checkpoint migrations: each turns a file's dict of format N into format N + 1, so that
``Checkpoint.load`` reads every format charrnn ever wrote (charrnn/formats/checkpoint.py)."""

from __future__ import annotations

from typing import Any

import torch


def _from_format_1(raw: dict[str, Any]) -> dict[str, Any]:
    """charrnn 0.1.0 (and the releases before --cell) -> format 2.

    The text's path and length move into ``corpus``; the recurrent module's weights, called
    ``lstm.*`` before --cell existed, are ``rnn.*``; a config without a cell is an LSTM's; a
    single RNG tensor (before one state was kept per process) becomes a list of one.
    """
    raw = dict(raw)
    if "text_path" in raw and "text_chars" in raw:
        raw["corpus"] = {"path": raw.pop("text_path"), "chars": raw.pop("text_chars")}
    if isinstance(raw.get("model_state"), dict):
        raw["model_state"] = {
            ("rnn." + name[len("lstm.") :] if name.startswith("lstm.") else name): tensor
            for name, tensor in raw["model_state"].items()
        }
    if isinstance(raw.get("model_config"), dict):
        raw["model_config"] = {"cell": "lstm", **raw["model_config"]}
    rng = raw.get("rng")
    if isinstance(rng, dict):
        raw["rng"] = {
            **rng,
            **{key: [rng[key]] for key in ("torch", "cuda") if isinstance(rng.get(key), torch.Tensor)},
        }
    return raw


MIGRATIONS = {1: _from_format_1}  # format N -> the function that makes it format N + 1
