"""``aiops run`` (the long-running agent) and ``aiops check-config``.

``aiops run --config FILE`` validates the file, connects to Prometheus and the Kubernetes API,
serves /metrics, /healthz, /readyz and /approvals, and schedules its jobs with apscheduler:
collect (``agent.collect_interval_seconds``), decide and act (``agent.decide_interval_seconds``),
the anomaly scan (``agent.anomaly_interval_seconds``), backtest and retrain
(``agent.retrain_interval_seconds``, and at once when the scan sees forecast drift), model reload
(``agent.reload_interval_seconds``, with ``agent.model_name``) and leader election. Jobs never overlap (``max_instances=1``, missed runs coalesce); a job that
raises is logged and counted (``aiops_job_failures_total``), never fatal. SIGTERM or SIGINT stops
the scheduler after the running job, releases the Lease and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time

import click

RUN_HELP = """Run the agent: collect metrics, forecast, decide and act on a schedule.

Start in dry-run (agent.mode: dry-run, the default): every decision is logged to
STATE_DIR/decisions.jsonl, exported on /metrics and posted as a Kubernetes Event on its target,
and nothing is applied. Promote a workload with its kubernetes.mode (recommend: applied after a
signed approval; auto: applied within the guardrails), or everything with agent.mode.

The anomaly scan (anomalies.enabled) explains incidents and sends them to Slack
($AIOPS_SLACK_BOT_TOKEN + $AIOPS_SLACK_CHANNEL, or $AIOPS_SLACK_WEBHOOK_URL), a signed JSON
webhook ($AIOPS_WEBHOOK_URL, $AIOPS_WEBHOOK_SECRET) and Alertmanager ($AIOPS_ALERTMANAGER_URL);
incidents are logged to STATE_DIR/incidents.jsonl (aiops explain ID).

\b
Endpoints (agent.port, 8080): /metrics, /healthz, /readyz, POST /approvals/<id>,
POST /slack/interactions (with $AIOPS_SLACK_SIGNING_SECRET).
Logs: one JSON object per line on stderr.

\b
Examples:
  aiops check-config --config cluster.yaml
  aiops run --config cluster.yaml
