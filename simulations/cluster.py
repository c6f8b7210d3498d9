"""A simulated GPU cluster: node pools, replicas that take time to start, queues and latency.

Everything is a numpy array over workloads (or pools), so one step costs the same few dozen vector
operations for one workload or a thousand.

One step ``t`` (of ``step_seconds``), in order:

1. **Mature.** Replicas whose startup ends at t become ready; nodes whose provisioning ends at t
   become ready.
2. **Apply the decision.** More replicas than exist -> the extra ones are *pending* (waiting for a
   GPU). Fewer -> remove pending ones first, then starting ones (newest first), then ready ones.
3. **Cluster autoscaler.** A pool needs ``ceil(GPUs of its bound and pending replicas /
   gpus_per_node)`` nodes, at least the policy's node floor (placeholder pods, live) and
   ``min_nodes``, at most ``max_nodes``. Missing nodes are requested now and are ready after the
   pool's ``provisioning_seconds``. GPUs are treated as fungible within a pool: a replica never
   spans nodes and ``gpus_per_replica`` divides ``gpus_per_node`` in the configs we ship, so no
   capacity is lost to fragmentation.
4. **Bind.** Pending replicas take free GPUs on ready nodes, workloads in config order within a
   pool (a replica too large for what is left leaves it to the next workload); a bound replica is
   *starting* and becomes ready ``startup_seconds`` later.
5. **Remove idle nodes.** A node unneeded for ``idle_removal_seconds`` goes: the pool keeps the
   largest need seen over that window (that is exactly "remove a node once it has been empty for
   the idle delay", when a newly needed node reuses the most recently emptied one). Provisioning
   nodes go before ready ones.
6. **Serve.** See :class:`LatencyModel`: arrivals plus the carried backlog are served up to the
   ready replicas' saturation throughput; the rest stays queued for the next step.
7. **Bill.** Every node, ready or provisioning, is billed for all its GPUs (clouds bill from
   boot).

Simulation is deterministic: no randomness here at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.leadtime import lead_steps
from policies.types import ClusterState, PoolTable, WorkloadTable


@dataclass(frozen=True)
class LatencyModel:
    """p95 latency of one workload in one step, in seconds (arrays over workloads).

    With ``c`` the capacity of one replica at its SLO (rps), ``r`` ready replicas, ``A`` arrivals
    and ``B`` the backlog carried in:

    * throughput is at most ``f * r * c`` (``max_throughput_factor`` f >= 1: a replica can be pushed
      past its SLO capacity, at a latency cost); ``served = min(A + B, f * r * c * dt)``;
    * utilisation ``u = served / (r * c * dt)``, so ``u = 1`` is exactly the SLO capacity;
    * ``p95 = base + (slo - base) * u ** exponent + backlog_after / (f * r * c)``: service time
      grows from ``base_p95_seconds`` at idle to exactly the SLO at ``u = 1``, and a request that
      finds a queue waits for it to drain;
    * nothing ready while requests wait: ``timeout_seconds``; no requests at all: ``base``.

    So a step meets its SLO exactly when demand fits in the ready replicas' SLO capacity with no
    backlog left: the simulation's SLO is the capacity planning question, made explicit.
    """

    base_p95: np.ndarray
    slo_p95: np.ndarray
    exponent: np.ndarray
    max_throughput_factor: np.ndarray
    timeout: np.ndarray

    def serve(self, arrivals, backlog, ready, capacity, dt):
        """Returns ``(served, backlog_after, p95_seconds)`` for one step."""
        slo_capacity = ready * capacity * dt
        waiting = arrivals + backlog
        served = np.minimum(waiting, slo_capacity * self.max_throughput_factor)
        backlog_after = waiting - served
        # Safe denominators instead of np.errstate: this runs once per step, for every workload.
        has_capacity = slo_capacity > 0
        denominator = np.where(has_capacity, slo_capacity, 1.0)
        u = np.where(has_capacity, served / denominator, 0.0)
        queue_wait = backlog_after * dt / (self.max_throughput_factor * denominator)  # = B / (f r c)
        p95 = self.base_p95 + (self.slo_p95 - self.base_p95) * u**self.exponent + queue_wait
        p95 = np.where((ready == 0) & (waiting > 0), self.timeout, p95)
        return served, backlog_after, np.minimum(p95, self.timeout)


@dataclass(frozen=True)
class StepOutcome:
    served: np.ndarray
    backlog: np.ndarray
    p95: np.ndarray
    slo_ok: np.ndarray
    replica_actions: np.ndarray  # bool per workload: the spec count changed this step
    node_actions: np.ndarray  # int per pool: nodes added or removed this step
    became_ready: np.ndarray  # int per workload: replicas whose startup ended this step
    nodes_became_ready: np.ndarray  # int per pool: nodes whose provisioning ended this step


class SimulatedCluster:
    """The mutable world a policy acts on in simulation (see the module docstring for one step)."""

    def __init__(self, workloads: WorkloadTable, pools: PoolTable, latency: LatencyModel, step_seconds: float,
                 idle_removal_seconds: np.ndarray, initial_replicas: np.ndarray, initial_nodes: np.ndarray) -> None:
        self.dt = float(step_seconds)
        self.wl = workloads
        self.pools = pools
        self.latency = latency
        n, p = len(workloads.names), len(pools.names)
        self.pool_of = workloads.pool.astype(np.int64)
        self.gpr = workloads.gpus_per_replica.astype(np.int64)
        self.gpn = pools.gpus_per_node.astype(np.int64)
        self.startup_steps = np.array([lead_steps(float(s), self.dt) for s in workloads.startup_seconds], dtype=np.int64)
        self.provision_steps = np.array([lead_steps(float(s), self.dt) for s in pools.provisioning_seconds], dtype=np.int64)
        self.idle_steps = np.array([lead_steps(float(s), self.dt) for s in idle_removal_seconds], dtype=np.int64)
        self._cols = np.arange(n)
        self._pool_cols = np.arange(p)
        self._one_pool = p == 1
        # Workloads grouped by pool, in config order, for binding GPUs in a fixed order.
        self._order = np.argsort(self.pool_of, kind="stable")
        self._pool_sorted = self.pool_of[self._order]
        self._group_start = np.searchsorted(self._pool_sorted, self._pool_sorted, side="left")

        self.t = 0
        self.ready, self.pending = self._place_initial(initial_replicas.astype(np.int64), initial_nodes.astype(np.int64))
        self.start_ring = np.zeros((int(self.startup_steps.max(initial=0)) + 1, n), dtype=np.int64)
        self.nodes_ready = initial_nodes.astype(np.int64).copy()
        self.prov_ring = np.zeros((int(self.provision_steps.max(initial=0)) + 1, p), dtype=np.int64)
        self.need_ring = np.tile(self.nodes_ready, (int(self.idle_steps.max(initial=0)) + 1, 1))
        # Which rows of need_ring fall in each pool's idle window, for every position of the ring.
        size = self.need_ring.shape[0]
        ages = (np.arange(size)[:, None] - np.arange(size)[None, :]) % size  # [t % size, row]
        self._idle_window = ages[:, :, None] <= self.idle_steps[None, None, :]
        self.backlog = np.zeros(n)
        self.spec = self.ready.copy()
        # Running totals of the two rings (kept in step with every change to them).
        self._starting = np.zeros(n, dtype=np.int64)
        self._provisioning = np.zeros(p, dtype=np.int64)

    # -- what a policy may see -----------------------------------------------------------------
    @property
    def starting(self) -> np.ndarray:
        return self._starting.copy()

    @property
    def provisioning(self) -> np.ndarray:
        return self._provisioning.copy()

    def state(self, now: float, observed_demand: np.ndarray) -> ClusterState:
        starting = self.starting
        wl = self.wl
        workloads = WorkloadTable(
            wl.names, wl.pool, self.ready + starting + self.pending, self.ready.copy(), starting, self.pending.copy(),
            wl.min_replicas, wl.max_replicas, wl.gpus_per_replica, wl.capacity_rps, wl.startup_seconds,
            observed_demand,
        )
        pools = self.pools
        node_pools = PoolTable(pools.names, pools.gpus_per_node, self.nodes_ready.copy(), self.provisioning,
                               pools.min_nodes, pools.max_nodes, pools.provisioning_seconds, pools.price_per_gpu_hour)
        return ClusterState(now, self.dt, workloads, node_pools)

    def pool_sum(self, per_workload: np.ndarray) -> np.ndarray:
        if self._one_pool:
            return np.array([per_workload.sum()])
        return np.bincount(self.pool_of, weights=per_workload, minlength=len(self.gpn)).astype(np.int64)

    # -- one step --------------------------------------------------------------------------------
    # (np.count_nonzero instead of ndarray.any() below: a C call, several times cheaper per step.)
    def step(self, desired: np.ndarray, node_floor: np.ndarray, demand_rps: np.ndarray) -> StepOutcome:
        t = self.t
        # 1. mature replicas and nodes due now
        slot = t % self.start_ring.shape[0]
        became_ready = self.start_ring[slot].copy()
        self.ready += self.start_ring[slot]
        self._starting -= self.start_ring[slot]
        self.start_ring[slot] = 0
        nslot = t % self.prov_ring.shape[0]
        nodes_became_ready = self.prov_ring[nslot].copy()
        self.nodes_ready += self.prov_ring[nslot]
        self._provisioning -= self.prov_ring[nslot]
        self.prov_ring[nslot] = 0

        # 2. apply the decision
        desired = np.maximum(desired, 0)
        changed = desired != self.spec
        self.spec = desired
        total = self.ready + self._starting + self.pending
        self.pending += np.maximum(desired - total, 0)
        shrink = np.maximum(total - desired, 0)
        if np.count_nonzero(shrink):
            self._remove_replicas(shrink)

        # 3. cluster autoscaler: request nodes for bound + pending replicas and the policy's floor
        bound = self.ready + self._starting
        want_gpus = self.pool_sum((bound + self.pending) * self.gpr)
        need = -(-want_gpus // self.gpn)
        need = np.minimum(np.maximum(np.maximum(need, node_floor), self.pools.min_nodes), self.pools.max_nodes)
        add = np.maximum(need - self.nodes_ready - self._provisioning, 0)
        node_actions = add
        if np.count_nonzero(add):
            instant = self.provision_steps == 0
            self.nodes_ready += np.where(instant, add, 0)
            later = np.where(instant, 0, add)
            self.prov_ring[(t + self.provision_steps) % self.prov_ring.shape[0], self._pool_cols] += later
            self._provisioning += later

        # 4. bind pending replicas to free GPUs
        if np.count_nonzero(self.pending):
            self._bind(bound)

        # 5. remove nodes unneeded for the whole idle window
        ring = self.need_ring
        ring[t % ring.shape[0]] = need
        keep = np.where(self._idle_window[t % ring.shape[0]], ring, 0).max(axis=0)
        surplus = np.maximum(self.nodes_ready + self._provisioning - keep, 0)
        if np.count_nonzero(surplus):
            self._remove_nodes(surplus)
            node_actions = node_actions + surplus

        # 6. serve
        served, self.backlog, p95 = self.latency.serve(demand_rps * self.dt, self.backlog, self.ready,
                                                       self.wl.capacity_rps, self.dt)
        slo_ok = p95 <= self.latency.slo_p95 * (1 + 1e-9)
        self.t += 1
        return StepOutcome(served, self.backlog, p95, slo_ok, changed, node_actions, became_ready, nodes_became_ready)

    def billed_nodes(self) -> np.ndarray:
        """Nodes billed per pool right now: every ready or provisioning node."""
        return self.nodes_ready + self._provisioning

    def billed_gpus(self) -> np.ndarray:
        """GPUs billed per pool right now."""
        return self.billed_nodes() * self.gpn

    def allocated_gpus(self) -> np.ndarray:
        """GPUs held by each workload's bound (starting or ready) replicas."""
        return (self.ready + self._starting) * self.gpr

    # -- internals -------------------------------------------------------------------------------
    def _place_initial(self, replicas: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start ready as many replicas as the initial nodes hold (config order); the rest pend."""
        free = nodes * self.gpn
        ready = np.zeros_like(replicas)
        for i in self._order:
            p = self.pool_of[i]
            ready[i] = min(int(replicas[i]), int(free[p] // self.gpr[i]))
            free[p] -= ready[i] * self.gpr[i]
        return ready, replicas - ready

    def _take_newest(self, ring: np.ndarray, total: np.ndarray, amount: np.ndarray) -> np.ndarray:
        """Take up to ``amount`` (per column) out of ``ring``'s rows not yet due, newest first.

        ``total`` (the ring's running sum) is kept in step; returns what is still left to take.
        """
        size = ring.shape[0]
        for back in range(size - 1, 0, -1):  # row t itself matured (and was emptied) this step
            if not np.count_nonzero(amount):
                break
            row = (self.t + back) % size
            take = np.minimum(ring[row], amount)
            ring[row] -= take
            total -= take
            amount = amount - take
        return amount

    def _remove_replicas(self, shrink: np.ndarray) -> None:
        """Pending replicas go first, then starting ones (newest first), then ready ones."""
        take = np.minimum(self.pending, shrink)
        self.pending -= take
        shrink = self._take_newest(self.start_ring, self._starting, shrink - take)
        self.ready -= np.minimum(self.ready, shrink)

    def _bind(self, bound: np.ndarray) -> None:
        """Bind pending replicas to free GPUs, workloads in config order within each pool.

        A vectorised pass handles the usual case; where a workload's replica did not fit (a larger
        ``gpus_per_replica``) but GPUs are still free, a second pass in order gives them to the
        workloads after it, so no GPU idles while a replica that fits waits.
        """
        free = self.nodes_ready * self.gpn - self.pool_sum(bound * self.gpr)
        order = self._order
        want = (self.pending * self.gpr)[order]
        cum = np.cumsum(want)
        before = cum - want
        before = before - before[self._group_start]
        room = np.clip(free[self._pool_sorted] - before, 0, want)
        bind = np.empty_like(want)
        bind[order] = room // self.gpr[order]
        left = free - self.pool_sum(bind * self.gpr)
        still = self.pending - bind
        fits = order[(still[order] > 0) & (left[self._pool_sorted] >= self.gpr[order])]
        for i in fits:  # config order within pools; only happens with mixed replica sizes in a pool
            p = self.pool_of[i]
            extra = min(int(still[i]), int(left[p] // self.gpr[i]))
            if extra > 0:
                bind[i] += extra
                left[p] -= extra * self.gpr[i]
        if not np.count_nonzero(bind):
            return
        self.pending -= bind
        instant = self.startup_steps == 0
        self.ready += np.where(instant, bind, 0)
        later = np.where(instant, 0, bind)
        self.start_ring[(self.t + self.startup_steps) % self.start_ring.shape[0], self._cols] += later
        self._starting += later

    def _remove_nodes(self, surplus: np.ndarray) -> None:
        """Provisioning nodes go first (newest first), then ready ones."""
        surplus = self._take_newest(self.prov_ring, self._provisioning, surplus)
        self.nodes_ready -= np.minimum(self.nodes_ready, surplus)
