"""What one file import did, as a value the CLI prints and the DAG sums."""

from __future__ import annotations

from dataclasses import dataclass, field

_SHOWN_IGNORED = 20  # a file may carry thousands of columns the kind does not read


@dataclass(frozen=True)
class ImportReport:
    """Counts describe this call: an ``already_imported`` file reports the earlier batch id and zero rows.
    rows_total = rows_loaded + rows_duplicate + rows_quarantined; ``rows_updated`` (users, items) are the loaded rows
    that replaced a changed earlier version, duplicates the rows already loaded as they are. ``reasons`` counts rows per
    "<column>: <problem>" (a row with two problems counts under both)."""

    batch_id: int
    kind: str
    source: str
    rows_total: int = 0
    rows_loaded: int = 0
    rows_updated: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    already_imported: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()


def summary_lines(report: ImportReport, top: int = 5) -> list[str]:
    """A few human lines: counts, then the most frequent quarantine reasons."""
    head = f"{report.kind} <- {report.source} (batch {report.batch_id})"
    if report.already_imported:
        return [f"{head}: already imported, nothing changed"]
    updated = f" ({report.rows_updated:,} updated)" if report.rows_updated else ""
    lines = [
        head,
        f"  rows {report.rows_total:,}: loaded {report.rows_loaded:,}{updated}, duplicate {report.rows_duplicate:,}, "
        f"quarantined {report.rows_quarantined:,}",
    ]
    if report.ignored_columns:
        shown, more = report.ignored_columns[:_SHOWN_IGNORED], len(report.ignored_columns) - _SHOWN_IGNORED
        lines.append(f"  ignored columns: {', '.join(shown)}" + (f" and {more:,} more" if more > 0 else ""))
    if report.reasons and top:
        lines.append("  top quarantine reasons:")
        ranked = sorted(report.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        lines += [f"  {count:>9,}  {reason}" for reason, count in ranked]
        lines.append(f"  details: select * from ops.quarantine where batch_id = {report.batch_id} order by row_number")
    return lines
