"""Which torch device a model runs on: ``auto`` picks CUDA when there is one."""

from __future__ import annotations

from detectors.base import DetectorError

__all__ = ["resolve_device"]


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
