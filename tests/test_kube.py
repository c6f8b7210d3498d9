"""The Kubernetes actuator and the leader election, with the real ``kubernetes`` client over HTTP.

The server is the local API stand-in of ``tests/kube_api.py``: real HTTP on 127.0.0.1, the API's
object shapes, ``resourceVersion`` conflicts and ``Status`` errors, with faults injected per
request. Clocks are injected, so nothing here sleeps longer than a timeout under test.
"""

from __future__ import annotations

import logging
import re
import time

import kubernetes
import pytest

from aiops.kube import (DECISION_ANNOTATION, DESIRED_ANNOTATION, PLACEHOLDER_LABEL, KubeCluster, KubeError, PoolTarget,
                        WorkloadTarget)
from aiops.leader import LeaderElector, micro_time
from simulations.errors import InputError
from tests.kube_api import KubeAPI

APPS, HPA, LEASES = "apps/v1", "autoscaling/v2", "coordination.k8s.io/v1"
CAPI, KARPENTER = "cluster.x-k8s.io/v1beta1", "karpenter.sh/v1"
T0 = 1_795_000_000.0  # 2026-11-18, a whole second: MicroTime must still carry ".000000"
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api():
    with KubeAPI(priority_classes=("aiops-placeholder",)) as server:
        yield server


def client_for(api: KubeAPI) -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url))


@pytest.fixture
def cluster(api):
    c = KubeCluster(client_for(api), timeout_seconds=2.0, clock=Clock(), instance="aiops-0")
    yield c
    c.api_client.close()


def workload(api: KubeAPI, kind: str = "Deployment", name: str = "llm", replicas: int = 2, ready: int = 2,
             namespace: str = "serving") -> dict:
    labels = {"app": name}
    pod = {"containers": [{"name": "server", "image": "vllm/vllm"}]}
    return api.add({
        "apiVersion": APPS, "kind": kind, "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
        "status": {"replicas": replicas, "readyReplicas": ready},
    })


def hpa(api: KubeAPI, name: str = "llm", low: int = 2, high: int = 10) -> dict:
    return api.add({
        "apiVersion": HPA, "kind": "HorizontalPodAutoscaler", "metadata": {"name": name, "namespace": "serving"},
        "spec": {"scaleTargetRef": {"apiVersion": APPS, "kind": "Deployment", "name": name},
                 "minReplicas": low, "maxReplicas": high},
    })


def stored(api: KubeAPI, kind: str = "deployments", name: str = "llm") -> dict:
    obj = api.get(APPS, kind, "serving", name)
    assert obj is not None
    return obj


# -- workloads ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, plural", [("Deployment", "deployments"), ("StatefulSet", "statefulsets")])
def test_scale_writes_the_scale_subresource_annotates_the_object_and_records_an_event(api, cluster, kind, plural) -> None:
    obj = workload(api, kind, replicas=2)
    t = WorkloadTarget("chat", "serving", kind=kind, object_name="llm")

    result = cluster.scale(t, 5, "d-1")

    assert (result.target, result.kind, result.before, result.after, result.applied, result.dry_run, result.error) == \
        ("chat", kind, 2, 5, True, False, "")
    assert result.message == f"set {kind} serving/llm replicas 2 -> 5"
    assert stored(api, plural)["spec"]["replicas"] == 5
    assert stored(api, plural)["metadata"]["annotations"] == {DECISION_ANNOTATION: "d-1", DESIRED_ANNOTATION: "5"}
    put = next(r for r in api.writes() if r.method == "PUT")
    assert put.path == f"/apis/apps/v1/namespaces/serving/{plural}/llm/scale"
    assert put.body["spec"] == {"replicas": 5} and put.body["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert put.query["fieldManager"] == "aiops"
    annotate = next(r for r in api.writes() if r.method == "PATCH")
    assert annotate.content_type == "application/merge-patch+json"

    cluster.record(t, "d-1", "ScaledAhead", "llm: 2 -> 5 replicas ahead of the 09:00 ramp")
    (event,) = api.list("v1", "events", "serving")
    rv = stored(api, plural)["metadata"]["resourceVersion"]
    assert event["involvedObject"] == {"apiVersion": APPS, "kind": kind, "name": "llm", "namespace": "serving",
                                       "uid": obj["metadata"]["uid"], "resourceVersion": rv}
    assert (event["reason"], event["type"], event["source"], event["reportingComponent"], event["reportingInstance"]) == \
        ("ScaledAhead", "Normal", {"component": "aiops"}, "aiops.dev/agent", "aiops-0")
    assert event["message"] == "llm: 2 -> 5 replicas ahead of the 09:00 ramp"
    assert event["metadata"]["annotations"] == {DECISION_ANNOTATION: "d-1"}


def test_replicas_reads_spec_and_ready_from_the_object_and_a_missing_object_raises_one_line(api, cluster) -> None:
    workload(api, replicas=4, ready=3)
    assert cluster.replicas(WorkloadTarget("llm", "serving")) == (4, 3)
    with pytest.raises(KubeError) as err:
        cluster.replicas(WorkloadTarget("ghost", "serving"))
    assert str(err.value) == "not found: Deployment serving/ghost"


def test_a_workload_already_at_the_target_is_not_written(api, cluster) -> None:
    workload(api, replicas=3)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 3, "d-2")
    assert result.applied and result.before == result.after == 3 and result.message == "Deployment serving/llm replicas already 3"
    assert api.writes() == []


