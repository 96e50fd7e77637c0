"""LLMPULSE_PRECISION=int8: MiniLM exported to ONNX, quantized, cached, and close to fp32."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from detectors.base import DetectorError
from detectors.embeddings import EmbeddingModel
from detectors.onnx_runtime import MODEL_FILE, OnnxEncoder, default_cache_dir, require_onnxruntime

TEXTS = [
    "My invoice shows two charges for the same month, can you refund one?",
    "The Standard plan allows 600 requests per minute per organisation.",
    "kill the process and restart the job",
    "As I already explained twice, the button is in the top right.",
    "ok",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def models(cache: Path) -> tuple[EmbeddingModel, EmbeddingModel]:
    """The export runs once for the module: about 5 s on the 2-core development machine
    (export 2.5 s, quantization 1.7 s), 10 s when the machine is busy."""
    fp32 = EmbeddingModel(device="cpu", cache_size=0, precision="fp32")
    int8 = EmbeddingModel(device="cpu", cache_size=0, precision="int8", onnx_cache=cache)
    return fp32, int8


def test_int8_vectors_are_unit_float32_and_close_to_fp32(
    models: tuple[EmbeddingModel, EmbeddingModel],
) -> None:
    """Measured here (AVX512-VNNI): cosine 0.985 on average over these texts, 0.960 at
    worst (the two-letter "ok"); over the 1,487 distinct texts of bench/throughput.py's
    events, 0.992 and 0.974. The bounds leave room for CPUs whose int8 kernels differ."""
    fp32, int8 = models
    a, b = fp32.encode(TEXTS), int8.encode(TEXTS)
    assert int8.precision == "int8" and int8.onnx is not None
    assert b.dtype == np.float32 and b.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosine = (a * b).sum(axis=1)
    assert float(cosine.min()) >= 0.9 and float(cosine.mean()) >= 0.95


def test_int8_gives_the_tone_model_its_hidden_states_token_by_token(
    models: tuple[EmbeddingModel, EmbeddingModel],
) -> None:
    import torch

    fp32, int8 = models
    reference = fp32.encode_with_hidden(TEXTS, 4)
    states = int8.encode_with_hidden(TEXTS, 4)
    for ref, got in zip(reference, states, strict=True):
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        assert got.shape == ref.shape  # tokens x 384, without the padding
        # measured: 0.991-0.994 per text, averaged over its tokens
        assert torch.nn.functional.cosine_similarity(ref, got).mean() >= 0.9


def test_a_missing_cached_model_is_exported_again_and_then_reused(
    models: tuple[EmbeddingModel, EmbeddingModel], cache: Path
) -> None:
    _, int8 = models
    encoder = int8.onnx
    assert encoder.file.parent.parent == cache and encoder.file.name == MODEL_FILE
    encoder.file.unlink()
    again = OnnxEncoder(int8.model, int8.path, cache)
    assert again.built and again.file == encoder.file and again.file.is_file()
    np.testing.assert_allclose(again.encode(TEXTS, 64)[0], encoder.encode(TEXTS, 64)[0],
                               atol=1e-6)  # fmt: skip
    assert not OnnxEncoder(int8.model, int8.path, cache).built  # read from the cache


def test_an_unreadable_cached_model_is_exported_again(
    models: tuple[EmbeddingModel, EmbeddingModel], tmp_path: Path
) -> None:
    _, int8 = models
    good = int8.onnx.file
    broken = tmp_path / good.parent.name / MODEL_FILE
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:1000])  # say, a disk that filled up
    again = OnnxEncoder(int8.model, int8.path, tmp_path)
    assert again.built and again.file == broken and broken.stat().st_size > 1000


def test_the_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/app")
    assert default_cache_dir() == Path("/var/cache/app/llmpulse/onnx")


def test_int8_without_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with pytest.raises(DetectorError, match=r"not installed .*llmpulse\[int8\]"):
        EmbeddingModel(device="cpu", precision="int8")


def test_an_old_onnxruntime_is_refused_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__="1.10.0"))
    with pytest.raises(DetectorError, match=r"onnxruntime >= 1\.17, found 1\.10\.0.*\[int8\]"):
        require_onnxruntime()
