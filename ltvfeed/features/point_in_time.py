"""Feast's point-in-time join on PostgreSQL at a cost linear in the entity rows.

Feast renders one query per retrieval. Per feature view it builds ``__base`` (snapshots x entity rows, joined on
the key within the TTL), a CTE read twice, so PostgreSQL materialises it and has no statistics for it. Once the
mart has statistics (autovacuum analyses it after every dbt build) the planner estimates ``__base`` at one row
and joins it to ``__latest`` with a nested loop: rows x rows comparisons per view (EXPLAIN ANALYZE, 2,000 rows:
12M rows removed by the join filter per view, 7 s; 4,000 rows 26 s). Analysing the uploaded entity table does not
help: estimates do not pass through the CTEs. The SQL is right, only its plan is wrong, so we keep Feast's SQL
and run it ourselves with nested loops disabled for that one transaction (every join becomes a hash join).

Feast writes the SQL (embedding our entity query, ``entity_select_mode=embed_query``); we upload the entity rows
with COPY and run the query with ``enable_nestloop = off``. Other offline stores go through Feast unchanged.
"""

from __future__ import annotations

import contextlib
import io
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from ltvfeed.errors import UserError

if TYPE_CHECKING:
    import psycopg
    from feast import FeatureService, FeatureStore
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStoreConfig
    from psycopg import sql

_ENTITY_TABLE_PREFIX = "ltvfeed_entities_"
# The select mode is read from the store's config while Feast renders the SQL; one renderer at a time per process.
_MODE_LOCK = threading.Lock()


def historical_features(store: FeatureStore, service: FeatureService, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (join keys, UTC ``event_timestamp``, any other columns) with the service's features as Feast's
    ``get_historical_features(...).to_df()`` returns them, in no particular order."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStoreConfig

    offline = store.config.offline_store
    if not isinstance(offline, PostgreSQLOfflineStoreConfig):
        return store.get_historical_features(entity_df=rows, features=service).to_df()
    from psycopg import sql

    table = sql.Identifier(offline.db_schema, f"{_ENTITY_TABLE_PREFIX}{uuid.uuid4().hex}")
    with _connect(offline) as conn:
        _upload(conn, table, rows)
        try:
            entity_sql = sql.SQL("select * from {}").format(table).as_string(conn)
            with _MODE_LOCK, _embedded_entity_query(offline), warnings.catch_warnings():
                # Feast reads the entity query's columns with pandas.read_sql on a psycopg connection
                warnings.filterwarnings("ignore", "pandas only supports SQLAlchemy", UserWarning)
                job = store.get_historical_features(entity_df=entity_sql, features=service)
                if job.on_demand_feature_views:  # transformed in Python after the query: leave all of it to Feast
                    return job.to_df()
                query = job.to_sql()
            return _fetch(conn, query)
        finally:
            conn.execute(sql.SQL("drop table if exists {}").format(table))


@contextlib.contextmanager
def _embedded_entity_query(offline: PostgreSQLOfflineStoreConfig) -> Iterator[None]:
    """Feast embeds a SQL entity frame in its query instead of copying it into a table it drops on exit."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import EntitySelectMode

    previous = offline.entity_select_mode
    offline.entity_select_mode = EntitySelectMode.embed_query
    try:
        yield
    finally:
        offline.entity_select_mode = previous


def _connect(offline: PostgreSQLOfflineStoreConfig) -> psycopg.Connection:
    """Autocommit connection to the offline store's database: the uploaded table must be visible to Feast's own
    connections (it reads the entity query's schema and time range)."""
    import psycopg

    extra = {
        "sslkey": offline.sslkey_path,
        "sslcert": offline.sslcert_path,
        "sslrootcert": offline.sslrootcert_path,
    }
    return psycopg.connect(
        host=offline.host,
        port=int(offline.port),
        dbname=offline.database,
        user=offline.user,
        password=offline.password,
        sslmode=offline.sslmode,
        options=f"-c search_path={offline.db_schema},public",  # as Feast's own connections
        autocommit=True,
        **{k: v for k, v in extra.items() if v},
    )


def _pg_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_integer_dtype(column):
        return "bigint"
    if pd.api.types.is_float_dtype(column):
        return "double precision"
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    return "text"


def _upload(conn: psycopg.Connection, table: sql.Identifier, rows: pd.DataFrame) -> None:
    """The rows as an unlogged table, by COPY (Feast inserts row by row)."""
    from psycopg import sql

    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(str(name)), sql.SQL(_pg_type(rows[name]))) for name in rows.columns
    )
    conn.execute(sql.SQL("create unlogged table {} ({})").format(table, columns))
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f%z")
    with conn.cursor() as cur, cur.copy(sql.SQL("copy {} from stdin with (format csv)").format(table)) as copy:
        copy.write(buffer.getvalue())


def _fetch(conn: psycopg.Connection, query: str) -> pd.DataFrame:
    """Run Feast's query without nested loops; columns typed the way Feast's PostgreSQL job types them."""
    import pyarrow as pa
    from feast.type_map import pg_type_code_to_arrow

    with conn.transaction(), conn.cursor() as cur:
        cur.execute("set local enable_nestloop = off")
        cur.execute(query)
        if cur.description is None:
            raise UserError("Feast's point-in-time query returned no columns")
        schema = pa.schema([(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description])
        data = cur.fetchall()
    columns = list(zip(*data, strict=True)) if data else [() for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c)) for c in columns], schema=schema).to_pandas()
