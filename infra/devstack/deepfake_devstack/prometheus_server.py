"""A real Prometheus 2.42 on loopback, for the local stack and for tests that check what the services export.

The binary is Debian's, extracted by infra/scripts/install-system-deps.sh (see `binaries`). Its storage goes to a
scratch folder unless `data_dir` is given; `--web.enable-lifecycle` lets the stack reload a changed config.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_devstack.binaries import prometheus_binary
from deepfake_devstack.ports import LOOPBACK, free_port
from deepfake_devstack.process import ServerProcess, http_get_ok


class PrometheusQueryError(RuntimeError):
    """The Prometheus HTTP API refused a query; the message carries its error type and text."""

    code = "prometheus_query_failed"


class PrometheusServer(ServerProcess):
    """`prometheus --config.file=config_path` on a free loopback port (or `port`)."""

    name = "prometheus"
    default_startup_timeout_s = 30.0

    def __init__(
        self,
        config_path: Path,
        port: int | None = None,
        *,
        data_dir: Path | None = None,
        host: str = LOOPBACK,
        log_path: Path | None = None,
        startup_timeout_s: float | None = None,
    ) -> None:
        super().__init__(host=host, log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.config_path = Path(config_path)
        self.port = port if port is not None else free_port(host)
        self._data_dir = Path(data_dir) if data_dir is not None else None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = self.scratch_dir() / "tsdb"
        return self._data_dir

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def listen_ports(self) -> Sequence[int]:
        return [self.port]

    def command(self) -> Sequence[str]:
        return [
            str(prometheus_binary()),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ]

    def is_ready(self) -> bool:
        return http_get_ok(f"{self.url}/-/ready")

    # --- the HTTP API, for tests and `stack status` ---

    def api_get(self, path: str, **params: str) -> Any:
        """GET `/api/v1/<path>` and return its `data`; PrometheusQueryError when the API reports an error."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.url}/api/v1/{path}{query}")
        try:
            with urllib.request.urlopen(request, timeout=10.0) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector of a PromQL `expression`: `[{"metric": {...}, "value": [time, "value"]}]`."""
        data = self.api_get("query", query=expression)
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        """The scrape targets with their `health` ("up", "down", "unknown") and `labels`."""
        return list(self.api_get("targets", state="active")["activeTargets"])

    def reload(self) -> None:
        """Re-read the config file (after the stack rewrites it)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10.0):
            pass
