"""``aiops gpu-exporter``: per-GPU metrics from NVML on ``/metrics``, for clusters without DCGM.

Where the NVIDIA DCGM exporter runs, use it. Where it does not (no GPU operator, consumer or
older boards, a plain node), this exporter reads the driver's NVML library through ``pynvml``
(the ``nvidia-ml-py`` package) and serves Prometheus text format.

Design:

* :func:`read_gpus` is the pure part: given the ``pynvml`` module (or a stand-in with the same
  functions), it returns one :class:`GpuReading` per GPU. A field whose NVML call raises
  ``NVMLError`` (``NotSupported`` for power on some boards, ``NoPermission``, a GPU that fell off
  the bus) is ``None`` for that GPU only, named in ``GpuReading.unavailable``; the other fields
  and GPUs are still read.
* :class:`GpuCollector` is a ``prometheus_client`` custom collector, registered on its own
  ``CollectorRegistry`` (never the process-global one). **Every scrape reads NVML afresh**: there
  is no background thread and no cache, so a value is never older than the scrape that carries it,
  and the scrape interval is Prometheus's to choose. NVML queries take microseconds to a few
  milliseconds per GPU, well inside any scrape timeout. Scrapes are serialised by a lock, so the
  read-error counts stay exact when two scrapers arrive at once.
* :func:`serve` starts ``prometheus_client``'s HTTP server on a daemon thread and returns
  ``(server, thread)``; :func:`stop` shuts it down. The command blocks until SIGTERM or SIGINT,
  then stops the server and calls ``nvmlShutdown()``.

Metrics (labels ``gpu`` = NVML index, ``uuid``, ``name`` on every per-GPU gauge):

==================================  ===================================================================
``aiops_gpu_count``                 GPUs NVML reports on this node (no labels)
``aiops_gpu_utilization_ratio``     share of the last sample period a kernel ran, 0-1 (NVML ``gpu`` %)
``aiops_gpu_memory_utilization_ratio``  share of it device memory was read or written, 0-1
``aiops_gpu_memory_used_bytes``     device memory used
``aiops_gpu_memory_free_bytes``     device memory free
``aiops_gpu_memory_total_bytes``    device memory installed
``aiops_gpu_temperature_celsius``   GPU core temperature
``aiops_gpu_power_watts``           power draw
``aiops_gpu_power_limit_watts``     enforced power limit
``aiops_gpu_throttle_reasons``      NVML's raw clock throttle (clock event) reason bitmask
``aiops_gpu_throttle_active``       0/1 per named reason (extra label ``reason``, see THROTTLE_REASONS)
``aiops_gpu_read_errors_total``     counter of NVML reads that failed, labels ``gpu`` and ``field``
==================================  ===================================================================

Utilisations are ratios (0-1), following Prometheus's base-unit convention, not percentages.
A field that could not be read has no sample for that GPU on that scrape.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import click

# NVML's clock throttle ("clock event" since driver 535) reason bits, as in nvml.h and pynvml's
# ``nvmlClocksThrottleReason*`` constants: one table for the exporter and the detectors.
from aiops.xid import THROTTLE_REASONS  # noqa: E402

NVML_TEMPERATURE_GPU = 0  # pynvml.NVML_TEMPERATURE_GPU

NO_NVML = "no NVIDIA driver/NVML found on this node"

GPU_LABELS = ("gpu", "uuid", "name")


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment. ``None`` means NVML could not tell (see ``unavailable``)."""

    index: int
    uuid: str | None = None
    name: str | None = None
    utilization_gpu_pct: float | None = None
    utilization_memory_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    throttle_reasons: int | None = None
    # The field groups whose NVML call failed: "handle" (then nothing else was read), "uuid",
    # "name", "utilization", "memory", "temperature", "power", "power_limit", "throttle_reasons".
    unavailable: tuple[str, ...] = ()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _throttle_reasons(nvml: Any, handle: Any) -> int:
    """The current reason bitmask; ``ClocksEventReasons`` is the newer name, missing on old drivers."""
    newer = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if newer is not None:
        try:
            return int(newer(handle))
        except nvml.NVMLError as exc:
            not_found = getattr(nvml, "NVMLError_FunctionNotFound", None)
            if not_found is None or not isinstance(exc, not_found):
                raise
    return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def read_gpu(nvml: Any, index: int) -> GpuReading:
    """Read GPU ``index``; each field that raises ``nvml.NVMLError`` is left ``None``."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError:
        return GpuReading(index=index, unavailable=("handle",))

    values: dict[str, Any] = {}
    unavailable: list[str] = []

    def field(group: str, read: Callable[[], dict[str, Any]]) -> None:
        try:
            values.update(read())
        except nvml.NVMLError:
            unavailable.append(group)

    def utilization() -> dict[str, Any]:
        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
        return {"utilization_gpu_pct": float(rates.gpu), "utilization_memory_pct": float(rates.memory)}

    def memory() -> dict[str, Any]:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return {"memory_used_bytes": int(info.used), "memory_free_bytes": int(info.free),
                "memory_total_bytes": int(info.total)}

    field("uuid", lambda: {"uuid": _text(nvml.nvmlDeviceGetUUID(handle))})
    field("name", lambda: {"name": _text(nvml.nvmlDeviceGetName(handle))})
    field("utilization", utilization)
    field("memory", memory)
    field("temperature", lambda: {"temperature_c": float(nvml.nvmlDeviceGetTemperature(
        handle, getattr(nvml, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)))})
    # NVML reports milliwatts.
    field("power", lambda: {"power_watts": nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0})
    field("power_limit", lambda: {"power_limit_watts": nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0})
    field("throttle_reasons", lambda: {"throttle_reasons": _throttle_reasons(nvml, handle)})
    return GpuReading(index=index, unavailable=tuple(unavailable), **values)


def read_gpus(nvml: Any) -> list[GpuReading]:
    """One reading per GPU NVML reports. Raises ``nvml.NVMLError`` only if the count itself fails."""
    return [read_gpu(nvml, index) for index in range(int(nvml.nvmlDeviceGetCount()))]


# (metric name, help, GpuReading attribute, divisor)
_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("aiops_gpu_utilization_ratio",
     "Share of the last NVML sample period during which a kernel ran on the GPU (0-1).",
     "utilization_gpu_pct", 100),
    ("aiops_gpu_memory_utilization_ratio",
     "Share of the last NVML sample period during which device memory was read or written (0-1).",
     "utilization_memory_pct", 100),
    ("aiops_gpu_memory_used_bytes", "Device memory used, in bytes.", "memory_used_bytes", 1),
    ("aiops_gpu_memory_free_bytes", "Device memory free, in bytes.", "memory_free_bytes", 1),
    ("aiops_gpu_memory_total_bytes", "Device memory installed, in bytes.", "memory_total_bytes", 1),
    ("aiops_gpu_temperature_celsius", "GPU core temperature, in degrees Celsius.", "temperature_c", 1),
    ("aiops_gpu_power_watts", "Power draw, in watts.", "power_watts", 1),
    ("aiops_gpu_power_limit_watts", "Enforced power limit, in watts.", "power_limit_watts", 1),
    ("aiops_gpu_throttle_reasons", "NVML clock throttle (clock event) reasons, the raw bitmask.",
     "throttle_reasons", 1),
)


class GpuCollector:
    """Reads NVML on every ``collect()`` (one scrape) and yields the ``aiops_gpu_*`` families.

    ``nvml`` is the initialised ``pynvml`` module or a stand-in. ``warn`` is called once per
    (GPU, field) the first time that read fails, with a one-line message.
    """

    def __init__(self, nvml: Any, warn: Callable[[str], None] | None = None) -> None:
        self.nvml = nvml
        self.warn = warn
        self.read_errors: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _error(self, gpu: str, field: str) -> None:
        key = (gpu, field)
        if key not in self.read_errors and self.warn is not None:
            where = f"gpu {gpu}" if gpu else "node"
            self.warn(f"{where}: NVML cannot read {field}; left out of /metrics (counted in "
                      "aiops_gpu_read_errors_total)")
        self.read_errors[key] = self.read_errors.get(key, 0) + 1

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            try:
                readings: list[GpuReading] | None = read_gpus(self.nvml)
            except self.nvml.NVMLError:
                readings = None
                self._error("", "device_count")
            for reading in readings or ():
                for group in reading.unavailable:
                    self._error(str(reading.index), group)
            errors = sorted(self.read_errors.items())

        if readings is not None:
            count = GaugeMetricFamily("aiops_gpu_count", "GPUs NVML reports on this node.")
            count.add_metric([], len(readings))
            yield count
            readings = [r for r in readings if "handle" not in r.unavailable]

            def labels(r: GpuReading) -> list[str]:
                return [str(r.index), r.uuid or "", r.name or ""]

            for name, documentation, attribute, divisor in _GAUGES:
                family = GaugeMetricFamily(name, documentation, labels=GPU_LABELS)
                for r in readings:
                    value = getattr(r, attribute)
                    if value is not None:
                        family.add_metric(labels(r), value / divisor if divisor != 1 else value)
                yield family

            active = GaugeMetricFamily(
                "aiops_gpu_throttle_active",
                "1 if NVML reports this clock throttle reason for the GPU now, else 0.",
                labels=(*GPU_LABELS, "reason"))
            for r in readings:
                if r.throttle_reasons is not None:
                    for reason, bit in THROTTLE_REASONS:
                        active.add_metric([*labels(r), reason], 1 if r.throttle_reasons & bit else 0)
            yield active

        counter = CounterMetricFamily(
            "aiops_gpu_read_errors",
            "NVML reads that failed, by GPU index (empty for the device count) and field.",
            labels=("gpu", "field"))
        for (gpu, field), n in errors:
            counter.add_metric([gpu, field], n)
        yield counter


def make_registry(nvml: Any, warn: Callable[[str], None] | None = None):
    """A fresh ``CollectorRegistry`` holding only a :class:`GpuCollector` (no process metrics)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(GpuCollector(nvml, warn))
    return registry


