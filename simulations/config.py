"""Validated configuration for ``aiops simulate --config FILE.yaml`` and the agent's commands.

One file describes the cluster for both: ``aiops simulate`` reads the pools, workloads and
policies; ``aiops check-prometheus``, ``backtest --prometheus`` and ``train --prometheus`` also
read ``prometheus`` and each workload's ``metrics``.

The file is YAML. Every section is optional; a missing section (or key) takes the default
documented on its field, so an empty file -- or one holding only comments or ``null`` -- is the
default configuration. Unknown keys are rejected, with a suggestion when one is close.

Example::

    simulation:
      step_seconds: 60
    node_pools:
      - name: gpu-h100
        gpus_per_node: 8
    workloads:
      - name: llm-chat
        capacity_rps: 4.0
        slo: {latency_p95_seconds: 2.0}
    policies:
      enabled: [reactive, predictive, oracle]

Types are strict: a count must be a YAML integer (``8``, not ``8.0`` or ``"8"``), a float field
takes an integer or a float but not a quoted string, and ``.nan``/``.inf`` are rejected.

Every problem is raised as :class:`~simulations.errors.ConfigError` with a one-line message
naming the file and each offending field, e.g.
``config.yaml: workloads[0].capacity_rps: Input should be greater than 0 (got -1)``.

Cross-field checks (pool references, min <= max, GPUs per replica vs per node, base latency
below the SLO) run once the fields they compare are themselves valid, so after fixing a type
error a second run may report a cross-field error that the first could not yet see.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from simulations.errors import ConfigError, read_text

__all__ = [
    "AgentConfig",
    "PoolKubernetesConfig",
    "WorkloadKubernetesConfig",
    "LatencyModelConfig",
    "NodePoolConfig",
    "OracleConfig",
    "PoliciesConfig",
    "POLICY_NAMES",
    "PolicyName",
    "PredictiveConfig",
    "PrometheusConfig",
    "ReactiveConfig",
    "SLOConfig",
    "SimConfig",
    "SimulationSettings",
    "WorkloadConfig",
    "WorkloadDefaults",
    "WorkloadMetricsConfig",
    "config_from_mapping",
    "config_json_schema",
    "default_config",
    "load_config",
]

PolicyName = Literal["reactive", "predictive", "oracle"]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)

# A Kubernetes DNS-1123 label, the form node-pool names take in every managed cluster.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# --------------------------------------------------------------------------------------------
# Cross-field problems
# --------------------------------------------------------------------------------------------


class _Problems(ValueError):
    """One or more problems found by a validator, each at a location relative to the field.

    Pydantic keeps the exception in the error's context, so :func:`config_from_mapping` can
    report each problem at its own dotted path instead of at the validated field as a whole.
    """

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems))


def _raise_if_any(problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
    if problems:
        raise _Problems(problems)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Section(BaseModel):
    """Common settings: unknown keys rejected, immutable, strict types, finite floats only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SimulationSettings(_Section):
    """Key ``simulation``: the clock and the random seed."""

    step_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description=(
            "Length of one simulation step, in seconds. Traces with a coarser step are "
            "interpolated to it. 60 s matches the usual metrics scrape and autoscaler sync "
            "interval and keeps a multi-week trace to tens of thousands of steps."
        ),
    )
    seed: int = Field(
        default=0,
        ge=0,
        description=(
            "Seed for the synthetic default trace and anything else random, so a run is "
            "reproducible. 0 is simply a fixed choice; change it to see another draw."
        ),
    )



AgentMode = Literal["dry-run", "recommend", "auto"]


class PoolKubernetesConfig(_Section):
    """Key ``kubernetes`` of a node pool: how the agent asks for nodes ahead of demand."""

    method: Literal["placeholder", "machinedeployment", "karpenter", "none"] = Field(
        default="placeholder",
        description=(
            "placeholder: low-priority pause pods that request a whole node's GPUs, so "
            "cluster-autoscaler or Karpenter adds nodes ahead of demand and real pods preempt them "
            "(the portable way); machinedeployment: the scale subresource of a Cluster API "
            "MachineDeployment; karpenter: spec.replicas of a static Karpenter NodePool; none: "
            "replicas only."
        ),
    )
    namespace: str = Field(default="aiops-system", pattern=_DNS_LABEL,
                           description="Namespace of the placeholder pods or the MachineDeployment.")
    name: str | None = Field(default=None, min_length=1,
                             description="MachineDeployment or NodePool name. Null: the pool's name.")
    node_selector: dict[str, str] = Field(default={}, description="Placeholder pods: the pool's node labels.")
    tolerations: list[dict[str, str]] = Field(default=[], description="Placeholder pods: tolerations of the pool's taints.")


