"""Tenants and their API keys: who may call the service, how fast, and which secret signs their webhooks.

Keys are never stored: a tenant record holds the SHA-256 of each of its keys (API keys are 256-bit random
tokens, so a fast hash is enough; a slow password hash would only add latency to every request), and
lookups compare digests in constant time. Tenants come from a YAML/JSON file (`DEEPFAKE_TENANTS_FILE`,
mounted from a Secret in production) and/or from Redis (`python -m deepfake_jobs.tenants put ...`), the
file winning on a clash so that an operator's file is the last word. A tenant put into Redis is written to object
storage too (`tenants/{id}.json`, when the registry has an object store): Redis is a cache of those records, and
`restore_from_objects` rebuilds it after Redis lost its data (the recovery sweep and the gateway's start call it).

File format (YAML or JSON), a list or ``{"tenants": [...]}``::

    tenants:
      - id: acme
        api_key_sha256: 9f86d0...        # or a list, to rotate keys without downtime
        webhook_secret: whsec_...        # optional; unset = derived from DEEPFAKE_WEBHOOK_SIGNING_KEY
                                         # (deepfake_jobs.webhooks.tenant_webhook_secret)
        rate_limit_per_minute: 600
        max_concurrent_jobs: 50
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_KEY_PREFIX = "dfk_"
REDIS_TENANT_PREFIX = "deepfake:tenant:"
REDIS_KEY_INDEX = "deepfake:tenant-keys"  # hash: api key sha256 -> tenant id
_SHA256_HEX_LENGTH = 64


class TenantSettings(BaseSettings):
    """Where tenants come from; read by every service (the gateway's settings repeat these fields)."""

    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_", extra="ignore")

    tenants_file: Path | None = None
    tenant_cache_ttl_s: float = Field(default=10.0, ge=0)


class TenantConfigError(ValueError):
    """The tenants file cannot be used; the message names the file and the problem."""

    code = "invalid_tenants_file"


def hash_api_key(api_key: str) -> str:
    """The hex SHA-256 of an API key: what a tenant record stores instead of the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh API key: a recognisable prefix (for secret scanners) and 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class Tenant(BaseModel):
    """One customer of the service; `api_key_sha256` lists the digests of its valid keys."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Stable id; appears in object keys.")
    name: str | None = None
    api_key_sha256: list[str] = Field(min_length=1)
    webhook_secret: str | None = Field(
        default=None, description="Signs this tenant's webhooks; unset = derived from the platform key."
    )
    rate_limit_per_minute: int = Field(default=600, ge=1)
    max_concurrent_jobs: int = Field(default=50, ge=1, description="Queued plus processing jobs at any time.")
    disabled: bool = False

    @field_validator("api_key_sha256", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("api_key_sha256")
    @classmethod
    def _hex_digests(cls, value: list[str]) -> list[str]:
        digests = [item.strip().lower() for item in value]
        for digest in digests:
            if len(digest) != _SHA256_HEX_LENGTH or any(ch not in "0123456789abcdef" for ch in digest):
                raise ValueError(
                    "api_key_sha256 must hold hex SHA-256 digests of the keys (64 characters), never the keys; "
                    "compute one with `python -m deepfake_jobs.tenants hash KEY`."
                )
        return digests

    def accepts(self, key_digest: str) -> bool:
        """Constant-time check of a key's digest against every digest of this tenant."""
        matched = False
        for digest in self.api_key_sha256:
            matched |= hmac.compare_digest(digest, key_digest)
        return matched and not self.disabled


def parse_tenants(document: Any, source: str = "tenants") -> list[Tenant]:
    """Validate a decoded tenants document (a list, or a mapping with a `tenants` list)."""
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise TenantConfigError(f"{source}: expected a list of tenants or a mapping with a 'tenants' list.")
    tenants: list[Tenant] = []
    for position, entry in enumerate(entries):
        try:
            tenants.append(Tenant.model_validate(entry))
        except ValueError as error:
            raise TenantConfigError(f"{source}: tenant #{position + 1} is invalid: {error}") from error
    ids = [tenant.id for tenant in tenants]
    duplicates = sorted({tenant_id for tenant_id in ids if ids.count(tenant_id) > 1})
    if duplicates:
        raise TenantConfigError(f"{source}: tenant ids appear more than once: {', '.join(duplicates)}.")
    return tenants


def load_tenants_file(path: Path) -> list[Tenant]:
    """Read tenants from a YAML or JSON file (JSON is valid YAML, so one parser reads both)."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as error:
        raise TenantConfigError(f"Cannot read the tenants file {path}: {error.strerror or error}.") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TenantConfigError(f"The tenants file {path} is not valid YAML or JSON: {error}") from error
    return parse_tenants(document or [], str(path))


class TenantRegistry:
    """Finds tenants by API key or id: file tenants in memory, Redis tenants behind a short-lived cache.

    Thread-safe; takes a synchronous redis client (or none). Redis lookups are cached for `cache_ttl_s`
    so that authentication costs no round trip on most requests; a revoked Redis key therefore stops
    working within that time (file tenants change on restart).
    """

    def __init__(
        self,
        tenants: Iterable[Tenant] = (),
        redis: Any | None = None,
        cache_ttl_s: float = 10.0,
        objects: Any | None = None,
    ) -> None:
        self._file_tenants = {tenant.id: tenant for tenant in tenants}
        self._redis = redis
        self._objects = objects  # deepfake_jobs.storage.ObjectStore: where Redis tenants are kept durably
        self._cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(
        cls, path: Path | None, redis: Any | None = None, cache_ttl_s: float = 10.0, objects: Any | None = None
    ) -> TenantRegistry:
        tenants = load_tenants_file(path) if path else []
        return cls(tenants, redis=redis, cache_ttl_s=cache_ttl_s, objects=objects)

    @classmethod
    def from_env(cls, redis: Any | None = None, objects: Any | None = None) -> TenantRegistry:
        """The registry configured by `DEEPFAKE_TENANTS_FILE` (+ Redis when given): what the worker uses."""
        settings = TenantSettings()
        return cls.from_file(
            settings.tenants_file, redis=redis, cache_ttl_s=settings.tenant_cache_ttl_s, objects=objects
        )

    @property
    def file_tenants(self) -> list[Tenant]:
        return list(self._file_tenants.values())

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant owning `api_key`, or None (unknown key, or a disabled tenant)."""
        if not api_key:
            return None
        digest = hash_api_key(api_key)
        found: Tenant | None = None
        # Every file tenant is checked, so the time taken does not depend on which one matched.
        for tenant in self._file_tenants.values():
            if tenant.accepts(digest):
                found = tenant
        if found is not None:
            return found
        tenant_id = self._cached_redis_lookup("key:" + digest, lambda: self._redis_tenant_id_for(digest))
        if tenant_id is None:
            return None
        tenant = self.get(tenant_id)
        return tenant if tenant is not None and tenant.accepts(digest) else None

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None; the worker calls this for a tenant's webhook secret."""
        tenant = self._file_tenants.get(tenant_id)
        if tenant is not None:
            return tenant
        return self._cached_redis_lookup("id:" + tenant_id, lambda: self._redis_tenant(tenant_id))

    def webhook_secret(self, tenant_id: str, settings: Any) -> str:
        """The secret that signs this tenant's webhooks: its own `webhook_secret`, else the derived one.

        `settings` is the platform's (`PlatformSettings`); the derivation lives in deepfake_jobs.webhooks.
        """
        tenant = self.get(tenant_id)
        if tenant is not None and tenant.webhook_secret:
            return tenant.webhook_secret
        from deepfake_jobs.webhooks import tenant_webhook_secret

        return tenant_webhook_secret(settings, tenant_id)

    def put(self, tenant: Tenant) -> None:
        """Store a tenant in object storage (when the registry has one: the durable copy, written first) and in
        Redis (index of its key digests included), replacing an older record."""
        if self._redis is None:
            raise RuntimeError("This registry has no Redis connection; tenants from the file are read-only.")
        if self._objects is not None:
            from deepfake_jobs.storage import tenant_record_key

            self._objects.put_json(tenant_record_key(tenant.id), tenant.model_dump_json())
        self._put_in_redis(tenant)

    def _put_in_redis(self, tenant: Tenant) -> None:
        old = self._redis_tenant(tenant.id)
        pipe = self._redis.pipeline(transaction=True)
        if old is not None:
            stale = set(old.api_key_sha256) - set(tenant.api_key_sha256)
            if stale:
                pipe.hdel(REDIS_KEY_INDEX, *stale)
        pipe.set(REDIS_TENANT_PREFIX + tenant.id, tenant.model_dump_json())
        pipe.hset(REDIS_KEY_INDEX, mapping=dict.fromkeys(tenant.api_key_sha256, tenant.id))
        pipe.execute()
        self.clear_cache()

    def delete(self, tenant_id: str) -> bool:
        """Remove a Redis tenant, its key index entries and its durable copy; True when it existed."""
        if self._redis is None:
            return False
        stored = False
        if self._objects is not None:
            from deepfake_jobs.storage import tenant_record_key

            stored = self._objects.exists(tenant_record_key(tenant_id))
            if stored:
                self._objects.delete(tenant_record_key(tenant_id))
        old = self._redis_tenant(tenant_id)
        if old is None:
            return stored
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(REDIS_KEY_INDEX, *old.api_key_sha256)
        pipe.delete(REDIS_TENANT_PREFIX + tenant_id)
        pipe.execute()
        self.clear_cache()
        return True

    def restore_from_objects(self) -> list[str]:
        """Put back into Redis every tenant whose durable copy is in object storage but whose Redis record is
        missing (Redis lost its data); returns their ids. A no-op without Redis or an object store."""
        if self._redis is None or self._objects is None:
            return []
        from deepfake_jobs.storage import TENANTS_PREFIX

        restored: list[str] = []
        for key in self._objects.list_keys(TENANTS_PREFIX):
            tenant = Tenant.model_validate_json(self._objects.get_bytes(key))
            if self._redis_tenant(tenant.id) is None:
                self._put_in_redis(tenant)
                restored.append(tenant.id)
        if restored:
            self.clear_cache()
        return restored

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # --- Redis ---

    def _cached_redis_lookup(self, cache_key: str, load: Any) -> Any:
        if self._redis is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            self._cache[cache_key] = (now + self._cache_ttl_s, value)
        return value

    def _redis_tenant_id_for(self, digest: str) -> str | None:
        value = self._redis.hget(REDIS_KEY_INDEX, digest)
        return value.decode() if isinstance(value, bytes) else value

    def _redis_tenant(self, tenant_id: str) -> Tenant | None:
        raw = self._redis.get(REDIS_TENANT_PREFIX + tenant_id)
        return Tenant.model_validate_json(raw) if raw else None


# --- command line: create keys and manage Redis tenants -------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m deepfake_jobs.tenants {new,hash,put,delete}`: operator tasks for tenants and keys."""
    parser = argparse.ArgumentParser(prog="python -m deepfake_jobs.tenants", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="print a new API key and the tenants-file entry holding its hash")
    new.add_argument("tenant_id")
    new.add_argument("--rate-limit-per-minute", type=int, default=600)
    new.add_argument("--max-concurrent-jobs", type=int, default=50)
    hash_command = commands.add_parser("hash", help="print the SHA-256 digest of an API key")
    hash_command.add_argument("api_key")
    put = commands.add_parser("put", help="store a tenant (JSON document) in Redis")
    put.add_argument("tenant_json", help="a JSON object with the fields of a tenants-file entry")
    put.add_argument("--redis-url", default=None, help="default: DEEPFAKE_REDIS_URL")
    delete = commands.add_parser("delete", help="remove a tenant from Redis")
    delete.add_argument("tenant_id")
    delete.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)

    if args.command == "hash":
        print(hash_api_key(args.api_key))
        return 0
    if args.command == "new":
        key = new_api_key()
        entry = Tenant(
            id=args.tenant_id,
            api_key_sha256=[hash_api_key(key)],
            webhook_secret="whsec_" + secrets.token_urlsafe(32),
            rate_limit_per_minute=args.rate_limit_per_minute,
            max_concurrent_jobs=args.max_concurrent_jobs,
        )
        print(f"api key (shown once, give it to the tenant): {key}", file=sys.stderr)
        print(json.dumps(entry.model_dump(exclude_none=True), indent=2))
        return 0

    import redis

    from deepfake_jobs.settings import PlatformSettings
    from deepfake_jobs.storage import ObjectStore

    platform = PlatformSettings()
    url = args.redis_url or platform.redis_url
    # Object storage keeps the durable copy: a Redis that loses its data gets the tenants back from there.
    registry = TenantRegistry(redis=redis.Redis.from_url(url), objects=ObjectStore(platform))
    if args.command == "put":
        registry.put(Tenant.model_validate_json(args.tenant_json))
        return 0
    return 0 if registry.delete(args.tenant_id) else 1


if __name__ == "__main__":
    sys.exit(main())
