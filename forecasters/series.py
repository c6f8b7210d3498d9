"""The values that flow from metrics to forecasts: :class:`Series` and :class:`Forecast`.

Both are frozen and hold read-only arrays, so a value handed to a policy cannot be changed
behind its back, and a decision made from it can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


def _readonly(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Series:
    """A regularly spaced metric series for one key (a workload, a GPU, a query).

    ``values[k]`` is the value at ``start + k * step``; NaN marks a gap (a missing scrape, an
    outage), never zero.
    """

    key: str
    start: float  # epoch seconds of values[0]
    step: float  # seconds between samples
    values: np.ndarray

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"Series {self.key!r}: step must be > 0, got {self.step}")
        object.__setattr__(self, "values", _readonly(self.values))
        if self.values.ndim != 1:
            raise ValueError(f"Series {self.key!r}: values must be one-dimensional")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> float:
        """Epoch seconds one step after the last sample: where a forecast starts."""
        return self.start + len(self) * self.step

    def tail(self, n: int) -> "Series":
        """The last ``n`` samples (all of them when there are fewer)."""
        n = min(max(n, 0), len(self))
        return Series(self.key, self.end - n * self.step, self.step, self.values[len(self) - n :])


@dataclass(frozen=True)
class Forecast:
    """Quantile forecasts for one key over ``horizon`` steps starting at ``issued_at + step``.

    ``quantiles[q][h]`` is the q-quantile of the value at ``issued_at + (h + 1) * step``. The
    constructor checks that quantiles are monotone at every step (a 0.95 below a 0.9 would let a
    policy size for less than it asked for). ``fell_back`` names the reason when the model could
    not be used and a simpler one answered instead (``None`` when the model itself answered).
    """

    key: str
    issued_at: float
    step: float
    quantiles: Mapping[float, np.ndarray]
    model: str
    fell_back: str | None = None
    _levels: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.quantiles:
            raise ValueError(f"Forecast {self.key!r}: no quantiles")
        levels = tuple(sorted(float(q) for q in self.quantiles))
        if not all(0.0 < q < 1.0 or q == 1.0 for q in levels):
            raise ValueError(f"Forecast {self.key!r}: quantile levels must lie in (0, 1], got {levels}")
        arrays = {q: _readonly(self.quantiles[q]) for q in levels}
        lengths = {a.shape for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"Forecast {self.key!r}: quantile arrays differ in length: {sorted(lengths)}")
        stacked = np.stack([arrays[q] for q in levels])
        if np.isnan(stacked).any():
            raise ValueError(f"Forecast {self.key!r}: NaN in forecast quantiles")
        if (np.diff(stacked, axis=0) < -1e-9 * np.maximum(1.0, np.abs(stacked[1:]))).any():
            raise ValueError(f"Forecast {self.key!r}: quantiles are not monotone in the level")
        object.__setattr__(self, "quantiles", arrays)
        object.__setattr__(self, "_levels", levels)

    @property
    def horizon(self) -> int:
        return int(next(iter(self.quantiles.values())).shape[0])

    def at_least(self, q: float) -> np.ndarray:
        """The forecast at the smallest stored level >= ``q`` (conservative for sizing up)."""
        for level in self._levels:
            if level >= q - 1e-12:
                return self.quantiles[level]
        return self.quantiles[self._levels[-1]]

    @classmethod
    def exact(cls, key: str, issued_at: float, step: float, values: np.ndarray, model: str = "perfect-foresight") -> "Forecast":
        """A forecast with no uncertainty: every quantile is ``values`` (the oracle's view)."""
        return cls(key, issued_at, step, {0.5: values, 1.0: values}, model)


def json_safe(value):
    """A JSON-ready copy of nested dicts/lists: NaN and infinite floats become ``None`` (JSON has
    neither; the reader sees "not applicable"), numpy floats become Python floats."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
