"""The one place where logits become a distribution and a character is drawn from it.

Eager draws (the decoder's) and the compiled step's draw (compiled.py, compiled_int8.py) both run
``draw_with_uniforms``, so that a seed gives the same text either way. Every setting a person can
type reaches a valid distribution: a temperature is clamped to [1e-20, 1e20] before it divides
(1e-50 in float32 is 0, and x / 0 is NaN), and every filter keeps the most likely character, so
no extreme top-p or min-p can leave a row with nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from charrnn.sampling import Sampling

# Beyond these the temperature makes no difference a float32 draw can see: below, only the most
# likely character keeps any weight (greedy); above, every character weighs the same.
COLDEST, HOTTEST = 1e-20, 1e20


def clamp_temperature(temperature: float) -> float:
    return min(max(temperature, COLDEST), HOTTEST)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None, min_p: float = 0.0) -> torch.Tensor:
    """(N, V) logits with every character outside the top-k / top-p / min-p set set to -inf.

    Top-k keeps exactly k characters per row, even when several tie at the k-th value (the
    tied ones ``torch.topk`` picks). Top-p keeps, per row, the most likely characters in order
    until their probabilities add up to at least p (the smallest such set). Min-p keeps those at
    least p times as likely as the most likely one. The most likely character always stays.
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
        drop_sorted[:, 0] = False  # a p that float32 rounds to 0 still leaves the best one
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    if min_p > 0:
        # p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p): the best always passes
        floor = logits.max(dim=-1, keepdim=True).values + math.log(min_p)  # (N, 1)
        logits = logits.masked_fill(logits < floor, -math.inf)
    return logits


def penalise(logits: torch.Tensor, drawn: torch.Tensor, recent: torch.Tensor, rows: Sequence[Sampling]) -> torch.Tensor:
    """(N, V) logits after each row's penalties: ``drawn`` (N, V) counts what each row drew,
    ``recent`` (N, V) what is in its repetition window (prime included)."""
    column = lambda name: logits.new_tensor([getattr(s, name) for s in rows]).view(-1, 1)  # (N, 1)
    logits = logits.float() - column("frequency_penalty") * drawn - column("presence_penalty") * (drawn > 0)
    repetition = column("repetition_penalty")  # CTRL: divide a positive logit, multiply a negative one
    repeated = torch.where(logits > 0, logits / repetition, logits * repetition)
    return torch.where(recent > 0, repeated, logits)


def draw_with_uniforms(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float | torch.Tensor,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float = 0.0,
) -> torch.Tensor:
    """The id each row's uniform number picks from its tempered distribution: (N, V), (N,) -> (N,).

    ``temperature``: one float for every row, or one per row, (N,) (clamped by the caller: the
    compiled step's input is already a tensor). The row maximum is subtracted before dividing,
    so a tiny temperature gives huge negative numbers (probabilities of 0), never inf - inf.
    """
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.view(-1, 1)  # (N, 1)
    scaled = (logits.float() - logits.max(dim=-1, keepdim=True).values) / temperature  # (N, V)
    # Unnormalised probabilities: every value is in [0, 1] (the best is exp(0) = 1), and the
    # draw below scales by the row's total instead of dividing every entry by it.
    weights = filter_logits(scaled, top_k, top_p, min_p).exp()  # (N, V)
    # Inverse-CDF draw: the first id whose cumulative weight exceeds uniform x the row's total.
    cumulative = weights.cumsum(dim=-1)  # (N, V)
    return (cumulative <= uniforms[:, None] * cumulative[:, -1:]).sum(dim=-1)  # (N,)


