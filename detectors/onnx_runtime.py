"""The embedding model at int8 on ONNX Runtime (``LLMPULSE_PRECISION=int8``), on the CPU.

The transformer of a sentence-transformers model (BERT-like, mean pooling, normalised:
the bundled all-MiniLM-L6-v2) is exported to ONNX once with ``torch.onnx.export``,
its weights are quantized to int8 with ONNX Runtime's dynamic quantization (per
output channel; the activations are quantized per call), and the result is cached on
disk, so a later start loads it in about a second. The graph returns the last hidden
state, pooled and normalised here as sentence-transformers does, and the hidden state
after every earlier layer, of which a call reads only what it asks for: the tone model
takes the states after layer 4 (:meth:`EmbeddingModel.encode_with_hidden`).

The cache is ``$XDG_CACHE_HOME/llmpulse/onnx`` (``~/.cache/llmpulse/onnx``; in the
image, ``/data/.cache/llmpulse/onnx``), one directory per model and versions: the
model directory's path and files (names, sizes, modification times), and the versions
of torch, transformers, onnx, ONNX Runtime and of this export. A missing or unreadable
file is rebuilt; an unwritable cache directory is replaced by a temporary one (the
model is then exported at every start).

Per-channel int8 keeps MiniLM's vectors at cosine 0.992 to fp32 on average (0.974 at
worst) on the realistic dev-set texts; per-tensor int8 fell to 0.959 (0.85 at worst).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from detectors.base import DetectorError

__all__ = ["EXPORT_VERSION", "MIN_ONNXRUNTIME", "OnnxEncoder", "default_cache_dir"]

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the graph or the quantization changes: caches are rebuilt
MIN_ONNXRUNTIME = (1, 17)
MODEL_FILE = "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXTRA = "pip install 'llmpulse[int8]'"


def default_cache_dir() -> Path:
    """Where exported models are kept: ``$XDG_CACHE_HOME/llmpulse/onnx``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmpulse" / "onnx"


