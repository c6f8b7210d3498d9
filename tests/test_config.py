"""Tests for simulations.config: defaults, loading YAML files, and one-line error messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simulations.config import (
    SimConfig,
    WorkloadConfig,
    config_from_mapping,
    config_json_schema,
    default_config,
    load_config,
)
from simulations.errors import ConfigError, InputError


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_config_text(text: str) -> SimConfig:
    return config_from_mapping(yaml.safe_load(text), "inline.yaml")


def config_error(tmp_path: Path, text: str) -> str:
    """Load ``text`` as a config file; return the ConfigError message, checking its shape."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# --- defaults -------------------------------------------------------------------------------


TARGET_UTILIZATION = 0.9


def test_default_config_values() -> None:
    config = default_config()
    assert config.simulation.step_seconds == 60
    assert config.simulation.seed == 0

    [pool] = config.node_pools
    assert pool.name == "gpu-h100"
    assert (pool.gpus_per_node, pool.min_nodes, pool.max_nodes) == (8, 0, 64)
    assert pool.provisioning_seconds == 360
    assert pool.price_per_gpu_hour == 2.5
    assert pool.idle_removal_seconds == 600

    [workload] = config.workloads
    assert workload.name == "llm-chat"
    assert workload.node_pool is None
    assert workload.gpus_per_replica == 1
    assert workload.startup_seconds == 180
    assert workload.capacity_rps == 4.0
    assert (workload.min_replicas, workload.max_replicas) == (1, 512)
    assert workload.slo.latency_p95_seconds == 2.0
    assert workload.latency.base_p95_seconds == 0.8
    assert workload.latency.exponent == 3.0
    assert workload.latency.max_throughput_factor == 1.25
    assert workload.latency.timeout_seconds == 60

    reactive = config.policies.reactive
    assert (reactive.target_utilization, reactive.tolerance) == (0.7, 0.1)
    assert reactive.scale_down_stabilization_seconds == 300
    predictive = config.policies.predictive
    assert predictive.forecaster == "auto"
    assert (predictive.quantile, predictive.slo_miss_cost_per_hour) == (None, 50.0)
    assert predictive.target_utilization == TARGET_UTILIZATION
    assert (predictive.keep_warm, predictive.learn_capacity, predictive.measure_lead_times) == (True, True, True)
    assert (predictive.quality_gate_ratio, predictive.quality_recover_ratio, predictive.floor_utilization) == (5.0, 2.0, 1.0)
    assert predictive.refit_every_seconds == 21600
    assert predictive.history_days == 14
    assert config.policies.enabled == ["reactive", "predictive", "oracle"]

    assert config.workload_defaults.model_dump() == {
        key: value for key, value in workload.model_dump().items() if key != "name"
    }


def test_load_config_none_is_default() -> None:
    assert load_config(None) == default_config()


def test_models_are_frozen() -> None:
    config = default_config()
    with pytest.raises(ValidationError):
        config.simulation.seed = 3  # type: ignore[misc]


def test_json_schema_documents_every_field() -> None:
    schema = config_json_schema()
    assert schema == SimConfig.model_json_schema()
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


# --- loading files --------------------------------------------------------------------------


def test_empty_file_is_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == default_config()
    assert load_config(write(tmp_path, "# only a comment\n")) == default_config()


