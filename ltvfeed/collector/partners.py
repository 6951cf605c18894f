"""Referral partners allowed to send events, with their signing secrets encrypted at rest (Fernet).

A secret is generated here, shown once to the operator and stored only encrypted with the collector key from
settings (or a key generated once under the state dir). ``rotate`` issues a new secret and keeps the previous
one valid for a grace period, so a partner can switch without losing a request; ``revoke`` stops a partner at
once (the collector's cache holds credentials for at most :data:`CACHE_SECONDS`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet, InvalidToken

from ltvfeed.db import connect
from ltvfeed.errors import UserError
from ltvfeed.settings import Settings

CACHE_SECONDS = 5.0
_PARTNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def collector_sql() -> str:
    return resources.files("ltvfeed").joinpath("sql/collector.sql").read_text()


def ensure_collector_schema(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        conn.execute(collector_sql())


def fernet(settings: Settings) -> Fernet:
    """The cipher for partner secrets: the configured key, else one generated once under the state dir."""
    if settings.collector_key is not None:
        try:
            return Fernet(settings.collector_key.get_secret_value().encode())
        except ValueError as exc:
            raise UserError("LTVFEED_COLLECTOR_KEY is not a Fernet key (32 url-safe base64-encoded bytes)") from exc
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def key_path(settings: Settings) -> Path:
    return settings.state_dir / "secrets" / "collector.key"


@dataclass(frozen=True)
class Partner:
    partner_id: str
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    previous_valid_until: datetime | None
    rate_limit_per_s: int | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "active"


def _check_id(partner_id: str) -> None:
    if not _PARTNER_ID.match(partner_id):
        raise UserError(
            f"partner id {partner_id!r} is not valid: 1-64 characters, letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )


def add_partner(dsn: str, cipher: Fernet, partner_id: str, rate_limit_per_s: int | None = None) -> str:
    """Register a partner; returns its secret (shown once, never stored in clear)."""
    _check_id(partner_id)
    secret = secrets.token_urlsafe(32)
    with connect(dsn) as conn:
        try:
            conn.execute(
                "insert into ops.partners (partner_id, secret_encrypted, rate_limit_per_s) values (%s, %s, %s)",
                (partner_id, cipher.encrypt(secret.encode()), rate_limit_per_s),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise UserError(f"partner {partner_id!r} already exists (use `ltvfeed partners rotate`)") from exc
    return secret


def rotate_partner(dsn: str, cipher: Fernet, partner_id: str, grace_s: int) -> str:
    """A new secret for the partner; the current one stays valid for ``grace_s`` seconds."""
    secret = secrets.token_urlsafe(32)
    with connect(dsn) as conn:
        row = conn.execute(
            "update ops.partners set previous_secret_encrypted = secret_encrypted, secret_encrypted = %s, "
            "previous_valid_until = now() + make_interval(secs => %s), rotated_at = now() "
            "where partner_id = %s and revoked_at is null returning partner_id",
            (cipher.encrypt(secret.encode()), grace_s, partner_id),
        ).fetchone()
    if row is None:
        raise UserError(f"no active partner {partner_id!r} (see `ltvfeed partners list`)")
    return secret


def revoke_partner(dsn: str, partner_id: str) -> None:
    with connect(dsn) as conn:
        row = conn.execute(
            "update ops.partners set revoked_at = now() where partner_id = %s and revoked_at is null "
            "returning partner_id",
            (partner_id,),
        ).fetchone()
    if row is None:
        raise UserError(f"no active partner {partner_id!r} (see `ltvfeed partners list`)")


def list_partners(dsn: str) -> list[Partner]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "select partner_id, created_at, rotated_at, revoked_at, previous_valid_until, rate_limit_per_s "
            "from ops.partners order by partner_id"
        ).fetchall()
    return [Partner(*row) for row in rows]


@dataclass(frozen=True)
class Credentials:
    """What the collector checks a request against: the partner's live secrets and its rate limit."""

    secrets: tuple[str, ...]
    rate_limit_per_s: int | None


class CredentialCache:
    """Live credentials per partner, read from PostgreSQL at most every :data:`CACHE_SECONDS` per partner, so
    a revocation takes effect within seconds without a database read per request."""

    def __init__(self, dsn: str, cipher: Fernet, ttl_s: float = CACHE_SECONDS) -> None:
        self._dsn, self._cipher, self._ttl = dsn, cipher, ttl_s
        self._cache: dict[str, tuple[float, Credentials | None]] = {}

    def get(self, partner_id: str) -> Credentials | None:
        hit = self._cache.get(partner_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        creds = self._load(partner_id) if _PARTNER_ID.match(partner_id) else None
        if len(self._cache) > 10_000:
            self._cache.clear()  # unknown ids from a hostile client must not grow memory without bound
        self._cache[partner_id] = (now, creds)
        return creds

    def _load(self, partner_id: str) -> Credentials | None:
        with psycopg.connect(self._dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "select secret_encrypted, previous_secret_encrypted, previous_valid_until, rate_limit_per_s "
                "from ops.partners where partner_id = %s and revoked_at is null",
                (partner_id,),
            ).fetchone()
        if row is None:
            return None
        current, previous, until, limit = row
        live = [self._decrypt(current)]
        if previous is not None and until is not None and until > datetime.now(UTC):
            live.append(self._decrypt(previous))
        return Credentials(tuple(s for s in live if s), limit)

    def _decrypt(self, token: bytes) -> str:
        try:
            return self._cipher.decrypt(bytes(token)).decode()
        except InvalidToken:
            return ""  # encrypted with another key: never matches (a wrong LTVFEED_COLLECTOR_KEY)
