"""What partners may send to ``POST /v1/events``: one pydantic model per event type, published as a versioned
JSON Schema (``GET /v1/schema/events.json``) and in the collector's OpenAPI.

Every event carries a sender-chosen ``event_id`` (unique per partner), an ISO 8601 ``timestamp`` with a time
zone, a ``type`` and a ``user_id``. Fields a type does not define are kept in ``properties`` (never silently
dropped). Validation is per event: one bad event is rejected with its index, field and reason, the others in
the batch are still stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SCHEMA_VERSION = "1"
SCHEMA_ID = f"https://ltvfeed.dev/schemas/events/v{SCHEMA_VERSION}.json"
MAX_FUTURE = timedelta(hours=1)  # clock skew we accept on event timestamps
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

Id = Annotated[str, Field(min_length=1, max_length=128)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    event_id: Id
    timestamp: AwareDatetime
    user_id: Id
    session_id: Annotated[str, Field(max_length=128)] | None = None

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """The instant in UTC: ISO 8601 allows offsets up to ±23:59, PostgreSQL only ±15:59, and a batch the
        warehouse cannot commit would fail with its good events."""
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ValueError("timestamp is out of range once converted to UTC") from None

    @property
    def properties(self) -> dict[str, Any] | None:
        return dict(self.model_extra) if self.model_extra else None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in str(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class ClickEvent(_Event):
    type: Literal["click"]
    item_id: Id


class ViewEvent(_Event):
    type: Literal["view"]
    item_id: Id
    dwell_seconds: Annotated[float, Field(ge=0, le=86_400)] | None = None


class AddToCartEvent(_Event):
    type: Literal["add_to_cart"]
    item_id: Id


class ReferralPurchaseEvent(_Event):
    type: Literal["referral_purchase"]
    order_id: Id
    amount: Money
    item_id: Id | None = None


class SearchEvent(_Event):
    type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=1000)]


class WishlistAddEvent(_Event):
    type: Literal["wishlist_add"]
    item_id: Id


class WishlistRemoveEvent(_Event):
    type: Literal["wishlist_remove"]
    item_id: Id


class SavedItemEvent(_Event):
    type: Literal["saved_item"]
    item_id: Id


class ProfileCategoryEvent(_Event):
    type: Literal["profile_category"]
    category: Annotated[str, Field(min_length=1, max_length=200)]


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Id
    quantity: Annotated[int, Field(gt=0, le=100_000)]
    unit_price: Money


class OrderEvent(_Event):
    """The shop's own order webhook: the order and its lines, stored once per ``order_id``."""

    type: Literal["order"]
    order_id: Id
    amount: Money
    referral_partner_id: Id | None = None
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=1000)]

    @field_validator("lines")
    @classmethod
    def _one_line_per_item(cls, lines: list[OrderLine]) -> list[OrderLine]:
        items = [line.item_id for line in lines]
        if len(set(items)) != len(items):
            raise ValueError("each item_id may appear in one line only (sum the quantities)")
        return lines


Event = Annotated[
    ClickEvent
    | ViewEvent
    | AddToCartEvent
    | ReferralPurchaseEvent
    | SearchEvent
    | WishlistAddEvent
    | WishlistRemoveEvent
    | SavedItemEvent
    | ProfileCategoryEvent
    | OrderEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
INTERACTION_TYPES = ("click", "view", "add_to_cart", "referral_purchase", "search")  # -> raw.events
PREFERENCE_TYPES = ("wishlist_add", "wishlist_remove", "saved_item", "profile_category")  # -> raw.preference_events
_TAGS = frozenset((*INTERACTION_TYPES, *PREFERENCE_TYPES, "order"))


class Rejection(BaseModel):
    index: int
    field: str
    reason: str


def validate_event(index: int, payload: Any, *, check_nul: bool = True) -> Event | Rejection:
    """The event, or why it is rejected (first error: its field path and message). ``check_nul=False`` skips the
    NUL scan when the caller knows the body holds no U+0000 (PostgreSQL text and jsonb cannot store it)."""
    if not isinstance(payload, dict):
        return Rejection(index=index, field="", reason="an event must be a JSON object")
    try:
        event = EVENT_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(p) for p in error["loc"]]
        if loc and loc[0] in _TAGS:
            loc = loc[1:]  # drop the discriminator's tag from the path
        return Rejection(index=index, field=".".join(loc), reason=str(error["msg"]))
    if event.timestamp > datetime.now(UTC) + MAX_FUTURE:
        return Rejection(index=index, field="timestamp", reason="timestamp is in the future")
    if event.timestamp < EARLIEST:
        return Rejection(index=index, field="timestamp", reason="timestamp is before 1970")
    if check_nul:
        for name, value in payload.items():
            if "\x00" in str(name) or _has_nul(value):
                return Rejection(index=index, field=str(name), reason="contains a NUL character (U+0000)")
    return event


def json_schema() -> dict[str, Any]:
    """The published, versioned JSON Schema of one event (any type)."""
    schema = EVENT_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        **schema,
    }
