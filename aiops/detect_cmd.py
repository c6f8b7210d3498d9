"""``aiops detect``: anomalous windows in a table of metrics, and which metrics explain each one.

The command reads a metrics CSV (and optionally a training CSV of normal behaviour), checks every
cell before fitting (one line naming the file, line and column of the first problem, exit code 2,
nothing written), fits :class:`aiops.windows.WindowDetector`, prints a table of windows with their
top metrics and, with ``--json``, writes the windows, the threshold and the inputs (written to a
temporary file and renamed, so a failure never leaves half a file).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from simulations.errors import InputError, read_text

DETECT_HELP = """Find anomalous windows in a table of metrics and rank the metrics behind each.

METRICS is a CSV with a time column and one column per metric: either `timestamp` (ISO-8601,
naive = UTC, or epoch seconds) or `t` (an integer row index), then numeric columns. A blank (or
`nan`) cell is a gap: that metric is left out at that time, never read as zero. Rows must be in
strictly increasing time order.

Each metric is compared with its training behaviour (its median, or its median at the same time of
day when the data has a daily-like cycle), robustly standardised and calibrated; the scores of the
metrics are combined per timestamp, and 1.0 is the threshold: the 99.5 % quantile of the training
scores. Consecutive timestamps above it form a window; a window's metrics are ranked by their
share of its score. By construction about 0.5 % of normal timestamps score above 1.0, so a long
table also shows short windows peaking near 1: --threshold 1.5 or --min-window 3 keeps the strong
ones.

Without --train the detector is fitted on METRICS itself, then again without the values more than
6 robust standard deviations off, so that an incident cannot set its own threshold (give normal
history with --train when you have it: it is the better baseline). An auto-found cycle within 3 % of a day or a week is
taken as exactly that. With a `t` column, the training rows' t and the metrics rows' t should count on from each
other (training 0..N-1, then N...), so the time of day lines up.

\b
Examples:
  aiops detect --metrics gpu_metrics.csv
  aiops detect --metrics today.csv --train last_month.csv --json out/windows.json
  aiops detect --metrics today.csv --train last_month.csv --threshold 1.5 --min-window 3
