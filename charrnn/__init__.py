"""charrnn: a character-level LSTM text generator. Train on a book, generate in its voice."""

__version__ = "0.1.0"

from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.errors import CharRNNError  # noqa: E402
from charrnn.train import TrainingRun, TrainResult, fit, resume_run, start_run  # noqa: E402

__all__ = [
    "CharRNNError", "ModelConfig", "TrainConfig", "TrainingRun", "TrainResult",
    "fit", "resume_run", "start_run", "__version__",
]
