"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body, standard library only.

The worker signs every delivery with the tenant's webhook secret and receivers verify it with
`verify_signature`; both import this one module so that the scheme cannot drift between them.

Header format (`Deepfake-Signature`): ``t=<unix seconds>,v1=<hex hmac>``, where the HMAC key is the
secret and the message is ``f"{t}.".encode() + body``. The timestamp bounds replays; several ``v1``
entries may appear while a secret is being rotated, and any one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Deepfake-Signature"
EVENT_HEADER = "Deepfake-Event"
DELIVERY_HEADER = "Deepfake-Delivery"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def compute_signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The `Deepfake-Signature` header value for `body`, stamped now unless `timestamp` is given."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={stamp},{SCHEME}={compute_signature(secret, stamp, body)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """Split ``t=..,v1=..[,v1=..]`` into the timestamp and the v1 signatures; ValueError if malformed."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"signature header part {part!r} has no '='")
        if key == "t":
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise ValueError("signature header needs a 't=' timestamp and at least one 'v1=' signature")
    return timestamp, signatures


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `header` is a valid signature of `body` under `secret`, made within `tolerance_s`.

    Comparison is constant-time. A missing or malformed header, a stale timestamp (replay) or a
    wrong secret all return False; pass `tolerance_s=0` to skip the freshness check.
    """
    if not header:
        return False
    try:
        timestamp, signatures = parse_signature_header(header)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if tolerance_s and abs(current - timestamp) > tolerance_s:
        return False
    expected = compute_signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
