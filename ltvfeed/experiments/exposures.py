"""The exposure log: every feed served to a user in an experiment, written to ``raw.exposures`` in batches.

The feed API calls :meth:`ExposureLog.log` per response. It only appends to a bounded in-process queue
(``put_nowait``), so it costs microseconds, never blocks and never raises: when the queue is full, the log is
closed or the exposure is malformed, the exposure is dropped and counted (``dropped_full``, ``dropped_closed``,
``dropped_invalid``). A background thread drains the queue, COPYs each batch into a temporary table and moves
it into ``raw.exposures`` with ``on conflict do nothing`` in one transaction, so a retried batch or a repeated
exposure id never makes a second row (``duplicates``). A failed commit is retried on a fresh connection; a
batch that still fails after :attr:`ExposureLog.retries` attempts is dropped and counted (``dropped_failed``).
:meth:`ExposureLog.close` flushes everything queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg

log = logging.getLogger(__name__)

APPLICATION_NAME = "ltvfeed-exposures"  # how the writer shows in pg_stat_activity
_COLUMNS = "exposure_id, experiment, arm, user_id, generation, feed, item_ids, positions, served_at"
_TEMP_TABLE = """
create temp table if not exists exposures_batch (
    exposure_id text, experiment text, arm text, user_id text, generation text, feed text,
    item_ids text[], positions smallint[], served_at timestamptz
) on commit delete rows;
"""
_MOVE = f"""
insert into raw.exposures ({_COLUMNS})
select distinct on (exposure_id) {_COLUMNS} from exposures_batch
on conflict (exposure_id) do nothing
"""


class Exposure(NamedTuple):
    exposure_id: str
    experiment: str
    arm: str
    user_id: str
    generation: str | None
    feed: str | None
    item_ids: list[str]
    served_at: datetime

    def row(self) -> tuple:
        return (*self[:7], list(range(1, len(self.item_ids) + 1)), self.served_at)


class ExposureLog:
    """Batched, non-blocking writer of exposures; ``start()`` it, ``log()`` per served feed, ``close()``."""

    def __init__(
        self,
        dsn: str,
        *,
        max_queue: int = 100_000,
        batch_size: int = 5_000,
        retries: int = 3,
        retry_delay_s: float = 0.5,
    ) -> None:
        self._dsn = dsn
        self._queue: queue.Queue[Exposure] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self.retries = retries
        self._retry_delay_s = retry_delay_s
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._conn: psycopg.Connection | None = None
        self._count_lock = threading.Lock()
        self.stored = 0
        self.duplicates = 0
        self.commits = 0
        self.dropped_full = 0
        self.dropped_closed = 0
        self.dropped_invalid = 0
        self.dropped_failed = 0

    @property
    def dropped(self) -> int:
        """Exposures that will never reach the warehouse, for any reason."""
        return self.dropped_full + self.dropped_closed + self.dropped_invalid + self.dropped_failed

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> ExposureLog:
        self._thread.start()
        return self

    def log(
        self,
        exposure_id: str,
        experiment: str,
        arm: str,
        user_id: str,
        item_ids: Sequence[str],
        *,
        generation: str | None = None,
        feed: str | None = None,
        served_at: datetime | None = None,
    ) -> bool:
        """Queue one served feed (items in served order); False when it was dropped (and counted)."""
        try:
            if self._closing.is_set():
                self._count("dropped_closed")
                return False
            if not (exposure_id and experiment and arm and user_id) or isinstance(item_ids, str):
                self._count("dropped_invalid")
                return False
            self._queue.put_nowait(
                Exposure(
                    str(exposure_id),
                    str(experiment),
                    str(arm),
                    str(user_id),
                    generation,
                    feed,
                    [str(i) for i in item_ids],
                    served_at or datetime.now(UTC),
                )
            )
            return True
        except queue.Full:
            self._count("dropped_full")
        except Exception:  # never let logging break the response
            self._count("dropped_invalid")
        return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking exposures and write everything already queued (waits up to ``timeout_s``)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        elif self._thread.ident is None:  # never started: flush here
            self._run()

    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + n)

    def _take(self) -> list[Exposure]:
        batch: list[Exposure] = []
        try:
            batch.append(self._queue.get(timeout=0.05))
        except queue.Empty:
            return batch
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._write(batch)
            elif self._closing.is_set():
                break
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, connect_timeout=5, application_name=APPLICATION_NAME)
            self._conn.execute(_TEMP_TABLE)
            self._conn.commit()
        return self._conn

    def _write(self, batch: list[Exposure]) -> None:
        for attempt in range(1, self.retries + 1):
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(f"copy exposures_batch ({_COLUMNS}) from stdin") as copy:
                        for exposure in batch:
                            copy.write_row(exposure.row())
                    inserted = cur.execute(_MOVE).rowcount
                self._count("stored", inserted)
                self._count("duplicates", len(batch) - inserted)
                self._count("commits")
                return
            except Exception as exc:
                log.warning("exposure log: commit of %d failed (%s), attempt %d", len(batch), exc, attempt)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if attempt < self.retries:
                    time.sleep(self._retry_delay_s * attempt)
        self._count("dropped_failed", len(batch))
