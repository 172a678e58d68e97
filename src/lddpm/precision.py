"""The precision policy shared by training and inference: fp32, or bf16 autocast where fast."""

from __future__ import annotations

from pathlib import Path

import torch

# The choices of train.precision and --precision: listed once, in the config schema.
from lddpm.config.schema import PRECISIONS

__all__ = ["DEVICES", "PRECISIONS", "autocast", "cpu_has_fast_bf16", "resolve_device", "resolve_precision"]


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs where bf16 autocast pays off (elsewhere it is emulated)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32. 'auto' picks bf16 where the hardware has fast bf16 (measured on an
    AVX-512 BF16 CPU by benchmarks/speed.py: see docs/speed.md)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device_type: str, dtype: torch.dtype | None):
    """The context a forward pass runs in: `dtype` (bf16) autocast, or plain fp32 for None."""
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str | torch.device) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (CUDA, else MPS, else CPU) -> torch.device.
    A device this machine lacks is a UserError (option "device"; one line, exit 2, in the
    CLI) instead of a failure at the first tensor moved there."""
    from lddpm.errors import UserError

    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{name!r} is not a device; use one of {', '.join(DEVICES)}",
                        option="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"no CUDA device is available (torch {torch.__version__}, "
                        f"CUDA build: {torch.version.cuda or 'none'})", option="device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"no CUDA device {device.index} (this machine has {torch.cuda.device_count()})",
                        option="device")
    if device.type == "mps" and not _mps_available():
        raise UserError("no MPS (Apple GPU) device is available", option="device")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{name!r} is not supported; use one of {', '.join(DEVICES)}", option="device")
    return device
