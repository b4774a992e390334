"""The measured rule behind the plan: how wide a model a budget and a text call for, and the
regularisation a number of passes over a text needs.

The numbers come from step-driven runs on this project's 2-core CPU (docs/results.md, "The plan",
where a fitted scaling law is also compared with them); change them only with new runs.
"""

from __future__ import annotations

import math

import torch

from charrnn.config import ModelConfig
from charrnn.core.model import CharRNN, count_parameters
from charrnn.training.speeds import Shape

# The width rule, from the step-driven runs of docs/results.md ("The plan"): a wider model wins
# once it makes enough steps, and a wider one needs more (on Shakespeare 2 x 384 beat 2 x 256 at
# 4,350 steps against 7,100, and lost at 1,300 against 2,130 and at 2,700 against 5,000): at least
# STEPS_PER_UNIT steps per hidden unit (between 7.0, which 2 x 384's 2,700 losing steps reach, and
# 8.0, which 2 x 256's 2,039 in three minutes of War and Peace must reach). On a small text passes
# count instead (on 100 KB, 2 x 256 at 2,130 steps, 38 passes, beat 2 x 128 at 4,900).
STEPS_PER_UNIT = 7.5
ENOUGH_PASSES = 30

# And the text must feed it, counted in recurrent parameters per training character. Up to
# LOOSE_BOUND_WIDTH, PARAMS_PER_CHAR (on 100 KB 2 x 256, 8.8 a character, beat 2 x 128, 2.2, and
# 2 x 384, 19.7, at every budget tried); a wider shape needs WIDER_PARAMS_PER_CHAR, a bound set in
# the narrow gap between the shapes that were fed (at most 1.8) and those that were not (2.5 up). Fed: 2 x 384 on
# Shakespeare (1.8) still improving at its 20th pass; 2 x 512 on War and Peace (1.1). Not fed: on
# Shakespeare 2 x 512 (3.1) stopped improving at its 12th pass and ended behind 2 x 384 in the same
# 30 minutes, 2 x 768 (7.1) overfit after its fourth; on War and Peace 2 x 768 (2.5) all but
# stopped improving after its third and ended its hour 0.019 behind 30 minutes of 2 x 512.
LOOSE_BOUND_WIDTH = 256
PARAMS_PER_CHAR = 10.0
WIDER_PARAMS_PER_CHAR = 2.0

# (passes below, dropout, weight drop): measured on tinyshakespeare and War and Peace
# (docs/results.md): under ~12 passes plain dropout 0.2 wins (weight drop slows the start);
# around 20-35 passes weight drop 0.3 with dropout 0.25 is 0.035 better; at 40-55 both at 0.3
# (on 100 KB, 2 x 256); at ~120 passes both at 0.3 overfit from pass 36 while both at 0.45 kept
# improving to pass 115, 0.015 lower.
REGULARISATION = ((12, 0.2, 0.0), (40, 0.25, 0.3), (80, 0.3, 0.3), (math.inf, 0.45, 0.45))

# The learning rate, from the step-driven runs of docs/results.md ("The plan"). A short run learns
# much faster at twice the long runs' rate: at 2,130 steps of 2 x 256, 6e-3 against 3e-3 gave
# 1.5295 against 1.6167 on Shakespeare and 1.4530 against 1.6601 on War and Peace; the gain
# shrinks as runs lengthen (at 5,000 steps 8e-3 was 0.026 better, at 7,600 it gave nothing). A
# wider model takes a smaller rate: 2 x 384 at 6e-3 stalled on War and Peace (2.07 at step 250,
# then 2.28 at step 1,000), so the short rate falls with the width (SHORT_RATE_WIDTH units get it
# whole) down to the long rate, 3e-3, which every run of the plan's grid used (2 x 128 to 2 x 512).
SHORT_RUN_STEPS = 5000
SHORT_RATE, LONG_RATE = 6e-3, 3e-3
SHORT_RATE_WIDTH = 256


def learning_rate(steps: float, hidden_size: int) -> float:
    """Adam's peak learning rate for a run of ``steps`` optimizer steps of a model ``hidden_size`` wide."""
    if steps >= SHORT_RUN_STEPS:
        return LONG_RATE
    return max(LONG_RATE, min(SHORT_RATE, SHORT_RATE * SHORT_RATE_WIDTH / hidden_size))


def recurrent_parameters(shape: Shape) -> int:
    """N of the fit: the LSTM's hidden-to-hidden and between-layer weights and biases; the
    first layer's input columns and the head grow with the alphabet, not with what is learnt."""
    h, layers = shape.hidden_size, shape.num_layers
    return 4 * h * h * (2 * layers - 1) + 8 * h * layers


def text_feeds(shape: Shape, train_chars: int) -> bool:
    """Whether a text of ``train_chars`` training characters can feed a model of ``shape``."""
    per_char = PARAMS_PER_CHAR if shape.hidden_size <= LOOSE_BOUND_WIDTH else WIDER_PARAMS_PER_CHAR
    return recurrent_parameters(shape) <= per_char * train_chars


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