def require_onnxruntime() -> tuple[ModuleType, ModuleType]:
    """``onnxruntime`` and ``onnx``, or a DetectorError that names the extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise DetectorError(
            f"LLMPULSE_PRECISION=int8 runs the embedding model on ONNX Runtime, which is "
            f"not installed ({exc}); {EXTRA} (onnxruntime and onnx), or use fp32 or bf16"
        ) from exc
    version = str(getattr(onnxruntime, "__version__", "0"))
    if _version(version) < MIN_ONNXRUNTIME:
        raise DetectorError(
            f"LLMPULSE_PRECISION=int8 needs onnxruntime >= "
            f"{'.'.join(map(str, MIN_ONNXRUNTIME))}, found {version}; {EXTRA}"
        )
    return onnxruntime, onnx


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxEncoder:
    """A sentence-transformers model's transformer at int8 on ONNX Runtime (CPU).

    ``model`` is the loaded ``SentenceTransformer`` (its tokenizer is used here, and its
    transformer is what gets exported); ``path`` is the directory it was loaded from.
    """

    def __init__(
        self,
        model: Any,
        path: Path,
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.ort, onnx = require_onnxruntime()
        import torch
        import transformers

        self.model = model
        self.bert = next(iter(model)).auto_model
        self.layers = len(self.bert.encoder.layer)
        self.threads = threads or _cores()
        versions = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": self.ort.__version__,
            "export": EXPORT_VERSION,
        }
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir = root / f"{path.name}-{_cache_key(path, versions)}"
        self.file = self.dir / MODEL_FILE
        self.built = False  # whether this start exported the model (else: from the cache)
        if not self.file.is_file():
            self._build(path, versions)
        try:
            self.session = self._session()
        except Exception as exc:  # a truncated or foreign file: export it again, once
            log.warning("int8 model %s unreadable (%s); exporting it again", self.file, exc)
            self._build(path, versions)
            self.session = self._session()
        self.inputs = [i.name for i in self.session.get_inputs()]
        log.info(
            "int8 embedding model %s (%s, ONNX Runtime %s, %d threads)",
            self.file, "exported now" if self.built else "from the cache",
            self.ort.__version__, self.threads,
        )  # fmt: skip

    def encode(
        self, texts: Sequence[str], batch_size: int, layer: int | None = None
    ) -> tuple[np.ndarray, list[Any]]:
        """L2-normalised float32 vectors of ``texts`` (rows in order) and, when ``layer``
        is given, each text's token states after that many layers (float32 torch
        tensors, tokens x dim), else an empty list."""
        import torch

        if layer is not None and not 0 <= layer < self.layers:
            raise DetectorError(f"hidden states after layer {layer}: the model has "
                                f"{self.layers} layers")  # fmt: skip
        wanted = ["last_hidden_state"] + ([f"hidden_{layer}"] if layer is not None else [])
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), self.bert.config.hidden_size), dtype=np.float32)
        states: list[Any] = [None] * len(texts) if layer is not None else []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            feed = self._features([texts[i] for i in rows])
            last, *hidden = self.session.run(wanted, feed)
            mask = feed["attention_mask"]
            weights = mask[..., None].astype(np.float32)
            pooled = (last * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            vectors[rows] = pooled / norms
            if layer is not None:
                lengths = mask.sum(1)
                for j, i in enumerate(rows):
                    states[i] = torch.from_numpy(hidden[0][j, : int(lengths[j])].copy())
        return vectors, states

    def _features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        tokens = self.model.preprocess(list(texts))
        return {k: tokens[k].numpy().astype(np.int64, copy=False) for k in self.inputs}

    def _session(self) -> Any:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning for the next call: between calls the
        # cores run torch (the tone model's layers) and numpy (the claim checks), and
        # spinning threads took them: the suite scored 43 events/s with spinning, 69
        # without (2 shared cores, alternating rounds).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its fusion notes are not the log's
        return self.ort.InferenceSession(
            str(self.file), options, providers=["CPUExecutionProvider"]
        )

    def _build(self, path: Path, versions: dict[str, Any]) -> None:
        """Export, quantize and move the result into place (atomically: another worker
        starting at the same time ends with one of the two identical files)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=self.dir))
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix="llmpulse-onnx-"))
            log.warning("cannot write the int8 cache %s (%s); using %s for this start",
                        self.dir, exc, fallback)  # fmt: skip
            self.dir, self.file = fallback, fallback / MODEL_FILE
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=fallback))
        start = time.perf_counter()
        try:
            self._export(work / "model.fp32.onnx")
            self._quantize(work / "model.fp32.onnx", work / MODEL_FILE)
            info = {"model": str(path.resolve()), **versions,
                    "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
            (self.dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
            os.replace(work / MODEL_FILE, self.file)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.built = True
        log.info("exported %s to int8 ONNX in %.1f s", path.name, time.perf_counter() - start)

    def _export(self, target: Path) -> None:
        import torch

        bert = self.bert
        # Two texts of different lengths: the traced graph then includes the padding mask.
        sample = self._sample()
        names = [k for k in INPUTS if k in sample]
        outputs = ["last_hidden_state"] + [f"hidden_{i}" for i in range(self.layers)]

        class States(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, *args: Any) -> tuple[Any, ...]:
                out = self.bert(**dict(zip(names, args, strict=True)),
                                output_hidden_states=True)  # fmt: skip
                return (out.last_hidden_state, *out.hidden_states[: len(outputs) - 1])

        axes = {k: {0: "batch", 1: "sequence"} for k in (*names, *outputs)}
        was_training = bert.training
        bert.eval()
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(
                    States(), tuple(sample[k] for k in names), str(target), dynamo=False,
                    input_names=names, output_names=outputs, dynamic_axes=axes,
                    opset_version=17,
                )  # fmt: skip
        finally:
            bert.train(was_training)

    def _sample(self) -> dict[str, Any]:
        tokens = self.model.preprocess(
            ["a short text", "a somewhat longer text than the one before"]
        )
        return {k: v for k, v in tokens.items() if k in INPUTS}

    def _quantize(self, source: Path, target: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            quantize_dynamic(
                str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                extra_options={"MatMulConstBOnly": True},  # weights only, not Q x K
            )  # fmt: skip


def _cache_key(path: Path, versions: dict[str, Any]) -> str:
    """A digest of the model directory (path, and each top-level file's name, size and
    modification time) and the versions that shape the exported graph."""
    h = hashlib.sha256(str(path.resolve()).encode())
    for f in sorted(path.iterdir()):
        if f.is_file():
            stat = f.stat()
            h.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    h.update(json.dumps(versions, sort_keys=True).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's tracer warnings and the quantizer's advice (it logs on the root
    logger) say nothing an operator can act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
