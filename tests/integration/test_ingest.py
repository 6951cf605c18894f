"""File ingestion into a fresh warehouse: the specs match the live schema; every kind in CSV and Parquet,
idempotency, overlaps, quarantine, transaction logs, versioned items and users, and a PostgreSQL lost mid-import.
Validation and planning without a database are in tests/unit/test_ingest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltvfeed.errors import UserError
from ltvfeed.ingest import ImportReport, import_directory, import_file
from ltvfeed.ingest.spec import SPECS, ColumnType
from ltvfeed.warehouse import RAW_ENTITIES
from tests.unit.test_ingest import write_csv

# --- small valid samples, one per kind (text as a CSV would carry it) -------------------------------------------

SAMPLES: dict[str, list[dict[str, str]]] = {
    "users": [
        {"user_id": "u1", "signup_at": "2024-01-01", "country": "NA", "birth_year": "1990", "gender": "f",
         "acquisition_partner_id": ""},
        {"user_id": "u2", "signup_at": "2024-01-02T08:30:00+02:00", "country": "DE", "birth_year": "",
         "gender": "", "acquisition_partner_id": "p1"},
    ],
    "items": [
        {"item_id": "i1", "category": "coffee", "price": "12.50", "brand": "Acme", "title": "Beans, dark",
         "in_stock": "true", "is_repeat_purchase": "yes", "created_at": "2023-12-01 10:00:00"},
        {"item_id": "i2", "category": "mugs", "price": "0", "brand": "", "title": "Mug \"XL\"",
         "in_stock": "", "is_repeat_purchase": "", "created_at": ""},
    ],
    "orders": [
        {"order_id": "o1", "user_id": "u1", "ordered_at": "2024-02-01T10:00:00Z", "amount": "25.00",
         "referral_partner_id": ""},
        {"order_id": "o2", "user_id": "u2", "ordered_at": "2024-02-02", "amount": "3.99", "referral_partner_id": "p1"},
    ],
    "order_items": [
        {"order_id": "o1", "item_id": "i1", "quantity": "2", "unit_price": "12.50"},
        {"order_id": "o2", "item_id": "i2", "quantity": "1", "unit_price": "3.99"},
    ],
    "events": [
        {"event_id": "e1", "event_type": "view", "occurred_at": "2024-02-01T09:59:00", "user_id": "u1",
         "partner_id": "", "session_id": "s1", "item_id": "i1", "dwell_seconds": "12.5", "search_query": "",
         "order_id": "", "amount": "", "properties": '{"experiment": "feed_v2", "arm": "b"}', "source": ""},
        {"event_id": "e2", "event_type": "referral_purchase", "occurred_at": "2024-02-02", "user_id": "u2",
         "partner_id": "p1", "session_id": "", "item_id": "i2", "dwell_seconds": "", "search_query": "",
         "order_id": "o2", "amount": "3.99", "properties": "", "source": "partner"},
    ],
    "preferences": [
        {"user_id": "u1", "kind": "wishlist", "item_id": "i1", "category": "", "created_at": "2024-01-05"},
        {"user_id": "u1", "kind": "profile_category", "item_id": "", "category": "coffee",
         "created_at": "2024-01-05"},
    ],
}  # fmt: skip


def write_parquet(path: Path, kind: str, rows: list[dict[str, str]]) -> Path:
    """Parquet with real column types (timestamps, decimals, booleans, ints), not just text."""
    frame = pd.DataFrame(rows).replace("", None)
    columns = {}
    for column in (c for c in SPECS[kind].columns if c.name in frame.columns):
        values = frame[column.name]
        if column.type is ColumnType.TIMESTAMP:
            columns[column.name] = pa.array(pd.to_datetime(values, format="ISO8601", utc=True))
        elif column.type is ColumnType.MONEY:
            columns[column.name] = pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(12, 2))
        elif column.type is ColumnType.INTEGER:
            columns[column.name] = pa.array(pd.to_numeric(values).astype("Int64"))
        elif column.type is ColumnType.REAL:
            columns[column.name] = pa.array(pd.to_numeric(values), pa.float64())
        elif column.type is ColumnType.BOOLEAN:
            flags = {"true": True, "yes": True, "false": False}
            columns[column.name] = pa.array([None if v is None else flags[v] for v in values], pa.bool_())
        else:
            columns[column.name] = pa.array(values, pa.string())
    pq.write_table(pa.table(columns), path)
    return path


# --- against a real warehouse ---------------------------------------------------------------------------------------


def query(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchall()


def count(dsn: str, table: str) -> int:
    return query(dsn, f"select count(*) from {table}")[0][0]


@pytest.mark.integration
def test_specs_match_the_live_raw_schema(warehouse_dsn):
    pg_types = {
        "text": ColumnType.TEXT,
        "timestamp with time zone": ColumnType.TIMESTAMP,
        "numeric": ColumnType.MONEY,
        "integer": ColumnType.INTEGER,
        "real": ColumnType.REAL,
        "boolean": ColumnType.BOOLEAN,
        "jsonb": ColumnType.JSON,
    }
    bookkeeping = {"_batch_id", "_loaded_at", "received_at"}
    for kind, spec in SPECS.items():
        rows = query(
            warehouse_dsn,
            "select column_name, data_type, is_nullable, column_default from information_schema.columns "
            "where table_schema = 'raw' and table_name = %s",
            (kind,),
        )
        live = {
            name: (pg_types[dtype], nullable == "NO", default)
            for name, dtype, nullable, default in rows
            if name not in bookkeeping
        }
        assert set(live) == set(spec.names), kind
        for column in spec.columns:
            dtype, not_null, default = live[column.name]
            assert column.type is dtype, (kind, column.name)
            assert not_null == (column.required or column.default_sql is not None), (kind, column.name)
            if column.default_sql is not None:
                assert default is not None and column.default_sql in default, (kind, column.name)


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("kind", RAW_ENTITIES)
def test_every_kind_imports_from_csv_and_parquet(warehouse_dsn, tmp_path, kind, fmt):
    rows = SAMPLES[kind]
    path = tmp_path / f"{kind}.{fmt}"
    write_csv(path, rows) if fmt == "csv" else write_parquet(path, kind, rows)
    report = import_file(warehouse_dsn, kind, path)
    assert isinstance(report, ImportReport) and not report.already_imported
    assert (report.rows_total, report.rows_loaded, report.rows_duplicate, report.rows_quarantined) == (2, 2, 0, 0)
    assert report.reasons == {}
    assert count(warehouse_dsn, f"raw.{kind}") == 2
    assert query(warehouse_dsn, f"select distinct _batch_id from raw.{kind}") == [(report.batch_id,)]
    batch = query(
        warehouse_dsn,
        "select kind, source, rows_total, rows_loaded, content_sha256 is not null from ops.import_batches",
    )
    assert batch == [(kind, str(path), 2, 2, True)]


@pytest.mark.integration
def test_imported_values_are_typed_and_defaults_applied(warehouse_dsn, tmp_path):
    for kind in RAW_ENTITIES:
        import_file(warehouse_dsn, kind, write_csv(tmp_path / f"{kind}.csv", SAMPLES[kind]))
    users = dict(query(warehouse_dsn, "select user_id, signup_at from raw.users"))
    assert users["u2"] == datetime(2024, 1, 2, 6, 30, tzinfo=UTC)
    assert query(warehouse_dsn, "select in_stock, is_repeat_purchase, title from raw.items where item_id = 'i2'") == [
        (True, False, 'Mug "XL"')
    ]
    assert query(warehouse_dsn, "select amount from raw.orders order by order_id") == [
        (Decimal("25.00"),),
        (Decimal("3.99"),),
    ]
    events = query(warehouse_dsn, "select event_id, source, properties->>'arm', dwell_seconds from raw.events")
    assert sorted(events) == [("e1", "import", "b", 12.5), ("e2", "partner", None, None)]


@pytest.mark.integration
def test_same_file_twice_changes_nothing(warehouse_dsn, tmp_path):
    path = write_csv(tmp_path / "orders.csv", [*SAMPLES["orders"], {"order_id": "bad", "amount": "-1"}])
    first = import_file(warehouse_dsn, "orders", path)
    snapshot = [count(warehouse_dsn, t) for t in ("raw.orders", "ops.import_batches", "ops.quarantine")]
    assert snapshot == [2, 1, 1]
    copy = write_csv(tmp_path / "renamed.csv", path.read_text())  # same bytes under another name
    for again in (import_file(warehouse_dsn, "orders", path), import_file(warehouse_dsn, "orders", copy)):
        assert again.already_imported and again.batch_id == first.batch_id
        assert (again.rows_total, again.rows_loaded, again.rows_quarantined) == (0, 0, 0)
    assert [count(warehouse_dsn, t) for t in ("raw.orders", "ops.import_batches", "ops.quarantine")] == snapshot


@pytest.mark.integration
def test_overlapping_second_file_loads_only_new_rows(warehouse_dsn, tmp_path):
    day = [{"order_id": f"o{i}", "user_id": "u1", "ordered_at": f"2024-01-{i:02d}", "amount": "1"} for i in (1, 2, 3)]
    later = [*day[1:], {"order_id": "o4", "user_id": "u1", "ordered_at": "2024-01-04", "amount": "1"}]
    import_file(warehouse_dsn, "orders", write_csv(tmp_path / "a.csv", day))
    report = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "b.csv", later))
    assert (report.rows_total, report.rows_loaded, report.rows_duplicate, report.rows_quarantined) == (3, 1, 2, 0)
    assert [r[0] for r in query(warehouse_dsn, "select order_id from raw.orders order by 1")] == [
        "o1",
        "o2",
        "o3",
        "o4",
    ]
    assert query(warehouse_dsn, "select rows_loaded, rows_duplicate from ops.import_batches order by batch_id") == [
        (3, 0),
        (1, 2),
    ]


BAD_ORDERS = """order_id,user_id,ordered_at,amount,referral_partner_id
o1,u1,2024-01-01,10.50,
o2,u1,2024-01-02,-5.00,
o3,,2024-01-03,3.00,
o4,u2,not-a-date,4.00,
o5,u2,2024-01-05,abc,
o1,u3,2024-01-06,7.00,
o7,u2,2024-01-07
o8,u2,2024-01-08,8.00,p1
"""


@pytest.mark.integration
def test_bad_rows_are_quarantined_with_reasons_and_good_rows_load(warehouse_dsn, tmp_path):
    report = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "orders.csv", BAD_ORDERS))
    assert (report.rows_total, report.rows_loaded, report.rows_duplicate, report.rows_quarantined) == (8, 2, 0, 6)
    assert [r[0] for r in query(warehouse_dsn, "select order_id from raw.orders order by 1")] == ["o1", "o8"]
    quarantined = query(
        warehouse_dsn, "select row_number, reason, row_data, batch_id, kind from ops.quarantine order by row_number"
    )
    assert [(r[0], r[1]) for r in quarantined] == [
        (2, "amount: negative value -5.00"),
        (3, "user_id: missing required value"),
        (4, "ordered_at: not a valid timestamp 'not-a-date'"),
        (5, "amount: not a number 'abc'"),
        (6, "order_id: duplicate key in file 'o1' (first at row 1)"),
        (7, "row: too few fields (3, expected 5)"),
    ]
    assert quarantined[0][2] == {
        "order_id": "o2",
        "user_id": "u1",
        "ordered_at": "2024-01-02",
        "amount": "-5.00",
        "referral_partner_id": None,
    }
    assert quarantined[4][2]["user_id"] == "u3"  # the duplicate, not the first o1
    assert {(r[3], r[4]) for r in quarantined} == {(report.batch_id, "orders")}
    assert report.reasons["amount: negative value"] == 1 and report.reasons["row: too few fields"] == 1


@pytest.mark.integration
def test_unknown_event_type_bad_json_and_preference_duplicates(warehouse_dsn, tmp_path):
    events = [
        {"event_id": "e1", "event_type": "click", "occurred_at": "2024-01-01", "properties": '{"a": 1}'},
        {"event_id": "e2", "event_type": "purchase", "occurred_at": "2024-01-01", "properties": ""},
        {"event_id": "e3", "event_type": "view", "occurred_at": "2024-01-01", "properties": "{oops"},
    ]
    report = import_file(warehouse_dsn, "events", write_csv(tmp_path / "events.csv", events))
    assert (report.rows_loaded, report.rows_quarantined) == (1, 2)
    reasons = dict(query(warehouse_dsn, "select row_number, reason from ops.quarantine"))
    assert reasons[2].startswith("event_type: unknown value 'purchase'")
    assert reasons[3] == "properties: not valid JSON '{oops'"

    prefs = [
        {"user_id": "u1", "kind": "profile_category", "item_id": "", "category": "tea", "created_at": "2024-01-01"},
        {"user_id": "u1", "kind": "bookmark", "item_id": "i1", "category": "", "created_at": "2024-01-01"},
        {"user_id": "u1", "kind": "profile_category", "item_id": "", "category": "tea", "created_at": "2024-01-02"},
    ]
    report = import_file(warehouse_dsn, "preferences", write_csv(tmp_path / "prefs.csv", prefs))
    assert (report.rows_loaded, report.rows_quarantined) == (1, 2)
    reasons = dict(query(warehouse_dsn, "select row_number, reason from ops.quarantine where kind = 'preferences'"))
    assert reasons[2].startswith("kind: unknown value 'bookmark'")
    assert reasons[3].startswith("user_id, kind, item_id, category: duplicate key in file 'u1', 'profile_category'")


@pytest.mark.integration
def test_missing_header_column_rejects_whole_file(warehouse_dsn, tmp_path):
    path = write_csv(tmp_path / "orders.csv", "order_id,customer,amount\no1,u1,3\n")
    with pytest.raises(UserError) as info:
        import_file(warehouse_dsn, "orders", path)
    message = str(info.value)
    assert "missing required column(s) user_id, ordered_at" in message
    assert "the file has: order_id, customer, amount" in message
    assert [count(warehouse_dsn, t) for t in ("raw.orders", "ops.import_batches", "ops.quarantine")] == [0, 0, 0]


TX_LOG_1 = """customer_id,order_date,amount,quantity
c1,2024-03-01,19.90,2
c1,2024-03-01,19.90,1
c2,2024-03-02T14:05:00,5,1
"""
# overlaps TX_LOG_1 completely (amounts written differently), adds one purchase
TX_LOG_2 = """Customer_ID;Order_Date;Amount;Quantity
c1;2024-03-01;19.9;2
c1;2024-03-01;19.90;3
c2;2024-03-02 14:05:00+00:00;5.00;1
c3;2024-03-03;7.50;1
"""


@pytest.mark.integration
def test_transaction_log_imports_as_orders_without_duplicating_overlaps(warehouse_dsn, tmp_path):
    first = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "log1.csv", TX_LOG_1), transaction_log=True)
    assert (first.rows_loaded, first.rows_quarantined) == (3, 0)  # identical rows are two purchases
    assert first.ignored_columns == ("quantity",)
    second = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "log2.csv", TX_LOG_2), transaction_log=True)
    assert (second.rows_total, second.rows_loaded, second.rows_duplicate) == (4, 1, 3)
    orders = query(warehouse_dsn, "select order_id, user_id, ordered_at, amount from raw.orders order by ordered_at")
    assert [(o[1], o[3]) for o in orders] == [
        ("c1", Decimal("19.90")),
        ("c1", Decimal("19.90")),
        ("c2", Decimal("5.00")),
        ("c3", Decimal("7.50")),
    ]
    assert orders[2][2] == datetime(2024, 3, 2, 14, 5, tzinfo=UTC)
    assert len({o[0] for o in orders}) == 4 and all(o[0].startswith("tx-") for o in orders)


@pytest.mark.integration
def test_small_chunks_give_the_same_result_in_one_transaction(warehouse_dsn, tmp_path):
    path = write_csv(tmp_path / "orders.csv", BAD_ORDERS)
    report = import_file(warehouse_dsn, "orders", path, chunk_rows=2)
    assert (report.rows_total, report.rows_loaded, report.rows_quarantined) == (8, 2, 6)
    numbers = query(warehouse_dsn, "select row_number from ops.quarantine order by 1")
    assert [n for (n,) in numbers] == [2, 3, 4, 5, 6, 7]
    assert count(warehouse_dsn, "ops.import_batches") == 1


@pytest.mark.integration
def test_import_directory_in_dependency_order_and_checks_headers_first(warehouse_dsn, tmp_path):
    root = tmp_path / "landing"
    for kind in ("orders", "users"):
        (root / kind).mkdir(parents=True)
    write_csv(root / "orders" / "2024-02.csv", SAMPLES["orders"][1:])
    write_csv(root / "orders" / "2024-01.csv", SAMPLES["orders"][:1])
    write_parquet(root / "users" / "all.parquet", "users", SAMPLES["users"])
    (root / "users" / "notes.txt").write_text("ignored")
    reports = import_directory(warehouse_dsn, root)
    assert [(r.kind, Path(r.source).name) for r in reports] == [
        ("users", "all.parquet"),
        ("orders", "2024-01.csv"),
        ("orders", "2024-02.csv"),
    ]
    assert import_directory(warehouse_dsn, root)[0].already_imported

    (root / "events").mkdir()
    write_csv(root / "events" / "broken.csv", "event_id,occurred_at\ne1,2024-01-01\n")
    write_csv(root / "users" / "more.csv", [{"user_id": "u9", "signup_at": "2024-01-01"}])
    with pytest.raises(UserError, match=r"events/broken\.csv: missing required column"):
        import_directory(warehouse_dsn, root)
    assert count(warehouse_dsn, "raw.users") == 2  # nothing from this run was loaded


@pytest.mark.integration
def test_cli_import_prints_summary(stack, warehouse_dsn, tmp_path):
    path = write_csv(tmp_path / "buyers.csv", "buyer,joined\nu1,2024-01-01\nu2,never\n")
    dbname = psycopg.conninfo.conninfo_to_dict(warehouse_dsn)["dbname"]
    env = {**os.environ, **stack.env(), "LTVFEED_WAREHOUSE_DB": dbname}
    result = subprocess.run(
        [sys.executable, "-m", "ltvfeed.cli", "import", "users", str(path), "--map", "buyer=user_id",
         "--map", "joined=signup_at"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "loaded 1, duplicate 0, quarantined 1" in result.stdout
    assert "signup_at: not a valid timestamp" in result.stdout
    assert count(warehouse_dsn, "raw.users") == 1

    missing = subprocess.run(
        [sys.executable, "-m", "ltvfeed.cli", "import", "users", str(path)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "missing required column(s) user_id, signup_at" in missing.stderr


@pytest.mark.integration
def test_nul_characters_in_bad_rows_are_quarantined_exactly_and_good_rows_load(warehouse_dsn, tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(
        b"user_id,signup_at,country\n"
        b"u1,2024-01-01,DE\n"
        b"u\x002,2024-01-01,DE\n"  # NUL in a text column
        b"u3,2024-01-\x0003,FR\n"  # NUL in a timestamp
        b"u4,2024-01-04,\x00,extra\n"  # NUL in a malformed row
        b"u5,2024-01-05,\n"
    )
    report = import_file(warehouse_dsn, "users", path)
    assert (report.rows_total, report.rows_loaded, report.rows_quarantined) == (5, 2, 3)
    assert [u for (u,) in query(warehouse_dsn, "select user_id from raw.users order by 1")] == ["u1", "u5"]
    rows = query(
        warehouse_dsn,
        "select row_number, reason, row_data, convert_from(row_bytes, 'UTF8')::json::text from ops.quarantine "
        "order by row_number",
    )
    assert [r[0] for r in rows] == [2, 3, 4]
    assert rows[0][1] == "user_id: contains a NUL character" and rows[0][2]["user_id"] == "u\u24002"
    assert rows[1][1] == "signup_at: not a valid timestamp '2024-01-\u240003'"
    exact = [json.loads(r[3]) for r in rows]
    assert exact[0]["user_id"] == "u\x002" and exact[1]["signup_at"] == "2024-01-\x0003"
    assert exact[2]["country"] == "\x00" and exact[2]["_extra_fields"] == ["extra"]
    assert query(warehouse_dsn, "select count(*) from ops.quarantine where row_bytes is null") == [(0,)]


@pytest.mark.integration
def test_wide_dates_and_cents_round_trip_through_postgres(warehouse_dsn, tmp_path):
    users = "user_id,signup_at\nu1,0001-01-01\nu2,9999-12-31T23:59:59.5Z\nu3,2024-01-01\n"
    report = import_file(warehouse_dsn, "users", write_csv(tmp_path / "users.csv", users))
    assert (report.rows_loaded, report.rows_quarantined) == (3, 0)
    stored = dict(query(warehouse_dsn, "select user_id, signup_at from raw.users"))
    assert stored["u1"] == datetime(1, 1, 1, tzinfo=UTC)
    assert stored["u2"] == datetime(9999, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    orders = "order_id,user_id,ordered_at,amount\no1,u1,2024-01-01,12.345\no2,u1,2024-01-01,12.30\n"
    report = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "orders.csv", orders))
    assert (report.rows_loaded, report.rows_quarantined) == (1, 1)
    assert report.reasons == {"amount: more than two decimals": 1}
    assert query(warehouse_dsn, "select order_id, amount from raw.orders") == [("o2", Decimal("12.30"))]


@pytest.mark.integration
def test_parquet_nan_text_is_stored_as_null(warehouse_dsn, tmp_path):
    genders = pa.array([float("nan")], pa.float64())
    table = pa.table({"user_id": ["u1"], "signup_at": ["2024-01-01"], "gender": genders})
    pq.write_table(table, tmp_path / "users.parquet")
    import_file(warehouse_dsn, "users", tmp_path / "users.parquet")
    assert query(warehouse_dsn, "select gender from raw.users") == [(None,)]


def _terminate_when_importing(dsn: str, stop: threading.Event, killed: list[int]) -> None:
    """From another connection: terminate the warehouse's backend once it holds an open import transaction."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set() and not killed:
            pids = conn.execute(
                "select pid from pg_stat_activity where datname = %s and pid <> pg_backend_pid() "
                "and xact_start is not null and backend_type = 'client backend'",
                (dbname,),
            ).fetchall()
            for (pid,) in pids:
                if conn.execute("select pg_terminate_backend(%s)", (pid,)).fetchone()[0]:
                    killed.append(pid)
            time.sleep(0.02)


