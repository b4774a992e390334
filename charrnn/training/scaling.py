"""The measured rule behind the plan: predicted loss from model size and characters seen, and
the regularisation that a number of passes over a text needs.

The numbers come from runs on this project's 2-core CPU (docs/results.md, "The plan"), fitted by
experiments/fit_plan.py; change them only with new runs and the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN, count_parameters
from charrnn.training.speeds import Shape


@dataclass(frozen=True)
class LossFit:
    """loss - E(text) ≈ a / N_eff^alpha + b / D_eff^beta: N recurrent parameters, D characters seen,
    both discounted past what U characters of text can feed (``effective``)."""

    a: float
    alpha: float
    b: float
    beta: float
    repeat_scale: float  # R_D: passes beyond the first are worth less and less, on this scale
    chars_per_parameter: float  # U characters feed about U / this parameters at full value
    excess_scale: float  # R_N: parameters beyond those are worth less and less, on this scale

    def effective_chars(self, seen: float, unique: float) -> float:
        return effective(seen, unique, self.repeat_scale)

    def effective_parameters(self, parameters: float, unique: float) -> float:
        return effective(parameters, unique / self.chars_per_parameter, self.excess_scale)

    def excess(self, parameters: float, seen: float, unique: float) -> float:
        """Predicted loss above the text's own floor, in nats per character."""
        n_eff = self.effective_parameters(parameters, unique)
        return self.a / n_eff**self.alpha + self.b / self.effective_chars(seen, unique) ** self.beta


def effective(amount: float, useful: float, scale: float) -> float:
    """``amount`` counted in full up to ``useful``, and beyond it with returns that fade on ``scale``
    (Muennighoff et al., 2023): at most ``useful`` x (1 + scale)."""
    if amount <= useful:
        return amount
    return useful * (1 + scale * (1 - math.exp(-(amount / useful - 1) / scale)))


# From experiments/fit_plan.py over the runs of docs/results.md ("The plan").
LOSS_FIT = LossFit(
    a=4.206, alpha=0.09218, b=1536, beta=0.5881, repeat_scale=17.92, chars_per_parameter=0.1685, excess_scale=0.1
)

# (passes below, dropout, weight drop): measured on tinyshakespeare and War and Peace
# (docs/results.md): under ~12 passes plain dropout 0.2 wins (weight drop slows the start);
# around 20-35 passes weight drop 0.3 with dropout 0.25 is 0.035 better; at 40-55 both at 0.3
# (on 100 KB, 2 x 256); at ~120 passes both at 0.3 overfit from pass 36 while both at 0.45 kept
# improving to pass 115, 0.015 lower.
REGULARISATION = ((12, 0.2, 0.0), (40, 0.25, 0.3), (80, 0.3, 0.3), (math.inf, 0.45, 0.45))


def recurrent_parameters(shape: Shape) -> int:
    """N of the fit: the LSTM's hidden-to-hidden and between-layer weights and biases; the
    first layer's input columns and the head grow with the alphabet, not with what is learnt."""
    h, layers = shape.hidden_size, shape.num_layers
    return 4 * h * h * (2 * layers - 1) + 8 * h * layers


def count_parameters_of(shape: Shape, cell: str, head: str, vocab_size: int) -> int:
    """Every trainable scalar of that model, counted on a model built without memory (meta tensors)."""
    config = ModelConfig(hidden_size=shape.hidden_size, num_layers=shape.num_layers, cell=cell, head=head)
    with torch.device("meta"):
        return count_parameters(CharRNN(vocab_size, config))


def regularisation(passes: float) -> tuple[float, float]:
    """(dropout, weight drop) for a run that makes ``passes`` passes over its text."""
    for below, dropout, weight_drop in REGULARISATION:
        if passes < below:
            return dropout, weight_drop
    raise AssertionError("the last row of REGULARISATION has no upper bound")
