"""Which layer may import which (issue 12): training and the warehouse sit below serving, so neither imports
``ltvfeed.serving``; infra (servers, the stack, MLflow's locations) imports neither training nor serving; and
``ltvfeed.frames`` / ``ltvfeed.shards``, shared by all of them, import none of them.

A static scan of every import in the files (function-local and relative ones included, and
``importlib.import_module`` of a constant name), so a lazy import cannot hide an upward dependency."""

from __future__ import annotations

import ast
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
