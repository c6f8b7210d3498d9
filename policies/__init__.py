"""Scaling policies: pure ``decide(now, state, forecasts, log, config) -> (batch, log)`` functions.

Each policy is one module exposing ``NAME``, a frozen config dataclass and ``decide``; the same
function runs in simulation and against a live cluster. ``POLICIES`` maps a name to its module.
"""

from policies import oracle, predictive, reactive

POLICIES = {module.NAME: module for module in (reactive, predictive, oracle)}

__all__ = ["POLICIES", "oracle", "predictive", "reactive"]