def test_floor_mode_patches_the_hpa_min_replicas_and_annotates_the_deployment(api, cluster) -> None:
    workload(api, replicas=2)
    hpa(api, "llm-hpa", low=2, high=10)
    t = WorkloadTarget("llm", "serving", mode="floor", hpa_name="llm-hpa")

    result = cluster.scale(t, 6, "d-3")

    assert (result.kind, result.before, result.after, result.applied, result.error) == ("HorizontalPodAutoscaler", 2, 6, True, "")
    assert api.get(HPA, "horizontalpodautoscalers", "serving", "llm-hpa")["spec"]["minReplicas"] == 6
    assert stored(api)["spec"]["replicas"] == 2, "floor mode leaves the replicas to the HPA"
    assert stored(api)["metadata"]["annotations"][DECISION_ANNOTATION] == "d-3"
    (patch,) = [r for r in api.writes() if "horizontalpodautoscalers" in r.path]
    assert patch.content_type == "application/merge-patch+json" and patch.body["spec"] == {"minReplicas": 6}


def test_floor_mode_clamps_at_the_hpa_max_replicas_and_says_so(api, cluster) -> None:
    workload(api)
    hpa(api, low=2, high=10)
    result = cluster.scale(WorkloadTarget("llm", "serving", mode="floor"), 14, "d-4")
    assert result.applied and result.after == 10 and result.error == ""
    assert "clamped to the HPA's maxReplicas 10 (asked 14)" in result.message
    assert api.get(HPA, "horizontalpodautoscalers", "serving", "llm")["spec"]["minReplicas"] == 10


# -- node pools ----------------------------------------------------------------------------------------------------


def placeholders(api: KubeAPI) -> list[dict]:
    return api.list("v1", "pods", "aiops-system")


