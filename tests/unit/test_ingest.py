"""File ingestion without a database: the specs, vectorised validation, header planning, chunked CSV and Parquet
reading and the limits on what a file may hold. Real imports into a fresh warehouse are in
tests/integration/test_ingest.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ltvfeed.errors import UserError
from ltvfeed.ingest import ImportReport
from ltvfeed.ingest.plan import parse_column_map, plan_import
from ltvfeed.ingest.report import summary_lines
from ltvfeed.ingest.sources import content_sha256, iter_chunks, read_header
from ltvfeed.ingest.spec import SPECS
from ltvfeed.ingest.validate import validate_chunk
from ltvfeed.warehouse import EVENT_TYPES, PREFERENCE_KINDS, RAW_ENTITIES


def write_csv(path: Path, rows: list[dict[str, str]] | str) -> Path:
    if isinstance(rows, str):
        path.write_text(rows)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    return path


def frame_of(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype(object)
    frame["_row"] = range(1, len(frame) + 1)
    return frame


def reasons_by_row(rejected: pd.DataFrame) -> dict[int, str]:
    return dict(zip(rejected["_row"], rejected["reason"], strict=True))


# --- specs --------------------------------------------------------------------------------------------------------


def test_specs_cover_raw_entities_in_dependency_order_with_shared_vocabularies():
    assert tuple(SPECS) == RAW_ENTITIES
    assert SPECS["events"].column("event_type").allowed == EVENT_TYPES
    assert SPECS["preferences"].column("kind").allowed == PREFERENCE_KINDS
    assert {c.name for c in SPECS["orders"].columns if c.sign != "any"} == {"amount"}
    assert SPECS["order_items"].column("quantity").sign == "positive"


# --- vectorised validation (no database) -------------------------------------------------------------------------


def test_validation_names_column_and_problem_for_each_bad_row():
    frame = frame_of(
        [
            {"order_id": "o1", "user_id": "u1", "ordered_at": "2024-01-01", "amount": "10.5"},
            {"order_id": "o2", "user_id": "u1", "ordered_at": "2024-01-02", "amount": "-5.00"},
            {"order_id": "o3", "user_id": None, "ordered_at": "2024-01-03", "amount": "1"},
            {"order_id": "o4", "user_id": "u2", "ordered_at": "yesterday", "amount": "1"},
            {"order_id": "o5", "user_id": "u2", "ordered_at": "2024-01-05", "amount": "12,50"},
            {"order_id": " ", "user_id": "u2", "ordered_at": "", "amount": "inf"},
        ]
    )
    checked = validate_chunk(frame, SPECS["orders"])
    assert list(checked.good["order_id"]) == ["o1"]
    assert reasons_by_row(checked.rejected) == {
        2: "amount: negative value -5.00",
        3: "user_id: missing required value",
        4: "ordered_at: not a valid timestamp 'yesterday'",
        5: "amount: not a number '12,50'",
        6: "order_id: missing required value; ordered_at: missing required value; amount: not a number 'inf'",
    }
    assert checked.reasons["amount: not a number"] == 2
    assert checked.reasons["ordered_at: missing required value"] == 1


def test_validation_types_values_and_keeps_the_row_as_read():
    frame = frame_of(
        [
            {"user_id": " u1 ", "signup_at": "2024-03-01T12:00:00+02:00", "country": "NA", "birth_year": "1990.0"},
            {"user_id": "u2", "signup_at": "2024-03-01", "country": None, "birth_year": "null"},
            {"user_id": "u3", "signup_at": "2024-03-01 12:00:00", "country": "DE", "birth_year": "1990.5"},
            {"user_id": "u4", "signup_at": "2024-03-01", "country": "DE", "birth_year": "99999999999"},
        ]
    )
    checked = validate_chunk(frame, SPECS["users"])
    good = checked.good.set_index("user_id")
    assert list(good.index) == ["u1", "u2"]  # text is stripped
    assert good.loc["u1", "signup_at"] == pd.Timestamp("2024-03-01 10:00", tz="UTC")
    assert good.loc["u2", "signup_at"] == pd.Timestamp("2024-03-01", tz="UTC")  # date-only, naive = UTC
    assert good.loc["u1", "country"] == "NA"  # text "NA" is a value (Namibia), not missing
    assert good.loc["u1", "birth_year"] == 1990 and pd.isna(good.loc["u2", "birth_year"])
    assert reasons_by_row(checked.rejected) == {
        3: "birth_year: not an integer '1990.5'",
        4: "birth_year: out of range 99999999999",
    }
    row_data = pd.read_json(pd.io.common.StringIO(checked.rejected["row_data"].iloc[0]), typ="series")
    assert row_data["birth_year"] == "1990.5" and row_data["signup_at"] == "2024-03-01 12:00:00"


def test_validation_allowed_values_booleans_and_signs():
    events = frame_of(
        [
            {"event_id": "e1", "event_type": "Click", "occurred_at": "2024-01-01", "dwell_seconds": "0"},
            {"event_id": "e2", "event_type": "purchase", "occurred_at": "2024-01-01", "dwell_seconds": "-1"},
        ]
    )
    checked = validate_chunk(events, SPECS["events"])
    assert list(checked.good["event_type"]) == ["click"]
    reason = reasons_by_row(checked.rejected)[2]
    assert reason.startswith("event_type: unknown value 'purchase' (allowed: click, view,")
    assert reason.endswith("; dwell_seconds: negative value -1")

    items = frame_of(
        [
            {"item_id": "i1", "category": "c", "price": "1", "in_stock": "No", "is_repeat_purchase": "1"},
            {"item_id": "i2", "category": "c", "price": "1", "in_stock": "maybe"},
        ]
    )
    checked = validate_chunk(items, SPECS["items"])
    assert checked.good["in_stock"].tolist() == [False] and checked.good["is_repeat_purchase"].tolist() == [True]
    assert reasons_by_row(checked.rejected) == {2: "in_stock: not a boolean 'maybe'"}

    lines = frame_of([{"order_id": "o1", "item_id": "i1", "quantity": "0", "unit_price": "1"}])
    assert reasons_by_row(validate_chunk(lines, SPECS["order_items"]).rejected) == {
        1: "quantity: zero or negative value 0"
    }


def test_validation_missing_columns_and_preference_target():
    prefs = frame_of(
        [
            {"user_id": "u1", "kind": "saved", "item_id": None, "category": None, "created_at": "2024-01-01"},
            {"user_id": "u1", "kind": "saved", "item_id": "i1", "category": None, "created_at": "2024-01-01"},
        ]
    )
    checked = validate_chunk(prefs, SPECS["preferences"])
    assert reasons_by_row(checked.rejected) == {1: "item_id or category: missing value"}
    # an optional column the file does not have is simply null
    users = frame_of([{"user_id": "u1", "signup_at": "2024-01-01"}])
    good = validate_chunk(users, SPECS["users"]).good
    assert len(good) == 1 and good["country"].isna().all()


# --- header planning (no database) --------------------------------------------------------------------------------


def test_plan_normalises_renames_and_lists_ignored_columns():
    plan = plan_import("orders", [" Order_ID", "buyer", "ordered_at", "Amount", "note"], {"Buyer": "user_id"})
    assert plan.columns == ("order_id", "user_id", "ordered_at", "amount", "note")
    assert plan.ignored_columns == ("note",)
    assert parse_column_map(["a=b", " c = d "]) == {"a": "b", "c": "d"}
    with pytest.raises(UserError, match="expected SRC=DST"):
        parse_column_map(["oops"])
    with pytest.raises(UserError, match="'nope' is not a column of orders"):
        plan_import("orders", ["order_id"], {"order_id": "nope"})
    with pytest.raises(UserError, match="appear more than once"):
        plan_import("users", ["user_id", "User_ID", "signup_at"])


def test_plan_rejects_missing_required_columns_naming_them_and_the_file_columns():
    with pytest.raises(UserError) as info:
        plan_import("orders", ["order_id", "customer", "amount"], source="export.csv")
    message = str(info.value)
    assert "export.csv" in message and "user_id, ordered_at" in message
    assert "the file has: order_id, customer, amount" in message and "--transaction-log" not in message
    with pytest.raises(UserError, match="--transaction-log"):
        plan_import("orders", ["customer_id", "order_date", "amount"])


def test_plan_transaction_log_preset():
    plan = plan_import("orders", ["customer_id", "order_date", "amount", "quantity"], transaction_log=True)
    assert plan.columns == ("user_id", "ordered_at", "amount", "quantity")
    assert plan.derive_order_id and plan.ignored_columns == ("quantity",)
    assert not plan.spec.column("order_id").required
    with pytest.raises(UserError, match="orders only"):
        plan_import("users", ["user_id"], transaction_log=True)


# --- reading files (no database) ----------------------------------------------------------------------------------


def test_csv_chunks_number_rows_around_malformed_rows(tmp_path):
    body = "".join(f"{i},x\n" if i % 4 else f"{i}\n" for i in range(1, 12))  # rows 4 and 8 are short
    path = write_csv(tmp_path / "f.csv", "\ufeffa;b\n".replace(";", ",") + body + "12,x,extra\n")
    assert read_header(path) == ["a", "b"]
    chunks = list(iter_chunks(path, ("a", "b"), chunk_rows=3))
    assert len(chunks) > 2
    good = pd.concat([c.frame for c in chunks])
    assert good["_row"].tolist() == [int(a) for a in good["a"]]  # the row number is the value in column a
    malformed = {m.row: m.reason for c in chunks for m in c.malformed}
    assert malformed == {
        4: "row: too few fields (1, expected 2)",
        8: "row: too few fields (1, expected 2)",
        12: "row: too many fields (3, expected 2)",
    }
    assert sum(c.rows for c in chunks) == 12


def test_semicolon_csv_and_typed_parquet_read_as_text(tmp_path):
    path = write_csv(tmp_path / "f.csv", "user_id;signup_at\nu1;2024-01-01\n")
    assert read_header(path) == ["user_id", "signup_at"]
    (chunk,) = iter_chunks(path, ("user_id", "signup_at"))
    assert chunk.frame[["user_id", "signup_at"]].values.tolist() == [["u1", "2024-01-01"]]

    table = pa.table(
        {
            "at": pa.array([datetime(2024, 1, 1, 12, tzinfo=UTC)], pa.timestamp("us", tz="Europe/Berlin")),
            "amount": pa.array([Decimal("1.50")], pa.decimal128(12, 2)),
            "props": pa.array([{"arm": "b"}]),
        }
    )
    pq.write_table(table, tmp_path / "f.parquet")
    (chunk,) = iter_chunks(tmp_path / "f.parquet", ("at", "amount", "props"))
    row = chunk.frame.iloc[0]
    assert pd.Timestamp(row["at"]) == pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert row["amount"] == "1.50" and row["props"] == '{"arm": "b"}'


def test_unreadable_files_are_rejected_with_a_clear_message(tmp_path):
    latin1 = tmp_path / "users.csv"
    latin1.write_bytes("user_id,signup_at,country\nu1,2024-01-01,München\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"users\.csv: not UTF-8 text"):
        content_sha256(latin1)
    with pytest.raises(UserError, match=r"unsupported file type '\.xlsx'"):
        read_header(write_csv(tmp_path / "users.xlsx", "x"))
    with pytest.raises(UserError, match="needs a header row"):
        read_header(write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(UserError, match="not a readable Parquet file"):
        read_header(write_csv(tmp_path / "fake.parquet", "user_id\n"))


# --- hostile and unusual input (issue 10) ---------------------------------------------------------------------------


def test_money_with_more_than_two_decimals_is_rejected_not_rounded():
    frame = frame_of(
        [
            {"order_id": f"o{i}", "user_id": "u1", "ordered_at": "2024-01-01", "amount": amount}
            for i, amount in enumerate(
                ["12.345", "12.3400", "1.2345e1", "1.5e1", "7", "0.001", "-0.005", "25.979999999999997", "0.3000001"],
                start=1,
            )
        ]
    )
    checked = validate_chunk(frame, SPECS["orders"])
    # float noise (a sum computed in binary floats) is not a third decimal: it loads as 25.98
    assert checked.good["amount"].tolist() == [12.34, 15.0, 7.0, pytest.approx(25.98)]
    assert reasons_by_row(checked.rejected) == {
        1: "amount: more than two decimals '12.345'",
        3: "amount: more than two decimals '1.2345e1'",
        6: "amount: more than two decimals '0.001'",
        7: "amount: negative value -0.005; amount: more than two decimals '-0.005'",
        9: "amount: more than two decimals '0.3000001'",
    }
    assert checked.reasons["amount: more than two decimals"] == 5


def test_dates_outside_the_nanosecond_range_are_valid_timestamps():
    frame = frame_of(
        [
            {"user_id": "u1", "signup_at": "0001-01-01"},
            {"user_id": "u2", "signup_at": "9999-12-31T23:59:59Z"},
            {"user_id": "u3", "signup_at": "2024-03-01T12:00:00+02:00"},
            {"user_id": "u4", "signup_at": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
            {"user_id": "u5", "signup_at": "10000-01-01"},
        ]
    )
    checked = validate_chunk(frame, SPECS["users"])
    stamps = dict(zip(checked.good["user_id"], checked.good["signup_at"], strict=True))
    assert stamps["u1"] == datetime(1, 1, 1, tzinfo=UTC)
    assert stamps["u2"] == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert stamps["u3"] == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert set(reasons_by_row(checked.rejected)) == {4, 5}


def test_parquet_float_nan_in_a_text_column_is_missing(tmp_path):
    countries = pa.array([float("nan"), 1.0], pa.float64())  # a real NaN (pandas would have written null)
    table = pa.table({"user_id": ["u1", "u2"], "signup_at": ["2024-01-01"] * 2, "country": countries})
    pq.write_table(table, tmp_path / "users.parquet")
    (chunk,) = iter_chunks(tmp_path / "users.parquet", ("user_id", "signup_at", "country"))
    assert chunk.frame["country"].isna().tolist() == [True, False]
    good = validate_chunk(chunk.frame, SPECS["users"]).good
    assert pd.isna(good["country"].iloc[0]) and good["country"].iloc[1] == "1"


def test_header_over_the_limit_is_rejected_in_one_line_not_cut(tmp_path):
    path = tmp_path / "wide.csv"
    columns = ["user_id", "signup_at", *(f"extra_column_{i:06d}" for i in range(100_000))]
    path.write_text(",".join(columns) + "\n" + ",".join(["u1", "2024-01-01", *[""] * 100_000]) + "\n")
    assert path.stat().st_size > 1 << 20
    with pytest.raises(UserError, match=r"wide\.csv: the header line is longer than 1 MiB") as info:
        read_header(path)
    assert "\n" not in str(info.value)
    just_under = tmp_path / "under.csv"
    just_under.write_text(
        "user_id,signup_at," + ",".join(f"col{i:05d}" + "y" * 91 for i in range(10_000)) + "\nu1,2024-01-01\n"
    )
    assert len(read_header(just_under)) == 10_002
    plan = plan_import("users", read_header(just_under))
    (chunk,) = iter_chunks(just_under, plan.columns, keep=plan.spec.names)  # the 10,000 others are not converted
    assert list(chunk.frame.columns) == ["user_id", "signup_at", "_row"] and chunk.rows == 1
    report_lines = summary_lines(ImportReport(1, "users", "under.csv", ignored_columns=plan.ignored_columns))
    assert report_lines[-1].endswith("and 9,980 more") and len(report_lines[-1]) < 2_500
    huge_name = tmp_path / "huge.csv"
    huge_name.write_text("user_id,signup_at," + "x" * 200_000 + "\nu1,2024-01-01,\n")
    with pytest.raises(UserError, match=r"huge\.csv: cannot read the header line as CSV"):
        read_header(huge_name)
