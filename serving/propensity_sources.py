"""Where feed generation gets P(purchase) and the embeddings for retrieval from.

- ``registry`` (the default, for production): the ``purchase_propensity`` model holding the ``champion`` alias in
  the MLflow registry, through ``ltvfeed.training.propensity.load_propensity``. Required: without a champion the
  generation stops with a message saying how to train one; there is no silent fallback to a weaker model.
- ``category_affinity`` (cold start, chosen explicitly): P(purchase) = the user's share of interest in the item's
  category from ``marts.user_category_propensity`` (:class:`CategoryAffinityPropensity`). A real, simple model
  for a shop that has no trained propensity model yet, e.g. on its first day.

A source turns the catalogue frame into a :class:`Catalogue` (with the model's item embeddings, when it has
them), maps user ids to the model's user rows (-1 = a user the model has not seen: a cold user), gives user
embeddings for the warm ones, and the propensity callable in catalogue-row terms (:mod:`.propensity`).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue, UserBatch
from ltvfeed.frames.propensity import CategoryAffinityPropensity, Propensity

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

PROPENSITY_MODEL = "purchase_propensity"
REGISTRY, CATEGORY_AFFINITY = "registry", "category_affinity"
PROPENSITY_SOURCES = (REGISTRY, CATEGORY_AFFINITY)
NO_CHAMPION = f"no {PROPENSITY_MODEL} champion registered: run `ltvfeed propensity train` first"


class PropensitySource(Protocol):
    name: str

    def model_versions(self) -> dict[str, str]: ...

    def catalogue(self, items: pd.DataFrame) -> Catalogue: ...

    def index_users(self, user_ids: np.ndarray) -> np.ndarray: ...

    def user_embeddings(self, user_index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None: ...

    def propensity(self, catalogue: Catalogue, batch: UserBatch) -> Propensity: ...


def check_source(name: str) -> str:
    if name not in PROPENSITY_SOURCES:
        raise UserError(f"propensity source must be one of {', '.join(PROPENSITY_SOURCES)}, got {name!r}")
    return name


class CategoryAffinitySource:
    """Cold-start source: no embeddings, P(purchase) from each batch's own category-affinity rows."""

    name = CATEGORY_AFFINITY

    def model_versions(self) -> dict[str, str]:
        return {PROPENSITY_MODEL: "category_affinity (marts.user_category_propensity)"}

    def catalogue(self, items: pd.DataFrame) -> Catalogue:
        return Catalogue.from_frame(items)

    def index_users(self, user_ids: np.ndarray) -> np.ndarray:
        return np.arange(len(user_ids), dtype=np.int64)  # rows of the batch's own affinity matrix

    def user_embeddings(self, user_index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def propensity(self, catalogue: Catalogue, batch: UserBatch) -> Propensity:
        affinity = batch.category_affinity
        if affinity is None:
            affinity = np.zeros((len(batch), catalogue.n_categories))
        return CategoryAffinityPropensity(affinity, catalogue)


def _array(value: Any, name: str) -> np.ndarray | None:
    """A model attribute (array, tensor or method returning one) as a float32 numpy array, None if absent."""
    if value is None:
        return None
    if callable(value) and not hasattr(value, "shape"):
        value = value()
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 2:
        raise UserError(f"the propensity model's {name} must be a 2-d matrix, got shape {arr.shape}")
    return arr


class _CatalogueRows:
    """The model called in catalogue-row terms when it offers no ``for_catalogue``: catalogue rows are mapped
    to the model's item rows; items the model has never seen get P = 0 (it knows nothing about them)."""

    def __init__(self, scorer: Any, item_rows: np.ndarray) -> None:
        self._scorer = scorer
        self._rows = item_rows
        self._known = item_rows >= 0

    def __call__(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        rows = self._rows[item_idx]
        known = self._known[item_idx]
        p = np.asarray(self._scorer(user_idx, np.where(known, rows, 0)), dtype=np.float64)
        return np.where(known, p, 0.0)


class ScorerSource:
    """A trained propensity scorer (the contract of ``ltvfeed.training.propensity``): ``user_index(ids)`` (-1 =
    cold user), ``item_index(ids)``, ``user_embeddings``, ``item_embeddings``, ``__call__(user_idx[B],
    item_idx[B, K])`` in its own vocabularies; used when present: ``for_catalogue(catalogue)`` (a callable over
    catalogue rows, whose ``item_embeddings`` are aligned with the catalogue) and ``unknown_user_embedding``
    (the vector cold users are scored with, so that they get embedding retrieval too)."""

    name = REGISTRY

    def __init__(self, scorer: Any, version: str, model_name: str = PROPENSITY_MODEL) -> None:
        self.scorer = scorer
        self.version = str(version)
        self.model_name = model_name
        self._user_embeddings = _array(getattr(scorer, "user_embeddings", None), "user_embeddings")
        self._item_embeddings = _array(getattr(scorer, "item_embeddings", None), "item_embeddings")
        if (self._user_embeddings is None) != (self._item_embeddings is None) or (
            self._user_embeddings is not None and self._user_embeddings.shape[1] != self._item_embeddings.shape[1]
        ):
            raise UserError("the propensity model must give user and item embeddings of the same dimension, or none")
        unknown = getattr(scorer, "unknown_user_embedding", None)
        self._unknown_user = None if unknown is None or self._user_embeddings is None else np.asarray(unknown)
        self._catalogue: Catalogue | None = None
        self._propensity: Propensity | None = None

    def model_versions(self) -> dict[str, str]:
        return {self.model_name: self.version}

    def catalogue(self, items: pd.DataFrame) -> Catalogue:
        """The catalogue with item embeddings in the model's space (for retrieval and similarity)."""
        for_catalogue = getattr(self.scorer, "for_catalogue", None)
        if callable(for_catalogue):
            propensity = for_catalogue(Catalogue.from_frame(items))
            aligned = _array(getattr(propensity, "item_embeddings", None), "item_embeddings of for_catalogue")
            embeddings = aligned if aligned is not None and len(aligned) == len(items) else self._mapped(items)
        else:
            propensity = _CatalogueRows(self.scorer, self._item_rows(items))
            embeddings = self._mapped(items)
        # same frame, same rows: the propensity callable indexes this catalogue exactly as the one it was made for
        self._catalogue = Catalogue.from_frame(items, embeddings=embeddings)
        self._propensity = propensity
        return self._catalogue

    def _item_rows(self, items: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.scorer.item_index(items["item_id"].to_numpy()), dtype=np.int64)

    def _mapped(self, items: pd.DataFrame) -> np.ndarray | None:
        """Model item embeddings in catalogue order; items unknown to the model get a zero vector (never
        retrieved by embedding, similar to nothing)."""
        if self._item_embeddings is None:
            return None
        rows = self._item_rows(items)
        embeddings = np.zeros((len(items), self._item_embeddings.shape[1]), dtype=np.float32)
        embeddings[rows >= 0] = self._item_embeddings[rows[rows >= 0]]
        return embeddings

    def index_users(self, user_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.scorer.user_index(user_ids), dtype=np.int64)

    def user_embeddings(self, user_index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(embeddings [B, d], has_embedding [B]): cold users (-1) get the model's unknown-user vector when it
        has one, else no embedding (they are then ranked without embedding retrieval)."""
        if self._user_embeddings is None:
            return None
        warm = user_index >= 0
        embeddings = np.zeros((len(user_index), self._user_embeddings.shape[1]), dtype=np.float32)
        embeddings[warm] = self._user_embeddings[user_index[warm]]
        if self._unknown_user is None:
            return embeddings, warm
        embeddings[~warm] = self._unknown_user
        return embeddings, np.ones(len(user_index), dtype=bool)

    def propensity(self, catalogue: Catalogue, batch: UserBatch) -> Propensity:
        if self._propensity is None or catalogue is not self._catalogue:
            raise UserError("build the catalogue with this source's catalogue() first (it maps the model's items)")
        return self._propensity


def registry_source(stack: Stack, as_of: date | None = None, expected_version: str | None = None) -> ScorerSource:
    """The ``champion`` purchase-propensity model, over the users and items of snapshot ``as_of`` when the loader
    can rebuild its rows (so users are scored with that day's features). ``expected_version``: the version a
    generation began with; if the champion moved since, stop (one generation must be ranked by one model)."""
    from ltvfeed.training.registry import current_champion

    version = current_champion(stack, PROPENSITY_MODEL)
    if version is None:
        raise UserError(NO_CHAMPION)
    if expected_version is not None and version != expected_version:
        raise UserError(
            f"the {PROPENSITY_MODEL} champion moved from version {expected_version} to {version} during this "
            "generation; run the generation again so that all its feeds come from one model"
        )
    try:
        from ltvfeed.training.propensity import load_propensity
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("ltvfeed.training.propensity"):
            raise UserError(NO_CHAMPION) from exc
        raise
    import inspect

    if as_of is not None and "as_of" in inspect.signature(load_propensity).parameters:
        scorer = load_propensity(stack, alias="champion", as_of=as_of)
    else:
        scorer = load_propensity(stack, alias="champion")
    loaded = getattr(scorer, "version", None)
    if loaded is not None and str(loaded) != version:
        raise UserError(f"loaded {PROPENSITY_MODEL} version {loaded}, but the champion is {version}; run again")
    return ScorerSource(scorer, version)


def champion_version(stack: Stack) -> str:
    """The champion's version, or the NO_CHAMPION UserError (checked when a generation begins)."""
    from ltvfeed.training.registry import current_champion

    try:
        import ltvfeed.training.propensity  # noqa: F401  the loader must exist for a champion to be usable
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("ltvfeed.training.propensity"):
            raise UserError(NO_CHAMPION) from exc
        raise
    version = current_champion(stack, PROPENSITY_MODEL)
    if version is None:
        raise UserError(NO_CHAMPION)
    return version
