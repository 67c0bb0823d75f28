"""Every pin installs from the public registries alone, on a machine without this one's local wheel folders.

The development machine carries a local CPU build of torch (`2.13.0+cpu`) in a wheel folder and pip settings
that point at it. A user's machine has neither, so a lock file that pins a local build (or a package only a
local folder holds) stops `make setup` there. This resolves the lock in a fresh virtual environment with every
pip setting dropped (no configuration file, no find-links, no extra index, no constraint), as a new user's pip
would, and checks that every distribution comes from the registry over https.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.infra.conftest import REPO_ROOT as ROOT

LOCKS = [ROOT / "requirements" / "dev.lock"]
TRITON_SETUP = ROOT / "infra" / "triton" / "setup-venv.sh"
LOCAL_LABEL = re.compile(r"^[A-Za-z0-9_.-]+==[^\s;#]*\+", re.MULTILINE)


def _pip_environment(home: Path) -> dict[str, str]:
    """The environment of a user's pip: no config file and no PIP_* variable, except a CA bundle this
    machine's network needs to reach the registry (it changes where certificates come from, not packages)."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PIP_CONFIG_FILE": os.devnull}
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "NO_PROXY"):
        if os.environ.get(name):
            environment[name] = os.environ[name]
    return environment


def _triton_pins() -> list[str]:
    """The pins infra/triton/setup-venv.sh installs into Triton's Python environment."""
    text = TRITON_SETUP.read_text()
    pins = re.findall(r'"([A-Za-z0-9_.-]+==[0-9][^"\s]*)"', text)
    version = re.search(r'^PYTRITON_VERSION="([0-9.]+)"', text, re.MULTILINE)
    assert version and pins, "setup-venv.sh no longer names its pins the way this test reads them"
    return [*pins, f"nvidia-pytriton=={version.group(1)}"]


def test_no_lock_pins_a_local_build() -> None:
    for lock in LOCKS:
        assert not LOCAL_LABEL.findall(lock.read_text()), f"{lock} pins a local build (+label)"
        assert not re.search(r"^\s*(--find-links|-f |--extra-index-url|--index-url|-i )", lock.read_text(), re.M)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    environment = tmp_path_factory.mktemp("registry") / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    return environment


@pytest.mark.timeout(900)
@pytest.mark.parametrize("environment_name", ["dev.lock", "triton-venv"])
def test_every_pin_resolves_from_the_registry_alone(environment_name: str, fresh_venv: Path, tmp_path: Path) -> None:
    """The project venv (the lock) and Triton's python-backend venv (numpy 1.26: resolved apart)."""
    environment = fresh_venv
    report = tmp_path / "report.json"
    requirements = tmp_path / "requirements.txt"
    pins = LOCKS[0].read_text() if environment_name == "dev.lock" else "\n".join(_triton_pins()) + "\n"
    requirements.write_text(pins)
    command = [str(environment / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed",
               "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--report", str(report),
               "-r", str(requirements)]  # fmt: skip
    completed = subprocess.run(command, env=_pip_environment(tmp_path), capture_output=True, text=True, timeout=840)
    assert completed.returncode == 0, (
        "a pin does not resolve from the public registry alone (see the lock files):\n" + completed.stderr[-3000:]
    )
    installs = json.loads(report.read_text())["install"]
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
