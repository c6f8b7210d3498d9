"""A harness that runs a REAL Prometheus server (Debian's 2.42) for tests and benchmarks.

- `write_openmetrics` + `backfill`: history as OpenMetrics text, turned into TSDB blocks by `promtool`.
- `PrometheusServer`: `prometheus` on 127.0.0.1 over a data dir (backfilled or not), optionally scraping targets.
- `TraceExporter`: a live exporter whose gauges are functions of the scrape time.
- `HangingServer` / `ErrorServer`: misbehaving HTTP endpoints for client timeout / retry / auth tests.

Every server binds 127.0.0.1 only. Servers still running when the interpreter exits are killed (atexit).
"""

from __future__ import annotations

import atexit
import http.server
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
import requests
from requests.structures import CaseInsensitiveDict

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
requires_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="Debian's prometheus is not installed: ./dev test installs it"
)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when this returns; a tiny race remains until it is bound again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------------------
# History -> OpenMetrics -> TSDB blocks
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HistorySeries:
    """One series of history. NaN values are gaps (no sample written at that timestamp).

    kind="counter": the OpenMetrics family is `name` without a trailing "_total" and the samples are named
    `<family>_total` -- so "requests_total" and "requests" both give samples queryable as `requests_total`.
    Timestamps are seconds since the epoch (>= 0); they are stored rounded to the millisecond.
    """

    name: str
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray
    kind: str = "gauge"

    def __post_init__(self) -> None:
        ts = np.asarray(self.timestamps, dtype=float).reshape(-1)
        vs = np.asarray(self.values, dtype=float).reshape(-1)
        if ts.shape != vs.shape:
            raise ValueError(f"{self.name}: {ts.size} timestamps but {vs.size} values")
        if self.kind not in ("gauge", "counter"):
            raise ValueError(f"{self.name}: kind must be 'gauge' or 'counter', not {self.kind!r}")
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for key in self.labels:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"{self.name}: invalid label name {key!r}")
        if not np.all(np.isfinite(ts)) or (ts.size and ts.min() < 0):
            raise ValueError(f"{self.name}: timestamps must be finite and >= 0")
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "values", vs)
        object.__setattr__(self, "labels", {str(k): str(v) for k, v in self.labels.items()})

    @property
    def family(self) -> str:
        """The OpenMetrics metric family name (the `# TYPE` line's name)."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    @property
    def sample_name(self) -> str:
        """The name of the samples, i.e. what PromQL queries: `<family>_total` for counters, else `name`."""
        return self.family + "_total" if self.kind == "counter" else self.name


def escape_label_value(value: str) -> str:
    """OpenMetrics label value escaping: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_values(values: np.ndarray) -> list[str]:
    """Round-trip exact text for finite/inf floats (shortest repr); integers as integers (fast path)."""
    if values.size and np.all(np.abs(values) < 2.0**53) and np.all(values == np.trunc(values)):
        return list(map(str, values.astype(np.int64).tolist()))
    if np.isinf(values).any():
        return ["+Inf" if v == math.inf else "-Inf" if v == -math.inf else repr(v) for v in values.tolist()]
    return list(map(repr, values.tolist()))


