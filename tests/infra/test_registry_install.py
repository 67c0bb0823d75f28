"""Every pin installs from the public registries alone, on a machine without this one's local wheel folders.

The development machine carries a local CPU build of torch (`2.13.0+cpu`) in a wheel folder and pip settings
that point at it. A user's machine has neither, so a lock file that pins a local build (or a package only a
local folder holds) stops `make setup` there. This resolves the lock in a fresh virtual environment with every
pip setting dropped (no configuration file, no find-links, no extra index, no constraint), as a new user's pip
would, and checks that every distribution comes from the registry over https.

The two resolutions (the lock, Triton's pins) run at once, as two pip processes in the one fresh venv, started in
the background as soon as collection has selected these tests (tests/infra/registry_resolution.py; the hook is
in tests/infra/conftest.py); each test waits for its own here.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import pytest

from tests.infra.registry_resolution import (
    ENVIRONMENTS,
    LOCKS,
    Resolutions,
    resolutions_for,
    selected_environments,
    stop_background,
)

LOCAL_LABEL = re.compile(r"^[A-Za-z0-9_.-]+==[^\s;#]*\+", re.MULTILINE)


def test_no_lock_pins_a_local_build() -> None:
    for lock in LOCKS:
        assert not LOCAL_LABEL.findall(lock.read_text()), f"{lock} pins a local build (+label)"
        assert not re.search(r"^\s*(--find-links|-f |--extra-index-url|--index-url|-i )", lock.read_text(), re.M)


@pytest.fixture(scope="module")
def resolutions(request: pytest.FixtureRequest) -> Iterator[Resolutions]:
    """Every resolution the selected tests check, all running at once (started at collection when it could)."""
    yield resolutions_for(selected_environments(request.session.items) or ENVIRONMENTS)
    stop_background()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("environment_name", ENVIRONMENTS)
def test_every_pin_resolves_from_the_registry_alone(environment_name: str, resolutions: Resolutions) -> None:
    """The project venv (the lock) and Triton's python-backend venv (numpy 1.26: resolved apart)."""
    resolution = resolutions.get(environment_name)
    returncode, stderr = resolution.wait()
    assert returncode == 0, "a pin does not resolve from the public registry alone (see the lock files):\n" + stderr
    installs = json.loads(resolution.report.read_text())["install"]
    urls = {item["metadata"]["name"].lower(): item["download_info"]["url"] for item in installs}
    assert "onnxruntime" in urls, sorted(urls)
    local = {name: url for name, url in urls.items() if not url.startswith("https://")}
    assert not local, f"resolved from somewhere other than the registry: {local}"
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}
    assert not {name: v for name, v in versions.items() if "+" in v}, "a local build was chosen"
    if environment_name == "dev.lock":
        assert versions.get("torch") == "2.13.0", versions.get("torch")


if __name__ == "__main__":  # pragma: no cover - a manual run prints the resolution
    sys.exit(pytest.main([__file__, "-q"]))
