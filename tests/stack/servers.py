"""Processes and HTTP endpoints the service tests run on loopback: Celery workers, the gateway, and a
scriptable HTTP server that plays both the media host and the webhook receiver.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deepfake_devstack.ports import LOOPBACK, free_port, port_accepts_connections
from deepfake_devstack.process import ServerProcess, child_pids

ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker(ServerProcess):
    """`celery worker` consuming the given queues with the platform's app; ready when it logs 'ready.'."""

    name = "celery-worker"
    default_startup_timeout_s = 60.0

    def __init__(
        self,
        env: Mapping[str, str],
        queues: Sequence[str],
        *,
        concurrency: int = 2,
        node_name: str = "tests",
        metrics_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(log_path=log_path)
        self.env = dict(env)
        self.queues = list(queues)
        self.concurrency = concurrency
        self.node_name = node_name
        self.metrics_port = metrics_port or free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> Sequence[str]:
        return [
            sys.executable, "-m", "celery", "-A", "deepfake_worker.celery_app", "worker",
            "-Q", ",".join(self.queues),
            "-c", str(self.concurrency),
            "-n", f"{self.node_name}@%h",
            "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        multiproc = self.scratch_dir() / "prometheus"
        multiproc.mkdir(exist_ok=True)
        return {
            **self.env,
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "DEEPFAKE_METRICS_PORT": str(self.metrics_port),
            "DEEPFAKE_METRICS_HOST": LOOPBACK,
            "PYTHONUNBUFFERED": "1",
        }

    def working_directory(self) -> Path:
        return ROOT

    def is_ready(self) -> bool:
        return " ready." in self.log_tail(200) and port_accepts_connections(self.metrics_port)

    def metrics(self) -> dict[str, float]:
        """Samples of the worker's /metrics by full name with labels, e.g. 'deepfake_queue_depth{queue="x"}'."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(self.url, timeout=10).text):
            for sample in family.samples:
                labels = ",".join(f'{key}="{value}"' for key, value in sample.labels.items())
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def pool_pids(self) -> list[int]:
        """Process ids of the prefork pool's children (the processes that run tasks)."""
        return [] if self.pid is None else child_pids(self.pid)


class GatewayServer(ServerProcess):
    """`uvicorn deepfake_gateway.main:app` with the same environment as the workers."""

    name = "gateway"
    default_startup_timeout_s = 60.0

    def __init__(self, env: Mapping[str, str], *, port: int | None = None, log_path: Path | None = None) -> None:
        super().__init__(log_path=log_path)
        self.env = dict(env)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        return [
            sys.executable, "-m", "uvicorn", "deepfake_gateway.main:app",
            "--host", self.host, "--port", str(self.port), "--log-level", "info",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {**self.env, "PYTHONUNBUFFERED": "1"}

    def working_directory(self) -> Path:
        return ROOT

    def is_ready(self) -> bool:
        return port_accepts_connections(self.port)


# --- a scriptable HTTP server -----------------------------------------------------------------------------------


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that vanish mid-request (killed workers, refused sizes) are expected here, not errors."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Route:
    """How the server answers one path. `hold` pauses after the headers and half the body until it is set."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    redirect: str | None = None
    fail_first: int = 0  # answer 500 to this many requests first
    hold: threading.Event | None = None
    hold_once: bool = True  # only the first request is held
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    served: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


class ScriptedHTTPServer:
    """Threaded HTTP server on loopback: media files, redirects, slow bodies, and a webhook receiver."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[RecordedRequest] = []
        self.changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
                return

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                server._handle(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                server._handle(self, self.rfile.read(length))

        self._httpd = _QuietHTTPServer((LOOPBACK, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def start(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def received(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def wait_for(
        self, path: str, count: int = 1, timeout_s: float = 60.0, method: str | None = None
    ) -> list[RecordedRequest]:
        """Block until `count` requests to `path` arrived (a held answer may still be on its way); returns them."""
        what = f"{count} request(s) to {path}"
        self._wait(lambda: len(self.received(path, method)) >= count, what, timeout_s)
        return self.received(path, method)

    def _wait(self, done: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what} did not happen within {timeout_s} s")
                self.changed.wait(remaining)

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path.split("?", 1)[0]
        route = self.routes.get(path)
        hold: threading.Event | None = None
        declare_length = True
        if route is None:
            status, headers, payload = 404, {"Content-Type": "text/plain"}, b"not found"
        else:
            with self.changed:
                route.served += 1
                served = route.served
            status, headers, payload = route.status, {"Content-Type": route.content_type, **route.headers}, route.body
            if route.redirect is not None:
                status, headers, payload = 302, {"Location": route.redirect}, b""
            elif served <= route.fail_first:
                status, headers, payload = 500, {"Content-Type": "text/plain"}, b"failing on purpose"
            if route.hold is not None and (served == 1 or not route.hold_once):
                hold = route.hold
            declare_length = route.declare_length
        # Recorded before answering, so a client that has its answer always finds its request here.
        with self.changed:
            self.requests.append(
                RecordedRequest(handler.command, path, dict(handler.headers.items()), body, status, time.time())
            )
            self.changed.notify_all()
        self._send(handler, status, headers, payload, hold, declare_length=declare_length)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        payload: bytes,
        hold: threading.Event | None = None,
        *,
        declare_length: bool = True,
    ) -> None:
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if declare_length:
                handler.send_header("Content-Length", str(len(payload)))
            else:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            if hold is not None:
                half = len(payload) // 2
                handler.wfile.write(payload[:half])
                handler.wfile.flush()
                hold.wait(120)
                handler.wfile.write(payload[half:])
            else:
                handler.wfile.write(payload)
        except OSError:  # the client went away (a refused size, a timeout, a killed worker)
            handler.close_connection = True
