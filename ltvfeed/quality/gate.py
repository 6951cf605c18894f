"""The data-quality gate: validate one layer for one as_of and fail loudly, naming what is wrong.

Airflow tasks call :func:`run_gate` between ingestion and dbt (``raw``) and after dbt (``marts``); the raised
:class:`DataQualityError` fails the task, so nothing downstream runs on bad data.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from pathlib import Path

from ltvfeed.db import check_server, connect, sqlalchemy_url
from ltvfeed.errors import UserError
from ltvfeed.quality.config import GateConfig, marts_parameters, raw_parameters
from ltvfeed.quality.mart_suites import mart_suites
from ltvfeed.quality.outcomes import DataQualityError, GateResult, missing_table_outcome, outcome_from_gx
from ltvfeed.quality.raw_suites import raw_suites
from ltvfeed.quality.rules import LAYERS, Layer, TableSuite
from ltvfeed.warehouse.extent import data_end, known_entities, raw_entities_with_rows


def run_gate(
    dsn: str,
    layer: Layer,
    as_of: date,
    data_docs_dir: Path,
    *,
    config: GateConfig | None = None,
    tables: Collection[str] | None = None,
) -> GateResult:
    """Validate ``layer`` ("raw" or "marts") of the warehouse at ``dsn`` for ``as_of``; only the suites of
    ``tables`` when given (a snapshot built for some marts only, see :mod:`ltvfeed.warehouse.snapshots`).

    ``data_docs_dir`` is the GX project root (``settings.quality_dir``); Data Docs are (re)built under it on
    every call, pass or fail, at ``data_docs_dir/data_docs/index.html``. Returns the result when every
    expectation holds, raises :class:`DataQualityError` (a UserError) naming each failure otherwise.
    """
    from ltvfeed.quality.gx_project import docs_index, locked_project, run_checkpoint

    if layer not in LAYERS:
        raise UserError(f"unknown layer {layer!r}; choose one of: {', '.join(LAYERS)}")
    config = config or GateConfig()
    check_server(dsn)
    suites = [s for s in _suites(dsn, layer, config) if tables is None or s.table in tables]
    if not suites:
        raise UserError(f"no {layer} expectation suite checks any of {', '.join(sorted(tables or ()))}")
    existing = _existing_tables(dsn, [s.table for s in suites])
    present = [s for s in suites if s.table in existing]
    parameters = _parameters(dsn, layer, as_of, config)

    with locked_project(data_docs_dir, sqlalchemy_url(dsn)) as context:
        results = run_checkpoint(context, layer, present, as_of, parameters)

    outcomes = [missing_table_outcome(s.name, s.table) for s in suites if s.table not in existing]
    for suite in present:
        outcomes.extend(outcome_from_gx(suite.name, suite.table, r) for r in results.get(suite.name, []))
    result = GateResult(layer=layer, as_of=as_of, outcomes=tuple(outcomes), data_docs_path=docs_index(data_docs_dir))
    if not result.success:
        raise DataQualityError(result)
    return result


def default_as_of(dsn: str, layer: Layer) -> date:
    """For runs by hand: raw is checked as of today (is data still arriving?); marts as of the day after the
    latest raw event or order, the cutoff ``ltvfeed dbt build`` uses when given none."""
    if layer == "raw":
        return datetime.now(UTC).date()
    return data_end(dsn) or datetime.now(UTC).date()


def _suites(dsn: str, layer: Layer, config: GateConfig) -> list[TableSuite]:
    if layer == "marts":
        return mart_suites(config.max_rows)
    return raw_suites(config, raw_entities_with_rows(dsn))


def _existing_tables(dsn: str, tables: list[str]) -> set[str]:
    with connect(dsn) as conn:
        return {t for t in tables if conn.execute("select to_regclass(%s) is not null", (t,)).fetchone()[0]}


def _parameters(dsn: str, layer: Layer, as_of: date, config: GateConfig) -> dict[str, object]:
    if layer == "raw":
        return raw_parameters(as_of, datetime.now(UTC).date(), config)
    customers, items = known_entities(dsn)
    return marts_parameters(as_of, customers, items)