@pytest.mark.integration
def test_postgres_lost_mid_import_says_so_in_one_line_and_a_rerun_loads_everything(warehouse_dsn, tmp_path):
    n = 60_000
    rows = "".join(f"o{i},u{i % 97},2024-01-01,{i % 50}.25\n" for i in range(n))
    path = write_csv(tmp_path / "orders.csv", "order_id,user_id,ordered_at,amount\n" + rows)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_terminate_when_importing, args=(warehouse_dsn, stop, killed))
    killer.start()
    try:
        with pytest.raises(UserError) as info:
            import_file(warehouse_dsn, "orders", path, chunk_rows=1_000)
    finally:
        stop.set()
        killer.join()
    assert killed, "the import finished before it could be interrupted"
    message = str(info.value)
    assert "\n" not in message and message.startswith("orders.csv: PostgreSQL at ")
    assert "rolled back, nothing from it was kept" in message and "re-running the same command is safe" in message
    assert [count(warehouse_dsn, t) for t in ("raw.orders", "ops.import_batches", "ops.quarantine")] == [0, 0, 0]
    report = import_file(warehouse_dsn, "orders", path)
    assert (report.rows_loaded, report.rows_quarantined) == (n, 0)


ITEMS_V1 = """item_id,category,price,in_stock
i1,coffee,10.00,true
i2,mugs,5.00,true
"""
ITEMS_V2 = """item_id,category,price,in_stock,recommendable
i1,coffee,12.00,false,
i2,mugs,5.00,true,
fee,fees,1.50,true,false
"""


