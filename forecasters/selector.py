"""``auto``: pick the best model per series by rolling-origin backtest, fall back when one fails.

Every candidate is fitted on the same history and calibrated on the same origins (the base class
does a rolling-origin backtest over the history's last stretch for its conformal calibration), so
their backtest errors are comparable; the candidate with the lowest error, scaled by the in-sample
one-step naive error (a MASE) and averaged over the calibration horizon, wins. With ``per_lead``
(the default), each lead is then answered by the candidate whose backtest was best *at that lead*
(on bursty series the last value often wins the next step and a seasonal model the hour after).
The forecast's ``model`` reads ``auto/<winner>``, or ``auto/naive+profile`` when leads are split.

A candidate that raises, or that could only answer through its own fallback (too little history
for it), is left out of the comparison, and the reason is kept. If the winner fails when asked to
predict, the next best answers and ``fell_back`` says so. With no calibrated candidate at all
(very short history), the simplest one that answered is used, and ``fell_back`` says why.

The default candidates are the cheap ones that suit fleets of thousands of workloads (``profile``
fits in milliseconds); heavier models (``ets``, ``sarimax``, ``gbm``, ``torch-mlp``) are added with
``candidates``, at their fitting cost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from forecasters.base import Fitted, Forecaster, ForecastInputError, Prepared
from forecasters.series import Forecast, Series

DEFAULT_CANDIDATES = ("naive", "seasonal-naive", "profile")


class Selector(Forecaster):
    """Per-series model selection by backtest (see the module docstring)."""

    name = "auto"
    description = "picks per series the candidate with the best rolling-origin backtest"

    def __init__(self, candidates: tuple[str, ...] | list[str] = DEFAULT_CANDIDATES,
                 candidate_config: dict | None = None, per_lead: bool = True, **base) -> None:
        super().__init__(**base)
        from forecasters import MODELS, build

        names = tuple(candidates)
        if not names:
            raise ForecastInputError("auto: needs at least one candidate model")
        for name in names:
            if name == self.name or name not in MODELS:
                raise ForecastInputError(f"auto: unknown candidate {name!r}; choose from "
                                         f"{', '.join(m for m in MODELS if m != self.name)}")
        self.candidate_names = names
        self.candidate_config = dict(candidate_config or {})
        self.per_lead = bool(per_lead)
        # Candidates share the selector's quantiles and calibration settings: their backtests must be
        # comparable, and a lead taken from any of them must carry every level asked for.
        self.candidates = [build(n, {**self.candidate_config.get(n, {}), **self._base_config()}) for n in names]

    def config(self) -> dict:
        return {**self._base_config(), "candidates": list(self.candidate_names), "candidate_config": self.candidate_config,
                "per_lead": self.per_lead}

    # The selector delegates; it has no parameters of its own.
    def _estimate(self, y, start, step):  # pragma: no cover - never called: fit() is overridden
        raise NotImplementedError

    def _paths(self, params, y, start, step, origins, horizon):  # pragma: no cover
        raise NotImplementedError

    def min_history(self, step: float) -> int:
        return 1

    def context_steps(self, step: float) -> int:
        return max(c.context_steps(step) for c in self.candidates)

    def export(self) -> tuple[dict, dict[str, bytes]]:
        state, blobs = {}, {}
        for name, model in zip(self.candidate_names, self.candidates):
            state[name], own = model.export()
            blobs.update({f"{name}--{blob}": data for blob, data in own.items()})
        return {"candidates": state}, blobs

    def restore(self, state: dict, blobs: dict[str, bytes]) -> None:
        for name, model in zip(self.candidate_names, self.candidates):
            prefix = f"{name}--"
            model.restore(state.get("candidates", {}).get(name, {}),
                          {k[len(prefix):]: v for k, v in blobs.items() if k.startswith(prefix)})

    def train(self, histories: list[Series]) -> dict:
        return {name: model.train(histories) for name, model in zip(self.candidate_names, self.candidates)}

    def fit_prepared(self, data: Prepared) -> Fitted:
        """Every candidate fitted on the one prepared history (see the module docstring)."""
        ranked: list[tuple[float, int, Fitted]] = []
        notes: list[str] = []
        answered: list[Fitted] = []
        for order, model in enumerate(self.candidates):
            try:
                fitted = model.fit_prepared(data)
            except ForecastInputError:
                raise  # bad input is bad for every model: say so once
            except Exception as exc:  # noqa: BLE001 - a broken candidate must not take the forecast down
                notes.append(f"{model.name} failed: {type(exc).__name__}: {str(exc)[:100]}")
                continue
            answered.append(fitted)
            if fitted.model != model.name and fitted.fell_back and f"{model.name} failed:" in fitted.fell_back:
                notes.append(fitted.fell_back.split(";")[0])  # it broke (rather than lacking history): say so
            if fitted.calibration is None or fitted.model != model.name:
                continue  # uncalibrated, or answered through its own fallback: no backtest of its own
            ranked.append((fitted.calibration.score, order, fitted))
        if not answered:
            raise ForecastInputError(f"series {data.key!r}: every candidate failed ({'; '.join(notes)})")
        if not ranked:
            first = answered[0]
            why = "; ".join(notes + ([first.fell_back] if first.fell_back else []))
            return SelectedFitted(**_fields(first), model=f"auto/{first.model}", fell_back=why or None,
                                  alternatives=tuple(answered[1:]), scores={})
        ranked.sort(key=lambda item: (item[0], item[1]))
        best = ranked[0][2]
        scores = {f.model: round(score, 4) for score, _, f in ranked}
        fitted_ranked = [f for _, _, f in ranked]
        leads = _lead_winners(fitted_ranked) if self.per_lead else ()
        return SelectedFitted(**_fields(best), model=f"auto/{_label(fitted_ranked, leads)}",
                              fell_back="; ".join(notes) or None,
                              alternatives=tuple(fitted_ranked[1:]), scores=scores, lead_models=leads)


def _lead_winners(ranked: list[Fitted]) -> tuple[int, ...]:
    """Per calibrated lead, the index (into ``ranked``) of the candidate with the lowest backtest
    MAE at that lead; ``()`` when the overall winner is best at every lead."""
    maes = [f.calibration.mae for f in ranked]
    n = min(m.shape[0] for m in maes)
    if len(ranked) < 2 or n == 0:
        return ()
    table = np.stack([m[:n] for m in maes])  # [candidate, lead]; ties go to the better-ranked one
    winners = tuple(int(i) for i in np.argmin(table, axis=0))
    return () if all(w == 0 for w in winners) else winners


def _label(ranked: list[Fitted], leads: tuple[int, ...]) -> str:
    if not leads:
        return ranked[0].model
    order = list(dict.fromkeys(leads))  # the models in the order their leads come
    return "+".join(ranked[i].model for i in order)


def _fields(fitted: Fitted) -> dict:
    return {"forecaster": fitted.forecaster, "data": fitted.data, "params": fitted.params,
            "calibration": fitted.calibration}


@dataclass(frozen=True)
class SelectedFitted(Fitted):
    """The winner, with the runners-up: per lead, the candidate whose backtest was best there
    answers (``lead_models``), and if the winner fails at predict time a runner-up answers."""

    alternatives: tuple[Fitted, ...] = ()
    scores: dict | None = None  # candidate -> backtest score (MASE over the calibration horizon)
    lead_models: tuple[int, ...] = ()  # per calibrated lead: 0 = the winner, i = alternatives[i - 1]

    def predict(self, horizon: int) -> Forecast:
        try:
            forecast = Fitted.predict(self, horizon)
        except ForecastInputError:
            raise
        except Exception as exc:  # noqa: BLE001
            for alt in self.alternatives:
                try:
                    f = alt.predict(horizon)
                except Exception:  # noqa: BLE001
                    continue
                why = f"{self.forecaster.name} failed to predict ({type(exc).__name__}); {alt.model} answered"
                return replace(f, model=f"auto/{f.model}", fell_back=why)
            raise
        if not self.lead_models:
            return replace(forecast, model=self.model)
        return self._per_lead(forecast, horizon)

    def _per_lead(self, forecast: Forecast, horizon: int) -> Forecast:
        """Each lead from the candidate that backtested best at that lead (the last calibrated
        lead's choice holds beyond the calibration horizon)."""
        picks = np.array(self.lead_models + (self.lead_models[-1],) * max(0, horizon - len(self.lead_models)))[:horizon]
        stacked = {q: np.array(v) for q, v in forecast.quantiles.items()}
        for index in set(picks.tolist()) - {0}:
            try:
                other = self.alternatives[index - 1].predict(horizon)
            except Exception:  # noqa: BLE001 - the winner's values stand at those leads
                continue
            mask = picks == index
            for q in stacked:
                stacked[q][mask] = other.quantiles[q][mask]
        return replace(forecast, quantiles=stacked, model=self.model)

    def update(self, history: Series) -> "SelectedFitted":
        keep = sorted(set(self.lead_models) - {0} | {1}) if self.alternatives else []
        keep = [i for i in keep if i <= len(self.alternatives)]
        remap = {0: 0, **{old: new + 1 for new, old in enumerate(keep)}}
        return replace(Fitted.update(self, history),
                       alternatives=tuple(self.alternatives[i - 1].update(history) for i in keep),
                       lead_models=tuple(remap[i] for i in self.lead_models))
