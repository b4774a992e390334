"""Training precision: float32, or mixed precision (bfloat16 / float16 autocast).

Weights, optimizer state and checkpoints stay float32 in every mode; under autocast the matrix
multiplies (and cuDNN's LSTM) run in 16 bits, and the loss is computed in float32. float16 has a
narrow exponent range, so its gradients go through a loss scaler (``torch.amp.GradScaler``);
bfloat16 has float32's range and needs none.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from charrnn.config import PRECISIONS
from charrnn.errors import CharRNNError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision (never "auto") for one device type."""

    name: str  # "fp32", "bf16" or "fp16"
    device_type: str  # "cpu", "cuda", "mps"

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass and loss run in (does nothing for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def scales_loss(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return self.name == "fp16"

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only when ``scales_loss``; a disabled one passes everything through."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)


def cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU can run an LSTM under bf16 autocast.

    oneDNN's bf16 LSTM needs AVX512 (an AVX2-only CPU refuses to build it), so ask by running a
    tiny one rather than reading CPU flags.
    """
    lstm = torch.nn.LSTM(4, 4)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 4))
    except RuntimeError:
        return False
    return True


def resolve_precision(
    name: str, device: torch.device, *, cuda_bf16: bool | None = None, cpu_bf16: bool | None = None
) -> Precision:
    """The precision to train with on ``device``.

    ``auto`` is bf16 on a CUDA GPU that supports it (fp16 on older ones) and fp32 elsewhere:
    on a CPU without bf16 units 16-bit autocast is slower, and fp32 keeps exact resume simple.
    ``cuda_bf16`` and ``cpu_bf16`` override the hardware queries (for tests).
    """
    if name not in PRECISIONS:
        raise CharRNNError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type != "cuda":
            return Precision("fp32", device.type)
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        return Precision("bf16" if supported else "fp16", device.type)
    if name == "fp16" and device.type != "cuda":
        bf16_here = device.type != "cpu" or (cpu_runs_bf16_lstm() if cpu_bf16 is None else cpu_bf16)
        instead = "bf16 or fp32" if bf16_here else "fp32 (this CPU cannot run bf16 either)"
        raise CharRNNError(f"--precision fp16 needs a CUDA GPU (the {device.type} has no fp16 LSTM): use {instead}")
    if name == "bf16" and device.type == "cpu" and not (cpu_runs_bf16_lstm() if cpu_bf16 is None else cpu_bf16):
        raise CharRNNError("--precision bf16 needs a CPU with AVX512 (this one cannot run a bf16 LSTM): use fp32")
    return Precision(name, device.type)
