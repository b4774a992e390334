"""charrnn: a character-level LSTM text generator. Train on a book, generate in its voice.

    import charrnn
    charrnn.train("book.txt", hidden_size=128, max_steps=500, out_dir="runs/book")
    model = charrnn.load("runs/book/best.pt")
    print(model.generate("Once upon a time", 300, temperature=0.8, seed=1))
"""

__version__ = "0.1.0"

from charrnn.api import CharModel, describe, load, train  # noqa: E402
from charrnn.config import ModelConfig, SampleConfig, TrainConfig  # noqa: E402
from charrnn.errors import CharRNNError  # noqa: E402
from charrnn.evaluate import Evaluation  # noqa: E402
from charrnn.trainer import TrainingRun, TrainResult, fit, resume_run, start_run  # noqa: E402

__all__ = [
    "CharModel", "CharRNNError", "Evaluation", "ModelConfig", "SampleConfig", "TrainConfig",
    "TrainingRun", "TrainResult", "describe", "fit", "load", "resume_run", "start_run", "train",
    "__version__",
]  # fmt: skip
