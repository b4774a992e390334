"""Every option charrnn has, declared once: name, type, default, help, allowed values, commands.

The CLI's options, the Python API's keyword arguments and docs/options.md are all produced from
these declarations (see ``charrnn.options``). Checkpoints store ModelConfig and TrainConfig as
plain dicts (``dataclasses.asdict``), so that they load with ``torch.load(weights_only=True)``.

The defaults of ModelConfig and TrainConfig were chosen by measurement (docs/results.md): the
best validation loss after 10 minutes of training on a 2-core CPU, tinyshakespeare.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.encodings import text_codec
from charrnn.options import option
from charrnn.threads import parse_threads

TRAIN = ("train", "finetune")  # a fine-tuning run takes every run option a new one does
READING = ("train", "finetune", "evaluate", "score")  # the commands that read a corpus
SAMPLING = ("generate", "chat")  # the options both take
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
CELL_NAMES = ("lstm", "gru", "rnn")  # the keys of charrnn.core.cells.CELLS (tests check they agree)
HEAD_NAMES = ("full", "adaptive")  # charrnn.core.heads.HEADS (tests check they agree)
MAX_SEED = 2**63 - 1  # what torch.manual_seed takes
MAX_SAMPLE_SEED = 2**64 - 1  # what torch.Generator.manual_seed takes; sample i uses seed + i
DEFAULT_ITEMS = 20  # items `charrnn generate` prints for a --line-items model
MAX_SAMPLES = 10_000  # samples one generate draws as a batch (each a row of every state tensor)
PLAN_MODES = ("auto", "off")
PLANNED = "planned by train"  # how the default of an option the plan chooses reads (then: "; 256 otherwise")
PLAN_256 = f"{PLANNED}; 256 otherwise"
PLAN_3E3 = f"{PLANNED}; 3e-3 otherwise"
NEWLINES = ("normalize", "keep")  # charrnn.core.data.NEWLINES (tests check they agree)
# An unplanned run (--plan off) given neither --max-epochs nor --time-limit stops after this many
# passes, as charrnn 0.5 did; a planned one given no budget gets steps from its plan.
DEFAULT_EPOCHS = 16

# `charrnn finetune` starts from trained weights with a fresh Adam: a short warm-up, since only the
# optimizer's moments start from zero. The peak rate stays train's: lower ones (1e-3, 2e-3) were
# measured and lost on War and Peace, whole and in 100 KB (docs/your-own-text.md).
FINETUNE_DEFAULTS = {"warmup_steps": 20}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: fixed for the life of a run. V is read off the vocabulary beside it."""

    hidden_size: int = option(
        256, "Units per recurrent layer (H).", ("train", "explain"), low=1, fixed_on_resume=True, show_default=PLAN_256
    )
    num_layers: int = option(2, "Stacked recurrent layers (L).", ("train", "explain"), low=1, fixed_on_resume=True)
    dropout: float = option(
        0.2,
        "Dropout on each recurrent layer's output while training (finetune: the base model's by default).",
        TRAIN,
        low=0,
        high=1,
        high_open=True,
        fixed_on_resume=True,
        show_default=f"{PLANNED}; 0.2 otherwise",
    )
    weight_drop: float = option(
        0.0,
        "Weight drop: DropConnect on each recurrent layer's hidden-to-hidden weights while training "
        "(one mask per window); regularises the recurrence (AWD-LSTM).",
        ("train",),
        low=0,
        high=1,
        high_open=True,
        fixed_on_resume=True,
        show_default=f"{PLANNED}; 0 otherwise",
    )
    cell: str = option(
        "lstm",
        "The recurrent cell: LSTM, GRU or a plain tanh RNN.",
        ("train", "explain"),
        choices=CELL_NAMES,
        fixed_on_resume=True,
    )
    head: str = option(
        "full",
        "The output layer: full (Linear + softmax over every character) or adaptive (frequency-sorted "
        "clusters: faster for alphabets of thousands of characters, docs/results.md).",
        ("train", "explain"),
        choices=HEAD_NAMES,
        fixed_on_resume=True,
        show_default=f"{PLANNED}; full otherwise",
    )


