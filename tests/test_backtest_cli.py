"""`aiops backtest` end to end on small generated traces: table, JSON, plot and bad input.

Bad input must end with exit code 2 and one line on stderr (`error: ...`), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import forecasters
from aiops import backtest_cmd
from aiops.cli import main
from simulations.traces import Trace, write_trace
from tests.helpers import one_line_error

MODELS = "naive,seasonal-naive"


def run(*args: str):
    return CliRunner().invoke(main, ["backtest", "--no-progress", *args], prog_name="aiops")


def daily_trace(path: Path, days: float = 4, step: float = 600.0) -> Path:
    """Two workloads with a daily cycle at 10-minute steps; one has an outage (a gap)."""
    t = np.arange(int(days * 86400 / step)) * step
    rng = np.random.default_rng(7)
    chat = 80 + 50 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 2, t.shape[0])
    code = 20 + 10 * np.cos(2 * np.pi * t / 86400) + rng.normal(0, 1, t.shape[0])
    code[-30:-25] = np.nan
    write_trace(Trace("gen", 1_704_067_200.0, step, ("chat", "code"), np.stack([chat, code], axis=1)), path)
    return path


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    return daily_trace(tmp_path_factory.mktemp("bt") / "two.csv")


@pytest.fixture(scope="module")
def full_run(trace, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run("--trace", str(trace), "--horizon", "1h", "--models", MODELS, "--origins", "12",
                 "--json", str(out / "bt.json"), "--plot", str(out / "bt.png"))
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "bt.json").read_text()), out / "bt.png"


def test_prints_the_step_conversion_a_table_per_workload_and_the_best_model(full_run):
    result, _, _ = full_run
    out = result.stdout
    assert "horizon 1h = 6 step(s) of 10 min" in out
    for word in ("chat: 6-step horizon (1 h), 12 origins", "code: 6-step horizon", "MAE", "MASE", "sMAPE", "pinball",
                 "cov90", "fit s", "predict s", "fallbacks", "naive", "seasonal-naive"):
        assert word in out, word
    assert "best model for chat: " in out and "best model for code: " in out


def test_json_holds_every_per_lead_figure(full_run):
    _, doc, _ = full_run
    assert doc["schema_version"] == 1 and doc["command"] == "backtest"
    assert doc["horizon"] == {"requested": "1h", "seconds": 3600.0, "steps": 6}
    assert doc["trace"]["workloads"] == ["chat", "code"] and doc["trace"]["step_seconds"] == 600.0
    assert doc["models"] == ["naive", "seasonal-naive"]
    assert [(r["key"], r["model"]) for r in doc["results"]] == [
        ("chat", "naive"), ("chat", "seasonal-naive"), ("code", "naive"), ("code", "seasonal-naive")]
    for r in doc["results"]:
        assert r["n_origins"] == 12 and r["horizon_steps"] == 6
        assert set(r["per_lead"]) == {"mae", "mase", "smape", "pinball", "cov80", "cov90", "cov95"}
        assert all(len(v) == 6 for v in r["per_lead"].values())
        assert r["summary"]["mae"] >= 0 and 0 <= r["summary"]["cov90"] <= 1
        assert r["fit_s"] > 0 and r["forecasts"] and len(r["forecasts"][-1]["median"]) == 6
    chat = {r["model"]: r["summary"]["mae"] for r in doc["results"] if r["key"] == "chat"}
    assert doc["best"]["chat"] == min(chat, key=chat.get)


def test_plot_is_a_png(full_run):
    _, _, png = full_run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("horizon, expected", [
    ("30", "horizon 30 = 3 step(s) of 10 min"),  # a bare number is minutes
    ("25m", "horizon 25m = 2 step(s) of 10 min (20 min, the nearest whole number of steps)"),
    ("90s", "horizon 90s = 1 step(s) of 10 min (10 min, the nearest whole number of steps)"),  # at least one step
])
def test_horizon_becomes_whole_steps(trace, horizon, expected):
    result = run("--trace", str(trace), "--horizon", horizon, "--models", "naive", "--workload", "code", "--origins", "3")
    assert result.exit_code == 0, result.output
    assert expected in result.stdout
    assert "code:" in result.stdout and "chat:" not in result.stdout


def test_an_unavailable_default_model_is_skipped_with_a_warning(trace, monkeypatch):
    monkeypatch.setitem(forecasters.MODELS, "not-yet", "forecasters.not_written_yet:Model")
    monkeypatch.setattr(backtest_cmd, "DEFAULT_MODELS", ("naive", "not-yet"))
    result = run("--trace", str(trace), "--horizon", "20m", "--origins", "3")
    assert result.exit_code == 0, result.output
    assert "warning: model 'not-yet' is not available" in result.stderr
    assert "best model for chat: naive" in result.stdout
    explicit = run("--trace", str(trace), "--horizon", "20m", "--models", "not-yet")
    assert "--models: model 'not-yet' is not available" in one_line_error(explicit)


@pytest.mark.parametrize("args, message", [
    (["--horizon", "30m", "--models", "naive,prophet"], "--models: unknown model 'prophet'"),
    (["--horizon", "30m", "--models", "naive,naive"], "--models: a model is listed twice"),
    (["--horizon", "-5m"], "--horizon: '-5m' is not a duration"),
    (["--horizon", "abc"], "--horizon: 'abc' is not a duration"),
    (["--horizon", "0h"], "--horizon: '0h': the horizon must be longer than zero"),
    (["--horizon", "5d"], "--horizon: 5d is 720 steps, but the trace has only 576 steps"),
    (["--horizon", "30m", "--workload", "video"], "unknown workload 'video'"),
    (["--horizon", "30m", "--origins", "0"], "--origins"),
])
def test_bad_input_is_one_line_and_exit_2(trace, args, message):
    assert message in one_line_error(run("--trace", str(trace), "--models", MODELS, *args))


def test_a_trace_too_short_for_any_origin_names_the_file(tmp_path):
    path = daily_trace(tmp_path / "short.csv", days=0.1)  # 14 steps of 10 minutes
    line = one_line_error(run("--trace", str(path), "--horizon", "110m", "--models", "naive"))
    assert str(path) in line and "too short" in line and "shorter --horizon" in line


def test_missing_trace_and_bad_outputs_fail_before_any_work(tmp_path, trace):
    assert "no such file" in one_line_error(run("--trace", str(tmp_path / "none.csv"), "--horizon", "10m"))
    assert "--plot" in one_line_error(run("--trace", str(trace), "--horizon", "10m", "--plot", str(tmp_path / "p.txt")))
    assert "--json" in one_line_error(run("--trace", str(trace), "--horizon", "10m", "--json", str(tmp_path)))


def test_resample_lets_an_irregular_trace_be_backtested(tmp_path):
    """Timestamps jittered off any grid: refused as they are, backtested once binned by --resample."""
    rng = np.random.default_rng(3)
    t = 1_704_067_200.0 + np.arange(4 * 144) * 600.0 + rng.uniform(0, 300, 4 * 144)
    values = 80 + 50 * np.sin(2 * np.pi * t / 86400)
    path = tmp_path / "jitter.csv"
    path.write_text("timestamp,value\n" + "".join(f"{ts:.3f},{v:.3f}\n" for ts, v in zip(t, values)))
    one_line_error(run("--trace", str(path), "--horizon", "1h", "--models", MODELS))
    result = run("--trace", str(path), "--horizon", "1h", "--models", MODELS, "--origins", "6", "--resample", "10m")
    assert result.exit_code == 0, result.output
    assert "horizon 1h = 6 step(s) of 10 min" in result.stdout
    assert "--resample: '0m': the resample must be longer than zero" in one_line_error(
        run("--trace", str(path), "--horizon", "1h", "--resample", "0m"))
