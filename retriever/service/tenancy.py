"""API keys that map to tenants: which tenant a request reads and writes.

Keys are never stored, only their SHA-256 digests: a keys file (``tenants.keys_file``) or the environment
(``RETRIEVER_TENANT_KEYS``) holds lines ``<sha256 hex of the key> <tenant>``, or ``<hex> *`` for an admin
key. Make a digest with ``printf %s "$KEY" | sha256sum`` (or ``retriever.service.tenancy.hash_key``).
A request's key is hashed and compared with every digest in constant time (``hmac.compare_digest``, no
early exit). A tenant key acts for its tenant only (naming another in ``X-Tenant`` is refused); an admin
key, and the service's single key (``service.api_key``) when tenant keys are configured, must name the
tenant it acts for in ``X-Tenant``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from indexer.config import Settings
from indexer.errors import ConfigError, InvalidInputError
from indexer.tenants import check_tenant

TENANT_HEADER = "X-Tenant"
ADMIN = "*"


def hash_key(key: str | bytes) -> str:
    """The digest a keys file holds for ``key``: SHA-256, in hex."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    digest: bytes  # SHA-256 of the key
    tenant: str | None  # None: an admin key


class AccessDenied(Exception):
    """A request its key does not allow: ``status`` (401, 403 or 422) and a message for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True, slots=True)
class TenantKeys:
    entries: tuple[KeyEntry, ...]

    @classmethod
    def parse(cls, text: str, origin: str) -> TenantKeys:
        """Lines (or ``;``-separated items) ``<sha256 hex> <tenant|*>``; blank lines and ``#`` comments skipped."""
        entries = []
        for n, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            digest = parts[0].lower().removeprefix("sha256:")
            if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(
                    f"{origin}, entry {n}: expected '<sha256 hex of the key> <tenant>' (or '*' for an admin key); "
                    'make the digest with: printf %s "$KEY" | sha256sum'
                )
            try:
                tenant = None if parts[1] == ADMIN else check_tenant(parts[1])
            except InvalidInputError as e:
                raise ConfigError(f"{origin}, entry {n}: {e}") from e
            entries.append(KeyEntry(bytes.fromhex(digest), tenant))
        if not entries:
            raise ConfigError(f"{origin}: no keys")
        return cls(tuple(entries))

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantKeys | None:
        """The configured keys (file and environment together), or None when the service has no tenant keys;
        the single ``service.api_key``, if also set, becomes an admin key."""
        t = settings.tenants
        entries: list[KeyEntry] = []
        if t.keys_file:
            try:
                text = Path(t.keys_file).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot read tenants.keys_file {t.keys_file}: {e}") from e
            entries += cls.parse(text, t.keys_file).entries
        if t.keys:
            entries += cls.parse(t.keys, "RETRIEVER_TENANT_KEYS").entries
        if not entries:
            return None
        if settings.service.api_key:
            entries.append(KeyEntry(hashlib.sha256(settings.service.api_key.encode()).digest(), None))
        return cls(tuple(entries))

    def lookup(self, key: bytes) -> KeyEntry | None:
        """The entry of ``key``, or None; every digest is compared, in constant time each."""
        digest = hashlib.sha256(key).digest()
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found

    def tenant_for(self, key: bytes, named: str | None) -> str:
        """The tenant a request with ``key`` (and ``X-Tenant: named``, if sent) acts for."""
        entry = self.lookup(key)
        if entry is None:
            raise AccessDenied(401, "missing or wrong API key (send it in the X-API-Key header)")
        if entry.tenant is not None:
            if named is not None and named != entry.tenant:
                raise AccessDenied(403, "this API key is not allowed to act for that tenant")
            return entry.tenant
        if named is None:
            raise AccessDenied(422, f"an admin key must name the tenant it acts for in the {TENANT_HEADER} header")
        try:
            return check_tenant(named)
        except InvalidInputError as e:
            raise AccessDenied(422, str(e)) from None
