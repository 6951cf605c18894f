"""``import_file`` and ``import_directory``: the entry points the CLI, the DAG and the simulator call."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.errors import UserError
from ltvfeed.ingest.plan import ImportPlan, plan_import
from ltvfeed.ingest.report import ImportReport, summary_lines
from ltvfeed.warehouse import RAW_ENTITIES

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def import_file(
    dsn: str,
    kind: str,
    path: Path,
    column_map: dict[str, str] | None = None,
    transaction_log: bool = False,
    *,
    chunk_rows: int | None = None,
) -> ImportReport:
    """Load one CSV/Parquet file into raw.<kind> in one transaction. Bad rows go to ops.quarantine, rows whose key
    is already loaded count as duplicates, and the same kind + content imported again changes nothing.
    Files are read ``chunk_rows`` rows at a time (default 200,000), so memory stays bounded."""
    from ltvfeed.ingest.sources import CHUNK_ROWS, content_sha256, read_header

    path = Path(path)
    plan = plan_import(kind, read_header(path), column_map, transaction_log, source=path.name)
    sha256 = content_sha256(path)
    return _load(dsn, plan, path, sha256, chunk_rows or CHUNK_ROWS)


def import_directory(dsn: str, root: Path) -> list[ImportReport]:
    """Import every ``root/<kind>/*.csv|*.parquet`` in dependency order (users, items, orders, order_items, events,
    preferences), by file name within a kind. Every header is checked first, so a file missing a required column
    stops the run before anything is loaded. Hidden files (``.name``, e.g. uploads in progress) are skipped."""
    from ltvfeed.ingest.sources import FORMATS, read_header

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such directory: {root}")
    unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in RAW_ENTITIES)
    if unknown:
        log.info("ignoring folders that are not a kind (%s): %s", ", ".join(RAW_ENTITIES), ", ".join(unknown))
    files = [
        (kind, path)
        for kind in RAW_ENTITIES
        if (root / kind).is_dir()
        for path in sorted((root / kind).iterdir(), key=lambda p: p.name)
        if path.is_file() and path.suffix.lower() in FORMATS and not path.name.startswith(".")
    ]
    for kind, path in files:
        plan_import(kind, read_header(path), source=f"{kind}/{path.name}")
    return [import_file(dsn, kind, path) for kind, path in files]


class ImportInterrupted(UserError):
    """The connection to PostgreSQL broke during an import: one line saying what was kept and that re-running
    the same command is safe (an import is one transaction, and a committed file is recognised and skipped)."""


def _load(dsn: str, plan: ImportPlan, path: Path, sha256: str, chunk_rows: int) -> ImportReport:
    import psycopg

    from ltvfeed.db import connect

    committing = False
    try:
        with connect(dsn) as conn:
            report = _load_in_transaction(conn, plan, path, sha256, chunk_rows)
            committing = True  # the block's exit commits
    except psycopg.OperationalError as exc:
        raise ImportInterrupted(_interrupted_message(path, exc, dsn, committing)) from exc
    log.info("%s", " ".join(line.strip() for line in summary_lines(report, top=0)))
    return report


def _interrupted_message(path: Path, exc: Exception, dsn: str, committing: bool) -> str:
    from ltvfeed.db import dsn_parts

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    p = dsn_parts(dsn)
    kept = (
        "the connection broke while committing, so the file is either wholly imported or not at all"
        if committing
        else "its transaction was rolled back, nothing from it was kept"
    )
    return (
        f"{path.name}: PostgreSQL at {p['host']}:{p['port']} failed during the import ({first}); "
        f"{kept}; re-running the same command is safe (files already imported are recognised and skipped)"
    )


def _load_in_transaction(
    conn: psycopg.Connection, plan: ImportPlan, path: Path, sha256: str, chunk_rows: int
) -> ImportReport:
    from ltvfeed.ingest import load
    from ltvfeed.ingest.sources import iter_chunks
    from ltvfeed.ingest.validate import validate_chunk

    spec, kind, source = plan.spec, plan.kind, str(path.absolute())
    batch_id = load.open_batch(conn, kind, source, sha256)
    if batch_id is None:
        batch_id = load.existing_batch(conn, kind, sha256)
        log.info("%s: already imported as batch %s", path.name, batch_id)
        return ImportReport(batch_id=batch_id, kind=kind, source=source, already_imported=True)
    load.create_stage(conn, spec)
    total = 0
    reasons: Counter[str] = Counter()
    for chunk in iter_chunks(path, plan.columns, chunk_rows, keep=spec.names):
        total += chunk.rows
        checked = validate_chunk(chunk.frame, spec)
        load.stage_rows(conn, spec, checked.good)
        load.quarantine_rows(conn, batch_id, kind, checked.rejected)
        reasons.update(checked.reasons)
        if chunk.malformed:
            load.quarantine_rows(conn, batch_id, kind, chunk.malformed_rejected())
            reasons.update(m.category for m in chunk.malformed)
    reasons.update(load.quarantine_invalid_json(conn, spec, batch_id))
    if plan.derive_order_id:
        load.derive_order_ids(conn)
    reasons.update(load.quarantine_in_file_duplicates(conn, spec, batch_id))
    staged = load.staged_count(conn)
    loaded, updated = load.insert_into_raw(conn, spec, batch_id)
    quarantined = total - staged
    load.close_batch(conn, batch_id, total, loaded, updated, staged - loaded, quarantined)
    return ImportReport(
        batch_id=batch_id,
        kind=kind,
        source=source,
        rows_total=total,
        rows_loaded=loaded,
        rows_updated=updated,
        rows_duplicate=staged - loaded,
        rows_quarantined=quarantined,
        reasons=dict(reasons),
        ignored_columns=plan.ignored_columns,
    )
