"""`charrnn explain`: one real batch through the real model, every shape on the way printed.

Shapes are read off the tensors themselves (forward hooks on the recurrent layers and the output layer, and
the values ``forward`` returns), never from a table kept by hand, so the report cannot drift from
the code it describes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig, TrainConfig
from charrnn.core.data import StreamBatches, split_train_val
from charrnn.core.model import CharRNN
from charrnn.core.reference import ReferenceLSTM
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint


@dataclass
class Step:
    """One stage of the data flow: a name, the real tensor's shape, and what it means."""

    name: str
    shape: tuple[int, ...]
    meaning: str


@dataclass
class Explanation:
    """Everything `charrnn explain` prints, as data (the tests read it too)."""

    sizes: dict[str, int]  # B, T, V, H, L, G (weight blocks per layer: 4 for an LSTM)
    steps: list[Step]
    loss: float
    example: tuple[str, str]  # stream 0 of the window: its input characters and their targets
    parameters: dict[str, list[tuple[str, tuple[int, ...]]]]  # layer -> its tensors' (name, shape)
    gate_blocks: list[tuple[str, int, int, float]]  # (gate, first row, last row, mean |w|)
    gate_means: list[dict[str, float]] = field(default_factory=list)  # per layer, with --trace-gates
    reference_error: float | None = None  # max |reference - nn.LSTM| over the outputs


