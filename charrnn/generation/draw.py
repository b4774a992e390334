"""Choosing characters from logits: top-k / top-p filtering and the seeded inverse-CDF draw.

Shared by eager sampling (sample.py) and the compiled step (compiled.py), which runs the same
draw after its step, so that a seed gives the same text either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """(N, V) logits with every character outside the top-k / top-p set set to -inf.

    Top-k keeps exactly k characters per row, even when several tie at the k-th value (the
    tied ones ``torch.topk`` picks). Top-p keeps, per row, the most likely characters in order
    until their probabilities add up to at least p (the smallest such set); the most likely
    character always stays.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        best = torch.topk(logits, top_k, dim=-1).indices  # (N, k)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, best, True)  # (N, V)
        logits = logits.masked_fill(~keep, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (N, V) each
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the better ones
        drop_sorted = mass_before >= top_p  # the set had already reached p without this one
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def draw_uniforms(generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """One uniform number from each generator, in order: (N,)."""
    uniforms = [torch.rand(1, generator=g, device=device) for g in generators]
    return uniforms[0] if len(uniforms) == 1 else torch.cat(uniforms)


def draw_with_uniforms(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float | torch.Tensor,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The id each row's uniform number picks from its tempered distribution: (N, V), (N,) -> (N,).

    The row maximum is subtracted before dividing by the temperature, so a tiny temperature
    gives huge negative numbers (probabilities of 0) rather than inf - inf = NaN. The compiled
    step (generation/compiled.py) runs this same function after its step.
    """
    scaled = (logits.float() - logits.max(dim=-1, keepdim=True).values) / temperature  # (N, V)
    # Unnormalised probabilities: every value is in [0, 1] (the best is exp(0) = 1), and the
    # draw below scales by the row's total instead of dividing every entry by it.
    weights = filter_logits(scaled, top_k, top_p).exp()  # (N, V)
    # Inverse-CDF draw: the first id whose cumulative weight exceeds uniform x the row's total.
    cumulative = weights.cumsum(dim=-1)  # (N, V)
    return (cumulative <= uniforms[:, None] * cumulative[:, -1:]).sum(dim=-1)  # (N,)


class UniformBlocks:
    """The numbers ``draw_uniforms`` would give, one (N,) row per ``take``, drawn a block at a time.

    Sixteen streams made sixteen ``torch.rand`` calls per character. On the CPU, one call for K
    numbers gives exactly the K numbers that K calls for one would (tests/generation/test_draw.py checks it),
    so a seed's text does not change. Only for CPU generators, and for callers that use up or
    throw away their generators: the numbers drawn ahead are gone from them.
    """

    BLOCK = 64

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = generators
        self.block = torch.empty(0, len(generators))  # (K, N): row k is the k-th number of every generator
        self.next = 0

    def take(self) -> torch.Tensor:
        if self.next == len(self.block):
            self.block = torch.stack([torch.rand(self.BLOCK, generator=g) for g in self.generators], dim=1)
            self.next = 0
        self.next += 1
        return self.block[self.next - 1]  # (N,), contiguous
