"""Where the system programs of the local stack live: redis-server, prometheus and promtool.

One place for this lookup, shared by the server classes, `stack.py` and the tests. The programs come from
infra/scripts/install-system-deps.sh (`make setup`): redis-server from apt, Prometheus extracted from Debian's
package into .cache/tools/prometheus/ (not installed system-wide, to skip its 218 MB of web assets).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALL_SCRIPT = REPO_ROOT / "infra" / "scripts" / "install-system-deps.sh"

#: The programs the install script provides.
SYSTEM_PROGRAMS = ("redis-server", "prometheus", "promtool")


class MissingProgramError(RuntimeError):
    """A system program of the local stack is not installed; the message says how to install it."""

    code = "missing_program"

    def __init__(self, program: str, detail: str = "") -> None:
        self.program = program
        message = (
            f"{program} is not installed. Run `make setup` (or `bash {INSTALL_SCRIPT.relative_to(REPO_ROOT)}` as root)"
            " to install the local stack's programs."
        )
        super().__init__(f"{message} {detail}".strip())


def tools_dir() -> Path:
    """The ignored folder holding extracted tools (`DEEPFAKE_TOOLS_DIR` overrides, as in the install script)."""
    return Path(os.environ.get("DEEPFAKE_TOOLS_DIR", REPO_ROOT / ".cache" / "tools"))


def _candidates(program: str) -> list[Path]:
    extracted = tools_dir() / "prometheus" / "usr" / "bin" / program
    system = [Path("/usr/bin") / program, Path("/usr/sbin") / program]
    on_path = shutil.which(program)
    found = [extracted] if program in ("prometheus", "promtool") else []
    if on_path:
        found.append(Path(on_path))
    return found + system


def find_program(program: str) -> Path | None:
    """The first executable copy of `program`: the extracted tools first, then PATH, then /usr/bin."""
    for candidate in _candidates(program):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_program(program: str) -> Path:
    """The path of `program`, or MissingProgramError telling the reader to run `make setup`."""
    path = find_program(program)
    if path is None:
        raise MissingProgramError(program)
    return path


def prometheus_binary() -> Path:
    return require_program("prometheus")


def promtool_binary() -> Path:
    return require_program("promtool")


def redis_server_binary() -> Path:
    return require_program("redis-server")


def ensure_system_programs(timeout_s: float = 600.0) -> dict[str, Path]:
    """Every program the local stack needs, running the install script first when one is missing.

    For test sessions and `make up`, so that a fresh checkout works after one command. The script needs root
    (apt-get); when it fails, the error carries its output.
    """
    missing = [program for program in SYSTEM_PROGRAMS if find_program(program) is None]
    if missing:
        completed = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr).strip()[-2000:]
            raise MissingProgramError(", ".join(missing), f"The install script failed:\n{output}")
    return {program: require_program(program) for program in SYSTEM_PROGRAMS}