def serve(registry: Any, address: str, port: int) -> tuple[Any, threading.Thread]:
    """Serve ``registry`` over HTTP on a daemon thread; ``port`` 0 picks a free one
    (``server.server_port``). Raises ``OSError`` if the address cannot be bound."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=address, registry=registry)
    return server, thread


def stop(server: Any, thread: threading.Thread) -> None:
    """Stop what :func:`serve` started and wait for its thread."""
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/metrics"


GPU_EXPORTER_HELP = """Serve per-GPU NVML metrics on /metrics, for clusters without the NVIDIA DCGM exporter.

Run it on each GPU node (a DaemonSet with the NVIDIA driver mounted) where DCGM is not
deployed; where dcgm-exporter runs, use that instead. It reads NVML through pynvml on every
scrape (no cache, no background polling) and exports, labelled gpu (index), uuid and name:

\b
  aiops_gpu_count                        GPUs on the node (no labels)
  aiops_gpu_utilization_ratio            kernel activity, 0-1
  aiops_gpu_memory_utilization_ratio     memory read/write activity, 0-1
  aiops_gpu_memory_{used,free,total}_bytes
  aiops_gpu_temperature_celsius
  aiops_gpu_power_watts, aiops_gpu_power_limit_watts
  aiops_gpu_throttle_reasons             NVML's raw throttle reason bitmask
  aiops_gpu_throttle_active{reason=...}  0/1 per reason: gpu_idle, applications_clocks_setting,
                                         sw_power_cap, hw_slowdown, sync_boost,
                                         sw_thermal_slowdown, hw_thermal_slowdown,
                                         hw_power_brake_slowdown, display_clock_setting
  aiops_gpu_read_errors_total{gpu,field} NVML reads that failed

