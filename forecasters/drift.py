"""Drift detection for our own forecasts: is the model still as good live as it was in its backtest?

A forecaster is chosen and calibrated on history (:class:`forecasters.base.Calibration` keeps its
backtest MAE per lead). Demand changes: a new client, a release that makes requests cheaper, a
holiday. Then the model quietly keeps predicting the old world and the predictive policy sizes
capacity for it. :class:`DriftMonitor` watches for that, per workload:

* :meth:`DriftMonitor.record` remembers each issued forecast's median at a few configured leads
  (e.g. one step and the replica lead time) and its 90% interval when the forecast has one.
* :meth:`DriftMonitor.observe` scores the remembered forecasts that target the observed time
  (within half a step): absolute error, whether the value fell in the interval, and the error a
  naive forecast (the value one lead earlier) would have made on the same observation.
* :meth:`DriftMonitor.status` compares the live MAE over a rolling window with a baseline and
  says, in a sentence a human can act on, whether the forecasts are drifting and whether the
  model should be retrained. :meth:`DriftMonitor.quality_gate` is the one bit a policy needs.

Design choices, and why:

* **Pure and deterministic.** No clocks and no I/O: every call takes its time (``now``,
  ``issued_at``, ``timestamp``) explicitly, so the simulation and the live agent drive the same
  code, a replay gives the same decisions, and the tests need no sleeping. Each key has a clock
  that never runs backwards (the latest time seen), so a late or replayed call cannot undo a
  decision already made. Each call that takes a time advances that key's state machine to it.
* **A rolling window, not all history.** Live MAE is taken over ``window_s`` (3 h by default):
  long enough to average out noise, short enough to notice a change within the hour. Forecasts
  and scored points older than the window are dropped, and every buffer is a bounded deque, so
  memory stays flat however long the agent runs.
* **A ratio to a baseline.** "MAE 40 rps" means nothing without a yardstick: it is excellent for
  a 5,000 rps service and terrible for a 50 rps one. The yardstick is the backtest MAE at the same
  lead (:meth:`DriftMonitor.set_baseline`, :func:`baseline_from_calibration`).
* **A naive fallback baseline.** A workload with no backtest yet (a new model, a restart without
  the registry) is still judged: against the MAE a naive forecast (the value one lead earlier)
  makes on the *same* observations. A model worse than naive by the threshold is not worth
  trusting whatever its backtest said. The reason text says which baseline was used.
* **Hysteresis.** Drift turns on when the ratio exceeds ``threshold`` and off only once it falls
  below ``recover`` (lower). With a single threshold, a ratio wandering around it would flip the
  quality gate every few minutes and the policy between predictive and reactive sizing with it;
  the gap between the two levels absorbs that noise. Neither turns on or off on fewer than
  ``min_points`` scored points: a handful of errors is an anecdote, not a trend.
* **Retrain is a latched trigger.** When drift (or an interval that covers less than
  ``coverage_floor`` of observations) has persisted for ``retrain_after_s``, ``retrain`` becomes
  true and stays true until :meth:`DriftMonitor.acknowledge_retrain`: one request per episode,
  not one per status call. Acknowledging forgets the errors (and pending forecasts) of the model
  that was just replaced, so the new model is judged on its own forecasts; the quality gate stays
  closed until ``min_points`` of them show the error back below ``recover``.

State survives a restart as plain JSON (:meth:`DriftMonitor.to_json`, :meth:`DriftMonitor.from_json`),
and :meth:`DriftMonitor.metrics` / :meth:`DriftMonitor.prometheus_text` export gauges for
``/metrics``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

from forecasters.base import Calibration
from forecasters.series import Forecast

_JSON_VERSION = 1
_LOWER_LEVELS = (0.01, 0.10)  # a lower level in this range stands for the 5% quantile
_UPPER_LEVELS = (0.90, 0.99)  # an upper level in this range stands for the 95% quantile

_HELP: dict[str, str] = {
    "aiops_forecast_live_mae": "Mean absolute error of the median forecast over the rolling window (demand units).",
    "aiops_forecast_baseline_mae": "MAE the live error is compared with: the backtest's at this lead, "
                                   "or a naive forecast's (source label).",
    "aiops_forecast_error_ratio": "Live MAE divided by the baseline MAE.",
    "aiops_forecast_scored_points": "Forecast points scored against observations in the rolling window.",
    "aiops_forecast_interval_coverage": "Fraction of observations inside the forecast's 90% interval over the rolling window.",
    "aiops_forecast_drifting": "1 while the forecasts for this workload and lead are judged to have drifted, else 0.",
    "aiops_forecast_retrain_pending": "1 while a retrain of this workload's model has been requested and not yet acknowledged.",
}


class _Pending(NamedTuple):
    """A remembered forecast point waiting for the observation at ``target``."""

    target: float
    median: float
    lo: float  # NaN when the forecast has no 90% interval
    hi: float
    issued_at: float
    step: float


class _Point(NamedTuple):
    """A scored forecast point."""

    at: float  # the observation's timestamp
    error: float  # |observed - median|
    naive_error: float  # |observed - value one lead earlier|; NaN when that value is unknown
    covered: float  # 1.0 inside the interval, 0.0 outside, NaN when not tracked


@dataclass
class _Lead:
    pending: deque
    scored: deque
    drifting: bool = False


@dataclass
class _Key:
    leads: dict[int, _Lead]
    observations: deque  # (timestamp, value), for the naive baseline
    clock: float = -math.inf
    step: float | None = None
    drift_since: float | None = None
    low_coverage_since: float | None = None
    retrain_pending: bool = False
    retrain_reason: str = ""


@dataclass(frozen=True)
class _Stats:
    n: int
    live: float | None
    baseline: float | None
    source: str | None  # "backtest" or "naive"
    ratio: float | None
    coverage: float | None
    n_coverage: int


@dataclass(frozen=True)
class DriftStatus:
    """How one workload's forecasts at one lead are doing, at time ``at``.

    ``ratio`` is ``live_mae / baseline_mae`` (None until there is something to compare);
    ``coverage_90`` is None when the forecasts carry no 90% interval. ``drifting`` is this lead's
    hysteresis state; ``retrain`` is the workload's latched retrain request (any lead can raise it).
    """

    key: str
    lead: int
    at: float
    live_mae: float | None
    baseline_mae: float | None
    baseline_source: str | None
    ratio: float | None
    n_points: int
    coverage_90: float | None
    drifting: bool
    retrain: bool
    reason: str


def baseline_from_calibration(calibration: Calibration, leads: Iterable[int]) -> dict[int, float]:
    """Backtest MAE per lead (lead ``L`` is ``calibration.mae[L - 1]``), for :meth:`DriftMonitor.set_baseline`.

    Leads beyond the calibration's horizon, or with no finite MAE, are left out: those leads are
    then judged against the naive baseline rather than against a guess.
    """
    mae = [float(v) for v in calibration.mae]
    return {int(lead): mae[lead - 1] for lead in leads if 1 <= lead <= len(mae) and math.isfinite(mae[lead - 1])}


class DriftMonitor:
    """Live forecast error versus its baseline, per workload, with hysteresis and a retrain trigger.

    See the module docstring for the why. ``lead`` is the lead (in forecast steps) that
    :meth:`status` reports by default, typically the replica lead time the policy sizes for;
    ``leads`` are all the leads tracked (``lead`` is always among them). ``baseline`` maps a
    workload to its backtest MAE: one number for every lead, or ``{lead: mae}``. ``unit`` labels
    numbers in the reason text (e.g. ``"rps"``). ``capacity`` caps every buffer per workload and
    lead, a backstop to the window. ``min_baseline_mae`` keeps a perfectly predictable series
    (baseline 0) from dividing by zero; raise it to ignore errors negligible in your units.
    """

    def __init__(
        self,
        baseline: Mapping[str, float | Mapping[int, float]] | None = None,
        lead: int = 1,
        leads: Iterable[int] | None = None,
        window_s: float = 3 * 3600.0,
        threshold: float = 1.5,
        recover: float = 1.2,
        min_points: int = 30,
        retrain_after_s: float = 3600.0,
        coverage_floor: float = 0.75,
        unit: str = "",
        capacity: int = 10_000,
        min_baseline_mae: float = 1e-9,
    ) -> None:
        self.lead = _check_lead_value(lead)
        self.leads = tuple(sorted({_check_lead_value(v) for v in (leads or ())} | {self.lead}))
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if not 0 < recover <= threshold:
            raise ValueError(f"need 0 < recover <= threshold, got recover={recover}, threshold={threshold}")
        if int(min_points) < 1:
            raise ValueError(f"min_points must be >= 1, got {min_points}")
        if not retrain_after_s >= 0:
            raise ValueError(f"retrain_after_s must be >= 0, got {retrain_after_s}")
        if not 0 <= coverage_floor <= 1:
            raise ValueError(f"coverage_floor must lie in [0, 1], got {coverage_floor}")
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not min_baseline_mae > 0:
            raise ValueError(f"min_baseline_mae must be > 0, got {min_baseline_mae}")
        self.window_s = float(window_s)
        self.threshold = float(threshold)
        self.recover = float(recover)
        self.min_points = int(min_points)
        self.retrain_after_s = float(retrain_after_s)
        self.coverage_floor = float(coverage_floor)
        self.unit = str(unit)
        self.capacity = int(capacity)
        self.min_baseline_mae = float(min_baseline_mae)
        self._baselines: dict[str, dict[int, float]] = {}
        self._keys: dict[str, _Key] = {}
        for key, value in (baseline or {}).items():
            self.set_baseline(key, value)

    def config(self) -> dict:
        """Constructor arguments as JSON (the baselines travel in :meth:`to_json`'s state)."""
        return {"lead": self.lead, "leads": list(self.leads), "window_s": self.window_s, "threshold": self.threshold,
                "recover": self.recover, "min_points": self.min_points, "retrain_after_s": self.retrain_after_s,
                "coverage_floor": self.coverage_floor, "unit": self.unit, "capacity": self.capacity,
                "min_baseline_mae": self.min_baseline_mae}

    # -- inputs ----------------------------------------------------------------------------------
    def set_baseline(self, key: str, lead_maes: Mapping[int, float] | float) -> None:
        """The backtest MAE for ``key``: per lead, or one number used at every tracked lead.

        Tracked leads left out keep the naive baseline. Replaces any earlier baseline for ``key``.
        """
        if isinstance(lead_maes, Mapping):
            given = {int(lead): float(v) for lead, v in lead_maes.items()}
        else:
            given = dict.fromkeys(self.leads, float(lead_maes))
        for lead, mae in given.items():
            if not (math.isfinite(mae) and mae >= 0):
                raise ValueError(f"baseline MAE for {key!r} at lead {lead} must be finite and >= 0, got {mae}")
        self._baselines[key] = {lead: mae for lead, mae in given.items() if lead in self.leads}

    def record(self, forecast: Forecast) -> int:
        """Remember ``forecast``'s median (and 90% interval) at each tracked lead within its horizon.

        The median is the 0.5 quantile, or the lowest stored level above it. Returns how many
        points were remembered.
        """
        median = forecast.at_least(0.5)
        interval = _interval_levels(forecast.quantiles)
        state = self._state(forecast.key)
        state.step = float(forecast.step)
        remembered = 0
        for lead in self.leads:
            if lead > forecast.horizon:
                continue
            lo, hi = ((float(forecast.quantiles[interval[0]][lead - 1]), float(forecast.quantiles[interval[1]][lead - 1]))
                      if interval else (math.nan, math.nan))
            target = forecast.issued_at + lead * forecast.step
            state.leads[lead].pending.append(_Pending(target, float(median[lead - 1]), lo, hi,
                                                      float(forecast.issued_at), float(forecast.step)))
            remembered += 1
        self._advance(forecast.key, forecast.issued_at)
        return remembered

    def observe(self, key: str, timestamp: float, value: float) -> int:
        """Score the remembered forecasts for ``key`` that target ``timestamp`` (within half a step).

        A NaN (or infinite) value is a gap: nothing is scored and the forecasts stay pending, so a
        gap never counts as a perfect or a zero observation. Each forecast point is scored once,
        by the first observation in ``[target - step/2, target + step/2)``. Returns how many
        points were scored.
        """
        value, timestamp = float(value), float(timestamp)
        if not math.isfinite(value):
            return 0
        state = self._state(key)
        scored = 0
        for lead, track in state.leads.items():
            hit = [_within(timestamp, p.target, p.step) for p in track.pending]
            if not any(hit):
                continue
            hits = [p for p, h in zip(track.pending, hit) if h]
            track.pending = deque((p for p, h in zip(track.pending, hit) if not h), maxlen=self.capacity)
            for p in hits:
                earlier = _lookup(state.observations, timestamp - lead * p.step, p.step)
                naive = abs(value - earlier) if earlier is not None else math.nan
                covered = math.nan if math.isnan(p.lo) else float(p.lo <= value <= p.hi)
                track.scored.append(_Point(timestamp, abs(value - p.median), naive, covered))
            scored += len(hits)
        state.observations.append((timestamp, value))
        self._advance(key, timestamp)
        return scored

    def acknowledge_retrain(self, key: str, now: float) -> None:
        """The model for ``key`` was retrained (or the request was handled): clear the trigger.

        The errors scored so far and the forecasts issued before ``now`` belong to the replaced
        model, so they are forgotten; drift and coverage are judged afresh on the new model's
        forecasts, and the trigger can fire again only after ``retrain_after_s`` of renewed drift.
        A workload already drifting stays so (quality gate closed) until ``min_points`` new points
        show the error back below ``recover``: a retrained model has to earn trust, too.
        """
        state = self._advance(key, now)
        state.retrain_pending = False
        state.retrain_reason = ""
        state.drift_since = state.low_coverage_since = None
        for track in state.leads.values():
            track.scored.clear()
            track.pending = deque((p for p in track.pending if p.issued_at >= state.clock), maxlen=self.capacity)

    def forget(self, key: str) -> None:
        """Drop everything kept for ``key`` (a workload that was deleted), baseline included."""
        self._keys.pop(key, None)
        self._baselines.pop(key, None)

    # -- outputs ---------------------------------------------------------------------------------
    def status(self, key: str, now: float, lead: int | None = None) -> DriftStatus:
        """How ``key``'s forecasts at ``lead`` (default: the monitor's ``lead``) are doing at ``now``."""
        lead = self._tracked(lead)
        if key not in self._keys:
            return self._status_at(key, lead, now)
        return self._status_at(key, lead, self._advance(key, now).clock)

    def quality_gate(self, key: str, now: float) -> bool:
        """False while the forecasts for ``key`` drift at any tracked lead: do not size from them.

        A workload with nothing recorded passes (there is no evidence against its forecasts).
        """
        if key not in self._keys:
            return True
        return not any(track.drifting for track in self._advance(key, now).leads.values())

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """Gauges ``(name, labels, value)`` for every workload and lead, as of each workload's clock.

        Labels are ``workload`` and ``lead`` (``aiops_forecast_retrain_pending`` is per workload;
        ``aiops_forecast_baseline_mae`` adds ``source``). A value not known yet (no scored points,
        no interval) is left out rather than exported as NaN.
        """
        out: list[tuple[str, dict[str, str], float]] = []
        for key in sorted(self._keys):
            state = self._keys[key]
            for lead in self.leads:
                s = self._status_at(key, lead, state.clock)
                labels = {"workload": key, "lead": str(lead)}
                if s.live_mae is not None:
                    out.append(("aiops_forecast_live_mae", labels, s.live_mae))
                if s.baseline_mae is not None:
                    out.append(("aiops_forecast_baseline_mae", {**labels, "source": str(s.baseline_source)}, s.baseline_mae))
                if s.ratio is not None:
                    out.append(("aiops_forecast_error_ratio", labels, s.ratio))
                out.append(("aiops_forecast_scored_points", labels, float(s.n_points)))
                if s.coverage_90 is not None:
                    out.append(("aiops_forecast_interval_coverage", labels, s.coverage_90))
                out.append(("aiops_forecast_drifting", labels, float(s.drifting)))
            out.append(("aiops_forecast_retrain_pending", {"workload": key}, float(state.retrain_pending)))
        return out

    def prometheus_text(self) -> str:
        """:meth:`metrics` in the Prometheus text exposition format (``# HELP``/``# TYPE`` gauge)."""
        samples = self.metrics()
        lines: list[str] = []
        for name, help_text in _HELP.items():
            family = [(labels, value) for n, labels, value in samples if n == name]
            if not family:
                continue
            lines.append(f"# HELP {name} {_escape_help(help_text)}")
            lines.append(f"# TYPE {name} gauge")
            for labels, value in family:
                rendered = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{rendered}}} {_prometheus_value(value)}")
        return "\n".join(lines) + "\n" if lines else ""

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Configuration, baselines and per-workload state as plain JSON (no NaN, no pickle)."""
        keys = {}
        for key, state in self._keys.items():
            keys[key] = {
                "clock": _jnum(state.clock), "step": state.step, "drift_since": state.drift_since,
                "low_coverage_since": state.low_coverage_since, "retrain_pending": state.retrain_pending,
                "retrain_reason": state.retrain_reason,
                "observations": [[t, v] for t, v in state.observations],
                "leads": {str(lead): {"drifting": track.drifting,
                                      "pending": [[_jnum(x) for x in p] for p in track.pending],
                                      "scored": [[_jnum(x) for x in p] for p in track.scored]}
                          for lead, track in state.leads.items()},
            }
        return {"version": _JSON_VERSION, "config": self.config(),
                "baselines": {key: {str(lead): mae for lead, mae in maes.items()} for key, maes in self._baselines.items()},
                "keys": keys}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DriftMonitor":
        """The monitor :meth:`to_json` saved. Raises ValueError on a document it did not write."""
        if not isinstance(data, Mapping) or data.get("version") != _JSON_VERSION:
            raise ValueError(f"drift state: expected a JSON object with version {_JSON_VERSION}")
        try:
            monitor = cls(**data["config"])
            for key, maes in data["baselines"].items():
                monitor.set_baseline(key, {int(lead): mae for lead, mae in maes.items()})
            for key, saved in data["keys"].items():
                monitor._keys[key] = monitor._restore_key(saved)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"drift state: {type(exc).__name__}: {exc}") from exc
        return monitor

    def _restore_key(self, saved: Mapping[str, Any]) -> _Key:
        state = self._new_key()
        state.clock = _fnum(saved["clock"], -math.inf)
        state.step = None if saved["step"] is None else float(saved["step"])
        state.drift_since = None if saved["drift_since"] is None else float(saved["drift_since"])
        state.low_coverage_since = None if saved["low_coverage_since"] is None else float(saved["low_coverage_since"])
        state.retrain_pending = bool(saved["retrain_pending"])
        state.retrain_reason = str(saved["retrain_reason"])
        state.observations.extend((float(t), float(v)) for t, v in saved["observations"])
        for lead_text, track_saved in saved["leads"].items():
            track = state.leads[int(lead_text)]
            track.drifting = bool(track_saved["drifting"])
            track.pending.extend(_Pending(*(_fnum(x) for x in p)) for p in track_saved["pending"])
            track.scored.extend(_Point(*(_fnum(x) for x in p)) for p in track_saved["scored"])
        return state

    # -- the state machine -----------------------------------------------------------------------
    def _new_key(self) -> _Key:
        return _Key({lead: _Lead(deque(maxlen=self.capacity), deque(maxlen=self.capacity)) for lead in self.leads},
                    deque(maxlen=self.capacity))

    def _state(self, key: str) -> _Key:
        if key not in self._keys:
            self._keys[key] = self._new_key()
        return self._keys[key]

    def _tracked(self, lead: int | None) -> int:
        if lead is None:
            return self.lead
        if lead not in self.leads:
            raise ValueError(f"lead {lead} is not tracked; tracked leads: {', '.join(map(str, self.leads))}")
        return int(lead)

    def _advance(self, key: str, now: float) -> _Key:
        """Move ``key``'s clock to ``now`` (never back), drop what left the window, update drift
        (with hysteresis) per lead, then the workload's retrain trigger."""
        state = self._state(key)
        state.clock = max(state.clock, float(now))
        self._prune(state)
        drifting_leads, low_coverage = [], False
        for lead, track in state.leads.items():
            stats = self._stats(key, lead, state.clock)
            if stats.ratio is not None and stats.n >= self.min_points:
                if not track.drifting and stats.ratio > self.threshold:
                    track.drifting = True
                elif track.drifting and stats.ratio < self.recover:
                    track.drifting = False
            if track.drifting and stats.n >= self.min_points:
                drifting_leads.append(lead)
            if stats.coverage is not None and stats.n_coverage >= self.min_points and stats.coverage < self.coverage_floor:
                low_coverage = True
        state.drift_since = _since(state.drift_since, state.clock, bool(drifting_leads))
        state.low_coverage_since = _since(state.low_coverage_since, state.clock, low_coverage)
        if not state.retrain_pending:
            self._maybe_request_retrain(state, drifting_leads)
        return state

    def _maybe_request_retrain(self, state: _Key, drifting_leads: list[int]) -> None:
        persisted = _duration(self.retrain_after_s)
        if state.drift_since is not None and state.clock - state.drift_since >= self.retrain_after_s:
            which = ", ".join(map(str, drifting_leads))
            state.retrain_pending = True
            state.retrain_reason = f"forecasts at lead {which} have drifted for at least {persisted}"
        elif state.low_coverage_since is not None and state.clock - state.low_coverage_since >= self.retrain_after_s:
            state.retrain_pending = True
            state.retrain_reason = (f"the 90% interval has covered under {self.coverage_floor:.0%} of observations "
                                    f"for at least {persisted}")

    def _prune(self, state: _Key) -> None:
        cutoff = state.clock - self.window_s
        for track in state.leads.values():
            if any(p.target <= cutoff for p in track.pending):
                track.pending = deque((p for p in track.pending if p.target > cutoff), maxlen=self.capacity)
            while track.scored and track.scored[0].at <= cutoff:
                track.scored.popleft()
        keep_s = (max(self.leads) + 1) * state.step if state.step else self.window_s  # enough for the naive lookup
        while state.observations and state.observations[0][0] < state.clock - keep_s:
            state.observations.popleft()

    def _stats(self, key: str, lead: int, at: float) -> _Stats:
        state = self._keys.get(key)
        points = [p for p in state.leads[lead].scored if p.at > at - self.window_s] if state else []
        baseline = self._baselines.get(key, {}).get(lead)
        if baseline is not None:
            source, errors = "backtest", [p.error for p in points]
        else:  # naive baseline: compare on the points where the naive forecast is known, and only those
            source = "naive"
            usable = [p for p in points if not math.isnan(p.naive_error)]
            errors = [p.error for p in usable]
            baseline = math.fsum(p.naive_error for p in usable) / len(usable) if usable else None
        n = len(errors)
        live = math.fsum(errors) / n if n else None
        ratio = live / max(baseline, self.min_baseline_mae) if live is not None and baseline is not None else None
        covered = [p.covered for p in points if not math.isnan(p.covered)]
        coverage = math.fsum(covered) / len(covered) if covered else None
        return _Stats(n, live, baseline, source if baseline is not None else None, ratio, coverage, len(covered))

    def _status_at(self, key: str, lead: int, at: float) -> DriftStatus:
        state = self._keys.get(key)
        stats = self._stats(key, lead, at)
        drifting = bool(state and state.leads[lead].drifting)
        retrain = bool(state and state.retrain_pending)
        reason = self._reason(lead, stats, drifting, state.retrain_reason if retrain else "")
        return DriftStatus(key, lead, float(at), stats.live, stats.baseline, stats.source, stats.ratio, stats.n,
                           stats.coverage, drifting, retrain, reason)

    # -- the sentence for a human ----------------------------------------------------------------
    def _reason(self, lead: int, stats: _Stats, drifting: bool, retrain_reason: str) -> str:
        window = _duration(self.window_s)
        if stats.n == 0:
            head = (f"drifting until {self.min_points} new points at lead {lead} show the error below "
                    f"{self.recover:g}x the baseline (none scored in the last {window} yet)" if drifting
                    else f"no forecasts at lead {lead} scored against observations in the last {window} yet")
        else:
            compared = (f"live MAE {self._amount(stats.live)} over the last {window} ({stats.n} points at lead {lead}) "
                        f"is {_ratio(stats.ratio)} {self._baseline_phrase(stats)}")
            if stats.n < self.min_points:
                head = (f"drifting until {self.min_points} new points show the error below {self.recover:g}x the "
                        f"baseline (have {stats.n}): {compared}" if drifting
                        else f"not judged yet: {compared}, but judging drift needs at least {self.min_points} points")
            elif drifting:
                head = (f"drifting: {compared} (threshold {self.threshold:g}x)" if stats.ratio > self.threshold
                        else f"still drifting: {compared}; drift clears below {self.recover:g}x")
            else:
                head = f"ok: {compared} (threshold {self.threshold:g}x)"
        parts = [head]
        if stats.source == "naive":
            steps = "1 step" if lead == 1 else f"{lead} steps"
            parts.append(f"no backtest baseline for this workload, so the baseline is a naive forecast "
                         f"(the value {steps} earlier) on the same observations")
        if stats.coverage is not None:
            parts.append(f"the 90% interval covered {stats.coverage:.0%} of {stats.n_coverage} observations "
                         f"(floor {self.coverage_floor:.0%})")
        if retrain_reason:
            parts.append(f"retrain requested: {retrain_reason}")
        return "; ".join(parts)

    def _baseline_phrase(self, stats: _Stats) -> str:
        if stats.source == "backtest":
            return f"the backtest's {_num(stats.baseline)}"
        return f"a naive forecast's {_num(stats.baseline)}"

    def _amount(self, value: float) -> str:
        return f"{_num(value)} {self.unit}" if self.unit else _num(value)


