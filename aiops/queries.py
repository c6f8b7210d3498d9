"""The query catalogue: which PromQL gives each metric the agent reads, per workload and cluster.

A workload's serving stack (``metrics.server``: vllm, triton, tgi or generic) picks the
templates for demand, latency and queue; GPU metrics come from NVIDIA's DCGM exporter and
replica and node counts from kube-state-metrics, the same for every stack. Templates use
``string.Template`` placeholders, since PromQL itself is full of braces:

* ``$selector``: the serving metrics' label matchers: namespace, pods, plus ``metrics.matchers``;
* ``$gpu_selector``: DCGM's matchers; the exporter labels each GPU with the pod using it, which
  is how GPU series join to a workload;
* ``$namespace``, ``$deployment``, ``$pod_regex`` and ``$window`` (``prometheus.rate_window``).

Any metric can be replaced or dropped per workload (``metrics.queries``) or cluster-wide
(``prometheus.queries``); ``check-prometheus`` shows what each finds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Template
from typing import Mapping

from simulations.config import SimConfig, WorkloadMetricsConfig

CLUSTER = "(cluster)"  # the target of cluster-wide queries

# Serving metrics per stack: demand (requests/s), latency quantiles (seconds), queue depth.
_P95 = "histogram_quantile(0.95, sum by (le) (rate({metric}{{$selector}}[$window])))"
SERVING: dict[str, dict[str, str]] = {
    "vllm": {
        "demand": "sum(rate(vllm:e2e_request_latency_seconds_count{$selector}[$window]))",
        "latency_p95": _P95.format(metric="vllm:e2e_request_latency_seconds_bucket"),
        "ttft_p95": _P95.format(metric="vllm:time_to_first_token_seconds_bucket"),
        "queue_depth": "sum(vllm:num_requests_waiting{$selector})",
        "running_requests": "sum(vllm:num_requests_running{$selector})",
        "kv_cache_usage": "avg(vllm:gpu_cache_usage_perc{$selector})",
    },
    "triton": {
        "demand": "sum(rate(nv_inference_request_success{$selector}[$window]))",
        # Triton reports latency quantiles as a summary (--metrics-config summary_latencies=true),
        # which cannot be merged across pods: the slowest pod's p95 is the conservative figure.
        "latency_p95": 'max(nv_inference_request_summary_us{$selector,quantile="0.95"}) / 1e6',
        "ttft_p95": "histogram_quantile(0.95, sum by (le) (rate(nv_inference_first_response_histogram_ms_bucket{$selector}[$window]))) / 1e3",
        "queue_depth": "sum(nv_inference_pending_request_count{$selector})",
    },
    "tgi": {
        "demand": "sum(rate(tgi_request_success{$selector}[$window]))",
        "latency_p95": _P95.format(metric="tgi_request_duration_bucket"),
        "queue_depth": "sum(tgi_queue_size{$selector})",
        "batch_size": "sum(tgi_batch_current_size{$selector})",
    },
    "generic": {
        "demand": "sum(rate(http_requests_total{$selector}[$window]))",
        "latency_p95": _P95.format(metric="http_request_duration_seconds_bucket"),
    },
}

# NVIDIA DCGM exporter, per GPU, joined to pods by its pod/namespace labels.
GPU: dict[str, str] = {
    "gpu_utilization": "avg(DCGM_FI_DEV_GPU_UTIL{$gpu_selector})",
    "gpu_engine_active": "avg(DCGM_FI_PROF_GR_ENGINE_ACTIVE{$gpu_selector})",
    "gpu_memory_used_mib": "sum(DCGM_FI_DEV_FB_USED{$gpu_selector})",
    "gpu_memory_free_mib": "sum(DCGM_FI_DEV_FB_FREE{$gpu_selector})",
    "gpu_power_watts": "sum(DCGM_FI_DEV_POWER_USAGE{$gpu_selector})",
    "gpu_temperature_c": "max(DCGM_FI_DEV_GPU_TEMP{$gpu_selector})",
    "gpu_xid_last": "max(DCGM_FI_DEV_XID_ERRORS{$gpu_selector})",
    "gpu_throttle_reasons": "max(DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{$gpu_selector})",
}

# kube-state-metrics: replicas and pods of the workload's Deployment.
KUBE: dict[str, str] = {
    "replicas_available": 'sum(kube_deployment_status_replicas_available{namespace="$namespace",deployment="$deployment"})',
    "replicas_desired": 'sum(kube_deployment_spec_replicas{namespace="$namespace",deployment="$deployment"})',
    "pods_pending": 'sum(kube_pod_status_phase{namespace="$namespace",pod=~"$pod_regex",phase="Pending"})',
}

# Cluster-wide: allocatable GPUs and what is asked for, from kube-state-metrics and DCGM.
CLUSTER_QUERIES: dict[str, str] = {
    "allocatable_gpus": 'sum(kube_node_status_allocatable{resource="nvidia_com_gpu"})',
    "requested_gpus": 'sum(kube_pod_container_resource_requests{resource="nvidia_com_gpu"})',
    "gpus_reporting": "count(DCGM_FI_DEV_GPU_UTIL)",
    "pending_gpu_pods": 'count(kube_pod_container_resource_requests{resource="nvidia_com_gpu"} * on (namespace, pod) group_left() (kube_pod_status_phase{phase="Pending"} == 1))',
}

UNITS = {
    "demand": "req/s", "latency_p95": "s", "ttft_p95": "s", "queue_depth": "requests",
    "running_requests": "requests", "kv_cache_usage": "ratio", "batch_size": "requests",
    "gpu_utilization": "%", "gpu_engine_active": "ratio", "gpu_memory_used_mib": "MiB",
    "gpu_memory_free_mib": "MiB", "gpu_power_watts": "W", "gpu_temperature_c": "°C",
    "gpu_xid_last": "XID", "gpu_throttle_reasons": "bitmask", "replicas_available": "replicas",
    "replicas_desired": "replicas", "pods_pending": "pods", "allocatable_gpus": "GPUs",
    "requested_gpus": "GPUs", "gpus_reporting": "GPUs", "pending_gpu_pods": "pods",
}

REQUIRED = frozenset({"demand"})  # without it the workload cannot be forecast


@dataclass(frozen=True)
class Query:
    """One metric of one target (a workload, or :data:`CLUSTER`), as PromQL."""

    target: str
    metric: str
    promql: str
    unit: str = ""
    required: bool = False
    overridden: bool = False


_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


def _matchers(*parts: str) -> str:
    return ",".join(p.strip().strip(",") for p in parts if p and p.strip().strip(","))


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def workload_queries(name: str, metrics: WorkloadMetricsConfig, window: str) -> dict[str, Query]:
    """Every metric of workload ``name``: the catalogue for its stack, with its overrides."""
    deployment = metrics.deployment or name
    pod_regex = metrics.pod_regex or _REGEX_SPECIAL.sub(r"\\\1", deployment) + "-.*"
    values = {
        "namespace": metrics.namespace,
        "deployment": _quoted(deployment),
        "pod_regex": _quoted(pod_regex),
        "window": window,
    }
    pods = f'namespace="{metrics.namespace}",pod=~"{values["pod_regex"]}"'
    values["selector"] = _matchers(pods, metrics.matchers)
    values["gpu_selector"] = pods
    templates = {**SERVING[metrics.server], **GPU, **KUBE}
    return _render(name, templates, metrics.queries, values)


def cluster_queries(overrides: Mapping[str, str | None], window: str) -> dict[str, Query]:
    """The cluster-wide metrics, with ``prometheus.queries`` applied."""
    return _render(CLUSTER, CLUSTER_QUERIES, overrides, {"window": window})


def _render(target: str, templates: Mapping[str, str], overrides: Mapping[str, str | None],
            values: Mapping[str, str]) -> dict[str, Query]:
    out: dict[str, Query] = {}
    for metric in [*templates, *(m for m in overrides if m not in templates)]:
        if metric in overrides and overrides[metric] is None:
            continue  # turned off
        text = overrides.get(metric) or templates[metric]
        promql = Template(text).safe_substitute(values)
        out[metric] = Query(target, metric, promql, UNITS.get(metric, ""), metric in REQUIRED, metric in overrides)
    return out


def catalogue(config: SimConfig, workloads: list[str] | None = None) -> list[Query]:
    """Every configured query: per workload (the listed ones, or ``workloads``), then cluster-wide."""
    window = config.prometheus.rate_window
    names = workloads if workloads is not None else [w.name for w in config.workloads]
    out: list[Query] = []
    for name in names:
        out.extend(workload_queries(name, config.workload_for(name).metrics, window).values())
    out.extend(cluster_queries(config.prometheus.queries, window).values())
    return out
