"""The output layer, hidden states (N, H) -> next-character scores (N, V), and its training loss.

    full       Linear(H -> V), then CrossEntropyLoss: every position scores every character.
    adaptive   nn.AdaptiveLogSoftmaxWithLoss (Grave et al., 2017) over the characters sorted by
               how often the training text uses them: a head scores the S most frequent ones plus
               one entry per rarer cluster, and each cluster has its own narrower projection. In
               training a cluster's softmax is computed only for the positions whose target is in
               it, so the cost of a step grows with S rather than with V.

The full head is the default: for a small alphabet (an English book's ~65 characters) the V-wide
multiply is cheap and the adaptive head only loses accuracy on its rare clusters. For a large one
(a Chinese text's ~9,000) it is the multiply and the Adam update over H x V weights that the
adaptive head saves (docs/results.md measures both).

Both heads return scores in the vocabulary's id order; the adaptive head's are log-probabilities,
which are valid logits (softmax of log p is p), so temperature, top-k, top-p, evaluation and
``explain`` read either without asking which head they have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.errors import CharRNNError

HEADS = ("full", "adaptive")  # charrnn.config.HEAD_NAMES offers them
# The adaptive head's projections shrink by this factor per cluster: H, H/4, H/16.
ADAPTIVE_DIV_VALUE = 4.0


def adaptive_cutoffs(hidden_size: int, vocab_size: int) -> list[int]:
    """Where the frequency-sorted vocabulary is cut into clusters: the shortlist is the most
    frequent eighth, the next cluster reaches half the vocabulary, the last holds the rest. A
    cluster whose projection would be narrower than one unit (H / 4^i < 1) is merged into the one
    before it.

    A function of H and V alone, so a checkpoint's head is rebuilt from its config and vocabulary.
    """
    cuts = sorted({max(1, vocab_size // 8), vocab_size // 2})
    cuts = [cut for cut in cuts if 0 < cut < vocab_size]
    clusters = 0  # tail clusters whose projection is at least one unit wide
    while clusters < len(cuts) and hidden_size // ADAPTIVE_DIV_VALUE ** (clusters + 1) >= 1:
        clusters += 1
    return cuts[:clusters]


class AdaptiveHead(nn.Module):
    """The adaptive softmax over characters in frequency order, read and written in id order.

    ``rank`` (a buffer, saved with the weights) maps a character's id to its place in the
    frequency order; ``sort_by`` sets it from the training text's counts before training starts.
    """

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        cutoffs = adaptive_cutoffs(hidden_size, vocab_size)
        if not cutoffs:
            raise CharRNNError(
                "--head adaptive needs at least two characters and --hidden-size 4 or more: use --head full"
            )
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(
            hidden_size, vocab_size, cutoffs, div_value=ADAPTIVE_DIV_VALUE, head_bias=True
        )
        self.register_buffer("rank", torch.arange(vocab_size))  # (V,): id -> frequency rank

    @torch.no_grad()
    def sort_by(self, counts: torch.Tensor) -> None:
        """Put the most frequent characters (``counts`` (V,), by id) in the shortlist; ties by id."""
        order = torch.sort(-counts.double(), stable=True).indices  # rank -> id
        self.rank.copy_(torch.argsort(order))  # id -> rank

    # Both run in the weights' own precision (float32) with autocast off: under bf16 / fp16 autocast
    # PyTorch's module would mix half-precision scores with float32 log-softmaxes in one tensor (and
    # return a half-precision loss).

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (N, H) -> log-probabilities (N, V) in id order, in the weights' dtype."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self.softmax.log_prob(hidden.to(self.weight_dtype)).index_select(1, self.rank)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of ``targets`` (N,) ids: only the clusters they fall in are computed."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self.softmax(hidden.to(self.weight_dtype), self.rank[targets]).loss

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.softmax.head.weight.dtype


def make_head(kind: str, hidden_size: int, vocab_size: int) -> nn.Module:
    if kind == "adaptive":
        return AdaptiveHead(hidden_size, vocab_size)
    if kind == "full":
        return nn.Linear(hidden_size, vocab_size)
    raise ValueError(f"unknown head {kind!r}: choose one of {', '.join(HEADS)}")


def head_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per character of ``targets`` (N,) given ``hidden`` (N, H), in float32."""
    if isinstance(head, AdaptiveHead):
        return head.loss(hidden, targets)
    return F.cross_entropy(head(hidden).float(), targets)  # float32 even under autocast
