"""``EventClient``: the Python sender for partners — batching, gzip, signing, and retries that resend the same
event ids (so a retry after a lost answer can only yield ``duplicate``, never a second copy)."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ltvfeed.collector.signing import signed_headers

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class EventClient:
    def __init__(
        self,
        url: str,
        partner_id: str,
        secret: str,
        *,
        batch_size: int = 1000,
        max_retries: int = 8,
        backoff_s: float = 0.2,
        timeout_s: float = 30.0,
        gzip_body: bool = True,
        http: httpx.Client | None = None,
    ) -> None:
        """``http``: a client to send through instead of a new one (e.g. an in-process ``TestClient`` over the
        collector app); it is not closed here."""
        self.url = url.rstrip("/") + "/v1/events"
        self.partner_id, self._secret = partner_id, secret
        self.batch_size, self.max_retries, self.backoff_s = batch_size, max_retries, backoff_s
        self.gzip_body = gzip_body
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout_s)

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    @staticmethod
    def new_event_id() -> str:
        return uuid.uuid4().hex

    def send(self, events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Send events in batches; returns totals of stored / duplicate / rejected. Events without an
        ``event_id`` get one here, before the first attempt, so retries resend the same ids."""
        totals = {"stored": 0, "duplicate": 0, "rejected": 0}
        batch: list[dict[str, Any]] = []
        for event in events:
            e = dict(event)
            e.setdefault("event_id", self.new_event_id())
            batch.append(e)
            if len(batch) >= self.batch_size:
                self._add(totals, self.send_batch(batch))
                batch = []
        if batch:
            self._add(totals, self.send_batch(batch))
        return totals

    def send_batch(self, events: list[Mapping[str, Any]]) -> dict[str, Any]:
        """POST one batch, retrying 429/5xx and connection errors with exponential backoff (honouring
        Retry-After); returns the collector's answer. A 4xx other than 429 is raised at once."""
        body = json.dumps(list(events), default=str).encode()
        headers = {"Content-Type": "application/json"}
        if self.gzip_body:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.post(
                    self.url, content=body, headers={**headers, **signed_headers(self.partner_id, self._secret, body)}
                )
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
                time.sleep(self.backoff_s * 2**attempt)
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                retry_after = response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else self.backoff_s * 2**attempt
                time.sleep(min(wait, 30.0))
                continue
            response.raise_for_status()
            return response.json()
        raise RuntimeError("unreachable")

    @staticmethod
    def _add(totals: dict[str, int], answer: Mapping[str, Any]) -> None:
        for key in totals:
            totals[key] += int(answer.get(key, 0))
