"""One builder at a time of the warehouse's cutoff-dependent models.

The staging views compile the cutoff into their SQL and the intermediate tables are rebuilt for each cutoff, so
two dbt builds for different cutoffs at once could build one cutoff's marts from the other's intermediates.
Airflow keeps one run of a DAG at a time (``max_active_runs=1``) but applies a backfill's own limit
independently, so a backfill created in the UI runs beside a triggered or scheduled run. Whoever builds takes
the lease first: a row of ``ops.warehouse_lease`` (created with the warehouse layout, ``ltvfeed/sql/warehouse.sql``)
naming its holder (a DAG run, or a process building missing snapshots). A lease older than :data:`LEASE_TTL` is
taken over, so a holder killed before it released its lease blocks the others for that long at most.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

from ltvfeed.db import connect
from ltvfeed.errors import UserError

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(hours=6)  # longer than any build should take; what a killed holder can block at most
POLL_S = 15.0  # how often a waiting builder looks again

_NAME = "dbt"  # one lease: every cutoff-dependent model is built by dbt


def try_acquire(dsn: str, holder: str, ttl: timedelta = LEASE_TTL) -> str | None:
    """Take (or renew) the lease for ``holder``; None when it is ours, else who holds it."""
    with connect(dsn) as conn:
        taken = conn.execute(
            """
            insert into ops.warehouse_lease (name, holder, acquired_at) values (%(name)s, %(holder)s, now())
            on conflict (name) do update set holder = excluded.holder, acquired_at = now()
            where ops.warehouse_lease.holder = excluded.holder
               or ops.warehouse_lease.acquired_at < now() - %(ttl)s
            returning holder
            """,
            {"name": _NAME, "holder": holder, "ttl": ttl},
        ).fetchone()
        if taken:
            return None
        row = conn.execute("select holder from ops.warehouse_lease where name = %s", (_NAME,)).fetchone()
        return row[0] if row else None


def release(dsn: str, holder: str) -> bool:
    """Give the lease back if ``holder`` has it; whether it had."""
    with connect(dsn) as conn:
        cur = conn.execute("delete from ops.warehouse_lease where name = %s and holder = %s", (_NAME, holder))
        return cur.rowcount > 0


PROCESS_PREFIX = "process "  # holders that are a process's build, not a DAG run


def process_holder() -> str:
    """A holder name for this process (builds outside a DAG run)."""
    return f"{PROCESS_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def held(dsn: str, holder: str | None = None, wait: timedelta = LEASE_TTL, poll_s: float = POLL_S) -> Iterator[str]:
    """Hold the lease while the block runs, waiting up to ``wait`` for another holder to finish."""
    holder = holder or process_holder()
    deadline = time.monotonic() + wait.total_seconds()
    while (other := try_acquire(dsn, holder)) is not None:
        if time.monotonic() > deadline:
            raise UserError(f"the warehouse is being built by {other!r}; waited {wait} (try again later)")
        log.info("waiting for the warehouse: %s is building it", other)
        time.sleep(poll_s)
    try:
        yield holder
    finally:
        release(dsn, holder)
