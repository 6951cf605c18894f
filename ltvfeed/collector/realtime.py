"""After commit: what arrived through the collector reaches the online store within seconds.

The writer hands over what it stored; a background thread pushes, at most every :data:`PUSH_INTERVAL_S`, each
channel's users: orders -> the recent-purchase lists (:func:`ltvfeed.features.recent_purchases.push_recent_purchases`,
so the feed API's freshness filter drops an item a user has just bought), and interactions, preferences and
orders -> the live activity (:func:`ltvfeed.features.live_activity.push_live_activity`, the last hour's engagement
and the current preferences apps read). Pushes are best effort: if Redis or the feature store is down, the users
stay queued and are pushed on the next round (the daily snapshot catches up with anything older); on a stack whose
feature store was never applied, nothing is pushed and one warning says so. A shutdown gives the last round at most
:data:`CLOSE_TIMEOUT_S`, so SIGTERM stops the collector promptly however slow the feature store is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ltvfeed.collector.schema import Event, OrderEvent
from ltvfeed.features.recent_purchases import FeatureStoreNotApplied

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 0.5
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Channel:
    """One online view kept current: which stored events concern it and how to push a batch of users."""

    name: str
    concerns: Callable[[Event], bool]
    push: Callable[[list[str]], int]


def is_order(event: Event) -> bool:
    return isinstance(event, OrderEvent)


def any_event(event: Event) -> bool:
    return True


class RealtimePusher:
    def __init__(self, channels: Iterable[Channel], interval_s: float = PUSH_INTERVAL_S) -> None:
        self._channels = list(channels)
        self._interval = interval_s
        self._pending: dict[str, set[str]] = {c.name: set() for c in self._channels}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collector-realtime", daemon=True)
        self.pushed = 0
        self._not_applied: set[str] = set()  # channels whose feature store is not applied (warned once)

    def start(self) -> RealtimePusher:
        self._thread.start()
        return self

    def after_commit(self, stored: Iterable[tuple[str, Event]]) -> None:
        events = [e for _, e in stored]
        with self._lock:
            for channel in self._channels:
                self._pending[channel.name] |= {e.user_id for e in events if channel.concerns(e)}

    def flush(self) -> None:
        for channel in self._channels:
            with self._lock:
                users, self._pending[channel.name] = sorted(self._pending[channel.name]), set()
            if not users:
                continue
            try:
                self.pushed += channel.push(users)
            except FeatureStoreNotApplied as exc:  # nothing online to keep current: the users are dropped
                if channel.name not in self._not_applied:
                    log.warning("collector: %s not pushed online: %s", channel.name, exc)
                self._not_applied.add(channel.name)
            except Exception as exc:  # keep them for the next round
                log.warning(
                    "collector: real-time push (%s) of %d users failed (%s); retrying", channel.name, len(users), exc
                )
                with self._lock:
                    self._pending[channel.name] |= set(users)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Push what is queued, within ``timeout_s``: a shutdown never waits on a slow feature store (SIGTERM must
        stop the collector promptly); users left queued are covered by the next daily snapshot."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning(
                "collector: shut down with a real-time push still running after %.0f s; the daily snapshot covers "
                "the users it had not pushed",
                timeout_s,
            )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
        self.flush()  # the last round, after close() asked to stop
