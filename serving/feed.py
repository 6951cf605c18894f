"""What a feed is: ranked items, each carrying its score components so that every position is explainable.

The compact JSON form (:meth:`Feed.to_json`) is what the feed store keeps in Redis and the API returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ltvfeed.errors import UserError

FORMAT_VERSION = 1
_DIGITS = 6


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One feed position. ``purchase`` is None when P(purchase) was not part of the score (weight 0)."""

    item_id: str
    score: float
    commercial: float
    purchase: float | None
    diversity: float


@dataclass(frozen=True, slots=True)
class Feed:
    """A user's ranked feed; ``generation`` says which stored feed generation it came from (None if unstored)."""

    user_id: str
    items: tuple[FeedItem, ...]
    generation: str | None = None

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def to_dict(self) -> dict[str, Any]:
        """Compact form: ``i`` is a list of ``[item_id, score, commercial, purchase, diversity]``."""
        r = _DIGITS
        return {
            "v": FORMAT_VERSION,
            "u": self.user_id,
            "g": self.generation,
            "i": [
                [
                    it.item_id,
                    round(it.score, r),
                    round(it.commercial, r),
                    None if it.purchase is None else round(it.purchase, r),
                    round(it.diversity, r),
                ]
                for it in self.items
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feed:
        if data.get("v") != FORMAT_VERSION:
            raise UserError(f"stored feed has format version {data.get('v')!r}, this code reads {FORMAT_VERSION}")
        items = tuple(
            FeedItem(str(i), float(s), float(c), None if p is None else float(p), float(d))
            for i, s, c, p, d in data["i"]
        )
        return cls(user_id=data["u"], items=items, generation=data.get("g"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Feed:
        return cls.from_dict(json.loads(text))

    def with_generation(self, generation: str) -> Feed:
        return Feed(self.user_id, self.items, generation)
