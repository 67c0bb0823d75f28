"""The Grafana dashboard (infra/grafana/dashboards): a well-formed dashboard with the panels an operator needs,
whose every query parses (promtool) and reads only series that exist: recorded by infra/prometheus/rules, or
exported by the services (the metric contract) or Triton. The chart ships it unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepfake_devstack import promtool
from deepfake_devstack.binaries import REPO_ROOT

from tests.infra.conftest import CHART_DIR, PROMETHEUS_DIR, RELEASE, Render

DASHBOARD_DIR = REPO_ROOT / "infra" / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "inf", "nan"}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query."""
    return [(panel["title"], target["expr"]) for panel in panels(dashboard) for target in panel["targets"]]


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def known_series() -> set[str]:
    """Recorded series, the services' metric contract (with histogram suffixes), Triton's metrics the rules read,
    and Prometheus's own `up`."""
    rules = [yaml.safe_load(path.read_text()) for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))]
    recorded = {
        rule["record"] for doc in rules for group in doc["groups"] for rule in group["rules"] if "record" in rule
    }
    readme = (PROMETHEUS_DIR / "README.md").read_text()
    contract = set(re.findall(r"^\| `(deepfake_[a-z_]+)` \|", readme, flags=re.MULTILINE))
    exported = contract | {name + suffix for name in contract for suffix in HISTOGRAM_SUFFIXES}
    triton = set(
        re.findall(r"\bnv_[a-z_]+\b", "".join(path.read_text() for path in (PROMETHEUS_DIR / "rules").glob("*")))
    )
    return recorded | exported | triton | {"up"}


@pytest.fixture(scope="module", params=DASHBOARDS, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_there_is_the_platform_dashboard() -> None:
    assert [path.name for path in DASHBOARDS] == ["deepfake-platform.json"]


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"] and panel["targets"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_the_dashboard_shows_what_an_operator_watches(dashboard: dict[str, Any]) -> None:
    """Queue depth, stage latency, verdict mix, inference latency and batch size, webhook failures."""
    used = {name for _, expression in expressions(dashboard) for name in metric_names(expression)}
    assert {
        "queue:deepfake_queue_depth:max",
        "stage:deepfake_stage_duration_seconds:p95_5m",
        "state_verdict:deepfake_jobs:rate5m",
        "backend:deepfake_inference_duration_seconds:p95_5m",
        "platform:deepfake_inference_batch_size:mean5m",
        "outcome:deepfake_webhook_deliveries:rate5m",
        "pod:triton_queue_time_microseconds:mean1m",
    } <= used


def test_every_query_reads_series_that_exist(dashboard: dict[str, Any]) -> None:
    known = known_series()
    for title, expression in expressions(dashboard):
        names = metric_names(expression)
        assert names, f"{title}: no series found in {expression}"
        assert names <= known, f"{title}: {sorted(names - known)} is neither recorded nor exported"


def test_the_name_extraction_finds_series_and_skips_the_rest() -> None:
    expression = 'histogram_quantile(0.5, sum by (stage, le) (rate(x_bucket{a="b(c)"}[5m]))) / on (d) y:z:w > 0'
    assert metric_names(expression) == {"x_bucket", "y:z:w"}


@pytest.mark.usefixtures("system_programs")
def test_every_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool checks each query as the expression of a recording rule."""
    rules = [
        {"record": f"dashboard:panel_{index}:check", "expr": expression}
        for index, (_, expression) in enumerate(expressions(dashboard))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert "SUCCESS" in promtool.check_rules([path])


def test_the_chart_ships_the_dashboards_unchanged(render: Render) -> None:
    assert (CHART_DIR / "files" / "dashboards").resolve() == DASHBOARD_DIR.resolve(), "one copy: a link"
    manifests = render(None)
    (configmap,) = [m for m in manifests if m["metadata"]["name"] == f"{RELEASE}-deepfake-platform-dashboards"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(configmap["data"]) == {path.name for path in DASHBOARDS}
    for path in DASHBOARDS:
        assert configmap["data"][path.name].rstrip("\n") == path.read_text().rstrip("\n")
    off = render({"metrics": {"grafanaDashboard": {"enabled": False}}})
    assert not [m for m in off if m["metadata"]["name"].endswith("-dashboards")]
