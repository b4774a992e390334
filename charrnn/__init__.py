"""charrnn: a character-level LSTM text generator. Train on a book, generate in its voice.

import charrnn
charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/book")
model = charrnn.load("runs/book/best.pt")
print(model.generate("Once upon a time", 300, temperature=0.8, seed=1))
"""

from charrnn.api import CharModel, load
from charrnn.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint
from charrnn.generation.evaluate import Evaluation
from charrnn.runs import describe, finetune, train
from charrnn.training.loop import TrainResult, fit
from charrnn.training.policy import finetune_run, resume_run, start_run
from charrnn.training.run import TrainingRun
from charrnn.version import __version__

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