class WorkloadKubernetesConfig(_Section):
    """Key ``kubernetes`` of a workload: the object the agent scales, and how far it may go."""

    kind: Literal["Deployment", "StatefulSet"] = Field(default="Deployment", description="Kind of the object that runs the replicas.")
    name: str | None = Field(default=None, min_length=1, description="Its name. Null: metrics.deployment, else the workload's name.")
    namespace: str | None = Field(default=None, pattern=_DNS_LABEL, description="Its namespace. Null: metrics.namespace.")
    actuation: Literal["scale", "floor"] = Field(
        default="scale",
        description=(
            "scale: write replicas through the scale subresource; floor: write the HPA's "
            "minReplicas, so the HPA keeps reacting above the agent's floor."
        ),
    )
    hpa_name: str | None = Field(default=None, min_length=1, description="With actuation floor: the HPA's name. Null: the object's name.")
    mode: AgentMode | None = Field(
        default=None,
        description="dry-run, recommend or auto for this workload. Null: agent.mode.",
    )


class NodePoolConfig(_Section):
    """One entry of ``node_pools``: identical GPU nodes that the cluster autoscaler manages."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=_DNS_LABEL,
        description=(
            "Pool name, a DNS-1123 label as Kubernetes node-pool names are: lowercase letters, "
            "digits and '-', starting and ending with a letter or digit, at most 63 characters. "
            "Workloads refer to the pool by this name."
        ),
    )
    gpus_per_node: int = Field(
        default=8,
        ge=1,
        le=1024,
        description=(
            "GPUs on one node of this pool. 8 is the usual size of a data-centre GPU server "
            "(e.g. an 8x H100 instance)."
        ),
    )
    provisioning_seconds: float = Field(
        default=360.0,
        ge=0,
        le=86_400,
        description=(
            "Time from the autoscaler requesting a node to the node being ready for pods, in "
            "seconds. 360 s (6 min) is a typical cloud GPU VM boot plus driver and device-plugin "
            "start-up."
        ),
    )
    min_nodes: int = Field(
        default=0,
        ge=0,
        description=(
            "Nodes the pool never scales below. 0 lets an idle pool scale to zero, the usual "
            "setting for an autoscaled GPU pool."
        ),
    )
    max_nodes: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description=(
            "Nodes the pool never scales above (a quota or budget cap); must be >= min_nodes. "
            "64 nodes (512 GPUs at 8 per node) is large enough not to bind in the default "
            "scenarios."
        ),
    )
    price_per_gpu_hour: float = Field(
        default=2.5,
        ge=0,
        description=(
            "Price of one GPU for one hour, in USD, used to cost the provisioned nodes. 2.5 USD "
            "is a ballpark on-demand cloud H100 rate."
        ),
    )
    actual_provisioning_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description=(
            "Simulation only: how long this pool's nodes really take to become ready, when it "
            "differs from provisioning_seconds (what the policies are told). Null: the same. "
            "Lets a simulation show the predictive policy measuring the real lead time."
        ),
    )
    idle_removal_seconds: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description=(
            "How long a node must stay empty before the cluster autoscaler removes it, in "
            "seconds. 600 s is the Kubernetes cluster-autoscaler default "
            "(--scale-down-unneeded-time=10m)."
        ),
    )

    kubernetes: PoolKubernetesConfig = Field(
        default=PoolKubernetesConfig(), description="How the agent requests this pool's nodes ahead of demand."
    )

    @field_validator("max_nodes")
    @classmethod
    def _max_nodes_not_below_min(cls, max_nodes: int, info: ValidationInfo) -> int:
        min_nodes = info.data.get("min_nodes")
        if min_nodes is not None and max_nodes < min_nodes:
            raise ValueError(f"must be >= min_nodes ({min_nodes})")
        return max_nodes


class LatencyModelConfig(_Section):
    """Key ``latency`` of a workload: how a replica's p95 latency grows with its load."""

    base_p95_seconds: float = Field(
        default=0.8,
        gt=0,
        description=(
            "p95 request latency of a replica at zero load, in seconds; must be below the "
            "workload's SLO. 0.8 s is a plausible p95 for a short chat completion on an idle "
            "LLM replica."
        ),
    )
    exponent: float = Field(
        default=3.0,
        gt=0,
        description=(
            "Curvature of p95 latency in utilisation: higher keeps latency flat for longer and "
            "then rises more steeply near saturation. 3.0 gives a gentle rise at moderate load "
            "and a steep one close to capacity, roughly the shape of queueing delay."
        ),
    )
    max_throughput_factor: float = Field(
        default=1.25,
        ge=1,
        description=(
            "Saturation throughput of a replica as a multiple of capacity_rps (its throughput "
            "at the SLO). Between the two, requests are served but slower than the SLO; beyond "
            "it they are not served. 1.25 is the modest headroom of a batching inference server."
        ),
    )
    timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3_600,
        description=(
            "Latency reported for requests nothing can serve (no ready replica, or demand "
            "beyond saturation), in seconds. 60 s is a common client or gateway timeout."
        ),
    )


class SLOConfig(_Section):
    """Key ``slo`` of a workload: the service-level objective the autoscalers are judged by."""

    latency_p95_seconds: float = Field(
        default=2.0,
        gt=0,
        description=(
            "p95 request latency the workload must stay at or below, in seconds; capacity_rps "
            "is measured against it. 2.0 s is a typical target for interactive chat."
        ),
    )



SERVER_KINDS = ("vllm", "triton", "tgi", "generic")
ServerKind = Literal["vllm", "triton", "tgi", "generic"]


