"""`aiops gpu-exporter`: NVML metrics on /metrics, and one line, exit 2, without NVML.

NVML's absence is tested for real: this machine has no NVIDIA driver, so the installed `pynvml`
raises NVMLError_LibraryNotFound. NVML's presence is covered by a fake `pynvml` module (below,
as source, so the same fake serves in-process through sys.modules and in a subprocess through
PYTHONPATH) with two GPUs: an H100 that reads fully, and an A10 whose power reading is not
supported.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import types
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiops import gpu_exporter as ge
from aiops.cli import main
from tests.helpers import one_line_error

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYNVML = '''
"""A stand-in for pynvml: two GPUs, GPU 1 without power readings."""
import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    def __init__(self, message="NVML error"):
        super().__init__(message)


class NVMLError_NotSupported(NVMLError):
    def __init__(self):
        super().__init__("Not Supported")


class NVMLError_DriverNotLoaded(NVMLError):
    def __init__(self):
        super().__init__("Driver Not Loaded")


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self):
        super().__init__("NVML Shared Library Not Found")


class NVMLError_FunctionNotFound(NVMLError):
    def __init__(self):
        super().__init__("Function Not Found")


class NVMLError_GpuIsLost(NVMLError):
    def __init__(self):
        super().__init__("GPU is lost")


GPUS = [
    dict(uuid="GPU-0a0a0a0a-0000-0000-0000-000000000000", name="NVIDIA H100 80GB HBM3",
         util=(57, 23), memory=(42949672960, 42949672960, 85899345920), temperature=64,
         power_mw=312500, limit_mw=700000, reasons=0x4 | 0x40),
    dict(uuid="GPU-1b1b1b1b-1111-1111-1111-111111111111", name=b"NVIDIA A10",
         util=(0, 0), memory=(1073741824, 24696061952, 25769803776), temperature=35,
         power_mw=NVMLError_NotSupported, limit_mw=150000, reasons=0x1),
]
calls = []


def _value(value):
    if isinstance(value, type) and issubclass(value, Exception):
        raise value()
    return value


def nvmlInit():
    calls.append("init")


def nvmlShutdown():
    calls.append("shutdown")
    marker = os.environ.get("FAKE_NVML_SHUTDOWN_MARKER")
    if marker:
        with open(marker, "w") as f:
            f.write("shutdown")


def nvmlSystemGetDriverVersion():
    return "550.54.15"


def nvmlDeviceGetCount():
    return len(GPUS)


def nvmlDeviceGetHandleByIndex(index):
    return _value(GPUS[index].get("handle", index))


def nvmlDeviceGetUUID(h):
    return GPUS[h]["uuid"]


def nvmlDeviceGetName(h):
    return GPUS[h]["name"]


def nvmlDeviceGetUtilizationRates(h):
    gpu, memory = _value(GPUS[h]["util"])
    return SimpleNamespace(gpu=gpu, memory=memory)


def nvmlDeviceGetMemoryInfo(h):
    used, free, total = GPUS[h]["memory"]
    return SimpleNamespace(used=used, free=free, total=total)


def nvmlDeviceGetTemperature(h, sensor):
    assert sensor == NVML_TEMPERATURE_GPU
    return GPUS[h]["temperature"]


def nvmlDeviceGetPowerUsage(h):
    return _value(GPUS[h]["power_mw"])


def nvmlDeviceGetEnforcedPowerLimit(h):
    return _value(GPUS[h]["limit_mw"])


def nvmlDeviceGetCurrentClocksEventReasons(h):
    return _value(GPUS[h].get("event_reasons", GPUS[h]["reasons"]))


def nvmlDeviceGetCurrentClocksThrottleReasons(h):
    return GPUS[h]["reasons"]
'''

H100 = {"gpu": "0", "uuid": "GPU-0a0a0a0a-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3"}
A10 = {"gpu": "1", "uuid": "GPU-1b1b1b1b-1111-1111-1111-111111111111", "name": "NVIDIA A10"}


def make_fake() -> types.ModuleType:
    module = types.ModuleType("pynvml")
    exec(compile(FAKE_PYNVML, "fake_pynvml.py", "exec"), module.__dict__)
    return module


@pytest.fixture
def fake(monkeypatch) -> types.ModuleType:
    module = make_fake()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed, metric: str, /, **labels) -> float:
    return parsed[(metric, frozenset(labels.items()))]


def names_for(parsed, metric: str) -> list[dict]:
    """The label sets of ``metric``'s samples."""
    return [dict(labels) for (n, labels) in parsed if n == metric]


