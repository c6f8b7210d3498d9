"""Demand traces: loading, validating, writing, resampling and synthesising them.

A :class:`Trace` is a regular time grid (``start + k * step_seconds``) of request rates
(requests/s) for one or more workloads. Missing data is represented by NaN ("gaps"); it is
never silently turned into zero. Use :func:`fill_gaps` when a consumer needs a gap-free array.

File format (read by :func:`load_trace`, written by :func:`write_trace`)::

    timestamp,workload,value          # long format, any number of workloads
    2024-01-01T00:00:00Z,chat,12.5
    2024-01-01T00:00:00Z,code,
    ...

or, for a single workload named after the file stem::

    timestamp,value
    2024-01-01T00:00:00Z,12.5

Every problem found in a file is raised as :class:`~simulations.errors.TraceError` with a
one-line message of the form ``PATH:LINE: problem``. Line numbers are 1-based physical lines
of the file (the header is line 1); blank lines are skipped but still counted, and a record
whose quoted field spans several lines is reported at the line where the record starts.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from simulations.errors import TraceError, read_text

__all__ = [
    "Trace",
    "fill_gaps",
    "load_trace",
    "synthetic_llm_trace",
    "write_trace",
]

#: Header forms accepted by :func:`load_trace` (after stripping whitespace around each name).
ACCEPTED_HEADERS: tuple[tuple[str, ...], ...] = (
    ("timestamp", "workload", "value"),
    ("timestamp", "value"),
)
#: Timestamps closer than this (seconds) are considered equal / on the grid.
GRID_TOLERANCE_S = 1e-3
#: Step used when no workload has two timestamps to infer it from.
DEFAULT_STEP_S = 60.0
#: Refuse to allocate grids larger than this many cells (a stray timestamp years away from
#: the rest would otherwise try to allocate gigabytes).
MAX_GRID_CELLS = 50_000_000

# A plain number: epoch seconds (as opposed to an ISO-8601 text).
_NUMBER_RE = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


# --------------------------------------------------------------------------------------------
# The Trace value type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """Request rates of one or more workloads on a regular UTC time grid.

    ``values[k, j]`` is the rate (requests/s) of ``workloads[j]`` at ``start + k * step_seconds``;
    NaN marks a gap (no data). ``values`` is a read-only float64 copy of what was passed in.

    Equality (``==``) compares the data (start, step, workloads and values, with NaN equal to
    NaN) and ignores ``source``, which only records provenance.
    """

    source: str
    start: float
    step_seconds: float
    workloads: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        workloads = tuple(self.workloads)
        values = np.array(self.values, dtype=np.float64)  # always a private copy
        start = float(self.start)
        step = float(self.step_seconds)
        if not math.isfinite(start):
            raise ValueError(f"Trace start must be finite, got {self.start!r}")
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"Trace step_seconds must be finite and > 0, got {self.step_seconds!r}")
        if not workloads:
            raise ValueError("Trace needs at least one workload")
        for name in workloads:
            if not isinstance(name, str) or not name:
                raise ValueError(f"Trace workload names must be non-empty strings, got {name!r}")
        if len(set(workloads)) != len(workloads):
            raise ValueError(f"Trace workload names must be unique, got {workloads!r}")
        if values.ndim != 2:
            raise ValueError(f"Trace values must be 2-D [n_steps, n_workloads], got shape {values.shape}")
        if values.shape[1] != len(workloads):
            raise ValueError(
                f"Trace values have {values.shape[1]} columns but {len(workloads)} workloads are named"
            )
        if values.shape[0] < 1:
            raise ValueError("Trace needs at least one time step")
        values.flags.writeable = False
        # The dataclass is frozen, so normalised fields are set through object.__setattr__.
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "step_seconds", step)
        object.__setattr__(self, "workloads", workloads)
        object.__setattr__(self, "values", values)

    # ndarray fields make the generated __eq__/__hash__ unusable, so both are defined here.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            self.start == other.start
            and self.step_seconds == other.step_seconds
            and self.workloads == other.workloads
            and self.values.shape == other.values.shape
            and bool(np.array_equal(self.values, other.values, equal_nan=True))
        )

    def __hash__(self) -> int:
        return hash((self.start, self.step_seconds, self.workloads, self.values.shape))

    def __repr__(self) -> str:
        return (
            f"Trace(source={self.source!r}, start={_iso(self.start)}, step_seconds={self.step_seconds:g}, "
            f"workloads={self.workloads!r}, n_steps={self.n_steps})"
        )

    @property
    def n_steps(self) -> int:
        """Number of grid points."""
        return int(self.values.shape[0])

    @property
    def timestamps(self) -> np.ndarray:
        """Epoch seconds (UTC, float64) of every grid point: ``start + k * step_seconds``."""
        return self.start + np.arange(self.n_steps, dtype=np.float64) * self.step_seconds

    def scaled(self, factor: float) -> Trace:
        """A copy with every value multiplied by ``factor`` (finite, >= 0); NaN stays NaN."""
        factor = float(factor)
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"scale factor must be finite and >= 0, got {factor!r}")
        return replace(self, values=self.values * factor)

    def select(self, workloads: Sequence[str]) -> Trace:
        """A copy with only ``workloads``, in the order given.

        An unknown or repeated name, or an empty selection, raises :class:`TraceError`.
        """
        if isinstance(workloads, str):  # a bare string would otherwise be split into letters
            workloads = [workloads]
        names = list(workloads)
        if not names:
            raise TraceError(self.source, "no workloads selected")
        index = {name: j for j, name in enumerate(self.workloads)}
        seen: set[str] = set()
        for name in names:
            if name not in index:
                known = ", ".join(repr(w) for w in self.workloads)
                raise TraceError(self.source, f"unknown workload {name!r} (the trace has {known})")
            if name in seen:
                raise TraceError(self.source, f"workload {name!r} selected twice")
            seen.add(name)
        columns = [index[name] for name in names]
        return replace(self, workloads=tuple(names), values=self.values[:, columns])

    def to_step(self, step_seconds: float) -> Trace:
        """Resample onto a grid with step ``step_seconds`` (same start).

        * Finer: the old step must be a whole multiple ``r`` of the new one (else
          :class:`TraceError`). Rates are linearly interpolated between neighbouring source
          points; a new point that falls exactly on a source point takes its value. A point
          between two source points of which one is NaN is NaN. There is no source point after
          the last one, so its value is held for the tail: ``n_steps`` becomes
          ``ceil(old_n * old_step / new_step) = old_n * r``.
        * Equal: returns ``self``.
        * Coarser: each new point is the mean of the source points in
          ``[t, t + step_seconds)``, ignoring NaN; a bucket with only NaN is NaN. The last
          bucket may be partial.

        Note: finer-then-coarser is *not* the identity for values that change, because the
        mean of a linear ramp over a bucket is not its first point. The refined grid does pass
        exactly through the source values (``finer.values[::r] == values``).
        """
        new = float(step_seconds)
        if not (math.isfinite(new) and new > 0):
            raise ValueError(f"step_seconds must be finite and > 0, got {step_seconds!r}")
        old = self.step_seconds
        if math.isclose(new, old, rel_tol=1e-9, abs_tol=0.0):
            return self
        if new < old:
            return self._refine(new)
        return self._coarsen(new)

    def _refine(self, new: float) -> Trace:
        ratio = self.step_seconds / new
        r = round(ratio)
        if not math.isclose(ratio, r, rel_tol=1e-9, abs_tol=0.0):
            raise TraceError(
                self.source,
                f"cannot refine the {self.step_seconds:g} s step to {new:g} s: "
                f"{self.step_seconds:g} is not a whole multiple of {new:g}",
            )
        old_values = self.values
        n = self.n_steps
        j = np.arange(n * r)
        left = j // r
        frac = (j % r) / r
        right = np.minimum(left + 1, n - 1)  # the tail after the last point holds it
        lo = old_values[left]
        hi = old_values[right]
        interpolated = lo + (hi - lo) * frac[:, None]  # NaN on either side -> NaN
        on_source_point = (frac == 0)[:, None]
        # On a source point (and in the held tail) take the value itself: exact, and not
        # contaminated by a NaN neighbour.
        values = np.where(on_source_point | (left == n - 1)[:, None], lo, interpolated)
        return replace(self, step_seconds=new, values=values)

    def _coarsen(self, new: float) -> Trace:
        n = self.n_steps
        # Bucket of every source point; the epsilon keeps exact boundaries (60 s into a 60 s
        # bucket) from falling into the previous bucket through rounding.
        bucket = np.floor(np.arange(n) * self.step_seconds / new + 1e-9).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        known = ~np.isnan(self.values)
        sums = np.add.reduceat(np.where(known, self.values, 0.0), starts, axis=0)
        counts = np.add.reduceat(known.astype(np.int64), starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return replace(self, step_seconds=new, values=means)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_trace(path: str | os.PathLike, resample_seconds: float | None = None) -> Trace:
    """Load and validate a trace CSV (see the module docstring for the format).

    With ``resample_seconds``, timestamps need not lie on a grid (irregular scrapes, jittered
    exports): each workload's values are averaged into clock-aligned bins of that width, and a
    bin without a value is a gap.

    * ``timestamp``: ISO-8601 (``Z`` or a UTC offset; naive means UTC) or epoch seconds.
    * ``value``: requests/s, finite and >= 0; blank or ``nan`` is a gap (NaN).
    * The step is the most common positive spacing between consecutive timestamps of the same
      workload (60 s if no workload has two timestamps); every timestamp must lie on the grid
      ``start + k * step`` (start = earliest timestamp, 1 ms tolerance).
    * The grid spans the earliest to the latest timestamp over all workloads; grid points a
      workload has no row for are NaN.
    * Workloads keep their order of first appearance in the file.

    Raises :class:`TraceError` (``PATH:LINE: problem``) for anything it cannot use.
    """
    where = os.fspath(path)
    text = read_text(where, TraceError, "trace file")
    header, records, field_count_problem = _read_records(where, text)
    has_workload = len(header) == 3
    lines = np.fromiter((line for line, _ in records), dtype=np.int64, count=len(records))

    ts_text = [row[0].strip() for _, row in records]
    val_text = [row[-1].strip() for _, row in records]
    if has_workload:
        wl_text = [row[1].strip() for _, row in records]
    else:
        wl_text = [Path(where).stem] * len(records)

    times = _parse_timestamps(ts_text)
    values, value_problems = _parse_values(val_text)
    _raise_first_row_problem(
        where,
        [
            field_count_problem,
            _first_problem(lines, np.isnan(times), ts_text, _describe_bad_timestamp),
            _first_problem(lines, np.array([not w for w in wl_text]), wl_text, lambda _: "empty workload name"),
            _first_problem(lines, value_problems != "", value_problems, lambda p: p),
        ],
    )

    codes, names = pd.factorize(pd.Series(wl_text, dtype=object), sort=False)
    names = tuple(str(n) for n in names)
    _check_order(where, lines, times, codes, names, ts_text)
    if resample_seconds is None:
        step = _infer_step(times, codes)
        start = float(times.min())
        k = _grid_index(where, lines, times, start, step, ts_text)
    else:
        step = float(resample_seconds)
        start = math.floor(float(times.min()) / step) * step
        k = np.floor((times - start) / step).astype(np.int64)

    n_steps = int(k.max()) + 1
    if n_steps * len(names) > MAX_GRID_CELLS:
        latest = int(np.argmax(times))
        raise TraceError(
            f"{where}:{lines[latest]}",
            f"grid too large: {n_steps} steps of {step:g} s x {len(names)} workloads from "
            f"{_iso(start)} to {ts_text[latest]} (is a timestamp far from the others?)",
        )
    grid = np.full((n_steps, len(names)), np.nan)
    if resample_seconds is None:
        grid[k, codes] = values  # grid points without a row stay NaN (gaps, not zeros)
    else:  # the mean of each bin's values; a bin with none stays NaN
        ok = ~np.isnan(values)
        cell = k[ok] * len(names) + codes[ok]
        sums = np.bincount(cell, weights=values[ok], minlength=n_steps * len(names))
        counts = np.bincount(cell, minlength=n_steps * len(names))
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(n_steps, len(names))

    for j, name in enumerate(names):
        if np.isnan(grid[:, j]).all():
            first = int(np.flatnonzero(codes == j)[0])
            raise TraceError(
                f"{where}:{lines[first]}",
                f"workload {name!r} has no values (all its rows are blank or NaN)",
            )
    return Trace(source=where, start=start, step_seconds=step, workloads=names, values=grid)


def _read_records(
    where: str, text: str
) -> tuple[tuple[str, ...], list[tuple[int, list[str]]], tuple[int, str] | None]:
    """Split into (header names, [(line, fields), ...], first wrong-field-count problem).

    Rows with the wrong number of fields are left out of the records; the first one is
    returned as ``(line, message)`` so the caller can report whichever problem comes first.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: tuple[str, ...] | None = None
    header_line = 0
    records: list[tuple[int, list[str]]] = []
    bad_count: tuple[int, int] | None = None  # (line, n_fields) of the first wrong-length row
    prev_end = 0
    try:
        for row in reader:
            # The record starts on the line after the previous one ended (blank lines
            # included), so line numbers stay physical even across quoted newlines.
            line = prev_end + 1
            prev_end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line: skipped, but still counted
            if header is None:
                header, header_line = _check_header(where, line, row), line
                continue
            if len(row) != len(header):
                if bad_count is None:
                    bad_count = (line, len(row))
                continue
            records.append((line, row))
    except csv.Error as e:
        raise TraceError(f"{where}:{prev_end + 1}", f"malformed CSV: {e}") from None
    if header is None:
        raise TraceError(where, "empty file: no header and no data rows")
    field_count_problem = None
    if bad_count is not None:
        line, n = bad_count
        message = f"wrong number of fields: expected {len(header)} ({','.join(header)}), got {n}"
        field_count_problem = (line, message)
        if not records:
            raise TraceError(f"{where}:{line}", message)
    if not records:
        raise TraceError(where, f"no data rows (only a header on line {header_line})")
    return header, records, field_count_problem