# What a checkpoint written before a ModelConfig option existed was trained with: read in place of
# the option's current default, so that resuming it continues the same training.
MODEL_OPTIONS_BEFORE_THEY_EXISTED = {"weight_drop": 0.0, "head": "full"}
# A run from before plans existed was not planned; one from before samples scored its whole split.
TRAIN_OPTIONS_BEFORE_THEY_EXISTED = {"plan": "off", "val_chars": 0}


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. Fields marked fixed_on_resume shape the data; the rest may change on resume."""

    # --- data layout: fixed for the life of a run ----------------------------------------------
    batch_size: int = option(
        16,
        "Contiguous streams trained side by side (B), per process under torchrun.",
        ("train", "finetune", "evaluate", "explain"),
        low=1,
        fixed_on_resume=True,
    )
    seq_len: int = option(
        100,
        "Characters per window: how far back gradients flow (T).",
        ("train", "finetune", "evaluate", "explain"),
        low=1,
        fixed_on_resume=True,
    )
    val_frac: float = option(
        0.1,
        "Fraction of each document, from its end, held out for validation (of the items, with --line-items).",
        TRAIN,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        fixed_on_resume=True,
    )
    val_chars: int = option(
        500_000,
        "Characters scored at each validation: a longer validation split is scored on pieces spread "
        "evenly over it (the rest stays held out); 0 scores the whole split every time.",
        TRAIN,
        low=0,
        fixed_on_resume=True,
    )
    seed: int = option(
        1234,
        "Seed for weight init, dropout and the order of --line-items.",
        ("train", "finetune", "explain"),
        low=0,
        high=MAX_SEED,
        fixed_on_resume=True,
    )
    plan: str = option(
        "auto",
        "auto: choose the model's size, dropout, weight drop, head and validation interval for this text, "
        "budget and machine, before the first step (every option given wins; `charrnn plan` shows why); "
        "off: the fixed defaults.",
        ("train",),
        choices=PLAN_MODES,
        fixed_on_resume=True,
    )
    val_file: str | None = option(
        None,
        "Validate on this file instead of the end of each document (it is then not trained on).",
        TRAIN,
        metavar="FILE",
        show_default="none",
        fixed_on_resume=True,
    )
    line_items: bool = option(
        False,
        "Each line is one item (names, titles): items are shuffled, each starts after a newline, "
        "and generate prints whole items and says how many are new.",
        TRAIN,
        fixed_on_resume=True,
    )
    newlines: str = option(
        "normalize",
        "Line ends: normalize turns CRLF and bare CR into LF; keep leaves the text as decoded.",
        READING,
        choices=NEWLINES,
        fixed_on_resume=True,
    )
    encoding: str = option(
        "utf-8",
        "The text files' encoding: any text codec Python knows (cp1252, latin-1, utf-16, ...); a BOM is dropped, "
        "and under the default a UTF-16 or UTF-32 one picks that encoding.",
        READING,
        parse=text_codec,
    )
    decode_errors: str = option(
        "strict",
        "Bytes the encoding cannot decode: refuse the file (strict), or replace them with U+FFFD.",
        READING,
        choices=("strict", "replace"),
    )
    # --- optimisation and schedule: may change on resume ---------------------------------------
    lr: float = option(
        3e-3, "Adam learning rate (peak, after warm-up).", TRAIN, low=0, high=1, low_open=True, show_default=PLAN_3E3
    )
    grad_clip: float = option(5.0, "Clip the global gradient norm to this; 0 turns clipping off.", TRAIN, low=0)
    max_steps: int | None = option(
        None, "Stop at this step, counted from the run's start (across resumes).", TRAIN, low=1, show_default="none"
    )
    max_epochs: int | None = option(
        None,
        "Stop after this many passes over the training split (whichever limit comes first).",
        TRAIN,
        low=1,
        show_default=f"none; {DEFAULT_EPOCHS} under --plan off without --time-limit",
    )
    time_limit: float | None = option(
        None,
        "Stop when training time (summed over resumes) reaches this, the final validation and save included.",
        TRAIN,
        low=0,
        low_open=True,
        metavar="MINUTES",
        show_default="none",
    )
    lr_schedule: str = option(
        "cosine",
        "Learning rate over the run: warm-up, then cosine or linear decay to --min-lr-ratio x --lr "
        "(driven by steps, or by time when --time-limit comes first), or constant.",
        TRAIN,
        choices=SCHEDULES,
    )
    warmup_steps: int = option(
        100, "Steps of linear warm-up before a decaying schedule (it ends by a quarter of the run).", TRAIN, low=0
    )
    min_lr_ratio: float = option(0.1, "Where a decaying schedule ends, as a fraction of --lr.", TRAIN, low=0, high=1)
    patience: int | None = option(
        None, "Stop after this many validations in a row without a new best.", TRAIN, low=1, show_default="off"
    )
    anneal_after: int | None = option(
        None, "Anneal and stop once this many validations in a row bring no new best.", TRAIN, low=1, show_default="off"
    )
    eval_every: int = option(
        400,
        "Steps between validations (saves best.pt when the loss improves).",
        TRAIN,
        low=1,
        show_default=f"{PLANNED}; 400 otherwise",
    )
    save_every: int = option(400, "Steps between writes of last.pt.", TRAIN, low=1)
    sample_every: int | None = option(
        None,
        "Steps between the short samples printed while training (0: none).",
        TRAIN,
        low=0,
        show_default="at each validation",
    )
    sample_length: int = option(200, "Characters in each sample printed while training.", TRAIN, low=1)
    precision: str = option(
        "auto",
        "auto: bf16 autocast on a CUDA GPU (fp16 where it has no bf16), fp32 elsewhere.",
        TRAIN,
        choices=PRECISIONS,
    )


@dataclass(frozen=True)
class SampleConfig:
    """What is generated (``charrnn generate``, ``CharModel.generate``); how each character is
    drawn is ``charrnn.sampling.Sampling``."""

    prime: str = option(
        "", "Text to start from; the sample continues it. Empty: start from the zero state.", ("generate",)
    )
    length: int = option(500, "Characters to generate after the prime (at most, with --stop).", SAMPLING, low=0)
    num_samples: int = option(
        1,
        "Independent samples, drawn side by side as one batch; sample i uses seed + i.",
        ("generate",),
        low=1,
        high=MAX_SAMPLES,
    )
    seed: int | None = option(
        None,
        "Seed for sampling: the same seed gives the same text (on the same machine and torch build).",
        SAMPLING,
        low=0,
        high=MAX_SAMPLE_SEED,
        show_default="random",
    )
    items: int | None = option(
        None,
        "For a model trained with --line-items: print this many whole items, one per line, then how many are new.",
        ("generate",),
        low=1,
        show_default=f"{DEFAULT_ITEMS} for a --line-items model",
    )
    logprobs: int | None = option(
        None,
        "Write JSON lines instead of text: one per character drawn, with its log-probability under the "
        "model and the K most likely alternatives (0-20).",
        ("generate",),
        low=0,
        high=20,
        show_default="off",
    )
    beam: int | None = option(
        None,
        "Beam search with N hypotheses: the most likely continuation of --length characters (or up to a "
        "--stop), deterministic; never less likely than --greedy.",
        ("generate",),
        low=1,
        high=64,
        show_default="off",
    )
    on_unknown: str = option(
        "error",
        "Prime characters the model never saw: stop with an error, or drop them with a warning.",
        ("generate",),
        choices=("error", "skip"),
    )


@dataclass(frozen=True)
class DynamicEvaluation:
    """`charrnn evaluate --dynamic`: scoring while adapting (Krause et al., 2018). The defaults were
    chosen on the first half of tinyshakespeare's validation split (docs/results.md)."""

    dynamic: bool = option(
        False,
        "Also score with dynamic evaluation: after scoring each segment, one gradient step on it, "
        "decaying back toward the trained weights; reported beside the static figure.",
        ("evaluate",),
    )
    dynamic_lr: float = option(
        0.1, "Dynamic evaluation: the step size of each update (plain SGD).", ("evaluate",), low=0, high=10
    )
    dynamic_decay: float = option(
        0.001,
        "Dynamic evaluation: the pull back toward the trained weights at each update.",
        ("evaluate",),
        low=0,
        high=1,
    )
    dynamic_seq_len: int = option(20, "Dynamic evaluation: characters scored between updates.", ("evaluate",), low=1)