class WorkloadMetricsConfig(_Section):
    """Key ``metrics`` of a workload: where its metrics live in Prometheus (``aiops/queries.py``).

    Queries come from a catalogue per serving stack, templated with these fields; any one can be
    replaced (``queries: {latency_p95: '...'}``) or turned off (``queries: {kv_cache_usage: null}``).
    """

    server: ServerKind = Field(
        default="vllm",
        description=(
            "Serving stack the replicas run, which picks the query templates: vllm, triton, tgi, "
            "or generic (an http_requests_total counter and an http_request_duration_seconds "
            "histogram)."
        ),
    )
    namespace: str = Field(
        default="default", pattern=_DNS_LABEL, description="Kubernetes namespace of the workload's pods and Deployment."
    )
    deployment: str | None = Field(
        default=None,
        min_length=1,
        description="Deployment (kube-state-metrics' deployment label) that runs it. Null: the workload's name.",
    )
    pod_regex: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Regular expression for its pods' names, used to select serving and DCGM GPU series "
            "by their pod label. Null: '<deployment>-.*'."
        ),
    )
    matchers: str = Field(
        default="",
        description=(
            "Extra PromQL label matchers for the serving metrics, e.g. 'model_name=\"llama-3-8b\"' "
            "when several models share pods. Empty: none."
        ),
    )
    queries: dict[str, str | None] = Field(
        default={},
        description=(
            "Per metric, a PromQL query that replaces the catalogue's (it may use $namespace, "
            "$deployment, $pod_regex, $selector, $window), or null to skip that metric."
        ),
    )


