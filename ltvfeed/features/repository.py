"""The Feast objects of feature_repo/ and applying them: what ``feast apply`` does, callable in-process.

The definition files are loaded by path (as private modules), so their names can never clash with other
modules, and the working directory does not matter (Feast's own loader imports relative to it). Objects are
collected the way ``feast apply`` collects them: every Feast object at a module's top level.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.errors import UserError
from ltvfeed.features.config import feature_repo_dir, feature_store, registry_lock

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from feast.repo_contents import RepoContents

    from ltvfeed.infra.stack import Stack


def _definition_files(repo: Path) -> list[Path]:
    files = sorted(p for p in repo.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts)
    if not files:
        raise UserError(f"no Feast definitions (*.py) in {repo}")
    return files


def _load(path: Path, repo: Path) -> object:
    relative = path.relative_to(repo).with_suffix("")
    name = "_ltvfeed_feature_repo." + ".".join(relative.parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_definitions(repo: Path | None = None) -> RepoContents:
    """Entities, data sources, feature views and feature services defined in the feature repo."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents

    repo = repo or feature_repo_dir()
    found: dict[type, list] = {Entity: [], DataSource: [], FeatureView: [], FeatureService: []}
    for path in _definition_files(repo):
        module = _load(path, repo)
        for attr in dir(module):
            obj = getattr(module, attr)
            for kind, objects in found.items():
                if isinstance(obj, kind) and not any(obj is o for o in objects):
                    objects.append(obj)
    for view in found[FeatureView]:
        if view.batch_source is not None and not any(view.batch_source is s for s in found[DataSource]):
            found[DataSource].append(view.batch_source)
    # Feast registers a placeholder entity for entity-less views; feast apply always includes it.
    found[Entity].append(DUMMY_ENTITY)
    return RepoContents(
        projects=[],
        data_sources=found[DataSource],
        feature_views=found[FeatureView],
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        entities=found[Entity],
        feature_services=found[FeatureService],
        permissions=[],
    )


@dataclass(frozen=True)
class ApplyResult:
    project: str
    applied: list[str]  # "kind name" of every object now registered from the repo
    deleted: list[str]  # objects of this project that are no longer defined and were removed


def _describe(obj: object) -> str:
    return f"{type(obj).__name__} {getattr(obj, 'name', '?')}"


def check_source_columns(store: FeatureStore, view: FeatureView, join_keys: list[str]) -> None:
    """Fail with a clear message when a view's source lacks a column it needs (marts not built yet, or a mart
    changed): Feast itself would only fail at materialisation or training time."""
    source = view.batch_source
    try:
        columns = {name for name, _ in source.get_table_column_names_and_types(store.config)}
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"feature view {view.name}: cannot read its source {source.name} ({first}); "
            "build the marts first (ltvfeed dbt build)"
        ) from exc
    needed = [*join_keys, source.timestamp_field, *(f.name for f in view.features)]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise UserError(f"feature view {view.name}: source {source.name} lacks column(s) {missing}")


def apply(stack: Stack, *, store: FeatureStore | None = None) -> ApplyResult:
    """Register the repo's definitions (and drop this project's objects no longer defined), and create the
    online store's tables: ``feast apply`` for this stack. Idempotent, and one at a time per project: Feast's SQL
    registry numbers feature-view versions by reading then inserting, so two concurrent applies (two DAG runs
    of a backfill, a run and the CLI) would both insert version 0 and one would fail (:func:`registry_lock`)."""
    from feast.project import Project
    from feast.repo_operations import extract_objects_for_apply_delete

    store = store or feature_store(stack)
    repo = load_definitions()
    keys_of = {e.name: [e.join_key] for e in repo.entities}
    for view in repo.feature_views:
        check_source_columns(store, view, [k for name in view.entities for k in keys_of[name]])
    repo = repo._replace(projects=[Project(name=store.project, description=store.config.project_description or "")])
    with registry_lock(stack, store.project):
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(store.project, store.registry, repo)
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    defined = [*repo.entities, *repo.data_sources, *repo.feature_views, *repo.feature_services]
    return ApplyResult(store.project, [_describe(o) for o in defined], [_describe(o) for o in to_delete])
