"""`aiops simulate` end to end: outputs, determinism, the JSON schema golden file, and bad input.

Bad input must end with exit code 2 and one line on stderr that names the file and the problem,
never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiops.cli import main
from tests.helpers import one_line_error

GOLDEN = Path(__file__).parent / "golden" / "simulate_default.schema.json"


def run(*args: str):
    return CliRunner().invoke(main, ["simulate", "--no-progress", *args], prog_name="aiops")


def run_with_file(tmp_path: Path, option: str, name: str, text: str):
    """`aiops simulate OPTION FILE` with FILE written from ``text``."""
    path = tmp_path / name
    path.write_text(text)
    return run(option, str(path))


def short_trace(path: Path, rows: int = 240, workload: str = "chat") -> Path:
    lines = ["timestamp,workload,value"]
    for k in range(rows):
        minute = k % 60
        hour = k // 60
        value = 40 + 30 * (k % 90 > 45) + (k % 7)
        lines.append(f"2024-03-01T{hour:02d}:{minute:02d}:00Z,{workload},{value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def shape(value):
    """The structure of a JSON value: keys and type names, not the numbers."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    result = run("--json", str(out / "r.json"), "--plot", str(out / "r.png"))
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "r.json").read_text()), out / "r.png"


def test_default_run_prints_a_table_for_every_policy_and_totals(default_run):
    result, doc, _ = default_run
    for word in ("llm-chat", "reactive", "predictive", "oracle", "TOTAL (billed)", "SLO met", "x oracle"):
        assert word in result.output
    assert "predictive vs reactive:" in result.output


