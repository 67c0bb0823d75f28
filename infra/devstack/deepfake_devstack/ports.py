"""Loopback ports for local servers: pick a free one, or check whether one answers.

Servers started by tests take a free port each, so that parallel runs and a developer's own services never clash.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
PICK_FLOOR = 10000  # above the well-known and commonly configured service ports
PICK_SPAN = 12000
_handed_out: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on right now, below the kernel's ephemeral range.

    A server is often started seconds after its port was picked. A port from the ephemeral range (what binding
    port 0 gives) can meanwhile become the local end of some outgoing connection, and the server then fails to
    start; ports below that range are never handed out that way. Ports given out by this process are not given
    out twice. Falls back to the kernel's pick when the range below is exhausted.
    """
    low = min(_ephemeral_range()[0], 65536)
    candidates = list(range(max(PICK_FLOOR, low - PICK_SPAN), low))
    random.shuffle(candidates)
    for port in candidates[:200]:
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux); the common default elsewhere."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether `port` can be bound on `host` now (used to keep a preferred port when it is free).

    Bound with SO_REUSEADDR, as the servers themselves bind: connections of a server just stopped linger in
    TIME_WAIT for a minute and do not keep it from listening again (`restart()`); a listener still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def preferred_or_free_port(preferred: int | None, host: str = LOOPBACK) -> int:
    """`preferred` when it is free, otherwise any free port: predictable ports for `make up`, never a clash."""
    if preferred is not None and port_is_free(preferred, host):
        return preferred
    return free_port(host)


def port_accepts_connections(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
