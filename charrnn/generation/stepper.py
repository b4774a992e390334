"""Generation's one-character step, with the model's weights laid out for it once.

Generating a character is one time step for N streams. Called for T = 1, ``nn.LSTM`` spends
more time in per-call set-up than in arithmetic (~0.3 to 4 ms per call on a CPU), so sampling
runs the same equations on the same weights here instead, re-laid out once per generation:

    layer 0:  gates = Wᵀ_table[id] + h₀ Wᵀ_hh          one row lookup (the one-hot input) + one multiply
    layer k:  gates = [x, h_k] Wᵀ_cat + b              one multiply: input and recurrent weights side by side
    head:     logits = h_top Wᵀ_head + b               (an adaptive head: see ``adaptive_log_probs``)

so each LSTM (or RNN) layer costs one matrix multiply per character. A GRU's reset gate scales
its recurrent part alone, so there the two parts of each layer are two multiplies (``Cell.hidden_apart``).
How that multiply is laid out depends on the number of streams (see ``project``). The results
match ``CharRNN.forward`` to float rounding (~1e-7); tests/generation/test_sample.py checks that
both give the same text for a seed.

The laid-out weights are one flat dict of plain tensors (``Stepper.weights``), so that the same
step code runs eagerly here, with 8-bit weights (``Int8Stepper``) and traced into a compiled
step that takes the weights as inputs (charrnn/generation/compiled.py).
"""

from __future__ import annotations

import warnings

import torch

from charrnn.core.cells import Cell, State
from charrnn.core.heads import AdaptiveHead
from charrnn.core.model import ONE_HOT_MAX_VOCAB, CharRNN, as_index
from charrnn.cores import cores_for_this_process

# From this many streams on, W xᵀ in W's own layout is the faster multiply; below it, the split
# one (measured on a 2-core AVX2 CPU with benchmarks/sample_speed.py: 1.3x at 16 streams).
WIDE_BATCH = 16

Weights = dict[str, torch.Tensor]