def test_placeholder_pods_are_created_deleted_newest_first_and_idempotent(api, cluster) -> None:
    pool = PoolTarget("gpu-h100", "placeholder", gpus_per_node=8, node_selector={"aiops.dev/pool": "h100"},
                      tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},))

    up = cluster.set_node_floor(pool, 3, "d-5")
    assert (up.kind, up.before, up.after, up.applied, up.error) == ("Pod", 0, 3, True, "")
    pods = placeholders(api)
    assert [p["metadata"]["name"] for p in pods] == [f"aiops-placeholder-gpu-h100-{k}" for k in range(3)]
    for pod in pods:
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "8" == container["resources"]["limits"]["nvidia.com/gpu"]
        assert container["image"] == "registry.k8s.io/pause:3.9"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["priorityClassName"] == "aiops-placeholder"
        assert spec["nodeSelector"] == {"aiops.dev/pool": "h100"}
        assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert spec["terminationGracePeriodSeconds"] == 0 and spec["securityContext"]["runAsNonRoot"] is True
        assert pod["metadata"]["labels"][PLACEHOLDER_LABEL] == "gpu-h100"
        assert pod["metadata"]["annotations"][DECISION_ANNOTATION] == "d-5"

    down = cluster.set_node_floor(pool, 1, "d-6")
    assert (down.before, down.after, down.applied) == (3, 1, True)
    assert [p["metadata"]["name"] for p in placeholders(api)] == ["aiops-placeholder-gpu-h100-0"]
    deleted = [r.path.rsplit("/", 1)[1] for r in api.writes() if r.method == "DELETE"]
    assert deleted == ["aiops-placeholder-gpu-h100-2", "aiops-placeholder-gpu-h100-1"]

    api.clear_log()
    same = cluster.set_node_floor(pool, 1, "d-7")
    assert (same.before, same.after, same.applied) == (1, 1, True) and api.writes() == []
    (listing,) = api.requests
    assert listing.query["labelSelector"] == f"{PLACEHOLDER_LABEL}=gpu-h100"


def test_a_missing_priority_class_is_the_admission_plugin_s_message_not_an_rbac_hint(api, cluster) -> None:
    result = cluster.set_node_floor(PoolTarget("a100", "placeholder", priority_class="nope"), 2, "d-8")
    assert not result.applied and result.after == 0
    assert result.error == ('forbidden: create Pod aiops-system/aiops-placeholder-a100-0: pods "aiops-placeholder-a100-0" '
                            "is forbidden: no PriorityClass with name nope was found (403)")


