"""Pure scorers: arrays and strings in, typed results out.

Nothing here imports Kafka or ClickHouse code, so detectors run the same in the
worker, in a notebook, and in the benchmarks.
"""

from detectors.cost import Cost, CostDetector, Price, PriceTable, PriceTableError
from detectors.latency import Latency, LatencyDetector

__all__ = [
    "Cost",
    "CostDetector",
    "Latency",
    "LatencyDetector",
    "Price",
    "PriceTable",
    "PriceTableError",
]
