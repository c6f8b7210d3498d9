"""Lead times, configured and measured: how long capacity takes to arrive.

A policy that scales ahead of demand needs two delays (see :mod:`policies.leadtime`):

* per GPU node pool, the **node provisioning time**: node created -> node Ready;
* per workload, the **replica startup time**: pod *scheduled* -> pod Ready (pulling the image and
  loading the model weights onto the GPU).

The startup is measured from *scheduled*, not from *created*, on purpose: a pod created while no GPU
is free waits in Pending for a node, and that wait is the node provisioning time, which the plan
already adds in front of the startup (``t + Ln + Lp``). Counting it in the startup too would
double-count it and make every plan that needs a node start too early.

Both delays are configured (the ``startup_seconds`` and ``provisioning_seconds`` the operator
writes), and both are measured: each replica or node that becomes Ready is one sample, and the last
``window`` samples per target give a rolling quantile (p90 by default). Once a target has
``min_samples`` samples its measured value replaces the configured one; before that the configured
value stands, so one slow start on a fresh workload cannot move the plan on its own. A window, not
all history, so that a startup that got faster (weights cached on the node, a smaller model) is
followed within ``window`` starts.

The quantile uses ``np.nanquantile(..., method="higher")``: the smallest observed sample at or above
the quantile, never an interpolation below it. That is the conservative choice for a lead time
(starting a little early costs a few GPU-minutes; starting late misses the SLO), and the value is
one that really happened, which reads better in a reason ("measured p90 195 s").

:class:`LeadTimeLearner` is the mutable part, kept by the tick of a live agent or a simulator; its
:meth:`~LeadTimeLearner.pod_seconds` and :meth:`~LeadTimeLearner.node_seconds` are what goes into
``ClusterState.workloads.startup_seconds`` and ``ClusterState.node_pools.provisioning_seconds``
for the pure ``decide()``. Samples are kept in ring buffers, one row per target, NaN for an empty
slot; ``observe_*`` is vectorised, so a simulator can feed thousands of Ready events per tick.
Samples that are NaN, infinite or negative are dropped (a clock skew or a missing timestamp must not
poison the estimate); an index out of range is a caller's bug and raises :class:`ValueError`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

QUANTILE_METHOD = "higher"


def effective(configured: np.ndarray, measured: np.ndarray, samples: np.ndarray, min_samples: int) -> np.ndarray:
    """The lead time to use per target: ``measured`` where ``samples >= min_samples``, else ``configured``.

    A measured value that is not finite (NaN where nothing was measured) never wins, so the result
    is finite wherever ``configured`` is.
    """
    configured = np.asarray(configured, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    use = (np.asarray(samples) >= min_samples) & np.isfinite(measured)
    return np.where(use, measured, configured)


def _configured(values: np.ndarray, what: str) -> np.ndarray:
    out = np.array(values, dtype=np.float64, copy=True)
    if out.ndim != 1:
        raise ValueError(f"configured {what} seconds must be a 1-D array, got shape {out.shape}")
    bad = np.flatnonzero(~np.isfinite(out) | (out < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"configured {what} seconds must be finite and >= 0, got {out[i]!r} at index {i}")
    return out


class _Rings:
    """Rolling samples for ``n`` targets: ``[n, window]`` floats, NaN = empty, one write position per row."""

    def __init__(self, n: int, window: int, what: str) -> None:
        self.what = what
        self.values = np.full((n, window), np.nan)
        self.position = np.zeros(n, dtype=np.int64)  # next slot to write, per row

    @property
    def n(self) -> int:
        return self.values.shape[0]

    @property
    def window(self) -> int:
        return self.values.shape[1]

    def check_index(self, index: int) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"{self.what} index must be an integer, got {index!r}")
        if not 0 <= index < self.n:
            raise ValueError(f"{self.what} index {int(index)} out of range [0, {self.n})")
        return int(index)

    def observe(self, index: np.ndarray, seconds: np.ndarray) -> None:
        index = np.atleast_1d(np.asarray(index))
        seconds = np.atleast_1d(np.asarray(seconds, dtype=np.float64))
        if index.ndim != 1 or seconds.ndim != 1 or index.shape != seconds.shape:
            raise ValueError(
                f"{self.what} indices and seconds must be 1-D arrays of one length, got shapes {index.shape} and {seconds.shape}"
            )
        if index.size == 0:
            return
        if index.dtype.kind not in "iu":
            raise ValueError(f"{self.what} indices must be integers, got dtype {index.dtype}")
        out = (index < 0) | (index >= self.n)
        if out.any():
            raise ValueError(f"{self.what} index {int(index[np.argmax(out)])} out of range [0, {self.n})")
        keep = np.isfinite(seconds) & (seconds >= 0)
        index, seconds = index[keep].astype(np.int64), seconds[keep]
        if index.size == 0:
            return
        # Group the samples by target, keeping arrival order within a target (stable sort), and give
        # each its rank within its group: the k-th sample for row r goes to slot position[r] + k.
        order = np.argsort(index, kind="stable")
        index, seconds = index[order], seconds[order]
        counts = np.bincount(index, minlength=self.n)
        starts = np.cumsum(counts) - counts
        rank = np.arange(index.size) - starts[index]
        # More than `window` samples for one row in one call: only its last `window` can be kept, and
        # dropping the rest first means no two writes hit the same slot.
        last = rank >= counts[index] - self.window
        index, seconds, rank = index[last], seconds[last], rank[last]
        slot = (self.position[index] + rank) % self.window
        self.values[index, slot] = seconds
        self.position = (self.position + counts) % self.window

    def samples(self) -> np.ndarray:
        return np.count_nonzero(~np.isnan(self.values), axis=1).astype(np.int64)

    def measured(self, quantile: float, min_samples: int) -> np.ndarray:
        """The rolling quantile per row with at least ``min_samples`` samples; NaN elsewhere."""
        out = np.full(self.n, np.nan)
        rows = np.flatnonzero(self.samples() >= min_samples)
        if rows.size:
            out[rows] = np.nanquantile(self.values[rows], quantile, axis=1, method=QUANTILE_METHOD)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": [[None if math.isnan(v) else float(v) for v in row] for row in self.values.tolist()],
            "position": [int(p) for p in self.position],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        rows = data["samples"]
        if len(rows) != self.n or any(len(row) != self.window for row in rows):
            raise ValueError(f"{self.what} samples must be {self.n} rows of {self.window}")
        values = np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)
        kept = values[~np.isnan(values)]
        if not (np.isfinite(kept) & (kept >= 0)).all():
            raise ValueError(f"{self.what} samples must be finite and >= 0 (null for an empty slot)")
        position = np.array(data["position"], dtype=np.int64).reshape(-1)
        if position.shape != (self.n,) or ((position < 0) | (position >= self.window)).any():
            raise ValueError(f"{self.what} positions must be {self.n} integers in [0, {self.window})")
        self.values = values.reshape(self.n, self.window)
        self.position = position


class LeadTimeLearner:
    """Per-workload startup and per-pool provisioning times: configured, then measured.

    ``pod_seconds`` ([n], one per workload) and ``node_seconds`` ([p], one per node pool) are the
    configured values. Each target keeps its last ``window`` samples; once it has ``min_samples``
    its rolling ``quantile`` (``method="higher"``) replaces the configured value.
    """

    def __init__(
        self,
        pod_seconds: np.ndarray,
        node_seconds: np.ndarray,
        *,
        window: int = 32,
        min_samples: int = 5,
        quantile: float = 0.9,
    ) -> None:
        self._pod_configured = _configured(pod_seconds, "pod startup")
        self._node_configured = _configured(node_seconds, "node provisioning")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
            raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
        if window < min_samples:
            raise ValueError(f"window ({window}) must be at least min_samples ({min_samples}), or no measurement is ever used")
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float, np.floating)) or not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be a number in [0, 1], got {quantile!r}")
        self.window = int(window)
        self.min_samples = int(min_samples)
        self.quantile = float(quantile)
        self._pods = _Rings(self._pod_configured.shape[0], self.window, "workload")
        self._nodes = _Rings(self._node_configured.shape[0], self.window, "pool")

    # ---------------------------------------------------------------- observing

    def observe_pods(self, workload: np.ndarray, seconds: np.ndarray) -> None:
        """One sample per replica that became Ready: its workload index and scheduled -> Ready seconds."""
        self._pods.observe(workload, seconds)

    def observe_nodes(self, pool: np.ndarray, seconds: np.ndarray) -> None:
        """One sample per node that became Ready: its pool index and created -> Ready seconds."""
        self._nodes.observe(pool, seconds)

    # ---------------------------------------------------------------- reading

    def pod_seconds(self) -> np.ndarray:
        """[n] startup seconds to plan with: measured where there are enough samples, else configured."""
        measured = self._pods.measured(self.quantile, self.min_samples)
        return effective(self._pod_configured, measured, self._pods.samples(), self.min_samples)

    def node_seconds(self) -> np.ndarray:
        """[p] provisioning seconds to plan with: measured where there are enough samples, else configured."""
        measured = self._nodes.measured(self.quantile, self.min_samples)
        return effective(self._node_configured, measured, self._nodes.samples(), self.min_samples)

    def pod_samples(self) -> np.ndarray:
        """[n] startup samples kept per workload (at most ``window``)."""
        return self._pods.samples()

    def node_samples(self) -> np.ndarray:
        """[p] provisioning samples kept per pool (at most ``window``)."""
        return self._nodes.samples()

    def pod_configured(self) -> np.ndarray:
        return self._pod_configured.copy()

    def node_configured(self) -> np.ndarray:
        return self._node_configured.copy()

    def describe_pod(self, i: int) -> str:
        """E.g. ``"measured p90 195 s over 12 starts (configured 180 s)"``."""
        i = self._pods.check_index(i)
        return self._describe(self._pods, self._pod_configured, i, "start")

    def describe_node(self, p: int) -> str:
        """E.g. ``"configured 360 s (2 of 5 samples needed)"``."""
        p = self._nodes.check_index(p)
        return self._describe(self._nodes, self._node_configured, p, "node")

    def _describe(self, rings: _Rings, configured: np.ndarray, i: int, noun: str) -> str:
        count = int(rings.samples()[i])
        if count < self.min_samples:
            return f"configured {configured[i]:.0f} s ({count} of {self.min_samples} samples needed)"
        value = float(rings.measured(self.quantile, self.min_samples)[i])
        label = f"p{self.quantile * 100:g}"
        return f"measured {label} {value:.0f} s over {count} {noun}{'' if count == 1 else 's'} (configured {configured[i]:.0f} s)"

    # ---------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        """Everything, as JSON-safe values (empty slots as null): ``from_json`` restores it exactly."""
        return {
            "window": self.window,
            "min_samples": self.min_samples,
            "quantile": self.quantile,
            "pod_configured": [float(v) for v in self._pod_configured],
            "node_configured": [float(v) for v in self._node_configured],
            "pods": self._pods.to_json(),
            "nodes": self._nodes.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LeadTimeLearner":
        learner = cls(
            np.array(data["pod_configured"], dtype=np.float64),
            np.array(data["node_configured"], dtype=np.float64),
            window=int(data["window"]),
            min_samples=int(data["min_samples"]),
            quantile=float(data["quantile"]),
        )
        learner._pods.load(data["pods"])
        learner._nodes.load(data["nodes"])
        return learner
