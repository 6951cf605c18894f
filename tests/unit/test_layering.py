"""Which layer may import which (issue 12): training and the warehouse sit below serving, so neither imports
``ltvfeed.serving``; infra (servers, the stack, MLflow's locations) imports neither training nor serving; and
``ltvfeed.frames`` / ``ltvfeed.shards``, shared by all of them, import none of them.

A static scan of every import in the files (function-local and relative ones included, and
``importlib.import_module`` of a constant name), so a lazy import cannot hide an upward dependency."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltvfeed.settings import project_root

# the top-level folders and the package each one is imported as (pyproject.toml's package-dir)
_PACKAGE_DIR = tomllib.loads((project_root() / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
PACKAGES = {folder: package for package, folder in _PACKAGE_DIR.items()}

# path from the project root (a folder or one file) -> packages its modules must not import
FORBIDDEN = {
    "training": ("ltvfeed.serving",),
    "ltvfeed/warehouse": ("ltvfeed.serving", "ltvfeed.training"),
    "infra": ("ltvfeed.training", "ltvfeed.serving"),
    "ltvfeed/frames": ("ltvfeed.serving", "ltvfeed.training", "ltvfeed.warehouse", "ltvfeed.infra"),
    "ltvfeed/shards.py": ("ltvfeed.serving", "ltvfeed.training", "ltvfeed.warehouse", "ltvfeed.infra"),
}


def module_name(path: Path, root: Path) -> str:
    """The dotted name ``path`` is imported as (``training/propensity/data.py`` -> ltvfeed.training.propensity.data)."""
    folder, *rest = path.relative_to(root).with_suffix("").parts
    parts = [*PACKAGES[folder].split("."), *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, ``module`` being its own dotted name."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_scan_sees_every_kind_of_import():
    source = (
        "import ltvfeed.serving.api\n"
        "def f():\n"
        "    from ltvfeed.serving import scoring\n"
        "    from ..serving.feed import Feed\n"
        "    importlib.import_module('ltvfeed.serving.config')\n"
    )
    names = {name for _, name in imported(source, "ltvfeed.training.propensity")}
    assert {"ltvfeed.serving.api", "ltvfeed.serving.scoring", "ltvfeed.serving.feed", "ltvfeed.serving.config"} <= names
    assert module_name(Path("/r/training/propensity/data.py"), Path("/r")) == "ltvfeed.training.propensity.data"
    assert module_name(Path("/r/ltvfeed/frames/__init__.py"), Path("/r")) == "ltvfeed.frames"


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_no_upward_imports(where):
    root = project_root()
    target = root / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, f"nothing to scan under {where}"
    found = [
        f"{path.relative_to(root)}:{line}: {name}"
        for path in files
        for line, name in imported(path.read_text(), module_name(path, root), path.name == "__init__.py")
        if any(within(name, package) for package in FORBIDDEN[where])
    ]
    assert not found, f"{where} must not import {', '.join(FORBIDDEN[where])}:\n" + "\n".join(found)


# --- SQL on the warehouse's schemas, and parsing of cutoffs, each in one place (issue 12) ---------------------

SQL_ROOTS = ("ltvfeed", "training", "serving", "infra", "dags")
WAREHOUSE = "ltvfeed/warehouse/"
# SQL naming raw.* / marts.* (a statement's table, or a qualified name written into an f-string)
SQL_ON_WAREHOUSE = re.compile(r"\b(from|join|into|update|table|copy)\s+(marts|raw)\.\w", re.IGNORECASE)
QUALIFIED_TABLE = re.compile(r"(marts|raw)\.\w+")
# The landing edge: what *writes* the raw layer from outside (files, the collector, the feed API's exposure log)
# is where raw data comes from, not a read of the warehouse. Each entry must still hold SQL on raw.*.
LANDING_WRITERS = {
    "ltvfeed/collector/writer.py": "the collector's inserts of partner events / orders into raw.*",
    "ltvfeed/experiments/exposures.py": "the exposure log's batched insert into raw.exposures (served feeds)",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of ``tree``'s module, classes and functions (prose, not SQL)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def table_constants(tree: ast.AST) -> dict[str, str]:
    """Module-level ``NAME = "marts.x"`` / ``"raw.x"`` assignments: table names that f-strings interpolate."""
    out = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if isinstance(value, str) and QUALIFIED_TABLE.fullmatch(value):
                out |= {t.id: value for t in targets if isinstance(t, ast.Name)}
    return out


def _render(node: ast.JoinedStr, tables: dict[str, str]) -> str:
    """An f-string's text, a known table constant in place of its name (``{PREDICTIONS_TABLE}``), else ``{}``."""
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        else:
            inner = value.value if isinstance(value, ast.FormattedValue) else None
            name = inner.id if isinstance(inner, ast.Name) else inner.attr if isinstance(inner, ast.Attribute) else ""
            parts.append(tables.get(name, "{}"))
    return "".join(parts)