def lay_out(weight: torch.Tensor, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W (M, K) in both layouts ``project`` uses: itself, and split into ``parts`` column blocks."""
    out_features, in_features = weight.shape
    parts = parts if out_features % parts == 0 else 1
    blocks = weight.t().reshape(in_features, parts, out_features // parts).transpose(0, 1)
    return weight.contiguous(), blocks.contiguous()  # (M, K); (P, K, M/P): block p = outputs p·M/P ...


def project(
    x: torch.Tensor, addend: torch.Tensor, weight: torch.Tensor, blocks: torch.Tensor | None = None
) -> torch.Tensor:
    """addend + x Wᵀ: x (N, K), addend (M,) or (N, M) -> (N, M), laid out for speed.

    A CPU multiply with one row (a matrix-vector product) runs on a single thread. Splitting W's
    M outputs into one block per thread and multiplying the blocks as a batch (``baddbmm``) puts
    every core to work: about 1.5x on 2 cores. From ``WIDE_BATCH`` rows on, a plain W xᵀ wins.
    Both layouts hold the same numbers, so the choice changes nothing but rounding (~1e-7).
    Without ``blocks`` (an exported step, whose N is unknown) the plain layout is used.
    """
    rows, out_features = x.shape[0], weight.shape[0]
    if blocks is None or rows >= WIDE_BATCH:
        return torch.mm(weight, x.t()).t().contiguous().add_(addend)  # (M, N) -> (N, M)
    parts = blocks.shape[0]
    addend = addend.view(-1, parts, out_features // parts).transpose(0, 1)  # (P, 1 or N, M/P)
    out = torch.baddbmm(addend, x.expand(parts, *x.shape), blocks)  # (P, N, M/P)
    return out.transpose(0, 1).reshape(rows, out_features)  # a view when N = 1


class Stepper:
    """Runs a trained ``CharRNN`` (eval mode, no dropout) one character at a time, in float32.

    ``weights`` holds, by name: ``table`` (V, G·H), the row of layer 0's input gates for each
    character; for each multiply ``NAME``, ``NAME.weight`` (M, K), ``NAME.blocks`` (P, K, M/P)
    and ``NAME.bias``. The multiplies: ``0.hh`` (layer 0's recurrent part); for each layer k > 0
    ``k.cat`` (input and recurrent side by side), or ``k.ih`` and ``k.hh`` for a GRU; ``head``.
    An adaptive head adds ``tail{i}.in`` and ``tail{i}.out`` per cluster (zero biases) and
    ``head.rank`` (V,), each character's place in the frequency order.
    """

    kind = "float32"

    def __init__(self, model: CharRNN, parts: int | None = None):
        # Split into one block per CPU thread (``parts``: the most threads the step will run on;
        # default: the cores this process may use); a GPU multiply already uses the whole device.
        if model.device.type != "cpu":
            parts = 1
        elif parts is None:
            parts = cores_for_this_process()
        self.cell = model.cell
        self.num_layers = model.config.num_layers
        self.weights = laid_out_weights(model, parts)

    @classmethod
    def from_weights(cls, cell: Cell, num_layers: int, weights: Weights) -> Stepper:
        """A stepper over given tensors in ``weights``' layout (the compiled step's inputs)."""
        stepper = cls.__new__(cls)
        stepper.cell, stepper.num_layers, stepper.weights = cell, num_layers, weights
        return stepper

    def init_state(self, streams: int) -> State:
        """The zero state for ``streams`` streams: (L, N, H) each."""
        table = self.weights["table"]  # (V, G·H)
        shape = (self.num_layers, streams, table.shape[1] // len(self.cell.gates))
        return tuple(table.new_zeros(shape) for _ in range(self.cell.state_size))

    def project(self, name: str, x: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
        """addend + x Wᵀ for the multiply called ``name``: x (N, K) -> (N, M)."""
        return project(x, addend, self.weights[f"{name}.weight"], self.weights.get(f"{name}.blocks"))

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (N,) of any integer dtype -> next-character logits (N, V) and the new state (each (L, N, H))."""
        cell, weights = self.cell, self.weights
        ids = as_index(ids)
        layers = list(zip(*(t.unbind(0) for t in state), strict=True))  # L tuples of (N, H) tensors
        input_gates = weights["table"][ids]  # (N, G·H)
        first_hh = lambda h, addend: self.project("0.hh", h, addend)
        layer_state = cell.layer_step(input_gates, layers[0], first_hh, weights["0.hh.bias"])  # (N, H) each
        new_layers = [layer_state]
        for layer in range(1, self.num_layers):
            below, own = layer_state[0], layers[layer]  # the layer below's output, this layer's state
            if cell.hidden_apart:
                hidden = lambda h, addend, layer=layer: self.project(f"{layer}.hh", h, addend)
                gates_in = self.project(f"{layer}.ih", below, weights[f"{layer}.ih.bias"])
                layer_state = cell.layer_step(gates_in, own, hidden, weights[f"{layer}.hh.bias"])
            else:
                inputs = torch.cat([below, own[0]], dim=1)  # (N, 2H)
                gates = self.project(f"{layer}.cat", inputs, weights[f"{layer}.cat.bias"])  # (N, G·H)
                layer_state = cell.update(gates, own)  # (N, H) each
            new_layers.append(layer_state)
        top = layer_state[0]  # (N, H)
        if "head.rank" in weights:
            logits = self.adaptive_log_probs(top)
        else:
            logits = self.project("head", top, weights["head.bias"])  # (N, V)
        return logits, tuple(torch.stack(parts) for parts in zip(*new_layers, strict=True))  # each (L, N, H)

    def adaptive_log_probs(self, top: torch.Tensor) -> torch.Tensor:
        """An adaptive head's log-probabilities (N, V) in id order, from the top layer's h (N, H).

        What ``nn.AdaptiveLogSoftmaxWithLoss.log_prob`` computes: the head's log-softmax scores
        the shortlist and each cluster; a cluster's characters add their own log-softmax to it.
        """
        weights = self.weights
        head = torch.log_softmax(self.project("head", top, weights["head.bias"]), dim=1)  # (N, S + C)
        clusters = sum(1 for name in weights if name.startswith("tail") and name.endswith(".in.bias"))
        shortlist = head.shape[1] - clusters
        parts = [head[:, :shortlist]]
        for i in range(clusters):
            inner = self.project(f"tail{i}.in", top, weights[f"tail{i}.in.bias"])  # (N, H_i)
            scores = self.project(f"tail{i}.out", inner, weights[f"tail{i}.out.bias"])  # (N, cluster size)
            parts.append(torch.log_softmax(scores, dim=1) + head[:, shortlist + i : shortlist + i + 1])
        return torch.cat(parts, dim=1).index_select(1, weights["head.rank"])  # frequency order -> id order


@torch.no_grad()
def laid_out_weights(model: CharRNN, parts: int) -> Weights:
    """The model's weights in ``Stepper``'s layout (see its docstring)."""
    rnn, cell = model.rnn, model.cell
    layers = [
        [getattr(rnn, f"{name}_l{k}").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        for k in range(rnn.num_layers)
    ]
    w_ih0, w_hh0, b_ih0, b_hh0 = layers[0]
    multiplies = {"0.hh": (w_hh0, b_hh0)}  # (G·H, H)
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers[1:], start=1):
        if cell.hidden_apart:  # input and recurrent parts stay apart: (G·H, H) and (G·H,) each
            multiplies[f"{k}.ih"], multiplies[f"{k}.hh"] = (w_ih, b_ih), (w_hh, b_hh)
        else:  # side by side: one (G·H, 2H) multiply, both biases summed
            multiplies[f"{k}.cat"] = (torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh)
    multiplies.update(head_multiplies(model.head))
    # Row v of the table is W_ih0 one_hot(v) plus layer 0's input bias: (V, G·H).
    weights = {"table": (w_ih0.t() + cell.input_bias(b_ih0, b_hh0)).contiguous()}
    for name, (weight, bias) in multiplies.items():
        weights[f"{name}.weight"], weights[f"{name}.blocks"] = lay_out(weight, parts)
        weights[f"{name}.bias"] = bias.contiguous()
    if isinstance(model.head, AdaptiveHead):
        weights["head.rank"] = model.head.rank.detach().clone()
    return weights


def head_multiplies(head: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The output layer's multiplies, (weight (M, K), bias (M,)) by name."""
    if not isinstance(head, AdaptiveHead):
        return {"head": (head.weight.detach(), head.bias.detach())}  # (V, H)
    softmax = head.softmax
    multiplies = {"head": (softmax.head.weight.detach(), softmax.head.bias.detach())}  # (S + C, H)
    for i, (inner, outer) in enumerate(softmax.tail):  # (H_i, H) and (cluster size, H_i), no biases
        multiplies[f"tail{i}.in"] = (inner.weight.detach(), inner.weight.new_zeros(inner.weight.shape[0]))
        multiplies[f"tail{i}.out"] = (outer.weight.detach(), outer.weight.new_zeros(outer.weight.shape[0]))
    return multiplies


class Int8Stepper(Stepper):
    """The same step with 8-bit weights: the recurrent layers' multiplies run as PyTorch's dynamic
    int8 linear.

    Each weight row is scaled to int8 on its own (per output channel, symmetric); activations stay
    float32 between the multiplies and are quantized on the fly inside each one (FBGEMM's dynamic
    linear, which uses the CPU's int8 dot products). The character table and the biases stay
    float32: they are read, not multiplied. So does the head while the alphabet is small (up to
    ``ONE_HOT_MAX_VOCAB`` characters: V x H is under 1/30 of a 2 x 512 model's weights, and an
    int8 call costs ~20 us of fixed overhead at one stream, more than the float32 multiply), and
    an adaptive head, whose multiplies are narrow.
    CPU only. (PyTorch's fused ``quantized_lstm`` would save dispatch, but measured 10x the
    error in the cell state and +0.07 nats/char: not used.)
    """

    kind = "int8"
    # 7-bit activations cannot overflow the 16-bit sums of AVX2 CPUs without int8 dot products.
    # Measured on the bundled model: +0.0004 nats/char against float32 (8-bit: +0.0001).
    REDUCE_RANGE = True

    def __init__(self, model: CharRNN, parts: int | None = None):
        super().__init__(model, parts)
        names = [key[: -len(".weight")] for key in self.weights if key.endswith(".weight")]
        if model.vocab_size <= ONE_HOT_MAX_VOCAB or isinstance(model.head, AdaptiveHead):
            names = [name for name in names if name[0].isdigit()]  # the recurrent layers only
        with warnings.catch_warnings():
            # PyTorch marks its quantized tensor type deprecated; it is the only way into the kernel.
            warnings.simplefilter("ignore", UserWarning)
            self.packed = {name: _pack(self.weights[f"{name}.weight"]) for name in names}
        for name in names:  # the float32 copies are not needed any more
            del self.weights[f"{name}.weight"], self.weights[f"{name}.blocks"]

    def project(self, name: str, x: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
        if name not in self.packed:  # the head of a small alphabet
            return super().project(name, x, addend)
        return self.project_raw(name, x).add_(addend)

    def project_raw(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x Wᵀ for the int8 multiply called ``name``: x (N, K) -> (N, M)."""
        # The overload itself: the op packet's call checks every argument in Python first (~5 us).
        return torch.ops.quantized.linear_dynamic.default(x, self.packed[name], self.REDUCE_RANGE)


def _pack(weight: torch.Tensor) -> torch.ScriptObject:
    """W (M, K) as FBGEMM's packed int8 weight: one symmetric scale per output row."""
    weight = weight.float()
    scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()  # (M,)
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, None)
