"""Every Python package in the source folders is declared in pyproject.toml (a non-editable install would
silently miss an undeclared one)."""

import inspect
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


def test_lazy_package_names_are_never_shadowed_by_submodules():
    """A name a package exports lazily (PEP 562) must not be one of its submodules: once that submodule is
    imported, ``from package import name`` would return the module instead of the function."""
    import importlib
    import pkgutil

    import ltvfeed.features as features

    submodules = {m.name for m in pkgutil.iter_modules(features.__path__)}
    for module, _ in set(features._HOMES.values()):
        importlib.import_module(module)
    assert not submodules & set(features.__all__)
    assert all(not inspect.ismodule(getattr(features, name)) for name in features.__all__)