@dataclass(frozen=True)
class Placement:
    """Where a command runs and writes: options of the commands, not of a model or a run."""

    device: str = option(
        "auto",
        "Where to run: auto picks cuda, then mps, then cpu.",
        ("train", "finetune", "generate", "evaluate", "score", "chat", "serve"),
        choices=DEVICES,
    )
    threads: str = option(
        "auto",
        "CPU threads: auto measures which count is fastest and looks again when the machine gets busy "
        "or quiet (docs/performance.md); a number fixes it.",
        ("train", "finetune", "generate", "evaluate", "score", "chat", "serve"),
        metavar="N|auto",
        parse=parse_threads,
    )


COMPILE_MODES = ("auto", "on", "off")
QUANTIZE_MODES = ("none", "int8")


@dataclass(frozen=True)
class Acceleration:
    """How the generation step runs: compiled or eager, float32 or 8-bit weights (docs/performance.md)."""

    compile: str = option(
        "auto",
        "Compile the generation step (CPU; built once per model shape, 15-30 s, and cached): "
        "auto uses a cached one, and builds one when the job is long enough to pay for it.",
        ("generate", "chat", "serve"),
        choices=COMPILE_MODES,
    )
    quantize: str = option(
        "none",
        "int8: 8-bit weights in the recurrent layers' multiplies (CPU): faster, and within a "
        "thousandth of a nat per character of float32 here (evaluate --quantize int8 shows the change).",
        ("generate", "evaluate", "chat", "serve"),
        choices=QUANTIZE_MODES,
    )
