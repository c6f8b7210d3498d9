"""Anomaly detectors: pure functions from series (and forecasts) to :class:`~aiops.findings.Finding` lists.

Every detector is deterministic, reads no clock and does no I/O (each time is an argument), treats
NaN (and infinities) as a gap, never as zero, and says nothing rather than raise on empty or
all-gap input. A finding's ``score`` is >= 0 with 1.0 at the detector's threshold.

==========================  ===========================  =========================================================
detector                    codes                        catches; threshold and why
==========================  ===========================  =========================================================
:func:`forecast_band`       ABOVE/BELOW_FORECAST         demand (or any forecast metric) outside the forecast's
                                                         calibrated band for ``min_steps`` (3) steps: one step
                                                         above a 90% band happens 5% of the time, three in a row
                                                         ~1 in 8,000 if errors were independent (they are not
                                                         quite, hence 3 rather than 2).
:func:`stl_residuals`       SEASONAL_RESIDUAL            a point the daily/weekly shape does not explain: robust
                                                         STL residual with robust z (median/MAD) > 5: robust STL
                                                         residuals are heavier-tailed than the noise, and 5 is
                                                         what keeps a week of clean data quiet (measured).
:func:`multivariate_outliers` MULTIVARIATE_OUTLIER       a GPU/node whose *combination* of metrics is unlike the
                                                         fleet: robust Mahalanobis distance (MinCovDet) above the
                                                         chi-square 99.9% quantile; needs 8 entities.
:func:`peer_outliers`       PEER_OUTLIER                 one GPU/replica unlike its identical siblings: robust z
                                                         > 3.5 (Iglewicz-Hoaglin) against the others' median/MAD,
                                                         and at least 10% away, so near-identical peers (tiny MAD)
                                                         do not trigger on noise; needs 3 peers.
:func:`gpu_faults`          XID_<n>, ROW_REMAP_FAILURE,  hardware faults by rule: a new XID (see :mod:`aiops.xid`),
                            ECC_UNCORRECTABLE,           a failed row remap, a rising double-bit ECC counter, thermal
                            THERMAL_THROTTLE,            or power throttling or memory >= 95% full for 3 samples
                            POWER_THROTTLE,              (a single throttled sample is routine under load).
                            GPU_MEMORY_FULL
:func:`slo_burn`            SLO_BURN                     error budget burning fast: the SRE workbook's multiwindow,
                                                         multi-burn-rate alert (1 h and 5 min at 14.4x: 2% of a
                                                         30-day budget in an hour, critical; 6 h and 30 min at 6x:
                                                         5% in 6 h, warning).
:func:`latency_regression`  LATENCY_REGRESSION           p95/p99 latency stepped up: median of the last 5 steps
                                                         above the preceding hour's median by 4 robust sigmas and
                                                         by at least 20%.
:func:`stale_metrics`       STALE_METRICS,               a series whose newest sample is older than ``max_age`` (a
                            METRICS_MISSING              dead exporter looks like calm data), or that has none.
:func:`forecast_drift`      FORECAST_DRIFT               the forecasts' live error has drifted from their baseline
                                                         (:class:`forecasters.drift.DriftMonitor` decides).
==========================  ===========================  =========================================================

The thresholds are gathered, with these defaults, in :class:`DetectorConfig`; a keyword argument
given to a detector overrides the config's value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

import numpy as np

from aiops.findings import Entity, Evidence, Finding
from forecasters.drift import DriftStatus
from forecasters.series import Forecast, Series

MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of Gaussian data


@dataclass(frozen=True)
class BurnWindow:
    """One alert of the multiwindow pair: both windows must burn at ``factor`` x the sustainable rate."""

    long_s: float
    short_s: float
    factor: float
    severity: str


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds, each with why its default is what it is."""

    # forecast_band: 3 points in a row above a 90% band is ~1 in 8,000 by chance; 1 missed scrape is bridged.
    min_steps: int = 3
    max_gap_steps: int = 1
    band_tolerance: float = 0.0  # band widths beyond the edge before a point counts as outside
    band_min_width: float = 0.01  # relative floor on the band width, so an exact forecast is not infinitely sure
    # stl_residuals: robust STL residuals have heavier tails than the noise (see stl_residuals): 5 keeps a week quiet.
    stl_threshold: float = 5.0
    # multivariate_outliers: robust covariance in p dimensions needs several points per dimension.
    mv_min_entities: int = 8
    mv_alpha: float = 1e-3  # chi-square tail: 1 in 1,000 normal entities flagged
    mv_shrinkage: float = 0.1  # towards the identity (robust-z units), so constant metrics keep a finite inverse
    # peer_outliers: 3.5 is Iglewicz and Hoaglin's cut for the modified z; 10% keeps identical peers quiet.
    peer_threshold: float = 3.5
    peer_min_peers: int = 3
    peer_min_rel_diff: float = 0.10
    peer_min_abs_diff: float = 0.0
    peer_window_s: float = 300.0  # a Series is summarised by its median over this trailing window
    # gpu_faults: a throttled or full sample now and then is routine; 3 in a row is a condition.
    gpu_min_steps: int = 3
    slowdown_temp_c: float = 85.0  # just under the slowdown temperature A100/H100 report (87-92 C in nvidia-smi -q)
    memory_full_ratio: float = 0.95
    # slo_burn: Google SRE workbook, chapter 5, for a 30-day SLO.
    burn_windows: tuple[BurnWindow, ...] = (BurnWindow(3600.0, 300.0, 14.4, "critical"),
                                            BurnWindow(21600.0, 1800.0, 6.0, "warning"))
    slo_min_coverage: float = 0.5  # at least half of each window observed before it is judged
    slo_period_s: float = 30 * 86400.0
    # latency_regression: a step change, not a blip: 5 recent steps against the hour before.
    latency_recent_steps: int = 5
    latency_baseline_steps: int = 60
    latency_z: float = 4.0
    latency_min_rel_increase: float = 0.20
    # forecast_drift: DriftMonitor's own default threshold (ratio of live to baseline MAE).
    drift_threshold: float = 1.5


