"""Group commit: every accepted batch waits for a PostgreSQL commit before it is acknowledged, and concurrent
requests share commits, so durability does not cost throughput.

One writer thread owns one connection. It takes the first waiting batch, then everything else queued up to
:data:`MAX_EVENTS_PER_COMMIT`, copies them into temporary tables (COPY) and moves them into the raw tables
with ``insert … on conflict do nothing returning`` in one transaction. What was inserted is ``stored``; the
rest (an id already in the warehouse, or repeated in the same commit) is ``duplicate``. If the transaction
fails, every batch in it fails (the API answers 503) and nothing of them is kept, so the sender's retry with
the same event ids is safe. The next commit opens a fresh connection.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import psycopg

from ltvfeed.collector.schema import INTERACTION_TYPES, PREFERENCE_TYPES, Event, OrderEvent

log = logging.getLogger(__name__)

MAX_EVENTS_PER_COMMIT = 20_000
STORED, DUPLICATE = "stored", "duplicate"
APPLICATION_NAME = "ltvfeed-collector"  # how the writer shows in pg_stat_activity

_EVENT_COLUMNS = (
    "event_id, event_type, occurred_at, user_id, partner_id, session_id, item_id, dwell_seconds, search_query, "
    "order_id, amount, properties"
)
_PREFERENCE_COLUMNS = "event_id, event_type, occurred_at, user_id, partner_id, item_id, category, properties"
_TEMP_TABLES = """
create temp table if not exists collector_events (
    event_id text, event_type text, occurred_at timestamptz, user_id text, partner_id text, session_id text,
    item_id text, dwell_seconds real, search_query text, order_id text, amount numeric(12, 2), properties jsonb
) on commit delete rows;
create temp table if not exists collector_preferences (
    event_id text, event_type text, occurred_at timestamptz, user_id text, partner_id text, item_id text,
    category text, properties jsonb
) on commit delete rows;
"""
_PREFERENCE_KIND = {"wishlist_add": "wishlist", "wishlist_remove": "wishlist", "saved_item": "saved"}


def storage_key(partner_id: str, event: Event) -> str:
    """The row key an event is stored under: orders by the shop's order id; everything else by the sender's
    event id within the partner's namespace, so partner A's ids never collide with partner B's."""
    if isinstance(event, OrderEvent):
        return f"order:{event.order_id}"
    return f"{partner_id}:{event.event_id}"


@dataclass
class _Batch:
    partner_id: str
    events: Sequence[Event]
    future: Future = field(default_factory=Future)


class GroupCommitWriter:
    """Commits batches of validated events; ``submit`` returns a future of their outcomes, in order."""

    def __init__(self, dsn: str, on_commit: Callable[[list[tuple[str, Event]]], None] | None = None) -> None:
        self._dsn = dsn
        self._on_commit = on_commit
        self._queue: queue.Queue[_Batch | None] = queue.Queue()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)
        self.commits = 0
        self.healthy = True

    def start(self) -> GroupCommitWriter:
        self._thread.start()
        return self

    def submit(self, partner_id: str, events: Sequence[Event]) -> Future:
        batch = _Batch(partner_id, events)
        if not events:
            batch.future.set_result([])
        else:
            self._queue.put(batch)
        return batch.future

    def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batches, size, stop = [first], len(first.events), False
            while size < MAX_EVENTS_PER_COMMIT:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batches.append(nxt)
                size += len(nxt.events)
            self._commit(batches)
            if stop:
                break
        if self._conn is not None:
            self._conn.close()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, connect_timeout=5, application_name=APPLICATION_NAME)
            self._conn.execute(_TEMP_TABLES)
            self._conn.commit()
        return self._conn

    def _commit(self, batches: list[_Batch]) -> None:
        try:
            conn = self._connection()
            with conn.transaction():
                outcomes, stored = _write(conn, batches)
            self.commits += 1
            self.healthy = True
        except Exception as exc:  # the warehouse could not commit: every batch here fails, none is kept
            self.healthy = False
            log.warning("collector commit failed (%s): %d batches answered 503", type(exc).__name__, len(batches))
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
            for batch in batches:
                batch.future.set_exception(exc)
            return
        for batch, result in zip(batches, outcomes, strict=True):
            batch.future.set_result(result)
        if self._on_commit is not None and stored:
            try:
                self._on_commit(stored)
            except Exception:  # real-time features are best effort; the warehouse already has the events
                log.exception("collector: after-commit hook failed")