def _check_header(where: str, line: int, row: list[str]) -> tuple[str, ...]:
    names = tuple(field.strip() for field in row)
    if names not in ACCEPTED_HEADERS:
        accepted = " or ".join(repr(",".join(h)) for h in ACCEPTED_HEADERS)
        raise TraceError(f"{where}:{line}", f"bad header {','.join(names)!r}: expected {accepted}")
    return names


MAX_RPS = 1e12  # far above any real service; keeps replica arithmetic inside int64
_EARLIEST, _LATEST = -2_208_988_800.0, 7_258_118_400.0  # 1900-01-01 and 2200-01-01, epoch seconds


def _parse_timestamps(texts: list[str]) -> np.ndarray:
    """Epoch seconds for each text (ISO-8601 or a plain number); NaN where unparseable."""
    series = pd.Series(texts, dtype=object)
    out = np.full(len(texts), np.nan)
    numeric = series.str.fullmatch(_NUMBER_RE).to_numpy(dtype=bool)
    if numeric.any():
        with np.errstate(over="ignore"):
            nums = np.array([texts[i] for i in np.flatnonzero(numeric)], dtype=np.float64)
        # "1e999" is a number but not a time; nor is anything outside years 1900-2200, which
        # dates cannot represent downstream (reports, plots).
        nums[~((nums >= _EARLIEST) & (nums <= _LATEST))] = np.nan
        out[numeric] = nums
    iso = ~numeric & (series != "").to_numpy(dtype=bool)
    if iso.any():
        # utc=True: offsets are converted to UTC and naive timestamps are taken as UTC.
        parsed = pd.to_datetime(series[iso], format="ISO8601", utc=True, errors="coerce")
        micros = parsed.dt.as_unit("us").astype("int64").to_numpy()
        secs = micros / 1e6  # exact for whole seconds
        secs[parsed.isna().to_numpy()] = np.nan
        out[iso] = secs
    return out