@pytest.mark.integration
def test_changed_items_and_users_update_and_keep_every_version(warehouse_dsn, tmp_path):
    first = import_file(warehouse_dsn, "items", write_csv(tmp_path / "items1.csv", ITEMS_V1))
    second = import_file(warehouse_dsn, "items", write_csv(tmp_path / "items2.csv", ITEMS_V2))
    assert (second.rows_total, second.rows_loaded, second.rows_updated, second.rows_duplicate) == (3, 2, 1, 1)
    current = query(warehouse_dsn, "select item_id, price, in_stock, recommendable, _batch_id from raw.items")
    assert sorted(current) == [
        ("fee", Decimal("1.50"), True, False, second.batch_id),
        ("i1", Decimal("12.00"), False, True, second.batch_id),
        ("i2", Decimal("5.00"), True, True, first.batch_id),  # unchanged: the first load stays
    ]
    versions = query(warehouse_dsn, "select item_id, price, in_stock from raw.item_versions order by version_id")
    assert versions == [
        ("i1", Decimal("10.00"), True),
        ("i2", Decimal("5.00"), True),
        ("i1", Decimal("12.00"), False),
        ("fee", Decimal("1.50"), True),
    ]
    loaded = query(warehouse_dsn, "select rows_loaded, rows_updated, rows_duplicate from ops.import_batches")
    assert sorted(loaded) == [(2, 0, 0), (2, 1, 1)]
    same_again = import_file(warehouse_dsn, "items", write_csv(tmp_path / "items3.csv", ITEMS_V2 + "i2,mugs,5,t,\n"))
    assert (same_again.rows_loaded, same_again.rows_duplicate, same_again.rows_quarantined) == (0, 3, 1)
    assert count(warehouse_dsn, "raw.item_versions") == 4

    import_file(warehouse_dsn, "users", write_csv(tmp_path / "u1.csv", "user_id,signup_at,country\nu1,2024-01-01,DE\n"))
    moved = import_file(
        warehouse_dsn, "users", write_csv(tmp_path / "u2.csv", "user_id,signup_at,country\nu1,2024-01-01,FR\n")
    )
    assert (moved.rows_loaded, moved.rows_updated) == (1, 1)
    assert query(warehouse_dsn, "select country from raw.users") == [("FR",)]
    assert query(warehouse_dsn, "select country from raw.user_versions order by version_id") == [("DE",), ("FR",)]


