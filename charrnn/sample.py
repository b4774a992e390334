"""Text generation: prime the state, then draw one character per step with the state carried.

Each new character costs one single-step forward pass (O(1) in the length of the text so far):
the LSTM state already summarises everything before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from charrnn.errors import CharRNNError
from charrnn.model import CharLSTM
from charrnn.vocab import Vocab


def sample_next(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Draw one id per row from softmax(logits / temperature): (N, V) -> (N, 1).

    The row maximum is subtracted before dividing, so a tiny temperature gives huge negative
    numbers (probabilities of 0) rather than inf - inf = NaN.
    """
    scaled = (logits.float() - logits.max(dim=-1, keepdim=True).values) / temperature  # (N, V)
    probs = torch.softmax(scaled, dim=-1)  # (N, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (N, 1)


def generate(
    model: CharLSTM,
    vocab: Vocab,
    prime: str,
    length: int,
    temperature: float,
    seed: int | None = None,
) -> Iterator[str]:
    """Return an iterator over ``length`` new characters that follow ``prime``.

    The prime is fed through the model in one pass to build the state; an empty prime starts
    from the zero state. The same model, prime, temperature and seed give the same text. Bad
    arguments (unknown prime characters, a non-positive temperature) raise here, before any text.
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise CharRNNError(f"temperature must be a positive finite number, got {temperature}")
    if length < 0:
        raise CharRNNError(f"length must be 0 or more, got {length}")
    prime_ids = vocab.encode(prime, what="prime")
    device = model.head.weight.device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    prime_tensor = torch.from_numpy(prime_ids).to(device).view(1, -1)  # (1, P)
    return _generate(model, vocab, prime_tensor, length, temperature, generator)


# As a decorator (not a `with` block) inference mode is switched on only while the generator
# runs, and off again each time it hands a character back to the caller.
@torch.inference_mode()
def _generate(
    model: CharLSTM,
    vocab: Vocab,
    prime_ids: torch.Tensor,
    length: int,
    temperature: float,
    generator: torch.Generator,
) -> Iterator[str]:
    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batch_size=1)
        if prime_ids.shape[1]:
            logits, state = model(prime_ids, state)  # (P, V)
            logits = logits[-1:]  # (1, V): the prediction after the prime's last character
        else:
            logits = model.logits_from_state(state)  # (1, V)
        for position in range(length):
            next_id = sample_next(logits, temperature, generator)  # (1, 1)
            yield vocab.chars[next_id.item()]
            if position + 1 < length:  # the last character needs no prediction after it
                logits, state = model(next_id, state)  # (1, V)
    finally:
        model.train(was_training)