def test_partial_yaml_keeps_defaults_elsewhere(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        simulation:
          seed: 7
        workloads:
          - name: llm-chat
            capacity_rps: 6.5
        """,
    )
    config = load_config(path)
    default = default_config()
    assert config.simulation.seed == 7
    assert config.simulation.step_seconds == default.simulation.step_seconds
    assert config.workloads[0].capacity_rps == 6.5
    assert config.workloads[0].slo == default.workloads[0].slo
    assert config.node_pools == default.node_pools
    assert config.policies == default.policies
    assert config.workload_defaults == default.workload_defaults


FULL_YAML = """
simulation:
  step_seconds: 30.0
  seed: 42
node_pools:
  - name: gpu-h100
    gpus_per_node: 8
    provisioning_seconds: 420.0
    min_nodes: 1
    max_nodes: 16
    price_per_gpu_hour: 3.0
    actual_provisioning_seconds: null
    idle_removal_seconds: 900.0
    kubernetes:
      method: placeholder
      namespace: aiops-system
      name: null
      node_selector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  - name: gpu-l4
    gpus_per_node: 4
    provisioning_seconds: 240.0
    min_nodes: 0
    max_nodes: 32
    price_per_gpu_hour: 0.8
    actual_provisioning_seconds: 300.0
    idle_removal_seconds: 300.0
    kubernetes:
      method: karpenter
      namespace: aiops-system
      name: l4-static
      node_selector: {}
      tolerations: []
workloads:
  - name: llm-chat
    node_pool: gpu-h100
    node_pools: [gpu-h100]
    gpus_per_replica: 2
    startup_seconds: 240.0
    capacity_rps: 3.5
    min_replicas: 2
    max_replicas: 40
    slo_miss_cost_per_hour: 120.0
    quantile: 0.97
    actual_capacity_rps: 3.0
    actual_startup_seconds: 300.0
    slo:
      latency_p95_seconds: 1.5
    latency:
      base_p95_seconds: 0.5
      exponent: 2.5
      max_throughput_factor: 1.5
      timeout_seconds: 30.0
    metrics:
      server: vllm
      namespace: serving
      deployment: chat
      pod_regex: chat-.*
      matchers: 'model_name="llama-3-8b"'
      queries:
        kv_cache_usage: null
        queue_depth: 'sum(my_queue{namespace="serving"})'
    kubernetes:
      kind: Deployment
      name: chat
      namespace: serving
      actuation: floor
      hpa_name: chat-hpa
      mode: auto
  - name: embeddings
    node_pool: gpu-l4
    node_pools: null
    gpus_per_replica: 1
    startup_seconds: 60.0
    capacity_rps: 50.0
    min_replicas: 0
    max_replicas: 10
    slo_miss_cost_per_hour: null
    quantile: null
    actual_capacity_rps: null
    actual_startup_seconds: null
    slo:
      latency_p95_seconds: 0.5
    latency:
      base_p95_seconds: 0.1
      exponent: 3.0
      max_throughput_factor: 1.1
      timeout_seconds: 10.0
    metrics:
      server: triton
      namespace: default
      deployment: null
      pod_regex: null
      matchers: ''
      queries: {}
    kubernetes:
      kind: StatefulSet
      name: null
      namespace: null
      actuation: scale
      hpa_name: null
      mode: null
workload_defaults:
  node_pool: gpu-l4
  node_pools: null
  gpus_per_replica: 1
  startup_seconds: 120.0
  capacity_rps: 8.0
  min_replicas: 0
  max_replicas: 20
  slo_miss_cost_per_hour: null
  quantile: null
  actual_capacity_rps: null
  actual_startup_seconds: null
  slo:
    latency_p95_seconds: 3.0
  latency:
    base_p95_seconds: 1.0
    exponent: 4.0
    max_throughput_factor: 1.2
    timeout_seconds: 45.0
  metrics:
    server: generic
    namespace: default
    deployment: null
    pod_regex: null
    matchers: ''
    queries: {}
  kubernetes:
    kind: Deployment
    name: null
    namespace: null
    actuation: scale
    hpa_name: null
    mode: null
policies:
  reactive:
    target_utilization: 0.6
    tolerance: 0.05
    scale_down_stabilization_seconds: 600.0
  predictive:
    forecaster: ets
    quantile: 0.9
    slo_miss_cost_per_hour: 80.0
    target_utilization: 0.85
    keep_warm: false
    scale_down_stabilization_seconds: 120.0
    max_scale_up_per_minute: 2.0
    max_scale_down_per_minute: 0.2
    quality_gate_ratio: 4.0
    quality_recover_ratio: 1.5
    floor_utilization: 0.9
    follow_trend: true
    pool_stickiness: 0.1
    learn_capacity: false
    measure_lead_times: false
    refit_every_seconds: 3600.0
    history_days: 7.0
    fill_idle_gpus: false
  oracle: {}
  enabled: [oracle, reactive]
prometheus:
  url: https://mimir.example/prometheus
  timeout_seconds: 5.0
  retries: 2
  backoff_seconds: 0.25
  bearer_token_env: null
  bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token
  basic_auth_username: null
  basic_auth_password_env: null
  headers: {X-Scope-OrgID: team-a}
  ca_file: /etc/ssl/mimir-ca.pem
  insecure_skip_verify: false
  step_seconds: 30.0
  rate_window: 5m
  max_points_per_query: 5000
  workers: 4
  compress_responses: true
  queries: {allocatable_gpus: null}
agent:
  mode: recommend
  policy: predictive
  collect_interval_seconds: 15.0
  decide_interval_seconds: 30.0
  anomaly_interval_seconds: 60.0
  retrain_interval_seconds: 3600.0
  reload_interval_seconds: 120.0
  history_days: 3.0
  listen_address: 127.0.0.1
  port: 9095
  state_dir: /tmp/aiops
  model_name: auto
  approval_ttl_seconds: 900.0
  leader_election: false
  lease_name: aiops
  lease_namespace: ml-platform
anomalies:
  enabled: true
  gpu_metrics: false
  stale_after_seconds: 240.0
  action_modes: {scale_up: auto, cordon_drain: recommend}
  max_auto_pods: 2
  approvers: [U012ABCDEF]
  public_url: https://aiops.example.com
  group_wait_seconds: 45.0
  resolve_after_seconds: 900.0
  renotify_after_seconds: 7200.0
  rate_limit: 10
"""


def test_full_yaml_round_trips(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_YAML))
    # Every key was given, so the dump is exactly the file's content ...
    assert config.model_dump() == yaml.safe_load(FULL_YAML)
    # ... and writing the dump back out loads to the same config.
    again = write(tmp_path, yaml.safe_dump(config.model_dump()), name="again.yaml")
    assert load_config(again) == config
    assert config.pool("gpu-l4").gpus_per_node == 4
    assert config.pool(None).name == "gpu-h100"
    with pytest.raises(KeyError):
        config.pool("gpu-a100")


def test_default_config_round_trips_through_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(default_config().model_dump()))
    assert load_config(path) == default_config()


def test_workload_for_listed_and_unlisted() -> None:
    config = load_config_text(FULL_YAML)
    assert config.workload_for("embeddings") is config.workloads[1]
    other = config.workload_for("batch-summaries")
    assert isinstance(other, WorkloadConfig)
    assert other.name == "batch-summaries"
    assert other.model_dump(exclude={"name"}) == config.workload_defaults.model_dump()
    assert config.pool(other.node_pool).name == "gpu-l4"


def test_workloads_may_be_empty() -> None:
    config = config_from_mapping({"workloads": []})
    assert config.workloads == []
    assert config.workload_for("llm-chat").capacity_rps == 4.0


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "workloads: [{name: llm-chat, capacity_rps: -1}]",
            ["workloads[0].capacity_rps: Input should be greater than or equal to 0.000001 (got -1)"],
            id="negative-capacity",
        ),
        pytest.param(
            "node_pools: [{name: gpu-h100, gpus_per_node: 0}]",
            ["node_pools[0].gpus_per_node:", "(got 0)"],
            id="zero-gpus-per-node",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, capcity_rps: 3}]",
            ["workloads[0].capcity_rps: unknown field (did you mean 'capacity_rps'?)"],
            id="unknown-key",
        ),
        pytest.param(
            "simulaton: {seed: 1}",
            ["simulaton: unknown field (did you mean 'simulation'?)"],
            id="unknown-section",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, node_pool: gpu-a100}]",
            ["workloads[0].node_pool: no node pool named 'gpu-a100' (pools: gpu-h100)"],
            id="unknown-node-pool",
        ),
        pytest.param(
            "workload_defaults: {node_pool: gpu-a100}",
            ["workload_defaults.node_pool: no node pool named 'gpu-a100'"],
            id="unknown-default-node-pool",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, min_replicas: 5, max_replicas: 2}]",
            ["workloads[0].max_replicas: must be >= min_replicas (5) (got 2)"],
            id="min-replicas-above-max",
        ),
        pytest.param(
            "node_pools: [{name: gpu-h100, min_nodes: 9, max_nodes: 3}]",
            ["node_pools[0].max_nodes: must be >= min_nodes (9) (got 3)"],
            id="min-nodes-above-max",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, gpus_per_replica: 16}]",
            ["workloads[0].gpus_per_replica: must divide gpus_per_node (8)", "(got 16)"],
            id="replica-bigger-than-node",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, latency: {base_p95_seconds: 2.0}}]",
            ["workloads[0].latency.base_p95_seconds: must be below slo.latency_p95_seconds"],
            id="base-latency-at-slo",
        ),
        pytest.param(
            "policies: {predictive: {quantile: 1.0}}",
            ["policies.predictive.quantile: Input should be less than 1 (got 1.0)"],
            id="quantile-one",
        ),
        pytest.param(
            "policies: {predictive: {forecaster: prophet}}",
            ["policies.predictive.forecaster: unknown forecaster 'prophet'; choose from naive"],
            id="unknown-forecaster",
        ),
        pytest.param(
            "policies: {enabled: [reactive, autopilot]}",
            ["policies.enabled[1]: Input should be 'reactive', 'predictive' or 'oracle'"],
            id="unknown-policy",
        ),
        pytest.param(
            "policies: {enabled: [reactive, reactive]}",
            ["policies.enabled[1]: 'reactive' is already listed"],
            id="duplicate-policy",
        ),
        pytest.param(
            "policies: {enabled: []}",
            ["policies.enabled:", "at least 1 item"],
            id="no-policy",
        ),
        pytest.param(
            "workloads: [{name: llm-chat}, {name: llm-chat}]",
            ["workloads[1].name: duplicate workload name 'llm-chat'"],
            id="duplicate-workloads",
        ),
        pytest.param(
            "node_pools: [{name: gpu-h100}, {name: gpu-h100}]",
            ["node_pools[1].name: duplicate node pool name 'gpu-h100'"],
            id="duplicate-pools",
        ),
        pytest.param(
            "node_pools: []",
            ["node_pools:", "at least 1 item"],
            id="no-pools",
        ),
        pytest.param(
            "node_pools: [{name: GPU_pool}]",
            ["node_pools[0].name: String should match pattern", "(got 'GPU_pool')"],
            id="pool-name-not-dns",
        ),
        pytest.param(
            "simulation: {step_seconds: .nan}",
            ["simulation.step_seconds: Input should be a finite number (got nan)"],
            id="nan",
        ),
        pytest.param(
            "simulation: {step_seconds: .inf}",
            ["simulation.step_seconds: Input should be a finite number (got inf)"],
            id="inf",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, capacity_rps: fast}]",
            ["workloads[0].capacity_rps: Input should be a valid number (got 'fast')"],
            id="string-for-number",
        ),
        pytest.param(
            "workloads: [{name: llm-chat, capacity_rps: '4'}]",
            ["workloads[0].capacity_rps: Input should be a valid number (got '4')"],
            id="quoted-number",
        ),
        pytest.param(
            "node_pools: [{name: gpu-h100, gpus_per_node: true}]",
            ["node_pools[0].gpus_per_node: Input should be a valid integer (got True)"],
            id="bool-for-int",
        ),
        pytest.param(
            "workloads: [{capacity_rps: 3}]",
            ["workloads[0].name: Field required"],
            id="missing-name",
        ),
        pytest.param(
            "policies: {oracle: {lookahead_seconds: 60}}",
            ["policies.oracle.lookahead_seconds: unknown field"],
            id="oracle-takes-no-keys",
        ),
        pytest.param(
            "policies: {predictive: {quality_gate_ratio: 3, quality_recover_ratio: 4}}",
            ["policies.predictive.quality_recover_ratio: must be <= quality_gate_ratio (3.0)", "would flap"],
            id="gate-reopens-above-where-it-closes",
        ),
        pytest.param(
            "prometheus: {url: 'prometheus:9090'}",
            ["prometheus.url: String should match pattern"],
            id="prometheus-url-needs-a-scheme",
        ),
        pytest.param(
            "prometheus: {basic_auth_password_env: PROM_PASSWORD}",
            ["prometheus.basic_auth_password_env: needs basic_auth_username"],
            id="password-without-user",
        ),
        pytest.param(
            "prometheus: {max_points_per_query: 20000}",
            ["prometheus.max_points_per_query: Input should be less than or equal to 11000"],
            id="over-prometheus-point-limit",
        ),
        pytest.param(
            "workloads: [{name: chat, metrics: {server: sglang}}]",
            ["workloads[0].metrics.server: Input should be 'vllm', 'triton', 'tgi' or 'generic'"],
            id="unknown-serving-stack",
        ),
    ],
)
def test_invalid_config_is_reported(tmp_path: Path, text: str, expected: list[str]) -> None:
    message = config_error(tmp_path, text)
    for fragment in expected:
        assert fragment in message


def test_several_errors_reported_on_one_line(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        """
        simulation:
          step_seconds: -5
        workloads:
          - name: llm-chat
            capacity_rps: 0
            min_replicas: x
        policies:
          reactive:
            target_utilisation: 0.5
        """,
    )
    problems = message.split(": ", 1)[1].split("; ")
    assert problems == [
        "simulation.step_seconds: Input should be greater than or equal to 1 (got -5)",
        "workloads[0].capacity_rps: Input should be greater than or equal to 0.000001 (got 0)",
        "workloads[0].min_replicas: Input should be a valid integer (got 'x')",
        "policies.reactive.target_utilisation: unknown field "
        "(did you mean 'target_utilization'?)",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "simulation:\n  seed: 1\n  step_seconds: [60\nworkloads: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where == f"{path}:4"
    assert caught.value.problem
    assert "\n" not in str(caught.value)


def test_yaml_indentation_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "simulation:\n  seed: 1\n    step_seconds: 60\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where == f"{path}:3"
    assert caught.value.problem == "mapping values are not allowed here"


@pytest.mark.parametrize("text", ["- simulation\n- policies\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "top level must be a mapping" in config_error(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where == str(path)
    assert caught.value.problem == "no such file"
    assert isinstance(caught.value, InputError)
    assert caught.value.exit_code == 2


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.where == str(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("simulation: {seed: 1}  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.where == f"{path}:1"  # the line of the bad byte
    assert "UTF-8" in caught.value.problem


def test_config_from_mapping_names_its_source() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"simulation": {"seed": -1}}, where="cli --seed")
    assert str(caught.value).startswith("cli --seed: simulation.seed:")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config_from_mapping(["simulation"])  # type: ignore[arg-type]


# --- property: valid values survive model_dump -> config_from_mapping -------------------------

positive = st.floats(min_value=0, exclude_min=True, max_value=1e9, allow_nan=False)
fraction = st.floats(min_value=0, exclude_min=True, max_value=1)


@st.composite
def valid_mappings(draw: st.DrawFn) -> dict:
    gpus_per_node = draw(st.integers(1, 16))
    min_replicas = draw(st.integers(0, 1000))
    slo = draw(st.floats(min_value=1e-3, max_value=1e4))
    base_p95 = draw(st.floats(0, slo, exclude_min=True, exclude_max=True))
    return {
        "simulation": {"step_seconds": draw(st.floats(1, 86_400)), "seed": draw(st.integers(0, 2**63))},
        "node_pools": [{"name": "pool-a", "gpus_per_node": gpus_per_node}],
        "workloads": [
            {
                "name": "w",
                "gpus_per_replica": draw(st.sampled_from([g for g in range(1, gpus_per_node + 1) if gpus_per_node % g == 0])),
                "capacity_rps": draw(st.floats(1e-6, 1e9)),
                "min_replicas": min_replicas,
                "max_replicas": draw(st.integers(max(min_replicas, 1), 10_000)),
                "slo": {"latency_p95_seconds": slo},
                "latency": {"base_p95_seconds": base_p95},
            }
        ],
        "policies": {
            "reactive": {"target_utilization": draw(fraction)},
            "predictive": {
                "quantile": draw(st.floats(0.5, 1, exclude_min=True, exclude_max=True)),
            },
        },
    }


@settings(max_examples=200, deadline=None)
@given(valid_mappings())
def test_valid_values_round_trip(data: dict) -> None:
    config = config_from_mapping(data)
    dumped = config.model_dump()
    assert config_from_mapping(dumped) == config
    assert config_from_mapping(yaml.safe_load(yaml.safe_dump(dumped))) == config
    assert_contains(dumped, data)  # the values given are the values kept


def assert_contains(actual: object, expected: object) -> None:
    """Every key and value in ``expected`` is also in ``actual`` (recursively)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict)
        for key, value in expected.items():
            assert_contains(actual[key], value)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for got, value in zip(actual, expected):
            assert_contains(got, value)
    else:
        assert actual == expected


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workloads:\n  - name: w\n    capacity_rps: 2.5e1\n    startup_seconds: 1e2\n")
    workload = load_config(path).workloads[0]
    assert (workload.capacity_rps, workload.startup_seconds) == (25.0, 100.0)