class PrometheusConfig(_Section):
    """Key ``prometheus``: the server the agent reads (Prometheus, Thanos Query or Mimir).

    Secrets are never written here: a bearer token or password comes from an environment variable
    (set from a Kubernetes Secret) or a mounted file.
    """

    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description=(
            "Base URL of the Prometheus HTTP API, e.g. http://prometheus-operated.monitoring:9090, "
            "or a Mimir/Thanos prefix such as http://mimir/prometheus. Null: none configured "
            "(commands that need one take --prometheus)."
        ),
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="Per-request timeout, in seconds; a request that takes longer is retried."
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "Retries after a connection error, a timeout or HTTP 429/500/502/503/504, with "
            "exponential backoff; 429's Retry-After is honoured."
        ),
    )
    backoff_seconds: float = Field(
        default=0.5, ge=0, le=60, description="First retry delay; it doubles with each retry."
    )
    bearer_token_env: str | None = Field(
        default=None, min_length=1, description="Environment variable holding a bearer token (from a Secret)."
    )
    bearer_token_file: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "File holding a bearer token, re-read on every request (a projected service-account "
            "token rotates), e.g. /var/run/secrets/kubernetes.io/serviceaccount/token."
        ),
    )
    basic_auth_username: str | None = Field(default=None, min_length=1, description="User for HTTP basic auth.")
    basic_auth_password_env: str | None = Field(
        default=None, min_length=1, description="Environment variable holding the basic-auth password (from a Secret)."
    )
    headers: dict[str, str] = Field(
        default={},
        description="Extra request headers, e.g. {X-Scope-OrgID: team-a} for a Mimir tenant. Not for secrets.",
    )
    ca_file: str | None = Field(
        default=None, min_length=1, description="CA bundle (PEM) to verify the server's TLS certificate."
    )
    insecure_skip_verify: bool = Field(
        default=False, description="Skip TLS verification (testing only; never in production)."
    )
    step_seconds: float = Field(
        default=60.0, ge=1, le=3600, description="Resolution of pulled history, in seconds (the forecasters' step)."
    )
    rate_window: str = Field(
        default="2m",
        pattern=r"^[0-9]+(ms|s|m|h|d)$",
        description=(
            "Window of rate() and histogram_quantile() in the catalogue: at least four scrape "
            "intervals, so one lost scrape leaves no hole."
        ),
    )
    max_points_per_query: int = Field(
        default=11_000,
        ge=2,
        le=11_000,
        description=(
            "Points per series in one range query; longer ranges are split. Prometheus refuses "
            "more than 11,000."
        ),
    )
    workers: int = Field(
        default=8, ge=1, le=64, description="Range queries run in parallel when pulling history."
    )
    compress_responses: bool = Field(
        default=False,
        description=(
            "Ask for gzip-compressed answers. Off by default: on a cluster network the server's "
            "compression costs more than the transfer it saves (pulling history from a local "
            "Prometheus is about 3x faster without it); turn it on over slow links."
        ),
    )
    queries: dict[str, str | None] = Field(
        default={},
        description="Cluster-wide queries (allocatable_gpus, gpus_in_use, pending_gpu_pods) to replace, or null to skip.",
    )

    @field_validator("basic_auth_password_env")
    @classmethod
    def _password_needs_user(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("basic_auth_username") is None:
            raise ValueError("needs basic_auth_username")
        return value

    @field_validator("insecure_skip_verify")
    @classmethod
    def _one_token_source(cls, value: bool, info: ValidationInfo) -> bool:
        if info.data.get("bearer_token_env") and info.data.get("bearer_token_file"):
            raise ValueError("set bearer_token_env or bearer_token_file, not both")
        return value


class _WorkloadSettings(_Section):
    """The fields a listed workload and ``workload_defaults`` share, with their checks."""

    node_pool: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Name of the node pool (from node_pools) the replicas run on. Null means the first "
            "pool, so a single-pool file needs no reference."
        ),
    )
    node_pools: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Several pools the replicas may run on (e.g. [a100, h100]) instead of node_pool: the "
            "predictive policy places the workload on the cheapest one with room, and the "
            "simulation starts it there. Null: node_pool alone."
        ),
    )
    gpus_per_replica: int = Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "GPUs one replica needs, all on one node, so at most the pool's gpus_per_node. "
            "1 suits a model that fits on one GPU."
        ),
    )
    startup_seconds: float = Field(
        default=180.0,
        ge=0,
        le=86_400,
        description=(
            "Time from a replica being scheduled on a ready node to it serving traffic (image "
            "pull, weight loading, warm-up), in seconds. 180 s is typical for loading a model "
            "of tens of gigabytes."
        ),
    )
    capacity_rps: float = Field(
        default=4.0,
        ge=1e-6,
        le=1e9,
        description=(
            "Requests per second one replica sustains while meeting the latency SLO. 4.0 is a "
            "rough figure for a single-GPU chat replica; measure it for a real workload."
        ),
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description=(
            "Replicas kept even with no demand. 1 avoids cold starts, which would add "
            "startup_seconds to the first request after a quiet spell."
        ),
    )
    max_replicas: int = Field(
        default=512,
        ge=1,
        le=10_000_000,
        description=(
            "Replicas never exceeded (like an HPA's maxReplicas); must be >= min_replicas. 512 "
            "is high enough not to bind by default, leaving the node pool's max_nodes as the cap."
        ),
    )
    slo_miss_cost_per_hour: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Dollars one replica short of the SLO costs per hour (refunds, lost users, pages). "
            "With the GPU price it sets the forecast quantile the predictive policy sizes for "
            "(newsvendor: miss / (miss + GPU cost of a replica)). Null: "
            "policies.predictive.slo_miss_cost_per_hour."
        ),
    )
    quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description=(
            "Forecast quantile to size this workload for, overriding the cost-derived one. "
            "Null: from the costs (or policies.predictive.quantile when that is set)."
        ),
    )
    actual_capacity_rps: float | None = Field(
        default=None,
        ge=1e-6,
        description=(
            "Simulation only: the load one replica really sustains at the SLO, when it differs "
            "from capacity_rps (the configured prior). Null: the same. The predictive policy "
            "learns it from observed latency; reactive keeps using the prior."
        ),
    )
    actual_startup_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description=(
            "Simulation only: how long replicas really take to start, when it differs from "
            "startup_seconds. Null: the same. The predictive policy measures it (rolling p90)."
        ),
    )
    slo: SLOConfig = Field(
        default=SLOConfig(),
        description="Service-level objective; the default is SLOConfig's defaults.",
    )
    latency: LatencyModelConfig = Field(
        default=LatencyModelConfig(),
        description="Latency model of one replica; the default is LatencyModelConfig's defaults.",
    )
    metrics: WorkloadMetricsConfig = Field(
        default=WorkloadMetricsConfig(),
        description="Where its metrics live in Prometheus; the default is WorkloadMetricsConfig's defaults.",
    )
    kubernetes: WorkloadKubernetesConfig = Field(
        default=WorkloadKubernetesConfig(),
        description="The Kubernetes object the agent scales, and its mode.",
    )

    @field_validator("max_replicas")
    @classmethod
    def _max_replicas_not_below_min(cls, max_replicas: int, info: ValidationInfo) -> int:
        min_replicas = info.data.get("min_replicas")
        if min_replicas is not None and max_replicas < min_replicas:
            raise ValueError(f"must be >= min_replicas ({min_replicas})")
        return max_replicas

    @field_validator("latency")
    @classmethod
    def _base_latency_below_slo(
        cls, latency: LatencyModelConfig, info: ValidationInfo
    ) -> LatencyModelConfig:
        slo = info.data.get("slo")
        if slo is not None and latency.base_p95_seconds >= slo.latency_p95_seconds:
            raise _Problems(
                [
                    (
                        ("base_p95_seconds",),
                        f"must be below slo.latency_p95_seconds ({slo.latency_p95_seconds}), "
                        f"or the SLO is missed even at zero load "
                        f"(got {latency.base_p95_seconds})",
                    )
                ]
            )
        return latency


class WorkloadDefaults(_WorkloadSettings):
    """Key ``workload_defaults``: the settings of trace workloads that ``workloads`` does not list.

    Same fields as :class:`WorkloadConfig` without ``name``. Workloads that *are* listed take
    their unset fields from the built-in defaults, not from here.
    """


class _WorkloadName(_Section):
    name: str = Field(
        min_length=1,
        description="Workload name; must match the workload column of the demand trace.",
    )


# Bases in this order so that `name` comes first in dumps and in the JSON schema.
class WorkloadConfig(_WorkloadSettings, _WorkloadName):
    """One entry of ``workloads``: an inference service and how its replicas behave."""