def explain(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    batch_size: int,
    seq_len: int,
    val_frac: float,
    trace_gates: bool = False,
) -> Explanation:
    """Run the first training window of ``text`` through ``model``, recording every stage.

    The text is split and laid out exactly as ``charrnn train`` does, so ``x`` is the batch its
    first step trains on.
    """
    ids = vocab.encode(text)
    train_ids, _ = split_train_val(ids, val_frac)
    batches = StreamBatches(train_ids, batch_size, seq_len, full_windows=True, name="training split")
    x, y = batches.window(0)  # (B, T) each
    seen: dict[str, torch.Tensor] = {}

    def record_rnn(module, inputs, output):
        # nn.LSTM's state is a pair (h, c); nn.GRU's and nn.RNN's is h alone.
        initial, (seen["rnn_out"], final) = inputs[1], output
        seen["one_hot"], seen["initial_h"] = inputs[0], initial[0] if isinstance(initial, tuple) else initial
        seen["h_n"], seen["c_n"] = final if isinstance(final, tuple) else (final, None)

    def record_head(module, inputs, output):
        seen["head_in"], seen["logits"] = inputs[0], output

    if trace_gates and model.cell.name != "lstm":
        raise CharRNNError(
            f"--trace-gates follows the LSTM's gate equations; this model's cell is {model.cell.name}: "
            "drop --trace-gates"
        )
    hooks = [model.rnn.register_forward_hook(record_rnn), model.head.register_forward_hook(record_head)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # The explicit one-hot path, whatever the vocabulary size: the one-hot tensor is what is
            # shown (a large vocabulary trains with the equivalent row lookup; see charrnn/core/model.py).
            logits, _ = model(x, input_path="one-hot")  # (B·T, V)
            targets = y.reshape(-1)  # (B·T,)
            loss = F.cross_entropy(logits, targets).item()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()

    head_role = (
        "Linear(H -> V): a score per next character, per position"
        if model.config.head == "full"
        else "adaptive softmax (H -> V): log-probabilities per next character, per position"
    )
    B, T = x.shape
    V, H, L = model.vocab_size, model.config.hidden_size, model.config.num_layers
    cell, is_lstm = model.cell.name.upper(), model.cell.state_size == 2
    steps = [
        Step("text", (len(text),), "the training text, one entry per character"),
        Step("ids", tuple(ids.shape), f"label-encoded: each character's index in the sorted vocabulary ({ids.dtype})"),
        Step("train ids", tuple(train_ids.shape), f"the first {1 - val_frac:.0%}; validation keeps the rest"),
        Step("streams", tuple(batches.inputs.shape), "the training ids cut into B contiguous streams, one per row"),
        Step("x", tuple(x.shape), f"window 0: the first {T} characters of every stream"),
        Step("one-hot(x)", tuple(seen["one_hot"].shape), f"each id as a V-vector with a single 1: the {cell}'s input"),
        Step(
            "initial h, c" if is_lstm else "initial h",
            tuple(seen["initial_h"].shape),
            "state carried in from the previous window (zeros here)",
        ),
        Step(f"{cell} output", tuple(seen["rnn_out"].shape), "top layer's hidden state h_t at every time step"),
        Step("final h", tuple(seen["h_n"].shape), "each layer's h after the last step: carried to the next window"),
        *(
            [Step("final c", tuple(seen["c_n"].shape), "each layer's cell state after the last step: carried too")]
            if is_lstm
            else []
        ),
        Step("reshape", tuple(seen["head_in"].shape), "time folded into the batch: every step is one example"),
        Step("logits", tuple(seen["logits"].shape), head_role),
        Step("y", tuple(y.shape), "targets: x shifted one character along the text"),
        Step(
            "y.reshape(-1)", tuple(targets.shape), "class indices, the layout CrossEntropyLoss takes with (N, V) logits"
        ),
        Step("loss", (), "mean cross-entropy, nats per character"),
    ]

    parameters: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for name, tensor in model.named_parameters():  # rnn.weight_ih_l0 -> "LSTM layer 0", "weight_ih"
        module, tensor_name = name.split(".", 1)
        if module == "rnn":
            tensor_name, layer = tensor_name.rsplit("_l", 1)
            group = f"{cell} layer {layer}"
        else:
            group = "Linear head" if model.config.head == "full" else "adaptive softmax head"
        parameters.setdefault(group, []).append((tensor_name, tuple(tensor.shape)))
    w_ih = model.rnn.weight_ih_l0.detach()  # (G·H, V)
    gate_blocks = [
        (gate, k * H, (k + 1) * H - 1, w_ih[k * H : (k + 1) * H].abs().mean().item())
        for k, gate in enumerate(model.cell.gates)
    ]
    explanation = Explanation(
        sizes={"B": B, "T": T, "V": V, "H": H, "L": L, "G": len(gate_blocks)},
        steps=steps,
        loss=loss,
        example=(vocab.decode(x[0]), vocab.decode(y[0])),
        parameters=parameters,
        gate_blocks=gate_blocks,
    )
    if trace_gates:
        with torch.no_grad():
            reference_out, _, trace = ReferenceLSTM(model.rnn)(seen["one_hot"], trace=True)
        explanation.gate_means = trace.means
        explanation.reference_error = (reference_out - seen["rnn_out"]).abs().max().item()
    return explanation


def explain_text(
    text: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    model_config: ModelConfig | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    seed: int = TrainConfig.seed,
    trace_gates: bool = False,
) -> Explanation:
    """``explain`` for a checkpoint's model (B and T default to its training run's), or for a
    fresh model built from ``model_config`` and ``seed`` with the vocabulary of ``text``."""
    if checkpoint is not None:
        saved = Checkpoint.load(checkpoint)
        model, vocab = saved.model(), saved.vocab
        # The run's split and (unless given) its B and T lay out the batch its first step trained on.
        val_frac = saved.layout(checkpoint, ("val_frac",), "explain a fresh model (no --checkpoint)").val_frac
        needed = tuple(name for name, given in (("batch_size", batch_size), ("seq_len", seq_len)) if not given)
        layout = saved.layout(checkpoint, needed, "give --batch-size and --seq-len")
        train_config = TrainConfig(batch_size=layout.batch_size, seq_len=layout.seq_len, val_frac=val_frac)
    else:
        vocab = Vocab.from_text(text)
        torch.manual_seed(seed)
        model = CharRNN(len(vocab), model_config or ModelConfig())
        train_config = TrainConfig()
    return explain(
        model,
        vocab,
        text,
        batch_size or train_config.batch_size,
        seq_len or train_config.seq_len,
        train_config.val_frac,
        trace_gates,
    )


def format_shape(shape: tuple[int, ...]) -> str:
    return "()" if not shape else "(" + ", ".join(f"{n}" for n in shape) + (",)" if len(shape) == 1 else ")")


def render(explanation: Explanation) -> str:
    """The report `charrnn explain` prints."""
    s = explanation.sizes
    lines = [
        f"One batch through the model: B={s['B']} streams, T={s['T']} steps, V={s['V']} characters, "
        f"H={s['H']} hidden, L={s['L']} layers",
        "",
        f"  {'stage':<15} {'shape':<16} meaning",
    ]
    for step in explanation.steps:
        lines.append(f"  {step.name:<15} {format_shape(step.shape):<16} {step.meaning}")
    lines += [
        "",
        f"  loss = {explanation.loss:.4f} nats/char ({explanation.loss / math.log(2):.3f} bits/char); "
        f"an untrained model scores about ln V = {math.log(s['V']):.4f}",
        "",
        "Stream 0 of this window (inputs, then the targets it learns to predict):",
        f"  x[0] = {_show(explanation.example[0])}",
        f"  y[0] = {_show(explanation.example[1])}",
        "",
        "Parameters per layer:",
    ]
    total = 0
    for group, tensors in explanation.parameters.items():
        count = sum(math.prod(shape) for _, shape in tensors)
        total += count
        shown = "  ".join(f"{name} {format_shape(shape)}" for name, shape in tensors)
        lines.append(f"  {group:<13} {count:>10,}   {shown}")
    lines += [
        f"  {'total':<13} {total:>10,}",
        "",
        f"weight_ih_l0 {format_shape((s['G'] * s['H'], s['V']))} is {_blocks(s['G'])} of {s['H']} rows, "
        "one per gate (one-hot x picks one column):",
    ]
    for gate, first, last, mean_abs in explanation.gate_blocks:
        lines.append(f"  {gate:<7} gate  rows {first:>5}-{last:<5} mean |w| {mean_abs:.4f}")
    if explanation.gate_means:
        lines += ["", "Mean gate activations on this batch (gate-equation reference LSTM, same weights):"]
        for layer, means in enumerate(explanation.gate_means):
            shown = "  ".join(f"{name} {value:+.3f}" for name, value in means.items())
            lines.append(f"  layer {layer}: {shown}")
        lines.append(f"  reference vs nn.LSTM: max |difference| {explanation.reference_error:.1e}")
    return "\n".join(lines)


def _blocks(count: int) -> str:
    return "one block" if count == 1 else f"{count} blocks"


def _show(text: str, limit: int = 60) -> str:
    shown = repr(text[:limit])
    return shown + (" ..." if len(text) > limit else "")
