"""The arithmetic a worker runs its model in: an archive's precision setting made a torch dtype.

``auto`` (CPU only) is bfloat16 where the CPU multiplies bfloat16 in hardware (AVX512-BF16 or
AMX) and float32 elsewhere: on this project's 2-core machine bfloat16 halves the restorer's time
for 0.004 dB of PSNR, while a CPU without those instructions emulates it and runs slower than in
float32. The archive cannot know the CPU it will be served on, so the worker decides at load time.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from afdserve.serving.settings import AUTO_PRECISION


@functools.cache
def has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions. torch's own probe where this release has it
    (a private helper, so guarded), else the kernel's CPU flags."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        try:
            return bool(probe() or (amx is not None and amx()))
        except RuntimeError:
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """A concrete precision name (float32, float16 or bfloat16) for ``precision`` on a device."""
    if precision != AUTO_PRECISION:
        return precision
    return "bfloat16" if device_type == "cpu" and has_native_bfloat16() else "float32"


def torch_dtype(precision: str, device: str | torch.device = "cpu") -> torch.dtype:
    return getattr(torch, resolve_precision(precision, torch.device(device).type))
