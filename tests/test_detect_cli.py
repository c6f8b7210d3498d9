"""`aiops detect` end to end on generated CSVs: the table, the JSON, and one line for bad input.

The command object is invoked directly (it is registered in aiops.cli elsewhere). Bad input must
end with exit code 2 and one line on stderr (`error: ...`), never a traceback, and write nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aiops.detect_cmd import detect, read_metrics
from tests.helpers import one_line_error

DAY = 96  # 15-minute rows


def run(*args: str):
    return CliRunner().invoke(detect, list(args), prog_name="aiops detect")


def frame(days: int, start: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(start, periods=days * DAY, freq="15min", tz="UTC")
    day = np.sin(2 * np.pi * (stamps.hour * 4 + stamps.minute // 15) / DAY)
    return pd.DataFrame({
        "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu_util": np.round(55 + 25 * day + rng.normal(0, 2, len(stamps)), 3),
        "mem_used": np.round(40 + rng.normal(0, 1, len(stamps)), 3),
        "queue_len": np.round(5 + rng.normal(0, 0.5, len(stamps)), 3),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("detect")
    train = frame(10, "2024-05-01", seed=1)
    today = frame(2, "2024-05-11", seed=2)
    today.loc[100:111, "mem_used"] += 12  # an incident on one metric, 3 hours
    today["queue_len"] = today["queue_len"].astype(object)
    today.loc[20:24, "queue_len"] = ""  # a gap
    train.to_csv(folder / "train.csv", index=False)
    today.to_csv(folder / "today.csv", index=False)
    return folder / "train.csv", folder / "today.csv"


@pytest.fixture(scope="module")
def full_run(files, tmp_path_factory):
    train, today = files
    out = tmp_path_factory.mktemp("out") / "sub" / "windows.json"
    result = run("--metrics", str(today), "--train", str(train), "--json", str(out))
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_finds_the_incident_and_ranks_its_metric_first(full_run):
    _, doc = full_run
    incident = [w for w in doc["windows"] if w["start_index"] <= 111 and w["end_index"] >= 100]
    assert len(incident) == 1
    w = incident[0]
    assert w["metrics"][0]["metric"] == "mem_used" and w["metrics"][0]["contribution"] > 0.5
    assert "2024-05-12T01:00:00Z" <= w["start"] <= "2024-05-12T01:30:00Z"  # row 100 = 25 h after the start
    assert w["peak_score"] > 3 and w["rows"] == w["end_index"] - w["start_index"] + 1
    assert sum(m["contribution"] for m in w["metrics"]) == pytest.approx(1.0)


def test_the_json_has_the_threshold_inputs_and_findings(full_run, files):
    _, doc = full_run
    train, today = files
    assert doc["schema_version"] == 1 and doc["command"] == "detect"
    assert doc["inputs"] == {"metrics": str(today), "train": str(train), "time_column": "timestamp", "rows": 2 * DAY,
                             "train_rows": 10 * DAY, "columns": ["gpu_util", "mem_used", "queue_len"]}
    assert doc["threshold"]["score"] == 1.0 and doc["threshold"]["raw"] > 0
    assert doc["season"]["rows"] == DAY and doc["season"]["length"] == 86400.0 and "gpu_util" in doc["season"]["metrics"]
    assert len(doc["findings"]) == len(doc["windows"])
    assert {f["code"] for f in doc["findings"]} == {"MULTIVARIATE_WINDOW"}


def test_the_printed_table_matches_the_json(full_run):
    result, doc = full_run
    out = result.stdout
    assert f"{len(doc['windows'])} anomalous window(s) at threshold 1" in out
    for w in doc["windows"]:
        assert w["start"] in out
    assert "mem_used" in out and "fitted on" in out and "cycle of 96 rows" in out


def test_without_training_data_it_fits_on_the_table_itself(files, tmp_path):
    _, today = files
    result = run("--metrics", str(today), "--json", str(tmp_path / "self.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "self.json").read_text())
    assert doc["inputs"]["train"] is None and "fitted on itself" in result.stdout
    assert any(w["metrics"][0]["metric"] == "mem_used" and w["start_index"] <= 111 and w["end_index"] >= 100
               for w in doc["windows"])


def test_an_integer_t_column_and_options(tmp_path):
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (300, 2))
    values[200:210, 1] += 9
    pd.DataFrame({"t": np.arange(300), "a": values[:, 0], "b": values[:, 1]}).to_csv(tmp_path / "t.csv", index=False)
    result = run("--metrics", str(tmp_path / "t.csv"), "--json", str(tmp_path / "t.json"), "--threshold", "1.5",
                 "--min-window", "3", "--season", "none")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["threshold"]["score"] == 1.5 and doc["season"]["rows"] == 0 and doc["inputs"]["time_column"] == "t"
    assert all(w["rows"] >= 3 for w in doc["windows"])
    assert any(w["start"] <= 209 and w["end"] >= 200 and w["metrics"][0]["metric"] == "b" for w in doc["windows"])


def test_show_limits_the_table_to_the_highest_peaks(files):
    train, today = files
    result = run("--metrics", str(today), "--train", str(train), "--show", "1")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "mem_used" in rows[0]  # the incident has the highest peak
    assert "(the 1 highest peaks shown)" in result.stdout or "1 anomalous window(s)" in result.stdout


def test_epoch_seconds_and_naive_iso_timestamps_are_read(tmp_path):
    (tmp_path / "epoch.csv").write_text("timestamp,x\n1714521600,1\n1714521660,2.5\n")
    (tmp_path / "iso.csv").write_text("timestamp,x\n2024-05-01 00:00:00,1\n2024-05-01T00:01:00+00:00,nan\n")
    epoch, iso = read_metrics(str(tmp_path / "epoch.csv")), read_metrics(str(tmp_path / "iso.csv"))
    assert epoch.times.tolist() == iso.times.tolist() == [1714521600.0, 1714521660.0]
    assert np.isnan(iso.values[1, 0]) and epoch.label(epoch.times[0]) == "2024-05-01T00:00:00Z"


def test_help_has_an_example():
    result = run("--help")
    assert result.exit_code == 0
    assert "aiops detect --metrics" in result.stdout and "--train" in result.stdout


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------
GOOD_HEADER = "timestamp,gpu_util,mem_used\n"
ROW_LIST = [f"2024-05-01T00:{m:02d}:00Z,{50 + m % 3},{40 + m % 2}\n" for m in range(30)]
ROWS = "".join(ROW_LIST)


@pytest.mark.parametrize("name, text, expected", [
    ("no time column", "time,gpu_util\n1,2\n", ["no `timestamp` or `t` column", "'time'"]),
    ("non-numeric value", GOOD_HEADER + ROWS + "2024-05-01T01:00:00Z,busy,40\n",
     [":32:", "column 'gpu_util'", "'busy' is not a number"]),
    ("unsorted", GOOD_HEADER + "2024-05-01T00:05:00Z,1,2\n2024-05-01T00:04:00Z,1,2\n",
     [":3:", "comes before", "sorted"]),
    ("duplicate", GOOD_HEADER + "2024-05-01T00:05:00Z,1,2\n2024-05-01T00:05:00Z,1,2\n",
     [":3:", "duplicate time", "line 2"]),
    ("bad timestamp", GOOD_HEADER + "yesterday,1,2\n", [":2:", "'yesterday'", "ISO-8601"]),
    ("wrong field count", GOOD_HEADER + "2024-05-01T00:05:00Z,1\n", [":2:", "2 fields", "header has 3"]),
    ("empty file", "", ["empty file"]),
    ("header only", GOOD_HEADER, ["no data rows"]),
    ("infinite value", GOOD_HEADER + "2024-05-01T00:05:00Z,1e999,2\n", [":2:", "finite"]),
    ("both time columns", "timestamp,t,x\n1714521600,0,1\n", ["both a `timestamp` and a `t`"]),
    ("duplicate column", "timestamp,x,x\n1714521600,0,1\n", ["'x' appears twice"]),
    ("non-integer t", "t,x\n0.5,1\n", ["column 't'", "not an integer"]),
    ("too few rows", GOOD_HEADER + "".join(ROW_LIST[:3]), ["3 rows", "at least 10"]),
])
def test_bad_metrics_file_is_one_line_naming_the_file(tmp_path, name, text, expected):
    path = tmp_path / "m.csv"
    path.write_text(text)
    out = tmp_path / "out.json"
    line = one_line_error(run("--metrics", str(path), "--json", str(out)))
    assert str(path) in line, name
    for part in expected:
        assert part in line, (name, line)
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


def test_train_and_metrics_columns_must_match(tmp_path):
    (tmp_path / "m.csv").write_text(GOOD_HEADER + ROWS)
    (tmp_path / "train.csv").write_text("timestamp,gpu_util,power\n" + ROWS)
    line = one_line_error(run("--metrics", str(tmp_path / "m.csv"), "--train", str(tmp_path / "train.csv"),
                              "--json", str(tmp_path / "out.json")))
    assert "train.csv" in line and "columns differ" in line and "'mem_used'" in line and "'power'" in line
    assert not (tmp_path / "out.json").exists()


def test_train_columns_in_another_order_are_fine(tmp_path):
    (tmp_path / "m.csv").write_text(GOOD_HEADER + ROWS)
    swapped = "timestamp,mem_used,gpu_util\n" + "".join(
        f"2024-04-30T00:{m:02d}:00Z,{40 + m % 2},{50 + m % 3}\n" for m in range(30))
    (tmp_path / "train.csv").write_text(swapped)
    assert run("--metrics", str(tmp_path / "m.csv"), "--train", str(tmp_path / "train.csv")).exit_code == 0


def test_train_with_another_kind_of_time_column(tmp_path):
    (tmp_path / "m.csv").write_text(GOOD_HEADER + ROWS)
    (tmp_path / "train.csv").write_text("t,gpu_util,mem_used\n" + "".join(f"{i},1,2\n" for i in range(30)))
    line = one_line_error(run("--metrics", str(tmp_path / "m.csv"), "--train", str(tmp_path / "train.csv")))
    assert "same kind of time" in line


@pytest.mark.parametrize("args, expected", [
    (["--metrics", "missing.csv"], "no such file"),
    (["--season", "sometimes"], "--season"),
])
def test_bad_paths_and_options(tmp_path, args, expected):
    (tmp_path / "m.csv").write_text(GOOD_HEADER + ROWS)
    full = args if args[0] == "--metrics" else ["--metrics", str(tmp_path / "m.csv"), *args]
    assert expected in one_line_error(run(*full))


def test_json_path_that_is_a_directory(tmp_path):
    (tmp_path / "m.csv").write_text(GOOD_HEADER + ROWS)
    line = one_line_error(run("--metrics", str(tmp_path / "m.csv"), "--json", str(tmp_path)))
    assert "--json" in line and "directory" in line