def warehouse_sql(source: str, tables: dict[str, str] | None = None) -> Iterator[tuple[int, str]]:
    """(line, text) of every string in ``source`` (docstrings aside) that issues SQL on raw.* / marts.*;
    ``tables``: table-name constants of other modules, besides ``source``'s own."""
    tree = ast.parse(source)
    known = {**(tables or {}), **table_constants(tree)}
    skip = _docstrings(tree)
    inside = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = _render(node, known)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip | inside:
            text = node.value
        else:
            continue
        if SQL_ON_WAREHOUSE.search(text):
            yield node.lineno, " ".join(text.split())[:100]


def _sources() -> Iterator[tuple[str, str]]:
    root = project_root()
    for folder in SQL_ROOTS:
        for path in sorted((root / folder).rglob("*.py")):
            yield path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")


def test_the_sql_scan_sees_statements_and_interpolated_table_names():
    source = (
        '"""Docstring: reads from marts.user_features."""\n'
        'TABLE = "marts.user_ltv_predictions"\n'
        'a = "select 1 from raw.orders"\n'
        'b = f"delete from {TABLE} where as_of = %s"\n'
        'c = f"copy {other} from stdin"\n'
        'd = f"select * from {USER_MART} join x"\n'
        'e = "marts.user_features"\n'
    )
    lines = [line for line, _ in warehouse_sql(source, {"USER_MART": "marts.user_features"})]
    assert lines == [3, 4, 6]


def test_no_sql_on_raw_or_marts_outside_the_warehouse_package():
    sources = list(_sources())
    tables = {k: v for _, source in sources for k, v in table_constants(ast.parse(source)).items()}
    found, landing = [], set()
    for path, source in sources:
        if path.startswith(WAREHOUSE):
            continue
        hits = [f"{path}:{line}: {text}" for line, text in warehouse_sql(source, tables)]
        if path in LANDING_WRITERS:
            landing |= {path} if hits else set()
        else:
            found += hits
    assert not found, "SQL on raw.*/marts.* belongs in ltvfeed/warehouse/ (frames in, frames out):\n" + "\n".join(found)
    assert landing == set(LANDING_WRITERS), f"stale LANDING_WRITERS entries: {set(LANDING_WRITERS) - landing}"


# Parsing text into a date / datetime. A cutoff (as_of) is parsed by ltvfeed.cutoff.parse_as_of only; every other
# parse site is listed here with what it parses, so a new one gets a look.
CUTOFF_RULE = "ltvfeed/cutoff.py"
OTHER_DATE_PARSES = {
    "ltvfeed/ingest/validate.py": "event / order timestamps of imported files",
    "ltvfeed/orchestration/backfill_metadata.py": "Airflow metadata timestamps SQLite returns as text",
    "ltvfeed/simulator/config.py": "--end-date of the simulated shop (its last day of data, not a cutoff)",
    "serving/feed_service.py": "a generation's generated_at timestamp",
}


def date_parses(source: str) -> Iterator[tuple[int, str]]:
    """(line, call) of every ``fromisoformat`` / ``strptime`` call in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("fromisoformat", "strptime")
        ):
            yield node.lineno, ast.unparse(node)[:100]


def test_cutoffs_are_parsed_by_the_cutoff_rule_only():
    found, seen = [], set()
    for path, source in _sources():
        hits = [] if path == CUTOFF_RULE else [(line, call) for line, call in date_parses(source)]
        cutoffs = [f"{path}:{line}: {call}" for line, call in hits if re.search(r"as_of|cutoff", call)]
        if path in OTHER_DATE_PARSES:
            seen |= {path} if hits else set()
            found += cutoffs
        else:
            found += [f"{path}:{line}: {call}" for line, call in hits]
    assert not found, "parse as_of / cutoffs with ltvfeed.cutoff.parse_as_of:\n" + "\n".join(found)
    assert seen == set(OTHER_DATE_PARSES), f"stale OTHER_DATE_PARSES entries: {set(OTHER_DATE_PARSES) - seen}"
