"""The warehouse database: created on the stack's PostgreSQL server with the raw landing schema."""

from __future__ import annotations

from importlib import resources

from ltvfeed.db import connect, ensure_database, with_database

RAW_ENTITIES = ("users", "items", "orders", "order_items", "events", "preferences")
EVENT_TYPES = ("click", "view", "add_to_cart", "referral_purchase", "search")
PREFERENCE_KINDS = ("wishlist", "saved", "profile_category")


def schema_sql() -> str:
    return resources.files("ltvfeed").joinpath("sql/warehouse.sql").read_text()


def ensure_warehouse(server_dsn: str, dbname: str) -> str:
    """Create the warehouse database and its schemas if missing; returns the warehouse DSN."""
    ensure_database(server_dsn, dbname)
    dsn = with_database(server_dsn, dbname)
    with connect(dsn) as conn:
        conn.execute(schema_sql())
        conn.execute(resources.files("ltvfeed").joinpath("sql/experiments.sql").read_text())  # dbt sources
    return dsn
