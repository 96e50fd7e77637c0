"""Learned heads: a JSON round trip, a stable holdout split, no weight on constant noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.base import DetectorError
from detectors.heads import HOLDOUT_SHARE, LogisticHead, is_holdout


def test_the_holdout_split_is_stable_and_about_the_configured_share() -> None:
    keys = [str(i) for i in range(10_000)]
    held = [is_holdout("set", k) for k in keys]
    assert held == [is_holdout("set", k) for k in keys]
    assert abs(sum(held) / len(held) - HOLDOUT_SHARE) < 0.02
    assert held != [is_holdout("other-set", k) for k in keys]  # each dataset splits anew


def test_a_fitted_head_separates_its_classes_and_survives_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(2, 1, (200, 3))])
    y = np.array([0] * 200 + [1] * 200)
    head = LogisticHead.fit("demo", ["a", "b", "c"], x, y, meta={"note": "test"})
    head.save(tmp_path / "demo.json")
    loaded = LogisticHead.load(tmp_path / "demo.json")
    np.testing.assert_allclose(loaded.predict(x), head.predict(x))
    assert (
        loaded.predict(np.array([[-2.0] * 3]))[0]
        < 0.05
        < 0.95
        < loaded.predict(np.array([[4.0] * 3]))[0]
    )
    assert loaded.meta == {"note": "test"}


def test_a_near_constant_column_gets_no_weight() -> None:
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 1, 400)
    noise = 0.3 + rng.normal(0, 1e-8, 400)  # like MiniLM's dead dimensions
    head = LogisticHead.fit("demo", ["signal", "noise"], np.c_[signal, noise], signal > 0)
    assert head.weights[1] == 0.0 and head.weights[0] > 0
    shifted = head.predict(np.array([[0.5, 0.3 + 1e-3]]))  # fp16-sized error on the noise
    assert shifted[0] == pytest.approx(head.predict(np.array([[0.5, 0.3]]))[0])


def test_a_file_that_is_not_a_head_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(DetectorError, match="not a llmpulse head file"):
        LogisticHead.load(tmp_path / "bad.json")
    with pytest.raises(DetectorError, match="no model file"):
        LogisticHead.load(tmp_path / "missing.json")
