"""API keys in the ledger database: created once (the secret is shown then and never again), stored
as a SHA-256 of the secret, scoped (`admin` > `ingest`, `read`), optionally bound to one tenant.

A key reads `llk_<key_id>_<secret>`: the id finds the row, the secret is compared in constant time
with the stored hash. Secrets are 32 random URL-safe characters (190 bits), so a plain SHA-256 is
the right hash (a slow password hash protects low-entropy passwords, which these are not).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmledger.errors import InvalidQueryError
from llmledger.storage.tables import api_keys

__all__ = ["SCOPES", "ApiKey", "KeyStore", "NewKey"]

SCOPES = ("admin", "ingest", "read")
"""`admin`: everything (keys, limits, ingest, reads); `ingest`: send events and make reservations;
`read`: usage, events, spend, limits status, prices."""

_KEY = re.compile(r"^llk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,64})$")
_MAX_NAME = 256


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    scope: str
    tenant: str | None
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key may act with `scope` (an admin key may do everything)."""
        return self.active and (self.scope == scope or self.scope == "admin")

    def to_dict(self) -> dict[str, str | None]:
        return {
            "key_id": self.key_id,
            "scope": self.scope,
            "tenant": self.tenant,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: `secret` is the whole key string, shown this once."""

    key: ApiKey
    secret: str


def _row_to_key(row: sa.Row[tuple[object, ...]] | sa.RowMapping) -> ApiKey:
    m = row._mapping if isinstance(row, sa.Row) else row
    created = datetime.fromtimestamp(int(m["created_us"]) / 1e6, timezone.utc)
    revoked = m["revoked_us"]
    return ApiKey(
        key_id=str(m["key_id"]),
        scope=str(m["scope"]),
        tenant=None if m["tenant"] is None else str(m["tenant"]),
        name=None if m["name"] is None else str(m["name"]),
        created_at=created,
        revoked_at=None if revoked is None else datetime.fromtimestamp(int(revoked) / 1e6, timezone.utc),
    )


def check_key_fields(scope: object, tenant: object, name: object) -> None:
    """Validate a new key's fields; raises `InvalidQueryError` naming the field."""
    if scope not in SCOPES:
        raise InvalidQueryError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    for field, value in (("tenant", tenant), ("name", name)):
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
            raise InvalidQueryError(f"{field} must be a non-empty string of at most {_MAX_NAME} characters")
        if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise InvalidQueryError(f"{field} must be valid Unicode text without NUL characters")
        if field == "tenant" and not value.isprintable():  # the rule limits apply to a tenant
            raise InvalidQueryError(
                f"tenant must be printable text without control characters, got {value!r:.80}"
            )


class KeyStore:
    """The API keys of one ledger database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, scope: str, *, tenant: str | None = None, name: str | None = None, secret: str | None = None
    ) -> NewKey:
        """Create a key. `secret`: a whole key string to adopt (e.g. `LLMLEDGER_ADMIN_KEY`), else a
        new random one. Raises `InvalidQueryError` for a bad scope, tenant, name or key string."""
        check_key_fields(scope, tenant, name)
        if secret is None:
            key_id = secrets.token_hex(8)
            secret = f"llk_{key_id}_{secrets.token_urlsafe(24)}"
        match = _KEY.match(secret)
        if match is None:
            raise InvalidQueryError("a key must look like llk_<16 hex digits>_<20-64 URL-safe characters>")
        key_id = match.group(1)
        now = datetime.now(timezone.utc)
        row = {
            "key_id": key_id,
            "secret_hash": _hash(match.group(2)),
            "scope": scope,
            "tenant": tenant,
            "name": name,
            "created_us": _us(now),
            "revoked_us": None,
        }
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(api_keys.c.secret_hash, api_keys.c.revoked_us).where(api_keys.c.key_id == key_id)
            ).first()
            if existing is not None:
                if not hmac.compare_digest(str(existing[0]), str(row["secret_hash"])):
                    raise InvalidQueryError("a different key with this id already exists")
                if existing[1] is not None:  # revoked: a restart must never bring a revoked key back
                    raise InvalidQueryError(
                        f"key {key_id} was revoked; it cannot be used again: choose a new key "
                        "(for LLMLEDGER_ADMIN_KEY: generate a new one and restart)"
                    )
                conn.execute(  # the same seeded key again
                    sa.update(api_keys).where(api_keys.c.key_id == key_id).values(scope=scope, tenant=tenant)
                )
            else:
                conn.execute(sa.insert(api_keys).values(**row))
        key = ApiKey(key_id, scope, tenant, name, now, None)
        return NewKey(key, secret)

    def verify(self, presented: str) -> ApiKey | None:
        """The active key `presented` is, or None (malformed, unknown, wrong secret or revoked)."""
        match = _KEY.match(presented) if isinstance(presented, str) else None
        if match is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == match.group(1))).first()
        if row is None or not hmac.compare_digest(str(row.secret_hash), _hash(match.group(2))):
            return None
        key = _row_to_key(row)
        return key if key.active else None

    def list(self) -> list[ApiKey]:
        """Every key, newest first (secrets are not stored, so never listed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_us.desc())).all()
        return [_row_to_key(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key now; False when there is no such active key."""
        now = _us(datetime.now(timezone.utc))
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_us.is_(None))
                .values(revoked_us=now)
            ).rowcount
        return bool(done)
