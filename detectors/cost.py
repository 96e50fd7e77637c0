"""Cost from a versioned price table: USD per 1M tokens, with effective dates.

An unknown model gets cost NULL and is counted, never a silent $0: a wrong zero
would hide spend, a missing value shows up in ``cost_source = 'unknown_model'``.
``input_tokens`` counts all input tokens; ``cached_tokens`` is the part of them
billed at the cached price (the input price where a model has none).
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from core.errors import LlmpulseError

__all__ = ["Cost", "CostDetector", "Price", "PriceTable", "PriceTableError"]

log = logging.getLogger(__name__)
PER = 1_000_000


class PriceTableError(LlmpulseError, ValueError):
    """The price table file is malformed; the message says where."""


@dataclass(frozen=True)
class Price:
    effective: date
    input: float
    output: float
    cached_input: float | None
    source: str


@dataclass(frozen=True)
class Cost:
    usd: float | None
    source: str  # app | price_table | unknown_model | no_usage


@dataclass
class PriceTable:
    version: str
    prices: dict[str, list[Price]]  # model or alias (lower case) -> sorted by effective date
    unknown: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        if path is None:
            text = (resources.files("detectors") / "prices.yaml").read_text()
            where = "detectors/prices.yaml"
        else:
            text, where = Path(path).read_text(), str(path)
        return cls.parse(yaml.safe_load(text), where)

    @classmethod
    def parse(cls, data: Any, where: str = "price table") -> PriceTable:
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise PriceTableError(f"{where}: expected a mapping with a 'models' list")
        table: dict[str, list[Price]] = {}
        for i, entry in enumerate(data["models"]):
            at = f"{where}: models[{i}]"
            try:
                names = [entry["model"], *(entry.get("aliases") or [])]
                prices = sorted(
                    (
                        Price(
                            effective=_as_date(p["effective"]),
                            input=float(p["input"]),
                            output=float(p["output"]),
                            cached_input=(
                                None if p.get("cached_input") is None else float(p["cached_input"])
                            ),
                            source=str(p.get("source", "")),
                        )
                        for p in entry["prices"]
                    ),
                    key=lambda p: p.effective,
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise PriceTableError(f"{at}: {exc!r}") from None
            if not prices:
                raise PriceTableError(f"{at}: no prices")
            for p in prices:
                if min(p.input, p.output, p.cached_input or 0.0) < 0:
                    raise PriceTableError(f"{at}: negative price")
            for name in names:
                key = str(name).lower()
                if key in table:
                    raise PriceTableError(f"{at}: model name {name!r} appears twice")
                table[key] = prices
        return cls(version=str(data.get("version", "unversioned")), prices=table)

    def lookup(self, model: str, on: date) -> Price | None:
        """The price in force on ``on``; before the first entry, the first one."""
        prices = self.prices.get(model.lower())
        if prices is None:
            return None
        i = bisect.bisect_right([p.effective for p in prices], on) - 1
        return prices[max(i, 0)]

    def cost(
        self,
        model: str,
        on: date,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None = None,
    ) -> Cost:
        price = self.lookup(model, on)
        if price is None:
            if not self.unknown[model]:
                log.warning("no price for model %r: cost stays NULL (add it to the table)", model)
            self.unknown[model] += 1
            return Cost(None, "unknown_model")
        if input_tokens is None and output_tokens is None:
            return Cost(None, "no_usage")
        inp, out, cached = input_tokens or 0, output_tokens or 0, cached_tokens or 0
        cached = min(cached, inp)
        cached_price = price.input if price.cached_input is None else price.cached_input
        usd = ((inp - cached) * price.input + cached * cached_price + out * price.output) / PER
        return Cost(usd, "price_table")


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


class CostDetector:
    """Batch form used by the worker; an app-reported ``cost_usd`` wins."""

    name = "cost"

    def __init__(self, table: PriceTable) -> None:
        self.table = table

    def score(
        self,
        models: Sequence[str],
        days: Sequence[date],
        input_tokens: Sequence[int | None],
        output_tokens: Sequence[int | None],
        cached_tokens: Sequence[int | None],
        reported_usd: Sequence[float | None],
    ) -> list[Cost]:
        out = []
        for model, day, inp, outp, cached, reported in zip(
            models, days, input_tokens, output_tokens, cached_tokens, reported_usd, strict=True
        ):
            if reported is not None:
                out.append(Cost(reported, "app"))
            else:
                out.append(self.table.cost(model, day, inp, outp, cached))
        return out
