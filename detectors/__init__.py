"""Pure scorers: arrays and strings in, typed results out.

Nothing here imports Kafka or ClickHouse code, so detectors run the same in the
worker, in ``llmpulse score``, in a notebook and in the benchmarks. The model-based
detectors live in their own modules (``embeddings``, ``toxicity``,
``hallucination``, ``pii``, ``injection``) and ``suite.DetectorSuite`` runs them
all; they are not imported here, so ``import detectors`` stays light.
"""

from detectors.base import Detector, DetectorError, TextBatch
from detectors.cost import Cost, CostDetector, Price, PriceTable, PriceTableError
from detectors.latency import Latency, LatencyDetector

__all__ = [
    "Cost",
    "CostDetector",
    "Detector",
    "DetectorError",
    "Latency",
    "LatencyDetector",
    "Price",
    "PriceTable",
    "PriceTableError",
    "TextBatch",
]
