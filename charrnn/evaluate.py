"""Loss of a model over a whole split, the way validation and evaluation both measure it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.data import StreamBatches
from charrnn.model import CharLSTM


@torch.inference_mode()
def mean_loss(model: CharLSTM, batches: StreamBatches) -> float:
    """Mean cross-entropy in nats per character over every window of ``batches``.

    The state is carried from window to window, as in training, so each character is scored
    with all of its stream's preceding text as context. Dropout is off while scoring.
    """
    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batches.batch_size)
        total = 0.0  # a Python float: exact enough, and MPS has no float64 tensors
        for index in range(batches.num_windows):
            x, y = batches.window(index)  # (B, T) each
            logits, state = model(x, state)  # (B·T, V)
            total += F.cross_entropy(logits, y.reshape(-1), reduction="sum").item()  # y: (B·T,)
    finally:
        model.train(was_training)
    return total / batches.num_chars
