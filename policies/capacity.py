"""Per-replica capacity at the latency SLO, learned online from observed load and p95 latency.

Every policy sizes replicas as ``demand / capacity_rps``, so a wrong capacity is a wrong answer at
every step: too high and the SLO is missed, too low and GPUs are wasted. The configured figure (the
*prior*) is a benchmark guess; this module corrects it from what each workload actually did.

Method, per workload, all workloads at once (numpy over a ``[workloads, bins]`` table):

* **Normalised units.** ``x = load_per_replica / prior_rps`` and ``y = p95 / slo``, so for every
  workload the prior says "the SLO (y = 1) is reached at x = 1". ``x`` is clipped to
  ``[low, high]`` and binned into ``bins`` log-spaced bins (relative resolution is what matters:
  about 9 % per bin with the defaults). ``y`` is capped at :data:`Y_CAP`: a timeout is a violation,
  but one timeout should not outweigh a bin of ordinary minutes. A p95 of ``+inf`` (a Prometheus
  histogram quantile in the ``+Inf`` bucket) is such a violation; a NaN p95, a non-finite or
  non-positive load is a *missing* metric and teaches nothing.
* **Decayed sums.** Per bin: the weight, the weighted sum of ``y`` and of ``x``. An observation at
  time ``t`` counts ``2 ** -((clock - t) / half_life)``; it is stored with weight
  ``2 ** ((t - origin) / half_life)`` (a growing factor, so ``observe`` touches one cell per
  workload, never the whole table) and the table is rescaled, with ``origin`` moved up, once the
  factor passes ``2 ** 64``. The clock is the latest ``now`` seen; it moves on missing metrics too,
  so a workload that stops reporting forgets what it learned and falls back to its prior.
* **Prior as pseudo-observations.** ``prior_weight`` observations in each of the two bins around
  x = 1, on a line of slope :data:`PRIOR_SLOPE` through ``(1, 1)``: alone they cross the SLO at
  exactly x = 1; a few hundred real observations outweigh them. They do not decay.
* **Isotonic fit.** Latency does not fall when load rises, so the bin means are replaced by their
  weighted isotonic (non-decreasing) regression: :func:`isotonic_fit`, the min-max formula
  ``fit[j] = max_{i<=j} min_{k>=j} mean(i..k)`` for all workloads at once, which pools the noise of
  neighbouring bins exactly where the raw means disagree with monotonicity.
* **Crossing.** Capacity is where the fit crosses y = 1, linearly interpolated between the last
  bin with ``fit <= 1`` and the first with ``fit > 1``. Each bin sits at the weighted mean load of
  its observations rather than at its geometric centre, so load that clusters at one side of a bin
  is not misplaced by up to half a bin. If the fit never
  exceeds 1, there is no evidence of a lower capacity: ``max(1, highest load observed)``. If even
  the first non-empty bin exceeds 1, its lower edge (conservative). Bins whose decayed weight is
  below :data:`EMPTY_WEIGHT` count as empty.
* **Learned or not.** Below ``min_observations`` of decayed weight the estimate is the prior
  exactly, and says so (:meth:`CapacityEstimate.source`).

Limits: a capacity beyond ``high`` x the prior reads as ``high`` x the prior (loads are clipped
there). Bin means of a curve that bends sharply *at* the capacity (queueing that starts exactly at
the SLO load) sit above the curve, which biases the estimate low by up to about half a bin (4-5 %
with the defaults): conservative, and absent for the simulator's curve, whose queueing starts at
``max_throughput_factor`` x capacity. More ``bins`` shrink it, at the cost of more data per bin.

Cost: ``observe`` is O(workloads), about 60 us for 1,000 workloads. ``estimate`` is
O(learned workloads * bins**2) time and memory over the bins that hold data (about 10 ms for 1,000
workloads with loads over 0.3-1.3 x their prior; at most about 25 ms and 20 MB with all 48 bins
used) and is cached until the next ``observe``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

PRIOR_SLOPE = 2.0  # dy/dx of the prior's pseudo-observations at x = 1 (the simulator's curve: 1.8)
Y_CAP = 3.0  # one observation counts at most three times the SLO
EMPTY_WEIGHT = 1e-3  # a bin with less decayed weight than this holds no evidence
_RENORMALISE_HALF_LIVES = 64.0  # rescale the table once the growth factor passes 2 ** 64
_FORMAT = 1


def isotonic_fit(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted non-decreasing least-squares fit of each row of ``values`` (``[rows, bins]``).

    Bins with zero (or negative) weight are ignored and come back NaN. Uses the min-max formula
    ``fit[j] = max_{i<=j} min_{k>=j} mean(i..k)``, which holds over the non-empty bins and is not
    disturbed by empty ones (a range that starts or ends on an empty bin equals a shorter range that
    still contains ``j``). Range means are summed forward from each start bin rather than taken as
    differences of cumulative sums, which would cancel catastrophically when decayed weights span
    many orders of magnitude. Internally ``[bins, bins, rows]``, so every numpy operation runs over
    contiguous workloads, and only the columns between the first and last non-empty bin of any row.
    """
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if v.shape != w.shape or v.ndim not in (1, 2):
        raise ValueError(f"values and weights must have the same shape [rows, bins], got {v.shape} and {w.shape}")
    if v.ndim == 1:
        return isotonic_fit(v[None, :], w[None, :])[0]
    fitted = np.full(v.shape, np.nan)
    has = w > 0
    used = np.flatnonzero(has.any(axis=0))
    if used.size == 0:
        return fitted
    cols = slice(int(used[0]), int(used[-1]) + 1)
    w0 = np.where(has[:, cols], w[:, cols], 0.0).T  # [bins, rows]
    wv = np.where(has[:, cols], w[:, cols] * np.where(has[:, cols], v[:, cols], 0.0), 0.0).T
    nbins, rows = w0.shape
    means = np.full((nbins, nbins, rows), np.nan)  # means[i, k] = mean of bins i..k; NaN if k < i or empty
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(nbins):
            np.divide(np.cumsum(wv[i:], axis=0), np.cumsum(w0[i:], axis=0), out=means[i, i:])
    upper = np.fmin.accumulate(means[:, ::-1], axis=1)[:, ::-1]  # upper[i, j] = min over k >= j; fmin skips NaN
    inner = np.empty((nbins, rows))
    for j in range(nbins):
        inner[j] = np.fmax.reduce(upper[: j + 1, j], axis=0)  # max over i <= j
    fitted[:, cols] = inner.T
    fitted[~has] = np.nan
    return fitted


