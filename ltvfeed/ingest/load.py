"""The database side of one import, all inside the caller's single transaction: the ops.import_batches row,
COPY into a temporary staging table, the checks that need the whole file (in-file duplicate keys, JSON
documents, transaction-log order ids), and ``INSERT ... ON CONFLICT`` into the raw table (skip a known key; for
users and items, replace the row when it changed)."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

from ltvfeed.ingest.spec import ColumnType, EntitySpec

STAGE = sql.Identifier("ingest_stage")
_QUARANTINE_COLUMNS = ("batch_id", "kind", "row_number", "reason", "row_data", "row_bytes")
NUL_SHOWN = "\u2400"  # how a NUL character shows in ops.quarantine.row_data and reason (jsonb/text cannot hold it)


def open_batch(conn: psycopg.Connection, kind: str, source: str, sha256: str) -> int | None:
    """A new batch id, or None when this kind + content was imported before (a concurrent import of the same
    file waits here for the other transaction, then sees its row)."""
    row = conn.execute(
        "insert into ops.import_batches (kind, source, content_sha256) values (%s, %s, %s) "
        "on conflict (kind, content_sha256) do nothing returning batch_id",
        (kind, source, sha256),
    ).fetchone()
    return None if row is None else int(row[0])


def existing_batch(conn: psycopg.Connection, kind: str, sha256: str) -> int:
    row = conn.execute(
        "select batch_id from ops.import_batches where kind = %s and content_sha256 = %s", (kind, sha256)
    ).fetchone()
    assert row is not None, "called after open_batch found a conflict"
    return int(row[0])


def close_batch(
    conn: psycopg.Connection, batch_id: int, total: int, loaded: int, updated: int, duplicate: int, bad: int
) -> None:
    conn.execute(
        "update ops.import_batches set rows_total = %s, rows_loaded = %s, rows_updated = %s, rows_duplicate = %s, "
        "rows_quarantined = %s, loaded_at = now() where batch_id = %s",
        (total, loaded, updated, duplicate, bad, batch_id),
    )


def create_stage(conn: psycopg.Connection, spec: EntitySpec) -> None:
    columns = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type.staging_type)) for c in spec.columns]
    conn.execute(
        sql.SQL("create temporary table {} (_row bigint primary key, {}) on commit drop").format(
            STAGE, sql.SQL(", ").join(columns)
        )
    )


def copy_frame(conn: psycopg.Connection, table: sql.Composable, columns: list[str], frame: pd.DataFrame) -> None:
    """COPY a typed frame as CSV written by Arrow (fast, C++). Arrow quotes every string and leaves nulls as empty
    unquoted fields, which COPY reads as NULL; timestamps are written in UTC with a 'Z'."""
    if frame.empty:
        return
    buffer = io.BytesIO()
    arrow = pa.Table.from_pandas(frame[columns], preserve_index=False)
    pa_csv.write_csv(arrow, buffer, pa_csv.WriteOptions(include_header=False))
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        copy.write(buffer.getvalue())


def stage_rows(conn: psycopg.Connection, spec: EntitySpec, good: pd.DataFrame) -> None:
    copy_frame(conn, STAGE, ["_row", *spec.names], good)


def quarantine_rows(conn: psycopg.Connection, batch_id: int, kind: str, rejected: pd.DataFrame) -> None:
    """``rejected`` has ``_row``, ``reason`` and ``row_data`` (JSON text). Any text a bad row holds is kept."""
    frame = storable_rejected(rejected).rename(columns={"_row": "row_number"}).assign(batch_id=batch_id, kind=kind)
    copy_frame(conn, sql.Identifier("ops", "quarantine"), list(_QUARANTINE_COLUMNS), frame)


def storable_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    """PostgreSQL text and jsonb cannot hold NUL. For the (rare) rows with one, ``row_data`` and ``reason`` show
    it as U+2400 and ``row_bytes`` keeps the row's exact JSON document as UTF-8 bytes (JSON escapes NUL as
    \\u0000, so nothing is lost: ``convert_from(row_bytes, 'UTF8')::json``); other rows have row_bytes null."""
    out = rejected.assign(row_bytes=pd.Series(None, index=rejected.index, dtype=object))
    if out.empty:
        return out
    data, reason = out["row_data"].astype(str), out["reason"].astype(str)
    nul = data.str.contains("\\u0000", regex=False) | reason.str.contains("\x00", regex=False)
    for index in out.index[nul.to_numpy()]:
        exact = data[index]
        out.at[index, "row_data"] = json.dumps(_shown(json.loads(exact)), ensure_ascii=False)
        out.at[index, "reason"] = reason[index].replace("\x00", NUL_SHOWN)
        out.at[index, "row_bytes"] = "\\x" + exact.encode("utf-8").hex()  # bytea hex input
    return out


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_SHOWN)
    if isinstance(value, dict):
        return {_shown(k): _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def quarantine_invalid_json(conn: psycopg.Connection, spec: EntitySpec, batch_id: int) -> dict[str, int]:
    """Rows whose JSON column does not parse (checked by PostgreSQL itself, set-based)."""
    counts: dict[str, int] = {}
    for column in (c for c in spec.columns if c.type is ColumnType.JSON):
        category = f"{column.name}: not valid JSON"
        statement = sql.SQL(
            """
            with gone as (
                delete from {stage} s where {scol} is not null and not {check} returning s.*
            )
            insert into ops.quarantine (batch_id, kind, row_number, reason, row_data)
            select {batch}, {kind}, g._row, {category} || ' ' || quote_literal(left({gcol}, 60)), to_jsonb(g) - '_row'
              from gone g
            """
        ).format(
            stage=STAGE,
            scol=sql.Identifier("s", column.name),
            gcol=sql.Identifier("g", column.name),
            check=_json_check(conn, sql.Identifier("s", column.name)),
            batch=sql.Literal(batch_id),
            kind=sql.Literal(spec.kind),
            category=sql.Literal(category),
        )
        n = conn.execute(statement).rowcount
        if n:
            counts[category] = n
    return counts


def derive_order_ids(conn: psycopg.Connection) -> None:
    """Transaction logs have no order id: derive one from user, time, amount and the occurrence index of identical
    rows in the file, so the same purchase gets the same id in every (overlapping) export."""
    conn.execute(
        sql.SQL(
            """
            with occurrence as (
                select _row, row_number() over (partition by user_id, ordered_at, amount order by _row) - 1 as n
                from {stage}
            )
            update {stage} s
               set order_id = 'tx-' || left(encode(sha256(convert_to(concat_ws('|',
                       s.user_id,
                       to_char(s.ordered_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                       s.amount::text,
                       o.n::text), 'UTF8')), 'hex'), 32)
              from occurrence o
             where o._row = s._row and s.order_id is null
            """
        ).format(stage=STAGE)
    )


def quarantine_in_file_duplicates(conn: psycopg.Connection, spec: EntitySpec, batch_id: int) -> dict[str, int]:
    """Later rows repeating an earlier row's key in the same file (the first one loads). PARTITION BY groups
    NULLs together, matching the preferences table's NULLS NOT DISTINCT."""
    category = f"{', '.join(spec.primary_key)}: duplicate key in file"
    statement = sql.SQL(
        """
        with ranked as (
            select _row, min(_row) over (partition by {key}) as first_row from {stage}
        ), gone as (
            delete from {stage} s using ranked r
             where s._row = r._row and r._row > r.first_row
            returning s.*, r.first_row
        )
        insert into ops.quarantine (batch_id, kind, row_number, reason, row_data)
        select {batch}, {kind}, g._row,
               {category} || ' ' || {key_text} || ' (first at row ' || g.first_row || ')',
               to_jsonb(g) - '_row' - 'first_row'
          from gone g
        """
    ).format(
        key=sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
        stage=STAGE,
        batch=sql.Literal(batch_id),
        kind=sql.Literal(spec.kind),
        category=sql.Literal(category),
        key_text=sql.SQL(" || ', ' || ").join(
            sql.SQL("quote_nullable({})").format(sql.Identifier("g", c)) for c in spec.primary_key
        ),
    )
    n = conn.execute(statement).rowcount
    return {category: n} if n else {}


def insert_into_raw(conn: psycopg.Connection, spec: EntitySpec, batch_id: int) -> tuple[int, int]:
    """Write the staged rows; returns (rows written, of which updates). A row whose key is already in the table
    is skipped, or, for an updatable kind, replaces it when any value differs (a re-import of the same values
    writes nothing, so it stays a duplicate)."""
    schema, table = spec.table.split(".")
    values = []
    for column in spec.columns:
        value = sql.Identifier(column.name)
        if column.type is ColumnType.JSON:
            value = sql.SQL("{}::jsonb").format(value)
        if column.default_sql is not None:
            value = sql.SQL("coalesce({}, {})").format(value, sql.SQL(column.default_sql))
        values.append(value)
    names = [sql.Identifier(c) for c in spec.names]
    on_conflict = sql.SQL("do nothing")
    if spec.updatable:
        changing = [sql.Identifier(c) for c in spec.names if c not in spec.primary_key]
        on_conflict = sql.SQL(
            "({key}) do update set ({columns}, _batch_id, _loaded_at) = ({new}, excluded._batch_id, now()) "
            "where ({old}) is distinct from ({new})"
        ).format(
            key=sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
            columns=sql.SQL(", ").join(changing),
            new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(c) for c in changing),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in changing),
        )
    statement = sql.SQL(
        """
        with written as (
            insert into {table} as t ({columns}, _batch_id) select {values}, {batch} from {stage}
            on conflict {on_conflict}
            returning xmax <> 0 as updated
        )
        select count(*), count(*) filter (where updated) from written
        """
    ).format(
        table=sql.Identifier(schema, table),
        columns=sql.SQL(", ").join(names),
        values=sql.SQL(", ").join(values),
        batch=sql.Literal(batch_id),
        stage=STAGE,
        on_conflict=on_conflict,
    )
    row = conn.execute(statement).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def staged_count(conn: psycopg.Connection) -> int:
    row = conn.execute(sql.SQL("select count(*) from {}").format(STAGE)).fetchone()
    return int(row[0]) if row else 0


def _json_check(conn: psycopg.Connection, column: sql.Composable) -> sql.Composable:
    """PostgreSQL 16+ tests input without raising; older servers get a temporary helper function."""
    if conn.info.server_version >= 160000:
        return sql.SQL("pg_input_is_valid({}, 'jsonb')").format(column)
    conn.execute(
        """
        create or replace function pg_temp.ingest_is_jsonb(value text) returns boolean language plpgsql as $$
        begin
            perform value::jsonb;
            return true;
        exception when others then
            return false;
        end $$
        """
    )
    return sql.SQL("pg_temp.ingest_is_jsonb({})").format(column)