class ReactiveConfig(_Section):
    """Key ``policies.reactive``: an HPA-like policy that scales on observed utilisation."""

    target_utilization: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description=(
            "Utilisation (demand / ready capacity) the policy steers towards, like an HPA "
            "target. 0.7 leaves 30 % headroom for growth while new replicas start, a common "
            "HPA setting."
        ),
    )
    tolerance: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description=(
            "Relative deviation from the target that is ignored rather than scaled on. 0.1 is "
            "the Kubernetes HPA default (--horizontal-pod-autoscaler-tolerance)."
        ),
    )
    scale_down_stabilization_seconds: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Scale down only to the highest recommendation of this many past seconds, to avoid "
            "flapping. 300 s is the Kubernetes HPA default scale-down stabilization window."
        ),
    )


class PredictiveConfig(_Section):
    """Key ``policies.predictive``: a policy that provisions ahead of forecast demand."""

    forecaster: str = Field(
        default="auto",
        description=(
            "Demand forecaster, by registered name (see `aiops backtest --help`). `auto` picks per "
            "workload, by rolling-origin backtest, among naive, seasonal-naive and a seasonal "
            "profile model, with conformally calibrated quantiles."
        ),
    )
    quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description=(
            "One forecast quantile for every workload, in (0.5, 1). Null (the default): per "
            "workload from the costs, miss / (miss + GPU cost of a replica) (newsvendor), or "
            "the workload's own quantile."
        ),
    )
    slo_miss_cost_per_hour: float = Field(
        default=50.0,
        gt=0,
        description=(
            "Default dollars per hour one replica short of the SLO costs, for workloads that "
            "set none. $50/h against a $2.50/h GPU sizes for the 0.952 quantile and keeps an "
            "idle replica while it has more than a 5 % chance of being needed within its cold start."
        ),
    )
    target_utilization: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description=(
            "Fraction of a replica's SLO capacity to plan for at the forecast quantile. 0.9 "
            "leaves 10 % for what a forecast cannot see (flash crowds, a slower start); in the "
            "frontier benchmark that headroom buys SLO more cheaply than a higher quantile does."
        ),
    )
    keep_warm: bool = Field(
        default=True,
        description=(
            "Scale down only replicas whose chance of being needed again within their cold start, "
            "times the miss cost, is below their idle cost (GPU economics)."
        ),
    )
    scale_down_stabilization_seconds: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Scale down only to the highest of this policy's answers over this many past seconds. "
            "0 by default: keep_warm already holds replicas through dips worth holding."
        ),
    )
    max_scale_up_per_minute: float = Field(
        default=1.0,
        gt=0,
        description="Largest growth per minute as a fraction of current replicas (at least 4 replicas a minute). 1.0 = double.",
    )
    max_scale_down_per_minute: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Largest shrink per minute as a fraction of current replicas (at least 1 replica a minute).",
    )
    quality_gate_ratio: float = Field(
        default=5.0,
        gt=1,
        description=(
            "Live forecast error over its backtest baseline above which the forecast is ignored "
            "and reactive alone decides, until the ratio falls below quality_recover_ratio."
        ),
    )
    quality_recover_ratio: float = Field(
        default=2.0,
        gt=0,
        description="Error ratio below which a gated workload uses its forecast again (hysteresis).",
    )
    floor_utilization: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description=(
            "The safety net: never fewer replicas than the observed load needs at this fraction "
            "of their SLO capacity. Without a usable forecast (none yet, or the quality gate "
            "closed) the policy falls back to policies.reactive, the HPA users run today."
        ),
    )
    follow_trend: bool = Field(
        default=False,
        description=(
            "Where observed demand is rising (a 10-minute median slope beyond 2 standard errors), "
            "size for the larger of the forecast and the trend's linear projection over the lead "
            "time (PromQL predict_linear style). Off by default: it helps on smooth ramps "
            "(ServeGen m-small: 312 -> 251 SLO-violating minutes at +0.8 % cost) but costs 8 % "
            "more on bursty traffic whose forecast already knows the daily ramp (NASA)."
        ),
    )
    pool_stickiness: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="Recommend moving a workload to another eligible node pool only when it is this much cheaper (0.05 = 5 %).",
    )
    learn_capacity: bool = Field(
        default=True,
        description="Learn each workload's capacity per replica from observed (load, latency); capacity_rps is the prior.",
    )
    measure_lead_times: bool = Field(
        default=True,
        description="Use the measured p90 of replica startup and node provisioning once enough have been seen.",
    )
    refit_every_seconds: float = Field(
        default=21600.0,
        gt=0,
        description=(
            "How often the forecaster is refit on recent history, in seconds. 21600 s (6 h) "
            "follows drift within a day while keeping fitting cost small."
        ),
    )
    history_days: float = Field(
        default=14.0,
        gt=0,
        description=(
            "Most history used for a fit, in days. 14 days covers two full weeks, so weekday "
            "and weekend patterns are each seen twice while old behaviour ages out."
        ),
    )
    fill_idle_gpus: bool = Field(
        default=True,
        description=(
            "Run warm replicas on GPUs left idle on the nodes the plan pays for anyway (nodes "
            "come in whole units). True by default: it costs no extra GPU-hour and a warm replica "
            "absorbs a burst at once; turn it off where other tenants use those GPUs."
        ),
    )

    @field_validator("quality_recover_ratio")
    @classmethod
    def _recover_not_above_gate(cls, recover: float, info: ValidationInfo) -> float:
        gate = info.data.get("quality_gate_ratio")
        if gate is not None and recover > gate:
            raise ValueError(f"must be <= quality_gate_ratio ({gate}): a gate that reopens above the ratio "
                             "that closed it would flap open and shut")
        return recover

    @field_validator("forecaster")
    @classmethod
    def _known_forecaster(cls, name: str) -> str:
        from forecasters import MODELS

        if name not in MODELS:
            raise ValueError(f"unknown forecaster {name!r}; choose from {', '.join(MODELS)}")
        return name