@dataclass(frozen=True)
class CapacityEstimate:
    """Per workload: the capacity of one replica at its SLO (rps), and where the figure came from.

    ``rps`` is the prior exactly where ``learned`` is False; ``observations`` is the effective
    (decayed) number of observations behind it.
    """

    rps: np.ndarray
    learned: np.ndarray
    observations: np.ndarray

    def source(self, i: int) -> str:
        """``"learned from N observations"`` or ``"configured prior"``, for a reason or a log."""
        if self.learned[i]:
            return f"learned from {float(self.observations[i]):.0f} observations"
        return "configured prior"


def _workload_vector(name: str, value: Any, n: int | None = None) -> np.ndarray:
    """A one-dimensional array of finite positive floats, or a one-line ValueError naming ``name``."""
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, one per workload") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per workload), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but prior_rps has {n}")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite and positive, but entry {i} is {float(arr[i])!r}")
    arr.flags.writeable = False
    return arr


def _number(name: str, value: Any, *, low: float, low_ok: bool) -> float:
    """A finite float above ``low`` (or at it, with ``low_ok``), or a one-line ValueError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < low or (x == low and not low_ok):
        bound = f">= {low:g}" if low_ok else f"> {low:g}"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return x


class CapacityLearner:
    """Mutable learner (it lives in the agent's/simulator's tick, not in the pure ``decide()``).

    See the module docstring for the method. ``observe`` once per tick with every workload's load
    per ready replica and p95 latency (NaN where missing); ``estimate`` whenever a policy needs
    ``capacity_rps``.
    """

    def __init__(self, prior_rps: np.ndarray, slo_seconds: np.ndarray, *, prior_weight: float = 5.0,
                 half_life_seconds: float = 3 * 86400.0, min_observations: int = 30, bins: int = 48,
                 low: float = 0.05, high: float = 4.0) -> None:
        self.prior_rps = _workload_vector("prior_rps", prior_rps)
        n = self.prior_rps.shape[0]
        self.slo_seconds = _workload_vector("slo_seconds", slo_seconds, n)
        self.prior_weight = _number("prior_weight", prior_weight, low=0.0, low_ok=True)
        self.half_life_seconds = _number("half_life_seconds", half_life_seconds, low=0.0, low_ok=False)
        self.min_observations = _number("min_observations", min_observations, low=0.0, low_ok=True)
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self.low = _number("low", low, low=0.0, low_ok=False)
        self.high = _number("high", high, low=0.0, low_ok=False)
        if not self.low < 1.0:
            raise ValueError(f"low must be below 1 (the prior's capacity, in units of itself), got {low!r}")
        if not self.high > 1.0:
            raise ValueError(f"high must be above 1 (the prior's capacity, in units of itself), got {high!r}")

        self._edges = self.low * (self.high / self.low) ** (np.arange(self.bins + 1) / self.bins)
        centres = np.sqrt(self._edges[:-1] * self._edges[1:])
        self._log_low = math.log(self.low)
        self._per_log = self.bins / math.log(self.high / self.low)
        # Pseudo-observations of the prior: the bin centres either side of x = 1, on a line of slope
        # PRIOR_SLOPE through (1, 1), so that interpolating between them crosses y = 1 at x = 1.
        k = int(np.clip(np.searchsorted(centres, 1.0, side="right") - 1, 0, self.bins - 2))
        self._prior_w = np.zeros(self.bins)
        self._prior_w[[k, k + 1]] = self.prior_weight
        self._prior_x = centres.copy()
        self._prior_y = 1.0 + PRIOR_SLOPE * (centres - 1.0)

        self._weight = np.zeros((n, self.bins))  # decayed weights, times 2 ** ((t - origin) / half-life)
        self._sum_y = np.zeros((n, self.bins))
        self._sum_x = np.zeros((n, self.bins))
        self._origin: float | None = None  # time at which the stored growth factor is 1
        self._clock: float | None = None  # latest `now` seen
        self._cached: CapacityEstimate | None = None

    def __len__(self) -> int:
        return int(self.prior_rps.shape[0])

    # -- learning ---------------------------------------------------------------------------------

    def _column(self, name: str, value: Any) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        n = len(self)
        if arr.ndim == 0:
            return np.full(n, float(arr))
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},): one entry per workload")
        return arr

    def observe(self, now: float, load_per_replica: np.ndarray, p95_seconds: np.ndarray) -> None:
        """Learn from one tick: per workload, the load per ready replica (rps) and the p95 latency (s).

        Entries with a NaN, infinite or non-positive load, or a NaN or negative p95, are skipped;
        the clock still moves, so old observations keep fading.
        """
        t = float(now)
        if not math.isfinite(t):
            raise ValueError(f"now must be finite epoch seconds, got {now!r}")
        load = self._column("load_per_replica", load_per_replica)
        p95 = self._column("p95_seconds", p95_seconds)
        if self._clock is None or self._origin is None:
            self._origin = self._clock = t
        elif t > self._clock:
            self._clock = t
        self._cached = None
        if (self._clock - self._origin) / self.half_life_seconds > _RENORMALISE_HALF_LIVES:
            self._renormalise()

        with np.errstate(divide="ignore", invalid="ignore"):
            x = load / self.prior_rps
            y = p95 / self.slo_seconds
            ok = np.isfinite(x) & (x > 0) & (y >= 0)  # NaN compares False; +inf p95 is a violation
        rows = np.flatnonzero(ok)
        if rows.size == 0:
            return
        x = np.clip(x[rows], self.low, self.high)
        y = np.minimum(y[rows], Y_CAP)
        b = ((np.log(x) - self._log_low) * self._per_log).astype(np.int64)
        np.clip(b, 0, self.bins - 1, out=b)
        cells = rows * self.bins + b  # one cell per workload, so plain fancy-index += is exact
        g = 2.0 ** ((t - self._origin) / self.half_life_seconds)
        self._weight.reshape(-1)[cells] += g
        self._sum_y.reshape(-1)[cells] += g * y
        self._sum_x.reshape(-1)[cells] += g * x

    def _renormalise(self) -> None:
        """Move ``origin`` to the clock, rescaling the table so nothing changes but the magnitudes."""
        assert self._clock is not None and self._origin is not None
        factor = 2.0 ** (-(self._clock - self._origin) / self.half_life_seconds)
        self._weight *= factor
        self._sum_y *= factor
        self._sum_x *= factor
        gone = self._weight < 1e-250  # flush what has faded away before it turns subnormal
        for table in (self._weight, self._sum_y, self._sum_x):
            table[gone] = 0.0
        self._origin = self._clock

    # -- estimating -------------------------------------------------------------------------------

    def estimate(self) -> CapacityEstimate:
        """Capacity per replica at the SLO for every workload (cached until the next ``observe``)."""
        if self._cached is not None:
            return self._cached
        scale = 1.0
        if self._clock is not None and self._origin is not None:
            scale = 2.0 ** (-(self._clock - self._origin) / self.half_life_seconds)
        observations = self._weight.sum(axis=1) * scale
        learned = observations >= self.min_observations
        rps = self.prior_rps.copy()
        rows = np.flatnonzero(learned)
        if rows.size:
            rps[rows] = self._crossing(rows, scale) * self.prior_rps[rows]
        for arr in (rps, learned, observations):
            arr.flags.writeable = False
        self._cached = CapacityEstimate(rps=rps, learned=learned, observations=observations)
        return self._cached

    def _crossing(self, rows: np.ndarray, scale: float) -> np.ndarray:
        """Where each row's isotonic fit crosses y = 1, in units of the prior (module docstring)."""
        data_w = self._weight[rows] * scale
        w = data_w + self._prior_w
        sum_y = self._sum_y[rows] * scale + self._prior_w * self._prior_y
        sum_x = self._sum_x[rows] * scale + self._prior_w * self._prior_x
        has = w >= EMPTY_WEIGHT
        safe = np.where(has, w, 1.0)
        mean_y = np.where(has, sum_y / safe, np.nan)
        pos = np.where(has, sum_x / safe, np.nan)
        fit = isotonic_fit(mean_y, np.where(has, w, 0.0))

        m, nbins = fit.shape
        r = np.arange(m)
        above = fit > 1.0  # NaN (empty) compares False
        any_above = above.any(axis=1)
        first = np.argmax(above, axis=1)
        last_nonempty = np.maximum.accumulate(np.where(has, np.arange(nbins), -1), axis=1)
        prev = np.where(first > 0, last_nonempty[r, np.maximum(first - 1, 0)], -1)
        p = np.maximum(prev, 0)
        x0, y0, x1, y1 = pos[r, p], fit[r, p], pos[r, first], fit[r, first]
        with np.errstate(invalid="ignore", divide="ignore"):
            between = x0 + (1.0 - y0) / (y1 - y0) * (x1 - x0)
        crossing = np.where(prev >= 0, between, self._edges[first])

        seen = has & (data_w >= EMPTY_WEIGHT)
        highest = np.where(seen, pos, -np.inf).max(axis=1)
        return np.where(any_above, crossing, np.maximum(1.0, highest))

    # -- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume learning, as JSON-safe values (floats round-trip exactly)."""
        return {
            "format": _FORMAT,
            "prior_rps": self.prior_rps.tolist(),
            "slo_seconds": self.slo_seconds.tolist(),
            "prior_weight": self.prior_weight,
            "half_life_seconds": self.half_life_seconds,
            "min_observations": self.min_observations,
            "bins": self.bins,
            "low": self.low,
            "high": self.high,
            "origin": self._origin,
            "clock": self._clock,
            "weight": self._weight.tolist(),
            "sum_y": self._sum_y.tolist(),
            "sum_x": self._sum_x.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> "CapacityLearner":
        """The learner :meth:`to_json` described (a dict, or its JSON text)."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, Mapping):
            raise ValueError("capacity learner state must be a JSON object")
        if data.get("format") != _FORMAT:
            raise ValueError(f"capacity learner state has format {data.get('format')!r}, expected {_FORMAT}")
        try:
            learner = cls(data["prior_rps"], data["slo_seconds"], prior_weight=data["prior_weight"],
                          half_life_seconds=data["half_life_seconds"], min_observations=data["min_observations"],
                          bins=data["bins"], low=data["low"], high=data["high"])
            tables = {key: np.array(data[key], dtype=float) for key in ("weight", "sum_y", "sum_x")}
            origin, clock = data["origin"], data["clock"]
        except KeyError as missing:
            raise ValueError(f"capacity learner state lacks {missing.args[0]!r}") from None
        for key, table in tables.items():
            if table.shape != learner._weight.shape or not np.isfinite(table).all():
                raise ValueError(f"capacity learner state {key!r} must be finite with shape {learner._weight.shape}")
        if (origin is None) != (clock is None):
            raise ValueError("capacity learner state must have both origin and clock, or neither")
        learner._weight, learner._sum_y, learner._sum_x = tables["weight"], tables["sum_y"], tables["sum_x"]
        learner._origin = None if origin is None else float(origin)
        learner._clock = None if clock is None else float(clock)
        return learner
