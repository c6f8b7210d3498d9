"""Backfill six hours of made-up vLLM, DCGM and kube-state-metrics history for examples/prometheus.yaml.

Run from the repository root, then start Prometheus by hand on the data it wrote, and check it:

    .venv/bin/python examples/prometheus_demo.py out/prom-demo
    prometheus --config.file=out/prom-demo/prometheus.yml --storage.tsdb.path=out/prom-demo/data \\
        --web.listen-address=127.0.0.1:9090 --storage.tsdb.retention.time=10y &
    .venv/bin/aiops check-prometheus --config examples/prometheus.yaml --window 1h

The history ends at the current minute, so run the check within a few minutes (or write it
again). Two pods of ``llm-chat`` serve a diurnal load through vLLM on one H100 each; the TTFT
histogram and the throttle reasons are left out, so the table also shows what "no data" looks like.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.prometheus_server import HistorySeries, backfill, write_openmetrics  # noqa: E402

STEP = 60
HOURS = 6
PODS = ("llm-chat-7d9f-0", "llm-chat-7d9f-1")
BUCKETS = {"0.5": 0.50, "1.0": 0.90, "2.0": 0.99, "4.0": 1.0, "+Inf": 1.0}  # share of requests under each bound


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    end = math.floor(time.time() / STEP) * STEP
    ts = end - STEP * np.arange(HOURS * 3600 // STEP)[::-1]
    rate = 6.0 + 3.0 * np.sin(2 * np.pi * (ts % 86_400) / 86_400)  # requests/s per pod
    ns = {"namespace": "serving"}
    series = []
    for k, pod in enumerate(PODS):
        at = {**ns, "pod": pod}
        series += [
            HistorySeries("vllm:num_requests_waiting", at, ts, np.round(np.maximum(rate - 7.5, 0) * 2)),
            HistorySeries("vllm:num_requests_running", at, ts, np.round(rate * 1.4)),
            HistorySeries("vllm:gpu_cache_usage_perc", at, ts, np.round(rate / 12, 3)),
            HistorySeries("DCGM_FI_DEV_GPU_UTIL", {**at, "gpu": str(k), "modelName": "NVIDIA H100 80GB HBM3"}, ts, np.round(rate * 9)),
            HistorySeries("DCGM_FI_PROF_GR_ENGINE_ACTIVE", {**at, "gpu": str(k)}, ts, np.round(rate / 11, 3)),
            HistorySeries("DCGM_FI_DEV_FB_USED", {**at, "gpu": str(k)}, ts, np.full(len(ts), 71_000.0)),
            HistorySeries("DCGM_FI_DEV_FB_FREE", {**at, "gpu": str(k)}, ts, np.full(len(ts), 10_559.0)),
            HistorySeries("DCGM_FI_DEV_POWER_USAGE", {**at, "gpu": str(k)}, ts, np.round(250 + rate * 40, 1)),
            HistorySeries("DCGM_FI_DEV_GPU_TEMP", {**at, "gpu": str(k)}, ts, np.round(45 + rate * 2)),
            HistorySeries("DCGM_FI_DEV_XID_ERRORS", {**at, "gpu": str(k)}, ts, np.zeros(len(ts))),
            HistorySeries("kube_pod_status_phase", {**at, "phase": "Pending"}, ts, np.zeros(len(ts))),
            HistorySeries("kube_pod_container_resource_requests", {**at, "resource": "nvidia_com_gpu", "unit": "integer"},
                          ts, np.ones(len(ts))),
        ]
    deployment = {**ns, "deployment": "llm-chat"}
    series += [
        HistorySeries("kube_deployment_status_replicas_available", deployment, ts, np.full(len(ts), 2.0)),
        HistorySeries("kube_deployment_spec_replicas", deployment, ts, np.full(len(ts), 2.0)),
        HistorySeries("kube_node_status_allocatable", {"node": "gpu-node-0", "resource": "nvidia_com_gpu", "unit": "integer"},
                      ts, np.full(len(ts), 8.0)),
    ]
    write_openmetrics(folder / "gauges.om", series)
    _latency_histogram(folder / "latency.om", ts, rate)
    for part in ("gauges.om", "latency.om"):
        backfill(folder / part, folder / "data", max_block_duration="162h")
        (folder / part).unlink()
    (folder / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    print(f"backfilled {HOURS} h of history ending {time.strftime('%H:%M UTC', time.gmtime(end))} into {folder / 'data'}")


def _latency_histogram(path: Path, ts: np.ndarray, rate: np.ndarray) -> None:
    """vllm:e2e_request_latency_seconds per pod: cumulative counts from the per-second rate."""
    lines = ["# TYPE vllm:e2e_request_latency_seconds histogram"]
    total = np.cumsum(rate * STEP)
    for pod in PODS:
        labels = f'namespace="serving",pod="{pod}"'
        for t, count in zip(ts, total):
            for le, share in BUCKETS.items():
                lines.append(f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="{le}"}} {count * share:.1f} {int(t)}')
            lines.append(f"vllm:e2e_request_latency_seconds_count{{{labels}}} {count:.1f} {int(t)}")
            lines.append(f"vllm:e2e_request_latency_seconds_sum{{{labels}}} {count * 0.6:.1f} {int(t)}")
    path.write_text("\n".join(lines + ["# EOF"]) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