"""

NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MISSING = {"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"}


@dataclass(frozen=True)
class MetricsTable:
    """A checked CSV: times (unix seconds, or row indices for ``t``), metric names and values."""

    path: str
    time_column: str  # "timestamp" or "t"
    times: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray  # rows x metrics, NaN = gap

    def label(self, value: float) -> str | int:
        """A time as the user wrote it: ISO-8601 UTC for timestamps, an integer for ``t``."""
        if self.time_column == "t":
            return int(value)
        import pandas as pd

        return pd.Timestamp(value, unit="s", tz="UTC").isoformat().replace("+00:00", "Z")


def read_metrics(path: str) -> MetricsTable:
    """Read and check a metrics CSV; :class:`InputError` (``FILE:LINE: ...``) for anything unusable."""
    where = str(path)
    text = read_text(where, InputError, "CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    prev_end = 0
    try:
        for row in reader:
            line, prev_end = prev_end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in row]
                _check_header(where, line, header)
                continue
            if len(row) != len(header):
                raise InputError(f"{where}:{line}", f"{len(row)} fields, but the header has {len(header)}")
            rows.append((line, [c.strip() for c in row]))
    except csv.Error as exc:
        raise InputError(f"{where}:{reader.line_num}", f"not valid CSV: {exc}") from None
    if header is None:
        raise InputError(where, "empty file: expected a header such as `timestamp,gpu_util,mem_used`")
    if not rows:
        raise InputError(where, "no data rows after the header")
    time_column = "timestamp" if "timestamp" in header else "t"
    tcol = header.index(time_column)
    metric_cols = [j for j in range(len(header)) if j != tcol]
    lines = [line for line, _ in rows]
    columns = list(zip(*(r for _, r in rows)))
    times = _parse_times(where, lines, columns[tcol], time_column)
    values = np.column_stack([_parse_column(where, lines, header[j], columns[j]) for j in metric_cols])
    _check_order(where, lines, times, columns[tcol], time_column)
    return MetricsTable(path=where, time_column=time_column, times=times,
                        names=tuple(header[j] for j in metric_cols), values=values)


def _parse_times(where: str, lines: list[int], texts, column: str) -> np.ndarray:
    """Vectorised; the first unusable cell is re-read by :func:`_parse_time`, which says why."""
    import pandas as pd

    series = pd.Series(texts, dtype=object)
    out = np.full(len(texts), np.nan)
    if column == "t":
        ok = series.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool)
        out[ok] = pd.to_numeric(series[ok]).to_numpy(dtype=float)
    else:
        numeric = series.str.fullmatch(NUMBER.pattern).to_numpy(dtype=bool)
        out[numeric] = pd.to_numeric(series[numeric]).to_numpy(dtype=float)
        out[numeric & ~((out >= 0) & (out < 7.3e9))] = np.nan  # years 1970-2200
        iso = ~numeric & (series != "").to_numpy(dtype=bool)
        if iso.any():
            parsed = pd.to_datetime(series[iso], format="ISO8601", utc=True, errors="coerce")
            secs = parsed.dt.as_unit("us").astype("int64").to_numpy() / 1e6
            secs[parsed.isna().to_numpy()] = np.nan
            out[iso] = secs
    for i in np.flatnonzero(np.isnan(out)):  # raises at the first truly bad one
        out[i] = _parse_time(where, lines[i], texts[i], column)
    return out


def _parse_column(where: str, lines: list[int], name: str, texts) -> np.ndarray:
    """One metric column, vectorised; the first unusable cell is re-read by :func:`_parse_value`."""
    import pandas as pd

    series = pd.Series(texts, dtype=object)
    missing = series.isin(MISSING).to_numpy(dtype=bool)
    values = pd.to_numeric(series.where(~missing, "nan"), errors="coerce").to_numpy(dtype=float)
    suspect = (np.isnan(values) & ~missing) | np.isinf(values)
    for i in np.flatnonzero(suspect):  # raises at the first truly bad one
        values[i] = _parse_value(where, lines[i], name, texts[i])
    return values


def _check_header(where: str, line: int, header: list[str]) -> None:
    if "timestamp" in header and "t" in header:
        raise InputError(f"{where}:{line}", "both a `timestamp` and a `t` column; keep one time column")
    if "timestamp" not in header and "t" not in header:
        shown = ", ".join(repr(h) for h in header[:8]) + (" ..." if len(header) > 8 else "")
        raise InputError(f"{where}:{line}", f"no `timestamp` or `t` column (found {shown})")
    for j, name in enumerate(header):
        if not name:
            raise InputError(f"{where}:{line}", f"column {j + 1} has no name")
        if header.index(name) != j:
            raise InputError(f"{where}:{line}", f"column {name!r} appears twice")
    if len(header) < 2:
        raise InputError(f"{where}:{line}", "no metric columns: expected the time column and at least one metric")


def _parse_time(where: str, line: int, text: str, column: str) -> float:
    if column == "t":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise InputError(f"{where}:{line}", f"column 't': {text!r} is not an integer row index")
        return float(int(text))
    if not text:
        raise InputError(f"{where}:{line}", "column 'timestamp': empty")
    if NUMBER.fullmatch(text):
        value = float(text)
        if not (0 <= value < 7.3e9):  # years 1970-2200
            raise InputError(f"{where}:{line}", f"column 'timestamp': {text!r} is not a plausible epoch-seconds time")
        return value
    import pandas as pd

    try:
        stamp = pd.to_datetime(text, format="ISO8601", utc=True)
    except (ValueError, OverflowError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise InputError(f"{where}:{line}", f"column 'timestamp': {text!r} is neither ISO-8601 "
                                            "(e.g. 2024-05-01T12:00:00Z) nor epoch seconds")
    return stamp.value / 1e9


def _parse_value(where: str, line: int, column: str, text: str) -> float:
    if text in MISSING:
        return math.nan
    if not NUMBER.fullmatch(text):
        raise InputError(f"{where}:{line}", f"column {column!r}: {text!r} is not a number (leave it blank for a gap)")
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"{where}:{line}", f"column {column!r}: {text!r} is too large to be a finite number")
    return value


def _check_order(where: str, lines: list[int], times: np.ndarray, texts: list[str], column: str) -> None:
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if not len(bad):
        return
    i = int(bad[0]) + 1
    if steps[i - 1] == 0:
        raise InputError(f"{where}:{lines[i]}", f"column {column!r}: duplicate time {texts[i]!r} "
                                                f"(also on line {lines[i - 1]})")
    raise InputError(f"{where}:{lines[i]}", f"column {column!r}: {texts[i]!r} comes before the previous row's "
                                            f"{texts[i - 1]!r}; rows must be sorted by time")


def _aligned_train(train: MetricsTable, metrics: MetricsTable) -> np.ndarray:
    """The training values in the metrics table's column order; InputError when they differ."""
    if train.time_column != metrics.time_column:
        raise InputError(train.path, f"has a `{train.time_column}` column but {metrics.path} has "
                                     f"`{metrics.time_column}`; use the same kind of time in both")
    missing = [n for n in metrics.names if n not in train.names]
    extra = [n for n in train.names if n not in metrics.names]
    if missing or extra:
        parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + \
                ([f"extra {', '.join(map(repr, extra))}"] if extra else [])
        raise InputError(train.path, f"columns differ from {metrics.path}: {'; '.join(parts)}")
    return train.values[:, [train.names.index(n) for n in metrics.names]]


