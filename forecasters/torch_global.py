"""A global quantile MLP (torch): one network trained across many series, calibrated per series.

How it works, and why:

* **One network for the fleet.** :meth:`TorchGlobal.train` samples forecast windows from every
  history at once and trains a single network on all of them, so a new or short-lived workload
  benefits from the shapes learned on the others. The trained network is returned by
  :meth:`~TorchGlobal.learned_for` for *every* key: ``fit()`` on any series then only runs the
  base class's split-conformal calibration with it (a batched forward pass), no training. Without
  a prior ``train``, ``fit()`` trains on that one series alone (same code, ``fit_samples`` budget).
* **Inputs, per forecast origin o** (reading ``y[:o]`` only):

  - the last ``window`` values (``input_s``, 2 hours by default);
  - the same stretch one day earlier, extended over the forecast horizon (``y[o-day-window :
    o-day+horizon]``): what happened at this time yesterday, when the step divides a day (see
    :func:`forecasters.base.seasons`); without a daily season this block is left out;
  - time of day and day of week of the first forecast step, as sin/cos.

  Values are divided by the window's mean level, so one network serves series whose scales
  differ by orders of magnitude; outputs are multiplied back. The level is floored by a tenth of
  the day-ago block's mean and of the mean of everything before the origin (an idle hour in a
  busy or intermittent series must not blow the inputs up) and by a tiny constant (an all-zero
  series stays zero, nothing divides by zero). After ``Fitted.update`` "everything before" is the
  ``context_steps`` tail, so that floor can differ slightly from the one seen at fit time.
* **Outputs**: ``horizon_max = steps_for(max_horizon_s, step)`` steps x the model's quantiles.
  The lowest quantile is the last normalised value (persistence) plus a learned correction, and
  each higher quantile adds a softplus increment, so quantiles can never cross. Training
  minimises the pinball (quantile) loss, scored only where the target was really observed (gap
  fills are never targets). Forecasts further ahead than ``horizon_max`` repeat the last trained
  step; the base class's conformal offsets widen with the lead there.
* **Devices**: ``device="auto"`` uses CUDA when torch can, else the CPU (:mod:`forecasters.device`).
  The series are copied to the device once and windows are gathered there batch by batch, so
  the GPU is not starved by host-side window building.
* **Reproducible**: the weights are initialised from ``seed`` (in a forked RNG, leaving the global
  one alone) and windows are drawn and shuffled by a seeded ``torch.Generator``. On the CPU, where
  training runs under ``torch.use_deterministic_algorithms``, two trainings with the same seed and
  data give bit-identical weights and forecasts; on CUDA, cuBLAS may order reductions differently
  from run to run, so results agree to float precision.
* **Registry**: :meth:`~TorchGlobal.export` gives the architecture and training summary as JSON and
  the weights as a ``state_dict`` blob; :meth:`~TorchGlobal.restore` loads it with
  ``torch.load(weights_only=True)``, which refuses anything but tensors (no arbitrary unpickling).
"""

from __future__ import annotations

import io
import math
import pickle
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # torch is an optional dependency
    raise ImportError("the torch-mlp forecaster needs torch: pip install 'gpu-aiops[torch]'") from exc

from forecasters.base import DAY, Forecaster, ForecastInputError, prepare, seasons, steps_for
from forecasters.device import describe_device, resolve_device
from forecasters.series import Series

_SCALE_FLOOR = 1e-6  # absolute floor of the normalising level: an all-zero window stays all zero
_CONTEXT_SHARE = 0.1  # the level is at least this share of the day-ago context's mean
_CALENDAR = 4  # sin/cos time of day, sin/cos day of week