# -- NVML absent: for real --------------------------------------------------------------------------
def test_without_nvml_the_command_exits_2_with_one_line():
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver; NVML's absence cannot be tested for real here")
    out = subprocess.run([sys.executable, "-m", "aiops", "gpu-exporter", "--port", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: no NVIDIA driver/NVML found on this node (")
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("error", ["NVMLError_DriverNotLoaded", "NVMLError_LibraryNotFound"])
def test_nvml_init_failure_is_one_line_exit_2(fake, monkeypatch, error):
    def init():
        raise getattr(fake, error)()

    monkeypatch.setattr(fake, "nvmlInit", init)
    result = CliRunner().invoke(main, ["gpu-exporter", "--port", "0"], prog_name="aiops")
    line = one_line_error(result)
    reason = "Driver Not Loaded" if error == "NVMLError_DriverNotLoaded" else "NVML Shared Library Not Found"
    assert line == f"error: no NVIDIA driver/NVML found on this node ({reason})"
    assert "shutdown" not in fake.calls  # never initialised, so nothing to shut down


def test_a_port_in_use_is_one_line_exit_2_and_nvml_is_shut_down(fake):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["gpu-exporter", "--address", "127.0.0.1", "--port", str(port)],
                                    prog_name="aiops")
    line = one_line_error(result)
    assert line.startswith(f"error: --port: cannot listen on 127.0.0.1:{port}: ")
    assert fake.calls == ["init", "shutdown"]


def test_help_names_the_metrics_and_when_to_use_it():
    result = CliRunner().invoke(main, ["gpu-exporter", "--help"], prog_name="aiops")
    assert result.exit_code == 0
    for phrase in ("DCGM", "aiops_gpu_utilization_ratio", "aiops_gpu_throttle_active", "--port", "--address",
                   "exits 2"):
        assert phrase in result.output


# -- the pure part ----------------------------------------------------------------------------------
def test_throttle_reason_bits_are_nvmls():
    import pynvml

    for reason, bit in ge.THROTTLE_REASONS:
        camel = "".join(part.capitalize() for part in reason.split("_"))
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, reason
        # The "clock event" names (driver 535+) leave out the two newest throttle-only bits.
        assert getattr(pynvml, f"nvmlClocksEventReason{camel}", bit) == bit, reason
    assert pynvml.NVML_TEMPERATURE_GPU == ge.NVML_TEMPERATURE_GPU


def test_read_gpus_reads_every_field_and_leaves_out_only_what_fails(fake):
    h100, a10 = ge.read_gpus(fake)
    assert h100 == ge.GpuReading(
        index=0, uuid=H100["uuid"], name="NVIDIA H100 80GB HBM3", utilization_gpu_pct=57.0, utilization_memory_pct=23.0,
        memory_used_bytes=42949672960, memory_free_bytes=42949672960, memory_total_bytes=85899345920,
        temperature_c=64.0, power_watts=312.5, power_limit_watts=700.0, throttle_reasons=0x44, unavailable=())
    assert a10.name == "NVIDIA A10"  # bytes, as older pynvml returns, decoded
    assert a10.power_watts is None and a10.unavailable == ("power",)
    assert (a10.power_limit_watts, a10.temperature_c, a10.throttle_reasons) == (150.0, 35.0, 0x1)


def test_a_lost_gpu_and_an_old_driver(fake):
    fake.GPUS[0]["handle"] = fake.NVMLError_GpuIsLost
    fake.GPUS[1]["event_reasons"] = fake.NVMLError_FunctionNotFound  # driver older than the clock-event API
    lost, a10 = ge.read_gpus(fake)
    assert lost == ge.GpuReading(index=0, unavailable=("handle",))
    assert a10.throttle_reasons == 0x1 and a10.unavailable == ("power",)


# -- the collector ----------------------------------------------------------------------------------
def test_exposition_has_exact_values_for_both_gpus(fake):
    warnings: list[str] = []
    registry = ge.make_registry(fake, warn=warnings.append)
    text = generate_latest(registry).decode()
    parsed = samples(text)

    assert value(parsed, "aiops_gpu_count") == 2
    expected = {
        "aiops_gpu_utilization_ratio": (0.57, 0.0),
        "aiops_gpu_memory_utilization_ratio": (0.23, 0.0),
        "aiops_gpu_memory_used_bytes": (42949672960, 1073741824),
        "aiops_gpu_memory_free_bytes": (42949672960, 24696061952),
        "aiops_gpu_memory_total_bytes": (85899345920, 25769803776),
        "aiops_gpu_temperature_celsius": (64, 35),
        "aiops_gpu_power_limit_watts": (700, 150),
        "aiops_gpu_throttle_reasons": (0x44, 0x1),
    }
    for name, (h100, a10) in expected.items():
        assert value(parsed, name, **H100) == h100, name
        assert value(parsed, name, **A10) == a10, name
    assert ('aiops_gpu_utilization_ratio{gpu="0",name="NVIDIA H100 80GB HBM3",'
            'uuid="GPU-0a0a0a0a-0000-0000-0000-000000000000"} 0.57\n') in text
    assert ('aiops_gpu_temperature_celsius{gpu="1",name="NVIDIA A10",'
            'uuid="GPU-1b1b1b1b-1111-1111-1111-111111111111"} 35.0\n') in text
    assert 'aiops_gpu_throttle_reasons{gpu="0",name="NVIDIA H100 80GB HBM3",' in text

    # GPU 1 cannot read power: no line for it, and the failure is counted.
    assert names_for(parsed, "aiops_gpu_power_watts") == [H100]
    assert value(parsed, "aiops_gpu_power_watts", **H100) == 312.5
    assert value(parsed, "aiops_gpu_read_errors_total", gpu="1", field="power") == 1
    assert names_for(parsed, "aiops_gpu_read_errors_total") == [{"gpu": "1", "field": "power"}]
    assert "# TYPE aiops_gpu_read_errors_total counter" in text

    # 0x4 | 0x40 on the H100: software power cap and hardware thermal slowdown; the A10 is idle.
    for gpu, on in ((H100, {"sw_power_cap", "hw_thermal_slowdown"}), (A10, {"gpu_idle"})):
        for reason, _bit in ge.THROTTLE_REASONS:
            assert value(parsed, "aiops_gpu_throttle_active", **gpu, reason=reason) == (reason in on), (gpu, reason)
    assert len(names_for(parsed, "aiops_gpu_throttle_active")) == 2 * len(ge.THROTTLE_REASONS) == 2 * 11

    # Each scrape reads afresh; the counter counts every failed read, the warning comes once.
    fake.GPUS[0]["temperature"] = 71
    fake.GPUS[0]["util"] = (100, 50)
    parsed = samples(generate_latest(registry).decode())
    assert value(parsed, "aiops_gpu_temperature_celsius", **H100) == 71
    assert value(parsed, "aiops_gpu_utilization_ratio", **H100) == 1.0
    assert value(parsed, "aiops_gpu_memory_utilization_ratio", **H100) == 0.5
    assert value(parsed, "aiops_gpu_read_errors_total", gpu="1", field="power") == 2
    assert len(warnings) == 1 and warnings[0].startswith("gpu 1: NVML cannot read power")


def test_failures_leave_out_only_what_failed(fake):
    registry = ge.make_registry(fake)
    fake.GPUS[0]["handle"] = fake.NVMLError_GpuIsLost
    parsed = samples(generate_latest(registry).decode())
    assert value(parsed, "aiops_gpu_count") == 2
    assert names_for(parsed, "aiops_gpu_temperature_celsius") == [A10]
    assert names_for(parsed, "aiops_gpu_throttle_active") == [{**A10, "reason": r} for r, _ in ge.THROTTLE_REASONS]
    assert value(parsed, "aiops_gpu_read_errors_total", gpu="0", field="handle") == 1

    def count():
        raise fake.NVMLError_GpuIsLost()

    fake.nvmlDeviceGetCount = count
    parsed = samples(generate_latest(registry).decode())
    assert not names_for(parsed, "aiops_gpu_count") and not names_for(parsed, "aiops_gpu_temperature_celsius")
    assert value(parsed, "aiops_gpu_read_errors_total", gpu="", field="device_count") == 1
    assert value(parsed, "aiops_gpu_read_errors_total", gpu="0", field="handle") == 1


def test_the_registry_is_its_own(fake):
    text = generate_latest(ge.make_registry(fake)).decode()
    assert "process_" not in text and "python_gc" not in text
    assert "aiops_gpu_" not in generate_latest(REGISTRY).decode()


# -- over HTTP --------------------------------------------------------------------------------------
def test_metrics_over_http(fake):
    server, thread = ge.serve(ge.make_registry(fake), "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
    finally:
        ge.stop(server, thread)
    assert not thread.is_alive()
    parsed = samples(body)
    assert value(parsed, "aiops_gpu_count") == 2
    assert value(parsed, "aiops_gpu_memory_total_bytes", **H100) == 85899345920
    assert value(parsed, "aiops_gpu_throttle_active", **H100, reason="sw_power_cap") == 1
    assert names_for(parsed, "aiops_gpu_power_watts") == [H100]


def test_the_command_serves_until_sigterm_then_shuts_nvml_down(tmp_path):
    (tmp_path / "pynvml.py").write_text(FAKE_PYNVML)
    marker = tmp_path / "shutdown"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "FAKE_NVML_SHUTDOWN_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "aiops", "gpu-exporter", "--address", "127.0.0.1", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        start = lines.get(timeout=120)  # a guard against a hang, not a timing assertion
        assert start.startswith("aiops gpu-exporter: serving http://127.0.0.1:"), start
        assert start.rstrip().endswith("/metrics for 2 GPUs, driver 550.54.15"), start
        port = int(start.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            parsed = samples(response.read().decode())
        assert value(parsed, "aiops_gpu_temperature_celsius", **A10) == 35
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=60)  # stderr is at its end once the process has exited
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any(line.startswith("warning: gpu 1: NVML cannot read power") for line in rest), rest
    assert rest[-1].strip() == "aiops gpu-exporter: stopped"
    assert "Traceback" not in "".join(rest)
    assert marker.read_text() == "shutdown"