def test_a_terminating_placeholder_no_longer_counts_and_its_name_is_skipped(api, cluster) -> None:
    api.add({"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "aiops-placeholder-gpu-0", "namespace": "aiops-system", "labels": {PLACEHOLDER_LABEL: "gpu"},
                          "deletionTimestamp": "2026-11-18T11:00:00Z"},
             "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}})
    result = cluster.set_node_floor(PoolTarget("gpu", "placeholder"), 1, "d-8b")
    assert (result.before, result.after, result.applied) == (0, 1, True)
    (create,) = api.writes()
    assert create.body["metadata"]["name"] == "aiops-placeholder-gpu-1"


def test_a_machine_deployment_is_scaled_through_its_scale_subresource(api, cluster) -> None:
    api.add({"apiVersion": CAPI, "kind": "MachineDeployment", "metadata": {"name": "gpu-md", "namespace": "capi"},
             "spec": {"replicas": 2, "clusterName": "prod", "selector": {"matchLabels": {"pool": "gpu"}}},
             "status": {"replicas": 2}})
    result = cluster.set_node_floor(PoolTarget("gpu", "machinedeployment", namespace="capi", object_name="gpu-md"), 5, "d-9")
    assert (result.kind, result.before, result.after, result.applied, result.error) == ("MachineDeployment", 2, 5, True, "")
    md = api.get(CAPI, "machinedeployments", "capi", "gpu-md")
    assert md["spec"]["replicas"] == 5 and md["metadata"]["annotations"][DECISION_ANNOTATION] == "d-9"
    assert [(r.method, r.path) for r in api.writes()][0] == \
        ("PUT", "/apis/cluster.x-k8s.io/v1beta1/namespaces/capi/machinedeployments/gpu-md/scale")


def test_a_static_karpenter_node_pool_gets_spec_replicas_by_merge_patch(api, cluster) -> None:
    api.add({"apiVersion": KARPENTER, "kind": "NodePool", "metadata": {"name": "gpu-static"},
             "spec": {"replicas": 1, "template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                                             "name": "gpu"}}}}})
    result = cluster.set_node_floor(PoolTarget("gpu", "karpenter", object_name="gpu-static"), 4, "d-10")
    assert (result.kind, result.before, result.after, result.applied, result.error) == ("NodePool", 1, 4, True, "")
    assert api.get(KARPENTER, "nodepools", "", "gpu-static")["spec"]["replicas"] == 4
    patch = api.writes()[0]
    assert patch.path == "/apis/karpenter.sh/v1/nodepools/gpu-static" and patch.content_type == "application/merge-patch+json"
    assert patch.body["spec"] == {"replicas": 4}


def test_a_dynamic_karpenter_node_pool_is_refused_with_a_reason(api, cluster) -> None:
    api.add({"apiVersion": KARPENTER, "kind": "NodePool", "metadata": {"name": "dyn"},
             "spec": {"limits": {"nvidia.com/gpu": "64"}}})
    result = cluster.set_node_floor(PoolTarget("dyn", "karpenter"), 2, "d-11")
    assert not result.applied and result.error.startswith("not static: NodePool dyn has no spec.replicas")
    assert api.writes() == []


# -- conflicts and errors --------------------------------------------------------------------------------------------


def test_a_conflict_is_retried_on_fresh_state_with_the_new_resource_version(api, cluster) -> None:
    workload(api, replicas=2)

    def hpa_wrote_first(server: KubeAPI) -> None:  # another writer changes the object between our read and our write
        server.modify(APPS, "deployments", "serving", "llm", lambda o: o["spec"].update(replicas=3))

    api.inject("PUT", r"/deployments/llm/scale$", hook=hpa_wrote_first)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 6, "d-12")

    assert (result.before, result.after, result.applied, result.error) == (3, 6, True, ""), "before is the fresh state"
    first, second = [r for r in api.requests if r.method == "PUT"]
    fresh = [r for r in api.requests if r.method == "GET" and r.path.endswith("/scale")]
    assert len(fresh) == 2
    assert first.body["metadata"]["resourceVersion"] != second.body["metadata"]["resourceVersion"]
    assert int(second.body["metadata"]["resourceVersion"]) > int(first.body["metadata"]["resourceVersion"])
    assert stored(api)["spec"]["replicas"] == 6


def test_conflicts_on_every_try_give_up_after_the_retries_with_one_line(api, cluster) -> None:
    workload(api)
    api.inject("PUT", r"/scale$", 409, times=None)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 6, "d-13")
    assert not result.applied and result.error == "conflict: Deployment serving/llm changed 4 times while we tried"
    assert len([r for r in api.requests if r.method == "PUT"]) == 1 + cluster.retries_on_conflict
    assert stored(api)["spec"]["replicas"] == 2


@pytest.mark.parametrize("method, path, status, error", [
    ("PUT", r"/scale$", 403,
     "forbidden: may not update deployments/scale in namespace serving (403; grant it in the chart's RBAC)"),
    ("GET", r"/scale$", 403, "forbidden: may not get deployments/scale in namespace serving (403; grant it in the chart's RBAC)"),
    ("PUT", r"/scale$", 500,
     "API unavailable: update deployments/scale in namespace serving: Internal error occurred: injected fault (500)"),
    ("GET", r"/scale$", 503, "API unavailable: get deployments/scale in namespace serving: "
                             "the server is currently unable to handle the request (503)"),
], ids=["403-write", "403-read", "500", "503"])
def test_api_errors_become_one_line_results(api, cluster, method, path, status, error) -> None:
    workload(api)
    api.inject(method, path, status, times=None)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 6, "d-14")
    assert (result.applied, result.error) == (False, error)
    assert "\n" not in result.error


def test_a_missing_object_is_not_found_naming_kind_namespace_and_name(api, cluster) -> None:
    result = cluster.scale(WorkloadTarget("llm", "serving", kind="StatefulSet", object_name="ghost"), 3, "d-15")
    assert result.error == "not found: StatefulSet serving/ghost"
    hpa_result = cluster.scale(WorkloadTarget("llm", "serving", mode="floor"), 3, "d-15")
    assert hpa_result.error == "not found: HorizontalPodAutoscaler serving/llm"


def test_a_kind_the_server_does_not_serve_hints_at_a_missing_crd(api, cluster) -> None:
    api.inject("GET", r"/machinedeployments/", 404, message="the server could not find the requested resource", details={})
    result = cluster.set_node_floor(PoolTarget("gpu", "machinedeployment"), 3, "d-15b")
    assert result.error == ("not found: MachineDeployment aiops-system/gpu (the API server does not serve "
                            "machinedeployments.cluster.x-k8s.io: is its CRD installed?)")


def test_a_forbidden_cluster_scoped_patch_says_cluster_scoped(api, cluster) -> None:
    api.add({"apiVersion": KARPENTER, "kind": "NodePool", "metadata": {"name": "gpu"}, "spec": {"replicas": 1}})
    api.inject("PATCH", r"/nodepools/gpu$", 403)
    result = cluster.set_node_floor(PoolTarget("gpu", "karpenter"), 3, "d-16")
    assert result.error == "forbidden: may not patch nodepools.karpenter.sh (cluster-scoped) (403; grant it in the chart's RBAC)"


def test_an_answer_slower_than_the_timeout_is_api_unavailable(api) -> None:
    workload(api)
    cluster = KubeCluster(client_for(api), timeout_seconds=0.2)
    api.inject("GET", r"/scale$", delay=2.0, times=None)
    started = time.monotonic()
    result = cluster.scale(WorkloadTarget("llm", "serving"), 6, "d-17")
    assert result.error == "API unavailable: get deployments/scale in namespace serving: no answer within 0.2 s"
    assert time.monotonic() - started < 1.9, "the timeout cut the wait (the client's own read retries included)"
    assert api.writes() == []


def test_a_server_that_is_gone_is_api_unavailable(api) -> None:
    url = api.url
    api.stop()
    cluster = KubeCluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url)), timeout_seconds=0.5)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 2, "d-18")
    assert result.error.startswith("API unavailable: get deployments/scale in namespace serving: cannot connect")
    with pytest.raises(KubeError, match="^API unavailable: get deployments in namespace serving"):
        cluster.replicas(WorkloadTarget("llm", "serving"))


