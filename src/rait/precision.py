"""Numeric precision of training and inference: ``auto``, ``fp32`` or ``bf16``.

``bf16`` trains with the frozen base weights stored in bfloat16 and bf16 autocast on the forward pass; the
LoRA weights, their gradients and the optimizer state stay fp32. Inference with ``bf16`` runs the (merged)
model in bfloat16. ``auto`` picks bf16 where the hardware computes it natively -- a CUDA device that supports
it, or a CPU with AVX512_BF16 or AMX instructions (torch's CPU feature probe, else ``/proc/cpuinfo``) -- and
fp32 everywhere else (CPUs without native bf16 emulate it, which is slower than fp32). Older CUDA GPUs
without bf16 get fp16 mixed precision from ``auto``."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from rait.errors import RaitError

PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRECISION = "auto"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 arithmetic natively (AVX512_BF16 or AMX)."""
    probe = getattr(torch, "cpu", None)
    checks = [getattr(probe, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def resolve_precision(precision: str | None, device: str | torch.device) -> str:
    """``fp32``, ``bf16`` or (``auto`` on a CUDA device without bf16) ``fp16`` for ``device``.

    An explicit ``bf16`` is honoured on any device; ``None`` means ``auto``."""
    precision = precision or DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise RaitError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision (``fp32``, ``bf16`` or ``fp16``)."""
    return _DTYPES[precision]