def draw(logits: torch.Tensor, rows: Sequence[Sampling], uniforms: torch.Tensor) -> torch.Tensor:
    """One id per row from (N, V) logits (already penalised), row i with ``rows[i]`` and
    ``uniforms[i]`` (ignored for a greedy row); rows that share their filters are drawn together."""
    first = rows[0]
    if all(setting is first for setting in rows):  # one setting for every row (generate, the API)
        return _draw_group(logits, rows, uniforms, first.filters)
    groups: dict[tuple, list[int]] = {}
    for row, setting in enumerate(rows):
        groups.setdefault(setting.filters, []).append(row)
    if len(groups) == 1:
        return _draw_group(logits, rows, uniforms, first.filters)
    ids = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for filters, members in groups.items():
        index = torch.tensor(members, device=logits.device)
        ids[index] = _draw_group(logits[index], [rows[r] for r in members], uniforms[index], filters)
    return ids


def _draw_group(logits: torch.Tensor, rows: Sequence[Sampling], uniforms: torch.Tensor, filters: tuple) -> torch.Tensor:
    """``draw`` for rows that share their filters (their temperatures may differ)."""
    top_k, top_p, min_p, greedy = filters
    if greedy:  # through the filters too: they keep the best, and every draw meets the same rules
        return filter_logits(logits, top_k, top_p, min_p).argmax(dim=-1)
    temperatures = [clamp_temperature(setting.temperature) for setting in rows]
    same = all(t == temperatures[0] for t in temperatures)
    temperature = temperatures[0] if same else logits.new_tensor(temperatures).float()
    return draw_with_uniforms(logits, uniforms, temperature, top_k, top_p, min_p)


class Uniforms:
    """One row's uniform numbers, in the order its generator gives them, drawn a block at a time.

    One ``torch.rand`` call for K numbers gives exactly the K numbers that K calls for one give
    on the CPU (tests/generation/test_draw.py checks it), so a seed's text does not depend on
    whether a row was drawn eagerly, by a compiled step, alone or in a batch. The generator is
    always a CPU one (a GPU's draws the same numbers differently); the numbers are moved to the
    model's device a block at a time, for all rows together (``UniformBatch``).
    """

    BLOCK = 64

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.numbers = torch.empty(0)  # drawn from the generator, not used yet

    def ahead(self, count: int) -> torch.Tensor:
        """The next ``count`` numbers, without using them up: (count,)."""
        while len(self.numbers) < count:
            self.numbers = torch.cat([self.numbers, torch.rand(self.BLOCK, generator=self.generator)])
        return self.numbers[:count]

    def use(self, count: int) -> None:
        self.numbers = self.numbers[count:]

    def take(self) -> float:
        """The next number, used up."""
        number = float(self.ahead(1))
        self.use(1)
        return number


class UniformBatch:
    """The next uniform number of each of N rows, one (N,) row per step, from one (BLOCK, N) block.

    Building an (N,) tensor from N numbers every step cost more than a compiled step's arithmetic
    at one stream (~10 us); a view into a block costs ~1 us. The block holds each row's next
    numbers without using them up; they are used up (``settle``) when the rows change, so a row
    that leaves, joins or changes its seed never loses or repeats a number. A greedy row (None)
    takes none: its column is zeros.
    """

    def __init__(self) -> None:
        self.sources: tuple[Uniforms | None, ...] = ()
        self.block = torch.empty(0, 0)  # (BLOCK, N)
        self.used = Uniforms.BLOCK  # nothing left: the first take builds a block

    def take(self, sources: tuple[Uniforms | None, ...], device: torch.device) -> torch.Tensor:
        if sources != self.sources or self.used == Uniforms.BLOCK:
            self.settle()
            zeros = torch.zeros(Uniforms.BLOCK)
            columns = [zeros if source is None else source.ahead(Uniforms.BLOCK) for source in sources]
            self.block, self.sources = torch.stack(columns, dim=1).to(device), sources  # (BLOCK, N)
        self.used += 1
        return self.block[self.used - 1]  # (N,)

    def settle(self) -> None:
        """Use up, in each row's own numbers, what the block handed out."""
        for source in self.sources:
            if source is not None:
                source.use(self.used)
        self.sources, self.used = (), 0
