"""Which torch device a model runs on, and at which precision.

``auto`` picks CUDA when there is one. Precision ``auto`` picks fp16 on CUDA, bf16 on a
CPU with AVX512-BF16 or AMX (MiniLM ran 1.7x faster there at cosine >= 0.9999 to
fp32), and fp32 on any other CPU, where bf16 would be emulated and slower. ``auto``
never picks int8 (ONNX Runtime, CPU only; :mod:`detectors.onnx_runtime`): it is faster
still, but moves the vectors further from fp32; see docs/operations.md.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import PRECISIONS
from detectors.base import DetectorError

__all__ = ["PRECISIONS", "cpu_has_bf16", "resolve_device", "resolve_precision"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmuls


def resolve_device(setting: str = "auto") -> str:
    import torch

    setting = setting.strip().lower()
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DetectorError(
                f"LLMPULSE_DEVICE={setting} but torch sees no CUDA device "
                f"(torch {torch.__version__}); use auto or cpu"
            )
        return setting
    if setting == "cpu":
        return "cpu"
    raise DetectorError(f"LLMPULSE_DEVICE must be auto, cpu or cuda[:N], not {setting!r}")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively (Linux; elsewhere: no)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in BF16_FLAGS)


def resolve_precision(setting: str, device: str, has_bf16: bool | None = None) -> str:
    """The precision a model on ``device`` runs at, from LLMPULSE_PRECISION."""
    setting = setting.strip().lower()
    if setting not in PRECISIONS:
        raise DetectorError(
            f"LLMPULSE_PRECISION must be one of {', '.join(PRECISIONS)}, not {setting!r}"
        )
    cuda = device.startswith("cuda")
    if setting == "auto":
        if cuda:
            return "fp16"
        return "bf16" if (cpu_has_bf16() if has_bf16 is None else has_bf16) else "fp32"
    if setting == "fp16" and not cuda:
        raise DetectorError("LLMPULSE_PRECISION=fp16 needs a CUDA device; on a CPU use bf16")
    if setting == "int8" and cuda:
        raise DetectorError(
            "LLMPULSE_PRECISION=int8 runs on the CPU (ONNX Runtime): set LLMPULSE_DEVICE=cpu, "
            "or use fp16 on CUDA"
        )
    return setting
