"""The query catalogue: templates per serving stack, DCGM and kube-state-metrics, with overrides."""

from __future__ import annotations

import pytest

from aiops.queries import CLUSTER, SERVING, catalogue, workload_queries
from simulations.config import WorkloadMetricsConfig, config_from_mapping


def test_vllm_defaults_select_the_workload_s_pods_in_its_namespace() -> None:
    q = workload_queries("llm-chat", WorkloadMetricsConfig(namespace="serving"), "2m")
    sel = 'namespace="serving",pod=~"llm-chat-.*"'
    assert q["demand"].promql == f"sum(rate(vllm:e2e_request_latency_seconds_count{{{sel}}}[2m]))"
    assert q["demand"].required and q["demand"].unit == "req/s"
    assert q["latency_p95"].promql == (
        f"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[2m])))")
    assert q["ttft_p95"].promql.startswith("histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{")
    assert q["queue_depth"].promql == f"sum(vllm:num_requests_waiting{{{sel}}})"
    assert q["gpu_utilization"].promql == f"avg(DCGM_FI_DEV_GPU_UTIL{{{sel}}})"
    assert q["gpu_xid_last"].promql == f"max(DCGM_FI_DEV_XID_ERRORS{{{sel}}})"
    assert q["replicas_available"].promql == (
        'sum(kube_deployment_status_replicas_available{namespace="serving",deployment="llm-chat"})')
    assert not any(query.overridden for query in q.values())


@pytest.mark.parametrize("server", list(SERVING))
def test_every_stack_has_demand_and_latency_and_no_placeholder_left(server) -> None:
    q = workload_queries("svc", WorkloadMetricsConfig(server=server), "5m")
    assert {"demand", "latency_p95"} <= set(q)
    for query in q.values():
        assert "$" not in query.promql, query
        assert query.promql.count("(") == query.promql.count(")"), query
        assert query.promql.count("{") == query.promql.count("}"), query


def test_extra_matchers_apply_to_serving_metrics_not_to_gpu_metrics() -> None:
    q = workload_queries("emb", WorkloadMetricsConfig(server="triton", namespace="ml", matchers='model="e5"'), "2m")
    assert q["demand"].promql == 'sum(rate(nv_inference_request_success{namespace="ml",pod=~"emb-.*",model="e5"}[2m]))'
    assert q["gpu_power_watts"].promql == 'sum(DCGM_FI_DEV_POWER_USAGE{namespace="ml",pod=~"emb-.*"})'


def test_overrides_replace_or_drop_a_metric_and_may_use_placeholders() -> None:
    metrics = WorkloadMetricsConfig(deployment="chat-v2", queries={
        "demand": 'sum(rate(my_requests_total{namespace="$namespace",deployment="$deployment"}[$window]))',
        "kv_cache_usage": None, "tokens": "sum(rate(my_tokens_total{$selector}[$window]))"})
    q = workload_queries("chat", metrics, "3m")
    assert q["demand"].promql == 'sum(rate(my_requests_total{namespace="default",deployment="chat-v2"}[3m]))'
    assert q["demand"].overridden and q["demand"].required
    assert "kv_cache_usage" not in q
    assert q["tokens"].promql == 'sum(rate(my_tokens_total{namespace="default",pod=~"chat-v2-.*"}[3m]))'


def test_regex_characters_of_a_name_are_escaped_in_the_pod_regex() -> None:
    q = workload_queries("llm.chat", WorkloadMetricsConfig(), "2m")
    assert 'pod=~"llm\\\\.chat-.*"' in q["queue_depth"].promql  # PromQL string "llm\\.chat" is the regex llm\.chat


def test_catalogue_lists_workloads_then_cluster_queries_with_overrides() -> None:
    config = config_from_mapping({
        "workloads": [{"name": "chat"}, {"name": "embed", "metrics": {"server": "generic"}}],
        "prometheus": {"queries": {"allocatable_gpus": None, "spot_gpus": 'sum(kube_node_labels{label_spot="true"})'}},
    })
    queries = catalogue(config)
    targets = [q.target for q in queries]
    assert targets.index("chat") < targets.index("embed") < targets.index(CLUSTER)
    cluster = {q.metric: q for q in queries if q.target == CLUSTER}
    assert "allocatable_gpus" not in cluster and cluster["spot_gpus"].overridden
    assert {q.metric for q in queries if q.target == "embed"} >= {"demand", "latency_p95", "gpu_utilization"}
    assert [q.target for q in catalogue(config, ["other"])][0] == "other"  # an unlisted workload takes the defaults
