"""Reading features: point-in-time training frames from the marts, latest values from Redis.

Both read a feature service's features by their plain names (the services are defined without name clashes).
Definitions come from the store's registry cache (refreshed every cache_ttl_seconds, see feature_store.yaml):
uncached registry reads cost milliseconds each, more than the Redis read itself.
Every service of feature_repo/ is keyed by one entity (user_id or item_id), so an app reads it online with that
key alone; :func:`service_join_key` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.features.config import feature_store
from ltvfeed.features.point_in_time import historical_features

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

    from ltvfeed.infra.stack import Stack

EVENT_TIMESTAMP = "event_timestamp"
_ROW = "_ltvfeed_row"  # carries the caller's row order through Feast's join (which sorts by timestamp)


def _service(store: FeatureStore, name: str) -> FeatureService:
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name, allow_cache=True)
    except FeatureServiceNotFoundException as exc:
        known = sorted(s.name for s in store.list_feature_services())
        raise UserError(
            f"unknown feature service {name!r}; known: {known or 'none (run ltvfeed features apply)'}"
        ) from exc


def _join_keys(store: FeatureStore, service: FeatureService) -> dict[str, list[str]]:
    """view name -> its join keys, for every view of the service."""
    return {
        p.name: store.get_feature_view(p.name, allow_registry_cache=True).join_keys
        for p in service.feature_view_projections
    }


def service_join_key(store: FeatureStore, service: str) -> str:
    """The one join key every view of ``service`` is keyed by: what an online read of it needs."""
    keys = {tuple(k) for k in _join_keys(store, _service(store, service)).values()}
    if len(keys) != 1 or len(next(iter(keys))) != 1:
        raise UserError(f"feature service {service!r} is not keyed by one entity (its views use {sorted(keys)})")
    return next(iter(keys))[0]


def feature_refs(store: FeatureStore, service: str, join_key: str | None = None) -> list[str]:
    """'view:feature' references of a service, optionally only those of views keyed by ``join_key`` alone."""
    fs = _service(store, service)
    keys = _join_keys(store, fs)
    refs = [
        f"{p.name_to_use()}:{f.name}"
        for p in fs.feature_view_projections
        if join_key is None or keys[p.name] == [join_key]
        for f in p.features
    ]
    if not refs:
        raise UserError(f"feature service {service!r} has no views keyed by {join_key!r} alone")
    return refs


def training_frame(
    stack: Stack, entity_df: pd.DataFrame, service: str = "ltv_model", *, store: FeatureStore | None = None
) -> pd.DataFrame:
    """The service's features for every (entity, event_timestamp) row, point-in-time correct: each row gets the
    newest snapshot with feature_timestamp <= its event_timestamp (and within the view's TTL), else missing
    values. Extra columns (labels) are kept; rows come back in the given order. Naive timestamps and dates are
    taken as UTC (a cutoff date D means D 00:00 UTC, which gets the snapshot for as_of D)."""
    if not isinstance(entity_df, pd.DataFrame) or entity_df.empty:
        raise UserError("entity_df must be a non-empty DataFrame with the join keys and event_timestamp")
    if EVENT_TIMESTAMP not in entity_df.columns:
        raise UserError(f"entity_df lacks column {EVENT_TIMESTAMP!r}; has {list(entity_df.columns)}")
    if _ROW in entity_df.columns:
        raise UserError(f"entity_df must not have a column named {_ROW!r}")
    store = store or feature_store(stack)
    fs = _service(store, service)
    needed = sorted({k for keys in _join_keys(store, fs).values() for k in keys})
    missing = [k for k in needed if k not in entity_df.columns]
    if missing:
        raise UserError(f"entity_df lacks join key column(s) {missing} needed by feature service {service!r}")
    rows = entity_df.copy()
    try:
        rows[EVENT_TIMESTAMP] = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
    except (ValueError, TypeError) as exc:
        raise UserError(f"entity_df.{EVENT_TIMESTAMP} must hold timestamps or dates: {exc}") from exc
    if rows[EVENT_TIMESTAMP].isna().any():
        raise UserError(f"entity_df.{EVENT_TIMESTAMP} has missing values")
    keys = rows[[*needed, EVENT_TIMESTAMP]].assign(**{_ROW: range(len(rows))})
    found = historical_features(store, fs, keys).sort_values(_ROW, kind="stable")
    features = found.drop(columns=list(keys.columns)).reset_index(drop=True)
    return pd.concat([rows.iloc[found[_ROW].to_numpy()].reset_index(drop=True), features], axis=1)


class OnlineFeatures:
    """Repeated online reads of one feature service (the serving hot path). Resolving a service into feature
    references deserialises registry objects (tens of milliseconds), so it is done once per join key here;
    a read is then one Redis round trip. Build a new reader after an apply that changed the service."""

    def __init__(self, store: FeatureStore, service: str = "user_profile") -> None:
        self.store = store
        self.service = service
        self._refs: dict[str, list[str]] = {}

    @property
    def join_key(self) -> str:
        """The entity key this service is read by (see :func:`service_join_key`)."""
        return service_join_key(self.store, self.service)

    def refs(self, join_key: str) -> list[str]:
        if join_key not in self._refs:
            self._refs[join_key] = feature_refs(self.store, self.service, join_key)
        return self._refs[join_key]

    def columns(self, join_key: str, ids: Sequence[str]) -> dict[str, list]:
        """{join_key: ids, feature: values}: one value per id in the given order, None where not online."""
        if isinstance(ids, str) or not len(ids):
            raise UserError(f"give a non-empty list of {join_key} values")
        rows = [{join_key: str(i)} for i in ids]
        return self.store.get_online_features(features=self.refs(join_key), entity_rows=rows).to_dict()

    def frame(self, join_key: str, ids: Sequence[str]) -> pd.DataFrame:
        """:meth:`columns` as a DataFrame (missing numbers become NaN)."""
        return pd.DataFrame(self.columns(join_key, ids))


def online_user_features(
    stack: Stack, user_ids: Sequence[str], service: str = "user_profile", *, store: FeatureStore | None = None
) -> pd.DataFrame:
    """Latest materialised values of the service's user-keyed features, one row per id in the given order
    (missing values for unknown users). For repeated reads keep an :class:`OnlineFeatures` instead."""
    return OnlineFeatures(store or feature_store(stack), service).frame("user_id", user_ids)


def online_item_features(
    stack: Stack, item_ids: Sequence[str], service: str = "item_catalog", *, store: FeatureStore | None = None
) -> pd.DataFrame:
    """Latest materialised values of the service's item-keyed features, like :func:`online_user_features`."""
    return OnlineFeatures(store or feature_store(stack), service).frame("item_id", item_ids)
