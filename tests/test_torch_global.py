"""The global torch quantile MLP ("torch-mlp") and forecasters.device.

Tiny networks and budgets on short synthetic series (3 days at 10-minute steps), so the file runs
in seconds on 2 cores.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters import build
from forecasters import device as device_mod
from forecasters.base import ForecastInputError
from forecasters.device import describe_device, nvml_name, resolve_device
from forecasters.series import Series
from forecasters.torch_global import TorchGlobal, calendar, pinball

DAY = 86_400.0
STEP = 600.0
START = 1_767_571_200.0  # 2026-01-05 00:00 UTC
TINY = {"hidden": 16, "depth": 2, "samples": 400, "fit_samples": 200, "epochs": 2, "batch_size": 64, "device": "cpu"}


def series(key: str, days: float = 3, scale: float = 100.0, seed: int = 0, phase: float = 0.0) -> Series:
    n = int(days * DAY / STEP)
    t = np.arange(n) * STEP
    rng = np.random.default_rng(seed)
    values = scale * (1 + 0.5 * np.sin(2 * np.pi * t / DAY + phase)) * rng.lognormal(0, 0.05, n)
    return Series(key, START, STEP, values)


def fleet() -> list[Series]:
    mid = series("mid", scale=80, seed=2, phase=1.0)
    outage = np.asarray(mid.values).copy()
    outage[200:215] = np.nan  # a scrape outage: filled for the inputs, never a training target
    return [series("small", scale=0.5, seed=1), Series("mid", START, STEP, outage),
            series("large", scale=20_000, seed=3, phase=2.0)]


def stacked(forecast) -> np.ndarray:
    return np.stack([forecast.quantiles[q] for q in sorted(forecast.quantiles)])


@pytest.fixture(scope="module")
def trained() -> TorchGlobal:
    model = TorchGlobal(**TINY)
    model.train(fleet())
    return model


def test_forecast_contract(trained):
    s = fleet()[1]
    f = trained.forecast(s, 6)
    assert f.model == "torch-mlp" and f.fell_back is None and f.horizon == 6
    assert sorted(f.quantiles) == list(trained.quantiles)
    values = stacked(f)
    assert np.isfinite(values).all() and (values >= 0).all() and (np.diff(values, axis=0) >= 0).all()
    assert np.array_equal(values, stacked(trained.fit(s).predict(6)))
    longer = trained.fit(s).predict(20)  # beyond horizon_max (6 steps): the last step repeats
    assert longer.horizon == 20 and np.array_equal(longer.quantiles[0.5][:6], f.quantiles[0.5])


def test_native_quantiles_are_monotone_median_is_the_point_and_only_the_past_is_read(trained):
    s = fleet()[2]
    y = np.asarray(s.values)
    params = trained.learned_for("any key")
    origins = np.array([200, 300, 431])
    point, native = trained._paths(params, y, s.start, STEP, origins, 6)
    assert point.shape == (3, 6) and all(native[q].shape == (3, 6) for q in trained.quantiles)
    assert np.array_equal(point, native[0.5])
    assert (np.diff(np.stack([native[q] for q in trained.quantiles]), axis=0) >= 0).all()
    longer, _ = trained._paths(params, y, s.start, STEP, origins, 10)  # beyond horizon_max: the last step repeats
    assert np.array_equal(longer[:, :6], point) and (longer[:, 6:] == point[:, -1:]).all()
    future_changed = y.copy()
    future_changed[301:] *= 7.0
    again, _ = trained._paths(params, future_changed, s.start, STEP, origins[:2], 6)
    assert np.array_equal(again, point[:2])


def test_one_network_serves_every_key_and_fit_does_not_retrain(trained, monkeypatch):
    network = trained.learned_for("small")
    assert network is trained.learned_for("never-seen") and network is not None

    def no_training(*args, **kwargs):
        raise AssertionError("fit() must reuse the global network")

    monkeypatch.setattr(trained, "_train_network", no_training)
    fitted = trained.fit(series("new", scale=3.0, seed=9))
    assert fitted.params is network and fitted.fell_back is None


def test_global_training_summary_and_scale_free_forecasts():
    model = TorchGlobal(**TINY)
    summary = model.train(fleet() + [series("too-short", days=0.5)])
    assert summary["series"] == 4 and summary["series_used"] == 3 and summary["epochs"] == 2
    assert summary["samples"] == 400 and summary["device"].startswith("cpu")
    assert np.isfinite(summary["final_loss"]) and summary["seconds"] > 0 and summary["samples_per_s"] > 0
    # inputs are divided by the window's level: a series 1,000 times larger gets a forecast 1,000 times larger
    s = series("w", scale=2.0, seed=5)
    big = Series("w", s.start, s.step, np.asarray(s.values) * 1000)
    np.testing.assert_allclose(stacked(model.forecast(big, 6)), 1000 * stacked(model.forecast(s, 6)), rtol=1e-3)


def test_training_is_deterministic_on_cpu_and_leaves_the_global_torch_state_alone():
    before = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    a, b, c = TorchGlobal(**TINY), TorchGlobal(**TINY), TorchGlobal(**{**TINY, "seed": 1})
    for model in (a, b, c):
        model.train(fleet())
    wa, wb, wc = (m.trained.net.state_dict() for m in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    s = fleet()[0]
    assert np.array_equal(stacked(a.forecast(s, 6)), stacked(b.forecast(s, 6)))
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_untrained_model_trains_on_the_one_series_deterministically():
    s = series("alone", seed=4)
    f1, f2 = TorchGlobal(**TINY).forecast(s, 6), TorchGlobal(**TINY).forecast(s, 6)
    assert f1.fell_back is None and np.array_equal(stacked(f1), stacked(f2))


def test_short_history_falls_back_and_says_why():
    f = TorchGlobal(**TINY).forecast(series("short", days=1.0), 6)  # 144 steps; needs 144 + 12 + 6
    assert f.fell_back is not None and "torch-mlp needs 162 observed steps" in f.fell_back
    assert f.model != "torch-mlp"


def test_export_restore_round_trip_gives_identical_forecasts(trained, monkeypatch):
    state, blobs = trained.export()
    json.dumps(state)  # the registry stores the state as JSON
    assert set(blobs) == {"model.pt"} and state["arch"]["inputs"] == 12 + 18 + 4
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    restored = build("torch-mlp", json.loads(json.dumps(trained.config())))
    restored.restore(json.loads(json.dumps(state)), blobs)
    assert loads == [True]
    s = series("other", scale=7.0, seed=8)
    assert np.array_equal(stacked(restored.forecast(s, 6)), stacked(trained.forecast(s, 6)))
    untrained = TorchGlobal(**TINY)
    untrained.restore(*untrained.export())
    assert untrained.trained is None


_UNPICKLED: list[str] = []


def _record_unpickling() -> dict:
    _UNPICKLED.append("ran")
    return {}


class _Payload:
    """An object whose unpickling would run code: a weights-only load must refuse it."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_restore_refuses_a_blob_that_is_not_plain_tensors(trained):
    state, _ = trained.export()
    crafted = io.BytesIO()
    torch.save({"body.0.weight": torch.zeros(1), "payload": _Payload()}, crafted)
    model = TorchGlobal(**TINY)
    with pytest.raises(ForecastInputError, match=r"refused by torch.load\(weights_only=True\)"):
        model.restore(state, {"model.pt": crafted.getvalue()})
    with pytest.raises(ForecastInputError, match="weights_only"):
        model.restore(state, {"model.pt": b"not a torch file"})
    with pytest.raises(ForecastInputError, match="not a torch state_dict"):
        model.restore(state, {"model.pt": crafted.getvalue()[:100]})
    wrong = io.BytesIO()
    torch.save({"body.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ForecastInputError, match="does not match the stored architecture"):
        model.restore(state, {"model.pt": wrong.getvalue()})
    with pytest.raises(ForecastInputError, match="no model.pt"):
        model.restore(state, {})
    assert _UNPICKLED == [] and model.trained is None


def test_config_round_trips_through_json():
    model = TorchGlobal(max_horizon_s=1800, seed=3, **TINY)
    config = json.loads(json.dumps(model.config()))
    assert config["seed"] == 3 and config["device"] == "cpu" and config["max_horizon_s"] == 1800
    assert build("torch-mlp", config).config() == config


def test_bad_training_input_is_one_clear_error():
    model = TorchGlobal(**TINY)
    with pytest.raises(ForecastInputError, match="one step"):
        model.train([series("a"), Series("b", START, 60.0, np.ones(5000))])
    with pytest.raises(ForecastInputError, match="no history has the 162 steps"):
        model.train([series("short", days=1.0)])
    trained_here = TorchGlobal(**TINY)
    trained_here.train(fleet())
    with pytest.raises(ForecastInputError, match="trained at a 600 s step"):
        trained_here.fit(Series("minutely", START, 60.0, np.ones(3000)))


def test_pinball_loss_ignores_unobserved_targets_and_rewards_the_right_quantile():
    q = torch.tensor([0.5, 0.9])
    target = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    pred = torch.ones(1, 3, 2)
    other = target.clone()
    other[0, 1] = 1e6  # an unobserved (gap-filled) target
    assert torch.equal(pinball(pred, target, mask, q), pinball(pred, other, mask, q))
    # observed targets 1 and 3 against predictions of 1: losses 0 and (0.5 * 2 + 0.9 * 2) / 2, mean 0.7
    assert torch.isclose(pinball(pred, target, mask, q), torch.tensor((0.5 + 0.9) / 2))


def test_calendar_features_place_monday_midnight_and_noon():
    features = calendar(np.array([START, START + DAY / 4, START + 3.5 * DAY]))  # Monday 00:00, 06:00, Thursday 12:00
    np.testing.assert_allclose(features[0], [0, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(features[1, :2], [1, 0], atol=1e-6)
    np.testing.assert_allclose(features[2], [0, -1, np.sin(np.pi), np.cos(np.pi)], atol=1e-6)
    assert features.dtype == np.float32


def test_all_zero_demand_forecasts_zero(trained):
    f = trained.forecast(Series("idle", START, STEP, np.zeros(432)), 6)
    assert f.fell_back is None and stacked(f).max() < 1e-3


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.01, 1e5), zero_share=st.floats(0, 0.9), shift=st.floats(0.1, 10),
       gaps=st.lists(st.integers(0, 431), max_size=40), seed=st.integers(0, 1000))
def test_intermittent_gappy_shifted_demand_gives_valid_forecasts(trained, scale, zero_share, shift, gaps, seed):
    rng = np.random.default_rng(seed)
    values = np.asarray(series("w", scale=scale, seed=seed).values).copy()
    values[rng.random(values.shape[0]) < zero_share] = 0.0  # intermittent demand
    values[300:] *= shift  # a level shift
    values[gaps] = np.nan  # scrape gaps (the base fills them)
    f = trained.forecast(Series("w", START, STEP, values), 6)
    out = stacked(f)
    assert f.model == "torch-mlp" and np.isfinite(out).all() and (out >= 0).all()
    assert (np.diff(out, axis=0) >= 0).all()


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ForecastInputError, match="CUDA is not available"):
        TorchGlobal(device="cuda")
    with pytest.raises(ForecastInputError, match="device must be"):
        resolve_device("gpu0")
    assert resolve_device("auto").type == "cpu" and resolve_device("CPU").type == "cpu"


def test_describe_device_names_cpu_and_gpus(monkeypatch):
    assert describe_device(torch.device("cpu")).startswith("cpu (") and "threads" in describe_device("cpu")

    def no_driver(*args):
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_driver)
    monkeypatch.setattr(device_mod, "nvml_name", lambda index: "NVIDIA Test GPU")
    assert describe_device("cuda:1") == "cuda:1 (NVIDIA Test GPU)"
    monkeypatch.setattr(device_mod, "nvml_name", lambda index: None)
    assert describe_device("cuda:0") == "cuda:0 (unknown GPU)"


def test_nvml_without_a_driver_gives_no_name(monkeypatch):
    pynvml = pytest.importorskip("pynvml")

    def missing():
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    assert nvml_name(0) is None
