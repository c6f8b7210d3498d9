"""Values for anomalies: what a detector found, and the incident a human is told about.

These do for anomalies what :class:`policies.types.ScalingDecision` does for scaling: plain frozen
values, built by pure functions (detectors in :mod:`aiops.detectors`, grouping and explanation in
:mod:`aiops.incidents`), rendered by pure functions (:mod:`aiops.notify`), sent by thin adapters,
and round-tripped through JSON so an incident can be stored, replayed and explained again later
(``aiops explain INCIDENT_ID``).

* :class:`Entity`: where something happened, on the node -> GPU -> pod -> workload chain. Empty
  fields are unknown or not applicable (a latency finding has a workload but no GPU).
* :class:`Evidence`: one observed fact behind a finding or a cause, with numbers: the metric, its
  value, its baseline and when it moved.
* :class:`Finding`: what one detector saw in one window for one entity, with a score (1.0 is the
  detector's threshold; higher is more anomalous), a severity and a ``code`` naming the kind of
  anomaly (``XID_79``, ``THERMAL_THROTTLE``, ``SLO_BURN``, ...), which incidents use to rank causes.
* :class:`Cause` and :class:`Action`: a ranked candidate explanation and a suggested remedy.
* :class:`Incident`: findings grouped by entity and time, its ranked causes, what data was
  unavailable, suggested actions, and a fingerprint that depends on *what* and *where*, never on
  wording or exact times, so the same problem seen again deduplicates.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

SEVERITIES = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True, order=True)
class Entity:
    """Where: any field may be empty. ``level`` is the most specific one that is set."""

    node: str = ""
    gpu: str = ""  # the GPU's index or UUID on its node
    pod: str = ""
    workload: str = ""
    namespace: str = ""

    @property
    def level(self) -> str:
        for name in ("gpu", "node", "pod", "workload"):
            if getattr(self, name):
                return name
        return "cluster"

    def label(self) -> str:
        """Short human form: ``node gpu-a/GPU 3``, ``pod llm-7f9c (workload llm)``, ``workload llm``."""
        parts = []
        if self.node:
            parts.append(f"node {self.node}" + (f"/GPU {self.gpu}" if self.gpu else ""))
        elif self.gpu:
            parts.append(f"GPU {self.gpu}")
        if self.pod:
            parts.append(f"pod {self.pod}")
        if self.workload:
            parts.append(f"workload {self.workload}" if not parts else f"({self.workload})")
        return " ".join(parts) or "cluster"

    def contains(self, other: "Entity") -> bool:
        """True when every field set here is equal in ``other`` (node contains its GPUs, ...)."""
        return all(not mine or mine == getattr(other, name) for name, mine in asdict(self).items())


@dataclass(frozen=True)
class Evidence:
    """One fact with its numbers: ``metric`` moved to ``value`` against ``baseline`` at ``at``."""

    metric: str
    message: str
    value: float | None = None
    baseline: float | None = None
    at: float | None = None  # unix seconds when it first moved (None: not known)

    @property
    def change(self) -> float | None:
        """Relative change against the baseline (0.5 = +50%), None when it cannot be said."""
        if self.value is None or self.baseline is None or not math.isfinite(self.value) or not self.baseline:
            return None
        return (self.value - self.baseline) / abs(self.baseline)


@dataclass(frozen=True)
class Finding:
    """What one detector saw. ``window`` is ``(start, end)`` in unix seconds, end inclusive."""

    detector: str  # the function that found it: "forecast_band", "stl_residual", "gpu_fault", ...
    code: str  # the kind of anomaly, stable: "XID_79", "THERMAL_THROTTLE", "SLO_BURN", "STALE_METRICS", ...
    entity: Entity
    window: tuple[float, float]
    metric: str  # the metric (or series key) it is about
    observed: float  # the value that triggered it (worst in the window)
    expected_band: tuple[float, float] | None  # what was expected, when the detector has a band
    score: float  # >= 0; 1.0 is the detector's threshold
    severity: str  # one of SEVERITIES
    summary: str  # one sentence for a human
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}")
        if not self.window[0] <= self.window[1]:
            raise ValueError(f"finding window {self.window}: start after end")

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Finding":
        band = data.get("expected_band")
        return cls(detector=data["detector"], code=data["code"], entity=Entity(**data.get("entity", {})),
                   window=tuple(data["window"]), metric=data["metric"], observed=_float(data["observed"]),
                   expected_band=tuple(_float(b) for b in band) if band is not None else None,
                   score=_float(data["score"]), severity=data["severity"], summary=data["summary"],
                   evidence=tuple(Evidence(**e) for e in data.get("evidence", ())))


@dataclass(frozen=True)
class Cause:
    """One candidate explanation, ranked by ``confidence`` in [0, 1]."""

    code: str  # "GPU_FELL_OFF_BUS", "TRAFFIC_SURGE", "ROLLOUT_REGRESSION", ...
    title: str
    confidence: float
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Action:
    """A suggested remedy from the catalogue. ``mode`` is ``recommend`` or ``auto`` (by config)."""

    kind: str  # "scale_up", "cordon_drain", "restart_pod", "rollback", "investigate"
    target: Entity
    title: str
    mode: str = "recommend"
    params: Mapping[str, Any] = field(default_factory=dict)
    blast_radius: str = ""  # what it touches, e.g. "1 node, 8 GPUs, 3 pods"

    def __hash__(self) -> int:  # params is a dict: hash what identifies the action
        return hash((self.kind, self.target, self.title, self.mode))


@dataclass(frozen=True)
class Incident:
    """Findings grouped into one problem, explained. ``status`` is ``open`` or ``resolved``."""

    id: str  # the fingerprint's first 12 hex digits: stable, quotable (``aiops explain ID``)
    fingerprint: str
    title: str
    entity: Entity
    window: tuple[float, float]
    severity: str
    findings: tuple[Finding, ...]
    causes: tuple[Cause, ...]  # best first
    actions: tuple[Action, ...]
    unavailable: tuple[str, ...] = ()  # data that would have helped but was missing
    status: str = "open"

    @property
    def probable_cause(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    @property
    def confidence(self) -> float:
        return self.causes[0].confidence if self.causes else 0.0

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Incident":
        return cls(id=data["id"], fingerprint=data["fingerprint"], title=data["title"], entity=Entity(**data["entity"]),
                   window=tuple(data["window"]), severity=data["severity"],
                   findings=tuple(Finding.from_json(f) for f in data["findings"]),
                   causes=tuple(Cause(code=c["code"], title=c["title"], confidence=c["confidence"],
                                      evidence=tuple(Evidence(**e) for e in c.get("evidence", ()))) for c in data["causes"]),
                   actions=tuple(Action(kind=a["kind"], target=Entity(**a["target"]), title=a["title"], mode=a["mode"],
                                        params=dict(a.get("params", {})), blast_radius=a.get("blast_radius", ""))
                                 for a in data["actions"]),
                   unavailable=tuple(data.get("unavailable", ())), status=data.get("status", "open"))


def fingerprint(codes: set[str] | frozenset[str], entity: Entity) -> str:
    """Stable over wording, scores and times: the sorted anomaly codes and where they are."""
    text = json.dumps({"codes": sorted(codes), "entity": asdict(entity)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _clean(value: Any) -> Any:
    """JSON-safe: tuples become lists, NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