class OracleConfig(_Section):
    """Key ``policies.oracle``: the oracle sees future demand exactly; it has no settings yet.

    The section exists so ``oracle: {}`` validates and a misspelt key is still reported.
    """


class PoliciesConfig(_Section):
    """Key ``policies``: which autoscaling policies to compare, and their settings."""

    reactive: ReactiveConfig = Field(
        default=ReactiveConfig(), description="Settings of the reactive (HPA-like) policy."
    )
    predictive: PredictiveConfig = Field(
        default=PredictiveConfig(), description="Settings of the forecast-driven policy."
    )
    oracle: OracleConfig = Field(
        default=OracleConfig(), description="Settings of the perfect-foresight policy (none yet)."
    )
    enabled: list[PolicyName] = Field(
        default=list(POLICY_NAMES),
        min_length=1,
        description=(
            "Policies to simulate, each at most once. All three by default, so one run "
            "compares reactive and predictive scaling against the oracle's bound."
        ),
    )

    @field_validator("enabled")
    @classmethod
    def _no_duplicate_policies(cls, enabled: list[str]) -> list[str]:
        _raise_if_any(
            [((index,), f"{name!r} is already listed") for index, name in _repeats(enabled)]
        )
        return enabled



class AgentConfig(_Section):
    """Key ``agent``: the in-cluster control loop (``aiops run``)."""

    mode: AgentMode = Field(
        default="dry-run",
        description=(
            "dry-run: decisions are logged, exported and posted as Kubernetes Events, nothing is "
            "applied; recommend: decisions go to humans and are applied once approved; auto: "
            "applied within the guardrails. Start in dry-run; a workload may override it."
        ),
    )
    policy: Literal["predictive", "reactive"] = Field(default="predictive", description="The policy that decides.")
    collect_interval_seconds: float = Field(default=30.0, ge=5, le=3600, description="How often metrics are read.")
    decide_interval_seconds: float = Field(default=60.0, ge=10, le=3600, description="How often the policy decides and acts.")
    anomaly_interval_seconds: float = Field(default=60.0, ge=10, le=3600, description="How often anomaly detectors run.")
    retrain_interval_seconds: float = Field(default=86_400.0, ge=600, description="How often forecasters are backtested and retrained (and at once on drift).")
    reload_interval_seconds: float = Field(default=300.0, ge=10, description="How often the model registry is checked for a newly promoted model.")
    history_days: float = Field(default=7.0, gt=0, le=90, description="Demand history pulled at start for the forecasters.")
    listen_address: str = Field(default="0.0.0.0", min_length=1, description="Address of /metrics, /healthz, /readyz and the approval endpoint.")
    port: int = Field(default=8080, ge=0, le=65535, description="Their port (0: any free port).")
    state_dir: str = Field(default="/var/lib/aiops", min_length=1, description="Decision log (decisions.jsonl) and model registry.")
    model_name: str = Field(
        default="",
        description=(
            "A forecaster registered by `aiops train` (the chart's training CronJob) to forecast with, "
            "loaded from the model registry ($AIOPS_MODEL_REGISTRY, else STATE_DIR/models) and reloaded "
            "when a new version is promoted. Empty: the agent fits policies.predictive.forecaster itself."
        ),
    )
    approval_ttl_seconds: float = Field(
        default=1800.0, ge=60, le=86_400,
        description="How long a recommended decision waits for approval before it expires (a stale recommendation is never applied).",
    )
    leader_election: bool = Field(default=True, description="Elect one acting replica with a coordination.k8s.io Lease.")
    lease_name: str = Field(default="aiops-agent", pattern=_DNS_LABEL, description="The Lease's name.")
    lease_namespace: str = Field(default="aiops-system", pattern=_DNS_LABEL, description="The Lease's namespace.")


ActionMode = Literal["recommend", "auto"]


