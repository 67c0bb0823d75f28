"""The local stack on loopback: real Redis, an S3 server, Triton, Prometheus, and the platform's services.

Each server is a small context manager with `start()`, `stop()` and `url`; `python -m deepfake_devstack.stack`
starts them all for `make up`. Tests import the classes from here.
"""

from deepfake_devstack.binaries import MissingProgramError, ensure_system_programs, find_program, require_program
from deepfake_devstack.ports import free_port
from deepfake_devstack.process import ServerProcess, ServerStartError
from deepfake_devstack.prometheus_server import PrometheusServer
from deepfake_devstack.redis_server import RedisServer
from deepfake_devstack.s3_server import S3Server

__all__ = [
    "MissingProgramError",
    "PrometheusServer",
    "RedisServer",
    "S3Server",
    "ServerProcess",
    "ServerStartError",
    "ensure_system_programs",
    "find_program",
    "free_port",
    "require_program",
]
