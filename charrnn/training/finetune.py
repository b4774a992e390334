"""Fine-tuning's one model operation: growing a trained model's vocabulary without disturbing it.

Only three tensors depend on the vocabulary size V: the first layer's input weights W_ih (G·H, V),
one column per character, and the output layer's weight (V, H) and bias (V,), one row per
character. Growing the vocabulary moves every known character's column and rows to its new id,
bit for bit, and gives each new character:

    input column   the mean of the known characters' columns: the new character first reaches the
                   network as a typical character would, so the hidden state stays in the range the
                   upper layers were trained on (a zero column would feed it a state it never saw);
    output row     a zero weight row and a bias of log f + E[log Z], where f is the character's
                   frequency in the new text and E[log Z] the mean log-normaliser of the known
                   characters' logits on that text: in an average context the model then gives it
                   probability about f, whatever the context. Known characters lose about f of their
                   probability mass between them, so the first steps start near the base model's loss
                   instead of paying for a character predicted at random odds.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from charrnn.config import ModelConfig
from charrnn.core.data import StreamBatches
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError

_WINDOWS_FOR_NORMALISER = 8  # windows of the new text used to estimate E[log Z]


def grow_vocabulary(model: CharRNN, old: Vocab, new: Vocab, config: ModelConfig | None = None) -> CharRNN:
    """A copy of ``model`` over the larger vocabulary ``new`` (a superset of ``old``), on the same device.

    Known characters keep their weights exactly; a new character's input column is the mean of
    the known ones and its output row is zero, with a bias of 0 until ``init_new_rows`` sets it.
    ``config`` replaces the model's (a fine-tuning run may change the dropout, not the shape).
    """
    config = config or model.config
    if dataclasses.replace(config, dropout=model.config.dropout) != model.config:
        raise ValueError("only the dropout may differ from the base model's config")
    if len(new) > len(old) and config.head == "adaptive":
        raise CharRNNError(
            "the base model has an adaptive head, whose clusters were fixed by its own text's character "
            "frequencies: it cannot take new characters; remove them from the text"
        )
    grown = CharRNN(len(new), config).to(model.device)
    kept = torch.tensor([new.chars.index(c) for c in old.chars], device=model.device)  # (V_old,)
    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in grown.state_dict().items():
            old_tensor = state[name]
            if name == "rnn.weight_ih_l0":  # (G·H, V): a column per character
                tensor.copy_(old_tensor.mean(dim=1, keepdim=True).expand_as(tensor))
                tensor[:, kept] = old_tensor
            elif name in ("head.weight", "head.bias"):  # (V, H) and (V,): a row per character
                tensor.zero_()
                tensor[kept] = old_tensor
            else:
                tensor.copy_(old_tensor)
    return grown


@torch.no_grad()
def init_new_rows(model: CharRNN, old: Vocab, new: Vocab, batches: StreamBatches) -> None:
    """Set the output bias of each character of ``new`` that ``old`` lacks to log f + E[log Z] (see above)."""
    new_ids = [i for i, c in enumerate(new.chars) if c not in set(old.chars)]
    if not new_ids:
        return
    known = torch.tensor([new.chars.index(c) for c in old.chars], device=model.device)
    counts = torch.bincount(batches.inputs.reshape(-1).long(), minlength=len(new)).double()  # (V,)
    was_training = model.training
    model.eval()
    state, normalisers = None, []
    for index in range(min(batches.num_windows, _WINDOWS_FOR_NORMALISER)):
        x, _ = batches.window(index)  # (B, T)
        logits, state = model(x, state)  # (B·T, V)
        normalisers.append(torch.logsumexp(logits[:, known].double(), dim=1))  # (B·T,)
    model.train(was_training)
    mean_log_z = torch.cat(normalisers).mean().item()
    total = counts.sum().item()
    for i in new_ids:
        frequency = max(counts[i].item(), 1.0) / total  # a character only in the val split: as if seen once
        model.head.bias[i] = math.log(frequency) + mean_log_z
