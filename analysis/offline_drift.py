"""``llmpulse drift``: one MMD two-sample test between two files of events, offline.

Each file holds events as JSON Lines (or one JSON array, which is what ``llmpulse
sql --format json`` prints). The text of each event (``input`` or ``output``) is
embedded with the worker's model and the two samples go through the same
:class:`~detectors.drift.MMDDriftTest` the stream uses. When they differ, the
clusters whose share changed most are described with example texts, which are
redacted first because they are copied from user data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import LlmpulseError
from detectors.drift import MAX_ROWS, proportional_sample
from storage.drift import KINDS

if TYPE_CHECKING:
    from detectors.drift import MMDDriftTest
    from detectors.embeddings import EmbeddingModel
    from detectors.redaction import Redactor

__all__ = ["KINDS", "DriftInputError", "Texts", "drift_files", "drift_texts", "load_samples",
           "read_texts"]  # fmt: skip

ENCODE_CHUNK = 256  # texts per encode call: the progress bar moves this often


class DriftInputError(LlmpulseError, ValueError):
    """A file cannot be tested; the message names it."""


@dataclass(frozen=True)
class Texts:
    """The usable texts of one file, and what was skipped."""

    path: Path
    kind: str
    texts: list[str]
    skipped: int = 0
    first_skipped: int | None = None  # 1-based line (or array item) number
    unit: str = "line"

    def skipped_message(self) -> str | None:
        if not self.skipped:
            return None
        units = self.unit if self.skipped == 1 else f"{self.unit}s"
        return (
            f"skipped {self.skipped} {units} of {self.path} without a string {self.kind!r} "
            f"(first: {self.unit} {self.first_skipped})"
        )


def _records(path: Path) -> tuple[str, Iterator[tuple[int, Any]]]:
    """(unit, numbered records): JSON Lines, or the items of one top-level JSON array."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        try:
            items = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError):
            items = None  # JSON Lines whose first line is an array: counted as skipped
        if isinstance(items, list):
            return "item", iter(enumerate(items, start=1))

    def lines() -> Iterator[tuple[int, Any]]:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                payload = line.strip()
                if not payload:
                    continue
                try:
                    yield number, json.loads(payload)
                except (ValueError, UnicodeDecodeError):
                    yield number, None

    return "line", lines()


def read_texts(path: Path, kind: str = "input") -> Texts:
    """The ``kind`` string of every record; blank lines are ignored, bad records counted."""
    if kind not in KINDS:
        raise DriftInputError(f"kind must be one of {KINDS}, not {kind!r}")
    unit, records = _records(path)
    texts: list[str] = []
    skipped, first = 0, None
    for number, record in records:
        text = record.get(kind) if isinstance(record, dict) else None
        if isinstance(text, str):
            texts.append(text)
        else:
            skipped += 1
            first = first or number
    return Texts(path, kind, texts, skipped, first, unit)


def _require(texts: Texts) -> None:
    if len(texts.texts) < 2:
        raise DriftInputError(
            f"{texts.path}: {len(texts.texts)} usable {texts.unit}(s) with a string "
            f"{texts.kind!r}; a two-sample test needs at least 2"
        )


def _subsample(ref: list[str], cur: list[str], cap: int, seed: int) -> tuple[list[str], list[str]]:
    """At most ``cap`` texts in all, as the test itself would keep them."""
    pick_ref, pick_cur = proportional_sample(len(ref), len(cur), cap, np.random.default_rng(seed))
    return [ref[i] for i in pick_ref], [cur[i] for i in pick_cur]


def _embed(
    model: EmbeddingModel, texts: Sequence[str], done: int, total: int,
    tick: Callable[[int, int], None],
) -> np.ndarray:  # fmt: skip
    parts = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = texts[start : start + ENCODE_CHUNK]
        parts.append(model.encode(list(chunk)))
        tick(done + start + len(chunk), total)
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32)


def drift_texts(
    ref: Sequence[str],
    cur: Sequence[str],
    *,
    kind: str,
    model: EmbeddingModel,
    test: MMDDriftTest,
    redactor: Redactor | None = None,
    clusters: int = 8,
    seed: int = 0,
    tick: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Embed both samples, test them, and explain a drift; the ``llmpulse drift`` object.

    The explanation's examples and terms come from text redacted by ``redactor``
    (``None``: the default ``mask`` mode), because they are copied from user data.
    """
    from detectors.drift_explain import explain_drift
    from detectors.redaction import Redactor

    total = len(ref) + len(cur)
    ref_vectors = _embed(model, ref, 0, total, tick)
    cur_vectors = _embed(model, cur, len(ref), total, tick)
    result = test.test(ref_vectors, cur_vectors)
    if result.drifted:
        redact = (redactor or Redactor()).redact
        explanation = explain_drift(
            ref_vectors, cur_vectors, [redact(t) for t in ref], [redact(t) for t in cur],
            clusters=clusters, seed=seed,
        )  # fmt: skip
        result = result.with_explanation(explanation)
    out = result.as_dict()
    explanation = out.pop("explanation")
    out["kind"] = kind
    out["explanation"] = explanation
    return out


def load_samples(
    ref: Path,
    cur: Path,
    kind: str = "input",
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    notify: Callable[[str], None] = lambda message: None,
) -> tuple[list[str], list[str]]:
    """The ``kind`` texts of both files, cut to ``max_rows`` in all (seeded, proportional).

    ``notify`` gets a line per file with skipped records, and one when the samples
    are cut. Raises :class:`DriftInputError` when a file has fewer than 2 usable
    records; nothing is embedded before both files are known to be usable.
    """
    ref_texts, cur_texts = read_texts(ref, kind), read_texts(cur, kind)
    for texts in (ref_texts, cur_texts):
        message = texts.skipped_message()
        if message:
            notify(message)
    for texts in (ref_texts, cur_texts):
        _require(texts)
    ref_sample, cur_sample = _subsample(ref_texts.texts, cur_texts.texts, max_rows, seed)
    if len(ref_sample) + len(cur_sample) < len(ref_texts.texts) + len(cur_texts.texts):
        notify(
            f"testing a random {len(ref_sample)} of {len(ref_texts.texts)} reference and "
            f"{len(cur_sample)} of {len(cur_texts.texts)} current texts "
            f"(at most {max_rows} in all)"
        )
    return ref_sample, cur_sample


def drift_files(
    ref: Path,
    cur: Path,
    *,
    kind: str = "input",
    model: EmbeddingModel,
    test: MMDDriftTest,
    redactor: Redactor | None = None,
    clusters: int = 8,
    seed: int = 0,
    notify: Callable[[str], None] = lambda message: None,
    tick: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Test the ``kind`` texts of file ``cur`` against those of file ``ref``.

    :func:`load_samples` then :func:`drift_texts`; ``tick(done, total)`` follows the
    embedding. Raises :class:`DriftInputError` when a file cannot be tested.
    """
    ref_texts, cur_texts = load_samples(
        ref, cur, kind, max_rows=test.max_rows, seed=seed, notify=notify
    )
    return drift_texts(
        ref_texts, cur_texts, kind=kind, model=model, test=test, redactor=redactor,
        clusters=clusters, seed=seed, tick=tick,
    )  # fmt: skip