def _format_timestamp_suffixes(ts_ms: np.ndarray) -> list[str]:
    """" <ts>\\n" per sample. Whole seconds are written as integers; otherwise the millisecond plus half a
    millisecond ("X.1235" for X.123 s): promtool truncates int64(ts * 1000), so the half keeps float rounding
    from landing one millisecond low."""
    if np.all(ts_ms % 1000 == 0):
        return [f" {t}\n" for t in (ts_ms // 1000).tolist()]
    return [f" {s}.{ms:03d}5\n" for s, ms in zip((ts_ms // 1000).tolist(), (ts_ms % 1000).tolist())]


def _series_block(s: HistorySeries) -> tuple[str, int]:
    keep = ~np.isnan(s.values)
    ts = s.timestamps[keep]
    vs = s.values[keep]
    if ts.size == 0:
        return "", 0
    ts_ms = np.round(ts * 1000.0).astype(np.int64)
    if np.any(np.diff(ts_ms) < 0):
        order = np.argsort(ts_ms, kind="stable")
        ts_ms, vs = ts_ms[order], vs[order]
    if np.any(np.diff(ts_ms) == 0):
        raise ValueError(f"{s.name}{s.labels}: duplicate timestamps (after rounding to the millisecond)")
    if s.labels:
        labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in s.labels.items())
        prefix = f"{s.sample_name}{{{labels}}} "
    else:
        prefix = f"{s.sample_name} "
    # prefix + "v1 t1\n" + prefix + "v2 t2\n" ...: one C-level join over preformatted strings.
    body = prefix + prefix.join(map(str.__add__, _format_values(vs), _format_timestamp_suffixes(ts_ms)))
    return body, int(ts.size)


def write_openmetrics(path: Path, series: Iterable[HistorySeries]) -> int:
    """Write `series` as OpenMetrics text that `promtool tsdb create-blocks-from openmetrics` accepts.

    One `# TYPE` per family (families in order of first appearance, their series grouped beneath), each
    series' samples sorted by time, timestamps in seconds, values exact (shortest repr), ending "# EOF".
    Returns the number of samples written (NaN values are gaps and are not written).
    """
    families: dict[str, list[HistorySeries]] = {}
    kinds: dict[str, str] = {}
    for s in series:
        if kinds.setdefault(s.family, s.kind) != s.kind:
            raise ValueError(f"metric family {s.family!r} is both a {kinds[s.family]} and a {s.kind}")
        families.setdefault(s.family, []).append(s)
    written = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 22) as f:
        for family, members in families.items():
            seen: set[tuple[tuple[str, str], ...]] = set()
            f.write(f"# TYPE {family} {kinds[family]}\n")
            for s in members:
                key = tuple(sorted(s.labels.items())) + ((("__name__", s.sample_name),))
                if key in seen:
                    raise ValueError(f"duplicate series {s.sample_name}{s.labels}")
                seen.add(key)
                block, n = _series_block(s)
                f.write(block)
                written += n
        f.write("# EOF\n")
    return written


def backfill(openmetrics: Path, data_dir: Path, max_block_duration: str = "24h") -> None:
    """`promtool tsdb create-blocks-from openmetrics` into `data_dir` (a Prometheus --storage.tsdb.path).

    --max-block-duration is a hidden flag of that command in 2.42 (not in --help, but honoured). promtool
    rounds it down to 2h * 3^k (24h -> 18h blocks) and re-parses the whole file once per block, so longer
    blocks backfill long histories faster (1,000 x 14 days at 1 min: ~120 s with 24h, ~30 s with 162h).
    Raises RuntimeError with the tail of promtool's stderr on failure.
    """
    if PROMTOOL is None:
        raise RuntimeError("promtool is not installed")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    cmd = [
        PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
        f"--max-block-duration={max_block_duration}", str(openmetrics), str(data_dir),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"promtool backfill of {openmetrics} failed (exit {proc.returncode}):\n{_tail(proc.stderr or proc.stdout, 20)}"
        )


# --------------------------------------------------------------------------------------------------------------
# The Prometheus server
# --------------------------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for obj in list(_LIVE):
        try:
            obj._emergency_stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class PrometheusServer:
    """`prometheus` on 127.0.0.1:PORT over `data_dir`, scraping `scrape_targets` as job `job` ("trace").

    The config and the log (prometheus.log: stdout+stderr, appended across restarts) live in a temporary
    work dir (`workdir`), removed by stop(). kill() keeps the port and the data dir for restart(); Prometheus
    replays its WAL, so samples scraped before a kill survive it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        retention: str = "100y",
        lookback_delta: str = "5m",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        job: str = "trace",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.scrape_targets = tuple(scrape_targets)
        self.scrape_interval = scrape_interval
        self.retention = retention
        self.lookback_delta = lookback_delta
        self.extra_args = tuple(extra_args)
        self.job = job
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._started_at = 0.0

    # ---- lifecycle ------------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        return self.workdir / "prometheus.log" if self.workdir else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def config(self) -> dict:
        global_cfg = {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval}
        cfg: dict[str, Any] = {"global": global_cfg, "scrape_configs": []}
        if self.scrape_targets:
            cfg["scrape_configs"].append({"job_name": self.job, "static_configs": [{"targets": list(self.scrape_targets)}]})
        return cfg

    def log_tail(self, lines: int = 40) -> str:
        if self._log_file:
            self._log_file.flush()
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines) if self.log_path else ""
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if PROMETHEUS is None:
            raise RuntimeError("prometheus is not installed")
        if self.running:
            raise RuntimeError(f"Prometheus is already running on {self.url}")
        if self.workdir is None or not self.workdir.exists():
            self.workdir = Path(tempfile.mkdtemp(prefix="prometheus-harness-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(json.dumps(self.config(), indent=2) + "\n")  # JSON is YAML
        cmd = [
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--query.lookback-delta={self.lookback_delta}",
            *self.extra_args,
        ]
        self._close_log()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"==== {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self._started_at = time.time()
        self._proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"prometheus exited with {code} while starting on {self.url}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"prometheus on {self.url} not ready after {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL and wait: an unclean crash. Port, data dir and work dir stay for restart()."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """SIGTERM, wait (SIGKILL after 10 s); removes the work dir (config and log)."""
        self._terminate()
        self._close_log()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        _LIVE.discard(self)

    def restart(self, timeout: float = 30.0) -> None:
        """Start again on the same port over the same data dir (stopping it first if it still runs)."""
        self._terminate()
        self.start(timeout)

    def _terminate(self) -> None:
        """SIGTERM the process if it runs, SIGKILL after 10 s, and forget it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _emergency_stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # pragma: no cover - safety net only
        try:
            self._emergency_stop()
        except Exception:  # noqa: BLE001
            pass

    # ---- queries (conveniences for tests) -------------------------------------------------------------------
    def api(self, path: str, params: Mapping[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """GET /api/v1/<path>; returns `data`, raises RuntimeError when the status is not "success"."""
        r = requests.get(f"{self.url}/api/v1/{path.lstrip('/')}", params=params, timeout=timeout)
        try:
            payload = r.json()
        except ValueError:
            raise RuntimeError(f"{r.status_code} from {r.url}: {r.text[:500]}") from None
        if payload.get("status") != "success":
            raise RuntimeError(f"{r.status_code} from {r.url}: {payload.get('errorType')}: {payload.get('error')}")
        return payload["data"]

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """Instant query; the `result` list (vector: [{"metric": {...}, "value": [ts, "v"]}, ...])."""
        params: dict[str, Any] = {"query": expr}
        if time is not None:
            params["time"] = time
        return self.api("query", params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """Range query; the `result` matrix ([{"metric": {...}, "values": [[ts, "v"], ...]}, ...])."""
        return self.api("query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]

    def wait_for_scrape(self, job: str = "trace", timeout: float = 30.0) -> None:
        """Until `up{job=...} == 1` for every scrape target, from a scrape by this process (samples replayed
        from before a kill do not count). RuntimeError after `timeout`. Prometheus applies new scrape targets
        about 5 s after it starts, so expect that long."""
        expected = len(self.scrape_targets) if job == self.job else 1
        if expected == 0:
            raise ValueError("this server scrapes no targets")
        up = f'up{{job="{job}"}}'
        fresh = f"{up} and (timestamp({up}) >= {self._started_at:.3f})"
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.query(fresh)
                if len(last) >= expected and all(float(r["value"][1]) == 1.0 for r in last):
                    return
            except (requests.RequestException, RuntimeError) as e:
                last = e
            if not self.running:
                raise RuntimeError(f"prometheus is not running:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job!r} not scraped (up == 1 for {expected} targets) after {timeout:g} s: {last}")
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------------------------
# A live exporter
# --------------------------------------------------------------------------------------------------------------


class _TraceCollector:
    def __init__(self, metrics: Mapping[str, Callable[[float], float]], labels: Mapping[str, str], timestamps: bool):
        self.metrics = dict(metrics)
        self.labels = dict(labels)
        self.timestamps = timestamps
        self.scrapes = 0

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        now = time.time()
        exposed = None
        if self.timestamps:
            ms = round(now * 1000.0)
            now = ms / 1000.0
            # Prometheus and the client both truncate `ts * 1000`; half a millisecond more stores exactly `ms`.
            exposed = (ms + 0.5) / 1000.0
        self.scrapes += 1
        names, values = list(self.labels), list(self.labels.values())
        for name, fn in self.metrics.items():
            value = float(fn(now))
            if math.isnan(value):
                continue  # absent from this scrape: Prometheus marks the series stale
            family = GaugeMetricFamily(name, f"trace metric {name}", labels=names)
            family.add_metric(values, value, timestamp=exposed)
            yield family


class TraceExporter:
    """A live exporter on 127.0.0.1 whose metrics follow a function of time, scraped by PrometheusServer.

    One gauge per name; at each scrape every callable is called with the same time.time(), so a value is a
    pure function of the scrape time. A callable returning NaN leaves its series out of that scrape.
    With timestamps=True the samples carry that time (rounded to the ms) explicitly and Prometheus stores it,
    so value == f(sample timestamp) exactly (note: Prometheus does not stale-mark series with explicit
    timestamps, so NaN gaps then only end by the lookback delta).
    """

    def __init__(
        self,
        metrics: Mapping[str, Callable[[float], float]],
        labels: Mapping[str, str] | None = None,
        port: int | None = None,
        *,
        timestamps: bool = False,
    ) -> None:
        from prometheus_client import CollectorRegistry

        for name in metrics:
            if not _METRIC_NAME.match(name):
                raise ValueError(f"invalid metric name {name!r}")
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = _TraceCollector(metrics, labels or {}, timestamps)
        self.registry.register(self.collector)
        self.port = port if port is not None else free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.target}/metrics"
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> TraceExporter:
        from prometheus_client import start_http_server

        if self._server is not None:
            raise RuntimeError(f"exporter already running on {self.target}")
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> TraceExporter:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------
# Misbehaving servers
# --------------------------------------------------------------------------------------------------------------


class HangingServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (to test client timeouts)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)  # held open, never read from, never answered

    def start(self) -> HangingServer:
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept_loop, name="HangingServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for conn in self.connections:
            conn.close()
        self.connections.clear()
        self._sock.close()

    def __enter__(self) -> HangingServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class ErrorServer:
    """A tiny HTTP server on 127.0.0.1 that answers every request with a given status, body and headers.

    `status`: an int, or a sequence -- one status per successive request, the last one repeating.
    `body`: a dict (sent as JSON, Content-Type application/json) or a str (text/plain); `bodies`, if given,
    is likewise one body per successive request, the last repeating. `headers` go on every response
    (e.g. {"Retry-After": "1"}) and override the default Content-Type.
    `requests` records each request received, in order, as a dict: method, path (without the query string),
    query (dict, last value wins), query_list (list of (key, value) pairs), raw_query, headers
    (case-insensitive dict), body (bytes), form (dict, for application/x-www-form-urlencoded bodies).
    """

    def __init__(
        self,
        status: int | Sequence[int],
        body: dict | str,
        headers: Mapping[str, str] | None = None,
        *,
        bodies: Sequence[dict | str] | None = None,
    ) -> None:
        self.statuses = [status] if isinstance(status, int) else list(status)
        if not self.statuses:
            raise ValueError("at least one status")
        self.bodies = list(bodies) if bodies else [body]
        self.headers = dict(headers or {})
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                owner._respond(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:  # silence
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def _reply_for(self, index: int) -> _Reply:
        status = self.statuses[min(index, len(self.statuses) - 1)]
        body = self.bodies[min(index, len(self.bodies) - 1)]
        if isinstance(body, (bytes, bytearray)):
            raw, ctype = bytes(body), "application/octet-stream"
        elif isinstance(body, str):
            raw, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            raw, ctype = json.dumps(body).encode(), "application/json"
        headers = {"Content-Type": ctype}
        for k, v in self.headers.items():
            headers = {hk: hv for hk, hv in headers.items() if hk.lower() != k.lower()}
            headers[k] = v
        return _Reply(status, raw, headers)

    def _respond(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        form: dict[str, str] = {}
        if "application/x-www-form-urlencoded" in (h.headers.get("Content-Type") or ""):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        record = {
            "method": h.command,
            "path": parts.path,
            "query": dict(pairs),
            "query_list": pairs,
            "raw_query": parts.query,
            "headers": CaseInsensitiveDict(h.headers.items()),
            "body": body,
            "form": form,
        }
        with self._lock:
            index = len(self.requests)
            self.requests.append(record)
        reply = self._reply_for(index)
        h.send_response(reply.status)
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(reply.body)

    def start(self) -> ErrorServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ErrorServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "PROMETHEUS",
    "PROMTOOL",
    "ErrorServer",
    "HangingServer",
    "HistorySeries",
    "PrometheusServer",
    "TraceExporter",
    "backfill",
    "escape_label_value",
    "free_port",
    "requires_prometheus",
    "write_openmetrics",
]
