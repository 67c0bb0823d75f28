"""API-key authentication, shared by REST and gRPC: where the key is read from and how it is checked.

Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>` (gRPC: the same names as metadata).
Only their SHA-256 is compared, in constant time, by `deepfake_jobs.tenants.TenantRegistry`.
"""

from __future__ import annotations

from collections.abc import Callable

from deepfake_jobs.tenants import Tenant, TenantRegistry

from deepfake_gateway.problems import ProblemCode, ProblemError

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
MAX_KEY_LENGTH = 256


def api_key_from(get_header: Callable[[str], str | None]) -> str | None:
    """The API key of a request, from `Authorization: Bearer` first, else `X-API-Key`; None if absent."""
    authorization = get_header(AUTHORIZATION_HEADER)
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    key = get_header(API_KEY_HEADER)
    return key.strip() if key and key.strip() else None


def authenticate(registry: TenantRegistry, api_key: str | None) -> Tenant:
    """The tenant owning `api_key`; a 401 problem when it is missing or unknown (the same answer for both
    wrong and disabled keys, so that a caller learns nothing about which keys exist)."""
    if not api_key:
        raise ProblemError(
            ProblemCode.UNAUTHORIZED, "No API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
        )
    tenant = registry.authenticate(api_key) if len(api_key) <= MAX_KEY_LENGTH else None
    if tenant is None:
        raise ProblemError(ProblemCode.UNAUTHORIZED, "The API key is not valid; check it or ask for a new one.")
    return tenant
