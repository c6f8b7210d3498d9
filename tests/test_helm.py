"""The Helm chart (helm/gpu-aiops) and the Dockerfile, checked offline.

The chart is rendered and linted by Helm's own Go engine (helm-python-sdk binds libhelm_c, which
its wheel ships: no helm binary, no network). Every rendered manifest is validated against the
Kubernetes OpenAPI schemas in strict mode (kubernetes-validate: unknown fields are errors). That
package has no schema for CRD kinds, so ServiceMonitor and PrometheusRule are named here and
checked by shape instead, and their alert rules by promtool when it is installed (./dev test
installs it). The Dockerfile cannot be built here (no docker): its structure is checked.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart")
kube_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate checks the manifests")

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "gpu-aiops"
RELEASE, NAMESPACE = "aiops", "aiops-system"
FULLNAME = "aiops-gpu-aiops"
KUBE_VERSION = "1.35"  # a recent release that kubernetes-validate ships strict schemas for
# Kinds without an OpenAPI schema in kubernetes-validate (CRDs): checked by shape below instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}

SECRETS = {
    "slack": {"existingSecret": "aiops-slack"},
    "webhook": {"existingSecret": "aiops-webhook"},
    "prometheus": {"existingSecret": "aiops-prometheus"},
    "approval": {"existingSecret": "aiops-approval"},
}
EVERYTHING_ON = {
    "replicaCount": 2,
    "persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "alertLabels": {"team": "ml-platform"}},
    "training": {"enabled": True},
    "networkPolicy": {"enabled": True, "egress": {"kubernetesApi": {"cidrs": ["10.0.0.1/32"]}}},
    "placeholders": {"enabled": True, "namespace": "gpu-placeholders"},
    "rbac": {"actuators": {a: True for a in ("scaleDeployments", "scaleStatefulSets", "hpaFloor", "placeholderPods",
                                             "clusterAPI", "karpenter")},
             "karpenterNodePools": ["gpu-h100"]},
    "secrets": SECRETS,
    "config": {"prometheus": {"url": "http://prometheus-operated.monitoring:9090", "bearer_token_env": "PROMETHEUS_TOKEN"}},
}
ONLY = {a: False for a in ("scaleDeployments", "scaleStatefulSets", "hpaFloor", "placeholderPods", "clusterAPI", "karpenter")}
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "every optional feature on": EVERYTHING_ON,
    "only the HPA floor actuator": {"rbac": {"actuators": {**ONLY, "hpaFloor": True}}},
    "workloads in three namespaces": {"rbac": {"namespaces": ["serving", "batch", "research"]}},
    "persistence off": {"persistence": {"enabled": False}},
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@lru_cache(maxsize=None)
def _render_cached(values_json: str) -> tuple[dict[str, Any], ...]:
    with helm.Chart.load(CHART) as loaded:
        rendered = loaded.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend({**doc, "_template": path} for doc in yaml.safe_load_all(text) if doc)
    return tuple(docs)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The manifests of the chart rendered with these values (deep copies: tests may edit them)."""
    return copy.deepcopy(list(_render_cached(json.dumps(values or {}, sort_keys=True))))


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = only(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# -- every scenario: lint, render, strict schema validation ------------------------------------------


def _check_service_monitor(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    service = one(docs, "Service")
    endpoint, = doc["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert doc["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert doc["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def _check_prometheus_rule(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    rules = [rule for group in doc["spec"]["groups"] for rule in group["rules"]]
    assert all(set(rule) <= {"alert", "expr", "for", "labels", "annotations"} for rule in rules)
    assert all(rule["labels"]["severity"] in {"critical", "warning"} and rule["annotations"]["summary"] for rule in rules)


SHAPE_CHECKS = {"ServiceMonitor": _check_service_monitor, "PrometheusRule": _check_prometheus_rule}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_lints_clean_and_every_manifest_validates_strictly(scenario: str) -> None:
    values = SCENARIOS[scenario]
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report
    docs = render(values)
    assert docs
    for doc in docs:
        where = f"{doc.pop('_template')}: {doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            with pytest.raises(kube_validate.SchemaNotFoundError):  # if it learns them, validate them
                kube_validate.validate(doc, KUBE_VERSION, strict=True)
            SHAPE_CHECKS[doc["kind"]](doc, docs)
            continue
        try:
            kube_validate.validate(doc, KUBE_VERSION, strict=True)
        except kube_validate.ValidationError as exc:
            pytest.fail(f"{where} does not validate: {'.'.join(map(str, exc.path))}: {exc.message}")
        assert doc.get("kind") != "Secret", f"{where}: the chart must never create a Secret"


def test_strict_validation_catches_a_misspelt_field() -> None:
    deployment = one(render(), "Deployment")
    deployment.pop("_template")
    kube_validate.validate(deployment, KUBE_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kube_validate.ValidationError, match="readOnlyRootFileSystem"):
        kube_validate.validate(deployment, KUBE_VERSION, strict=True)


# -- the agent's pod ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_run_non_root_on_a_read_only_root_with_no_capabilities(kind: str) -> None:
    spec = pod_spec(one(render(EVERYTHING_ON), kind))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["fsGroup"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container, = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Writable only where the agent writes: /var/lib/aiops (the PVC) and /tmp (an emptyDir).
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/etc/aiops", "/var/lib/aiops", "/tmp"}
    assert mounts["/etc/aiops"]["readOnly"] is True
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"]
    assert volumes[mounts["/var/lib/aiops"]["name"]]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-state"


def test_the_agent_serves_probes_and_metrics_on_8080_and_runs_its_config() -> None:
    docs = render()
    container, = pod_spec(one(docs, "Deployment"))["containers"]
    assert container["args"] == ["run", "--config", "/etc/aiops/config.yaml"]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["image"] == "gpu-aiops:0.1.0"  # the appVersion, never latest
    port, = one(docs, "Service")["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["port"] == 8080


def test_persistence_off_puts_the_state_in_an_empty_dir_and_creates_no_claim() -> None:
    docs = render({"persistence": {"enabled": False}})
    assert only(docs, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}


def test_the_model_registry_claim_survives_uninstall_and_an_existing_claim_is_used_as_is() -> None:
    claim = one(render(), "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    docs = render({"persistence": {"existingClaim": "models-nfs"}})
    assert only(docs, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "models-nfs"


@pytest.mark.parametrize("values, warned", [
    ({}, False),
    ({"replicaCount": 2}, True),
    ({"replicaCount": 2, "persistence": {"accessModes": ["ReadWriteMany"]}}, False),
    ({"training": {"enabled": True}}, True),
])
def test_the_notes_warn_when_pods_on_several_nodes_share_a_read_write_once_volume(chart, values, warned) -> None:
    notes = chart.render(values, name=RELEASE, namespace=NAMESPACE)["gpu-aiops/templates/NOTES.txt"]
    assert "Mode: dry-run" in notes and f"get lease {RELEASE}-leader" in notes
    assert ("ReadWriteOnce" in notes) == warned


def test_replicas_elect_a_leader_with_the_release_lease_and_their_pod_name() -> None:
    docs = render({"replicaCount": 3})
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    env = env_of(pod_spec(one(docs, "Deployment"))["containers"][0])
    assert env["AIOPS_LEASE_NAME"]["value"] == f"{RELEASE}-leader"
    assert env["AIOPS_LEASE_NAMESPACE"]["value"] == NAMESPACE
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role = next(r for r in only(docs, "Role") if r["metadata"]["name"] == f"{FULLNAME}-leader")
    assert role["metadata"]["namespace"] == NAMESPACE
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named and all(rule["resourceNames"] == [f"{RELEASE}-leader"] for rule in named)


# -- RBAC --------------------------------------------------------------------------------------------


def grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(namespace or '*cluster*', apiGroup, resource, verb) for every rule bound to the agent."""
    bound = {(b["metadata"].get("namespace"), b["roleRef"]["kind"], b["roleRef"]["name"])
             for b in docs if b["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    out = set()
    for role in docs:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        ns = role["metadata"].get("namespace") if role["kind"] == "Role" else None
        assert (ns, role["kind"], role["metadata"]["name"]) in bound, f"{role['metadata']['name']} is not bound"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((ns or "*cluster*", group, resource, verb))
    return out


def _expand(ns: str, group: str, resource: str, verbs: str) -> set[tuple[str, str, str, str]]:
    return {(ns, group, resource, verb) for verb in verbs.split(",")}


ALWAYS = (_expand("serving", "", "events", "create,patch") | _expand("serving", "events.k8s.io", "events", "create,patch")
          | _expand(NAMESPACE, "coordination.k8s.io", "leases", "get,create,update"))
ACTUATOR_GRANTS = {
    "scaleDeployments": _expand("serving", "apps", "deployments/scale", "get,patch,update")
                        | _expand("serving", "apps", "deployments", "get,patch"),
    "scaleStatefulSets": _expand("serving", "apps", "statefulsets/scale", "get,patch,update")
                         | _expand("serving", "apps", "statefulsets", "get,patch"),
    "hpaFloor": _expand("serving", "autoscaling", "horizontalpodautoscalers", "get,patch"),
    "placeholderPods": _expand(NAMESPACE, "", "pods", "create,delete,list,get"),
    "clusterAPI": _expand(NAMESPACE, "cluster.x-k8s.io", "machinedeployments/scale", "get,patch,update"),
    "karpenter": _expand("*cluster*", "karpenter.sh", "nodepools", "get,patch"),
}


@pytest.mark.parametrize("actuator", [None, *ACTUATOR_GRANTS])
def test_rbac_grants_exactly_what_the_enabled_actuator_needs(actuator: str | None) -> None:
    actuators = {**ONLY, **({actuator: True} if actuator else {})}
    docs = render({"rbac": {"actuators": actuators}})
    assert grants(docs) == ALWAYS | ACTUATOR_GRANTS.get(actuator, set())
    # Cluster-wide permissions only for the cluster-scoped Karpenter NodePools.
    assert bool(only(docs, "ClusterRole")) == (actuator == "karpenter")


def test_the_hpa_floor_alone_cannot_scale_deployments() -> None:
    granted = {resource for _, _, resource, _ in grants(render(SCENARIOS["only the HPA floor actuator"]))}
    assert "horizontalpodautoscalers" in granted
    assert not granted & {"deployments/scale", "deployments", "statefulsets/scale", "pods", "nodepools"}


def test_every_actuator_on_grants_the_union_and_no_wildcard_anywhere() -> None:
    for values in SCENARIOS.values():
        for role in render(values):
            if role["kind"] in ("Role", "ClusterRole"):
                for rule in role["rules"]:
                    for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                        assert not any("*" in item for item in rule.get(field, [])), f"wildcard in {role['metadata']['name']}"
    docs = render(EVERYTHING_ON)
    expected = ALWAYS | set().union(*ACTUATOR_GRANTS.values())
    expected = {("gpu-placeholders" if g[2] == "pods" else g[0], *g[1:]) for g in expected}
    assert grants(docs) == expected
    karpenter = one(docs, "ClusterRole")
    assert karpenter["rules"][0]["resourceNames"] == ["gpu-h100"]


def test_one_role_per_workload_namespace_bound_to_the_release_service_account() -> None:
    docs = render(SCENARIOS["workloads in three namespaces"])
    roles = [r for r in only(docs, "Role") if r["metadata"]["name"] == f"{FULLNAME}-workloads"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["batch", "research", "serving"]
    for binding in only(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert {ns for ns, *_ in grants(docs)} == {"batch", "research", "serving", NAMESPACE}


def test_without_listed_namespaces_the_workloads_are_in_the_release_namespace() -> None:
    docs = render({"rbac": {"namespaces": []}})
    assert {r["metadata"]["namespace"] for r in only(docs, "Role")} == {NAMESPACE}


# -- secrets and config ------------------------------------------------------------------------------


def test_secrets_reach_the_agent_only_through_secret_key_refs() -> None:
    docs = render(EVERYTHING_ON)
    env = env_of(pod_spec(one(docs, "Deployment"))["containers"][0])
    expected = {
        "AIOPS_SLACK_BOT_TOKEN": ("aiops-slack", "bot-token", True),
        "AIOPS_SLACK_WEBHOOK_URL": ("aiops-slack", "webhook-url", True),
        "AIOPS_SLACK_SIGNING_SECRET": ("aiops-slack", "signing-secret", True),
        "AIOPS_WEBHOOK_URL": ("aiops-webhook", "url", False),
        "AIOPS_WEBHOOK_SECRET": ("aiops-webhook", "secret", False),
        "PROMETHEUS_TOKEN": ("aiops-prometheus", "token", False),
        "AIOPS_APPROVAL_KEY": ("aiops-approval", "approval-key", False),
    }
    for name, (secret, key, optional) in expected.items():
        ref = {"name": secret, "key": key, **({"optional": True} if optional else {})}
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": ref}}
    train_env = env_of(pod_spec(one(docs, "CronJob"))["containers"][0])
    assert train_env["PROMETHEUS_TOKEN"] == env["PROMETHEUS_TOKEN"]
    assert "AIOPS_SLACK_BOT_TOKEN" not in train_env  # the training job gets only what it uses
    assert only(docs, "Secret") == []
    # Without referenced Secrets there are no such variables at all.
    default_env = env_of(pod_spec(one(render(), "Deployment"))["containers"][0])
    assert not set(default_env) & set(expected)


def test_a_prometheus_token_without_the_matching_bearer_token_env_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="bearer_token_env: PROMETHEUS_TOKEN"):
        render({"secrets": {"prometheus": {"existingSecret": "aiops-prometheus"}}})


def _config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = one(docs, "ConfigMap")
    assert configmap["metadata"]["name"] == f"{FULLNAME}-config"
    return yaml.safe_load(configmap["data"]["config.yaml"])


def test_the_config_map_holds_the_values_config_verbatim(chart) -> None:
    config = {
        "node_pools": [{"name": "gpu-a100", "gpus_per_node": 8, "kubernetes": {"method": "karpenter", "name": "a100"}}],
        "workloads": [{"name": "llm-chat", "node_pool": "gpu-a100", "capacity_rps": 3.5,
                       "kubernetes": {"kind": "Deployment", "namespace": "serving", "actuation": "floor"}}],
        "prometheus": {"url": "http://thanos-query.monitoring:9090", "headers": {"X-Scope-OrgID": "team-a"}},
        "agent": {"mode": "recommend", "decide_interval_seconds": 30},
    }
    docs = render({"config": config})
    rendered = _config_of(docs)
    # Values merge over the defaults: keys the override leaves out keep the chart's defaults.
    assert rendered == _merge(chart.values["config"], config)
    assert rendered["agent"] == {"mode": "recommend", "decide_interval_seconds": 30}


def test_the_default_config_is_one_the_agent_accepts_in_dry_run() -> None:
    from simulations.config import config_from_mapping

    config = config_from_mapping(_config_of(render()), "helm/gpu-aiops/values.yaml: config")
    assert config.agent.mode == "dry-run"
    assert config.prometheus.url == "http://prometheus-operated.monitoring:9090"
    assert [w.name for w in config.workloads] == ["llm-chat"]


def test_a_config_change_rolls_the_pods_and_nothing_else_does() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum({"config": {"agent": {"mode": "auto"}}}) != base
    assert checksum({"replicaCount": 2, "resources": {"limits": {"memory": "4Gi"}}}) == base


# -- optional objects --------------------------------------------------------------------------------


def test_the_training_cron_job_trains_on_a_gpu_into_the_shared_registry() -> None:
    docs = render(EVERYTHING_ON)
    cron = one(docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cron)
    container, = spec["containers"]
    args = container["args"]
    assert args[0] == "train"
    flags = {flag: value for flag, value in zip(args, args[1:], strict=False)
             if flag.startswith("--") and not value.startswith("--")}
    assert flags["--prometheus"] == "http://prometheus-operated.monitoring:9090"
    assert flags["--days"] == "14" and flags["--model"] == "auto"
    assert flags["--registry"] == "/var/lib/aiops/models" and flags["--config"] == "/etc/aiops/config.yaml"
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["automountServiceAccountToken"] is False
    agent_claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec(one(docs, "Deployment"))["volumes"]
                    if "persistentVolumeClaim" in v}
    train_claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert train_claims == agent_claims == {f"{FULLNAME}-state"}


def test_training_needs_the_registry_volume() -> None:
    with pytest.raises(helm.HelmRenderError, match="training.enabled needs persistence.enabled"):
        render({"training": {"enabled": True}, "persistence": {"enabled": False}})


def test_placeholder_pods_are_preempted_by_real_pods_and_never_preempt() -> None:
    assert only(render(), "PriorityClass") == []
    priority = one(render(EVERYTHING_ON), "PriorityClass")
    assert -10 <= priority["value"] < 0  # below real pods (0), not expendable to cluster-autoscaler
    assert priority["globalDefault"] is False and priority["preemptionPolicy"] == "Never"
    env = env_of(pod_spec(one(render(EVERYTHING_ON), "Deployment"))["containers"][0])
    assert env["AIOPS_PLACEHOLDER_PRIORITY_CLASS"]["value"] == priority["metadata"]["name"]


def test_the_network_policy_admits_8080_only_and_reaches_dns_api_prometheus_and_webhooks() -> None:
    assert only(render(), "NetworkPolicy") == []
    policy = one(render(EVERYTHING_ON), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ingress, = policy["ingress"]
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}] and ingress["from"]
    egress_ports = [{p["port"] for p in rule["ports"]} for rule in policy["egress"]]
    assert egress_ports == [{53}, {443, 6443}, {9090}, {443}]
    api = policy["egress"][1]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_the_alert_rules_watch_the_agent_metrics() -> None:
    rule = one(render(EVERYTHING_ON), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"AIOpsAgentDown", "AIOpsAgentNotReady", "AIOpsActionsFailing", "AIOpsForecastErrorHigh"}
    for alert, metric in [("AIOpsAgentDown", "aiops_up"), ("AIOpsAgentNotReady", "aiops_ready"),
                          ("AIOpsActionsFailing", "aiops_actions_failed_total"),
                          ("AIOpsForecastErrorHigh", "aiops_forecast_error_ratio")]:
        assert f'{metric}{{namespace="{NAMESPACE}", service="{FULLNAME}"}}' in alerts[alert]["expr"]
        assert alerts[alert]["labels"]["team"] == "ml-platform"


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'aiops_up{namespace="aiops-system", service="aiops-gpu-aiops", pod="a"}'
        values: '1x5 _x15'
      - series: 'aiops_forecast_error_ratio{namespace="aiops-system", service="aiops-gpu-aiops", workload="llm-chat"}'
        values: '9x60'
      - series: 'aiops_actions_failed_total{namespace="aiops-system", service="aiops-gpu-aiops", pod="a"}'
        values: '0 1 2 3 4 5 6 7 8 9 10'
    alert_rule_test:
      - {eval_time: 4m, alertname: AIOpsAgentDown, exp_alerts: []}
      - eval_time: 16m
        alertname: AIOpsAgentDown
        exp_alerts:
          - exp_labels: {severity: critical, team: ml-platform}
            exp_annotations:
              summary: The gpu-aiops agent is down.
              description: >-
                No replica of aiops-gpu-aiops in aiops-system has reported aiops_up for 5m;
                nothing scales ahead of demand.
      - eval_time: 10m
        alertname: AIOpsActionsFailing
        exp_alerts:
          - exp_labels: {severity: warning, team: ml-platform}
            exp_annotations:
              summary: The gpu-aiops agent's scaling actions are failing.
              description: >-
                10 actions failed in the last 15 minutes (more than 3):
                check the agent's RBAC and its Kubernetes Events.
      - {eval_time: 20m, alertname: AIOpsForecastErrorHigh, exp_alerts: []}
      - eval_time: 40m
        alertname: AIOpsForecastErrorHigh
        exp_alerts:
          - exp_labels: {severity: warning, team: ml-platform, workload: llm-chat}
            exp_annotations:
              summary: Forecast error is high for workload llm-chat.
              description: >-
                The live forecast error of llm-chat is 9 times its backtest baseline (threshold 5):
                retrain, or check for a changed demand pattern.
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (./dev test installs it)")
def test_the_alert_rules_are_valid_promql_and_fire_when_they_should(tmp_path: Path) -> None:
    rule = one(render(EVERYTHING_ON), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "tests.yaml").write_text(PROMTOOL_TESTS)
    for command in ("promtool check rules rules.yaml", "promtool test rules tests.yaml"):
        done = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


# -- values.schema.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("values, complaint", [
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"replcaCount": 2}, "replcaCount"),
    ({"placeholders": {"priority": -100}}, "/placeholders/priority"),
    ({"securityContext": {"readOnlyRootFilesystem": False}}, "/securityContext/readOnlyRootFilesystem"),
    ({"persistence": {"accessModes": ["ReadWriteSometimes"]}}, "/persistence/accessModes/0"),
    ({"rbac": {"actuators": {"karpenter": "yes"}}}, "/rbac/actuators/karpenter"),
    ({"networkPolicy": {"egress": {"webhooks": {"cidrs": ["slack.com"]}}}}, "/networkPolicy/egress/webhooks/cidrs/0"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_the_values_schema_rejects_bad_values_at_render_time(chart, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_the_values_schema_is_draft_07_and_accepts_the_defaults(chart) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    chart.validate_schema(chart.values)
    chart.validate_schema(EVERYTHING_ON)


def test_the_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"`([A-Za-z][\w.]*)`", readme))

    def missing(tree: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if path in documented or path == "config":  # config: the agent's own schema, documented there
                continue
            if isinstance(value, dict) and value:
                out += missing(value, path + ".")
            else:
                out.append(path)
        return out

    assert missing(values) == []


# -- Dockerfile --------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_the_dockerfile_builds_in_one_stage_and_runs_from_another_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: a builder and a slim final stage"
    for stage in stages:
        image = stage.split()[0]
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest", f"{image}: pin the base image by tag (or digest), not latest"
    assert stages[0].split()[-2:] == ["AS", "builder"]
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, "numeric, non-root (Kubernetes runAsNonRoot checks a numeric UID)"
    assert any(op == "COPY" and args.startswith("--from=builder") for op, args in final)
    entry = {op: args for op, args in final if op in ("ENTRYPOINT", "CMD")}
    assert json.loads(entry["ENTRYPOINT"]) == ["aiops"]  # exec form: signals reach the agent
    assert json.loads(entry["CMD"]) == ["run", "--config", "/etc/aiops/config.yaml"]
    assert ("EXPOSE", "8080") in final
    assert not any(op == "HEALTHCHECK" for op, _ in instructions)  # Kubernetes probes instead
    install = next(args for op, args in instructions if op == "RUN" and "pip install" in args)
    assert "-c constraints.txt" in install and "--extra-index-url" in install
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in instructions  # torch's CPU wheel


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "out", "tests"} <= ignored
    for op, args in dockerfile_instructions():
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
