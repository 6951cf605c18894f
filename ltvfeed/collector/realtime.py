"""After commit: orders that arrived through the collector reach the online store within seconds.

The writer hands over the users of stored orders; a background thread pushes their recent-purchase lists
(:func:`ltvfeed.features.recent_purchases.push_recent_purchases`) at most every :data:`PUSH_INTERVAL_S`, so the
feed API's freshness filter drops an item a user has just bought. Pushes are best effort: if Redis or the
feature store is down, the users stay queued and are pushed on the next round (the daily snapshot catches up
with anything older).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from ltvfeed.collector.schema import Event, OrderEvent

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 0.5


class RealtimePusher:
    def __init__(self, push: Callable[[list[str]], int], interval_s: float = PUSH_INTERVAL_S) -> None:
        self._push, self._interval = push, interval_s
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-realtime", daemon=True)
        self.pushed = 0

    def start(self) -> RealtimePusher:
        self._thread.start()
        return self

    def after_commit(self, stored: Iterable[tuple[str, Event]]) -> None:
        users = {e.user_id for _, e in stored if isinstance(e, OrderEvent)}
        if users:
            with self._lock:
                self._pending |= users

    def flush(self) -> None:
        with self._lock:
            users, self._pending = sorted(self._pending), set()
        if not users:
            return
        try:
            self.pushed += self._push(users)
        except Exception as exc:  # keep them for the next round
            log.warning("collector: real-time push of %d users failed (%s); retrying", len(users), exc)
            with self._lock:
                self._pending |= set(users)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
