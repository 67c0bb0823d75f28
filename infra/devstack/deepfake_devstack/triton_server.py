"""A real Triton Inference Server on loopback, for tests and `make up`: the binary from the nvidia-pytriton wheel.

The wheel (installed into .venv-triton by infra/triton/setup-venv.sh) carries `tritonserver` 2.51 with the python
backend only, so this runs the cpu variant of the model repository (python backend + onnxruntime). The stub's
Python environment comes from PATH, hence .venv-triton/bin goes first on PATH; see docs/local-infra.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from deepfake_devstack.ports import LOOPBACK, free_port, preferred_or_free_port
from deepfake_devstack.process import ServerProcess, ServerStartError, http_get_ok

REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_SCRIPT = REPO_ROOT / "infra" / "triton" / "setup-venv.sh"
DEFAULT_VENV = REPO_ROOT / ".venv-triton"
DEFAULT_REPOSITORY = REPO_ROOT / "model_repository" / "cpu"
STUB_PYTHON = "3.11"
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub")


class TritonSetupError(RuntimeError):
    """.venv-triton could not be prepared; the message carries the setup script's output."""

    code = "triton_setup_failed"


@dataclass(frozen=True)
class TritonInstallation:
    """Paths of a prepared .venv-triton: the server binary, its bundled libraries and the backend directory."""

    venv: Path
    site_packages: Path
    backend_directory: Path

    @property
    def binary(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def library_dir(self) -> Path:
        # The wheel's auditwheel-vendored libraries; needed by the stub once it is copied out of site-packages.
        return self.site_packages / "nvidia_pytriton.libs"

    def is_complete(self) -> bool:
        backend = self.backend_directory / "python"
        return self.binary.is_file() and all((backend / name).is_file() for name in _BACKEND_FILES)

    def environment(self) -> dict[str, str]:
        """Variables for the server: the stub finds numpy<2 and onnxruntime through PATH (local-infra.md)."""
        return {
            "PATH": os.pathsep.join([str(self.venv / "bin"), os.environ.get("PATH", "/usr/bin:/bin")]),
            "LD_LIBRARY_PATH": os.pathsep.join(
                filter(None, [str(self.library_dir), os.environ.get("LD_LIBRARY_PATH")])
            ),
            # The project venv's packages (numpy 2) must not leak into the stub; CPython treats "" as unset.
            "PYTHONPATH": "",
            "PYTHONHOME": "",
            "VIRTUAL_ENV": str(self.venv),
        }


def triton_installation(venv: Path = DEFAULT_VENV, backend_directory: Path | None = None) -> TritonInstallation:
    """Where a .venv-triton keeps things, whether or not it is prepared yet."""
    venv = Path(venv)
    return TritonInstallation(
        venv=venv,
        site_packages=venv / "lib" / f"python{STUB_PYTHON}" / "site-packages",
        backend_directory=Path(backend_directory) if backend_directory else venv / "backends",
    )


def ensure_triton_venv(
    venv: Path = DEFAULT_VENV, backend_directory: Path | None = None, timeout_s: float = 900.0
) -> TritonInstallation:
    """The prepared installation, running infra/triton/setup-venv.sh first when anything is missing."""
    installation = triton_installation(venv, backend_directory)
    if installation.is_complete():
        return installation
    env = {**os.environ, "VENV": str(installation.venv), "BACKEND_DIR": str(installation.backend_directory)}
    completed = subprocess.run(
        ["bash", str(SETUP_SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if completed.returncode != 0 or not installation.is_complete():
        output = (completed.stdout + completed.stderr).strip()[-3000:]
        raise TritonSetupError(f"Preparing {venv} with {SETUP_SCRIPT} failed (exit {completed.returncode}):\n{output}")
    return installation


class TritonServer(ServerProcess):
    """One tritonserver serving `model_repository` (the cpu variant's folder); `url` is its gRPC address.

    Ports left as None are chosen free. Close tritonclient connections before stop(): Triton otherwise waits for
    them, up to `exit_timeout_s`, before it exits.
    """

    name = "triton"
    default_startup_timeout_s = 60.0

    def __init__(
        self,
        model_repository: Path = DEFAULT_REPOSITORY,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        host: str = LOOPBACK,
        venv: Path = DEFAULT_VENV,
        backend_directory: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float | None = None,
        exit_timeout_s: int = 5,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(host=host, log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.model_repository = Path(model_repository)
        self.http_port = http_port if http_port is not None else free_port(host)
        self.grpc_port = grpc_port if grpc_port is not None else free_port(host)
        self.metrics_port = metrics_port if metrics_port is not None else free_port(host)
        self.installation = triton_installation(Path(venv), backend_directory)
        self.exit_timeout_s = exit_timeout_s
        self.extra_args = tuple(extra_args)

    # --- addresses ---
    @property
    def _client_host(self) -> str:
        return LOOPBACK if self.host in ("0.0.0.0", "") else self.host

    @property
    def url(self) -> str:
        """The gRPC endpoint, host:port, as tritonclient.grpc and `TritonBackend` take it."""
        return self.grpc_url

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """host:port, as tritonclient.http takes it (no scheme)."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    # --- ServerProcess ---
    def command(self) -> Sequence[str]:
        return [
            str(self.installation.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.installation.backend_directory}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            *self.extra_args,
        ]

    def environment(self) -> Mapping[str, str]:
        return self.installation.environment()

    def is_ready(self) -> bool:
        return http_get_ok(f"http://{self.http_url}/v2/health/ready")

    def start(self) -> Self:
        """Prepare .venv-triton if needed, launch tritonserver and wait for /v2/health/ready."""
        if self.running:
            return self
        if not self.model_repository.is_dir():
            raise ServerStartError(
                self.name,
                f"has no model repository at {self.model_repository}; install a model first "
                "(python -m deepfake_core.serving.model_repository install MODEL.onnx)",
                None,
                "",
            )
        self.installation = ensure_triton_venv(self.installation.venv, self.installation.backend_directory)
        return super().start()

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL once Triton's own exit timeout (plus a margin) has passed."""
        super().stop(timeout_s if timeout_s is not None else self.exit_timeout_s + 5.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Triton in the foreground until interrupted (`make up` starts it this way)."""
    parser = argparse.ArgumentParser(prog="python -m deepfake_devstack.triton_server", description=main.__doc__)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="the cpu variant's folder")
    parser.add_argument("--host", default=LOOPBACK)
    # Not Triton's 8000-8002: the gateway listens on 8000 in the local stack (see stack.TRITON_PORTS).
    parser.add_argument("--http-port", type=int, default=8100)
    parser.add_argument("--grpc-port", type=int, default=8101)
    parser.add_argument("--metrics-port", type=int, default=8102)
    parser.add_argument("--log", type=Path, default=None, help="server log file (default: a temporary file)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    server = TritonServer(
        args.repository,
        host=args.host,
        http_port=preferred_or_free_port(args.http_port, args.host),
        grpc_port=preferred_or_free_port(args.grpc_port, args.host),
        metrics_port=preferred_or_free_port(args.metrics_port, args.host),
        log_path=args.log,
        startup_timeout_s=args.startup_timeout,
    )
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        server.start()
    except (ServerStartError, TritonSetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"triton ready: http {server.http_url} grpc {server.grpc_url} metrics {server.metrics_url} "
        f"log {server.log_path} pid {server.pid}",
        flush=True,
    )
    try:
        while not stop_requested and server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        exited_alone = not server.running
        server.stop()
    if exited_alone and not stop_requested:
        print(f"error: tritonserver exited on its own:\n{server.log_tail()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
