"""Tests for simulations.traces: loading/validation, writing, resampling, gap filling, synthesis."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulations.errors import InputError, TraceError
from simulations.traces import MAX_RPS, Trace, fill_gaps, load_trace, synthetic_llm_trace, write_trace

# The shared data beside the repo (or $AIOPS_DATA_DIR), as the benchmarks read it; skipped when absent.
REAL_TRACES = Path(os.environ.get("AIOPS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "traces"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def make_trace(values, step=60.0, start=T0, workloads=None, source="test") -> Trace:
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if workloads is None:
        workloads = tuple(f"w{j}" for j in range(values.shape[1]))
    return Trace(source=source, start=start, step_seconds=step, workloads=workloads, values=values)


# --------------------------------------------------------------------------------------------
# Loading good files
# --------------------------------------------------------------------------------------------


def test_long_format_two_workloads_with_blank_gap(tmp_path):
    path = write(
        tmp_path,
        "timestamp,workload,value\n"
        "2024-01-01T00:00:00Z,chat,1.5\n"
        "2024-01-01T00:00:00Z,code,10\n"
        "2024-01-01T00:01:00Z,chat,\n"
        "2024-01-01T00:01:00Z,code,11\n"
        "2024-01-01T00:02:00Z,chat,3.5\n"
        "2024-01-01T00:02:00Z,code,NaN\n",
    )
    trace = load_trace(path)
    assert trace.source == str(path)
    assert trace.workloads == ("chat", "code")
    assert trace.start == T0
    assert trace.step_seconds == 60.0
    assert trace.n_steps == 3
    np.testing.assert_array_equal(trace.values, [[1.5, 10.0], [np.nan, 11.0], [3.5, np.nan]])
    np.testing.assert_array_equal(trace.timestamps, T0 + np.array([0.0, 60.0, 120.0]))
    assert trace.values.dtype == np.float64


def test_workloads_keep_order_of_first_appearance(tmp_path):
    path = write(
        tmp_path,
        "timestamp,workload,value\n"
        "2024-01-01T00:00:00Z,zeta,1\n"
        "2024-01-01T00:00:00Z,alpha,2\n"
        "2024-01-01T00:10:00Z,alpha,3\n"
        "2024-01-01T00:10:00Z,zeta,4\n",
    )
    trace = load_trace(path)
    assert trace.workloads == ("zeta", "alpha")
    np.testing.assert_array_equal(trace.values, [[1, 2], [4, 3]])
    assert trace.step_seconds == 600


def test_two_column_form_names_workload_after_file_stem(tmp_path):
    path = write(
        tmp_path,
        " timestamp , value \n2024-01-01T00:00:00Z,5\n2024-01-01T00:00:10Z,6\n",
        name="my-service.csv",
    )
    trace = load_trace(path)
    assert trace.workloads == ("my-service",)
    assert trace.step_seconds == 10
    np.testing.assert_array_equal(trace.values[:, 0], [5, 6])


def test_missing_grid_rows_become_nan_not_zero(tmp_path):
    path = write(
        tmp_path,
        "timestamp,workload,value\n"
        "2024-01-01T00:00:00Z,a,1\n"
        "2024-01-01T00:01:00Z,a,2\n"
        "2024-01-01T00:04:00Z,a,5\n"  # 00:02 and 00:03 missing
        "2024-01-01T00:01:00Z,b,7\n"  # b starts later and ends earlier
        "2024-01-01T00:02:00Z,b,8\n",
    )
    trace = load_trace(path)
    assert trace.n_steps == 5
    np.testing.assert_array_equal(
        trace.values,
        [[1, np.nan], [2, 7], [np.nan, 8], [np.nan, np.nan], [5, np.nan]],
    )


def test_timestamp_forms_offsets_naive_and_epoch(tmp_path):
    path = write(
        tmp_path,
        "timestamp,workload,value\n"
        f"{T0:.0f},a,1\n"  # epoch seconds
        "2024-01-01T01:01:00+01:00,a,2\n"  # UTC offset
        "2024-01-01T00:02:00,a,3\n"  # naive = UTC
        "2024-01-01T00:03:00.000Z,a,4\n",
    )
    trace = load_trace(path)
    assert trace.start == T0
    assert trace.step_seconds == 60
    np.testing.assert_array_equal(trace.values[:, 0], [1, 2, 3, 4])


def test_blank_lines_and_nan_spellings(tmp_path):
    path = write(
        tmp_path,
        "timestamp,workload,value\n\n2024-01-01T00:00:00Z,a,1\n\n   \n2024-01-01T00:01:00Z,a,nan\n"
        "2024-01-01T00:02:00Z,a, 3 \n",
    )
    np.testing.assert_array_equal(load_trace(path).values[:, 0], [1, np.nan, 3])


def test_single_timestamp_per_workload_defaults_to_60s(tmp_path):
    path = write(tmp_path, "timestamp,value\n2024-01-01T00:00:00Z,4\n")
    trace = load_trace(path)
    assert trace.step_seconds == 60.0
    assert trace.n_steps == 1


def test_step_is_most_common_spacing(tmp_path):
    # Spacings 10, 10, 10, 30 -> step 10; the 30 s jump leaves two NaN grid points.
    rows = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:10Z", "2024-01-01T00:00:20Z",
            "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"]
    path = write(tmp_path, "timestamp,value\n" + "".join(f"{r},1\n" for r in rows))
    trace = load_trace(path)
    assert trace.step_seconds == 10
    assert trace.n_steps == 7
    assert np.isnan(trace.values[4:6, 0]).all()


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,value\n2024-01-01T00:00:00Z,1\n")
    assert load_trace(path).values[0, 0] == 1


def test_load_is_fast_for_40k_rows(tmp_path):
    n = 40_000
    stamps = np.datetime_as_string(
        (np.int64(T0) + 60 * np.arange(n)).astype("datetime64[s]"), unit="s", timezone="UTC"
    )
    lines = [f"{s},nasa,{i % 97 / 7:.4f}\n" for i, s in enumerate(stamps)]
    lines[123] = lines[123].rsplit(",", 1)[0] + ",\n"
    path = write(tmp_path, "timestamp,workload,value\n" + "".join(lines))
    began = time.perf_counter()
    trace = load_trace(path)
    elapsed = time.perf_counter() - began
    assert trace.n_steps == n
    assert np.isnan(trace.values[123, 0])
    assert elapsed < 2.0, f"loading 40k rows took {elapsed:.2f} s"


# --------------------------------------------------------------------------------------------
# Loading bad files: one TraceError naming file, line and problem
# --------------------------------------------------------------------------------------------

HEADER = "timestamp,workload,value\n"
R1 = "2024-01-01T00:00:00Z,a,1\n"
R2 = "2024-01-01T00:10:00Z,a,2\n"
R3 = "2024-01-01T00:20:00Z,a,3\n"

BAD_FILES = {
    # name: (content, line or None, phrase)
    "empty file": ("", None, "empty file"),
    "blank lines only": ("\n\n  \n", None, "empty file"),
    "header only": (HEADER, None, "no data rows"),
    "bad header": ("time,workload,value\n" + R1, 1, "bad header 'time,workload,value'"),
    "columns in wrong order": ("workload,timestamp,value\n" + R1, 1, "bad header"),
    "missing header columns": ("timestamp,workload\n2024-01-01T00:00:00Z,a\n", 1, "bad header"),
    "missing fields in a row": (HEADER + R1 + "2024-01-01T00:10:00Z,a\n", 3, "wrong number of fields"),
    "extra fields in a row": (HEADER + R1 + R2 + "2024-01-01T00:20:00Z,a,3,4\n", 4, "expected 3"),
    "unparseable timestamp": (HEADER + R1 + "yesterday,a,2\n", 3, "unparseable timestamp 'yesterday'"),
    "impossible date": (HEADER + R1 + "2024-13-45T00:00:00Z,a,2\n", 3, "unparseable timestamp"),
    "empty timestamp": (HEADER + R1 + ",a,2\n", 3, "empty timestamp"),
    "unparseable value": (HEADER + R1 + R2 + "2024-01-01T00:20:00Z,a,lots\n", 4, "unparseable value 'lots'"),
    "negative value": (HEADER + R1 + "2024-01-01T00:10:00Z,a,-0.5\n", 3, "negative value '-0.5'"),
    "infinite value": (HEADER + R1 + "2024-01-01T00:10:00Z,a,inf\n", 3, "infinite value 'inf'"),
    "empty workload": (HEADER + R1 + "2024-01-01T00:10:00Z,  ,2\n", 3, "empty workload name"),
    "duplicate timestamp": (
        HEADER + R1 + "2024-01-01T00:00:00Z,b,5\n" + R2 + "2024-01-01T00:10:00Z,a,9\n",
        5,
        "duplicate timestamp 2024-01-01T00:10:00Z for workload 'a' (first at line 4)",
    ),
    "out-of-order timestamp": (
        HEADER + R1 + R3 + R2,
        4,
        "out of order: it goes backwards from the previous timestamp 2024-01-01T00:20:00Z (line 3)",
    ),
    "off-grid timestamp": (
        HEADER + R1 + R2 + R3 + "2024-01-01T00:25:00Z,a,4\n",
        5,
        "timestamp not on the 600 s grid: 2024-01-01T00:25:00Z",
    ),
    "all-NaN workload": (
        HEADER + R1 + "2024-01-01T00:00:00Z,b,\n" + R2 + "2024-01-01T00:10:00Z,b,nan\n",
        3,
        "workload 'b' has no values",
    ),
    "blank lines do not shift line numbers": (HEADER + "\n" + R1 + "\n\n" + "2024-01-01T00:10:00Z,a,x\n", 6, "unparseable value"),
    "earliest problem is reported": (HEADER + R1 + "2024-01-01T00:10:00Z,a,-1\n" + "bad,a,1\n", 3, "negative value"),
    "field count vs later bad value": (HEADER + R1 + "2024-01-01T00:10:00Z,a,oops\n" + "x,a\n", 3, "unparseable value"),
    "bad value after wrong field count": (HEADER + R1 + "x,a\n" + "2024-01-01T00:10:00Z,a,oops\n", 3, "wrong number of fields"),
    "malformed quoting": (HEADER + R1 + '2024-01-01T00:10:00Z,"a"b,1\n', 3, "malformed CSV"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_input_raises_trace_error_with_location(tmp_path, case):
    content, line, phrase = BAD_FILES[case]
    path = write(tmp_path, content, name="bad.csv")
    with pytest.raises(TraceError) as info:
        load_trace(path)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    expected_where = f"{path}:{line}" if line is not None else str(path)
    assert info.value.where == expected_where
    assert message.startswith(expected_where + ": ")
    assert "bad.csv" in message
    assert phrase in message


def test_bad_header_lists_accepted_forms(tmp_path):
    path = write(tmp_path, "ts,val\n1,2\n")
    with pytest.raises(TraceError, match="timestamp,workload,value.*timestamp,value"):
        load_trace(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="directory"):
        load_trace(tmp_path)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"timestamp,workload,value\n2024-01-01T00:00:00Z,caf\xe9,1\n")
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert info.value.where == f"{path}:2"
    assert "UTF-8" in str(info.value)


# --------------------------------------------------------------------------------------------
# Writing and round-tripping
# --------------------------------------------------------------------------------------------


def test_write_trace_canonical_format(tmp_path):
    trace = make_trace([[1.5, 0.1], [np.nan, 2.0]], step=600, workloads=("a", "b,c"))
    path = tmp_path / "out.csv"
    write_trace(trace, path)
    assert path.read_text() == (
        "timestamp,workload,value\n"
        "2024-01-01T00:00:00Z,a,1.5\n"
        '2024-01-01T00:00:00Z,"b,c",0.1\n'
        "2024-01-01T00:10:00Z,a,\n"
        '2024-01-01T00:10:00Z,"b,c",2.0\n'
    )
    assert load_trace(path) == trace


def test_write_trace_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="negative or infinite"):
        write_trace(make_trace([1.0, -1.0]), tmp_path / "x.csv")
    with pytest.raises(ValueError, match="no values"):
        write_trace(make_trace([[1.0, np.nan]]), tmp_path / "x.csv")


@st.composite
def random_traces(draw):
    n_workloads = draw(st.integers(1, 4))
    n_steps = draw(st.integers(1, 50))
    step = draw(st.sampled_from([10.0, 60.0, 600.0]))
    start = float(draw(st.integers(-10**9, 4 * 10**9)))
    names = draw(
        st.lists(
            st.text(alphabet='abcXYZ019-_.,"é ', min_size=1, max_size=8).filter(lambda s: s == s.strip()),
            min_size=n_workloads,
            max_size=n_workloads,
            unique=True,
        )
    )
    finite = st.floats(min_value=0.0, max_value=MAX_RPS, allow_nan=False, allow_infinity=False)
    cells = st.one_of(finite, st.just(math.nan))
    values = np.array(
        draw(st.lists(st.lists(cells, min_size=n_workloads, max_size=n_workloads), min_size=n_steps, max_size=n_steps)),
        dtype=float,
    )
    for j in range(n_workloads):  # never a whole column of NaN
        if np.isnan(values[:, j]).all():
            values[draw(st.integers(0, n_steps - 1)), j] = draw(finite)
    return Trace(source="random", start=start, step_seconds=step, workloads=tuple(names), values=values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces())
def test_write_then_load_round_trips_exactly(trace):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.csv")
        write_trace(trace, path)
        loaded = load_trace(path)
    # A single-step file carries no spacing, so the loader falls back to its 60 s default.
    expected = trace if trace.n_steps > 1 else replace(trace, step_seconds=60.0)
    assert loaded == expected
    assert loaded.workloads == trace.workloads
    assert loaded.start == trace.start
    # Exact bits, not just numerically close.
    np.testing.assert_array_equal(loaded.values, trace.values)
    assert loaded.source == path


# --------------------------------------------------------------------------------------------
# Trace value type
# --------------------------------------------------------------------------------------------


def test_trace_values_are_a_read_only_copy():
    raw = np.array([[1.0], [2.0]])
    trace = make_trace(raw)
    raw[0, 0] = 99.0
    assert trace.values[0, 0] == 1.0
    assert not trace.values.flags.writeable
    with pytest.raises(ValueError):
        trace.values[0, 0] = 5.0


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(values=np.zeros((3, 2)), workloads=("a",)), "columns"),
        (dict(values=np.zeros(3), workloads=("a",)), "2-D"),
        (dict(values=np.zeros((0, 1)), workloads=("a",)), "at least one time step"),
        (dict(values=np.zeros((2, 2)), workloads=("a", "a")), "unique"),
        (dict(values=np.zeros((2, 1)), workloads=("a",), step_seconds=0.0), "step_seconds"),
    ],
)
def test_trace_validates_shape_and_names(kwargs, phrase):
    args = dict(source="x", start=0.0, step_seconds=60.0) | kwargs
    with pytest.raises(ValueError, match=phrase):
        Trace(**args)


def test_scaled_and_select():
    trace = make_trace([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]], workloads=("a", "b", "c"))
    doubled = trace.scaled(2)
    np.testing.assert_array_equal(doubled.values, [[2, 4, np.nan], [6, 8, 10]])
    assert not doubled.values.flags.writeable
    picked = trace.select(["c", "a"])
    assert picked.workloads == ("c", "a")
    np.testing.assert_array_equal(picked.values, [[np.nan, 1], [5, 3]])
    with pytest.raises(TraceError, match="unknown workload 'z'"):
        trace.select(["z"])
    with pytest.raises(ValueError):
        trace.scaled(-1)


def test_equality_ignores_source_and_treats_nan_as_equal():
    a = make_trace([1.0, np.nan], source="one")
    b = make_trace([1.0, np.nan], source="two")
    assert a == b and hash(a) == hash(b)
    assert a != make_trace([1.0, 2.0])
    assert a != make_trace([1.0, np.nan], step=10)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def test_to_step_equal_returns_self():
    trace = make_trace([1.0, 2.0])
    assert trace.to_step(60) is trace


def test_to_step_finer_interpolates_and_holds_tail():
    trace = make_trace([[0.0, 1.0], [6.0, np.nan], [12.0, 3.0]], step=60)
    fine = trace.to_step(20)
    assert fine.step_seconds == 20
    assert fine.n_steps == math.ceil(3 * 60 / 20) == 9
    np.testing.assert_array_equal(fine.values[:, 0], [0, 2, 4, 6, 8, 10, 12, 12, 12])
    # Points between a NaN and anything are NaN; the NaN source point itself is NaN.
    np.testing.assert_array_equal(fine.values[:, 1], [1, np.nan, np.nan, np.nan, np.nan, np.nan, 3, 3, 3])
    np.testing.assert_array_equal(fine.timestamps[:4] - T0, [0, 20, 40, 60])


def test_to_step_finer_requires_whole_divisor():
    with pytest.raises(TraceError, match="not a whole multiple"):
        make_trace([1.0, 2.0], step=60).to_step(25)


def test_to_step_coarser_means_ignoring_nan():
    trace = make_trace([[1.0, np.nan], [3.0, np.nan], [np.nan, 2.0], [8.0, 4.0], [5.0, np.nan]], step=60)
    coarse = trace.to_step(120)
    assert coarse.step_seconds == 120
    assert coarse.n_steps == 3  # last bucket is partial
    np.testing.assert_array_equal(coarse.values, [[2.0, np.nan], [8.0, 3.0], [5.0, np.nan]])


def test_to_step_coarser_non_multiple_uses_time_buckets():
    trace = make_trace(np.arange(6.0), step=60)  # t = 0, 60, ..., 300
    coarse = trace.to_step(90)  # buckets [0,90) [90,180) [180,270) [270,360)
    np.testing.assert_array_equal(coarse.values[:, 0], [0.5, 2.0, 3.5, 5.0])


finite_rates = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(finite_rates, min_size=1, max_size=40),
    st.sampled_from([(600.0, 60.0), (60.0, 10.0), (60.0, 20.0), (10.0, 5.0)]),
)
def test_to_step_finer_then_coarser(column, steps):
    old, new = steps
    r = round(old / new)
    trace = make_trace(column, step=old)
    fine = trace.to_step(new)
    # The refined grid passes exactly through every source point.
    np.testing.assert_array_equal(fine.values[::r], trace.values)
    back = fine.to_step(old)
    assert back.n_steps == trace.n_steps and back.step_seconds == old
    # Each bucket is the mean of a linear ramp from v[k] towards v[k+1] (held at the end),
    # which is v[k] + (v[k+1] - v[k]) * (r - 1) / (2 r): the original wherever the rate is flat.
    v = trace.values[:, 0]
    nxt = np.r_[v[1:], v[-1]]
    expected = v + (nxt - v) * (r - 1) / (2 * r)
    np.testing.assert_allclose(back.values[:, 0], expected, rtol=1e-9, atol=1e-9)
    flat = nxt == v
    np.testing.assert_allclose(back.values[flat, 0], v[flat], rtol=1e-12, atol=0)


def test_to_step_finer_then_coarser_returns_piecewise_constant_values_exactly():
    trace = make_trace([[5.0, 0.0], [5.0, 0.0], [7.25, 3.0], [7.25, 3.0], [7.25, 3.0]], step=600)
    back = trace.to_step(60).to_step(600)
    # Buckets whose ramp is flat (own value == next value) come back exactly.
    np.testing.assert_array_equal(back.values[[0, 2, 3, 4]], trace.values[[0, 2, 3, 4]])


# --------------------------------------------------------------------------------------------
# Gap filling
# --------------------------------------------------------------------------------------------


def test_fill_gaps_interior_linear_edges_held():
    values = np.array(
        [[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [np.nan, 4.0], [8.0, np.nan]]
    )
    original = values.copy()
    filled, mask = fill_gaps(values)
    np.testing.assert_array_equal(filled, [[2, 1], [2, 2], [4, 3], [6, 4], [8, 4]])
    np.testing.assert_array_equal(mask, np.isnan(original))
    np.testing.assert_array_equal(values, original)  # input untouched
    assert mask.dtype == bool


def test_fill_gaps_all_nan_column_is_an_error():
    with pytest.raises(ValueError, match="column 1"):
        fill_gaps(np.array([[1.0, np.nan], [2.0, np.nan]]))


def test_fill_gaps_one_dimensional():
    filled, mask = fill_gaps(np.array([np.nan, 1.0, np.nan, 3.0]))
    np.testing.assert_array_equal(filled, [1, 1, 2, 3])
    np.testing.assert_array_equal(mask, [True, False, True, False])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.lists(
            st.lists(st.one_of(finite_rates, st.just(math.nan)), min_size=n, max_size=n).filter(
                lambda col: not all(math.isnan(x) for x in col)
            ),
            min_size=1,
            max_size=4,
        )
    )
)
def test_fill_gaps_property(columns):
    values = np.array(columns, dtype=float).T
    filled, mask = fill_gaps(values)
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(mask, np.isnan(values))
    np.testing.assert_array_equal(filled[~mask], values[~mask])
    # Filled values stay within the range of the column's known values.
    for j in range(values.shape[1]):
        known = values[~mask[:, j], j]
        assert known.min() <= filled[:, j].min() and filled[:, j].max() <= known.max()


# --------------------------------------------------------------------------------------------
# Synthetic LLM trace
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> Trace:
    return synthetic_llm_trace()


def test_synthetic_shape_and_scale(synthetic):
    assert synthetic.n_steps == 10080
    assert synthetic.step_seconds == 60
    assert synthetic.workloads == ("llm-chat",)
    assert synthetic.start == datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
    assert datetime.fromtimestamp(synthetic.start, tz=timezone.utc).weekday() == 0  # Monday
    v = synthetic.values[:, 0]
    assert v.max() == 600.0
    assert v.min() >= 0
    assert not np.isnan(v).any()
    assert synthetic.source == "synthetic-llm(seed=0)"


def test_synthetic_is_deterministic_per_seed():
    a = synthetic_llm_trace(seed=3)
    b = synthetic_llm_trace(seed=3)
    c = synthetic_llm_trace(seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_synthetic_peak_and_step_arguments():
    trace = synthetic_llm_trace(days=2, step_seconds=10, seed=1, workload="w", peak_rps=42.5)
    assert trace.n_steps == 2 * 8640
    assert trace.values.max() == 42.5
    assert trace.workloads == ("w",)


def _hours_and_days(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    since = trace.timestamps - trace.start
    return (since / 3600) % 24, (since // 86400).astype(int)


def test_synthetic_diurnal_and_weekly_shape(synthetic):
    v = synthetic.values[:, 0]
    hours, day = _hours_and_days(synthetic)
    daytime = (hours >= 10) & (hours < 18)
    night = (hours >= 3) & (hours < 5)
    weekday_day = np.median(v[daytime & (day < 5)])
    weekend_day = np.median(v[daytime & (day >= 5)])
    assert weekend_day < weekday_day
    assert 0.5 < weekend_day / weekday_day < 0.7
    assert 0.1 < np.median(v[night]) / weekday_day < 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_has_flash_crowd_bursts(seed):
    v = synthetic_llm_trace(seed=seed).values[:, 0]
    rises = v[1:] / v[:-1]
    assert (rises > 1.3).sum() >= 3


# --------------------------------------------------------------------------------------------
# Real example traces (only where the shared data directory exists)
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_TRACES.is_dir(), reason="no shared example traces here")
def test_real_traces_load():
    files = sorted(REAL_TRACES.glob("*.csv"))
    assert files
    for path in files:
        trace = load_trace(path)
        assert trace.n_steps > 1
        assert not np.isnan(trace.values).all(axis=0).any()
        if path.name.startswith("nasa"):
            assert len(trace.workloads) == 1 and trace.step_seconds == 60
        if path.name.startswith("servegen_m-mid"):
            assert len(trace.workloads) == 20 and trace.step_seconds == 600
        if path.name.startswith("azure"):
            assert trace.step_seconds == 10


@pytest.mark.parametrize("row,phrase", [("1e12,1", "unparseable timestamp"), ("60,1e300", r"above 1e\+12")])
def test_out_of_range_timestamps_and_values_are_refused_on_their_line(tmp_path, row, phrase):
    path = tmp_path / "t.csv"
    path.write_text(f"timestamp,value\n0,1\n{row}\n")
    with pytest.raises(TraceError, match=rf"t\.csv:3: .*{phrase}"):
        load_trace(path)


def test_resample_puts_irregular_timestamps_on_a_grid(tmp_path):
    path = tmp_path / "jitter.csv"
    path.write_text("timestamp,workload,value\n"
                    "2024-01-01T00:00:05Z,a,2\n2024-01-01T00:00:40Z,a,4\n"  # one bin: mean 3
                    "2024-01-01T00:01:30Z,a,\n"  # a blank value: no data in that bin
                    "2024-01-01T00:03:10Z,a,7\n2024-01-01T00:00:20Z,b,1\n")
    with pytest.raises(TraceError, match="not on the"):
        load_trace(path)
    trace = load_trace(path, resample_seconds=60)
    assert trace.step_seconds == 60 and trace.start == 1704067200.0
    np.testing.assert_array_equal(trace.values[:, 0], [3.0, np.nan, np.nan, 7.0])
    np.testing.assert_array_equal(trace.values[:, 1], [1.0, np.nan, np.nan, np.nan])