def test_default_run_json_matches_the_golden_schema(default_run):
    _, doc, _ = default_run
    if os.environ.get("AIOPS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(shape(doc), indent=2, sort_keys=True) + "\n")
    assert shape(doc) == json.loads(GOLDEN.read_text())
    assert doc["schema_version"] == 1
    assert doc["trace"]["steps"] == 7 * 1440


def test_default_run_figures_are_consistent(default_run):
    _, doc, _ = default_run
    pol = doc["policies"]
    assert pol["oracle"]["totals"]["slo_attainment_pct"] == 100.0
    assert pol["oracle"]["totals"]["cost_vs_oracle"] == 1.0
    for name, block in pol.items():
        t = block["totals"]
        # conservation: what arrived was served or is still queued
        assert t["requests_served"] + t["requests_queued_at_end"] == pytest.approx(t["requests_arrived"], rel=1e-9)
        assert 0 <= t["slo_attainment_pct"] <= 100
        assert t["cost_usd"] >= pol["oracle"]["totals"]["cost_usd"] - 1e-6, name
    # the headline of the embedded default: predictive beats reactive on SLO at no more cost
    assert pol["predictive"]["totals"]["slo_violation_minutes"] < pol["reactive"]["totals"]["slo_violation_minutes"]
    assert pol["predictive"]["totals"]["cost_usd"] <= 1.1 * pol["reactive"]["totals"]["cost_usd"]


def test_plot_is_a_png(default_run):
    _, _, png = default_run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    docs = []
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        result = run("--seed", str(seed), "--policies", "reactive", "--json", str(tmp_path / f"{name}.json"))
        assert result.exit_code == 0, result.output
        docs.append(json.loads((tmp_path / f"{name}.json").read_text())["policies"])
    assert docs[0] == docs[1]
    assert docs[0] != docs[2]


def test_trace_file_with_scale_to_and_policy_subset(tmp_path):
    trace = short_trace(tmp_path / "t.csv")
    result = run("--trace", str(trace), "--scale-to", "64", "--policies", "reactive,oracle", "--json", str(tmp_path / "o.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert list(doc["policies"]) == ["reactive", "oracle"]
    assert doc["trace"]["workloads"] == ["chat"]
    # peak 76 rps scaled to 64 GPUs at 4 rps per 1-GPU replica: peak replicas near 64 at 100% utilisation
    assert 60 <= doc["policies"]["oracle"]["workloads"]["chat"]["peak_replicas"] <= 66


def test_two_column_trace_and_gaps_are_not_scored(tmp_path):
    path = tmp_path / "svc.csv"
    rows = ["timestamp,value"] + [f"{1_700_000_000 + 60 * k},{'' if 100 <= k < 110 else 20}" for k in range(200)]
    path.write_text("\n".join(rows) + "\n")
    result = run("--trace", str(path), "--policies", "reactive", "--json", str(tmp_path / "o.json"))
    assert result.exit_code == 0, result.output
    wl = json.loads((tmp_path / "o.json").read_text())["policies"]["reactive"]["workloads"]["svc"]
    assert wl["gap_minutes"] == 10
    assert wl["scored_minutes"] == 190


def test_config_file_changes_the_cluster(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("node_pools:\n  - name: a100\n    gpus_per_node: 4\n    price_per_gpu_hour: 1.0\n"
                   "workloads:\n  - name: chat\n    capacity_rps: 8\n")
    trace = short_trace(tmp_path / "t.csv")
    result = run("--trace", str(trace), "--config", str(cfg), "--policies", "oracle", "--json", str(tmp_path / "o.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["config"]["node_pools"][0]["name"] == "a100"
    # GPU-hours at $1 per GPU-hour cost exactly as many dollars
    t = doc["policies"]["oracle"]["totals"]
    assert t["cost_usd"] == pytest.approx(t["gpu_hours"])


BAD_TRACES = {
    "missing_columns.csv": ("timestamp,workload\n2024-01-01T00:00:00Z,a\n", "header"),
    "unparseable.csv": ("timestamp,value\n2024-01-01T00:00:00Z,1\nyesterday,2\n", ":3:"),
    "bad_value.csv": ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,lots\n", ":3:"),
    "duplicate.csv": ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:00Z,2\n", "duplicate"),
    "out_of_order.csv": ("timestamp,value\n2024-01-01T00:01:00Z,1\n2024-01-01T00:00:00Z,2\n", ":3:"),
    "negative.csv": ("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,-2\n", "negative"),
    "empty.csv": ("", "empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_TRACES))
def test_bad_trace_is_one_line_exit_2(tmp_path, name):
    text, phrase = BAD_TRACES[name]
    line = one_line_error(run_with_file(tmp_path, "--trace", name, text))
    assert name in line and phrase in line.lower()


BAD_CONFIGS = {
    "syntax.yaml": ("node_pools:\n  - name: a\n   gpus_per_node: [\n", "syntax.yaml:"),
    "negative.yaml": ("workloads:\n  - name: chat\n    capacity_rps: -1\n", "workloads[0].capacity_rps"),
    "unknown_key.yaml": ("simulation:\n  stepseconds: 30\n", "simulation.stepseconds"),
    "bad_pool.yaml": ("workloads:\n  - name: chat\n    node_pool: nope\n", "node_pool"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2(tmp_path, name):
    text, phrase = BAD_CONFIGS[name]
    line = one_line_error(run_with_file(tmp_path, "--config", name, text))
    assert name in line and phrase in line


@pytest.mark.parametrize("args,phrase", [
    (["--policies", "reactive,magic"], "unknown policy 'magic'"),
    (["--policies", "reactive,reactive"], "twice"),
    (["--trace", "/nonexistent/trace.csv"], "no such file"),
    (["--config", "/nonexistent/c.yaml"], "no such file"),
])
def test_bad_options_are_one_line_exit_2(args, phrase):
    assert phrase in one_line_error(run(*args))


def test_invalid_option_value_is_a_usage_error_exit_2():
    result = run("--scale-to", "-5")
    assert result.exit_code == 2
    assert "--scale-to" in result.output


def test_python_dash_m_aiops_and_console_script_both_work(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"}
    out = subprocess.run([sys.executable, "-m", "aiops", "simulate", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "--scale-to" in out.stdout and "embedded default" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\nnot-a-time,1\n")
    out = subprocess.run([sys.executable, "-m", "aiops", "simulate", "--trace", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "bad.csv:2" in out.stderr and "Traceback" not in out.stderr


def test_scale_beyond_pool_limits_warns_on_one_line_each(tmp_path):
    trace = short_trace(tmp_path / "t.csv", rows=30)
    result = run("--trace", str(trace), "--scale-to", "1000", "--policies", "reactive")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "max_replicas is 512" in warnings[0] and "max_nodes 64 x 8" in warnings[1]


def test_decisions_jsonl_holds_every_change_with_reasons(tmp_path):
    from policies.types import ScalingDecision

    trace = short_trace(tmp_path / "t.csv")
    out = tmp_path / "d.jsonl"
    result = run("--trace", str(trace), "--policies", "reactive,oracle", "--decisions", str(out))
    assert result.exit_code == 0, result.output
    decisions = [ScalingDecision.from_json(line) for line in out.read_text().splitlines()]
    assert {d.policy for d in decisions} == {"reactive", "oracle"}
    for d in decisions:
        assert d.reasons, d
        assert d.target in d.explain() and str(d.desired) in d.explain()
        assert d.desired != d.current or d.kind == "nodes"


@pytest.mark.parametrize("args,phrase", [
    (["--json", "/proc/no/such/dir/x.json"], "--json: cannot"),
    (["--plot", "out.notanimage"], "--plot: 'out.notanimage': the file name must end in one of"),
    (["--scale-to", "1e9"], "aiops simulate: Invalid value for '--scale-to'"),
    (["--bogus"], "No such option '--bogus'"),
])
def test_bad_outputs_and_options_fail_before_simulating_on_one_line(tmp_path, args, phrase):
    trace = short_trace(tmp_path / "t.csv", rows=20)
    result = run("--trace", str(trace), *args)
    assert phrase in one_line_error(result)
    assert "SLO met" not in result.output  # nothing was simulated


def test_a_directory_as_trace_or_config_is_one_line(tmp_path):
    for option in ("--trace", "--config"):
        assert "is a directory" in one_line_error(run(option, str(tmp_path)))
