"""A local server run as a child process: start it, wait until it answers, stop it; the base of every devstack server.

Each server writes its output to a log file so that a failed start can say why (the error ends with the log's
tail), and runs in its own session (process group) so that stopping it also stops whatever it spawned.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from deepfake_devstack.ports import LOOPBACK, port_is_free

POLL_INTERVAL_S = 0.05


class ServerStartError(RuntimeError):
    """A server did not become ready; the message names it, says why, and ends with the tail of its log."""

    code = "server_start_failed"

    def __init__(self, name: str, reason: str, log_path: Path | None, log_tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        if log_path is None:
            super().__init__(f"{name} {reason}.")
            return
        tail = log_tail.strip() or "(the log is empty)"
        super().__init__(f"{name} {reason} (log: {log_path}). Last lines of its log:\n{tail}")


def http_get_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether `url` answers a GET with a 2xx status: the readiness check of every HTTP server here."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def read_log_tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a log file ('' when it does not exist), read without loading all of it."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def process_start_ticks(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None when it does not exist.

    Recorded with each pid of the stack so that `down` never signals an unrelated process that reused the pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its closing one are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line: starttime


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc), e.g. the prefork pool of a Celery worker; [] if it is gone."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.extend(int(child) for child in task.read_text().split())
        except OSError:  # the thread or the process ended meanwhile
            continue
    return children


def pid_is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether `pid` runs (and is still the process that started at `start_ticks`, when given)."""
    ticks = process_start_ticks(pid)
    if ticks is None:
        return False
    if start_ticks is not None and ticks != start_ticks:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited; only its parent's wait is missing


def terminate_process_group(pid: int, start_ticks: int | None = None, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process group led by `pid`, then SIGKILL it after `timeout_s`; True when something was stopped.

    Works for processes this interpreter did not start (the stack's `down`): waits by polling /proc.
    """
    if not pid_is_alive(pid, start_ticks):
        return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_is_alive(pid, start_ticks):
                return True
            time.sleep(POLL_INTERVAL_S)
    return True


class ServerProcess(abc.ABC):
    """One server program on loopback, run as a child process and usable as a context manager.

    Subclasses say how to run the program (`command`, `environment`), how to tell it is ready (`is_ready`) and
    where it answers (`url`). Files a subclass is not given a place for (the log, data) go to a scratch folder
    that lives as long as the object, so a server can be stopped and started again with its data.
    """

    #: Shown in errors and used for file names.
    name: str = "server"
    #: How long `start` waits for `is_ready`.
    default_startup_timeout_s: float = 30.0

    def __init__(
        self, *, host: str = LOOPBACK, log_path: Path | None = None, startup_timeout_s: float | None = None
    ) -> None:
        self.host = host
        self._log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_s = startup_timeout_s or self.default_startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    # --- what a subclass provides ---

    @abc.abstractmethod
    def command(self) -> Sequence[str]:
        """The program and its arguments."""

    def environment(self) -> Mapping[str, str] | None:
        """Variables added to this process's environment for the server (None: inherit it unchanged)."""
        return None

    def working_directory(self) -> Path | None:
        """Where the program runs (None: the current directory)."""
        return None

    def listen_ports(self) -> Sequence[int]:
        """Ports the program will listen on; `start` refuses to run when one is taken, since the readiness check
        could otherwise be answered by whatever holds the port."""
        return ()

    @abc.abstractmethod
    def is_ready(self) -> bool:
        """Whether the server answers requests now; called repeatedly until true during `start`."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the server."""

    # --- files ---

    def scratch_dir(self) -> Path:
        """A private folder for this server's files, removed by `close` (or when the object is collected)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix=f"deepfake-{self.name}-")
        return Path(self._scratch.name)

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            self._log_path = self.scratch_dir() / f"{self.name}.log"
        return self._log_path

    def log_tail(self, lines: int = 30) -> str:
        return read_log_tail(self.log_path, lines)

    # --- life cycle ---

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the program and return once `is_ready` holds; ServerStartError (with the log tail) otherwise."""
        if self.running:
            return self
        taken = [port for port in self.listen_ports() if not port_is_free(port, self.host)]
        if taken:
            ports = ", ".join(f"{self.host}:{port}" for port in taken)
            raise ServerStartError(
                self.name, f"cannot start: {ports} is already in use (another server, or a stale one)", None, ""
            )
        command = [str(part) for part in self.command()]
        environment = self.environment()
        env = {**os.environ, **environment} if environment is not None else None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {self.name}: {' '.join(command)}\n".encode())
            log.flush()
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.working_directory(),
                    start_new_session=True,
                )
            except OSError as error:
                raise ServerStartError(self.name, f"could not be run ({error})", self.log_path, "") from error
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            exit_code = self._process.poll()
            if exit_code is not None:
                self._process = None
                raise ServerStartError(
                    self.name, f"exited with code {exit_code} before it was ready", self.log_path, self.log_tail()
                )
            if self._probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    self.name,
                    f"was not ready {self.startup_timeout_s:.0f} s after it started",
                    self.log_path,
                    self.log_tail(),
                )
            time.sleep(POLL_INTERVAL_S)

    def _probe(self) -> bool:
        try:
            return self.is_ready()
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the program (SIGTERM to its process group, SIGKILL after `timeout_s`); its files stay."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self) -> Self:
        """Stop and start again with the same port and files (persistence tests, config reloads)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the program and remove its scratch folder."""
        self.stop()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"
