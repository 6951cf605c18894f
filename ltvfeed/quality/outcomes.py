"""What a gate run found, in our own terms: one :class:`CheckOutcome` per expectation, readable without GX."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ltvfeed.errors import UserError

_SAMPLE = 3  # example values quoted per failed expectation


@dataclass(frozen=True)
class CheckOutcome:
    suite: str
    table: str
    column: str | None  # a column name, "a, b" for several, None for table-level expectations
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_between
    success: bool
    expected: str  # the rule with the values this run used, e.g. "between 0 and 86400"
    observed: str  # e.g. "2 of 1,204 rows unexpected, e.g. 864000.0" or "observed 0"

    def line(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.expectation} ({self.expected}): {self.observed}"


@dataclass(frozen=True)
class GateResult:
    layer: str
    as_of: date
    outcomes: tuple[CheckOutcome, ...]
    data_docs_path: Path  # index.html of the Data Docs site

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> tuple[CheckOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def summary(self) -> str:
        failed = len(self.failures)
        verdict = "passed" if not failed else f"FAILED ({failed} of {len(self.outcomes)} expectations)"
        return f"data quality gate '{self.layer}' for as_of {self.as_of}: {verdict}"


class DataQualityError(UserError):
    """A gate found data that breaks an expectation: the message names each failure and the Data Docs page."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        lines = [result.summary(), *(f"  - {o.line()}" for o in result.failures), f"Data Docs: {result.data_docs_path}"]
        super().__init__("\n".join(lines))


# ------------------------------------------------------------------------------------ from GX results


def outcome_from_gx(suite: str, table: str, gx_result: Any) -> CheckOutcome:
    """One GX ExpectationValidationResult -> CheckOutcome (values as the checkpoint resolved them)."""
    config = gx_result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column") or (", ".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
    return CheckOutcome(
        suite=suite,
        table=table,
        column=column,
        expectation=config.type,
        success=bool(gx_result.success),
        expected=expected_text(config.type, kwargs, getattr(config, "description", None)),
        observed=observed_text(config.type, dict(gx_result.result or {}), _exception_message(gx_result.exception_info)),
    )


def missing_table_outcome(suite: str, table: str) -> CheckOutcome:
    return CheckOutcome(
        suite=suite,
        table=table,
        column=None,
        expectation="table_exists",
        success=False,
        expected="the table exists",
        observed="missing (for marts: has dbt built them?)",
    )


def expected_text(expectation: str, kwargs: dict[str, Any], description: str | None) -> str:
    """The rule in words: our description (if any) plus the bounds or set this run checked against."""
    values = _bounds_text(kwargs)
    if expectation.endswith("_to_not_be_null"):
        values = "not null"
    elif expectation.endswith("_to_be_unique"):
        values = "unique"
    if description:
        return f"{description} [{values}]" if values else description
    return values or str(kwargs.get("unexpected_rows_query") or "")


def _bounds_text(kwargs: dict[str, Any]) -> str:
    if "value_set" in kwargs:
        return "in {" + ", ".join(fmt(v) for v in kwargs["value_set"]) + "}"
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    lo_op = ">" if kwargs.get("strict_min") else ">="
    hi_op = "<" if kwargs.get("strict_max") else "<="
    if low is not None and high is not None:
        if low == high and lo_op == ">=" and hi_op == "<=":
            return f"= {fmt(low)}"
        return f"{lo_op} {fmt(low)} and {hi_op} {fmt(high)}"
    if low is not None:
        return f"{lo_op} {fmt(low)}"
    if high is not None:
        return f"{hi_op} {fmt(high)}"
    return ""


def observed_text(expectation: str, result: dict[str, Any], error: str | None) -> str:
    if error:
        return f"error: {error}"
    if expectation in ("unexpected_rows_expectation", "expect_table_row_count_to_be_between"):
        count = result.get("observed_value")
        noun = "offending rows" if expectation == "unexpected_rows_expectation" else "rows"
        return f"{count:,} {noun}" if isinstance(count, int) else f"observed {fmt(count)}"
    if "unexpected_count" in result and result.get("element_count") is not None:
        unexpected = result.get("unexpected_count") or 0
        text = f"{unexpected:,} of {result['element_count']:,} rows unexpected"
        sample = [v for v in (result.get("partial_unexpected_list") or []) if v is not None][:_SAMPLE]
        if unexpected and sample:
            text += ", e.g. " + ", ".join(fmt(v) for v in sample)
        return text
    if "observed_value" in result:
        return f"observed {fmt(result['observed_value'])}"
    return "no result"


def _exception_message(info: Any) -> str | None:
    """GX reports errors either flat or keyed by metric; return the first message raised."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "raised an exception")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "raised an exception")
    return None


def fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float | Decimal):
        return f"{value:g}"
    return str(value)