def _write(conn: psycopg.Connection, batches: list[_Batch]) -> tuple[list[list[str]], list[tuple[str, Event]]]:
    """Copy every batch's events in one transaction; returns (outcomes per batch, stored (partner, event))."""
    first_seen: dict[str, tuple[str, Event]] = {}
    for batch in batches:
        for event in batch.events:
            first_seen.setdefault(storage_key(batch.partner_id, event), (batch.partner_id, event))
    interactions = [(k, p, e) for k, (p, e) in first_seen.items() if e.type in INTERACTION_TYPES]
    preferences = [(k, p, e) for k, (p, e) in first_seen.items() if e.type in PREFERENCE_TYPES]
    orders = [(k, p, e) for k, (p, e) in first_seen.items() if isinstance(e, OrderEvent)]
    inserted: set[str] = set()
    inserted |= _copy_interactions(conn, interactions)
    inserted |= _copy_preferences(conn, preferences)
    inserted |= _insert_orders(conn, orders)

    claimed: set[str] = set()
    outcomes: list[list[str]] = []
    for batch in batches:
        result = []
        for event in batch.events:
            key = storage_key(batch.partner_id, event)
            fresh = key in inserted and key not in claimed
            claimed.add(key)
            result.append(STORED if fresh else DUPLICATE)
        outcomes.append(result)
    stored = [(p, e) for k, (p, e) in first_seen.items() if k in inserted]
    return outcomes, stored


def _json(props: dict | None) -> str | None:
    return json.dumps(props, ensure_ascii=False, allow_nan=False) if props else None


def _copy_interactions(conn: psycopg.Connection, rows: list[tuple[str, str, Event]]) -> set[str]:
    if not rows:
        return set()
    with conn.cursor() as cur:
        with cur.copy(f"copy collector_events ({_EVENT_COLUMNS}) from stdin") as copy:
            for key, partner, e in rows:
                copy.write_row(
                    (
                        key,
                        e.type,
                        e.timestamp,
                        e.user_id,
                        partner,
                        e.session_id,
                        getattr(e, "item_id", None),
                        getattr(e, "dwell_seconds", None),
                        getattr(e, "query", None),
                        getattr(e, "order_id", None),
                        getattr(e, "amount", None),
                        _json(e.properties),
                    )
                )
        cur.execute(
            f"insert into raw.events ({_EVENT_COLUMNS}, source) select {_EVENT_COLUMNS}, 'collector' "
            "from collector_events on conflict (event_id) do nothing returning event_id"
        )
        return {r[0] for r in cur.fetchall()}


def _copy_preferences(conn: psycopg.Connection, rows: list[tuple[str, str, Event]]) -> set[str]:
    """The preference event log, then the current state in raw.preferences (adds inserted, removes deleted),
    applied in event-time order for the events stored now."""
    if not rows:
        return set()
    with conn.cursor() as cur:
        with cur.copy(f"copy collector_preferences ({_PREFERENCE_COLUMNS}) from stdin") as copy:
            for key, partner, e in rows:
                copy.write_row(
                    (
                        key,
                        e.type,
                        e.timestamp,
                        e.user_id,
                        partner,
                        getattr(e, "item_id", None),
                        getattr(e, "category", None),
                        _json(e.properties),
                    )
                )
        cur.execute(
            f"insert into raw.preference_events ({_PREFERENCE_COLUMNS}) select {_PREFERENCE_COLUMNS} "
            "from collector_preferences on conflict (event_id) do nothing returning event_id"
        )
        inserted = {r[0] for r in cur.fetchall()}
        for _key, _, e in sorted((r for r in rows if r[0] in inserted), key=lambda r: r[2].timestamp):
            if e.type == "wishlist_remove":
                cur.execute(
                    "delete from raw.preferences where user_id = %s and kind = 'wishlist' and item_id = %s",
                    (e.user_id, e.item_id),
                )
            else:
                kind = _PREFERENCE_KIND.get(e.type, "profile_category")
                cur.execute(
                    "insert into raw.preferences (user_id, kind, item_id, category, created_at) "
                    "values (%s, %s, %s, %s, %s) on conflict do nothing",
                    (e.user_id, kind, getattr(e, "item_id", None), getattr(e, "category", None), e.timestamp),
                )
    return inserted


def _insert_orders(conn: psycopg.Connection, rows: list[tuple[str, str, Event]]) -> set[str]:
    if not rows:
        return set()
    with conn.cursor() as cur:
        inserted: set[str] = set()
        for key, _, e in rows:
            assert isinstance(e, OrderEvent)
            cur.execute(
                "insert into raw.orders (order_id, user_id, ordered_at, amount, referral_partner_id) "
                "values (%s, %s, %s, %s, %s) on conflict (order_id) do nothing returning order_id",
                (e.order_id, e.user_id, e.timestamp, e.amount, e.referral_partner_id),
            )
            if cur.fetchone() is None:
                continue
            inserted.add(key)
            cur.executemany(
                "insert into raw.order_items (order_id, item_id, quantity, unit_price) values (%s, %s, %s, %s) "
                "on conflict (order_id, item_id) do nothing",
                [(e.order_id, line.item_id, line.quantity, line.unit_price) for line in e.lines],
            )
    return inserted
