"""`aiops train` and `aiops models` end to end on small generated traces (4 days, 10-minute steps).

The scenario: a naive model is trained and promoted; a seasonal-naive model trained on a trace
with a clean daily cycle beats the naive one *re-scored on that same trace* (their stored scores
come from different data and could not be compared), so it is promoted; back on the noisy trace
the naive model wins again; rollbacks walk back down the known-good versions. Bad input ends with
exit code 2 and one `error:` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiops.cli import main
from forecasters.registry import ModelRegistry
from simulations.traces import Trace, synthetic_llm_trace, write_trace
from tests.helpers import one_line_error

STEP = 600.0
DAYS = 4


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> dict[str, Path]:
    """``noisy``: two synthetic LLM workloads with gaps; ``cyclic``: the same daily cycle every day."""
    folder = tmp_path_factory.mktemp("traces")
    a = synthetic_llm_trace(days=DAYS, step_seconds=STEP, seed=1, workload="chat")
    b = synthetic_llm_trace(days=DAYS, step_seconds=STEP, seed=2, workload="code", peak_rps=200)
    values = np.concatenate([a.values, b.values], axis=1)
    values[100:104, 0] = np.nan  # a scrape outage
    noisy = Trace("noisy", a.start, STEP, ("chat", "code"), values)
    t = np.arange(a.n_steps) * STEP
    cycle = 300 + 200 * np.sin(2 * np.pi * t / 86_400)
    cyclic = Trace("cyclic", a.start, STEP, ("chat", "code"), np.stack([cycle, cycle / 3], axis=1))
    paths = {"noisy": folder / "noisy.csv", "cyclic": folder / "cyclic.csv"}
    write_trace(noisy, paths["noisy"])
    write_trace(cyclic, paths["cyclic"])
    return paths


def statuses(table: str) -> dict[str, str]:
    """version -> status column of `aiops models list`'s table."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    return {row[1]: row[-1] for row in rows}


def aiops(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), prog_name="aiops", env=env)


def train(registry: Path, trace: Path, model: str, *extra: str):
    return aiops("train", "--trace", str(trace), "--model", model, "--name", "chat", "--registry", str(registry),
                 "--no-progress", *extra)


def test_train_list_retrain_promote_and_roll_back(tmp_path, traces):
    registry = tmp_path / "models"
    first = train(registry, traces["noisy"], "naive")
    assert first.exit_code == 0, first.output
    assert "registered chat v0001" in first.stdout and "promoted chat v0001: v0001 is the first promoted version" in first.stdout
    assert first.stderr.strip().splitlines() == ["device: cpu (numpy)"]

    listed = aiops("models", "list", "--registry", str(registry))
    assert listed.exit_code == 0, listed.output
    assert statuses(listed.stdout) == {"v0001": "current"}
    row = next(line for line in listed.stdout.splitlines() if "v0001" in line)
    for cell in ("chat", "naive", "2026-01-05 00:00 .. 2026-01-07 23:50, 2 series", "cpu (numpy)", "current"):
        assert cell in row

    # On the cyclic trace seasonal-naive beats naive re-scored on the same data: promoted.
    second = train(registry, traces["cyclic"], "seasonal-naive")
    assert second.exit_code == 0, second.output
    assert "promoted chat v0002: MASE" in second.stdout and "beats current v0001's" in second.stdout
    stored = ModelRegistry(registry)
    assert stored.get("chat", "v0001").scores["evaluation"] != stored.get("chat", "v0002").scores["evaluation"]

    # Back on the noisy trace naive wins over seasonal-naive re-scored there.
    third = train(registry, traces["noisy"], "naive")
    assert third.exit_code == 0 and "promoted chat v0003" in third.stdout, third.output

    # The same model on the same data ties, and a tie is not an improvement: registered, not promoted.
    fourth = train(registry, traces["noisy"], "naive")
    assert fourth.exit_code == 0, fourth.output
    assert "registered chat v0004" in fourth.stdout
    assert "not promoted: MASE" in fourth.stdout and "does not beat current v0003's" in fourth.stdout
    assert "aiops models promote chat v0004 --force" in fourth.stdout
    assert stored.current("chat").version == "v0003"

    back = aiops("models", "rollback", "chat", "--registry", str(registry))
    assert back.exit_code == 0 and "rolled back from v0003 to v0002" in back.stdout, back.output
    listed = aiops("models", "list", "--registry", str(registry), "--name", "chat").stdout
    assert statuses(listed) == {"v0001": "known-good", "v0002": "current", "v0003": "rolled back", "v0004": ""}
    assert aiops("models", "rollback", "chat", "--registry", str(registry)).exit_code == 0
    line = one_line_error(aiops("models", "rollback", "chat", "--registry", str(registry)))
    assert "registry.json: no previous known-good version to roll back to (only v0001 was ever promoted)" in line

    # Explicit promotion: refused when not better, allowed with --force.
    line = one_line_error(aiops("models", "promote", "chat", "4", "--registry", str(registry)))
    assert line.startswith("error: chat v0004: not promoted:") and "--force" in line
    forced = aiops("models", "promote", "chat", "v0004", "--force", "--registry", str(registry))
    assert forced.exit_code == 0 and "chat: v0004 is current: forced" in forced.stdout
    assert stored.current("chat").version == "v0004"


