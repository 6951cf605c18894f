"""Request signing: HMAC-SHA256 over ``timestamp + "." + body`` with the partner's secret.

Headers: ``X-Ltvfeed-Partner`` (the partner id: the only place it comes from), ``X-Ltvfeed-Timestamp`` (Unix
seconds) and ``X-Ltvfeed-Signature`` (``v1=<hex digest>``). A timestamp outside the replay window is refused, so
a captured request cannot be replayed later; within the window a replayed batch is harmless, because event ids
are stored once. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PARTNER_HEADER = "X-Ltvfeed-Partner"
TIMESTAMP_HEADER = "X-Ltvfeed-Timestamp"
SIGNATURE_HEADER = "X-Ltvfeed-Signature"
SCHEME = "v1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signed_headers(partner_id: str, secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers a sender adds to a request with ``body`` (exactly the bytes sent, after gzip)."""
    ts = str(int(time.time() if now is None else now))
    return {PARTNER_HEADER: partner_id, TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(secret, ts, body)}


def timestamp_fresh(timestamp: str, window_s: int, now: float | None = None) -> bool:
    if not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs((time.time() if now is None else now) - int(timestamp)) <= window_s


def matches(secrets: list[str], timestamp: str, body: bytes, given: str) -> bool:
    """True when ``given`` is the signature under any of the partner's live secrets (current, and the previous
    one during a rotation's grace period). Every secret is checked, so timing does not tell which matched."""
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())
    return ok
