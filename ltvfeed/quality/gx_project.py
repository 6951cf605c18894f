"""The Great Expectations project under ``settings.quality_dir``: context, data source, suites, checkpoint.

GX Core is called directly (the Airflow GX provider's pins break Airflow 3.3) and imported only inside these
functions: it takes seconds to import. The project is file-backed so validation results accumulate and Data
Docs show the history, but the suites, assets and checkpoints in it are rewritten from code on every run:
code is the only source of truth and the directory can be deleted at any time.

Runs overlap (an Airflow backfill runs up to ten cutoffs at once) while GX rewrites ``great_expectations.yml``
and its suite/checkpoint files in place: every use of the project holds an exclusive ``flock`` on
``<quality_dir>/.ltvfeed.lock`` (:func:`locked_project`), and the project settings are rewritten only when
they change. The lock covers other processes and other threads alike (``flock`` locks belong to the open file).

The warehouse URL is never written to disk: the data source's connection string is the config variable
``${ltvfeed_warehouse_url}``, supplied per context as a runtime variable.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from ltvfeed.quality.rules import Rule, TableSuite

URL_VARIABLE = "ltvfeed_warehouse_url"
SITE_NAME = "ltvfeed"
DOCS_DIR = "data_docs"
_SITES = {
    SITE_NAME: {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": f"{DOCS_DIR}/"},
        # the index lists the newest results only; older ones stay on disk, linked from nowhere
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": 500},
    }
}
_NO_PROGRESS_BARS = {"globally": False, "metric_calculations": False}  # they flood Airflow task logs


def docs_index(quality_dir: Path) -> Path:
    return quality_dir / DOCS_DIR / "index.html"


LOCK_FILE = ".ltvfeed.lock"


@contextmanager
def locked_project(quality_dir: Path, warehouse_url: str) -> Iterator[Any]:
    """The project's context, used by this process alone until the block ends (others wait their turn)."""
    quality_dir.mkdir(parents=True, exist_ok=True)
    with (quality_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield open_context(quality_dir, warehouse_url)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_context(quality_dir: Path, warehouse_url: str) -> Any:
    """A file-mode context rooted at ``quality_dir`` (created on first use) with analytics off; callers hold
    :func:`locked_project`'s lock."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # before the import: GX reads it there
    import great_expectations as gx

    quality_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(
        mode="file", context_root_dir=str(quality_dir), runtime_environment={URL_VARIABLE: warehouse_url}
    )
    variables = context.variables
    wanted = {"analytics_enabled": False, "data_docs_sites": _SITES, "progress_bars": _NO_PROGRESS_BARS}
    current = {
        "analytics_enabled": variables.analytics_enabled,
        "data_docs_sites": variables.data_docs_sites,
        "progress_bars": _plain(variables.progress_bars),
    }
    if current != wanted:
        variables.analytics_enabled = False
        variables.data_docs_sites = _SITES
        variables.progress_bars = _NO_PROGRESS_BARS
        variables.save()
    return context


def _plain(value: Any) -> Any:
    return value.to_json_dict() if hasattr(value, "to_json_dict") else value


def run_checkpoint(
    context: Any, layer: str, suites: Sequence[TableSuite], as_of: date, parameters: dict[str, Any]
) -> dict[str, list[Any]]:
    """Validate each suite's batch through one checkpoint whose action updates Data Docs; returns the GX
    expectation results by suite name. Data Docs are rebuilt even when there is nothing to validate or the
    run itself breaks, so the site always reflects the latest attempt."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    if not suites:
        context.build_data_docs(site_names=[SITE_NAME])
        return {}
    try:
        source = _data_source(context, f"warehouse_{layer}")
        definitions = []
        for suite in suites:
            batch = _add_asset(source, suite, as_of).add_batch_definition_whole_table("batch")
            stored = context.suites.add_or_update(
                gx.ExpectationSuite(name=suite.name, expectations=[_expectation(r) for r in suite.rules])
            )
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=suite.name, data=batch, suite=stored)
                )
            )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{layer}_gate",
                validation_definitions=definitions,
                actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
                result_format="SUMMARY",
            )
        )
        result = checkpoint.run(
            expectation_parameters=parameters, run_id=RunIdentifier(run_name=f"{layer} gate, as_of {as_of}")
        )
    except Exception:
        context.build_data_docs(site_names=[SITE_NAME])
        raise
    by_suite: dict[str, list[Any]] = {}
    for validation in result.run_results.values():
        by_suite.setdefault(validation.suite_name, []).extend(validation.results)
    return by_suite


def _data_source(context: Any, name: str) -> Any:
    try:
        return context.data_sources.get(name)
    except KeyError:
        return context.data_sources.add_postgres(name=name, connection_string="${" + URL_VARIABLE + "}")


def _add_asset(source: Any, suite: TableSuite, as_of: date) -> Any:
    """(Re)create the suite's asset: the table, or for a snapshot mart the run's as_of rows of it. (An asset
    read back from the project is not bound to the context and cannot validate: it is always recreated, under
    the project lock.)"""
    if any(asset.name == suite.name for asset in source.assets):
        source.delete_asset(suite.name)
    if suite.snapshot_column:
        query = f"select * from {suite.table} where {suite.snapshot_column} = date '{as_of.isoformat()}'"
        return source.add_query_asset(name=suite.name, query=query)
    return source.add_table_asset(name=suite.name, table_name=suite.table_name, schema_name=suite.schema)


def _expectation(rule: Rule) -> Any:
    import great_expectations.expectations as gxe

    kwargs = dict(rule.kwargs)
    if rule.description:
        kwargs["description"] = rule.description
    return getattr(gxe, rule.expectation)(**kwargs)