# -- small helpers -------------------------------------------------------------------------------
def _check_lead_value(lead: Any) -> int:
    if isinstance(lead, bool) or int(lead) != lead or int(lead) < 1:
        raise ValueError(f"a lead is a whole number of forecast steps >= 1, got {lead!r}")
    return int(lead)


def _interval_levels(quantiles: Mapping[float, Any]) -> tuple[float, float] | None:
    """The stored levels that stand for the 5% and 95% quantiles, or None (coverage not tracked).

    Only levels near 0.05/0.95 qualify: an 80% or 98% interval judged against a 90% floor would
    raise false alarms or hide real ones.
    """
    lower = [q for q in quantiles if _LOWER_LEVELS[0] <= q <= _LOWER_LEVELS[1]]
    upper = [q for q in quantiles if _UPPER_LEVELS[0] <= q <= _UPPER_LEVELS[1]]
    if not lower or not upper:
        return None
    return min(lower, key=lambda q: abs(q - 0.05)), min(upper, key=lambda q: abs(q - 0.95))


def _since(since: float | None, now: float, condition: bool) -> float | None:
    """When a condition that holds ``now`` started (``now`` if it just did); None while it does not hold."""
    if not condition:
        return None
    return now if since is None else since


def _within(timestamp: float, target: float, step: float) -> bool:
    """Whether ``timestamp`` falls in ``[target - step/2, target + step/2)`` (half-open: an
    observation between two targets never scores both)."""
    return -step / 2 <= timestamp - target < step / 2


def _lookup(observations: deque, at: float, step: float) -> float | None:
    """The latest observation within half a step of ``at``, if kept."""
    for timestamp, value in reversed(observations):
        if _within(timestamp, at, step):
            return value
    return None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h" if seconds % 360 == 0 else f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min" if seconds % 6 == 0 else f"{seconds / 60:.1f} min"
    return f"{seconds:g} s"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 100 else f"{value:.3g}x"


def _jnum(value: float) -> float | None:
    """A float for strict JSON: NaN and infinities become null."""
    return value if math.isfinite(value) else None


def _fnum(value: float | None, missing: float = math.nan) -> float:
    return missing if value is None else float(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _prometheus_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