class AnomalyConfig(_Section):
    """Key ``anomalies``: the agent's anomaly scan, incidents and notifications (``aiops run``)."""

    enabled: bool = Field(default=True, description="Run the anomaly scan job (every agent.anomaly_interval_seconds).")
    gpu_metrics: bool = Field(default=True, description="Read the DCGM exporter's per-GPU metrics (XID, throttling, memory, clocks).")
    stale_after_seconds: float = Field(
        default=180.0, ge=30, le=3600, description="A series with no sample for this long is stale (a dead exporter looks like calm data)."
    )
    action_modes: dict[Literal["scale_up", "cordon_drain", "restart_pod", "reset_gpu", "rollback", "investigate"], ActionMode] = Field(
        default={},
        description=(
            "Per suggested action kind, recommend (default: a human approves) or auto. The agent itself only "
            "applies scale_up (through the workload's actuator); the others are always for humans to carry out."
        ),
    )
    max_auto_pods: int = Field(default=4, ge=0, description="Blast radius: an automatic action touching more pods is only recommended.")
    approvers: list[str] = Field(default=[], description="Slack user ids allowed to approve (empty: anyone in the channel).")
    public_url: str = Field(
        default="", description="The agent's URL as humans reach it, for signed approval links (empty: Slack buttons only)."
    )
    group_wait_seconds: float = Field(default=30.0, ge=0, le=600, description="New incidents on one workload or node within this are one message.")
    resolve_after_seconds: float = Field(default=600.0, ge=60, description="An incident not seen for this long is resolved.")
    renotify_after_seconds: float = Field(default=14_400.0, ge=600, description="An unchanged open incident is repeated after this.")
    rate_limit: int = Field(default=20, ge=1, le=1000, description="Messages per channel per 10 minutes; the rest are summarised.")


class SimConfig(_Section):
    """The whole configuration file."""

    simulation: SimulationSettings = Field(
        default=SimulationSettings(), description="Simulation clock and seed."
    )
    node_pools: list[NodePoolConfig] = Field(
        default=[NodePoolConfig(name="gpu-h100")],
        min_length=1,
        description=(
            "GPU node pools, with unique names; at least one. Workloads without node_pool use "
            "the first. Default: one pool, 'gpu-h100', with the default settings."
        ),
    )
    workloads: list[WorkloadConfig] = Field(
        default=[WorkloadConfig(name="llm-chat")],
        description=(
            "Settings of named workloads, with unique names. May be empty, in which case every "
            "trace workload uses workload_defaults. Default: one workload, 'llm-chat', with the "
            "default settings."
        ),
    )
    workload_defaults: WorkloadDefaults = Field(
        default=WorkloadDefaults(),
        description="Settings of trace workloads that workloads does not list.",
    )
    policies: PoliciesConfig = Field(
        default=PoliciesConfig(), description="Policies to compare and their settings."
    )
    prometheus: PrometheusConfig = Field(
        default=PrometheusConfig(), description="The Prometheus-compatible server the agent reads metrics from."
    )
    agent: AgentConfig = Field(default=AgentConfig(), description="The in-cluster agent's loop, modes and endpoints.")
    anomalies: AnomalyConfig = Field(default=AnomalyConfig(), description="The agent's anomaly scan, incidents and notifications.")

    @field_validator("node_pools")
    @classmethod
    def _unique_pool_names(cls, pools: list[NodePoolConfig]) -> list[NodePoolConfig]:
        names = [pool.name for pool in pools]
        _raise_if_any(
            [
                ((index, "name"), f"duplicate node pool name {name!r}")
                for index, name in _repeats(names)
            ]
        )
        return pools

    @field_validator("workloads")
    @classmethod
    def _check_workloads(
        cls, workloads: list[WorkloadConfig], info: ValidationInfo
    ) -> list[WorkloadConfig]:
        names = [workload.name for workload in workloads]
        problems = [
            ((index, "name"), f"duplicate workload name {name!r}")
            for index, name in _repeats(names)
        ]
        pools = info.data.get("node_pools")
        if pools is not None:
            for index, workload in enumerate(workloads):
                problems += [
                    ((index, *loc), message) for loc, message in _placement(workload, pools)
                ]
        _raise_if_any(problems)
        return workloads

    @field_validator("workload_defaults")
    @classmethod
    def _check_workload_defaults(
        cls, defaults: WorkloadDefaults, info: ValidationInfo
    ) -> WorkloadDefaults:
        pools = info.data.get("node_pools")
        if pools is not None:
            _raise_if_any(_placement(defaults, pools))
        return defaults

    def workload_for(self, name: str) -> WorkloadConfig:
        """Settings of workload ``name``: its ``workloads`` entry, else ``workload_defaults``."""
        for workload in self.workloads:
            if workload.name == name:
                return workload
        defaults = self.workload_defaults
        template = {field: getattr(defaults, field) for field in WorkloadDefaults.model_fields}
        return WorkloadConfig(name=name, **template)

    def pool(self, name: str | None) -> NodePoolConfig:
        """The node pool called ``name``; ``None`` means the first pool.

        Raises ``KeyError`` for an unknown name (validation guarantees workloads never hold one).
        """
        if name is None:
            return self.node_pools[0]
        for pool in self.node_pools:
            if pool.name == name:
                return pool
        known = ", ".join(pool.name for pool in self.node_pools)
        raise KeyError(f"no node pool named {name!r} (pools: {known})")


def _repeats(names: Sequence[str]) -> list[tuple[int, str]]:
    """(index, name) of each name that already occurred earlier in ``names``."""
    seen: set[str] = set()
    repeats = []
    for index, name in enumerate(names):
        if name in seen:
            repeats.append((index, name))
        seen.add(name)
    return repeats


