"""Demand forecasters behind one protocol (:mod:`forecasters.base`) and the registry of model names.

``build(name, config)`` makes a model by name; modules are imported on first use, so importing
this package does not import torch or statsmodels.
"""

from __future__ import annotations

import importlib

from forecasters.base import DEFAULT_QUANTILES, Fitted, Forecaster, ForecastInputError  # noqa: F401

# name -> "module:Class". Order: simplest first (the backtest table and `--help` list them so).
MODELS: dict[str, str] = {
    "naive": "forecasters.naive:Naive",
    "seasonal-naive": "forecasters.naive:SeasonalNaive",
    "profile": "forecasters.profile:Profile",
    "ets": "forecasters.ets:ETS",
    "sarimax": "forecasters.sarimax:SARIMAX",
    "gbm": "forecasters.gbm:QuantileGBM",
    "torch-mlp": "forecasters.torch_global:TorchGlobal",
    "auto": "forecasters.selector:Selector",
}
DEFAULT_MODEL = "auto"


def model_class(name: str) -> type[Forecaster]:
    if name not in MODELS:
        raise ForecastInputError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build(name: str, config: dict | None = None) -> Forecaster:
    """A model by registered name, with constructor arguments from ``config`` (JSON-able)."""
    return model_class(name)(**(config or {}))
