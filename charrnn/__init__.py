"""charrnn: a character-level LSTM text generator. Train on a book, generate in its voice."""

__version__ = "0.1.0"

from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.errors import CharRNNError  # noqa: E402
from charrnn.train import TrainResult, resume, train  # noqa: E402

__all__ = ["CharRNNError", "ModelConfig", "TrainConfig", "TrainResult", "resume", "train", "__version__"]
