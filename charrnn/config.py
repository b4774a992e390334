"""Every default charrnn uses lives here, once.

The CLI reads these defaults for its option help, the library takes these dataclasses as
arguments, and checkpoints store them as plain dicts (``dataclasses.asdict``) so that they load
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: fixed for the life of a run (a resume cannot change it).

    The vocabulary size V is not here: it is read off the vocabulary stored beside the config.
    """

    hidden_size: int = 256  # H: units per layer
    num_layers: int = 2  # L: stacked LSTM layers
    dropout: float = 0.2  # dropout on the output of every recurrent layer (training only)
    cell: str = "lstm"  # the recurrent cell: "lstm", "gru" or "rnn" (tanh)


# The defaults of ModelConfig and TrainConfig were chosen by measurement (README "Results"): the
# best validation loss after 10 minutes of training on a 2-core CPU, tinyshakespeare.


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. Data layout fields are fixed by a run; the rest may change on resume."""

    # --- data layout: fixed for the life of a run -------------------------------------------
    # B: contiguous streams the text is split into. A new run under torchrun gives this many to
    # each process; checkpoints record the run's total (processes x B).
    batch_size: int = 16
    seq_len: int = 100  # T: characters per window (steps of truncated BPTT)
    val_frac: float = 0.1  # tail fraction of the text held out for validation
    seed: int = 1234  # seeds weight init and dropout
    decode_errors: str = "strict"  # bytes that are not UTF-8: "strict" refuses, "replace" -> U+FFFD
    # --- optimisation and schedule: may change on resume ------------------------------------
    lr: float = 3e-3  # Adam learning rate (the peak, after warm-up)
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping
    max_steps: int | None = None  # stop after this many steps since the run began
    max_epochs: int | None = 16  # stop after this many passes over the training split
    # Stop when training time (summed over resumes) would pass this many minutes, the final
    # validation and checkpoint included.
    time_limit: float | None = None
    lr_schedule: str = "cosine"  # "cosine" or "linear" decay to min_lr_ratio · lr, or "constant"
    warmup_steps: int = 100  # steps of linear warm-up before a decaying schedule (ends by a quarter of the run)
    min_lr_ratio: float = 0.1  # the decay's floor, as a fraction of lr
    patience: int | None = None  # stop after this many validations in a row without a new best
    eval_every: int = 400  # steps between validations over the whole val split
    save_every: int = 400  # steps between writes of last.pt
    # Steps between the short samples printed while training (and one at the end), so that the
    # text can be seen improving; None: at every validation (eval_every); 0: never.
    sample_every: int | None = None
    sample_length: int = 200  # characters in each of those samples
    # "auto": bf16 autocast on a CUDA GPU (fp16 on GPUs without bf16), fp32 elsewhere.
    precision: str = "auto"


@dataclass(frozen=True)
class SampleConfig:
    """Defaults of ``charrnn generate``."""

    prime: str = ""  # text the sample continues; empty starts from the zero state
    length: int = 500  # characters to generate after the prime
    temperature: float = 0.8  # < 1 sharper and safer, > 1 more surprising
    top_k: int | None = None  # sample only among the k most likely characters
    top_p: float | None = None  # sample only among the most likely characters whose mass reaches p
    greedy: bool = False  # always take the most likely character
    num_samples: int = 1  # samples drawn side by side as one batch
    on_unknown: str = "error"  # prime characters outside the vocabulary: "error" or "skip" them


# Fields a resume keeps from the checkpoint: changing them would make the saved optimizer state,
# data position or hidden state meaningless.
FIXED_ON_RESUME = ("cell", "hidden_size", "num_layers", "dropout", "batch_size", "seq_len", "val_frac", "seed")


def default_of(config_cls: type, name: str) -> Any:
    """The default value of field ``name`` of a config dataclass (used by the CLI's help)."""
    for field in dataclasses.fields(config_cls):
        if field.name == name:
            return field.default
    raise KeyError(f"{config_cls.__name__} has no field {name!r}")
