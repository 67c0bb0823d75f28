"""Loopback ports for local servers: pick a free one, or check whether one answers.

Servers started by tests take a free port each, so that parallel runs and a developer's own services never clash.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on right now.

    The kernel picks it; another process could still take it before the caller binds it, which is unlikely on
    loopback and shows up as a clear start error (the server's log says the address is in use).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether `port` can be bound on `host` now (used to keep a preferred port when it is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
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