def _season(value: str, time_column: str) -> str | float:
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    if text in ("none", "0", "off"):
        return 0.0
    if time_column == "t":
        if not re.fullmatch(r"\d+", text):
            raise InputError("--season", f"{value!r}: with a `t` column give the cycle in rows (e.g. 288), auto or none")
        return float(text)
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*(s|m|min|h|d|w)", text)
    if match is None or float(match.group(1)) <= 0:
        raise InputError("--season", f"{value!r}: expected auto, none or a cycle length such as 1d, 12h or 1w")
    return float(match.group(1)) * _UNITS[match.group(2)]


@click.command(help=DETECT_HELP)
@click.option("--metrics", "metrics_path", metavar="FILE.csv", required=True,
              help="The table to search: a `timestamp` or `t` column, then one numeric column per metric.")
@click.option("--train", "train_path", metavar="FILE.csv",
              help="Normal history with the same columns, to fit on (default: fit on --metrics itself).")
@click.option("--json", "json_path", metavar="OUT", help="Write the windows, the threshold and the inputs as JSON.")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True, max=1e6), default=1.0, show_default=True,
              help="Flag timestamps scoring at least this; 1.0 is the 99.5 % quantile of the training scores.")
@click.option("--min-window", "min_window", type=click.IntRange(min=1, max=1_000_000), default=1, show_default=True,
              help="Report only windows at least this many timestamps long.")
@click.option("--gap", type=click.IntRange(min=0, max=1_000_000), default=2, show_default=True,
              help="Normal timestamps allowed inside one window before it is split in two.")
@click.option("--season", default="auto", show_default=True, metavar="auto|none|LENGTH",
              help="The cycle to follow: found in the training data (auto), none, or its length "
                   "(a duration such as 1d with timestamps, a number of rows with `t`).")
@click.option("--top", type=click.IntRange(min=1, max=100), default=3, show_default=True,
              help="Metrics shown per window in the table (the JSON has all of them).")
@click.option("--show", type=click.IntRange(min=1, max=100_000), default=20, show_default=True,
              help="Windows shown in the table: when there are more, those with the highest peaks "
                   "(the JSON has all of them).")
def detect(**options) -> None:
    from aiops.cli import _input_errors  # here, not at import: aiops.cli imports this module

    _input_errors(_detect)(**options)


