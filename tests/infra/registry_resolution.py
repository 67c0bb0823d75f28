"""The resolutions test_registry_install.py checks, started in the background when the session's tests are known.

Each is `pip install --dry-run --report` of a set of pins in one fresh virtual environment (the interpreter's own
pip, as `make setup` uses), with every pip setting dropped: no configuration file, no PIP_* variable, no
find-links, no extra index, no constraint, no cache; only a CA bundle this machine's network needs. The lock's
resolution takes minutes (pip fetches every index page and every wheel, CUDA libraries of torch included), most
of it waiting on the registry and on disk, so tests/infra/conftest.py starts it as soon as collection has
selected a test of that file, at a lower CPU priority, and the test waits for it where it runs. Nothing here
decides whether a pin is fine: the test reads pip's exit status and report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import venv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deepfake_devstack.binaries import REPO_ROOT

LOCKS = [REPO_ROOT / "requirements" / "dev.lock"]
TRITON_SETUP = REPO_ROOT / "infra" / "triton" / "setup-venv.sh"
ENVIRONMENTS = ["dev.lock", "triton-venv"]
TEST_FILE = Path(__file__).with_name("test_registry_install.py")
RESOLVE_TIMEOUT_S = 840
VENV_TIMEOUT_S = 300
# Below the tests' own processes: the resolutions use the CPU the session leaves idle.
NICENESS = 10


def pip_environment(home: Path) -> dict[str, str]:
    """The environment of a user's pip: no config file and no PIP_* variable, except a CA bundle this
    machine's network needs to reach the registry (it changes where certificates come from, not packages)."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PIP_CONFIG_FILE": os.devnull}
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "NO_PROXY"):
        if os.environ.get(name):
            environment[name] = os.environ[name]
    return environment


def triton_pins() -> list[str]:
    """The pins infra/triton/setup-venv.sh installs into Triton's Python environment."""
    text = TRITON_SETUP.read_text()
    pins = re.findall(r'"([A-Za-z0-9_.-]+==[0-9][^"\s]*)"', text)
    version = re.search(r'^PYTRITON_VERSION="([0-9.]+)"', text, re.MULTILINE)
    assert version and pins, "setup-venv.sh no longer names its pins the way this test reads them"
    return [*pins, f"nvidia-pytriton=={version.group(1)}"]


def pins_of(environment_name: str) -> str:
    return LOCKS[0].read_text() if environment_name == "dev.lock" else "\n".join(triton_pins()) + "\n"


@dataclass
class Resolution:
    """One `pip install --dry-run` of a set of pins, running in the background."""

    process: subprocess.Popen[bytes]
    report: Path
    stderr: Path

    def wait(self) -> tuple[int, str]:
        """pip's exit status and the end of what it printed."""
        try:
            returncode = self.process.wait(timeout=RESOLVE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return returncode, self.stderr.read_text(errors="replace")[-3000:]


def _start(environment: Path, environment_name: str, folder: Path) -> Resolution:
    folder.mkdir(parents=True)
    report, requirements, stderr = folder / "report.json", folder / "requirements.txt", folder / "pip.stderr"
    requirements.write_text(pins_of(environment_name))
    command = ["nice", "-n", str(NICENESS),
               str(environment / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed",
               "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--report", str(report),
               "-r", str(requirements)]  # fmt: skip
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            command, env=pip_environment(folder), stdout=subprocess.DEVNULL, stderr=errors, cwd=folder
        )
    return Resolution(process, report, stderr)


class Resolutions:
    """A fresh venv, then one pip process per environment name, all at once, in a background thread."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = [name for name in ENVIRONMENTS if name in set(names)]
        self.folder = Path(tempfile.mkdtemp(prefix="registry-resolutions-"))
        self._started: dict[str, Resolution] = {}
        self._error: BaseException | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="registry-resolutions", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            environment = self.folder / "venv"
            venv.EnvBuilder(with_pip=True).create(environment)
            for name in self.names:
                with self._lock:
                    if self._stopped:
                        return
                    self._started[name] = _start(environment, name, self.folder / name)
        except BaseException as error:  # reported by get()
            self._error = error

    def get(self, name: str) -> Resolution:
        self._thread.join(VENV_TIMEOUT_S)
        if self._error is not None:
            raise self._error
        assert name in self._started, f"the resolution of {name} was not started (selected: {self.names})"
        return self._started[name]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for resolution in self._started.values():
                if resolution.process.poll() is None:
                    resolution.process.kill()
                    resolution.process.wait()
        self._thread.join(VENV_TIMEOUT_S)
        shutil.rmtree(self.folder, ignore_errors=True)


_background: Resolutions | None = None


def selected_environments(items: Iterable[object]) -> set[str]:
    """The environment names of the selected tests of test_registry_install.py."""
    names = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "path", None) == TEST_FILE and callspec is not None:
            if "environment_name" in callspec.params:
                names.add(callspec.params["environment_name"])
    return names


def start_in_background(items: Iterable[object]) -> None:
    """Start the resolutions the selected tests check (called once collection is done)."""
    global _background
    names = selected_environments(items)
    if names and _background is None:
        _background = Resolutions(names)


def resolutions_for(names: Iterable[str]) -> Resolutions:
    """The background resolutions, or (when collection did not start them) new ones."""
    global _background
    wanted = set(names)
    if _background is None or not wanted <= set(_background.names):
        if _background is not None:
            _background.stop()
        _background = Resolutions(wanted)
    return _background


def stop_background() -> None:
    global _background
    if _background is not None:
        _background.stop()
        _background = None
