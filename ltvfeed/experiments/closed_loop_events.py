"""What the closed loop sends where: the simulation's clock for exposures, and the response model's draws as
the events a shop sends the collector (clicks and add-to-carts carrying the feed id, one order per visit).

Time is compressed: simulated days run in seconds, so whatever is stamped must carry simulated time, never
the wall clock. The collector takes each event's own timestamp; the feed API stamps exposures through the
exposure log, so :class:`ClockedExposureLog` — the real batched writer — stamps them with :class:`SimClock`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from ltvfeed.experiments.exposures import ExposureLog
from ltvfeed.simulator.response import ItemAttributes, Responses

CLICK_AFTER_S = 5  # per position: the user scrolls down to the item
CART_AFTER_S = 30
ORDER_AFTER_S = 120


class SimClock:
    """The simulated now; the loop moves it to each visit before the feed is requested."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ClockedExposureLog(ExposureLog):
    """The exposure log, stamping each served feed with the simulated time it was served at."""

    def __init__(self, dsn: str, clock: SimClock, **kwargs: Any) -> None:
        super().__init__(dsn, **kwargs)
        self._clock = clock

    def log(self, *args: Any, served_at: datetime | None = None, **kwargs: Any) -> bool:
        return super().log(*args, served_at=served_at or self._clock(), **kwargs)


@dataclass(frozen=True)
class Visit:
    """One served feed: who, when, under which feed id (None outside experiments)."""

    user_id: str
    at: datetime
    feed_id: str | None


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def collector_events(
    visits: Sequence[Visit], responses: Responses, items: ItemAttributes, id_prefix: str
) -> list[dict[str, Any]]:
    """The events of one batch of visits: a click and an add-to-cart per item so treated, and per visit with
    purchases one order (the shop's webhook) with a line per item. Every event carries its visit's feed id, so
    the experiment metrics attribute it; ids are deterministic (``id_prefix`` + visit + position)."""
    events: list[dict[str, Any]] = []

    def base(v: int, kind: str, suffix: str, after_s: int) -> dict[str, Any]:
        visit = visits[v]
        event = {
            "event_id": f"{id_prefix}-{v}-{suffix}",
            "type": kind,
            "timestamp": (visit.at + timedelta(seconds=after_s)).isoformat(),
            "user_id": visit.user_id,
        }
        return event if visit.feed_id is None else {**event, "feed_id": visit.feed_id}

    for v, pos, item, carted in zip(
        responses.visit[responses.clicked],
        responses.position[responses.clicked],
        responses.item[responses.clicked],
        responses.carted[responses.clicked],
        strict=True,
    ):
        item_id = str(items.item_ids[item])
        after = CLICK_AFTER_S * int(pos)
        events.append({**base(int(v), "click", f"c{pos}", after), "item_id": item_id, "position": int(pos)})
        if carted:
            events.append({**base(int(v), "add_to_cart", f"a{pos}", after + CART_AFTER_S), "item_id": item_id})
    bought = np.flatnonzero(responses.bought)
    for v in np.unique(responses.visit[bought]):
        rows = bought[responses.visit[bought] == v]
        cents = np.round(items.price[responses.item[rows]] * 100).astype(np.int64)
        lines = [
            {"item_id": str(items.item_ids[i]), "quantity": int(q), "unit_price": _money(int(c))}
            for i, q, c in zip(responses.item[rows], responses.quantity[rows], cents, strict=True)
        ]
        total = int((cents * responses.quantity[rows]).sum())
        order = base(int(v), "order", "o", ORDER_AFTER_S)
        order_id = f"{id_prefix}-{v}"
        events.append({**order, "order_id": order_id, "amount": _money(total), "lines": lines})
    return events