def _describe_bad_timestamp(text: str) -> str:
    if not text:
        return "empty timestamp"
    return (
        f"unparseable timestamp {text!r} "
        "(expected ISO-8601 such as 2024-01-01T00:00:00Z, or epoch seconds)"
    )


def _parse_values(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN for gaps, per-row problem text or '' when fine)."""
    n = len(texts)
    values = np.full(n, np.nan)
    problems = np.full(n, "", dtype=object)
    present = np.array([bool(t) for t in texts], dtype=bool)  # blank -> gap
    idx = np.flatnonzero(present)
    try:
        values[idx] = np.array([texts[i] for i in idx], dtype=np.float64)  # fast path
    except ValueError:
        for i in idx:  # slow path only when something is wrong: find which rows
            try:
                values[i] = float(texts[i])
            except ValueError:
                problems[i] = (
                    f"unparseable value {texts[i]!r} (expected a number of requests/s, or blank for a gap)"
                )
    # "nan"/"NaN" parse to NaN and are gaps. Comparisons with NaN are False, so gaps pass.
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        negative = values < 0
    for i in np.flatnonzero(infinite):
        problems[i] = f"infinite value {texts[i]!r}"
    for i in np.flatnonzero(negative & ~infinite):
        problems[i] = f"negative value {texts[i]!r} (rates must be >= 0)"
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(values) & (values > MAX_RPS)
    for i in np.flatnonzero(huge):
        problems[i] = f"value {texts[i]!r} is above {MAX_RPS:g} requests/s; rescale the trace (--scale-to)"
    return values, problems


def _first_problem(lines: np.ndarray, bad: np.ndarray, items, describe) -> tuple[int, str] | None:
    """(line, message) for the first row flagged in ``bad``, or None."""
    hits = np.flatnonzero(bad)
    if not len(hits):
        return None
    i = int(hits[0])
    return int(lines[i]), describe(items[i])


def _raise_first_row_problem(where: str, problems: list[tuple[int, str] | None]) -> None:
    """Raise the problem on the earliest line, so fixing a file top-down works."""
    found = [p for p in problems if p is not None]
    if found:
        line, message = min(found, key=lambda p: p[0])
        raise TraceError(f"{where}:{line}", message)


def _check_order(
    where: str,
    lines: np.ndarray,
    times: np.ndarray,
    codes: np.ndarray,
    names: tuple[str, ...],
    ts_text: list[str],
) -> None:
    """Within each workload, timestamps must strictly increase (file order)."""
    order = np.lexsort((np.arange(len(times)), codes))  # by workload, then file order
    same = codes[order][1:] == codes[order][:-1]
    diff = np.diff(times[order])
    duplicate = same & (np.abs(diff) <= GRID_TOLERANCE_S)
    backwards = same & (diff < -GRID_TOLERANCE_S)
    bad = np.flatnonzero(duplicate | backwards)
    if not len(bad):
        return
    # Report the offending row that comes first in the file.
    pos = bad[np.argmin(lines[order[bad + 1]])]
    prev, cur = int(order[pos]), int(order[pos + 1])
    name = names[codes[cur]]
    if duplicate[pos]:
        raise TraceError(
            f"{where}:{lines[cur]}",
            f"duplicate timestamp {ts_text[cur]} for workload {name!r} (first at line {lines[prev]})",
        )
    raise TraceError(
        f"{where}:{lines[cur]}",
        f"timestamp {ts_text[cur]} for workload {name!r} is out of order: it goes backwards "
        f"from the previous timestamp {ts_text[prev]} (line {lines[prev]})",
    )


def _infer_step(times: np.ndarray, codes: np.ndarray) -> float:
    """Most common positive spacing between consecutive timestamps of the same workload.

    Spacings are rounded to 1 ms before counting; ties go to the smallest spacing.
    Rows are in file order within each workload and already checked to increase.
    """
    order = np.lexsort((np.arange(len(times)), codes))
    same = codes[order][1:] == codes[order][:-1]
    diffs = np.diff(times[order])[same]
    diffs = diffs[diffs > GRID_TOLERANCE_S]
    if not len(diffs):
        return DEFAULT_STEP_S  # one timestamp per workload: nothing to infer from
    spacings, counts = np.unique(np.round(diffs, 3), return_counts=True)
    return float(spacings[np.argmax(counts)])


def _grid_index(
    where: str, lines: np.ndarray, times: np.ndarray, start: float, step: float, ts_text: list[str]
) -> np.ndarray:
    """Grid index k of every row; TraceError for the first row not on ``start + k*step``."""
    k = np.rint((times - start) / step)
    off = np.abs(times - (start + k * step)) > GRID_TOLERANCE_S
    hits = np.flatnonzero(off)
    if len(hits):
        i = int(hits[np.argmin(lines[hits])])
        raise TraceError(
            f"{where}:{lines[i]}",
            f"timestamp not on the {step:g} s grid: {ts_text[i]} (grid starts at {_iso(start)}; "
            f"the step is the most common spacing between timestamps)",
        )
    return k.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_trace(trace: Trace, path: str | os.PathLike) -> None:
    """Write ``trace`` as canonical long CSV ``timestamp,workload,value``.

    One row per grid point and workload (time-major, workloads in trace order). Timestamps are
    ISO-8601 UTC with ``Z`` (whole seconds, or microseconds if any timestamp has a fraction);
    values use ``repr`` (shortest exact float text) and gaps are written as blank values, so
    the full grid is kept and ``load_trace(path) == trace`` exactly (for timestamps that are
    whole microseconds).

    Raises ValueError for traces that :func:`load_trace` would refuse: negative or infinite
    values, a workload with no values, or names with surrounding whitespace.
    """
    values = trace.values
    with np.errstate(invalid="ignore"):
        if np.isinf(values).any() or (values < 0).any():
            raise ValueError("cannot write a trace with negative or infinite values")
    for j, name in enumerate(trace.workloads):
        if name != name.strip():
            raise ValueError(f"workload name {name!r} has surrounding whitespace")
        if np.isnan(values[:, j]).all():
            raise ValueError(f"workload {name!r} has no values (all NaN)")

    micros = np.rint(trace.timestamps * 1e6).astype(np.int64)
    unit = "s" if (micros % 1_000_000 == 0).all() else "us"
    stamps = np.datetime_as_string(micros.astype("datetime64[us]"), unit=unit, timezone="UTC")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("timestamp", "workload", "value"))
        for stamp, row in zip(stamps.tolist(), values.tolist()):
            writer.writerows(
                (stamp, name, "" if v != v else repr(v))  # v != v only for NaN
                for name, v in zip(trace.workloads, row)
            )


# --------------------------------------------------------------------------------------------
# Gap filling
# --------------------------------------------------------------------------------------------


def fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN gaps column by column; return ``(filled copy, mask of where NaN was)``.

    Interior NaN runs are linearly interpolated between the known values on either side;
    leading and trailing NaN runs hold the nearest known value. Known values are returned
    unchanged. Accepts 2-D ``[n_steps, n_columns]`` or 1-D arrays (one column). A column that
    is entirely NaN raises ValueError (there is nothing to fill from).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"fill_gaps expects a 1-D or 2-D array, got shape {arr.shape}")
    columns = arr.reshape(arr.shape[0], -1)  # 1-D -> one column (a view)
    mask = np.isnan(columns)
    filled = columns.copy()
    x = np.arange(columns.shape[0], dtype=np.float64)
    for j in range(columns.shape[1]):
        gaps = mask[:, j]
        if not gaps.any():
            continue
        if gaps.all():
            raise ValueError(f"column {j} is entirely NaN: nothing to fill gaps from")
        known = ~gaps
        # np.interp holds the first/last known value beyond the ends.
        filled[gaps, j] = np.interp(x[gaps], x[known], columns[known, j])
    return filled.reshape(arr.shape), mask.reshape(arr.shape)


# --------------------------------------------------------------------------------------------
# Synthetic LLM-serving demand
# --------------------------------------------------------------------------------------------

#: Monday 2026-01-05T00:00:00Z, the start of every synthetic trace.
SYNTHETIC_START = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()


def synthetic_llm_trace(
    days: float = 7,
    step_seconds: float = 60,
    seed: int = 0,
    workload: str = "llm-chat",
    peak_rps: float = 600.0,
) -> Trace:
    """A seeded, deterministic synthetic LLM-serving demand trace (one workload).

    Starts Monday 2026-01-05T00:00:00Z with ``ceil(days * 86400 / step_seconds)`` points.
    The rate is a product of:

    * **Diurnal cycle** (UTC): a trough around 03:00-05:00 at about 18% of the weekday
      daytime level, a rise through the morning (half-way near 08:30), a broad daytime
      plateau, a small evening bump (about +8% around 20:00) and a fall late in the evening
      (half-way near 22:30).
    * **Weekly cycle**: Saturday and Sunday daytime at about 60% of weekdays (smooth
      transitions around midnight; nights are about the same every day).
    * **Noise**: AR(1) in log space (std about 4%, correlation time 30 min) times small
      white noise (about 2%).
    * **Flash crowds**: 2-4 per day at uniformly random times, each a multiplicative rise of
      +40% to +150% over 1-3 minutes followed by exponential decay that has mostly died out
      after 10-40 minutes.

    The series is scaled so that its maximum equals ``peak_rps`` exactly (the maximum is
    usually the crest of a daytime burst, so the undisturbed weekday plateau sits somewhat
    lower). Values are >= 0 and never NaN. The same arguments give an identical array;
    different seeds give different arrays.
    """
    days, step, peak = float(days), float(step_seconds), float(peak_rps)
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0, got {days!r}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step_seconds must be > 0, got {step!r}")
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"peak_rps must be > 0, got {peak!r}")
    if not workload:
        raise ValueError("workload name must be non-empty")

    rng = np.random.default_rng(seed)
    n = max(1, math.ceil(days * 86400 / step - 1e-9))
    t = np.arange(n) * step  # seconds since the start (a Monday 00:00 UTC)

    level = _diurnal_weekly_level(t)
    noise = _ar1_log_noise(rng, n, step, sigma=0.04, tau_s=1800.0) * np.exp(rng.normal(0.0, 0.02, n))
    bursts = _flash_crowds(rng, t, days)
    raw = level * noise * bursts
    # x / x.max() is exactly 1.0 at the maximum, so the peak comes out exactly peak_rps.
    values = raw / raw.max() * peak

    source = f"synthetic-llm(seed={seed})"
    extras = [f"days={days:g}"] * (days != 7) + [f"step={step:g}"] * (step != 60)
    if extras:
        source = f"synthetic-llm(seed={seed}, {', '.join(extras)})"
    return Trace(
        source=source,
        start=SYNTHETIC_START,
        step_seconds=step,
        workloads=(workload,),
        values=values[:, None],
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _diurnal_weekly_level(t: np.ndarray) -> np.ndarray:
    """Deterministic demand level (weekday daytime ~= 1) at seconds ``t`` since Monday 00:00 UTC."""
    hours = (t / 3600.0) % 24.0
    low = 0.18  # night trough, as a fraction of the weekday daytime level
    # Hours since the 04:00 trough; the day profile is built on [0, 24) from there.
    u = (hours - 4.0) % 24.0
    day = _sigmoid((u - 4.5) / 1.0) * (1.0 - _sigmoid((u - 18.5) / 1.0))
    # The two sigmoids do not reach exactly 0 at u = 0 and u = 24; remove the small linear
    # mismatch so the profile is continuous across 04:00.
    day0 = _sigmoid(-4.5) * (1.0 - _sigmoid(-18.5))
    day24 = _sigmoid(19.5) * (1.0 - _sigmoid(5.5))
    day = np.clip(day - (day0 + (day24 - day0) * u / 24.0), 0.0, None)
    evening_bump = 0.08 * np.exp(-0.5 * ((hours - 20.0) / 1.2) ** 2)

    # Weekend indicator in [0, 1]: Saturday 00:00 to Monday 00:00, with ~1 h smooth edges.
    week_h = (t / 3600.0) % 168.0
    weekend = _sigmoid((week_h - 120.0) / 1.0) - _sigmoid((week_h - 168.0) / 1.0) + _sigmoid(-week_h / 1.0)
    weekend_daytime = 0.6  # weekend daytime level relative to weekdays
    scale = 1.0 - (1.0 - (weekend_daytime - low) / (1.0 - low)) * weekend
    return low + ((1.0 - low) * day + evening_bump) * scale


def _ar1_log_noise(rng: np.random.Generator, n: int, step: float, sigma: float, tau_s: float) -> np.ndarray:
    """exp(x) for a stationary AR(1) x with std ``sigma`` and correlation time ``tau_s``."""
    phi = math.exp(-step / tau_s)
    shocks = rng.normal(0.0, sigma * math.sqrt(1.0 - phi * phi), n).tolist()
    x = [0.0] * n
    prev = rng.normal(0.0, sigma)  # start in the stationary distribution
    for i, shock in enumerate(shocks):
        prev = phi * prev + shock
        x[i] = prev
    return np.exp(np.array(x))


def _flash_crowds(rng: np.random.Generator, t: np.ndarray, days: float) -> np.ndarray:
    """Multiplicative burst factor (>= 1) with 2-4 flash crowds per (started) day."""
    factor = np.ones_like(t)
    horizon = days * 86400.0
    for day in range(math.ceil(days)):
        for _ in range(int(rng.integers(2, 5))):
            t0 = day * 86400.0 + rng.uniform(0.0, 86400.0)
            amplitude = rng.uniform(0.4, 1.5)
            rise = rng.uniform(60.0, 180.0)
            decay = rng.uniform(600.0, 2400.0) / 3.0  # ~95% gone after 3 time constants
            if t0 >= horizon:
                continue  # a partial last day: this one would start after the end
            since = t - t0
            ramp = np.clip(since / rise, 0.0, 1.0)  # 0 before t0, linear up to 1 over `rise`
            tail = np.exp(-np.maximum(since - rise, 0.0) / decay)  # 1 until the crest, then decays
            shape = np.where(since < 0, 0.0, ramp * tail)
            factor += amplitude * shape
    return factor


def _iso(t: float) -> str:
    """ISO-8601 UTC text with Z for epoch seconds (for messages and repr)."""
    try:
        dt = datetime.fromtimestamp(t, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{t:g}"
    spec = "seconds" if dt.microsecond == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")