DEFAULT_CONFIG = DetectorConfig()

# -- 1. forecast band ----------------------------------------------------------------------------
def forecast_band(series: Series, forecasts: Sequence[Forecast], *, entity: Entity = Entity(), metric: str | None = None,
                  lower_q: float | None = None, upper_q: float | None = None, min_steps: int | None = None,
                  config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Observed values outside the forecast band for ``min_steps`` (default 3) steps in a row.

    Each time is judged against the latest forecast issued *before* it whose horizon covers it. The
    band is ``[lower_q, upper_q]``: the largest stored level <= ``lower_q`` and the smallest >=
    ``upper_q`` (a wider band when the exact level is missing); by default the lowest and highest
    stored levels. A run tolerates ``max_gap_steps`` gaps (or uncovered times) inside it. Score:
    ``1 + (distance outside, in band widths) - band_tolerance`` at the worst point.
    """
    metric = metric or series.key
    need = config.min_steps if min_steps is None else int(min_steps)
    values, times = _clean(series.values), _times(series)
    n = len(values)
    lo, hi, mid = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    source = np.full(n, -1)
    usable = [i for i, f in enumerate(forecasts) if math.isfinite(f.issued_at)]
    for i in sorted(usable, key=lambda k: (forecasts[k].issued_at, k)):  # later issued overwrite earlier
        f = forecasts[i]
        lq, uq = _band_levels(f, lower_q, upper_q)
        h = np.rint((times - f.issued_at) / f.step) - 1
        aligned = np.abs(times - f.issued_at - (h + 1) * f.step) <= f.step / 2
        covered = (times > f.issued_at) & (h >= 0) & (h < f.horizon) & aligned
        k = h[covered].astype(int)
        lo[covered], hi[covered], mid[covered] = f.quantiles[lq][k], f.quantiles[uq][k], f.at_least(0.5)[k]
        source[covered] = i
    width = np.maximum(hi - lo, np.maximum(config.band_min_width * np.maximum(np.abs(lo), np.abs(hi)), 1e-12))
    valid = np.isfinite(values) & (source >= 0)
    out: list[Finding] = []
    for code, excess in (("ABOVE_FORECAST", (values - hi) / width), ("BELOW_FORECAST", (lo - values) / width)):
        flag = valid & (excess > config.band_tolerance)
        for first, last, count in _runs(flag, valid, config.max_gap_steps):
            if count < need:
                continue
            worst = first + int(np.nanargmax(np.where(flag[first:last + 1], excess[first:last + 1], -np.inf)))
            f = forecasts[source[worst]]
            lq, uq = _band_levels(f, lower_q, upper_q)
            side = "above" if code == "ABOVE_FORECAST" else "below"
            out.append(Finding(
                "forecast_band", code, entity, (times[first], times[last]), metric, float(values[worst]),
                (float(lo[worst]), float(hi[worst])), float(1.0 + excess[worst] - config.band_tolerance), "warning",
                f"{metric} on {entity.label()} stayed {side} its forecast band for {count} samples from {_when(times[first])} "
                f"to {_when(times[last])} (worst {_num(values[worst])} vs q{lq:g}-q{uq:g} {_num(lo[worst])}-{_num(hi[worst])}); "
                f"check what changed (traffic, a rollout, an outage) before trusting the next forecast.",
                (Evidence(metric, f"{side} the q{lq:g}-q{uq:g} band of {f.model} issued {_when(f.issued_at)}",
                          float(values[worst]), float(mid[worst]), float(times[first])),)))
    return sorted(out, key=_order)


def _band_levels(f: Forecast, lower_q: float | None, upper_q: float | None) -> tuple[float, float]:
    levels = sorted(f.quantiles)
    lq = levels[0] if lower_q is None else max([q for q in levels if q <= lower_q + 1e-12] or [levels[0]])
    uq = levels[-1] if upper_q is None else min([q for q in levels if q >= upper_q - 1e-12] or [levels[-1]])
    return lq, max(lq, uq)


# -- 2. STL residuals ----------------------------------------------------------------------------
def stl_residuals(series: Series, period_steps: int, threshold: float | None = None, *, entity: Entity = Entity(),
                  metric: str | None = None, min_steps: int = 1, config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Points the trend and seasonal shape do not explain: robust STL residuals with robust z > ``threshold``.

    STL runs with ``robust=True`` (bisquare weights, so an incident does not bend the trend or the
    season towards itself) and a periodic season (``seasonal_deg=0``, a span over every cycle: one
    shape per phase, the steadiest estimate a few weeks of data allow). The residuals' robust z uses
    the median and MAD x 1.4826. The default threshold is 5, not the textbook 3-4: robust STL fits
    through the central points, so the points it sets aside carry prediction-sized residuals and
    the tails are heavier than the noise. Measured on Gaussian noise around a sine: with 10 cycles,
    |z| > 4 for 25 points in 10,000 and |z| > 5 for none; with 7 cycles, 2 in 10,000 over 5. Below
    ~7 cycles (a week for a daily period) the MAD shrinks and false alarms grow: pass more history.
    Gaps are linearly interpolated for the fit only and never reported. Fewer than two periods of
    data: no findings. Consecutive flagged points form one finding, score = max |z| / threshold.
    """
    from statsmodels.tsa.seasonal import STL

    metric = metric or series.key
    threshold = config.stl_threshold if threshold is None else float(threshold)
    values, times = _clean(series.values), _times(series)
    valid = np.isfinite(values)
    period = int(period_steps)
    if period < 2 or len(values) < 2 * period or int(valid.sum()) < 2 * period:
        return []
    center, spread = _robust(values[valid])
    if not spread > 0:
        spread = float(np.std(values[valid]))
    if not spread > 0:
        return []  # constant: nothing to decompose
    index = np.arange(len(values))
    scaled = (np.interp(index, index[valid], values[valid]) - center) / spread  # unit scale: no overflow, stable LOESS
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = STL(scaled, period=period, seasonal=2 * (len(values) // period) + 1, seasonal_deg=0, robust=True).fit()
    resid, explained = np.asarray(fit.resid), np.asarray(fit.trend) + np.asarray(fit.seasonal)
    if not np.isfinite(resid[valid]).all():
        return []
    r_center, r_scale = _robust(resid[valid])
    r_scale = max(r_scale, 1e-6)  # a perfect fit: a millionth of the series' spread is the finest we resolve
    z = (resid - r_center) / r_scale
    flag = valid & (np.abs(z) > threshold)
    out: list[Finding] = []
    for first, last, count in _runs(flag, valid, 0):
        if count < max(1, int(min_steps)):
            continue
        worst = first + int(np.argmax(np.where(flag[first:last + 1], np.abs(z[first:last + 1]), -np.inf)))
        expected = center + spread * (explained[worst] + r_center)
        half = threshold * r_scale * spread
        side = "above" if z[worst] > 0 else "below"
        out.append(Finding(
            "stl_residuals", "SEASONAL_RESIDUAL", entity, (times[first], times[last]), metric, float(values[worst]),
            (float(expected - half), float(expected + half)), float(abs(z[worst]) / threshold), "warning",
            f"{metric} on {entity.label()} was {_num(values[worst])} at {_when(times[worst])}, {side} the {_num(expected)} "
            f"its trend and {period}-step season explain (robust z {abs(z[worst]):.1f} > {threshold:g}); "
            f"look for what happened then.",
            (Evidence(metric, f"STL residual robust z {z[worst]:+.1f} over {count} sample(s)", float(values[worst]),
                      float(expected), float(times[first])),)))
    return out


# -- 3. multivariate outliers --------------------------------------------------------------------
def multivariate_outliers(samples: Mapping[Entity, Mapping[str, float | Series]], at: float, *,
                          min_entities: int | None = None, window_s: float | None = None,
                          config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Entities whose combination of metrics is unlike the others', at time ``at``.

    Each entity gives one value per metric (a Series gives the median of its samples in the
    trailing ``window_s``). Columns are robustly standardised (median, MAD x 1.4826, floored at 1%
    of the median); a Minimum Covariance Determinant fit (``random_state=0``), shrunk towards the
    identity, gives each entity a squared Mahalanobis distance, compared with the chi-square
    quantile at ``1 - mv_alpha`` (0.999): score = sqrt(d2 / quantile). Below ``mv_min_entities``
    (8) entities with data, or with fewer than 5 entities per metric for the covariance, nothing
    is said / the covariance is the identity. Evidence ranks metrics by their share of d2.
    """
    from scipy.stats import chi2

    need = config.mv_min_entities if min_entities is None else int(min_entities)
    summaries = {e: {m: _summary(v, at, config.peer_window_s if window_s is None else window_s) for m, v in row.items()}
                 for e, row in samples.items()}
    table = {e: {m: v[0] for m, v in row.items()} for e, row in summaries.items()}
    counts: dict[str, int] = {}
    for row in table.values():
        for m, v in row.items():
            counts[m] = counts.get(m, 0) + int(math.isfinite(v))
    metrics = sorted(m for m, c in counts.items() if c >= max(need, 2))
    entities = sorted(e for e in table if any(math.isfinite(table[e].get(m, math.nan)) for m in metrics))
    if not metrics or len(entities) < max(need, 2):
        return []
    x = np.array([[table[e].get(m, math.nan) for m in metrics] for e in entities])
    medians, scales = np.zeros(len(metrics)), np.ones(len(metrics))
    for j in range(len(metrics)):
        medians[j], s = _robust(x[np.isfinite(x[:, j]), j])
        scales[j] = max(s, 0.01 * abs(medians[j]), 1e-9)
    z = np.where(np.isfinite(x), (x - medians) / scales, 0.0)  # a missing metric sits at the median
    z = np.clip(z, -1e6, 1e6)
    p = len(metrics)
    location, cov = np.zeros(p), np.eye(p)
    if len(entities) >= 5 * p:
        from sklearn.covariance import MinCovDet
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                mcd = MinCovDet(random_state=0).fit(z)
            if np.isfinite(mcd.covariance_).all() and np.isfinite(mcd.location_).all():
                location, cov = mcd.location_, mcd.covariance_
        except (ValueError, np.linalg.LinAlgError):
            pass  # degenerate data: the identity (plain robust z distance) it is
    cov = (1 - config.mv_shrinkage) * cov + config.mv_shrinkage * np.eye(p)
    precision = np.linalg.inv(cov)
    centred = z - location
    parts = centred * (centred @ precision)  # per-metric shares; each row sums to d2
    d2 = parts.sum(axis=1)
    cut = float(chi2.ppf(1 - config.mv_alpha, p))
    out: list[Finding] = []
    for i, e in enumerate(entities):
        if not d2[i] > cut:
            continue
        order = sorted(range(p), key=lambda j: (-parts[i, j], -abs(z[i, j]), metrics[j]))
        top = order[0]
        ranked = tuple(Evidence(metrics[j], f"#{r + 1}: robust z {z[i, j]:+.1f} against the fleet, {parts[i, j] / d2[i]:.0%} "
                                             f"of the distance", _opt(x[i, j]), float(medians[j]), float(at))
                       for r, j in enumerate(order))
        used = [summaries[e][m] for m in metrics if m in summaries[e] and math.isfinite(summaries[e][m][0])]
        out.append(Finding(
            "multivariate_outliers", "MULTIVARIATE_OUTLIER", e, (min(u[1] for u in used), max(u[2] for u in used)),
            metrics[top], _opt(x[i, top], 0.0),
            (float(medians[top] - 3 * scales[top]), float(medians[top] + 3 * scales[top])), float(math.sqrt(d2[i] / cut)),
            "warning",
            f"{e.label()} is unlike the other {len(entities) - 1} across {p} metrics (distance {math.sqrt(d2[i]):.1f}, "
            f"cut {math.sqrt(cut):.1f}), mostly {metrics[top]} at {_num(x[i, top])} vs a fleet median of {_num(medians[top])}; "
            f"compare it with a healthy sibling.", ranked))
    return sorted(out, key=_order)


# -- 4. peer outliers ----------------------------------------------------------------------------
def peer_outliers(values: Mapping[Entity, Series | float], metric: str, at: float, *, threshold: float | None = None,
                  direction: str = "both", window_s: float | None = None,
                  config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Members unlike their peers (GPUs of one node, replicas of one workload) on one metric, at ``at``.

    Each member is compared with the *others* (leave one out): flagged when ``|x - median|`` exceeds
    ``threshold`` (3.5) x MAD x 1.4826, ``peer_min_rel_diff`` (10%) of the median and
    ``peer_min_abs_diff``, the largest of the three being the bar (score = difference / bar). The
    floors keep near-identical peers, whose MAD is tiny, from flagging noise. Needs
    ``peer_min_peers`` (3) others with data. ``direction``: ``both``, ``high`` or ``low``.
    """
    if direction not in ("both", "high", "low"):
        raise ValueError(f"peer_outliers direction: expected both, high or low, got {direction!r}")
    threshold = config.peer_threshold if threshold is None else float(threshold)
    window = config.peer_window_s if window_s is None else float(window_s)
    summaries = {e: _summary(v, at, window) for e, v in values.items()}
    summary = {e: v[0] for e, v in summaries.items()}
    members = sorted(e for e, v in summary.items() if math.isfinite(v))
    if len(members) < config.peer_min_peers + 1:
        return []
    out: list[Finding] = []
    for e in members:
        x = summary[e]
        others = np.array([summary[o] for o in members if o != e])
        med, scale = _robust(others)
        bar = max(threshold * scale, config.peer_min_rel_diff * abs(med), config.peer_min_abs_diff, 1e-12)
        diff = x - med
        if abs(diff) <= bar or (direction == "high" and diff < 0) or (direction == "low" and diff > 0):
            continue
        side = "above" if diff > 0 else "below"
        z = diff / scale if scale > 0 else math.inf
        out.append(Finding(
            "peer_outliers", "PEER_OUTLIER", e, summaries[e][1:],
            metric, float(x), (med - bar, med + bar), float(abs(diff) / bar), "warning",
            f"{e.label()} has {metric} {_num(x)}, {side} its {len(others)} peers' median {_num(med)} "
            f"({abs(diff) / abs(med):.0%} off) at {_when(at)}; compare it with a sibling before blaming the workload."
            if med else f"{e.label()} has {metric} {_num(x)}, {side} its {len(others)} peers' median {_num(med)} at {_when(at)}.",
            (Evidence(metric, f"robust z {z:+.1f} against {len(others)} peers" if math.isfinite(z)
                      else f"{len(others)} peers all at {_num(med)}", float(x), float(med), float(at)),)))
    return out


# -- 5. GPU faults (the rules and the XID catalogue live in aiops.xid) ---------------------------
def gpu_faults(gpus: Mapping[Entity, Mapping[str, Series]], *, min_steps: int | None = None,
               config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Hardware faults per GPU, by rule.

    Metric names as in :data:`aiops.xid.GPU_METRICS` / :data:`aiops.xid.MEMORY_PAIRS` (ours, DCGM's, the NVML exporter's).

    * ``XID_<n>``: the last-XID metric changes to a non-zero code (or is non-zero at its first
      sample); the window runs while it stays; severity from :mod:`aiops.xid`. Score 2 critical, 1 warning.
    * ``ROW_REMAP_FAILURE``: the row-remap failure flag > 0 (the GPU cannot repair its memory), critical.
    * ``ECC_UNCORRECTABLE``: the volatile double-bit ECC counter rises (a fall is a driver reload), critical.
    * ``THERMAL_THROTTLE``: thermal throttle bits (:func:`aiops.xid.throttle_kind`) or temperature >=
      ``slowdown_temp_c`` for ``gpu_min_steps`` (3) samples; ``POWER_THROTTLE``: power cap or power brake
      bits, for as long (warning for the hardware power brake, info for the software cap alone, which
      is routine at full load); ``GPU_MEMORY_FULL``: used / (used + free) >= 0.95 as long. Score =
      samples / ``gpu_min_steps`` (temperature: 1 + degrees over / 5).
    """
    from aiops.xid import gpu_fault_findings  # here, not at the top: aiops.xid builds on this module's helpers

    return gpu_fault_findings(gpus, min_steps=min_steps, config=config)


# -- 6. SLO burn and latency ---------------------------------------------------------------------
def slo_burn(bad: Series | tuple[Series, Series], objective: float, *, entity: Entity = Entity(), metric: str | None = None,
             windows: Sequence[BurnWindow] | None = None, config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Multiwindow, multi-burn-rate SLO alerts (Google SRE workbook, "Alerting on SLOs").

    ``bad`` is a bad-event ratio per step, or ``(bad, total)`` event counts per step. The burn rate
    over a window is its bad ratio divided by the error budget ``1 - objective``. An alert pair
    fires at a time when *both* its long and short window burn at >= ``factor``: the long window
    makes it significant, the short one makes it stop soon after the burn does. Defaults: 1 h & 5 min
    at 14.4x (critical), 6 h & 30 min at 6x (warning). A window needs ``slo_min_coverage`` of its
    steps observed. One finding per pair per run of firing steps; score = min(long, short) / factor.
    """
    if not 0 < objective < 1:
        raise ValueError(f"SLO objective must lie in (0, 1), got {objective}")
    ratio_series = bad[0] if isinstance(bad, tuple) else bad
    metric = metric or ratio_series.key
    times = _times(ratio_series)
    if isinstance(bad, tuple):
        num, den = _clean(bad[0].values), _align(bad[1], times)
        ok = np.isfinite(num) & np.isfinite(den) & (den >= 0) & (num >= 0)
    else:
        num = _clean(ratio_series.values)
        ok = np.isfinite(num) & (num >= 0)
        den = np.ones(len(num))
    num, den = np.where(ok, num, 0.0), np.where(ok, den, 0.0)
    budget = 1.0 - objective
    out: list[Finding] = []
    for w in (config.burn_windows if windows is None else windows):
        long_burn, long_cov = _rolling_burn(num, den, ok, w.long_s, ratio_series.step, budget)
        short_burn, short_cov = _rolling_burn(num, den, ok, w.short_s, ratio_series.step, budget)
        judged = (long_cov >= config.slo_min_coverage) & (short_cov >= config.slo_min_coverage)
        firing = judged & (long_burn >= w.factor) & (short_burn >= w.factor)
        for first, last, count in _runs(firing, judged, 0):
            seg = np.minimum(long_burn, short_burn)[first:last + 1]
            worst = first + int(np.argmax(seg))
            lb, sb = float(long_burn[worst]), float(short_burn[worst])
            out.append(Finding(
                "slo_burn", "SLO_BURN", entity, (times[first], times[last]), metric, lb, (0.0, w.factor),
                float(min(lb, sb) / w.factor), w.severity,
                f"{entity.label()} is burning its {objective * 100:.6g}% SLO's error budget {_num(lb)}x faster than sustainable over "
                f"{_dur(w.long_s)} ({_num(sb)}x over {_dur(w.short_s)}; alert at {w.factor:g}x) since {_when(times[first])}: "
                f"at this rate the {_dur(config.slo_period_s)} budget lasts {_dur(config.slo_period_s / lb)}; "
                f"look at recent rollouts and failing requests.",
                (Evidence(metric, f"burn rate over {_dur(w.long_s)}", lb, w.factor, float(times[first])),
                 Evidence(metric, f"burn rate over {_dur(w.short_s)}", sb, w.factor, float(times[first])))))
    return sorted(out, key=_order)


def _rolling_burn(num: np.ndarray, den: np.ndarray, ok: np.ndarray, window_s: float, step: float,
                  budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Burn rate and observed share of the window ending at each step (a partial window at the start
    of the series counts its missing steps as unobserved)."""
    w = max(1, int(round(window_s / step)))
    idx = np.arange(len(num))
    lo = np.maximum(idx - w + 1, 0)

    def rolling(a: np.ndarray) -> np.ndarray:
        c = np.concatenate(([0.0], np.cumsum(a)))
        return c[idx + 1] - c[lo]

    sums_n, sums_d, cover = rolling(num), rolling(den), rolling(ok.astype(float)) / w
    with np.errstate(all="ignore"):
        burn = np.where(sums_d > 0, sums_n / np.where(sums_d > 0, sums_d, 1.0) / budget, np.nan)
    return burn, np.where(sums_d > 0, cover, 0.0)


def latency_regression(series: Series, threshold_seconds: float | None = None, *, entity: Entity = Entity(),
                       metric: str | None = None, config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """p95/p99 latency stepped up against its own trailing baseline (or above ``threshold_seconds``).

    At each step, the median of the last ``latency_recent_steps`` (5) is compared with the median
    and MAD of the ``latency_baseline_steps`` (60) before them: a regression is a rise of more than
    ``latency_z`` (4) robust sigmas *and* ``latency_min_rel_increase`` (20%); medians make one slow
    scrape irrelevant. With ``threshold_seconds``, the test is instead "recent median above it". A
    window needs half its samples. A lasting regression stops firing once it fills the baseline.
    """
    metric = metric or series.key
    values, times = _clean(series.values), _times(series)
    k, b = max(1, config.latency_recent_steps), max(2, config.latency_baseline_steps)
    n = len(values)
    if n < k + (0 if threshold_seconds is not None else b):
        return []
    from numpy.lib.stride_tricks import sliding_window_view
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        recent = np.full(n, np.nan)
        rw = sliding_window_view(values, k)
        enough = np.isfinite(rw).sum(axis=1) * 2 >= k
        recent[k - 1:] = np.where(enough, np.nanmedian(rw, axis=1), np.nan)
        base_med, base_scale = np.full(n, np.nan), np.full(n, np.nan)
        if n >= k + b:
            bw = sliding_window_view(values[:n - k], b)
            enough_b = np.isfinite(bw).sum(axis=1) * 2 >= b
            med = np.nanmedian(bw, axis=1)
            mad = np.nanmedian(np.abs(bw - med[:, None]), axis=1) * MAD_TO_SIGMA
            base_med[k + b - 1:] = np.where(enough_b, med, np.nan)
            base_scale[k + b - 1:] = np.where(enough_b, mad, np.nan)
    if threshold_seconds is not None:
        bar = np.full(n, float(threshold_seconds))
        judged = np.isfinite(recent)
    else:
        bar = base_med + np.maximum(config.latency_z * base_scale, config.latency_min_rel_increase * np.abs(base_med))
        bar = np.where(bar > base_med, bar, base_med + 1e-12)
        judged = np.isfinite(recent) & np.isfinite(bar)
    flag = judged & (recent > np.where(judged, bar, np.inf))
    out = []
    for first, last, count in _runs(flag, judged, 0):
        worst = first + int(np.argmax(np.where(flag[first:last + 1], recent[first:last + 1], -np.inf)))
        start = max(0, first - k + 1)
        baseline = float(base_med[first]) if np.isfinite(base_med[first]) else None
        floor = base_med[worst] if threshold_seconds is None else 0.0
        rise, room = recent[worst] - floor, max(bar[worst] - floor, 1e-12)
        against = (f"the {_num(threshold_seconds)} s threshold" if threshold_seconds is not None
                   else f"a baseline median of {_num(base_med[first])} s over the preceding {b} samples")
        out.append(Finding(
            "latency_regression", "LATENCY_REGRESSION", entity, (times[start], times[last]), metric, float(recent[worst]),
            (float(base_med[worst]) if np.isfinite(base_med[worst]) else 0.0, float(bar[worst])), float(max(rise / room, 0.0)),
            "warning",
            f"{metric} on {entity.label()} rose to a median of {_num(recent[worst])} s over {k} samples from "
            f"{_when(times[start])}, against {against}; check recent rollouts, saturation and queueing.",
            (Evidence(metric, f"median of the last {k} samples", float(recent[first]), baseline, float(times[start])),)))
    return out


# -- 7. stale metrics ----------------------------------------------------------------------------
def stale_metrics(series: Mapping[str, Series | None] | Mapping[Entity, Mapping[str, Series | None]], now: float,
                  max_age_seconds: float, *, entity: Entity = Entity()) -> list[Finding]:
    """``STALE_METRICS`` when a series' newest real sample is older than ``max_age_seconds``;
    ``METRICS_MISSING`` when it has none (None, empty, or all gaps). Flat ``{metric: Series}`` for
    ``entity``, or ``{Entity: {metric: Series}}``. Score = age / max_age (1.0 for missing).

    The threshold is the caller's: a few scrape intervals (a stale exporter looks like calm data,
    so every other detector would go quiet on it).
    """
    nested = {entity: series} if not any(isinstance(k, Entity) for k in series) else series
    out = []
    for e in sorted(nested):
        for name in sorted(nested[e]):
            s = nested[e][name]
            values = _clean(s.values) if s is not None else np.zeros(0)
            idx = np.flatnonzero(np.isfinite(values))
            if not len(idx):
                start = min(float(s.start), float(now)) if s is not None and math.isfinite(s.start) else float(now)
                out.append(Finding("stale_metrics", "METRICS_MISSING", e, (start, float(now)), name, math.nan, None, 1.0,
                                   "warning", f"{name} for {e.label()} has no data at {_when(now)}: check the exporter and "
                                   f"the query; detectors that need it are blind.",
                                   (Evidence(name, "no samples", None, None, None),)))
                continue
            last = float(s.start + idx[-1] * s.step)
            age = float(now) - last
            if age > max_age_seconds:
                out.append(Finding("stale_metrics", "STALE_METRICS", e, (min(last, float(now)), float(now)), name,
                                   float(values[idx[-1]]), None, float(age / max(max_age_seconds, 1e-9)), "warning",
                                   f"{name} for {e.label()} last reported {_dur(age)} ago ({_when(last)}), more than "
                                   f"{_dur(max_age_seconds)}: check the exporter or scrape target.",
                                   (Evidence(name, "age of the newest sample", age, float(max_age_seconds), last),)))
    return out


# -- 8. forecast drift ---------------------------------------------------------------------------
def forecast_drift(status_by_workload: Mapping[str, DriftStatus], now: float, *,
                   config: DetectorConfig = DEFAULT_CONFIG) -> list[Finding]:
    """A ``FORECAST_DRIFT`` finding for each status that is drifting or asks for a retrain.

    The judgement (ratio threshold, hysteresis, minimum points) is the DriftMonitor's; here the
    score is ``ratio / drift_threshold`` (1.5, the monitor's default) and the summary quotes its reason.
    """
    out = []
    for workload in sorted(status_by_workload):
        s = status_by_workload[workload]
        if not (s.drifting or s.retrain):
            continue
        ratio = s.ratio if s.ratio is not None and math.isfinite(s.ratio) else None
        at = float(s.at) if math.isfinite(s.at) else float(now)
        out.append(Finding(
            "forecast_drift", "FORECAST_DRIFT", Entity(workload=workload), (min(at, float(now)), float(now)),
            f"forecast_error_lead_{s.lead}", ratio if ratio is not None else math.nan, (0.0, config.drift_threshold),
            ratio / config.drift_threshold if ratio is not None else 1.0, "warning",
            f"Forecasts for workload {workload} at lead {s.lead} are " + ("drifting" if s.drifting else "due a retrain")
            + f": {s.reason}; until fixed, trust the reactive floor over the forecast.",
            (Evidence(f"forecast_mae_lead_{s.lead}", f"live MAE vs {s.baseline_source or 'no'} baseline",
                      s.live_mae, s.baseline_mae, at),)))
    return out


# -- helpers -------------------------------------------------------------------------------------
def _clean(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array[~np.isfinite(array)] = np.nan
    return array


def _times(series: Series) -> np.ndarray:
    return series.start + np.arange(len(series)) * series.step


def _align(series: Series, times: np.ndarray) -> np.ndarray:
    """``series`` at ``times``: the sample within half a step of each time, else NaN."""
    values = _clean(series.values)
    k = np.rint((times - series.start) / series.step)
    ok = (k >= 0) & (k < len(values)) & (np.abs(times - series.start - k * series.step) <= series.step / 2)
    out = np.full(len(times), np.nan)
    out[ok] = values[k[ok].astype(int)]
    return out


def _runs(flag: np.ndarray, valid: np.ndarray, max_gap: int) -> list[tuple[int, int, int]]:
    """``(first, last, count)`` of each run of flagged samples: an observed unflagged sample ends a run,
    and so do more than ``max_gap`` gaps in a row; gaps never count and never start or end a run."""
    runs, first, last, count, gap = [], -1, -1, 0, 0
    for i in range(len(flag)):
        if flag[i]:
            if first < 0:
                first = i
            last, count, gap = i, count + 1, 0
        elif first >= 0 and (valid[i] or gap + 1 > max_gap):
            runs.append((first, last, count))
            first, count, gap = -1, 0, 0
        elif first >= 0:
            gap += 1
    if first >= 0:
        runs.append((first, last, count))
    return runs


def _robust(x: np.ndarray) -> tuple[float, float]:
    """Median and MAD x 1.4826 of the finite values (0, 0 when none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return 0.0, 0.0
    med = float(np.median(x))
    return med, float(np.median(np.abs(x - med)) * MAD_TO_SIGMA)


def _summary(value: float | Series, at: float, window_s: float) -> tuple[float, float, float]:
    """``(value, first, last)``: a float as is, at ``at``; a Series as the median of its samples in
    ``(at - window_s, at]`` and the times of the first and last of them (NaN value if none)."""
    if not isinstance(value, Series):
        return (float(value) if value is not None and math.isfinite(value) else math.nan), float(at), float(at)
    times, values = _times(value), _clean(value.values)
    inside = (times > at - window_s) & (times <= at) & np.isfinite(values)
    if not inside.any():
        return math.nan, float(at), float(at)
    return float(np.median(values[inside])), float(times[inside][0]), float(times[inside][-1])


def _opt(value: float, default: float | None = None) -> float | None:
    return float(value) if math.isfinite(value) else default


def _order(f: Finding) -> tuple:
    return (f.window[0], f.entity, f.code, f.metric)


def _when(t: float) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"t={t:g}"


def _num(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def _dur(seconds: float) -> str:
    seconds = float(seconds)
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
