"""What a valid file row looks like, per raw entity: one declarative spec each, written to match
sql/warehouse.sql (tests/integration/test_ingest.py compares them with the live schema so the two cannot drift)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ltvfeed.errors import UserError
from ltvfeed.warehouse import EVENT_TYPES, PREFERENCE_KINDS


class ColumnType(StrEnum):
    """The value kinds files may carry; each maps to one PostgreSQL type of the raw schema."""

    TEXT = "text"
    TIMESTAMP = "timestamptz"
    MONEY = "numeric(12,2)"
    INTEGER = "integer"
    REAL = "real"
    BOOLEAN = "boolean"
    JSON = "jsonb"

    @property
    def staging_type(self) -> str:
        """Type of the column in the COPY staging table: JSON stays text so invalid documents can be quarantined
        row by row instead of aborting the COPY."""
        return "text" if self is ColumnType.JSON else self.value


class Column(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: ColumnType = ColumnType.TEXT
    required: bool = False
    allowed: tuple[str, ...] | None = None  # compared case-insensitively; stored lower-case
    sign: Literal["any", "non_negative", "positive"] = "any"
    default_sql: str | None = None  # used when the file has no value (mirrors the table's DEFAULT)


class EntitySpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    at_least_one_of: tuple[str, ...] = ()  # a row must carry one of these (e.g. a preference's item or category)
    # True: a row whose key is already loaded replaces it when its values differ (the newer import wins; the
    # table's triggers keep every version in raw.<kind singular>_versions). False: insert-once, a known key is
    # a duplicate (orders, lines, events, preferences never change once they happened).
    updatable: bool = False

    @model_validator(mode="after")
    def _keys_are_columns(self) -> EntitySpec:
        names = set(self.names)
        unknown = [c for c in (*self.primary_key, *self.at_least_one_of) if c not in names]
        if unknown:
            raise ValueError(f"{self.kind}: key columns {unknown} are not columns")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def without_required(self, name: str) -> EntitySpec:
        """The same spec with ``name`` optional (its value is derived after validation, e.g. order_id)."""
        cols = tuple(c.model_copy(update={"required": False}) if c.name == name else c for c in self.columns)
        return self.model_copy(update={"columns": cols})


_TEXT_REQUIRED = {"type": ColumnType.TEXT, "required": True}

# Keyed in dependency order (ltvfeed.warehouse.RAW_ENTITIES); import_directory loads kinds in this order.
SPECS: dict[str, EntitySpec] = {
    "users": EntitySpec(
        kind="users",
        table="raw.users",
        columns=(
            Column(name="user_id", **_TEXT_REQUIRED),
            Column(name="signup_at", type=ColumnType.TIMESTAMP, required=True),
            Column(name="country"),
            Column(name="birth_year", type=ColumnType.INTEGER),
            Column(name="gender"),
            Column(name="acquisition_partner_id"),
        ),
        primary_key=("user_id",),
        updatable=True,
    ),
    "items": EntitySpec(
        kind="items",
        table="raw.items",
        columns=(
            Column(name="item_id", **_TEXT_REQUIRED),
            Column(name="category", **_TEXT_REQUIRED),
            Column(name="price", type=ColumnType.MONEY, required=True, sign="non_negative"),
            Column(name="brand"),
            Column(name="title"),
            Column(name="in_stock", type=ColumnType.BOOLEAN, default_sql="true"),
            Column(name="is_repeat_purchase", type=ColumnType.BOOLEAN, default_sql="false"),
            Column(name="created_at", type=ColumnType.TIMESTAMP),
            # false for what must never be recommended (fees, coupons, gift cards); feeds filter on it
            Column(name="recommendable", type=ColumnType.BOOLEAN, default_sql="true"),
        ),
        primary_key=("item_id",),
        updatable=True,
    ),
    "orders": EntitySpec(
        kind="orders",
        table="raw.orders",
        columns=(
            Column(name="order_id", **_TEXT_REQUIRED),
            Column(name="user_id", **_TEXT_REQUIRED),
            Column(name="ordered_at", type=ColumnType.TIMESTAMP, required=True),
            Column(name="amount", type=ColumnType.MONEY, required=True, sign="non_negative"),
            Column(name="referral_partner_id"),
        ),
        primary_key=("order_id",),
    ),
    "order_items": EntitySpec(
        kind="order_items",
        table="raw.order_items",
        columns=(
            Column(name="order_id", **_TEXT_REQUIRED),
            Column(name="item_id", **_TEXT_REQUIRED),
            Column(name="quantity", type=ColumnType.INTEGER, required=True, sign="positive"),
            Column(name="unit_price", type=ColumnType.MONEY, required=True, sign="non_negative"),
        ),
        primary_key=("order_id", "item_id"),
    ),
    "events": EntitySpec(
        kind="events",
        table="raw.events",
        columns=(
            Column(name="event_id", **_TEXT_REQUIRED),
            Column(name="event_type", required=True, allowed=EVENT_TYPES),
            Column(name="occurred_at", type=ColumnType.TIMESTAMP, required=True),
            Column(name="user_id"),
            Column(name="partner_id"),
            Column(name="session_id"),
            Column(name="item_id"),
            Column(name="dwell_seconds", type=ColumnType.REAL, sign="non_negative"),
            Column(name="search_query"),
            Column(name="order_id"),
            Column(name="amount", type=ColumnType.MONEY, sign="non_negative"),
            Column(name="properties", type=ColumnType.JSON),
            Column(name="source", default_sql="'import'"),
        ),
        primary_key=("event_id",),
    ),
    "preferences": EntitySpec(
        kind="preferences",
        table="raw.preferences",
        columns=(
            Column(name="user_id", **_TEXT_REQUIRED),
            Column(name="kind", required=True, allowed=PREFERENCE_KINDS),
            Column(name="item_id"),
            Column(name="category"),
            Column(name="created_at", type=ColumnType.TIMESTAMP, required=True),
        ),
        # the table's unique (user_id, kind, item_id, category) NULLS NOT DISTINCT
        primary_key=("user_id", "kind", "item_id", "category"),
        at_least_one_of=("item_id", "category"),
    ),
}


def spec_for(kind: str) -> EntitySpec:
    try:
        return SPECS[kind]
    except KeyError:
        raise UserError(f"unknown kind {kind!r}; choose one of: {', '.join(SPECS)}") from None
