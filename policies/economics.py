"""GPU economics: which forecast quantile to size for, and when an idle replica is worth keeping.

Two costs per workload, both in dollars per hour of one replica:

* ``idle`` = ``gpus_per_replica x price_per_gpu_hour`` of its node pool: what one replica more
  than needed costs;
* ``miss`` = ``slo_miss_cost_per_hour``: what one replica too few costs, as SLO misses (refunds,
  users lost, an on-call page). Configured per workload; the default is documented in the config.

**Sizing up (newsvendor).** Provisioning ``k`` replicas for uncertain demand ``D`` costs ``idle``
per unused replica and ``miss`` per missing one; the expected cost is least at the quantile
``q* = miss / (miss + idle)`` of ``D`` (the critical ratio). A $2.50/h GPU and a $50/h miss give
``q* = 0.952``: be short at most about one step in twenty.

**Scaling down.** Removing a replica saves ``idle`` per hour; if it is needed again within its cold
start ``L`` (replica startup, plus node provisioning when its node goes too), the workload is a
replica short for about ``L``. Keep it while ``P(needed within L) x miss > idle``, i.e. while the
demand forecast over ``[t, t + L]`` reaches its load with probability above ``idle / miss``:
size the scale-down floor at the quantile ``1 - idle / miss`` over the cold-start window. When
``idle >= miss`` nothing is ever kept for its own sake.
"""

from __future__ import annotations

import numpy as np


def newsvendor_quantile(miss_cost: np.ndarray, idle_cost: np.ndarray) -> np.ndarray:
    """``miss / (miss + idle)``: the cost-minimising quantile to provision for (per workload)."""
    miss = np.maximum(np.asarray(miss_cost, dtype=float), 0.0)
    idle = np.maximum(np.asarray(idle_cost, dtype=float), 0.0)
    total = miss + idle
    return np.where(total > 0, miss / np.where(total > 0, total, 1.0), 0.5)


def keep_quantile(miss_cost: np.ndarray, idle_cost: np.ndarray) -> np.ndarray:
    """``1 - idle / miss``: keep capacity the forecast needs with probability above ``idle / miss``.

    Non-positive (nothing kept beyond what sizing up asks for) when idling costs at least a miss.
    """
    miss = np.asarray(miss_cost, dtype=float)
    idle = np.asarray(idle_cost, dtype=float)
    return np.where(miss > 0, 1.0 - idle / np.where(miss > 0, miss, 1.0), 0.0)


def replica_idle_cost(gpus_per_replica: np.ndarray, pool: np.ndarray, price_per_gpu_hour: np.ndarray) -> np.ndarray:
    """Dollars per hour of one replica of each workload in its pool."""
    return np.asarray(gpus_per_replica, dtype=float) * np.asarray(price_per_gpu_hour, dtype=float)[pool]
