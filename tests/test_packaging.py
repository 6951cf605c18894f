"""Every Python package in the source folders is declared in pyproject.toml (a non-editable install would
silently miss an undeclared one)."""

import tomllib

from ltvfeed.settings import project_root

_FOLDERS = {
    "ltvfeed": "ltvfeed",
    "infra": "ltvfeed.infra",
    "training": "ltvfeed.training",
    "serving": "ltvfeed.serving",
}


def test_all_packages_declared():
    root = project_root()
    found = set()
    for folder, name in _FOLDERS.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((name, *rel)))
    declared = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert found == declared