"""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out)


def json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def summary(config) -> list[str]:
    """What ``check-config`` prints: one line per workload and pool, with its target and mode."""
    from aiops.agent import pool_target, workload_target

    lines = [f"prometheus: {config.prometheus.url or '(none: set prometheus.url)'}; agent mode {config.agent.mode}, "
             f"policy {config.agent.policy}, decide every {config.agent.decide_interval_seconds:g} s"]
    for w in config.workloads:
        t = workload_target(config, w.name)
        how = "scale subresource" if t.mode == "scale" else f"HPA {t.hpa_name or t.object_name} minReplicas"
        lines.append(f"workload {w.name}: {t.kind} {t.namespace}/{t.object_name} via {how}, "
                     f"mode {w.kubernetes.mode or config.agent.mode}, metrics {w.metrics.server}")
    for p in config.node_pools:
        t = pool_target(config, p.name)
        lines.append(f"node pool {p.name}: nodes ahead via {t.method}"
                     + (f" ({t.namespace}/{t.object_name})" if t.method in ("machinedeployment", "karpenter") else ""))
    return lines


@click.command("check-config", help="Validate a config file for the agent and say what it will do with it.")
@click.option("--config", "config_path", required=True, metavar="FILE.yaml")
def check_config(config_path) -> None:
    from aiops.cli import _input_errors

    def run():
        from simulations.config import load_config
        from simulations.errors import InputError

        config = load_config(config_path)
        if not config.workloads:
            raise InputError(config_path, "workloads: the agent needs at least one listed workload")
        for line in summary(config):
            click.echo(line)
        click.echo(f"{config_path}: ok")

    _input_errors(run)()


@click.command("run", help=RUN_HELP)
@click.option("--config", "config_path", required=True, metavar="FILE.yaml")
@click.option("--kubeconfig", metavar="FILE", help="Outside a cluster: the kubeconfig (default: $KUBECONFIG or ~/.kube/config).")
def run(config_path, kubeconfig) -> None:
    from aiops.cli import _input_errors

    _input_errors(_run)(config_path, kubeconfig)


def _run(config_path, kubeconfig) -> None:
    from apscheduler.events import EVENT_JOB_ERROR
    from apscheduler.schedulers.background import BackgroundScheduler

    from aiops.agent import Agent
    from aiops.kube import KubeCluster
    from aiops.leader import LeaderElector
    from aiops.observability import AgentMetrics, Endpoints
    from aiops.prometheus import PrometheusSource
    from simulations.config import load_config
    from simulations.errors import InputError

    json_logging()
    log = logging.getLogger("aiops.run")
    config = load_config(config_path)
    if not config.workloads:
        raise InputError(config_path, "workloads: the agent needs at least one listed workload")
    source = PrometheusSource(config.prometheus)
    cluster = KubeCluster.from_environment(kubeconfig)
    metrics = AgentMetrics()
    elector = None
    if config.agent.leader_election:
        identity = os.environ.get("POD_NAME") or socket.gethostname()
        elector = LeaderElector(cluster.api_client, name=os.environ.get("AIOPS_LEASE_NAME", config.agent.lease_name),
                                namespace=os.environ.get("AIOPS_LEASE_NAMESPACE", config.agent.lease_namespace),
                                identity=identity)
    agent = Agent(config, source, cluster, observer=metrics,
                  is_leader=(lambda: elector.is_leader) if elector is not None else (lambda: True))
    key = os.environ.get("AIOPS_APPROVAL_KEY", "").encode() or None
    watcher, slack = None, None
    if config.anomalies.enabled:
        from aiops.agent_scan import AnomalyWatcher
        from aiops.notify.approvals import approval_links
        from aiops.notify.senders import secret_from_env, senders_from_env

        senders = senders_from_env()
        if key and config.anomalies.public_url:  # signed approval links in messages
            for sender in senders:
                if hasattr(sender, "approve_urls"):
                    sender.approve_urls = approval_links(config.anomalies.public_url, key, config.agent.approval_ttl_seconds)
        watcher = AnomalyWatcher(agent, source, senders, approval_key=key)
        signing = secret_from_env("AIOPS_SLACK_SIGNING_SECRET")
        slack = watcher.slack_handler(signing) if signing else None
        log.info("anomaly scan on; notifying %s", ", ".join(s.name for s in senders) or "the log only (no sender configured)")
    endpoints = Endpoints(metrics, agent.readiness, agent.approve, key, config.agent.listen_address, config.agent.port,
                          slack=slack).start()
    scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30})
    scheduler.add_listener(lambda event: log.error("job %s failed: %s", event.job_id, event.exception), EVENT_JOB_ERROR)
    scheduler.add_job(metrics.timed("collect", agent.collect), "interval", seconds=config.agent.collect_interval_seconds,
                      id="collect", next_run_time=_now())
    scheduler.add_job(metrics.timed("decide", agent.decide_and_act), "interval", seconds=config.agent.decide_interval_seconds,
                      id="decide", next_run_time=_now(5))

    def scan():
        agent.scan()
        if watcher is not None and (elector is None or elector.is_leader):  # one replica notifies
            watcher.run()
        if agent.retrain_requested and (elector is None or elector.is_leader):
            scheduler.modify_job("retrain", next_run_time=_now())  # a drift trigger: retrain now, not tonight

    def retrain():
        if elector is None or elector.is_leader:  # one replica writes the registry
            agent.retrain(agent.retrain_requested or "scheduled")

    scheduler.add_job(metrics.timed("scan", scan), "interval", seconds=config.agent.anomaly_interval_seconds, id="scan")
    scheduler.add_job(metrics.timed("retrain", retrain), "interval", seconds=config.agent.retrain_interval_seconds, id="retrain")
    if config.agent.model_name:
        scheduler.add_job(metrics.timed("reload", agent.reload_model), "interval", seconds=config.agent.reload_interval_seconds,
                          id="reload", next_run_time=_now())
    if elector is not None:
        def elect():
            leader = elector.try_acquire_or_renew()
            agent.note_api(not elector.api_error, f"leader election: {elector.api_error}")
            metrics.leader.set(1 if leader else 0)
        scheduler.add_job(metrics.timed("leader", elect), "interval", seconds=max(2.0, elector.lease_seconds / 3),
                          id="leader", next_run_time=_now())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.start()
    log.info("agent started: %d workloads, mode %s, endpoints on %s:%d", len(agent.names), config.agent.mode,
             config.agent.listen_address, endpoints.port)
    stop.wait()
    log.info("stopping: waiting for the running job")
    scheduler.shutdown(wait=True)
    if elector is not None:
        elector.release()
    endpoints.stop()
    source.close()
    log.info("stopped")


def _now(after_seconds: float = 0.0):
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(seconds=after_seconds)
