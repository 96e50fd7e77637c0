"""LLMPULSE_PRECISION: what ``auto`` picks per device and CPU, and what bf16 costs in accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import SettingsError, load_settings
from detectors.base import DetectorError
from detectors.device import cpu_has_bf16, resolve_precision
from detectors.embeddings import EmbeddingModel


@pytest.mark.parametrize(
    ("setting", "device", "has_bf16", "expected"),
    [
        ("auto", "cpu", True, "bf16"),
        ("auto", "cpu", False, "fp32"),
        ("auto", "cuda:0", False, "fp16"),
        ("fp32", "cuda", True, "fp32"),
        ("bf16", "cpu", False, "bf16"),  # asked for: emulated, slower, but allowed
        ("BF16", "cpu", True, "bf16"),
        ("int8", "cpu", True, "int8"),  # ONNX Runtime; auto never picks it
    ],
)
def test_auto_picks_fp16_on_cuda_and_bf16_only_where_the_cpu_has_it(
    setting: str, device: str, has_bf16: bool, expected: str
) -> None:
    assert resolve_precision(setting, device, has_bf16) == expected


def test_fp16_on_a_cpu_int8_on_cuda_and_unknown_names_are_refused_with_the_variable() -> None:
    with pytest.raises(DetectorError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu", True)
    with pytest.raises(DetectorError, match="int8 runs on the CPU"):
        resolve_precision("int8", "cuda", True)
    with pytest.raises(DetectorError, match="LLMPULSE_PRECISION must be one of"):
        resolve_precision("int4", "cpu", True)
    with pytest.raises(SettingsError, match="LLMPULSE_PRECISION='half'"):
        load_settings({"LLMPULSE_PRECISION": "half"})


def test_the_cpu_flags_decide_native_bf16(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_bf16(amx) and not cpu_has_bf16(plain)
    assert not cpu_has_bf16(tmp_path / "missing")


@pytest.fixture(scope="module")
def models() -> tuple[EmbeddingModel, EmbeddingModel]:
    fp32 = EmbeddingModel(device="cpu", cache_size=0, precision="fp32")
    bf16 = EmbeddingModel(device="cpu", cache_size=0, precision="bf16")
    bf16.encode(["warm-up"])  # the first autocast call sets up torch's caches
    return fp32, bf16


def test_bf16_vectors_stay_within_a_stated_tolerance_of_fp32(
    models: tuple[EmbeddingModel, EmbeddingModel],
) -> None:
    """Autocast runs on any CPU (emulated where not native), so this holds everywhere;
    measured here: cosine 0.99999 on these texts."""
    fp32, bf16 = models
    texts = [
        "My invoice shows two charges for the same month, can you refund one?",
        "The Standard plan allows 600 requests per minute per organisation.",
        "kill the process and restart the job",
        "As I already explained twice, the button is in the top right.",
    ]
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert b.dtype == np.float32
    assert float((a * b).sum(axis=1).min()) >= 0.995
