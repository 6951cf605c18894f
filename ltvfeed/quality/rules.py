"""Expectations as plain data, so the suites read like a checklist and import nothing heavy.

A :class:`Rule` names a GX Core expectation class and its arguments; ``ltvfeed.quality.gx_project`` turns it
into the real object. Values that depend on the run (freshness bounds, row-count limits) are
:func:`param` references, filled in when the checkpoint runs, so the stored suites stay the same from run to
run and Data Docs show the value each run used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Layer = Literal["raw", "marts"]
LAYERS: tuple[Layer, ...] = ("raw", "marts")


def param(name: str) -> dict[str, str]:
    """A run-time expectation parameter (GX's ``{"$PARAMETER": name}``); names are plain identifiers."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"expectation parameter names must be identifiers, got {name!r}")
    return {"$PARAMETER": name}


@dataclass(frozen=True)
class Rule:
    """One expectation: GX class name, its keyword arguments and, where the type alone does not say it, why."""

    expectation: str  # class in great_expectations.expectations, e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str | None = None  # shown in Data Docs and in failure messages

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        return str(column) if column is not None else None


@dataclass(frozen=True)
class TableSuite:
    """The expectation suite of one table. ``snapshot_column`` set: only the rows of the run's as_of are
    validated (marts keep one snapshot per as_of); unset: the whole table."""

    layer: Layer
    table: str  # schema-qualified, e.g. "raw.events"; also the suite's name
    rules: tuple[Rule, ...]
    snapshot_column: str | None = None

    @property
    def name(self) -> str:
        return self.table

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


# ------------------------------------------------------------------------------------------------ builders


def row_count(min_value: int | dict[str, str], max_value: int | dict[str, str], description: str | None = None) -> Rule:
    return Rule("ExpectTableRowCountToBeBetween", {"min_value": min_value, "max_value": max_value}, description)


def not_null(*columns: str) -> list[Rule]:
    return [Rule("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns]


def unique(column: str) -> Rule:
    return Rule("ExpectColumnValuesToBeUnique", {"column": column})


def unique_together(columns: Sequence[str], description: str | None = None) -> Rule:
    """No two rows share these columns (nulls count as equal, like PostgreSQL's NULLS NOT DISTINCT). SQL
    rather than GX's compound-uniqueness metric, which joins on ``=`` and so never sees rows holding a null."""
    cols = ", ".join(columns)
    return Rule(
        "UnexpectedRowsExpectation",
        {
            "unexpected_rows_query": f"select {cols}, count(*) as copies from {{batch}} group by {cols} "
            "having count(*) > 1"
        },
        description or f"no two rows share ({cols})",
    )


def no_rows(query: str, description: str) -> Rule:
    """Fails when ``query`` (which reads ``{batch}``) returns any row; ``description`` says what is wrong."""
    return Rule("UnexpectedRowsExpectation", {"unexpected_rows_query": query}, description)


def between(
    column: str,
    min_value: Any = None,
    max_value: Any = None,
    *,
    strict_max: bool = False,
    description: str | None = None,
) -> Rule:
    """Every non-null value in the range (nulls are left to :func:`not_null`)."""
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    if strict_max:
        kwargs["strict_max"] = True
    return Rule("ExpectColumnValuesToBeBetween", kwargs, description)


def in_set(column: str, values: Sequence[str]) -> Rule:
    return Rule("ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(values)})


def latest_between(column: str, min_value: Any, max_value: Any, description: str | None = None) -> Rule:
    """The column's maximum (e.g. the newest event) in a range: freshness."""
    return Rule(
        "ExpectColumnMaxToBeBetween", {"column": column, "min_value": min_value, "max_value": max_value}, description
    )