def test_show_prints_the_metadata_and_no_promote_leaves_the_current_version(tmp_path, traces):
    registry = tmp_path / "models"
    env = {"AIOPS_MODEL_REGISTRY": str(registry)}
    result = aiops("train", "--trace", str(traces["noisy"]), "--model", "seasonal-naive", "--workload", "code",
                   "--horizon", "1h", "--holdout", "12h", "--no-promote", "--no-progress", env=env)
    assert result.exit_code == 0, result.output
    assert "not promoted (--no-promote); to promote: aiops models promote seasonal-naive v0001" in result.stdout
    shown = aiops("models", "show", "seasonal-naive", env=env)
    assert shown.exit_code == 0, shown.output
    meta = json.loads(shown.stdout)
    assert meta["model"] == "seasonal-naive" and meta["version"] == "v0001" and meta["device"] == "cpu (numpy)"
    assert meta["training"]["keys"] == ["code"] and meta["training"]["end"] == "2026-01-08T11:50:00Z"  # 12 h held out
    assert meta["scores"]["horizon_steps"] == 6 and "6 x 600 s" in meta["scores"]["evaluation"]
    assert 0 < meta["scores"]["mase"] and 0 <= meta["scores"]["coverage_90"] <= 1
    assert ModelRegistry(registry).current("seasonal-naive") is None
    assert json.loads(aiops("models", "show", "seasonal-naive", "1", env=env).stdout) == meta


def test_list_on_an_empty_registry_says_so(tmp_path):
    result = aiops("models", "list", "--registry", str(tmp_path / "nothing"))
    assert result.exit_code == 0 and "no models registered in" in result.stdout


@pytest.mark.parametrize("args, expected", [
    (["--trace", "{missing}", "--model", "naive"], "missing.csv: no such file"),
    (["--trace", "{noisy}", "--model", "prophet"], "--model: unknown model 'prophet'"),
    (["--trace", "{noisy}", "--model", "naive", "--workload", "video"], "unknown workload 'video'"),
    (["--trace", "{noisy}", "--model", "naive", "--horizon", "soon"], "--horizon: 'soon' is not a duration"),
    (["--trace", "{noisy}", "--model", "naive", "--horizon", "5m"], "--horizon: 300 s is shorter than the trace's 600 s step"),
    (["--trace", "{noisy}", "--model", "naive", "--horizon", "2d"], "must be longer than the horizon"),
    (["--trace", "{noisy}", "--model", "naive", "--holdout", "3d"], "--holdout: the holdout (432 steps) would leave less"),
    (["--trace", "{noisy}", "--model", "naive", "--name", "../up"], "name '../up': must be"),
    (["--trace", "{noisy}", "--model", "naive", "--registry", "{file}"], "--registry: '"),
    (["--trace", "{noisy}", "--model", "torch-mlp", "--device", "tpu"], "--device: device must be auto, cpu, cuda"),
    (["--model", "naive"], "give either --trace FILE or --prometheus URL"),
    (["--model", "naive", "--prometheus", "http://127.0.0.1:9"], "--days: how many days of history"),
])
def test_bad_train_input_is_one_line_and_exit_2(tmp_path, traces, args, expected):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    values = {"missing": str(tmp_path / "missing.csv"), "noisy": str(traces["noisy"]), "file": str(blocker)}
    filled = [a.format(**values) for a in args]
    if "--registry" not in filled:
        filled += ["--registry", str(tmp_path / "models")]
    line = one_line_error(aiops("train", "--no-progress", *filled))
    assert expected in line


def test_bad_models_input_is_one_line_and_exit_2(tmp_path, traces):
    registry = tmp_path / "models"
    assert train(registry, traces["noisy"], "naive").exit_code == 0
    where = ["--registry", str(registry)]
    assert "chat v0007: unknown version (known: v0001)" in one_line_error(aiops("models", "show", "chat", "7", *where))
    assert "'latest' is not a version" in one_line_error(aiops("models", "promote", "chat", "latest", *where))
    assert "no model named 'other'" in one_line_error(aiops("models", "show", "other", *where))
    assert "only v0001 was ever promoted" in one_line_error(aiops("models", "rollback", "chat", *where))

    meta = registry / "chat" / "v0001" / "metadata.json"
    meta.write_text(meta.read_text()[:40])
    line = one_line_error(aiops("models", "list", *where))
    assert "v0001/metadata.json:" in line and "corrupt JSON" in line


def test_training_on_a_tampered_current_version_registers_but_does_not_promote(tmp_path, traces):
    registry = tmp_path / "models"
    assert train(registry, traces["noisy"], "seasonal-naive").exit_code == 0
    state = registry / "chat" / "v0001" / "state.json"
    state.write_text(state.read_text().replace("1008", "144").replace("144", "143"))
    result = train(registry, traces["noisy"], "naive")
    assert result.exit_code == 0, result.output
    assert "registered chat v0002" in result.stdout
    assert "not promoted: cannot re-score current v0001 on the same data:" in result.stdout
    assert "state.json: checksum mismatch" in result.stdout


def test_the_module_imports_on_its_own_and_the_commands_are_registered():
    """aiops.cli imports this module at its end; importing this module first must work too."""
    code = "import aiops.models_cmd as m; from aiops.cli import main; print(sorted(main.commands))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert "'models'" in out.stdout and "'train'" in out.stdout
