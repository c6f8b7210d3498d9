"""Forecasts as one block of arrays, so a policy reads a thousand workloads' quantiles in one go.

``decide()`` accepts either a mapping ``workload -> Forecast`` (what a live agent naturally has)
or a :class:`ForecastBatch` (what a simulator that caches forecasts hands over). A mapping is
gathered into a batch once per call; everything after that is vectorised over workloads.

A quantile between two stored levels is interpolated linearly in the level, so a per-workload
newsvendor quantile of 0.952 sits between the stored 0.95 and 0.99 instead of jumping to 0.99;
above the highest stored level the highest is used (a forecast cannot say more than it knows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

from forecasters.series import Forecast


@dataclass(frozen=True)
class ForecastBatch:
    """Quantile forecasts for workloads ``names`` on a common level grid.

    ``values[i, k, h]`` is workload i's ``levels[k]`` quantile at ``issued_at[i] + (h + 1) * step``;
    ``present[i]`` is False where the workload has no forecast (its rows are zeros). ``models`` and
    ``fell_back`` are per workload (``""`` / ``None`` where absent).
    """

    names: tuple[str, ...]
    step: float
    levels: np.ndarray  # [Q] ascending
    values: np.ndarray  # [n, Q, H]
    issued_at: np.ndarray  # [n]
    present: np.ndarray  # bool [n]
    models: tuple[str, ...]
    fell_back: tuple[str | None, ...]
    horizons: np.ndarray | None = None  # [n] each forecast's own steps (a shorter one is padded); None: all H

    @classmethod
    def gather(cls, names: Sequence[str], forecasts: Mapping[str, Forecast] | "ForecastBatch" | None,
               step: float) -> "ForecastBatch":
        """A batch for ``names`` from a mapping (missing workloads absent) or an existing batch."""
        if isinstance(forecasts, ForecastBatch):
            if tuple(names) == forecasts.names:
                return forecasts
            forecasts = forecasts.as_mapping()
        forecasts = forecasts or {}
        found = [forecasts.get(name) for name in names]
        level_sets = {f._levels for f in found if f is not None}
        levels = sorted(set().union(*level_sets)) if level_sets else [0.5]
        horizon = max((f.horizon for f in found if f is not None), default=1)
        n = len(names)
        values = np.zeros((n, len(levels), horizon))
        issued = np.full(n, -math.inf)
        own = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        models: list[str] = []
        fell_back: list[str | None] = []
        same_levels = len(level_sets) == 1
        for i, f in enumerate(found):
            if f is None:
                models.append("")
                fell_back.append(None)
                continue
            stacked = np.stack([f.quantiles[q] for q in f._levels])
            if not same_levels:  # onto the union grid, interpolating in the level at every step
                stacked = np.stack([_interp_levels(np.asarray(f._levels), stacked, q) for q in levels])
            values[i, :, : stacked.shape[1]] = stacked
            if stacked.shape[1] < horizon:  # a shorter forecast is extended with its last value
                values[i, :, stacked.shape[1]:] = stacked[:, -1:]
            issued[i] = f.issued_at
            own[i] = f.horizon
            present[i] = True
            models.append(f.model)
            fell_back.append(f.fell_back)
        steps = {float(f.step) for f in found if f is not None}
        if len(steps) > 1:
            raise ValueError(f"forecasts on one decision must share a step, got {sorted(steps)} s")
        step = steps.pop() if steps else float(step)
        return cls(tuple(names), step, np.asarray(levels, dtype=float), values, issued, present,
                   tuple(models), tuple(fell_back), own)

    @cached_property
    def index(self) -> dict[str, int]:
        """Workload name -> row."""
        return {name: i for i, name in enumerate(self.names)}

    def as_mapping(self) -> dict[str, Forecast]:
        """One :class:`Forecast` per present workload (for explanations and audits)."""
        return {name: self.forecast(i) for i, name in enumerate(self.names) if self.present[i]}

    def forecast(self, i: int) -> Forecast:
        h = self.values.shape[2] if self.horizons is None else int(self.horizons[i])
        return Forecast(self.names[i], float(self.issued_at[i]), self.step,
                        {float(q): self.values[i, k, :h] for k, q in enumerate(self.levels)},
                        self.models[i], self.fell_back[i])

    def expires_at(self) -> np.ndarray:
        """``[n]``: the last time each forecast says anything about (``-inf`` where absent)."""
        steps = self.values.shape[2] if self.horizons is None else self.horizons
        return np.where(self.present, self.issued_at + steps * self.step, -math.inf)

    def fresh(self, now: float) -> np.ndarray:
        """``[n]`` bool: present and still covering ``now``. A forecast whose horizon ended before
        ``now`` says nothing about it, so a policy treats it as missing rather than stretching
        its last value."""
        return self.present & (self.expires_at() >= now - 1e-6 * self.step)

    def paths(self, now: float, quantile: np.ndarray, length: int, step: float | None = None) -> np.ndarray:
        """``[n, length]``: each workload's forecast at its own ``quantile`` at ``now + k * step``.

        ``step`` is the caller's (decision) step, by default the forecast's own. The forecast's
        value at ``issued_at + (h + 1) * self.step`` covers the interval that ends there, so time
        ``s`` reads horizon index ``ceil((s - issued_at) / self.step) - 1``: a 5-minute forecast
        answers all five one-minute decisions inside each of its steps. A path running past the
        horizon repeats the last value (documented, not guessed: ask for a longer horizon);
        expired forecasts are the caller's to drop (:meth:`fresh`). Absent workloads give zeros.
        Negative forecasts are clipped to zero.
        """
        n, n_levels, horizon = self.values.shape
        step = self.step if step is None else float(step)
        q = np.clip(np.asarray(quantile, dtype=float), self.levels[0], self.levels[-1])
        upper = np.clip(np.searchsorted(self.levels, q - 1e-12), 0, n_levels - 1)
        lower = np.maximum(upper - 1, 0)
        span = self.levels[upper] - self.levels[lower]
        w = np.where(span > 0, (q - self.levels[lower]) / np.where(span > 0, span, 1.0), 1.0)
        issued = np.where(self.present, self.issued_at, now - self.step)
        ahead = (now + step * np.arange(length))[None, :] - issued[:, None]
        cols = np.ceil(ahead / self.step - 1e-6) - 1
        cols = np.clip(cols, 0, horizon - 1).astype(np.int64)
        rows = np.arange(n)[:, None]
        lo = self.values[rows, lower[:, None], cols]
        hi = self.values[rows, upper[:, None], cols]
        return np.maximum((1 - w[:, None]) * lo + w[:, None] * hi, 0.0)


def _interp_levels(levels: np.ndarray, stacked: np.ndarray, q: float) -> np.ndarray:
    k = int(np.clip(np.searchsorted(levels, q - 1e-12), 0, len(levels) - 1))
    if k == 0 or levels[k] <= q:
        return stacked[k]
    w = (q - levels[k - 1]) / (levels[k] - levels[k - 1])
    return (1 - w) * stacked[k - 1] + w * stacked[k]