@dataclass(frozen=True)
class Arch:
    """A network's input and output sizes; it is only valid at the step it was built for."""

    step: float
    window: int  # recent steps read
    season: int  # steps in a day (0: no daily season at this step, no day-ago block)
    seasonal: int  # day-ago steps read: window + min(horizon, season), 0 without a season
    horizon: int  # steps forecast
    quantiles: tuple[float, ...]
    hidden: int
    depth: int

    @property
    def inputs(self) -> int:
        return self.window + self.seasonal + _CALENDAR

    @property
    def context(self) -> int:
        """Steps before an origin that the inputs read."""
        return self.window + self.season

    def to_json(self) -> dict:
        return {**asdict(self), "quantiles": list(self.quantiles), "inputs": self.inputs}

    @classmethod
    def from_json(cls, data: dict) -> "Arch":
        return cls(float(data["step"]), int(data["window"]), int(data["season"]), int(data["seasonal"]),
                   int(data["horizon"]), tuple(float(q) for q in data["quantiles"]), int(data["hidden"]),
                   int(data["depth"]))


class QuantileMLP(nn.Module):
    """An MLP from the normalised inputs to ``horizon x quantiles`` outputs, monotone in the quantile."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.horizon, self.n_quantiles = arch.horizon, len(arch.quantiles)
        layers: list[nn.Module] = []
        width = arch.inputs
        for _ in range(arch.depth):
            layers += [nn.Linear(width, arch.hidden), nn.ReLU()]
            width = arch.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, arch.horizon * self.n_quantiles)

    def forward(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``[batch, horizon, quantiles]``: persistence plus a correction, then softplus steps up."""
        raw = self.head(self.body(x)).view(-1, self.horizon, self.n_quantiles)
        low = last[:, None, None] + raw[..., :1]
        return torch.cat([low, low + F.softplus(raw[..., 1:]).cumsum(-1)], dim=-1)


@dataclass
class Trained:
    """A trained network with its architecture and training summary: the model's parameters."""

    net: QuantileMLP
    arch: Arch
    summary: dict


def calendar(times: np.ndarray) -> np.ndarray:
    """sin/cos of time of day and day of week (UTC) of epoch seconds ``times``, ``[n, 4]`` float32.

    Computed in float64: epoch seconds do not fit float32's 24-bit mantissa.
    """
    day = 2 * np.pi * (np.asarray(times, dtype=np.float64) % DAY) / DAY
    week = 2 * np.pi * ((np.asarray(times, dtype=np.float64) / DAY + 3.0) % 7.0) / 7.0  # 1970-01-01: Thursday
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=1).astype(np.float32)


@dataclass
class Origins:
    """Forecast origins as tensors: where each one reads, and what it knows of its series' past."""

    pos: torch.Tensor  # flat position in the values of the origin's first target
    lo: torch.Tensor  # flat position where the origin's series starts
    past: torch.Tensor  # mean of the series before the origin (the level's floor)
    cal: torch.Tensor  # [n, 4] calendar features of the first target

    def __getitem__(self, idx: torch.Tensor) -> "Origins":
        return Origins(self.pos[idx], self.lo[idx], self.past[idx], self.cal[idx])

    @classmethod
    def of(cls, y: np.ndarray, start: float, step: float, origins: np.ndarray, offset: int, device: torch.device) -> "Origins":
        """Origins ``origins`` of one series ``y`` stored at ``offset`` in the values."""
        csum = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
        past = csum[origins] / np.maximum(origins, 1)
        tensors = (origins + offset, np.full(origins.shape, offset), past.astype(np.float32),
                   calendar(start + origins * step))
        return cls(*(torch.from_numpy(np.ascontiguousarray(t)).to(device) for t in tensors))

    @classmethod
    def cat(cls, parts: list["Origins"]) -> "Origins":
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("pos", "lo", "past", "cal")))


