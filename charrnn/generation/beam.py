"""Beam search over the decoder's step: the most likely continuation rather than a sampled one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from charrnn.generation.decoder import Decoder
from charrnn.threads import timed_step


@dataclass(frozen=True)
class Beam:
    """The most likely continuation beam search found, and its total log-probability (nats)."""

    text: str
    logprob: float
    ended_by: str  # "length" or "stop"


@torch.inference_mode()
def beam_search(decoder: Decoder, prime: str, length: int, width: int, stops: Sequence[str] = ()) -> Beam:
    """The continuation of ``prime`` with the highest total log-probability that beam search of
    ``width`` finds, ``length`` characters long or ending just before a stop text (whose own
    characters count in its score: it is the most likely text *and* end). Deterministic.

    The greedy continuation is kept among the hypotheses at every step, so the answer is never
    less likely than greedy decoding's; ``width=1`` is greedy decoding. Scores are the model's own
    log-probabilities (no temperature, no penalties).
    """
    model, vocab = decoder.model, decoder.vocab
    logits, state = decoder._read(decoder._ids(prime, "prime"), model.init_state(1))  # (1, V); (L, 1, H) each
    texts, scores, greedy = [""], torch.zeros(1, dtype=torch.float64), 0  # greedy: its hypothesis' row
    finished: list[Beam] = []
    for position in range(length):
        log_probs = torch.log_softmax(logits.double(), dim=-1).cpu()  # (B, V)
        candidates = (scores[:, None] + log_probs).view(-1)  # (B·V,)
        chosen = torch.topk(candidates, min(width, len(candidates))).indices.tolist()
        if greedy is not None:  # keep the greedy path in the beam
            follow = greedy * len(vocab) + int(log_probs[greedy].argmax())
            if follow not in chosen:
                chosen[-1] = follow
            greedy = chosen.index(follow)
        parents, next_texts, kept = [], [], []
        for slot, flat in enumerate(chosen):
            parent, id_ = divmod(flat, len(vocab))
            text = texts[parent] + vocab.chars[id_]
            cut = min((i for stop in stops if stop and (i := text.find(stop)) >= 0), default=None)
            if cut is not None:
                finished.append(Beam(text[:cut], float(candidates[flat]), "stop"))
                greedy = None if slot == greedy else greedy
                continue
            parents.append(parent)
            next_texts.append(text)
            kept.append(flat)
        if greedy is not None:
            greedy = kept.index(chosen[greedy])
        if not kept:
            break
        texts, scores = next_texts, candidates[kept]
        if position + 1 < length:
            index = torch.tensor(parents, device=decoder.device)
            ids = torch.tensor([flat % len(vocab) for flat in kept], device=decoder.device)
            state = tuple(t.index_select(1, index) for t in state)
            with timed_step(decoder.threads, len(kept)):
                logits, state = decoder.stepper.step(ids, state)  # (B, V)
    else:
        finished += [Beam(text, float(score), "length") for text, score in zip(texts, scores.tolist(), strict=True)]
    return max(finished, key=lambda beam: beam.logprob)
