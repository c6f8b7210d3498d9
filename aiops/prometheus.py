"""The Prometheus adapter: PromQL in, :class:`~forecasters.series.Series` out.

Works against Prometheus, Thanos Query and Mimir (anything serving ``/api/v1/query`` and
``/api/v1/query_range``), through ``prometheus-api-client`` on a ``requests`` session that
carries the auth, TLS and retry settings of ``prometheus:`` in the config.

Errors, one hierarchy (each names the query and the server):

* :class:`PrometheusError`: the base; an :class:`~simulations.errors.InputError`, so the CLI
  prints it on one line;
* :class:`PromQLError`: the server refused the query (HTTP 400 or 422): bad PromQL, or an
  expression it cannot evaluate; carries the server's own message. Retrying will not help.
* :class:`PrometheusUnavailable`: no answer (connection refused, timeout) or a server error
  (5xx, 429) after every retry. The agent holds: it never scales down on it.
* :class:`PrometheusRefused`: 401/403: the credentials are wrong or lack permission.

Range queries longer than ``max_points_per_query`` points per series (Prometheus refuses more
than 11,000) are split into consecutive chunks on one step grid and joined. A step where the
server returns no sample (a gap longer than the 5-minute lookback, a stale series) is NaN.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np

from forecasters.series import Series
from simulations.config import PrometheusConfig
from simulations.errors import InputError

__all__ = [
    "PrometheusError",
    "PrometheusRefused",
    "PrometheusSource",
    "PrometheusUnavailable",
    "PromQLError",
    "RangeResult",
    "Sample",
]

RETRY_STATUSES = (429, 500, 502, 503, 504)


class PrometheusError(InputError):
    """A query that did not give data; ``server`` and ``query`` say which, ``message`` why."""

    def __init__(self, server: str, query: str, message: str, status: int | None = None) -> None:
        self.server, self.query, self.message, self.status = server, query, message, status
        shown = query if len(query) <= 200 else query[:197] + "..."
        super().__init__(f"prometheus {server}", f"{message} (query: {shown})")


class PromQLError(PrometheusError):
    """HTTP 400/422: the server refused the query; ``message`` is its explanation."""


class PrometheusUnavailable(PrometheusError):
    """No usable answer after every retry: connection refused, timeout, HTTP 5xx or 429."""


class PrometheusRefused(PrometheusError):
    """HTTP 401/403: authentication failed or the identity may not query."""


class _HTTPFailure(Exception):
    """Raised from the session's response hook, so a status is never mistaken for data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels, the sample's time and value."""

    labels: Mapping[str, str]
    timestamp: float
    value: float


@dataclass(frozen=True)
class RangeResult:
    """One series of a range query on the requested step grid (NaN where it had no sample)."""

    labels: Mapping[str, str]
    series: Series


def series_key(labels: Mapping[str, str]) -> str:
    """A readable, stable key for a label set: ``name{a="1",b="2"}``, or ``{}`` for an aggregate."""
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _secret_from_env(variable: str, field: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"prometheus.{field}", f"environment variable {variable} is not set or empty")
    return value.strip()


class PrometheusSource:
    """Instant and range queries against one Prometheus-compatible server.

    ``url`` overrides ``settings.url``. ``clock`` gives "now" (injected in tests). Thread-safe for
    the parallel history pulls of :meth:`range_many`.
    """

    def __init__(self, settings: PrometheusConfig | None = None, url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        import requests
        from prometheus_api_client import PrometheusConnect
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.settings = settings = settings or PrometheusConfig()
        url = (url or settings.url or "").rstrip("/")
        if not url:
            raise InputError("prometheus.url", "no Prometheus URL: set prometheus.url in the config or pass --prometheus URL")
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            raise InputError("--prometheus", f"not an http(s) URL: {url!r}")
        self.url = url
        self.clock = clock
        session = requests.Session()
        session.verify = False if settings.insecure_skip_verify else (settings.ca_file or True)
        if settings.ca_file and not os.path.isfile(settings.ca_file):
            raise InputError("prometheus.ca_file", f"no such file: {settings.ca_file}")
        if settings.basic_auth_username:
            password = _secret_from_env(settings.basic_auth_password_env, "basic_auth_password_env") \
                if settings.basic_auth_password_env else ""
            session.auth = (settings.basic_auth_username, password)
        self._token = _secret_from_env(settings.bearer_token_env, "bearer_token_env") if settings.bearer_token_env else None
        if settings.bearer_token_file and not os.path.isfile(settings.bearer_token_file):
            raise InputError("prometheus.bearer_token_file", f"no such file: {settings.bearer_token_file}")
        session.hooks["response"].append(self._check_response)
        retry = Retry(total=settings.retries, connect=settings.retries, read=settings.retries,
                      status=settings.retries, backoff_factor=settings.backoff_seconds,
                      status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
                      respect_retry_after_header=True, raise_on_status=False)
        pool = max(settings.workers, 1)
        self._client = PrometheusConnect(url=url, headers=None, retry=retry, session=session,
                                         timeout=settings.timeout_seconds)
        # PrometheusConnect mounts its own adapter with our retry; widen its pool for the workers.
        session.mount(url, HTTPAdapter(max_retries=retry, pool_connections=pool, pool_maxsize=pool))
        self._session = session

    # -- requests -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json",
                   "Accept-Encoding": "gzip" if self.settings.compress_responses else "identity", **self.settings.headers}
        token = self._token
        if self.settings.bearer_token_file:
            try:  # re-read each time: projected service-account tokens rotate
                with open(self.settings.bearer_token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise InputError("prometheus.bearer_token_file", f"cannot read {self.settings.bearer_token_file}: {exc.strerror}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @staticmethod
    def _check_response(response, *args, **kwargs):
        if response.status_code < 400:
            return response
        message = ""
        try:
            body = response.json()
            message = str(body.get("error") or body.get("message") or "")
            if body.get("errorType"):
                message = f"{body['errorType']}: {message}"
        except ValueError:
            message = response.text.strip().splitlines()[0][:300] if response.text.strip() else ""
        raise _HTTPFailure(response.status_code, message or response.reason or "no message")

    def _call(self, query: str, fn):
        """Run one HTTP call, turning every failure into this module's errors."""
        import requests

        self._client.headers = self._headers()
        try:
            return fn()
        except _HTTPFailure as exc:
            status = exc.status
            if status in (400, 422):
                raise PromQLError(self.url, query, f"bad query (HTTP {status}): {exc.message}", status) from None
            if status in (401, 403):
                raise PrometheusRefused(self.url, query, f"HTTP {status}: {exc.message} (check the token or credentials)", status) from None
            if status == 404:
                raise PrometheusUnavailable(self.url, query, f"HTTP 404: {exc.message}: is {self.url} a Prometheus API base URL?", status) from None
            raise PrometheusUnavailable(self.url, query, f"HTTP {status}: {exc.message}"
                                        f"{'' if status not in RETRY_STATUSES else f' after {self.settings.retries} retries'}", status) from None
        except requests.exceptions.Timeout:
            raise PrometheusUnavailable(self.url, query, f"timed out after {self.settings.timeout_seconds:g} s "
                                        f"({self.settings.retries} retries)") from None
        except requests.exceptions.SSLError as exc:
            raise PrometheusUnavailable(self.url, query, f"TLS error: {_reason(exc)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.RetryError) as exc:
            text = _reason(exc)
            if "timed out" in text.lower() or "timeout" in text.lower():
                text = f"timed out after {self.settings.timeout_seconds:g} s ({self.settings.retries} retries)"
            raise PrometheusUnavailable(self.url, query, f"unreachable: {text}") from None
        except ValueError as exc:  # a 200 whose body is not the API's JSON
            raise PrometheusUnavailable(self.url, query, f"not a Prometheus API answer: {exc}") from None

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        """The query's value per series at ``at`` (default now)."""
        params = {} if at is None else {"time": f"{at:.3f}"}
        result = self._call(query, lambda: self._client.custom_query(query, params=params))
        out = []
        for item in result or ():
            ts, value = item.get("value", (math.nan, "NaN"))
            out.append(Sample(dict(item.get("metric", {})), float(ts), _float(value)))
        return out

    def range(self, query: str, start: float, end: float, step: float, align: bool = True) -> list[RangeResult]:
        """The query over ``[start, end]`` at ``step`` seconds, one result per series.

        With ``align`` (the default) ``start`` is aligned down to a multiple of ``step`` so
        consecutive pulls share a grid; without it the grid starts at ``start`` as given.
        Ranges over ``max_points_per_query`` points are split into chunks.
        """
        if not (step > 0 and math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"bad range: start {start}, end {end}, step {step}")
        start, n = _grid(start, end, step, align)
        per = self.settings.max_points_per_query
        grids: dict[tuple, tuple[dict, np.ndarray]] = {}
        for first in range(0, n, per):
            count = min(per, n - first)
            lo = start + first * step
            hi = lo + (count - 1) * step
            result = self._call(query, lambda lo=lo, hi=hi: self._client.custom_query_range(
                query, _utc(lo), _utc(hi), _step_text(step)))
            for item in result or ():
                labels = dict(item.get("metric", {}))
                key = tuple(sorted(labels.items()))
                if key not in grids:
                    grids[key] = (labels, np.full(n, np.nan))
                _place(grids[key][1], item.get("values") or (), start, step)
        return [RangeResult(labels, Series(series_key(labels), start, step, values))
                for labels, values in grids.values()]

    def range_series(self, key: str, query: str, start: float, end: float, step: float) -> Series:
        """A query that must give at most one series (an aggregate such as ``sum(...)``), as
        :class:`Series` ``key``; no series at all gives all-NaN (nothing recorded)."""
        results = self.range(query, start, end, step)
        if len(results) > 1:
            raise PromQLError(self.url, query, f"gave {len(results)} series where one was expected "
                              f"(first two: {results[0].series.key}, {results[1].series.key}); aggregate it, e.g. sum(...)")
        if not results:
            start, n = _grid(start, end, step, align=True)
            return Series(key, start, step, np.full(n, np.nan))
        s = results[0].series
        return Series(key, s.start, s.step, s.values)

    def range_many(self, queries: Mapping[str, str], start: float, end: float, step: float,
                   progress: Callable[[int], None] | None = None) -> dict[str, Series]:
        """:meth:`range_series` for many keys at once, ``settings.workers`` in parallel.

        The first error is raised after the others finish; ``progress(1)`` after each query.
        """
        def one(item: tuple[str, str]) -> Series:
            key, query = item
            try:
                return self.range_series(key, query, start, end, step)
            finally:
                if progress is not None:
                    progress(1)

        items = list(queries.items())
        with ThreadPoolExecutor(max_workers=min(self.settings.workers, max(len(items), 1))) as pool:
            done = list(pool.map(one, items))
        return {key: s for (key, _), s in zip(items, done)}

    def ready(self) -> bool:
        """True when the server answers a trivial query."""
        try:
            self.instant("vector(1)")
            return True
        except PrometheusError:
            return False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "PrometheusSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: Exception) -> str:
    """The innermost useful sentence of a requests/urllib3 error."""
    text = str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.strip("()'\" ")
    if "Connection refused" in text:
        return "connection refused"
    return text[:200]


def _grid(start: float, end: float, step: float, align: bool) -> tuple[float, int]:
    """The first point and the number of points of ``[start, end]`` at ``step`` (``start``
    aligned down to a multiple of ``step`` when ``align``)."""
    if align:
        start = math.floor(start / step) * step
    return start, int(math.floor((end - start) / step + 1e-9)) + 1


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _step_text(step: float) -> str:
    return f"{int(step)}s" if float(step).is_integer() else f"{step:g}s"


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _place(out: np.ndarray, values: Sequence, start: float, step: float) -> None:
    """Write ``[[ts, "value"], ...]`` onto ``out``'s grid (index = (ts - start) / step)."""
    if not len(values):
        return
    ts = np.fromiter((v[0] for v in values), dtype=np.float64, count=len(values))
    vals = np.fromiter((_float(v[1]) for v in values), dtype=np.float64, count=len(values))
    idx = np.rint((ts - start) / step).astype(np.int64)
    ok = (idx >= 0) & (idx < len(out))
    out[idx[ok]] = vals[ok]
