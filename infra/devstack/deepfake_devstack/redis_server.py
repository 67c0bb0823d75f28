"""A real redis-server on loopback for tests and the local stack (Celery's broker and result backend).

Snapshots are off (`--save ""`). Given a `data_dir` (the local stack gives one) Redis runs with the append-only file
by default, as compose and the chart run it, so data survives `restart()` and a crash; without one (the test
fixtures) nothing is written behind a test's back. `appendonly` overrides either default.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from deepfake_devstack.binaries import redis_server_binary
from deepfake_devstack.ports import LOOPBACK, free_port
from deepfake_devstack.process import ServerProcess


class RedisServer(ServerProcess):
    """`redis-server` on a free loopback port (or `port`), stopped on exit from the `with` block."""

    name = "redis"
    default_startup_timeout_s = 15.0

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool | None = None,
        data_dir: Path | None = None,
        *,
        host: str = LOOPBACK,
        log_path: Path | None = None,
        startup_timeout_s: float | None = None,
    ) -> None:
        super().__init__(host=host, log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.port = port if port is not None else free_port(host)
        self.appendonly = appendonly if appendonly is not None else data_dir is not None
        self._data_dir = Path(data_dir) if data_dir is not None else None

    @property
    def data_dir(self) -> Path:
        """Where the append-only file goes (also redis-server's working directory)."""
        if self._data_dir is None:
            self._data_dir = self.scratch_dir() / "data"
        return self._data_dir

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def listen_ports(self) -> Sequence[int]:
        return [self.port]

    def command(self) -> Sequence[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", "",  # to stdout, which goes to our log file
        ]  # fmt: skip

    def is_ready(self) -> bool:
        # An inline PING; while it loads the append-only file Redis answers "-LOADING ...", which is not ready.
        with socket.create_connection((self.host, self.port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
