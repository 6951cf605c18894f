"""The warehouse: its database and schemas, and every read of ``raw.*`` and ``marts.*`` that training, serving
and orchestration need, in one package.

Training and serving take and return frames; what they read comes from here, so each SQL rule (which rows are
before a cutoff, where the data ends, which snapshots exist) is written once:

- this module: the database and its raw landing schema (``ensure_warehouse``), the raw entities' names;
- :mod:`~ltvfeed.warehouse.extent`: where the data starts and ends;
- :mod:`~ltvfeed.warehouse.snapshots`: which mart snapshots exist, building missing ones (dbt, then the gate);
- :mod:`~ltvfeed.warehouse.ltv_reads`: LTV labels and the ``user_features`` snapshot as frames;
- :mod:`~ltvfeed.warehouse.propensity_reads`: purchase windows, the item / user / category snapshots and LTV
  scores the propensity model reads;
- :mod:`~ltvfeed.warehouse.activity_reads`: users' recent raw activity the online features recompute on push;
- :mod:`~ltvfeed.warehouse.generation_reads`: what feed generation reads for a cutoff (catalogue, a shard's
  users, their histories), a chunk of users at a time.
- :mod:`~ltvfeed.warehouse.predictions`: the LTV scores (``marts.user_ltv_predictions``): writing one scoring
  (its revision, by COPY) and which scoring is served;
- :mod:`~ltvfeed.warehouse.experiment_reads`: an experiment's per-user metrics and its logged exposures.

Outside this package only the landing edge writes ``raw.*`` (imports, the collector, the exposure log), and no
module issues SQL on the marts (tests/unit/test_layering.py).
"""

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
