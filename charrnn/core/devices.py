"""Choosing the torch device a command runs on."""

from __future__ import annotations

import torch

from charrnn.config import DEVICES
from charrnn.errors import CharRNNError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error."""
    cuda_ok = torch.cuda.is_available()
    mps_ok = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda_ok else "mps" if mps_ok else "cpu")
    if name == "cuda" and not cuda_ok:
        raise CharRNNError("--device cuda was asked for, but torch sees no CUDA GPU: use --device cpu")
    if name == "mps" and not mps_ok:
        raise CharRNNError("--device mps was asked for, but torch sees no Apple MPS: use --device cpu")
    if name not in DEVICES:
        raise CharRNNError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    return torch.device(name)
