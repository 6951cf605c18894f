"""Getting a simulated shop into the warehouse: raw files through the ingest (like any other source), the
hidden truth straight into ground_truth.* (only evaluation reads it, nothing upstream must depend on it)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from ltvfeed.db import connect
from ltvfeed.errors import UserError
from ltvfeed.simulator.schema import GROUND_TRUTH_SCHEMAS
from ltvfeed.simulator.shop import GROUND_TRUTH_DIR


def _read_ground_truth(out_dir: Path, kind: str) -> pd.DataFrame:
    path = Path(out_dir) / GROUND_TRUTH_DIR / f"{kind}.parquet"
    if not path.is_file():
        raise UserError(f"{path} is missing; run `ltvfeed simulate --out {out_dir}` first")
    frame = pd.read_parquet(path)
    expected = GROUND_TRUTH_SCHEMAS[kind].names
    if list(frame.columns) != expected:
        raise UserError(f"{path} has columns {list(frame.columns)}, expected {expected}")
    return frame


def _copy_frame(cursor: Any, table: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame as CSV (empty unquoted field = NULL)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S%z")
    columns = ", ".join(frame.columns)
    with cursor.copy(f"copy {table} ({columns}) from stdin with (format csv)") as copy:
        copy.write(buffer.getvalue())


def load_ground_truth(dsn: str, out_dir: Path) -> dict[str, int]:
    """Load ``OUT/ground_truth/*.parquet`` into ground_truth.future_spend / user_traits in one transaction.

    Idempotent: future spend rows with the same ``observed_until`` and traits of the same users are replaced.
    Returns rows loaded per table.
    """
    future = _read_ground_truth(out_dir, "future_spend")
    traits = _read_ground_truth(out_dir, "user_traits")
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "delete from ground_truth.future_spend where observed_until = any(%s)",
            ([ts.to_pydatetime() for ts in future["observed_until"].drop_duplicates()],),
        )
        _copy_frame(cur, "ground_truth.future_spend", future)
        cur.execute(
            "create temporary table simulated_traits (like ground_truth.user_traits including defaults) on commit drop"
        )
        _copy_frame(cur, "simulated_traits", traits)
        cur.execute("delete from ground_truth.user_traits t using simulated_traits s where t.user_id = s.user_id")
        cur.execute("insert into ground_truth.user_traits select * from simulated_traits")
    return {"future_spend": len(future), "user_traits": len(traits)}


def load_into_warehouse(warehouse_dsn: str, out_dir: Path) -> tuple[list[Any], dict[str, int]]:
    """Raw files through ``ltvfeed.ingest.import_directory`` (same path as any file drop), then ground truth."""
    try:
        from ltvfeed.ingest import import_directory
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name not in ("ltvfeed.ingest", None):
            raise  # the ingest exists but something it needs is broken: show the real error
        raise UserError(
            f"files are written to {out_dir} but cannot be loaded: the ingest module is not available ({exc})"
        ) from exc
    reports = import_directory(warehouse_dsn, Path(out_dir))
    return reports, load_ground_truth(warehouse_dsn, out_dir)