A field NVML cannot read on a GPU (power on some boards) is left out for that GPU and counted.
Without an NVIDIA driver it exits 2 with one line on stderr. It stops on SIGTERM or SIGINT.

\b
Examples:
  aiops gpu-exporter
  aiops gpu-exporter --address 127.0.0.1 --port 9401
"""


def _import_nvml():
    from simulations.errors import InputError

    try:
        import pynvml
    except ImportError as exc:
        raise InputError("gpu-exporter", f"the pynvml module (package nvidia-ml-py) cannot be imported: {exc}") from None
    return pynvml


@click.command("gpu-exporter", help=GPU_EXPORTER_HELP)
@click.option("--address", default="0.0.0.0", show_default=True, metavar="ADDR",
              help="Address to listen on (0.0.0.0: all IPv4 interfaces; :: all IPv6).")
@click.option("--port", default=9400, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, which the start line names).")
def gpu_exporter(address: str, port: int) -> None:
    from aiops.cli import _fail, _input_errors

    _input_errors(_run)(address, port, _fail)


def _run(address: str, port: int, fail: Callable[[str], None]) -> None:
    from simulations.errors import InputError

    nvml = _import_nvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        fail(f"{NO_NVML} ({exc})")
        return
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            raise InputError("gpu-exporter", f"NVML initialised but cannot count the GPUs ({exc})") from None
        try:
            driver = f", driver {_text(nvml.nvmlSystemGetDriverVersion())}"
        except (nvml.NVMLError, AttributeError):
            driver = ""

        registry = make_registry(nvml, warn=lambda line: click.echo(f"warning: {line}", err=True))
        try:
            server, thread = serve(registry, address, port)
        except OSError as exc:
            raise InputError("--port", f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None

        stopping = threading.Event()

        def on_signal(_signum, _frame):
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            gpus = f"{count} GPU" + ("" if count == 1 else "s")
            click.echo(f"aiops gpu-exporter: serving {_url(address, server.server_port)} for {gpus}{driver}", err=True)
            sys.stderr.flush()
            while not stopping.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stop(server, thread)
        click.echo("aiops gpu-exporter: stopped", err=True)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
