"""An S3-compatible server on loopback for tests and the local stack: moto's server, in a child process.

Why moto and a child process: production talks to MinIO, which has no binary in the registries we can reach;
moto 5.2.5 passed the 21 S3 operations the platform uses with the minio SDK (see docs/local-infra.md). Running it
as its own process (`python -m moto.server`), not as threads in the test's interpreter, makes it behave like a
real server: separate memory, real sockets, and it can be killed to test what happens when storage goes away.

Known differences from MinIO, which tests must not rely on:
- moto accepts any credentials and does not check signatures (nanio does, but is an alpha release that would add
  packages to the shared environment; a wrong secret therefore only shows up against MinIO);
- a presigned PUT sent with `Content-Type: application/x-www-form-urlencoded` stores an empty object: clients
  must set the Content-Type they mean (the platform always does);
- moto keeps objects in memory. With `replay_dir` (the local stack gives one) they survive a restart the only way
  moto allows: its request recorder (`MOTO_ENABLE_RECORDING`) appends every request, body included, to
  `replay_dir/requests.jsonl`, and the server replays that log in-process before it listens
  (`deepfake_devstack.moto_replay`: no client sees a half-restored bucket). This is not a durable object
  store: the log grows with every request (GETs included) until `reset_replay_log()`; multipart uploads (streams
  over 8 MiB) do not survive a restart, because a replayed upload gets a new upload id its recorded parts do not
  carry; and a chunked body without Content-Length is recorded empty. Enough for testing an S3 restart with the
  platform's small objects; production runs MinIO. No MinIO-compatible server with a disk backend exists in the
  registries we can reach (docs/local-infra.md), so moto's replay is the honest option here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deepfake_devstack.ports import LOOPBACK, free_port
from deepfake_devstack.process import ServerProcess, http_get_ok

if TYPE_CHECKING:
    from minio import Minio

#: Credentials the local stack hands to the services; moto accepts any, these just look like MinIO's.
DEFAULT_ACCESS_KEY = "deepfake-dev"
DEFAULT_SECRET_KEY = "deepfake-dev-secret"


class S3Server(ServerProcess):
    """An S3 endpoint at `http://127.0.0.1:PORT` (path-style), stopped on exit from the `with` block."""

    name = "s3"
    default_startup_timeout_s = 30.0  # importing moto takes a few seconds on two busy cores

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        log_path: Path | None = None,
        startup_timeout_s: float | None = None,
        replay_dir: Path | None = None,
    ) -> None:
        super().__init__(host=host, log_path=log_path, startup_timeout_s=startup_timeout_s)
        self.port = port if port is not None else free_port(host)
        self.access_key = access_key
        self.secret_key = secret_key
        self.replay_dir = Path(replay_dir) if replay_dir is not None else None

    @property
    def replay_log(self) -> Path | None:
        """The request log replayed at start (None: objects live in memory only)."""
        return self.replay_dir / "requests.jsonl" if self.replay_dir is not None else None

    def reset_replay_log(self) -> None:
        """Forget the recorded requests (the objects in the running server stay until it stops)."""
        if self.replay_log is not None and self.replay_log.exists():
            self.replay_log.write_text("")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """`host:port`, the form the minio client takes (with `secure=False`)."""
        return f"{self.host}:{self.port}"

    def listen_ports(self) -> Sequence[int]:
        return [self.port]

    def command(self) -> Sequence[str]:
        if self.replay_log is not None:  # replays the log before it listens (see deepfake_devstack.moto_replay)
            self.replay_log.parent.mkdir(parents=True, exist_ok=True)
            return [sys.executable, "-m", "deepfake_devstack.moto_replay", "--host", self.host,
                    "--port", str(self.port), "--log", str(self.replay_log)]  # fmt: skip
        return [sys.executable, "-m", "moto.server", "--host", self.host, "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        # The region moto reports for new buckets; the services and the minio client use the same default.
        return {"AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1"}

    def is_ready(self) -> bool:
        # An unsigned ListBuckets: moto answers it with 200 once its WSGI app serves requests.
        return http_get_ok(f"{self.url}/")

    def minio_client(self) -> Minio:
        """A minio client for this server (path-style, plain HTTP), as the services configure theirs."""
        from minio import Minio  # imported here: only the callers that use a client need the package

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def ensure_bucket(self, bucket: str) -> None:
        """Create `bucket` unless it exists (the stack does this before the services start)."""
        client = self.minio_client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