def network_inputs(values: torch.Tensor, at: Origins, arch: Arch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's inputs for origins ``at`` in ``values`` (all series back to back).

    Reads only ``values[lo:pos]``: positions before ``lo`` repeat the series' first value (an
    origin with less than the full context). The level that normalises is the recent window's mean,
    floored by a share of the day-ago block's and of the whole past's mean (so a window of zeros
    in a busy or intermittent series does not blow the inputs up) and by a tiny constant (so an
    all-zero series stays all zero). Returns ``(x, last, scale)``: the normalised inputs, the last
    normalised value, and the level.
    """
    pos, lo = at.pos[:, None], at.lo[:, None]
    hi = torch.maximum(pos - 1, lo)  # an origin at its series' start (no past) reads the first value
    recent_idx = pos + torch.arange(-arch.window, 0, device=pos.device)[None, :]
    recent = values[torch.minimum(torch.maximum(recent_idx, lo), hi)]
    scale = torch.maximum(recent.mean(dim=1), _CONTEXT_SHARE * at.past)
    blocks = [recent]
    if arch.seasonal:
        offsets = torch.arange(-arch.window, arch.seasonal - arch.window, device=pos.device) - arch.season
        seasonal = values[torch.minimum(torch.maximum(pos + offsets[None, :], lo), hi)]
        scale = torch.maximum(scale, _CONTEXT_SHARE * seasonal.mean(dim=1))
        blocks.append(seasonal)
    scale = scale.clamp_min(_SCALE_FLOOR)
    x = torch.cat([b / scale[:, None] for b in blocks] + [at.cal], dim=1)
    return x, recent[:, -1] / scale, scale


def pinball(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss of ``pred [B, H, Q]`` against ``target [B, H]`` where ``mask`` is 1."""
    diff = target[..., None] - pred
    loss = torch.maximum(q * diff, (q - 1) * diff).mean(dim=-1)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


@dataclass
class _Pool:
    """Training windows: every series back to back on the device, and the sampled origins."""

    values: torch.Tensor
    observed: torch.Tensor  # 1.0 where the value was observed (a valid target), else 0.0
    origins: Origins

    @property
    def size(self) -> int:
        return int(self.origins.pos.shape[0])

    def batch(self, idx: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, ...]:
        at = self.origins[idx]
        x, last, scale = network_inputs(self.values, at, arch)
        targets = at.pos[:, None] + torch.arange(arch.horizon, device=idx.device)[None, :]
        return x, last, self.values[targets] / scale[:, None], self.observed[targets]


