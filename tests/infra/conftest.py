"""Fixtures of the infra tests: the system programs (installed on first use), and the chart rendered offline; and
the registry resolutions of test_registry_install.py and the image environments of test_image_contents.py, started
in the background once collection is done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from deepfake_devstack.binaries import REPO_ROOT, MissingProgramError, ensure_system_programs

from tests.infra import image_env, registry_resolution

CHART_DIR = REPO_ROOT / "charts" / "deepfake-platform"
PROMETHEUS_DIR = REPO_ROOT / "infra" / "prometheus"
RELEASE = "detect"
NAMESPACE = "deepfake"

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any] | None], list[Manifest]]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the registry resolutions test_registry_install.py checks and the image environments
    test_image_contents.py loads (minutes each on a fresh clone, mostly waiting on the registry and the disk)
    now, in the background at a lower CPU priority, when this session runs one of those tests."""
    if not session.config.option.collectonly:
        registry_resolution.start_in_background(session.items)
        image_env.start_in_background(session.items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    registry_resolution.stop_background()
    image_env.close_session_image_envs()


@pytest.fixture(scope="session")
def system_programs() -> dict[str, Path]:
    """redis-server, prometheus and promtool; runs infra/scripts/install-system-deps.sh when one is missing."""
    try:
        return ensure_system_programs()
    except MissingProgramError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    helm_python.disable_logging()  # Helm logs each followed symlink (files/rules) at INFO
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


def parse_manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Every object of a render, NOTES.txt left out."""
    manifests = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        manifests.extend(document for document in yaml.safe_load_all(text) if document)
    return manifests


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Render:
    """Render the chart with `values` merged over its defaults, as `helm template` would."""

    def _render(values: dict[str, Any] | None = None) -> list[Manifest]:
        return parse_manifests(chart.render(values or {}, name=RELEASE, namespace=NAMESPACE))

    return _render


def production_values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "ci" / "production-values.yaml").read_text())