def test_dry_run_reads_but_never_writes(api, cluster) -> None:
    workload(api, replicas=2)
    hpa(api, low=2, high=10)
    api.add({"apiVersion": CAPI, "kind": "MachineDeployment", "metadata": {"name": "md", "namespace": "aiops-system"},
             "spec": {"replicas": 1}})
    api.add({"apiVersion": KARPENTER, "kind": "NodePool", "metadata": {"name": "np"}, "spec": {"replicas": 1}})

    results = [
        cluster.scale(WorkloadTarget("llm", "serving"), 5, "d-19", dry_run=True),
        cluster.scale(WorkloadTarget("llm", "serving", mode="floor"), 12, "d-19", dry_run=True),
        cluster.set_node_floor(PoolTarget("p", "placeholder"), 2, "d-19", dry_run=True),
        cluster.set_node_floor(PoolTarget("md", "machinedeployment"), 3, "d-19", dry_run=True),
        cluster.set_node_floor(PoolTarget("np", "karpenter"), 3, "d-19", dry_run=True),
    ]

    assert api.writes() == [] and len(api.requests) >= 5
    assert all(r.dry_run and not r.applied and r.error == "" for r in results)
    assert [(r.before, r.after) for r in results] == [(2, 5), (2, 10), (0, 2), (1, 3), (1, 3)]
    assert results[0].message == "dry run: would set Deployment serving/llm replicas 2 -> 5"
    assert "clamped to the HPA's maxReplicas 10" in results[1].message


def test_record_truncates_long_messages_and_never_raises(api, cluster, caplog) -> None:
    workload(api)
    t = WorkloadTarget("llm", "serving")
    cluster.record(t, "d-20", "DryRun", "x" * 5000)
    (event,) = api.list("v1", "events", "serving")
    assert len(event["message"]) == 1024 and event["message"].endswith("...")

    api.inject("POST", r"/events$", 403)
    with caplog.at_level(logging.WARNING, logger="aiops.kube"):
        cluster.record(t, "d-21", "ScaleFailed", "boom", "Warning")
    assert "could not record event ScaleFailed for decision d-21" in caplog.text
    assert "forbidden: may not create events in namespace serving" in caplog.text