def _pool(series: list[tuple[np.ndarray, np.ndarray, float]], arch: Arch, budget: int, gen: torch.Generator,
          device: torch.device) -> _Pool:
    """Draw up to ``budget`` origins (all of them when there are fewer) uniformly over every series'
    origins with a full context before and a full horizon after."""
    lengths = np.array([y.shape[0] for y, _, _ in series])
    counts = np.maximum(lengths - arch.context - arch.horizon + 1, 0)
    total = int(counts.sum())
    chosen = torch.arange(total) if total <= budget else torch.randperm(total, generator=gen)[:budget].sort().values
    which = np.searchsorted(np.cumsum(counts), chosen.numpy(), side="right")
    origin = chosen.numpy() - (np.cumsum(counts) - counts)[which] + arch.context
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    parts = [Origins.of(y, start, arch.step, origin[which == i], int(offsets[i]), device)
             for i, (y, _, start) in enumerate(series)]
    values = torch.from_numpy(np.concatenate([y for y, _, _ in series]).astype(np.float32)).to(device)
    observed = torch.from_numpy(np.concatenate([m for _, m, _ in series]).astype(np.float32)).to(device)
    return _Pool(values, observed, Origins.cat(parts))


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """On the CPU, run under ``torch.use_deterministic_algorithms`` (a nondeterministic kernel
    raises instead of silently breaking reproducibility); on CUDA leave the setting alone (it would
    need ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts)."""
    if device.type != "cpu":
        yield
        return
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class TorchGlobal(Forecaster):
    """A global quantile MLP over recent values, the same time yesterday and the calendar (torch)."""

    name = "torch-mlp"
    description = "global quantile MLP (torch) over recent values, yesterday and the calendar"

    def __init__(self, max_horizon_s: float = 3600.0, input_s: float = 7200.0, hidden: int = 128, depth: int = 3,
                 samples: int = 20_000, fit_samples: int = 4_000, epochs: int = 10, batch_size: int = 512,
                 lr: float = 1e-3, seed: int = 0, device: str = "auto", **base) -> None:
        super().__init__(**base)
        self.max_horizon_s = float(max_horizon_s)
        self.input_s = float(input_s)
        self.hidden, self.depth = int(hidden), int(depth)
        self.samples, self.fit_samples, self.epochs = int(samples), int(fit_samples), int(epochs)
        self.batch_size, self.lr, self.seed = int(batch_size), float(lr), int(seed)
        for name in ("hidden", "depth", "samples", "fit_samples", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ForecastInputError(f"{self.name}: {name} must be >= 1, got {getattr(self, name)}")
        if not (self.max_horizon_s > 0 and self.input_s > 0 and self.lr > 0):
            raise ForecastInputError(f"{self.name}: max_horizon_s, input_s and lr must be > 0")
        self.device_name = str(device)
        self.device = resolve_device(device)
        self.trained: Trained | None = None  # the global network, once train() or restore() ran

    # -- configuration ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {**self._base_config(), "max_horizon_s": self.max_horizon_s, "input_s": self.input_s,
                "hidden": self.hidden, "depth": self.depth, "samples": self.samples, "fit_samples": self.fit_samples,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "device": self.device_name}

    def arch(self, step: float) -> Arch:
        """The network's sizes at ``step``."""
        season = seasons(step).get("daily", 0)
        window, horizon = steps_for(self.input_s, step), steps_for(self.max_horizon_s, step)
        seasonal = window + min(horizon, season) if season else 0
        return Arch(float(step), window, season, seasonal, horizon, self.quantiles, self.hidden, self.depth)

    def min_history(self, step: float) -> int:
        """The inputs' context (window plus a day when there is a daily season) and one horizon of
        targets, so that there is at least one window to train on."""
        arch = self.arch(step)
        return arch.context + arch.horizon

    def context_steps(self, step: float) -> int:
        return self.arch(step).context

    def learned_for(self, key: str) -> Trained | None:
        return self.trained  # global: the same network for every key

    # -- training --------------------------------------------------------------------------------
    def train(self, histories: list[Series]) -> dict:
        """Train one network on windows from all ``histories`` (one step); every later fit uses it."""
        if not histories:
            raise ForecastInputError(f"{self.name}: train needs at least one history")
        steps = sorted({float(h.step) for h in histories})
        if len(steps) > 1:
            raise ForecastInputError(f"{self.name}: one global network needs one step, the histories have steps {steps} s")
        need = self.min_history(steps[0])
        data = [prepare(h) for h in histories]
        usable = [d for d in data if d.y.shape[0] >= need]
        if not usable:
            raise ForecastInputError(f"{self.name}: no history has the {need} steps training needs "
                                     f"(the longest has {max(d.y.shape[0] for d in data)})")
        self.trained = self._train_network([(d.y, ~np.isnan(d.observed), d.start) for d in usable], steps[0], self.samples)
        return {**self.trained.summary, "series": len(histories), "series_used": len(usable)}

    def _estimate(self, y: np.ndarray, start: float, step: float) -> Trained:
        """Nothing trained: train on this one series (same code as :meth:`train`, ``fit_samples``)."""
        return self._train_network([(y, np.ones(y.shape[0], dtype=bool), start)], step, self.fit_samples)

    def _train_network(self, series: list[tuple[np.ndarray, np.ndarray, float]], step: float, budget: int) -> Trained:
        started = time.perf_counter()
        arch = self.arch(step)
        gen = torch.Generator().manual_seed(self.seed)
        pool = _pool(series, arch, budget, gen, self.device)
        if pool.size == 0:
            raise ValueError(f"no training window: every series is shorter than {arch.context + arch.horizon} steps")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = QuantileMLP(arch)  # initialised on the CPU: the same weights on every device
        net.to(self.device)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, foreach=True)
        batches = math.ceil(pool.size / self.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=batches * self.epochs)
        q = torch.tensor(arch.quantiles, dtype=torch.float32, device=self.device)
        with _deterministic(self.device):
            for _ in range(self.epochs):
                order = torch.randperm(pool.size, generator=gen).to(self.device)
                total = torch.zeros((), device=self.device)
                for b in range(batches):
                    idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                    x, last, target, mask = pool.batch(idx, arch)
                    loss = pinball(net(x, last), target, mask, q)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    optimiser.step()
                    schedule.step()
                    total += loss.detach() * idx.shape[0]
        final_loss = float(total / pool.size)  # mean pinball loss (normalised units) of the last epoch
        net.eval()
        seconds = time.perf_counter() - started
        summary = {"samples": pool.size, "epochs": self.epochs, "final_loss": final_loss, "seconds": seconds,
                   "samples_per_s": pool.size * self.epochs / seconds, "device": describe_device(self.device),
                   "parameters": sum(p.numel() for p in net.parameters())}
        return Trained(net, arch, summary)

    # -- forecasting -----------------------------------------------------------------------------
    def _paths(self, params: Trained, y, start, step, origins, horizon):
        arch = params.arch
        if abs(arch.step - step) > 1e-9 * step:
            raise ForecastInputError(f"{self.name}: the network was trained at a {arch.step:g} s step, "
                                     f"this series has {step:g} s; train it at this step")
        device = next(params.net.parameters()).device
        at = Origins.of(y, start, step, np.asarray(origins, dtype=np.int64), 0, device)
        with torch.inference_mode():
            values = torch.as_tensor(np.asarray(y, dtype=np.float32), device=device)
            x, last, scale = network_inputs(values, at, arch)
            out = (params.net(x, last) * scale[:, None, None]).double().cpu().numpy()
        if horizon > arch.horizon:  # beyond the trained horizon: repeat the last step
            out = np.concatenate([out, np.repeat(out[:, -1:], horizon - arch.horizon, axis=1)], axis=1)
        native = {q: out[:, :horizon, i] for i, q in enumerate(arch.quantiles)}
        point = native.get(0.5, native[arch.quantiles[len(arch.quantiles) // 2]])
        return point, native

    # -- registry --------------------------------------------------------------------------------
    def export(self) -> tuple[dict, dict[str, bytes]]:
        """``({"arch", "step", "training"}, {"model.pt": state_dict bytes})`` (CPU tensors)."""
        if self.trained is None:
            return {"arch": None, "step": None, "training": None}, {}
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.trained.net.state_dict().items()}, buffer)
        return ({"arch": self.trained.arch.to_json(), "step": self.trained.arch.step, "training": self.trained.summary},
                {"model.pt": buffer.getvalue()})

    def restore(self, state: dict, blobs: dict[str, bytes]) -> None:
        """Rebuild the network from ``export()``'s output; the weights are loaded as tensors only."""
        if state.get("arch") is None:
            self.trained = None
            return
        arch = Arch.from_json(state["arch"])
        if "model.pt" not in blobs:
            raise ForecastInputError(f"{self.name}: the stored model has an architecture but no model.pt weights")
        try:
            weights = torch.load(io.BytesIO(blobs["model.pt"]), weights_only=True, map_location=self.device)
        except pickle.UnpicklingError as exc:  # an object other than tensors (or not a pickle at all)
            found = re.search(r"Unsupported (?:global: GLOBAL \S+|operand \d+)", str(exc))
            detail = found.group(0).strip() if found else _first_line(exc)
            raise ForecastInputError(f"{self.name}: model.pt refused by torch.load(weights_only=True): {detail[:200]}") from exc
        except (RuntimeError, EOFError, ValueError) as exc:  # truncated or not a torch file
            raise ForecastInputError(f"{self.name}: model.pt is not a torch state_dict: {_first_line(exc)}") from exc
        net = QuantileMLP(arch)
        try:
            net.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as exc:  # missing, extra or mis-shaped tensors
            raise ForecastInputError(f"{self.name}: model.pt does not match the stored architecture: {_first_line(exc)}") from exc
        self.trained = Trained(net.to(self.device).eval(), arch, dict(state.get("training") or {}))


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes, for a one-line error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
