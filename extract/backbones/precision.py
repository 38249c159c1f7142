"""Where and in what precision a backbone computes: the device, and the dtype `auto` resolves to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a precision is resolved, never on import
    import torch

PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")  # int8: torchvision image classifiers, CPU


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16, as torch's CPU feature detection reports them."""
    import torch

    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a backbone computes in: `auto` picks bfloat16 on CPUs that do it natively (2-2.6x the
    float32 rate measured on AVX512-BF16; emulated it is slower than float32), float16 on CUDA, else
    float32. Any other setting is taken as given, so `float32` forces full precision anywhere."""
    import torch

    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def default_device(wanted: str | None = None) -> torch.device:
    """`wanted` (the device setting) if given, else CUDA when present, else the CPU."""
    import torch

    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
