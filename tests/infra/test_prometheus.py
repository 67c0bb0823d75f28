"""Prometheus configs and rules: promtool accepts them, every alert is unit-tested both ways, and the metric names
the rules use are the ones the services export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepfake_devstack import promtool
from deepfake_devstack.stack import render_prometheus_config

from tests.infra.conftest import PROMETHEUS_DIR

RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def rules_of(name: str) -> list[dict[str, Any]]:
    return [rule for group in load(RULES_DIR / name)["groups"] for rule in group["rules"]]


pytestmark = pytest.mark.usefixtures("system_programs")


def test_the_local_config_and_its_rules_pass_promtool() -> None:
    output = promtool.check_config(PROMETHEUS_DIR / "prometheus-local.yml")
    assert "2 rule files found" in output


def test_the_kubernetes_config_passes_promtool_with_static_targets(tmp_path: Path) -> None:
    """Debian's Prometheus build has no Kubernetes discovery, so its blocks are swapped for static targets here;
    everything else (relabelling regexes, rule files) is checked as written."""
    config = load(PROMETHEUS_DIR / "prometheus-k8s.yml")
    swapped = 0
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["10.0.0.1:8000"]}]
            swapped += 1
    assert swapped == 1
    config["rule_files"] = [str(RULES_DIR / Path(path).name) for path in config["rule_files"]]
    checked = tmp_path / "prometheus-k8s.yml"
    checked.write_text(yaml.safe_dump(config))
    promtool.check_config(checked)


def test_rule_files_pass_promtool() -> None:
    output = promtool.check_rules(RULE_FILES)
    assert output.count("SUCCESS") == len(RULE_FILES)


def test_alert_and_recording_unit_tests_pass() -> None:
    output = promtool.test_rules(TEST_FILES)
    assert output.count("SUCCESS") == len(TEST_FILES), output


def test_promtool_reports_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m])\n")
    with pytest.raises(promtool.PromtoolError, match="Broken|parse"):
        promtool.check_rules([broken])


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules_of("alerts.yml")}
    assert alerts - firing == set(), "alerts without a case where they fire"
    assert alerts - silent == set(), "alerts without a case where they stay silent"


def test_alerts_read_only_recorded_series_that_exist() -> None:
    recorded = {rule["record"] for rule in rules_of("recording.yml")}
    used = {
        name
        for rule in rules_of("alerts.yml")
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", rule["expr"])
    }
    assert used and used <= recorded


def test_the_metric_contract_matches_the_services() -> None:
    """The README's contract, the rules, and the metrics deepfake_jobs.metrics defines name the same metrics."""
    from deepfake_jobs import metrics

    readme = (PROMETHEUS_DIR / "README.md").read_text()
    contract = set(re.findall(r"^\| `(deepfake_[a-z_]+)` \|", readme, flags=re.MULTILINE))
    defined = {
        collector._name  # prometheus_client keeps counters' names without the _total suffix
        + ("_total" if type(collector).__name__ == "Counter" else "")
        for collector in vars(metrics).values()
        if type(collector).__name__ in ("Counter", "Histogram", "Gauge")
    } | {metrics.QUEUE_DEPTH_NAME}
    assert contract == defined
    rules_text = "".join(path.read_text() for path in RULE_FILES)
    used = set(re.findall(r"\b(deepfake_[a-z_]+?)(?:_bucket|_count|_sum)?\b[\[{(\s)]", rules_text))
    assert used <= contract, used - contract


def test_the_stack_renders_the_local_config_with_real_ports(tmp_path: Path) -> None:
    template = load(PROMETHEUS_DIR / "prometheus-local.yml")
    targets = {
        "prometheus": [("127.0.0.1:19090", {})],
        "deepfake-worker": [("127.0.0.1:19100", {"queue_group": "preprocess"}), ("127.0.0.1:19101", {})],
    }
    config = render_prometheus_config(template, targets, RULES_DIR)
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "deepfake-worker"}, "jobs of services that did not start are dropped"
    assert jobs["deepfake-worker"] == [
        {"targets": ["127.0.0.1:19100"], "labels": {"queue_group": "preprocess"}},
        {"targets": ["127.0.0.1:19101"]},
    ]
    assert config["global"] == template["global"]
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(yaml.safe_dump(config))
    assert "2 rule files found" in promtool.check_config(rendered)
