"""charrnn: a character-level LSTM text generator. Train on a book, generate in its voice.

import charrnn
charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/book")
model = charrnn.load("runs/book/best.pt")
print(model.generate("Once upon a time", 300, temperature=0.8, seed=1))
"""

import importlib
from typing import Any

from charrnn.version import __version__

# What ``import charrnn`` offers, by the module that defines it. Imported when first used: the
# `charrnn` command starts without torch, so a Ctrl-C in its first seconds is caught (__main__.py).
_EXPORTS = {
    "CharModel": "charrnn.api",
    "load": "charrnn.api",
    "describe": "charrnn.runs",
    "finetune": "charrnn.runs",
    "train": "charrnn.runs",
    "ModelConfig": "charrnn.config",
    "SampleConfig": "charrnn.config",
    "TrainConfig": "charrnn.config",
    "CharRNNError": "charrnn.errors",
    "Checkpoint": "charrnn.formats.checkpoint",
    "Evaluation": "charrnn.generation.evaluate",
    "TrainResult": "charrnn.training.loop",
    "fit": "charrnn.training.loop",
    "finetune_run": "charrnn.training.policy",
    "resume_run": "charrnn.training.policy",
    "start_run": "charrnn.training.policy",
    "TrainingRun": "charrnn.training.run",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:  # a submodule (charrnn.bundled, ...) not imported yet
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'charrnn' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "CharModel",
    "CharRNNError",
    "Checkpoint",
    "Evaluation",
    "ModelConfig",
    "SampleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingRun",
    "__version__",
    "describe",
    "finetune",
    "finetune_run",
    "fit",
    "load",
    "resume_run",
    "start_run",
    "train",
]