def test_an_annotation_refused_leaves_the_scale_applied_and_says_so(api, cluster) -> None:
    workload(api)
    api.inject("PATCH", r"/deployments/llm$", 403)
    result = cluster.scale(WorkloadTarget("llm", "serving"), 4, "d-22")
    assert result.applied and result.error == "" and stored(api)["spec"]["replicas"] == 4
    assert "annotation not written: forbidden: may not patch deployments in namespace serving" in result.message


# -- from_environment --------------------------------------------------------------------------------------------------


def test_from_environment_without_a_cluster_or_kubeconfig_is_one_input_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError) as err:
        KubeCluster.from_environment()
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"kubeconfig {tmp_path}/.kube/config: not in a cluster (KUBERNETES_SERVICE_HOST is unset); no such file: "
                       "pass --kubeconfig FILE, set KUBECONFIG, or run the agent in a pod with a service account")


def test_from_environment_reports_a_broken_kubeconfig_and_loads_a_good_one(api, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(InputError, match=f"^kubeconfig {broken}: Invalid kube-config file"):
        KubeCluster.from_environment(str(broken))

    good = tmp_path / "config"
    good.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: stand-in, cluster: {{server: "{api.url}"}}}}]
users: [{{name: agent, user: {{token: secret-token}}}}]
contexts: [{{name: test, context: {{cluster: stand-in, user: agent}}}}]
current-context: test
""")
    workload(api, replicas=3, ready=1)
    cluster = KubeCluster.from_environment(str(good))
    assert cluster.replicas(WorkloadTarget("llm", "serving")) == (3, 1)
    assert api.requests[-1].path == "/apis/apps/v1/namespaces/serving/deployments/llm"
    impatient = KubeCluster.from_environment(str(good), timeout_seconds=0.2)
    api.inject("GET", r"/deployments/llm$", delay=2.0, times=None)
    api.clear_log()
    with pytest.raises(KubeError, match="no answer within 0.2 s"):
        impatient.replicas(WorkloadTarget("llm", "serving"))
    assert len(api.requests) == 1, "a slow answer costs one timeout, not four (no read retries)"
    with pytest.raises(InputError, match="context"):
        KubeCluster.from_environment(str(good), context="elsewhere")


# -- leader election ---------------------------------------------------------------------------------------------------


def lease(api: KubeAPI) -> dict:
    obj = api.get(LEASES, "leases", "aiops-system", "aiops-agent")
    assert obj is not None
    return obj


def electors(api: KubeAPI, clock: Clock) -> tuple[LeaderElector, LeaderElector]:
    return (LeaderElector(client_for(api), identity="a", lease_seconds=15, clock=clock),
            LeaderElector(client_for(api), identity="b", lease_seconds=15, clock=clock))


def test_one_elector_leads_the_other_takes_over_only_after_the_lease_expires(api) -> None:
    clock = Clock()
    a, b = electors(api, clock)

    assert a.try_acquire_or_renew() and a.is_leader
    spec = lease(api)["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == ("a", 15, 0)
    assert spec["renewTime"] == spec["acquireTime"] == micro_time(T0) == "2026-11-18T11:06:40.000000Z"
    assert not b.try_acquire_or_renew() and not b.is_leader

    for _ in range(4):  # a renews every 5 s; b keeps seeing a live lease
        clock.now += 5
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert lease(api)["spec"]["renewTime"] == micro_time(clock.now)
    assert lease(api)["spec"]["acquireTime"] == micro_time(T0), "renewing keeps the acquire time"

    clock.now += 14  # a stops renewing: its lease is not yet expired for b, and a still leads
    assert not b.try_acquire_or_renew()
    assert a.is_leader
    clock.now += 1
    assert not a.is_leader, "a steps down by itself once a lease has passed without a renewal"
    assert b.try_acquire_or_renew() and b.is_leader
    spec = lease(api)["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert MICRO.match(spec["renewTime"]) and MICRO.match(spec["acquireTime"])

    assert not a.try_acquire_or_renew() and not a.is_leader, "a, back, finds b's live lease"


def test_two_electors_racing_for_the_lease_get_one_success_and_one_conflict(api) -> None:
    clock = Clock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew()
    clock.now += 5
    assert not b.try_acquire_or_renew()  # b observes a's record
    clock.now += 20  # a's lease has expired for b

    def a_renews_meanwhile(server: KubeAPI) -> None:  # a's renewal lands between b's read and b's write
        assert a.try_acquire_or_renew()

    api.inject("PUT", r"/leases/aiops-agent$", hook=a_renews_meanwhile)
    assert not b.try_acquire_or_renew() and not b.is_leader
    puts = [r for r in api.requests if r.method == "PUT"]
    assert puts[-2].body["spec"]["holderIdentity"] == "b", "b's write went out with the stale resourceVersion"
    assert lease(api)["spec"]["holderIdentity"] == "a" and a.is_leader


def test_release_lets_the_other_take_the_lease_at_once(api) -> None:
    clock = Clock()
    a, b = electors(api, clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.is_leader
    assert "holderIdentity" not in lease(api)["spec"]
    assert b.try_acquire_or_renew(), "no waiting for the lease to expire"
    assert (lease(api)["spec"]["holderIdentity"], lease(api)["spec"]["leaseTransitions"]) == ("b", 1)
    b.release()
    b.release()  # not the holder any more: nothing to do
    puts = [r for r in api.requests if r.method == "PUT"]
    assert len(puts) == 3, "a released, b took, b released; the second release only reads"


def test_any_api_error_means_not_the_leader(api) -> None:
    clock = Clock()
    a, _ = electors(api, clock)
    assert a.try_acquire_or_renew()
    clock.now += 5
    api.inject("GET", r"/leases/", 500)
    assert not a.try_acquire_or_renew() and not a.is_leader
    api.inject("PUT", r"/leases/", 403)
    assert not a.try_acquire_or_renew()
    assert a.try_acquire_or_renew() and a.is_leader, "the next good round leads again"


# -- the stand-in itself ------------------------------------------------------------------------------------------------


def test_the_stand_in_refuses_what_a_real_api_server_refuses(api) -> None:
    """The semantics the tests above lean on, through the real client's typed calls."""
    workload(api)
    apps = kubernetes.client.AppsV1Api(client_for(api))
    custom = kubernetes.client.CustomObjectsApi(client_for(api))
    coordination = kubernetes.client.CoordinationV1Api(client_for(api))
    rv = apps.read_namespaced_deployment_scale("llm", "serving").metadata.resource_version
    apps.replace_namespaced_deployment_scale("llm", "serving", {"metadata": {"name": "llm", "resourceVersion": rv},
                                                                "spec": {"replicas": 3}})
    with pytest.raises(kubernetes.client.ApiException) as conflict:  # the same resourceVersion again: stale now
        apps.replace_namespaced_deployment_scale("llm", "serving", {"metadata": {"name": "llm", "resourceVersion": rv},
                                                                    "spec": {"replicas": 4}})
    assert conflict.value.status == 409 and '"reason": "Conflict"' in conflict.value.body

    api.add({"apiVersion": KARPENTER, "kind": "NodePool", "metadata": {"name": "np"}, "spec": {"replicas": 1}})
    with pytest.raises(kubernetes.client.ApiException) as media:  # custom resources take no strategic merge patch
        custom.patch_cluster_custom_object("karpenter.sh", "v1", "nodepools", "np", {"spec": {"replicas": 2}},
                                           _content_type="application/strategic-merge-patch+json")
    assert media.value.status == 415

    # The client writes a whole-second datetime without the fraction MicroTime needs: leader.py builds its own JSON.
    body = {"metadata": {"name": "l", "namespace": "aiops-system"},
            "spec": {"holderIdentity": "x", "renewTime": "2026-11-18T11:06:40.000000Z"}}
    with pytest.raises(kubernetes.client.ApiException) as micro:
        coordination.create_namespaced_lease("aiops-system", body)
    assert micro.value.status == 400 and "2026-11-18T11:06:40+00:00" in micro.value.body