@pytest.mark.integration
def test_orders_and_events_stay_insert_once(warehouse_dsn, tmp_path):
    import_file(warehouse_dsn, "orders", write_csv(tmp_path / "a.csv", SAMPLES["orders"]))
    changed = [{**SAMPLES["orders"][0], "amount": "99.00"}]
    report = import_file(warehouse_dsn, "orders", write_csv(tmp_path / "b.csv", changed))
    assert (report.rows_loaded, report.rows_updated, report.rows_duplicate) == (0, 0, 1)
    assert query(warehouse_dsn, "select amount from raw.orders where order_id = 'o1'") == [(Decimal("25.00"),)]
    import_file(warehouse_dsn, "events", write_csv(tmp_path / "e.csv", SAMPLES["events"]))
    changed = [{**SAMPLES["events"][0], "event_type": "click"}]
    report = import_file(warehouse_dsn, "events", write_csv(tmp_path / "e2.csv", changed))
    assert (report.rows_loaded, report.rows_duplicate) == (0, 1)


@pytest.mark.integration
def test_staging_takes_the_version_in_force_at_the_cutoff(stack, warehouse_dsn, tmp_path):
    """Three imports of i1 and u1, their load times moved to 2024-01-01, 2024-02-01 and now; each cutoff sees the
    latest version loaded before it, and a cutoff before every version sees the first one."""
    from ltvfeed.dbt_runner import run_dbt

    for n, (price, country) in enumerate([("10.00", "DE"), ("11.00", "FR"), ("12.00", "IT")]):
        items = f"item_id,category,price,recommendable\ni1,coffee,{price},{'false' if n == 2 else 'true'}\n"
        import_file(warehouse_dsn, "items", write_csv(tmp_path / f"i{n}.csv", items))
        users = f"user_id,signup_at,country\nu1,2023-06-01,{country}\n"
        import_file(warehouse_dsn, "users", write_csv(tmp_path / f"u{n}.csv", users))
    with psycopg.connect(warehouse_dsn) as conn:
        for table in ("raw.item_versions", "raw.user_versions"):
            conn.execute(
                f"update {table} set valid_from = case version_id - (select min(version_id) from {table}) "
                "when 0 then timestamptz '2024-01-01 00:00Z' when 1 then timestamptz '2024-02-01 00:00Z' "
                "else valid_from end"
            )
    dbname = psycopg.conninfo.conninfo_to_dict(warehouse_dsn)["dbname"]
    env = {**stack.env(), "LTVFEED_DBT_DBNAME": dbname}
    tomorrow = (datetime.now(UTC) + pd.Timedelta(days=1)).date().isoformat()
    seen = {}
    for as_of in ("2023-12-01", "2024-02-01", "2024-02-02", tomorrow):
        run_dbt(env, ["run", "--select", "stg_items", "stg_users", "--vars", json.dumps({"as_of": as_of})],
                target_path=tmp_path / "dbt_target")  # fmt: skip
        item = query(warehouse_dsn, "select price, recommendable from staging.stg_items")
        user = query(warehouse_dsn, "select country from staging.stg_users")
        seen[as_of] = (item, user)
    assert seen == {
        "2023-12-01": ([(Decimal("10.00"), True)], [("DE",)]),  # before every version: the first
        "2024-02-01": ([(Decimal("10.00"), True)], [("DE",)]),  # loaded at the cutoff instant: not yet in force
        "2024-02-02": ([(Decimal("11.00"), True)], [("FR",)]),
        tomorrow: ([(Decimal("12.00"), False)], [("IT",)]),
    }