def _placement(
    workload: _WorkloadSettings, pools: Sequence[NodePoolConfig]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems placing ``workload``'s replicas: unknown pool, or a replica too big for a node."""
    by_name = {pool.name: pool for pool in pools}
    if workload.node_pools is not None:
        problems = []
        for k, name in enumerate(workload.node_pools):
            if name not in by_name:
                problems.append((("node_pools", k), f"no node pool named {name!r} (pools: {', '.join(by_name)})"))
            elif by_name[name].gpus_per_node % workload.gpus_per_replica:
                problems.append((("node_pools", k), f"gpus_per_replica ({workload.gpus_per_replica}) must divide "
                                 f"gpus_per_node ({by_name[name].gpus_per_node}) of node pool {name!r}"))
        if workload.node_pool is not None and workload.node_pool not in workload.node_pools:
            problems.append((("node_pool",), f"must be one of node_pools ({', '.join(workload.node_pools)}) when both are set"))
        if problems:
            return problems
    if workload.node_pool is None:
        pool = pools[0]
    elif workload.node_pool in by_name:
        pool = by_name[workload.node_pool]
    else:
        known = ", ".join(by_name)
        return [(("node_pool",), f"no node pool named {workload.node_pool!r} (pools: {known})")]
    if pool.gpus_per_node % workload.gpus_per_replica:
        # The simulator treats a pool's GPUs as interchangeable, which is exact only when replicas
        # tile a node: 3-GPU replicas on 8-GPU nodes would strand GPUs it cannot see.
        return [
            (
                ("gpus_per_replica",),
                f"must divide gpus_per_node ({pool.gpus_per_node}) of node pool {pool.name!r} "
                f"(got {workload.gpus_per_replica})",
            )
        ]
    return []


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def default_config() -> SimConfig:
    """The configuration used when no file is given: every default above."""
    return SimConfig()


def load_config(path: str | os.PathLike[str] | None) -> SimConfig:
    """Read and validate a YAML configuration file; ``None`` gives :func:`default_config`.

    An empty file (or one with only comments, or ``null``) is the default configuration.
    Raises :class:`ConfigError` with a one-line message for anything wrong.
    """
    if path is None:
        return default_config()
    where = os.fspath(path)
    data = _parse_yaml(read_text(where, ConfigError, "config file"), where)
    return config_from_mapping({} if data is None else data, where)


def config_from_mapping(data: Mapping[str, Any], where: str = "<config>") -> SimConfig:
    """Validate an already-parsed configuration; ``where`` names its source in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"top level must be a mapping (got {type(data).__name__})")
    try:
        return SimConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(where, _one_line(_describe_errors(error))) from None


def config_json_schema() -> dict[str, Any]:
    """JSON schema of the configuration file, with every field's description and default."""
    return SimConfig.model_json_schema()


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``1e6`` and ``2.5E-3`` as numbers (YAML 1.2 floats).

    YAML 1.1, which PyYAML follows, needs a dot (``1.0e6``); without this a user's ``1e6`` would
    arrive as the text ``'1e6'`` and be rejected with a puzzling message.
    """


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_SafeLoader)  # a SafeLoader: plain data only, never objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = f"{where}:{mark.line + 1}" if mark is not None else where
        raise ConfigError(location, _one_line(error.problem or str(error))) from None
    except yaml.YAMLError as error:
        raise ConfigError(where, _one_line(f"invalid YAML: {error}")) from None


# --------------------------------------------------------------------------------------------
# Error messages
# --------------------------------------------------------------------------------------------


def _describe_errors(error: ValidationError) -> str:
    """Every validation error as ``path: message (got VALUE)``, joined by ``"; "``."""
    parts: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, _Problems):
            parts += [f"{_dotted(loc + sub_loc)}: {message}" for sub_loc, message in cause.problems]
        elif item["type"] == "extra_forbidden":
            parts.append(f"{_dotted(loc)}: unknown field{_suggestion(loc)}")
        elif item["type"] == "invalid_key":
            where = _dotted(loc[:-1]) or "top level"
            parts.append(f"{where}: keys must be strings (got {loc[-1]!r})")
        else:
            message = str(cause) if item["type"] == "value_error" else item["msg"]
            value = item.get("input")
            shown = item["type"] != "missing" and not isinstance(value, Mapping)
            got = f" (got {_short(value)})" if shown else ""
            parts.append(f"{_dotted(loc) or 'top level'}: {message}{got}")
    return "; ".join(parts)


def _dotted(loc: Sequence[str | int]) -> str:
    """``("workloads", 0, "slo")`` -> ``workloads[0].slo``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _suggestion(loc: tuple[str | int, ...]) -> str:
    """`` (did you mean 'x'?)`` for a misspelt key, else the keys allowed there."""
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    allowed = list(model.model_fields)
    if not allowed:
        return " (this section takes no keys)"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(allowed)})"


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping found at ``loc`` within a SimConfig."""
    model: type[BaseModel] | None = SimConfig
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the list's item model is already in hand
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as ``X``, ``list[X]`` or ``X | None``."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        model = _model_in(argument)
        if model is not None:
            return model
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