def _detect(metrics_path, train_path, json_path, threshold, min_window, gap, season, top, show) -> None:
    from rich.console import Console

    from aiops.cli import _output_path
    from aiops.windows import MIN_TRAIN_ROWS, WindowDetector, WindowSettings

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    json_path = _output_path("--json", json_path)
    metrics = read_metrics(metrics_path)
    train = read_metrics(train_path) if train_path else None
    train_values = _aligned_train(train, metrics) if train else metrics.values
    fit_on = train if train else metrics
    if len(train_values) < MIN_TRAIN_ROWS:
        raise InputError(fit_on.path, f"{len(train_values)} rows: at least {MIN_TRAIN_ROWS} are needed to fit on")
    empty = [n for j, n in enumerate(metrics.names) if not np.isfinite(train_values[:, j]).any()]
    for name in empty:
        click.echo(f"warning: {fit_on.path}: column {name!r} has no values; it is not scored", err=True)
    settings = WindowSettings(margin=threshold, gap=gap, min_window=min_window,
                              season=_season(season, metrics.time_column),
                              snap_to=(86400.0, 604800.0) if metrics.time_column == "timestamp" else ())
    detector = WindowDetector(settings)
    try:
        if train is None:
            detector.fit_self(metrics.values, metrics.names, metrics.times)
        else:
            detector.fit(train_values, metrics.names, train.times)
    except ValueError as exc:
        raise InputError(fit_on.path, str(exc)) from None
    result = detector.detect(metrics.values, metrics.times)

    span = f"{len(metrics.times)} rows, {metrics.label(metrics.times[0])} to {metrics.label(metrics.times[-1])}"
    cycle = "no cycle followed" if not detector.bins else \
        f"cycle of {detector.bins} rows followed by {int(detector.seasonal.sum())} of {len(metrics.names)} metrics"
    console.print(f"{metrics.path}: {len(metrics.names)} metrics, {span}; fitted on "
                  f"{'itself' if train is None else train.path} ({len(train_values)} rows), {cycle}", highlight=False,
                  soft_wrap=True)
    if result.windows:
        console.print(render_table(result, metrics, top, show))
    shown = f" (the {show} highest peaks shown)" if len(result.windows) > show else ""
    console.print(f"{len(result.windows)} anomalous window(s) at threshold {threshold:g}{shown}", highlight=False)
    if json_path:
        doc = to_document(result, detector, metrics, train, threshold)
        _write_atomic(json_path, doc)
        console.print(f"wrote {json_path}", highlight=False)


def render_table(result, metrics: MetricsTable, top: int, show: int = 20):
    """The windows in time order, numbered; at most ``show`` of them, the highest peaks."""
    from rich.table import Table

    table = Table(title="anomalous windows", title_justify="left")
    for header in ("#", "start", "end", "rows", "peak score", "top metrics (share of the window's score)"):
        table.add_column(header, justify="left" if header in ("start", "end") or header.startswith("top") else "right")
    numbered = list(enumerate(result.windows, 1))
    kept = sorted(sorted(numbered, key=lambda iw: -iw[1].peak_score)[:show], key=lambda iw: iw[0])
    for i, w in kept:
        named = ", ".join(f"{name} {100 * share:.0f}%" for name, share in w.metrics[:top])
        table.add_row(str(i), str(metrics.label(w.start)), str(metrics.label(w.end)), str(w.end_index - w.start_index + 1),
                      f"{w.peak_score:.2f}", named, style="bold red" if w.peak_score >= 3 else None)
    return table


def to_document(result, detector, metrics: MetricsTable, train: MetricsTable | None, threshold: float) -> dict:
    """The --json document (schema_version 1)."""
    from aiops.windows import to_findings

    windows = []
    for w in result.windows:
        item = w.to_json()
        item.update(start=metrics.label(w.start), end=metrics.label(w.end), peak_at=metrics.label(w.peak_at),
                    rows=w.end_index - w.start_index + 1)
        windows.append(item)
    settings = asdict(detector.settings)
    return {
        "schema_version": 1,
        "command": "detect",
        "inputs": {"metrics": metrics.path, "train": train.path if train else None, "time_column": metrics.time_column,
                   "rows": len(metrics.times), "train_rows": len(train.times) if train else len(metrics.times),
                   "columns": list(metrics.names)},
        "threshold": {"score": threshold, "raw": detector.threshold,
                      "rule": f"{threshold:g} x the {100 * detector.settings.quantile:g} % quantile of the training scores"},
        "season": {"rows": detector.bins, "length": detector.season,
                   "metrics": [n for n, s in zip(metrics.names, detector.seasonal) if s]},
        "settings": settings,
        "windows": windows,
        "findings": [f.to_json() for f in to_findings(result.windows)],
    }


def _write_atomic(path: str, doc: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it: never half a file."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2, allow_nan=False)
                fh.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError("--json", f"cannot write {path!r}: {exc.strerror or exc}") from None
