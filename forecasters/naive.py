"""Baselines every other model must beat: naive (the last value) and seasonal naive.

The seasonal naive forecast repeats the value one season ago. The season is found from the step
(:func:`forecasters.base.seasons`): weekly when the history holds two weeks, daily when it holds
two days. With less it falls back to naive, and says so.
"""

from __future__ import annotations

import numpy as np

from forecasters.base import Forecaster, seasons


class Naive(Forecaster):
    """The last (gap-filled) observation, flat over the horizon. Needs one point; no fallback."""

    name = "naive"
    description = "the last observation, flat"

    def fallback(self):
        return None

    def _estimate(self, y, start, step):
        return {}

    def _paths(self, params, y, start, step, origins, horizon):
        last = y[np.maximum(origins, 1) - 1]
        return np.repeat(last[:, None], horizon, axis=1), None


class SeasonalNaive(Forecaster):
    """The value one season (a week, else a day) before each target step."""

    name = "seasonal-naive"
    description = "the value one week (or one day) earlier"

    def fallback(self):
        return Naive(**self._base_config())

    def min_history(self, step: float) -> int:
        found = seasons(step)
        return 2 * found["daily"] if "daily" in found else 10**12  # no daily season at this step: never

    def _estimate(self, y, start, step):
        found = seasons(step)
        m = found["weekly"] if "weekly" in found and y.shape[0] >= 2 * found["weekly"] else found["daily"]
        return {"season": int(m)}

    def context_steps(self, step: float) -> int:
        return 2 * seasons(step).get("weekly", 2)

    def _paths(self, params, y, start, step, origins, horizon):
        m = int(params["season"])
        h = np.arange(horizon)
        idx = origins[:, None] - m + (h[None, :] % m)  # one season back from each target step
        idx = np.where(idx < 0, np.maximum(origins[:, None] - 1, 0), idx)  # not enough history: last value
        return y[idx], None
