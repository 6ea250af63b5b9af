"""The alert rules and the Grafana dashboard in deploy/ are valid, fire when they should
(promtool's unit tests), and name only metrics that /metrics serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from outbox import relay
from tasks_app import services

from .conftest import deliver, events_of
from .factories import TaskFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "selfos-outbox.json"
# Metric names in PromQL: ours and django-prometheus's (functions and labels are lower case too,
# but never start with these prefixes).
METRIC = re.compile(r"\b((?:outbox|django)_[a-z0-9_]+)")


def promtool() -> str:
    """promtool's path; skip without it, and under CI=true fail (.ci/run installs it)."""
    path = shutil.which("promtool")
    if path:
        return path
    reason = "promtool is not installed (Debian's prometheus package)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: the alert rules cannot be checked")
    pytest.skip(reason)


def run(*args: str | Path) -> str:
    done = subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in panels
        for target in panel["targets"]
    }


def test_the_alert_rules_are_valid_and_fire_as_their_unit_tests_say() -> None:
    assert "SUCCESS: 5 rules found" in run("check", "rules", ALERTS)
    assert "SUCCESS" in run("test", "rules", ALERT_TESTS)
    assert set(alert_expressions()) == {
        "OutboxDeadDeliveries",
        "OutboxRelayLagging",
        "OutboxOldestPendingEventTooOld",
        "OutboxRelayStalled",
        "OutboxSubscriberNotSucceeding",
    }


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel's query parsed by promtool, as a recording rule (Grafana's $__rate_interval
    becomes a duration first)."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_expressions().values())
    ]
    assert len(rules) >= 10
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run("check", "rules", path)


@pytest.mark.django_db(transaction=True)
def test_every_metric_the_alerts_and_the_dashboard_name_is_served(client: Client, use_subscribers) -> None:
    # Some of everything, so that the labelled metrics have samples to show.
    use_subscribers("recorder", "broken")
    user = UserFactory()
    services.complete_task(TaskFactory(owner=user), by=user)
    relay.relay_once()
    (event,) = events_of("task.completed")
    deliver("recorder", event)
    deliver("broken", event)  # dead: outbox_dead_deliveries has a sample only when some are
    client.get("/healthz")
    served = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for sample in family.samples
    }
    named = {
        where: set(METRIC.findall(expr))
        for where, expr in {**alert_expressions(), **dashboard_expressions()}.items()
    }
    missing = {where: names - served for where, names in named.items() if names - served}
    assert not missing, f"not on /metrics: {missing}"
    assert all(named.values()), "every expression names a metric"
