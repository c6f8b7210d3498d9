"""The model registry: exact round trips, metadata, fingerprints, promotion rules, rollback,
tamper detection, atomic writes and the blob whitelist.

Real models ("naive", "seasonal-naive") cover JSON-only state; two tiny forecasters defined here
cover binary blobs: a torch state_dict (``.pt``, loaded back with ``weights_only=True``) and a
scikit-learn estimator stored with skops.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forecasters
from forecasters import build
from forecasters.base import Forecaster
from forecasters.registry import ModelRegistry, PromotionRefused, RegistryError, data_fingerprint
from forecasters.series import Series

DAY = 86_400
STEP = 600.0
START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
EVALUATION = "test holdout, horizon 3"


def daily(key: str, days: float = 4, seed: int = 0, gaps: bool = True) -> Series:
    n = int(days * DAY / STEP)
    t = np.arange(n) * STEP
    rng = np.random.default_rng(seed)
    values = 100 + 60 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 3, n)
    if gaps:
        values[[10, 11, 200]] = np.nan
    return Series(key, START, STEP, values)


SERIES = [daily("chat", seed=1), daily("code", seed=2)]


def trained(model: str, series: list[Series] = SERIES) -> Forecaster:
    forecaster = build(model)
    forecaster.train(series)
    return forecaster


def scores(mase: float, evaluation: str = EVALUATION) -> dict:
    return {"mase": mase, "mae": 10 * mase, "evaluation": evaluation}


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def assert_same_forecasts(a: Forecaster, b: Forecaster, series: list[Series] = SERIES, horizon: int = 6) -> None:
    for s in series:
        fa, fb = a.forecast(s, horizon), b.forecast(s, horizon)
        assert fa.model == fb.model and fa.fell_back == fb.fell_back
        assert sorted(fa.quantiles) == sorted(fb.quantiles)
        for q in fa.quantiles:
            assert np.array_equal(fa.quantiles[q], fb.quantiles[q]), (s.key, q)


# -- round trips and metadata ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["naive", "seasonal-naive"])
def test_a_loaded_model_forecasts_exactly_as_before_saving(registry, model):
    original = trained(model)
    entry = registry.register("chat", original, SERIES, scores(1.0))
    assert entry.version == "v0001" and entry.model == model
    assert sorted(p.name for p in entry.path.iterdir()) == ["metadata.json", "state.json"]
    loaded = registry.load("chat", "v0001")
    assert type(loaded) is type(original) and loaded.config() == original.config()
    assert loaded.learned == original.learned and loaded.learned  # what train() learned came back
    assert_same_forecasts(original, loaded)


def test_versions_count_up_and_load_defaults_to_the_current_one(registry):
    first = registry.register("chat", trained("naive"), SERIES, scores(1.0))
    second = registry.register("chat", trained("seasonal-naive"), SERIES, scores(0.5))
    assert [v.version for v in registry.versions("chat")] == ["v0001", "v0002"]
    assert registry.names() == ["chat"] and registry.current("chat") is None
    with pytest.raises(RegistryError, match="no version is promoted"):
        registry.load("chat")
    registry.promote("chat", first.version)
    assert registry.load("chat").name == "naive"
    registry.promote("chat", second.version)
    assert registry.load("chat").name == "seasonal-naive"


def test_metadata_records_model_data_scores_libraries_device_and_checksums(registry):
    model = trained("seasonal-naive")
    entry = registry.register("chat", model, SERIES, scores(0.8), device="cuda:0 (test GPU)", notes="nightly")
    meta = json.loads((entry.path / "metadata.json").read_text())
    assert meta == entry.metadata
    assert meta["name"] == "chat" and meta["version"] == "v0001" and meta["model"] == "seasonal-naive"
    assert meta["config"] == model.config() and meta["scores"] == scores(0.8)
    assert meta["device"] == "cuda:0 (test GPU)" and meta["notes"] == "nightly"
    assert meta["parameters"]["learned_keys"] == 2 and meta["parameters"]["blob_bytes"] == {}
    training = meta["training"]
    assert training["start"] == "2026-01-05T00:00:00Z"
    assert training["end"] == "2026-01-08T23:50:00Z"  # the last sample
    assert training["step_seconds"] == STEP and training["n_series"] == 2 and training["keys"] == ["chat", "code"]
    assert training["fingerprint"] == data_fingerprint(SERIES)
    assert datetime.fromisoformat(meta["created_at"].replace("Z", "+00:00")).tzinfo is not None
    for library in ("python", "numpy", "scikit-learn", "statsmodels", "torch", "gpu-aiops"):
        assert library in meta["libraries"]
    assert meta["libraries"]["numpy"] == np.__version__
    import hashlib

    for name, digest in meta["files"].items():
        assert digest == "sha256:" + hashlib.sha256((entry.path / name).read_bytes()).hexdigest()


def test_non_finite_scores_are_stored_as_null_so_metadata_stays_strict_json(registry):
    entry = registry.register("chat", trained("naive"), SERIES, {"mase": float("nan"), "evaluation": EVALUATION,
                                                                 "mae": np.float64(2.5)})
    text = (entry.path / "metadata.json").read_text()
    assert "NaN" not in text
    assert entry.metadata["scores"] == {"mase": None, "evaluation": EVALUATION, "mae": 2.5}


def test_register_refuses_bad_names_and_training_data(registry):
    for name in ("../escape", "", ".hidden", "a/b"):
        with pytest.raises(RegistryError, match="name"):
            registry.register(name, trained("naive"), SERIES, scores(1.0))
    with pytest.raises(RegistryError, match="no training series"):
        registry.register("chat", trained("naive"), [], scores(1.0))
    other_step = Series("x", START, 60.0, np.ones(10))
    with pytest.raises(RegistryError, match="different steps"):
        registry.register("chat", trained("naive"), [SERIES[0], other_step], scores(1.0))
    assert registry.versions("chat") == []


# -- the data fingerprint ----------------------------------------------------------------------------
values_strategy = st.lists(st.one_of(st.floats(0, 1e6), st.just(float("nan"))), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(values_strategy, values_strategy)
def test_fingerprint_is_stable_under_order_and_nan_bit_patterns(a, b):
    sa, sb = Series("a", START, STEP, a), Series("b", START, STEP, b)
    assert data_fingerprint([sa, sb]) == data_fingerprint([sb, sa])
    other_nan = np.array(a)
    other_nan[np.isnan(other_nan)] = -np.nan  # another NaN bit pattern (the sign bit set)
    assert data_fingerprint([Series("a", START, STEP, other_nan), sb]) == data_fingerprint([sa, sb])


@settings(max_examples=60, deadline=None)
@given(values_strategy, st.data())
def test_fingerprint_changes_with_any_value_gap_key_start_or_step(values, data):
    base = Series("a", START, STEP, values)
    i = data.draw(st.integers(0, len(values) - 1))
    changed = np.array(values)
    changed[i] = 7.5 if np.isnan(changed[i]) else (np.nan if data.draw(st.booleans()) else changed[i] + 1.0)
    fingerprint = data_fingerprint([base])
    assert data_fingerprint([Series("a", START, STEP, changed)]) != fingerprint
    assert data_fingerprint([Series("b", START, STEP, values)]) != fingerprint
    assert data_fingerprint([Series("a", START + STEP, STEP, values)]) != fingerprint
    assert data_fingerprint([Series("a", START, 2 * STEP, values)]) != fingerprint
    assert data_fingerprint([Series("a", START, STEP, values + [1.0])]) != fingerprint
    assert data_fingerprint([Series("a", START, STEP, values)]) == fingerprint


# -- promotion and rollback --------------------------------------------------------------------------
def test_promote_accepts_only_a_lower_mase_on_the_same_evaluation(registry):
    registry.register("chat", trained("naive"), SERIES, scores(1.0))
    assert "first promoted" in registry.promote("chat", "v0001")
    registry.register("chat", trained("naive"), SERIES, scores(1.2))  # worse
    registry.register("chat", trained("naive"), SERIES, scores(1.0))  # a tie is not better
    registry.register("chat", trained("naive"), SERIES, scores(0.5, evaluation="another holdout"))
    registry.register("chat", trained("naive"), SERIES, scores(0.9))  # better
    for version, why in (("v0002", "does not beat"), ("v0003", "does not beat"), ("v0004", "not comparable")):
        with pytest.raises(PromotionRefused, match=why):
            registry.promote("chat", version)
        assert registry.current("chat").version == "v0001"
    assert "beats current v0001" in registry.promote("chat", "v0005")
    assert registry.current("chat").version == "v0005"
    assert registry.promote("chat", "v0004", force=True) == "forced"
    assert registry.promotions("chat").known_good == ("v0001", "v0005", "v0004")


def test_promote_with_a_baseline_compares_against_the_rescored_current_version(registry):
    registry.register("chat", trained("naive"), SERIES, scores(0.1, evaluation="old data"))
    registry.promote("chat", "v0001")
    registry.register("chat", trained("naive"), SERIES, scores(0.9, evaluation="new data"))
    with pytest.raises(PromotionRefused, match="not comparable"):
        registry.promote("chat", "v0002")
    with pytest.raises(PromotionRefused, match="does not beat"):
        registry.promote("chat", "v0002", baseline=scores(0.9, evaluation="new data"))
    assert "beats" in registry.promote("chat", "v0002", baseline=scores(1.3, evaluation="new data"))


def test_rollback_returns_to_the_previous_known_good_version_and_errors_when_there_is_none(registry):
    for mase in (1.0, 0.9, 0.8):
        registry.register("chat", trained("naive"), SERIES, scores(mase))
    with pytest.raises(RegistryError, match="nothing was ever promoted"):
        registry.rollback("chat")
    for version in ("v0001", "v0002", "v0003"):
        registry.promote("chat", version)
    assert registry.rollback("chat") == ("v0003", "v0002")
    assert registry.current("chat").version == "v0002"
    assert registry.rollback("chat") == ("v0002", "v0001")
    with pytest.raises(RegistryError, match=r"registry.json: no previous known-good version .*only v0001"):
        registry.rollback("chat")
    history = registry.promotions("chat")
    assert history.current == "v0001" and history.rolled_back == {"v0002", "v0003"}
    assert [e["action"] for e in history.events] == ["promote"] * 3 + ["rollback"] * 2
    with pytest.raises(PromotionRefused, match="was rolled back"):
        registry.promote("chat", "v0003")  # its scores are better, but it failed in service
    registry.promote("chat", "v0003", force=True)
    assert registry.promotions("chat").rolled_back == {"v0002"}


def test_unknown_names_and_versions_are_one_line_errors(registry):
    registry.register("chat", trained("naive"), SERIES, scores(1.0))
    with pytest.raises(RegistryError, match=r"^chat v0009: unknown version \(known: v0001\)$"):
        registry.get("chat", "v0009")
    with pytest.raises(RegistryError, match="not a version"):
        registry.get("chat", "latest")
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        registry.load("nope")
    with pytest.raises(RegistryError, match="no model named 'nope'"):
        registry.rollback("nope")


# -- tampering and corruption ------------------------------------------------------------------------
def test_an_edited_state_file_is_detected_before_the_model_sees_it(registry):
    entry = registry.register("chat", trained("seasonal-naive"), SERIES, scores(1.0))
    state = json.loads((entry.path / "state.json").read_text())
    state["learned"]["chat"]["season"] = 7  # still valid JSON, but not what was registered
    (entry.path / "state.json").write_text(json.dumps(state))
    with pytest.raises(RegistryError, match=r"state.json: checksum mismatch") as error:
        registry.load("chat", "v0001")
    assert "\n" not in str(error.value) and str(entry.path) in str(error.value)


def test_corrupt_json_is_reported_with_file_and_line(registry):
    entry = registry.register("chat", trained("naive"), SERIES, scores(1.0))
    registry.promote("chat", "v0001")
    registry_json = entry.path.parent / "registry.json"
    registry_json.write_text('{\n "current": "v0001",\n "known_good": [\n')
    with pytest.raises(RegistryError, match=r"registry.json:4: corrupt JSON"):
        registry.current("chat")
    registry_json.write_text(json.dumps({"current": "v0002", "known_good": ["v0002"], "events": []}))
    with pytest.raises(RegistryError, match="'v0002' does not exist"):
        registry.current("chat")
    (entry.path / "metadata.json").write_text('{"model": "naive",\n  oops}')
    with pytest.raises(RegistryError, match=r"v0001/metadata.json:2: corrupt JSON"):
        registry.versions("chat")


def test_a_missing_blob_or_unlisted_blob_name_is_refused(registry, monkeypatch):
    monkeypatch.setitem(forecasters.MODELS, "tiny-torch", "tests.test_registry:TinyTorch")
    entry = registry.register("tiny", TinyTorch().trained(SERIES), SERIES, scores(1.0))
    (entry.path / "net.pt").unlink()
    with pytest.raises(RegistryError, match=r"net.pt: missing"):
        registry.load("tiny", "v0001")
    meta = entry.metadata | {"files": {**entry.metadata["files"], "evil.pkl": "sha256:00"}}
    (entry.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match=r"refusing blob 'evil.pkl'"):
        registry.get("tiny", "v0001")


# -- atomic writes -----------------------------------------------------------------------------------
def test_a_crash_while_registering_leaves_no_visible_version(registry, monkeypatch):
    import forecasters.registry as module

    real = module._write_file
    calls = []

    def crash_on_metadata(path, data):
        calls.append(path.name)
        if path.name == "metadata.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(module, "_write_file", crash_on_metadata)
    with pytest.raises(OSError, match="No space"):
        registry.register("chat", trained("naive"), SERIES, scores(1.0))
    assert calls == ["state.json", "metadata.json"]
    assert registry.versions("chat") == [] and list((registry.root / "chat").iterdir()) == []  # staging removed

    # A hard crash (no cleanup at all) leaves only a hidden staging directory, which is ignored.
    monkeypatch.setattr(module.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(OSError):
        registry.register("chat", trained("naive"), SERIES, scores(1.0))
    assert [p.name.startswith(".tmp-") for p in (registry.root / "chat").iterdir()] == [True]
    monkeypatch.setattr(module, "_write_file", real)
    assert registry.register("chat", trained("naive"), SERIES, scores(1.0)).version == "v0001"
    assert [v.version for v in registry.versions("chat")] == ["v0001"]


def test_a_crash_while_promoting_leaves_the_previous_registry_file(registry, monkeypatch):
    for mase in (1.0, 0.5):
        registry.register("chat", trained("naive"), SERIES, scores(mase))
    registry.promote("chat", "v0001")
    before = (registry.root / "chat" / "registry.json").read_bytes()

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        registry.promote("chat", "v0002")
    monkeypatch.undo()
    assert (registry.root / "chat" / "registry.json").read_bytes() == before
    assert registry.current("chat").version == "v0001"
    assert sorted(p.name for p in (registry.root / "chat").iterdir()) == [".lock", "registry.json", "v0001", "v0002"]


def test_concurrent_registrations_take_distinct_versions(registry, monkeypatch):
    """Another writer takes v0001 between our look and our rename: we move on to v0002."""
    model = trained("naive")
    registry.register("chat", model, SERIES, scores(1.0))
    taken = registry.root / "chat" / "v0001"
    stolen = registry.root / "chat" / ".stolen"
    shutil.move(taken, stolen)  # v0001 looks free...
    real_rename = os.rename

    def other_writer_first(src, dst):
        if str(dst).endswith("v0001") and not taken.exists():
            real_rename(stolen, taken)  # ...until the other writer's rename lands first
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", other_writer_first)
    assert registry.register("chat", model, SERIES, scores(0.5)).version == "v0002"
    assert [v.mase for v in registry.versions("chat")] == [1.0, 0.5]


# -- binary blobs: torch and skops, and the suffix whitelist ----------------------------------------
class TinyTorch(Forecaster):
    """A global linear model in torch: the forecast is ``w * last + b``, flat over the horizon."""

    name = "tiny-torch"

    def __init__(self, **base) -> None:
        super().__init__(**base)
        self.net = None

    def trained(self, histories: list[Series]) -> "TinyTorch":
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Linear(1, 1).double()
        with torch.no_grad():
            self.net.weight.fill_(0.9)
            self.net.bias.fill_(float(np.nanmean(histories[0].values)) * 0.1)
        return self

    def _estimate(self, y, start, step):
        return {}

    def _paths(self, params, y, start, step, origins, horizon):
        import torch

        last = torch.as_tensor(y[np.maximum(origins, 1) - 1, None], dtype=torch.float64)
        with torch.no_grad():
            point = self.net(last).numpy()[:, 0]
        return np.repeat(point[:, None], horizon, axis=1), None

    def export(self):
        import torch

        buffer = io.BytesIO()
        torch.save(self.net.state_dict(), buffer)
        return {"learned": {}}, {"net.pt": buffer.getvalue()}

    def restore(self, state, blobs):
        import torch

        self.net = torch.nn.Linear(1, 1).double()
        self.net.load_state_dict(torch.load(io.BytesIO(blobs["net.pt"]), weights_only=True))


class TinySkops(Forecaster):
    """A scikit-learn linear regression on the last value, stored with skops."""

    name = "tiny-skops"

    def __init__(self, **base) -> None:
        super().__init__(**base)
        self.regression = None

    def trained(self, histories: list[Series]) -> "TinySkops":
        from sklearn.linear_model import LinearRegression

        y = np.nan_to_num(histories[0].values, nan=100.0)
        self.regression = LinearRegression().fit(y[:-1, None], y[1:])
        return self

    def _estimate(self, y, start, step):
        return {}

    def _paths(self, params, y, start, step, origins, horizon):
        point = self.regression.predict(y[np.maximum(origins, 1) - 1, None])
        return np.repeat(point[:, None], horizon, axis=1), None

    def export(self):
        import skops.io

        return {}, {"regression.skops": skops.io.dumps(self.regression)}

    def restore(self, state, blobs):
        import skops.io

        self.regression = skops.io.loads(blobs["regression.skops"], trusted=[])  # default-trusted types only


@pytest.fixture
def tiny_models(monkeypatch):
    monkeypatch.setitem(forecasters.MODELS, "tiny-torch", "tests.test_registry:TinyTorch")
    monkeypatch.setitem(forecasters.MODELS, "tiny-skops", "tests.test_registry:TinySkops")


def test_a_torch_state_dict_blob_round_trips_through_weights_only_loading(registry, tiny_models):
    model = TinyTorch().trained(SERIES)
    entry = registry.register("tiny", model, SERIES, scores(1.0))
    assert (entry.path / "net.pt").is_file()
    assert entry.metadata["parameters"]["tensor_elements"] == 2  # one weight, one bias
    assert entry.metadata["files"]["net.pt"].startswith("sha256:")
    loaded = registry.load("tiny", "v0001")
    assert isinstance(loaded, TinyTorch)
    assert_same_forecasts(model, loaded)


def test_a_tampered_torch_blob_is_refused_before_torch_loads_it(registry, tiny_models, monkeypatch):
    entry = registry.register("tiny", TinyTorch().trained(SERIES), SERIES, scores(1.0))
    data = bytearray((entry.path / "net.pt").read_bytes())
    data[-30] ^= 0xFF
    (entry.path / "net.pt").write_bytes(bytes(data))
    import torch

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on a tampered blob"))
    with pytest.raises(RegistryError, match=r"net.pt: checksum mismatch"):
        registry.load("tiny", "v0001")


def test_a_skops_blob_round_trips(registry, tiny_models):
    model = TinySkops().trained(SERIES)
    entry = registry.register("tiny", model, SERIES, scores(1.0))
    assert sorted(entry.metadata["files"]) == ["regression.skops", "state.json"]
    assert_same_forecasts(model, registry.load("tiny", "v0001"))


class BadBlobs(TinyTorch):
    blobs: dict = {}

    def export(self):
        return {}, self.blobs


@pytest.mark.parametrize("blobs, problem", [
    ({"weights.pkl": b"\x80\x04N."}, "must be plain file names ending in .pt or .skops"),
    ({"model.joblib": b"x"}, "ending in .pt or .skops"),
    ({"../escape.pt": b"x"}, "plain file names"),
    ({"state.json": b"{}"}, "ending in .pt or .skops"),
    ({"weights.pt": "not bytes"}, "must be bytes"),
    ({"weights.pt": b"a pickle, not a torch file"}, "not a weights-only torch file"),
])
def test_blobs_other_than_pt_or_skops_files_are_refused(registry, monkeypatch, blobs, problem):
    monkeypatch.setitem(forecasters.MODELS, "bad-blobs", "tests.test_registry:BadBlobs")
    model = BadBlobs()
    model.blobs = blobs
    with pytest.raises(RegistryError, match=problem):
        registry.register("bad", model, SERIES, scores(1.0))
    assert registry.versions("bad") == []


def test_a_torch_file_holding_arbitrary_objects_is_refused_at_registration(registry, monkeypatch):
    """weights_only loading refuses pickled objects, so a model cannot register one by mistake."""
    import torch

    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2), "callback": datetime(2026, 1, 1)}, buffer)
    monkeypatch.setitem(forecasters.MODELS, "bad-blobs", "tests.test_registry:BadBlobs")
    model = BadBlobs()
    model.blobs = {"weights.pt": buffer.getvalue()}
    with pytest.raises(RegistryError, match="not a weights-only torch file"):
        registry.register("bad", model, SERIES, scores(1.0))


def test_a_model_class_unknown_to_forecasters_build_cannot_be_registered(registry):
    with pytest.raises(RegistryError, match="not a registered model class"):
        registry.register("tiny", TinyTorch().trained(SERIES), SERIES, scores(1.0))
