"""A simulated GPU inference cluster's telemetry, with faults injected where and when we say.

:func:`simulate_telemetry` is a pure, seeded, vectorised generator: the same arguments give the same
:class:`Telemetry`, bit for bit, and there is no clock and no I/O. It exists so that the AIOps
detectors and the incident explainer can be scored against ground truth: every injected fault is
recorded as an :class:`InjectedFault` naming where it is, when its effects begin and the cause code an
explanation should rank first.

The cluster
-----------
``nodes`` nodes named ``gpu-node-<i>`` with ``gpus_per_node`` 80 GB GPUs each (``gpu`` = index on the
node, as DCGM's ``gpu`` label). Each workload is a Deployment in namespace :data:`NAMESPACE` whose pods
(``<workload>-<pod-template-hash>-<suffix>``) each hold one GPU; about 60% of the GPUs run a pod, the
rest are idle. Placement is drawn from the seed.

The model, per step (causal: nothing at step k depends on anything after it)
----------------------------------------------------------------------------
* demand (req/s) of a workload = its peak x the daily pattern of :mod:`simulations.traces` (shifted a
  little per workload) x AR(1) log-noise x white noise x any surge multiplier. The peak is sized so
  the busiest minute of a normal day loads the pods to about 60%.
* every ready pod of a workload gets an equal share: ``load = demand / replicas_available``;
  ``rho = load / (capacity x clock factor)`` (a thermally throttled GPU has less capacity);
* GPU util = ``100 x min(rho, 1)``; power = idle + slope x util x clock factor; the temperature follows
  the power through a first-order lag (tau 2 min) from the node's inlet temperature;
  memory = context + model weights + KV cache x ``min(rho, 1)``;
* pod p95 latency = base / clock factor x ``(1 + 0.6 rho / (1 - rho))`` (rho capped at 0.98: a queue that blows up as
  the pod saturates) x any regression or leak factor x noise; NaN while the pod is not ready (it serves
  nothing, so there is no histogram to take a quantile of);
* per-request latencies are modelled as exponential, so a pod's share of requests over the objective
  is ``0.05 ** (objective / p95)``; the workload's ``slo_bad_ratio`` is the mean over its ready pods and
  its ``latency_p95_seconds`` is the p95 of the merged distribution (as ``histogram_quantile`` over
  ``sum by (le)`` would give); with no ready pod, latency is NaN and every request is bad.

Metrics and where they live (``Telemetry.series[metric][entity]``)
-------------------------------------------------------------------
* per GPU (:data:`GPU_METRICS`, the DCGM exporter's names): keyed by ``Entity(node, gpu, pod, workload,
  namespace)``, pod/workload/namespace empty on an idle GPU;
* per workload (:data:`WORKLOAD_METRICS`): keyed by ``Entity(workload=..., namespace=...)``;
* per pod (:data:`POD_METRICS`): keyed by the pod's ``Entity(node, gpu, pod, workload, namespace)``,
  which is also its GPU's key.

NaN is a gap and appears only where documented: a GPU that fell off the bus (every DCGM metric from
two samples after its XID 79), a node whose DCGM exporter is down (``metrics_missing``), a pod's latency
while it is not ready, and a workload's latency while none of its pods is ready.

Faults (:data:`FAULT_KINDS`), their entity and the cause code in :data:`EXPECTED_CAUSES`
------------------------------------------------------------------------------------------
``traffic_surge`` (workload), ``memory_leak`` (the pod), ``xid79`` and ``thermal_throttle``
(``Entity(node, gpu)``), ``rollout_regression`` and ``crash_loop`` (workload), ``metrics_missing``
(``Entity(node)``). See :func:`simulate_telemetry` for what each does. A fault's time and place not
given in its :class:`FaultSpec` are drawn from the seed; each fault draws from its own stream, and the
base noise from another, so a run with a fault is bit-identical to the clean run of the same seed
everywhere the fault does not reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from aiops.findings import Entity
from forecasters.series import Series

# The daily/weekly demand shape of the synthetic LLM traces, reused so both simulators agree on what
# a day looks like (it takes seconds since a Monday 00:00 UTC).
from simulations.traces import SYNTHETIC_START, _diurnal_weekly_level

__all__ = [
    "EXPECTED_CAUSES",
    "FAULT_KINDS",
    "FB_TOTAL_MIB",
    "GPU_METRICS",
    "NAMESPACE",
    "POD_METRICS",
    "PROFILES",
    "WORKLOAD_METRICS",
    "FaultSpec",
    "InjectedFault",
    "Rollout",
    "Telemetry",
    "WorkloadProfile",
    "series_key",
    "simulate_telemetry",
]

FAULT_KINDS = ("traffic_surge", "memory_leak", "xid79", "thermal_throttle", "rollout_regression", "crash_loop",
               "metrics_missing")
EXPECTED_CAUSES: Mapping[str, str] = MappingProxyType({
    "traffic_surge": "TRAFFIC_SURGE",
    "memory_leak": "GPU_MEMORY_LEAK",
    "xid79": "GPU_FELL_OFF_BUS",
    "thermal_throttle": "GPU_THERMAL_THROTTLING",
    "rollout_regression": "ROLLOUT_REGRESSION",
    "crash_loop": "CRASH_LOOP",
    "metrics_missing": "METRICS_MISSING",
})

# -- metric names -----------------------------------------------------------------------------------
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # %
FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"  # degrees C
POWER = "DCGM_FI_DEV_POWER_USAGE"  # W
SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK"  # MHz
XID = "DCGM_FI_DEV_XID_ERRORS"  # the last XID code, 0 when none
THROTTLE = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"  # NVML bitmask
GPU_METRICS = (GPU_UTIL, FB_USED, FB_FREE, GPU_TEMP, POWER, SM_CLOCK, XID, THROTTLE)

DEMAND = "demand_rps"
LATENCY = "latency_p95_seconds"
SLO_BAD = "slo_bad_ratio"
REPLICAS = "replicas_available"
WORKLOAD_METRICS = (DEMAND, LATENCY, SLO_BAD, REPLICAS)

RESTARTS = "kube_pod_container_status_restarts_total"
POD_LATENCY = "pod_latency_p95_seconds"
POD_METRICS = (RESTARTS, POD_LATENCY)

# NVML clock throttle ("clock event") reason bits, as pynvml's nvmlClocksThrottleReason* constants.
SW_THERMAL_SLOWDOWN = 0x20
HW_THERMAL_SLOWDOWN = 0x40

# -- the hardware -----------------------------------------------------------------------------------
NAMESPACE = "inference"
FB_TOTAL_MIB = 81559.0  # an H100 80 GB as nvidia-smi and DCGM report it (used + free)
FB_CONTEXT_MIB = 560.0  # CUDA context and allocator slack of a serving process
IDLE_POWER_W = 70.0
POWER_SLOPE_W = 560.0  # idle + slope = 630 W at full util, under the H100 SXM's 700 W cap
THERMAL_RESISTANCE = 0.065  # degrees C per W above the inlet: 630 W -> ~41 degrees over inlet
THERMAL_TAU_S = 120.0  # heatsink time constant
SW_THERMAL_C = 85.0  # the driver starts slowing clocks (sw thermal slowdown)
HW_THERMAL_C = 88.0  # the hardware slowdown engages
SW_CLOCK_FACTOR = 0.8
HW_CLOCK_FACTOR = 0.63  # SM clock ~37% down
MAX_SM_CLOCK_MHZ = 1980.0
IDLE_SM_CLOCK_MHZ = 345.0

# -- the serving model ------------------------------------------------------------------------------
QUEUE_GAIN = 0.6  # latency = base x (1 + QUEUE_GAIN rho / (1 - rho))
RHO_CAP = 0.98  # beyond this the queue is "full": latency stays at ~30x base
P95_TAIL = 0.05
POD_SHARE = 0.6  # share of the GPUs that run a pod
DEMAND_NOISE_SIGMA, DEMAND_NOISE_TAU_S, DEMAND_WHITE_SIGMA = 0.04, 1800.0, 0.02

# -- fault timing -----------------------------------------------------------------------------------
WARMUP_S = 2 * 3600.0  # no drawn fault starts in the first two hours (detectors need a baseline)
DETECT_S = 30 * 60.0  # a drawn fault leaves at least this much data after its effect (or its start)
MIN_SPAN_S = 90 * 60.0  # shortest span a fault can be drawn into: a third of it warm-up, 30 min effect, 30 min after
SURGE_RAMP_S = 300.0
THERMAL_RAMP_S = 300.0
LEAK_FULL = 0.99
RESTART_S = 180.0  # a pod restarted after an OOM is back serving after this

# Default effect durations (seconds) drawn uniformly; None: lasts to the end of the span.
_DURATIONS: Mapping[str, tuple[float, float] | None] = MappingProxyType({
    "traffic_surge": (40 * 60.0, 70 * 60.0),  # 5 min ramp up, 30-60 min at the peak, 5 min down
    "memory_leak": (90 * 60.0, 180 * 60.0),  # from the first leaked byte to the OOM
    "xid79": None,  # the GPU stays off the bus until someone reboots the node
    "thermal_throttle": (40 * 60.0, 90 * 60.0),
    "rollout_regression": (90 * 60.0, 180 * 60.0),  # until the rollback
    "crash_loop": (30 * 60.0, 60 * 60.0),
    "metrics_missing": (20 * 60.0, 40 * 60.0),
})


@dataclass(frozen=True)
class WorkloadProfile:
    """How one workload serves: sizes of its model and its latency objective."""

    share: float  # weight when splitting pods between workloads
    capacity_rps: float  # requests/s one pod serves at 100% GPU util
    base_latency_s: float  # p95 at light load
    objective_s: float  # the latency objective behind slo_bad_ratio
    weights_mib: float
    kv_mib: float  # KV cache at full load
    peak_util: float  # utilisation at the daily peak of demand
    phase_h: float  # shift of the daily pattern


PROFILES: Mapping[str, WorkloadProfile] = MappingProxyType({
    "chat": WorkloadProfile(3.0, 8.0, 1.2, 6.0, 36000.0, 26000.0, 0.60, 0.0),
    "code": WorkloadProfile(2.0, 25.0, 0.8, 4.0, 28000.0, 22000.0, 0.58, -1.0),
    "embed": WorkloadProfile(1.0, 400.0, 0.04, 0.2, 3000.0, 5000.0, 0.55, 2.0),
})
_GENERIC = WorkloadProfile(2.0, 15.0, 1.0, 5.0, 30000.0, 24000.0, 0.58, 0.0)

_HASH_ALPHABET = np.array(list("bcdfghjklmnpqrstvwxz2456789"))  # what Kubernetes uses in generated names


# -- values -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rollout:
    """A new revision of ``workload`` went live at ``at`` (unix seconds)."""

    workload: str
    at: float
    revision: str


@dataclass(frozen=True)
class FaultSpec:
    """A fault to inject; what is left ``None`` is drawn from the seed.

    ``at``: unix seconds its effects begin (within the span). ``entity``: where (see
    :func:`simulate_telemetry` for what each kind accepts). ``duration``: seconds the effect lasts.
    """

    kind: str
    at: float | None = None
    entity: Entity | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        if self.at is not None and not math.isfinite(self.at):
            raise ValueError(f"fault {self.kind}: at must be finite, got {self.at!r}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"fault {self.kind}: duration must be > 0 seconds, got {self.duration!r}")
        if self.entity is not None and not isinstance(self.entity, Entity):
            raise ValueError(f"fault {self.kind}: entity must be an Entity, got {self.entity!r}")


@dataclass(frozen=True)
class InjectedFault:
    """Ground truth for one injected fault: its effects begin at ``start`` and last until ``end``."""

    kind: str  # one of FAULT_KINDS
    start: float
    end: float
    entity: Entity
    expected_cause: str  # the cause code an explanation should rank first
    description: str

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        if not self.start <= self.end:
            raise ValueError(f"fault {self.kind}: start {self.start} after end {self.end}")


def _freeze(series: Mapping[str, Mapping[Entity, np.ndarray]]) -> Mapping[str, Mapping[Entity, np.ndarray]]:
    out = {}
    for metric, per_entity in series.items():
        inner = {}
        for entity, values in per_entity.items():
            array = np.array(values, dtype=np.float64, copy=True)
            array.flags.writeable = False
            inner[entity] = array
        out[metric] = MappingProxyType(inner)
    return MappingProxyType(out)


@dataclass(frozen=True, eq=False)
class Telemetry:
    """Every series of a simulated cluster on one grid: ``values[k]`` is at ``start + k * step``.

    ``series[metric][entity]`` holds read-only float64 arrays of length ``n_steps`` (NaN = gap).
    ``pods`` is the topology (pod name -> its Entity), ``rollouts`` the deployment events and
    ``faults`` the ground truth; ``objectives`` the latency objective (seconds) of each workload, the
    threshold behind its ``slo_bad_ratio``.
    """

    start: float
    step: float
    n_steps: int
    series: Mapping[str, Mapping[Entity, np.ndarray]]
    rollouts: tuple[Rollout, ...] = ()
    pods: Mapping[str, Entity] = field(default_factory=dict)
    faults: tuple[InjectedFault, ...] = ()
    objectives: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"Telemetry step must be > 0, got {self.step!r}")
        if self.n_steps < 1:
            raise ValueError(f"Telemetry needs at least one step, got {self.n_steps}")
        series = _freeze(self.series)
        for metric, per_entity in series.items():
            for entity, values in per_entity.items():
                if values.shape != (self.n_steps,):
                    raise ValueError(f"Telemetry {metric} at {entity.label()}: {values.shape[0]} values, "
                                     f"expected {self.n_steps}")
        object.__setattr__(self, "series", series)
        object.__setattr__(self, "rollouts", tuple(self.rollouts))
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "pods", MappingProxyType(dict(self.pods)))
        object.__setattr__(self, "objectives", MappingProxyType(dict(self.objectives)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Telemetry):
            return NotImplemented
        if (self.start, self.step, self.n_steps, self.rollouts, self.faults) != (
                other.start, other.step, other.n_steps, other.rollouts, other.faults):
            return False
        if dict(self.pods) != dict(other.pods) or dict(self.objectives) != dict(other.objectives):
            return False
        if {m: set(s) for m, s in self.series.items()} != {m: set(s) for m, s in other.series.items()}:
            return False
        return all(np.array_equal(values, other.series[m][e], equal_nan=True)
                   for m, s in self.series.items() for e, values in s.items())

    def __hash__(self) -> int:
        return hash((self.start, self.step, self.n_steps, self.faults))

    @property
    def times(self) -> np.ndarray:
        """Unix seconds of every sample."""
        return self.start + np.arange(self.n_steps, dtype=np.float64) * self.step

    @property
    def end(self) -> float:
        """One step after the last sample."""
        return self.start + self.n_steps * self.step

    def index_of(self, at: float) -> int:
        """The first sample at or after ``at`` (``n_steps`` when there is none)."""
        return min(self.n_steps, max(0, math.ceil((float(at) - self.start) / self.step - 1e-9)))

    def entities(self, metric: str, within: Entity = Entity()) -> tuple[Entity, ...]:
        """The entities ``metric`` has a series for that ``within`` contains, sorted."""
        return tuple(sorted(e for e in self.series.get(metric, {}) if within.contains(e)))

    def series_of(self, metric: str, entity: Entity) -> Series:
        """One series as a :class:`~forecasters.series.Series` keyed ``metric{node="..",gpu="..",...}``.

        ``entity`` is a key of ``series[metric]``, or any entity that contains exactly one of them
        (``Entity(node, gpu)`` for a GPU's metric, ``Entity(workload=w)`` for a workload's)."""
        if metric not in self.series:
            raise KeyError(f"no metric {metric!r}: expected one of {', '.join(sorted(self.series))}")
        per_entity = self.series[metric]
        if entity not in per_entity:
            matches = self.entities(metric, entity)
            if len(matches) != 1:
                raise KeyError(f"{metric} has {len(matches)} series at {entity.label()}, expected exactly one")
            entity = matches[0]
        return Series(series_key(metric, entity), self.start, self.step, per_entity[entity])

    def window(self, end: int | float, lookback_steps: int | None = None) -> "Telemetry":
        """What a live scan would have: samples up to ``end``, the last ``lookback_steps`` of them.

        ``end`` is a sample index (an ``int``, inclusive) or unix seconds (a ``float``: samples at or
        before it). Rollouts and faults are kept when they began by then; a fault's ``end`` is cut
        there, since how long it will last is not yet known. ``lookback_steps=None`` keeps everything
        from the first sample.
        """
        if isinstance(end, (bool, np.bool_)):
            raise TypeError("window end must be a sample index (int) or unix seconds (float), not a bool")
        if isinstance(end, (int, np.integer)):
            last = int(end)
            if not 0 <= last < self.n_steps:
                raise IndexError(f"window end index {last} outside 0..{self.n_steps - 1}")
            cut = self.start + last * self.step
        else:
            cut = float(end)
            last = math.floor((cut - self.start) / self.step + 1e-9)
            if last < 0:
                raise ValueError(f"window end {cut} is before the first sample at {self.start}")
            last = min(last, self.n_steps - 1)
        if lookback_steps is not None and lookback_steps < 1:
            raise ValueError(f"lookback_steps must be >= 1, got {lookback_steps}")
        first = 0 if lookback_steps is None else max(0, last + 1 - int(lookback_steps))
        series = {m: {e: v[first:last + 1] for e, v in s.items()} for m, s in self.series.items()}
        return Telemetry(
            start=self.start + first * self.step, step=self.step, n_steps=last + 1 - first, series=series,
            rollouts=tuple(r for r in self.rollouts if r.at <= cut), pods=self.pods,
            faults=tuple(replace(f, end=min(f.end, cut)) for f in self.faults if f.start <= cut),
            objectives=self.objectives)


def series_key(metric: str, entity: Entity) -> str:
    """``metric{node="gpu-node-0",gpu="3",pod="...",workload="chat",namespace="inference"}``, set fields only."""
    labels = ",".join(f'{name}="{getattr(entity, name)}"' for name in ("node", "gpu", "pod", "workload", "namespace")
                      if getattr(entity, name))
    return f"{metric}{{{labels}}}"


# -- the cluster ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cluster:
    workloads: tuple[str, ...]
    profiles: tuple[WorkloadProfile, ...]
    gpus: tuple[Entity, ...]  # per GPU, with its pod's fields when it runs one
    gpu_node: np.ndarray  # [G] node index
    pod_names: tuple[str, ...]
    pod_workload: np.ndarray  # [P] workload index
    pod_gpu: np.ndarray  # [P] GPU index
    revisions: tuple[str, ...]  # per workload, the pod-template-hash running at the start
    node_names: tuple[str, ...]

    def pod_entity(self, p: int) -> Entity:
        return self.gpus[int(self.pod_gpu[p])]

    def pods_of(self, w: int) -> np.ndarray:
        return np.flatnonzero(self.pod_workload == w)


def _k8s_name(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(_HASH_ALPHABET, n))


def _split_pods(total: int, shares: Sequence[float]) -> list[int]:
    """``total`` pods split by ``shares`` (largest remainder), each workload at least one (two if possible)."""
    floor = 2 if total >= 2 * len(shares) else 1
    counts = [floor] * len(shares)
    rest = total - floor * len(shares)
    weights = np.asarray(shares, dtype=float) / sum(shares)
    ideal = weights * rest
    extra = np.floor(ideal).astype(int)
    order = np.argsort(-(ideal - extra), kind="stable")
    for j in order[: rest - int(extra.sum())]:
        extra[j] += 1
    return [c + int(e) for c, e in zip(counts, extra)]


def _build_cluster(rng: np.random.Generator, nodes: int, gpus_per_node: int, workloads: tuple[str, ...]) -> _Cluster:
    n_gpus = nodes * gpus_per_node
    profiles = tuple(PROFILES.get(w, _GENERIC) for w in workloads)
    total = min(n_gpus, max(len(workloads), round(POD_SHARE * n_gpus)))
    counts = _split_pods(total, [p.share for p in profiles])
    slots = rng.permutation(n_gpus)[:total]
    node_names = tuple(f"gpu-node-{i}" for i in range(nodes))
    gpu_node = np.repeat(np.arange(nodes), gpus_per_node)
    gpus = [Entity(node=node_names[g // gpus_per_node], gpu=str(g % gpus_per_node)) for g in range(n_gpus)]
    revisions, names, pod_workload, pod_gpu, taken = [], [], [], [], set()
    slot = 0
    for w, (name, count) in enumerate(zip(workloads, counts)):
        revision = _k8s_name(rng, 10)
        revisions.append(revision)
        for _ in range(count):
            pod = f"{name}-{revision}-{_k8s_name(rng, 5)}"
            while pod in taken:
                pod = f"{name}-{revision}-{_k8s_name(rng, 5)}"
            taken.add(pod)
            g = int(slots[slot])
            slot += 1
            gpus[g] = replace(gpus[g], pod=pod, workload=name, namespace=NAMESPACE)
            names.append(pod)
            pod_workload.append(w)
            pod_gpu.append(g)
    return _Cluster(tuple(workloads), profiles, tuple(gpus), gpu_node, tuple(names), np.array(pod_workload, dtype=int),
                    np.array(pod_gpu, dtype=int), tuple(revisions), node_names)


# -- fault effects ----------------------------------------------------------------------------------
@dataclass
class _Effects:
    """What the faults do, as arrays the model reads (mutable only while the faults are applied)."""

    demand_mult: np.ndarray  # [W, n]
    latency_mult: np.ndarray  # [P, n]
    not_ready: np.ndarray  # [P, n] bool
    restart_times: list[list[float]]  # per pod, unix seconds of each restart
    leak: np.ndarray  # [P, n] in [0, 1]: the pod's memory blends towards LEAK_FULL of the GPU
    hot: np.ndarray  # [G, n] in [0, 1]: the GPU's temperature target blends towards hot_c
    hot_c: np.ndarray  # [G]
    dead: np.ndarray  # [G, n] bool: fallen off the bus, every DCGM metric NaN
    xid: np.ndarray  # [G, n]
    exporter_down: np.ndarray  # [G, n] bool
    rollouts: list[Rollout]


@dataclass(frozen=True)
class _Grid:
    start: float
    step: float
    n: int

    @property
    def t(self) -> np.ndarray:
        return self.start + np.arange(self.n) * self.step

    def index(self, at: float) -> int:
        return min(self.n, max(0, math.ceil((at - self.start) / self.step - 1e-9)))

    def between(self, a: float, b: float) -> np.ndarray:
        t = self.t
        return (t >= a) & (t < b)


def _ramp(t: np.ndarray, start: float, rise: float, step: float) -> np.ndarray:
    """0 before ``start``, then up in equal steps to 1 over ``rise`` seconds: the first sample at or
    after ``start`` already moves (a fault's effects begin at its start), 1 from ``start + rise - step``."""
    return np.where(t >= start, np.clip((t - start + step) / max(rise, step), 0.0, 1.0), 0.0)


def _resolve_entity(kind: str, spec: Entity | None, cluster: _Cluster, rng: np.random.Generator) -> Entity:
    """The fault's entity in its documented form: given (checked) or drawn."""
    busy = [g for g, e in enumerate(cluster.gpus) if e.pod]
    if kind in ("traffic_surge", "rollout_regression", "crash_loop"):
        if spec is None:
            return Entity(workload=cluster.workloads[int(rng.integers(len(cluster.workloads)))], namespace=NAMESPACE)
        if spec.workload not in cluster.workloads:
            raise ValueError(f"fault {kind}: entity must name a workload ({', '.join(cluster.workloads)}), got {spec}")
        return Entity(workload=spec.workload, namespace=NAMESPACE)
    if kind == "metrics_missing":
        if spec is None:
            return Entity(node=cluster.node_names[int(rng.integers(len(cluster.node_names)))])
        if spec.node not in cluster.node_names:
            raise ValueError(f"fault {kind}: entity must name a node ({', '.join(cluster.node_names)}), got {spec}")
        return Entity(node=spec.node)
    if kind == "memory_leak":
        if spec is None:
            return cluster.gpus[busy[int(rng.integers(len(busy)))]]
        matches = [cluster.gpus[g] for g in busy if spec.contains(cluster.gpus[g])]
        if len(matches) != 1:
            raise ValueError(f"fault {kind}: entity must pick out exactly one pod, got {spec} ({len(matches)} pods)")
        return matches[0]
    # xid79, thermal_throttle: a GPU, drawn among those that run a pod so its effects reach a workload
    if spec is None:
        e = cluster.gpus[busy[int(rng.integers(len(busy)))]]
        return Entity(node=e.node, gpu=e.gpu)
    matches = [e for e in cluster.gpus if spec.contains(e)] if (spec.node and spec.gpu) or spec.pod else []
    if len(matches) != 1:
        raise ValueError(f"fault {kind}: entity must pick out exactly one GPU (node and gpu, or a pod), got {spec}")
    return Entity(node=matches[0].node, gpu=matches[0].gpu)


def _place(kind: str, spec: FaultSpec, grid: _Grid, rng: np.random.Generator) -> tuple[float, float | None]:
    """(start, planned duration or None for 'to the end'): given, or drawn to leave room for detection."""
    bounds = _DURATIONS[kind]
    duration = spec.duration if spec.duration is not None else (
        None if bounds is None else max(1, round(float(rng.uniform(*bounds)) / grid.step)) * grid.step)
    last = (grid.n - 1) * grid.step  # seconds from the first to the last sample
    if spec.at is not None:
        if not grid.start <= spec.at <= grid.start + last:
            raise ValueError(f"fault {kind}: at={spec.at} is outside the simulated span "
                             f"[{grid.start}, {grid.start + last}]")
        return float(spec.at), duration
    if last < MIN_SPAN_S:
        raise ValueError(f"fault {kind}: the span ({last / 3600:.2f} h) is too short to place a fault at random; "
                         f"simulate at least {MIN_SPAN_S / 3600:.1f} h or give its time")
    warmup = min(WARMUP_S, last / 3.0)
    if spec.duration is None and duration is not None and last - duration - DETECT_S < warmup:
        duration = math.floor((last - warmup - DETECT_S) / grid.step) * grid.step  # a short span: shorten the drawn effect, keep the detection room
    latest = max(warmup, last - (duration or 0.0) - DETECT_S)
    cap = math.floor((last - DETECT_S) / grid.step + 1e-9)  # coarse grids: still 30 min after the start
    lo = min(math.ceil(warmup / grid.step - 1e-9), cap)
    hi = min(max(lo, math.floor(latest / grid.step + 1e-9)), cap)
    return grid.start + int(rng.integers(lo, hi + 1)) * grid.step, duration


def _traffic_surge(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    w = ctx.cluster.workloads.index(f.entity.workload)
    peak = float(rng.uniform(2.2, 2.8))
    ramp = min(SURGE_RAMP_S, dur / 2)
    t = ctx.grid.t
    step = ctx.grid.step
    shape = _ramp(t, f.start, ramp, step) * (1.0 - _ramp(t, f.start + dur - ramp + step, ramp, step))
    fx.demand_mult[w] *= 1.0 + (peak - 1.0) * shape
    return (f"demand of workload {f.entity.workload} ramps to {peak:.1f}x over {ramp / 60:.0f} min and holds "
            f"{(dur - 2 * ramp) / 60:.0f} min")


def _memory_leak(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    p = ctx.cluster.pod_names.index(f.entity.pod)
    t, oom = ctx.grid.t, f.start + dur
    frac = np.where(t < oom, _ramp(t, f.start, dur, ctx.grid.step), 0.0)  # LEAK_FULL at the last sample before the OOM
    fx.leak[p] = np.maximum(fx.leak[p], frac)
    fx.latency_mult[p] *= 1.0 + 0.6 * frac ** 2  # KV-cache pressure: smaller batches, preemptions
    if oom <= ctx.grid.start + (ctx.grid.n - 1) * ctx.grid.step:
        fx.restart_times[p].append(oom)
        fx.not_ready[p] |= ctx.grid.between(oom, oom + max(RESTART_S, ctx.grid.step))
        return (f"pod {f.entity.pod} leaks GPU memory steadily until {LEAK_FULL:.0%} full after {dur / 60:.0f} min, "
                f"then is OOM-killed and restarts")
    return f"pod {f.entity.pod} leaks GPU memory steadily, {LEAK_FULL:.0%} full {dur / 60:.0f} min after it starts"


def _xid79(f: InjectedFault, dur: float | None, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    g = next(i for i, e in enumerate(ctx.cluster.gpus) if f.entity.contains(e))
    k0, grid = ctx.grid.index(f.start), ctx.grid
    back = grid.n if dur is None else grid.index(f.start + dur)
    fx.xid[g, k0:min(k0 + 2, back)] = 79.0
    fx.dead[g, k0 + 2:back] = True  # back online after `dur` (a reboot, which also clears the last XID)
    pods = np.flatnonzero(ctx.cluster.pod_gpu == g)
    for p in pods:
        fx.not_ready[p, k0:back] = True
        fx.restart_times[p].append(f.start + grid.step)  # the container dies, and cannot start again without its GPU
    who = f" (pod {ctx.cluster.gpus[g].pod})" if len(pods) else ""
    until = "for the rest of the span" if dur is None else f"for {dur / 60:.0f} min"
    return f"GPU {f.entity.gpu} on {f.entity.node}{who} reports XID 79 and falls off the bus {until}"


def _thermal_throttle(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    g = next(i for i, e in enumerate(ctx.cluster.gpus) if f.entity.contains(e))
    t = ctx.grid.t
    fx.hot[g] = np.maximum(fx.hot[g], _ramp(t, f.start, THERMAL_RAMP_S, ctx.grid.step) * (t < f.start + dur))
    fx.hot_c[g] = float(rng.uniform(90.5, 93.0))
    return (f"GPU {f.entity.gpu} on {f.entity.node} loses cooling for {dur / 60:.0f} min: it heats to ~{fx.hot_c[g]:.0f} C "
            f"and throttles its clocks")


def _rollout_regression(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    w = ctx.cluster.workloads.index(f.entity.workload)
    factor = float(rng.uniform(1.7, 1.9))
    revision = _k8s_name(rng, 10)
    fx.latency_mult[ctx.cluster.pods_of(w)] *= np.where(ctx.grid.between(f.start, f.start + dur), factor, 1.0)
    fx.rollouts.append(Rollout(f.entity.workload, f.start, revision))
    text = f"revision {revision} of workload {f.entity.workload} makes every pod {factor:.1f}x slower"
    if f.start + dur <= ctx.grid.start + (ctx.grid.n - 1) * ctx.grid.step:
        fx.rollouts.append(Rollout(f.entity.workload, f.start + dur, ctx.revision_before(w, f.start)))
        text += f"; rolled back after {dur / 60:.0f} min"
    return text


def _crash_loop(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    w = ctx.cluster.workloads.index(f.entity.workload)
    pods = ctx.cluster.pods_of(w)
    m = min(max(2, math.ceil(len(pods) / 2)), max(1, len(pods) - 1))
    chosen = np.sort(rng.choice(pods, m, replace=False))
    stop = f.start + dur
    for i, p in enumerate(chosen):
        first = f.start + (0.0 if i == 0 else float(rng.uniform(0.0, 60.0)))
        gaps = rng.uniform(120.0, 300.0, int(dur // 120.0) + 2)
        times = first + np.concatenate([[0.0], np.cumsum(gaps)])
        fx.restart_times[p].extend(float(x) for x in times[times < stop])
        fx.not_ready[p] |= ctx.grid.between(first, stop)
    names = ", ".join(ctx.cluster.pod_names[p] for p in chosen)
    return f"{m} of {len(pods)} pods of workload {f.entity.workload} crash every 2-5 min for {dur / 60:.0f} min ({names})"


def _metrics_missing(f: InjectedFault, dur: float, ctx: "_Context", fx: _Effects, rng: np.random.Generator) -> str:
    node = ctx.cluster.node_names.index(f.entity.node)
    fx.exporter_down[ctx.cluster.gpu_node == node] |= ctx.grid.between(f.start, f.start + dur)
    return f"the DCGM exporter on {f.entity.node} stops answering for {dur / 60:.0f} min"


_EFFECTS: Mapping[str, Callable[..., str]] = MappingProxyType({
    "traffic_surge": _traffic_surge, "memory_leak": _memory_leak, "xid79": _xid79,
    "thermal_throttle": _thermal_throttle, "rollout_regression": _rollout_regression, "crash_loop": _crash_loop,
    "metrics_missing": _metrics_missing,
})


@dataclass(frozen=True)
class _Context:
    cluster: _Cluster
    grid: _Grid
    rollouts: list[Rollout]  # the ones applied so far, to know what a rollback returns to

    def revision_before(self, w: int, at: float) -> str:
        earlier = [r for r in self.rollouts if r.workload == self.cluster.workloads[w] and r.at < at]
        return max(earlier, key=lambda r: r.at).revision if earlier else self.cluster.revisions[w]


# -- the generator ----------------------------------------------------------------------------------
def simulate_telemetry(*, days: float = 1.0, step: float = 60.0, nodes: int = 4, gpus_per_node: int = 8,
                       workloads: Sequence[str] = ("chat", "code", "embed"), seed: int = 0,
                       start: float = SYNTHETIC_START, faults: Sequence[FaultSpec | str] = ()) -> Telemetry:
    """Telemetry of a simulated inference cluster over ``days`` at ``step`` seconds, with ``faults`` injected.

    ``start`` defaults to Monday 2026-01-05T00:00:00Z (as the synthetic traces). Fault effects:

    * ``traffic_surge`` (entity ``Entity(workload, namespace)``): demand ramps to 2.2-2.8x over 5 min,
      holds 30-60 min and ramps back over 5 min; util, latency and slo_bad_ratio rise on its pods.
    * ``memory_leak`` (the pod's entity; a given entity must pick out one pod): its FB_USED grows
      steadily to 99% of the GPU over 90-180 min while its latency creeps up (1.6x at the end); then it
      is OOM-killed: restarts +1, not ready for 3 min, memory back to normal.
    * ``xid79`` (``Entity(node, gpu)``): XID 79 for two samples, then every DCGM metric of that GPU is
      NaN for the rest of the span (or ``duration``); its pod restarts once and stays unavailable, so
      the workload's replicas_available drops by one and the other pods take its load.
    * ``thermal_throttle`` (``Entity(node, gpu)``): for 40-90 min its temperature climbs to ~91 C
      (ramp 5 min, 2-min thermal lag); from 85 C the SW thermal bit and 20% slower clocks, from 88 C
      also the HW thermal bit and 37% slower clocks; its pod serves slower, so its util and latency
      rise against its siblings'.
    * ``rollout_regression`` (``Entity(workload, namespace)``): a :class:`Rollout` at the start; every
      pod of the workload is 1.7-1.9x slower for 90-180 min, then a rollback Rollout; demand unchanged.
    * ``crash_loop`` (``Entity(workload, namespace)``): for 30-60 min about half its pods (at least
      two, leaving one) restart every 2-5 min and are not ready; replicas drop, latency rises.
    * ``metrics_missing`` (``Entity(node)``): every DCGM metric of the node's GPUs is NaN for 20-40
      min; nothing else changes.

    Drawn fault times lie on the grid, at least 2 hours in (a third of the span when shorter), and
    leave the effect plus 30 minutes of data before the last sample; a drawn duration shrinks to fit
    a short span. Raises ValueError for bad arguments.
    """
    workloads = tuple(workloads)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (math.isfinite(days) and days > 0) or not (math.isfinite(step) and step > 0):
        raise ValueError(f"days and step must be > 0, got days={days!r}, step={step!r}")
    if nodes < 1 or gpus_per_node < 1:
        raise ValueError(f"need at least one node and one GPU per node, got {nodes} x {gpus_per_node}")
    if not workloads or len(set(workloads)) != len(workloads) or not all(isinstance(w, str) and w for w in workloads):
        raise ValueError(f"workloads must be unique non-empty names, got {workloads!r}")
    if nodes * gpus_per_node < len(workloads):
        raise ValueError(f"{nodes * gpus_per_node} GPUs cannot run {len(workloads)} workloads (one pod each at least)")
    grid = _Grid(float(start), float(step), max(1, math.ceil(days * 86400.0 / step - 1e-9)))
    cluster = _build_cluster(np.random.default_rng([seed, 0]), nodes, gpus_per_node, workloads)
    W, P, G, n = len(workloads), len(cluster.pod_names), len(cluster.gpus), grid.n
    fx = _Effects(np.ones((W, n)), np.ones((P, n)), np.zeros((P, n), bool), [[] for _ in range(P)], np.zeros((P, n)),
                  np.zeros((G, n)), np.full(G, 91.0), np.zeros((G, n), bool), np.zeros((G, n)), np.zeros((G, n), bool), [])
    injected = []
    for i, spec in enumerate(faults):
        spec = FaultSpec(spec) if isinstance(spec, str) else spec
        rng = np.random.default_rng([seed, 1, i, FAULT_KINDS.index(spec.kind)])
        entity = _resolve_entity(spec.kind, spec.entity, cluster, rng)
        at, duration = _place(spec.kind, spec, grid, rng)
        last_t = grid.start + (n - 1) * grid.step
        end = last_t if duration is None else min(at + duration, last_t)
        fault = InjectedFault(spec.kind, at, end, entity, EXPECTED_CAUSES[spec.kind], "")
        description = _EFFECTS[spec.kind](fault, duration, _Context(cluster, grid, list(fx.rollouts)), fx, rng)
        injected.append(replace(fault, description=description))
    series = _model(cluster, grid, fx, np.random.default_rng([seed, 2]))
    return Telemetry(start=grid.start, step=grid.step, n_steps=n, series=series,
                     rollouts=tuple(sorted(fx.rollouts, key=lambda r: (r.at, r.workload))),
                     pods={name: cluster.pod_entity(p) for p, name in enumerate(cluster.pod_names)},
                     faults=tuple(injected), objectives={w: p.objective_s for w, p in zip(workloads, cluster.profiles)})


def _lag(target: np.ndarray, alpha: float) -> np.ndarray:
    """First-order lag along axis 1, starting settled at the first target: y[k] = y[k-1] + alpha (x[k] - y[k-1])."""
    out = np.empty_like(target)
    y = target[:, 0].copy()
    for k in range(target.shape[1]):
        y += alpha * (target[:, k] - y)
        out[:, k] = y
    return out


def _ar1(rng: np.random.Generator, shape: tuple[int, int], step: float, sigma: float, tau: float) -> np.ndarray:
    """Stationary AR(1) along axis 1 with std ``sigma`` and correlation time ``tau``."""
    phi = math.exp(-step / tau)
    shocks = rng.normal(0.0, sigma * math.sqrt(1.0 - phi * phi), shape)
    out = np.empty(shape)
    x = rng.normal(0.0, sigma, shape[0])
    for k in range(shape[1]):
        x = phi * x + shocks[:, k]
        out[:, k] = x
    return out


_LEVEL_PEAK = float(_diurnal_weekly_level(np.arange(0.0, 86400.0, 60.0)).max())  # a weekday's crest


def _model(cluster: _Cluster, grid: _Grid, fx: _Effects, rng: np.random.Generator) -> dict[str, dict[Entity, np.ndarray]]:
    """Every series, from the cluster, its faults' effects and the base noise (drawn in a fixed order)."""
    W, P, G, n = len(cluster.workloads), len(cluster.pod_names), len(cluster.gpus), grid.n
    t = grid.t
    prof = cluster.profiles
    # Base noise first, all of it, so its draws never depend on the faults.
    demand_noise = np.exp(_ar1(rng, (W, n), grid.step, DEMAND_NOISE_SIGMA, DEMAND_NOISE_TAU_S)
                          + rng.normal(0.0, DEMAND_WHITE_SIGMA, (W, n)))
    latency_noise = np.exp(rng.normal(0.0, 0.03, (P, n)) + rng.normal(0.0, 0.03, (P, 1)))
    util_noise = rng.normal(0.0, 0.02, (G, n))
    mem_noise = rng.normal(0.0, 120.0, (G, n))
    power_noise = rng.normal(0.0, 0.015, (G, n))
    temp_noise = rng.normal(0.0, 0.35, (G, n))
    clock_jitter = rng.integers(0, 4, (G, n)) * 15.0
    inlet = rng.uniform(26.0, 31.0, len(cluster.node_names))[cluster.gpu_node] + rng.uniform(-2.0, 3.0, G)
    restarts0 = rng.integers(0, 3, P).astype(float)

    # Demand and who serves it.
    since_monday = (t - SYNTHETIC_START)[None, :] + np.array([p.phase_h * 3600.0 for p in prof])[:, None]
    replicas = np.bincount(cluster.pod_workload, minlength=W)
    peak = np.array([r * p.capacity_rps * p.peak_util for r, p in zip(replicas, prof)])
    demand = peak[:, None] * _diurnal_weekly_level(since_monday) / _LEVEL_PEAK * demand_noise * fx.demand_mult
    ready = ~fx.not_ready
    available = np.stack([ready[cluster.pod_workload == w].sum(axis=0) for w in range(W)]).astype(float)
    pw = cluster.pod_workload
    load = np.where(ready, demand[pw] / np.maximum(available[pw], 1.0), 0.0)  # [P, n]
    capacity = np.array([p.capacity_rps for p in prof])[pw][:, None]

    # Temperature from the unthrottled power (throttling follows temperature, not the other way).
    pod_of_gpu = np.full(G, -1)
    pod_of_gpu[cluster.pod_gpu] = np.arange(P)
    gp = cluster.pod_gpu
    nominal_util = np.zeros((G, n))
    nominal_util[gp] = np.minimum(load / capacity, 1.0)
    nominal_power = IDLE_POWER_W + POWER_SLOPE_W * nominal_util
    target = inlet[:, None] + THERMAL_RESISTANCE * nominal_power
    target = target + (fx.hot_c[:, None] - target) * fx.hot
    temp = np.round(_lag(target, 1.0 - math.exp(-grid.step / THERMAL_TAU_S)) + temp_noise)
    throttle = np.where(temp >= SW_THERMAL_C, SW_THERMAL_SLOWDOWN, 0) | np.where(temp >= HW_THERMAL_C, HW_THERMAL_SLOWDOWN, 0)
    clock_factor = np.where(throttle & HW_THERMAL_SLOWDOWN, HW_CLOCK_FACTOR, np.where(throttle, SW_CLOCK_FACTOR, 1.0))

    # Serving: utilisation and latency per pod.
    rho = load / (capacity * clock_factor[gp])
    queue = 1.0 + QUEUE_GAIN * np.minimum(rho, RHO_CAP) / (1.0 - np.minimum(rho, RHO_CAP))
    base = np.array([p.base_latency_s for p in prof])[pw][:, None]
    # A slower clock stretches every request's service time, and the queue in front of it.
    pod_latency = np.where(ready, base / clock_factor[gp] * queue * fx.latency_mult * latency_noise, np.nan)
    objective = np.array([p.objective_s for p in prof])
    workload_latency, slo_bad = np.full((W, n), np.nan), np.ones((W, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = P95_TAIL ** (objective[pw][:, None] / pod_latency)
        for w in range(W):
            pods = cluster.pods_of(w)
            served = available[w] > 0
            slo_bad[w] = np.where(served, np.nansum(bad[pods], axis=0) / np.maximum(available[w], 1.0), 1.0)
            workload_latency[w] = np.where(served, _merged_p95(pod_latency[pods]), np.nan)

    # GPUs.
    busy = np.zeros((G, n), bool)
    busy[gp] = ready
    util = np.zeros((G, n))
    util[gp] = np.minimum(rho, 1.0)
    util_pct = np.where(busy, np.clip(np.round(100.0 * util * (1.0 + util_noise)), 1.0, 100.0), 0.0)
    used = np.zeros((G, n))
    weights = np.array([p.weights_mib for p in prof])[pw][:, None]
    kv = np.array([p.kv_mib for p in prof])[pw][:, None]
    normal = FB_CONTEXT_MIB + weights + kv * np.minimum(rho, 1.0) + mem_noise[gp]
    used[gp] = np.where(ready, normal + (LEAK_FULL * FB_TOTAL_MIB - normal) * fx.leak, 0.0)
    used = np.clip(np.round(used), 0.0, FB_TOTAL_MIB)
    power = np.where(busy, IDLE_POWER_W + POWER_SLOPE_W * util_pct / 100.0 * clock_factor, IDLE_POWER_W)
    power = np.round(power * (1.0 + power_noise), 2)
    clock = np.where(busy, MAX_SM_CLOCK_MHZ * clock_factor - clock_jitter, IDLE_SM_CLOCK_MHZ)
    restarts = restarts0[:, None] + np.stack([np.searchsorted(np.sort(times), t, side="right")
                                              for times in fx.restart_times])

    gpu = {GPU_UTIL: util_pct, FB_USED: used, FB_FREE: FB_TOTAL_MIB - used, GPU_TEMP: temp, POWER: power,
           SM_CLOCK: np.round(clock), XID: fx.xid.copy(), THROTTLE: throttle.astype(float)}
    gone = fx.dead | fx.exporter_down
    series: dict[str, dict[Entity, np.ndarray]] = {}
    for metric, values in gpu.items():
        values = np.where(gone, np.nan, values)
        series[metric] = {cluster.gpus[g]: values[g] for g in range(G)}
    keys = [Entity(workload=w, namespace=NAMESPACE) for w in cluster.workloads]
    for metric, values in ((DEMAND, demand), (LATENCY, workload_latency), (SLO_BAD, np.clip(slo_bad, 0.0, 1.0)),
                           (REPLICAS, available)):
        series[metric] = {keys[w]: values[w] for w in range(W)}
    for metric, values in ((RESTARTS, restarts), (POD_LATENCY, pod_latency)):
        series[metric] = {cluster.pod_entity(p): values[p] for p in range(P)}
    return series


def _merged_p95(latency: np.ndarray) -> np.ndarray:
    """p95 of equal-weight exponential-tailed pods (NaN rows: not serving), by bisection per step."""
    ready = np.isfinite(latency)
    rate = np.where(ready, math.log(P95_TAIL) / np.where(ready, latency, 1.0), 0.0)
    count = np.maximum(ready.sum(axis=0), 1)
    lo = np.where(ready, latency, np.inf).min(axis=0)
    hi = np.where(ready, latency, -np.inf).max(axis=0)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        over = (np.where(ready, np.exp(rate * mid), 0.0).sum(axis=0) / count) > P95_TAIL
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    return 0.5 * (lo + hi)