def test_upper_bounds_stop_values_that_would_exhaust_memory(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("node_pools:\n  - name: p\n    idle_removal_seconds: 6000000\n")
    with pytest.raises(ConfigError, match=r"node_pools\[0\]\.idle_removal_seconds: Input should be less than or equal to 86400"):
        load_config(path)


@pytest.mark.parametrize(
    "workload, message",
    [
        ({"name": "w", "node_pools": ["gpu-h100", "nope"]}, "workloads[0].node_pools[1]: no node pool named 'nope'"),
        ({"name": "w", "gpus_per_replica": 3, "node_pools": ["gpu-h100"]}, "workloads[0].node_pools[0]: gpus_per_replica (3) must divide"),
        ({"name": "w", "node_pool": "gpu-l4", "node_pools": ["gpu-h100"]}, "workloads[0].node_pool: must be one of node_pools"),
    ],
    ids=["unknown pool", "replica does not tile the node", "node_pool outside node_pools"],
)
def test_eligible_node_pools_are_checked_with_one_line_errors(workload, message) -> None:
    pools = [{"name": "gpu-h100"}, {"name": "gpu-l4", "gpus_per_node": 4}]
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"node_pools": pools, "workloads": [workload]}, "c.yaml")
    text = str(info.value)
    assert "\n" not in text and message in text


def test_per_workload_costs_and_simulation_truth_validate() -> None:
    config = config_from_mapping({"workloads": [{"name": "w", "slo_miss_cost_per_hour": 90.0, "quantile": 0.97,
                                                 "actual_capacity_rps": 3.0, "actual_startup_seconds": 240}]})
    w = config.workloads[0]
    assert (w.slo_miss_cost_per_hour, w.quantile, w.actual_capacity_rps, w.actual_startup_seconds) == (90.0, 0.97, 3.0, 240.0)
    with pytest.raises(ConfigError, match="quantile"):
        config_from_mapping({"workloads": [{"name": "w", "quantile": 1.0}]})
    with pytest.raises(ConfigError, match="slo_miss_cost_per_hour"):
        config_from_mapping({"workloads": [{"name": "w", "slo_miss_cost_per_hour": -5}]})
