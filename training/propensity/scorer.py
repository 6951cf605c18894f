"""``PropensityScorer``: a trained network plus the user and item rows it scores, as precomputed vectors.

Rows ("the scorer's vocabularies"):
- ``user_ids[r]`` / ``item_ids[r]`` are the users and items of one feature snapshot (``tables_as_of``), in that
  order; ``user_index(ids)`` / ``item_index(ids)`` map ids to rows, -1 for ids without a row.
- Row -1 is valid in ``__call__``: it scores an UNKNOWN user (item) with the out-of-vocabulary id embedding and
  typical (training-median) side features, so cold users always get a finite score.

Calling: ``scorer(user_idx[B], item_idx[B, K]) -> [B, K]`` probabilities, both in the SCORER's rows. Serving
indexes items by catalogue row instead; ``for_catalogue(catalogue)`` returns a callable with exactly the
signature of :mod:`ltvfeed.frames.propensity` that maps catalogue rows to the scorer's item vectors once
(items the scorer has no row for get a vector from the catalogue's own attributes). Users are passed as
``UserBatch.user_index`` = ``scorer.user_index(user_ids)`` (-1 for cold users).

Retrieval: the model's logit IS ``user_embeddings[u] . item_embeddings[i]`` (see model.py), so dot-product
retrieval over these embeddings ranks candidates exactly as the model would.

Probabilities are P(the user buys the item within the horizon): the network learns P(bought | pair) in the
training design (each bought pair against ``negatives_per_positive`` popularity-drawn items), and the item
vectors carry the shift back to the whole user x item table (``sampling_offset``, :mod:`.fit`), so that the
served combination with P(bought again) adds two probabilities of the same event. Averaged over users and items
they match the shop's purchase rate; a single pair's P is as good as the network.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ltvfeed.cutoff import parse_as_of
from ltvfeed.errors import UserError
from ltvfeed.training.propensity.data import ITEM_KEY, USER_KEY

if TYPE_CHECKING:
    from ltvfeed.frames.inputs import Catalogue
    from ltvfeed.infra.stack import Stack
    from ltvfeed.training.propensity.model import PropensityNetwork

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.pt"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
USER_VOCAB_FILE = "user_vocab.parquet"
ITEM_VOCAB_FILE = "item_vocab.parquet"
FORMAT_VERSION = 1
_BLOCK_FLOATS = 1 << 24  # floats per scoring block (64 MiB of float32): bounds memory for any B x K


def _ids(values: Any) -> pd.Index:
    if isinstance(values, str):
        raise UserError("give a sequence of ids, not one string")
    return pd.Index(np.asarray(values, dtype=object).astype(str))


def score_vectors(user_vectors: np.ndarray, item_vectors: np.ndarray, user_rows: Any, item_rows: Any) -> np.ndarray:
    """sigmoid(<user_vectors[u_b], item_vectors[i_bk]>) as float64 [B, K]; rows must be valid (no -1 here)."""
    import torch

    u = np.asarray(user_rows, dtype=np.int64)
    i = np.asarray(item_rows, dtype=np.int64)
    out = np.empty(i.shape, dtype=np.float64)
    if i.size == 0:
        return out
    users, items = torch.from_numpy(user_vectors), torch.from_numpy(item_vectors)
    step = max(1, _BLOCK_FLOATS // max(1, i.shape[1] * user_vectors.shape[1]))
    with torch.inference_mode():
        for start in range(0, len(u), step):
            stop = start + step
            uu = users[torch.from_numpy(u[start:stop])]  # [b, D]
            vv = items[torch.from_numpy(i[start:stop])]  # [b, K, D]
            logits = torch.einsum("bd,bkd->bk", uu, vv)
            out[start:stop] = torch.sigmoid(logits.double()).numpy()
    return out


def _check_rows(rows: np.ndarray, n: int, what: str) -> np.ndarray:
    if rows.size and (rows.min() < -1 or rows.max() >= n):
        raise UserError(
            f"{what} must be rows of the scorer in [-1, {n}) (-1 = unknown), got {rows.min()}..{rows.max()}"
        )
    return np.where(rows < 0, n, rows)  # the unknown row sits after the last real one


class PropensityScorer:
    """Scores (user, item) pairs with precomputed vectors; see the module docstring for the contract."""

    def __init__(
        self,
        network: PropensityNetwork,
        users: pd.DataFrame,
        items: pd.DataFrame,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        for frame, key, what in ((users, USER_KEY, "users"), (items, ITEM_KEY, "items")):
            if key not in frame.columns:
                raise UserError(f"{what} frame lacks column {key!r}")
        self.network = network.eval()
        self.users = users.reset_index(drop=True)
        self.items = items.reset_index(drop=True)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._user_rows = _ids(self.users[USER_KEY])
        self._item_rows = _ids(self.items[ITEM_KEY])
        if not (self._user_rows.is_unique and self._item_rows.is_unique):
            raise UserError("a scorer's user ids and item ids must be unique")
        self.user_ids = self._user_rows.to_numpy(dtype=object)
        self.item_ids = self._item_rows.to_numpy(dtype=object)
        # one extra row each: the unknown user / item that index -1 scores with
        self._user_vectors = np.concatenate(
            [network.user_table(self.users), network.user_table(network.unknown_user_frame())]
        )
        self._item_vectors = np.concatenate(
            [network.item_table(self.items), network.item_table(network.unknown_item_frame())]
        )

    # --- the serving contract ----------------------------------------------------------------------------

    @property
    def user_embeddings(self) -> np.ndarray:
        """[U, d] float32, row r = ``user_ids[r]``; dot with ``item_embeddings`` = the model's logit."""
        return self._user_vectors[:-1]

    @property
    def item_embeddings(self) -> np.ndarray:
        """[I, d] float32, row r = ``item_ids[r]``."""
        return self._item_vectors[:-1]

    @property
    def unknown_user_embedding(self) -> np.ndarray:
        """[d]: the vector cold users (index -1) are scored with."""
        return self._user_vectors[-1]

    @property
    def version(self) -> str | None:
        """Registered model version this scorer was loaded from (None when not loaded from the registry)."""
        return self.metadata.get("version")

    @property
    def tables_as_of(self) -> date | None:
        return parse_as_of(self.metadata.get("tables_as_of"), "tables_as_of")

    def user_index(self, ids: Any) -> np.ndarray:
        """Row of each user id, -1 for users the scorer has no row for (cold: still scored, see ``__call__``)."""
        return self._user_rows.get_indexer(_ids(ids)).astype(np.int64)

    def item_index(self, ids: Any) -> np.ndarray:
        """Row of each item id, -1 for unknown items."""
        return self._item_rows.get_indexer(_ids(ids)).astype(np.int64)

    def user_vectors_for(self, ids: Any) -> np.ndarray:
        """[n, d] embeddings of these users; cold users get :attr:`unknown_user_embedding`."""
        rows = self.user_index(ids)
        return self._user_vectors[np.where(rows < 0, len(self.user_ids), rows)]

    def __call__(self, user_idx: Any, item_idx: Any) -> np.ndarray:
        """P(buy) [B, K] for scorer rows: ``user_idx`` [B] (-1 = unknown user), ``item_idx`` [B, K] (-1 = unknown)."""
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if u.ndim != 1 or i.ndim != 2 or i.shape[0] != u.shape[0]:
            raise UserError(f"expected user_idx [B] and item_idx [B, K], got shapes {u.shape} and {i.shape}")
        u = _check_rows(u, len(self.user_ids), "user_idx")
        i = _check_rows(i, len(self.item_ids), "item_idx")
        return score_vectors(self._user_vectors, self._item_vectors, u, i)

    def score_pairs(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """P(buy) of aligned (user id, item id) pairs, [n]; unknown ids are scored as unknown."""
        u, i = self.user_index(user_ids), self.item_index(item_ids)
        if len(u) != len(i):
            raise UserError(f"got {len(u)} user ids and {len(i)} item ids; pairs must align")
        return self(u, i[:, None])[:, 0] if len(u) else np.zeros(0)

    def for_catalogue(self, catalogue: Catalogue) -> CataloguePropensity:
        """A ``propensity(user_idx[B], item_idx[B, K])`` over CATALOGUE rows (ltvfeed/frames/propensity.py's protocol),
        ``user_idx`` in this scorer's rows (-1 = cold). Catalogue items without a scorer row are scored from the
        catalogue's category, commercial score and repeat-purchase flag with the out-of-vocabulary item id."""
        rows = self.item_index(catalogue.item_ids)
        vectors = self._item_vectors[np.where(rows < 0, len(self.item_ids), rows)].copy()
        new = np.flatnonzero(rows < 0)
        if len(new):
            frame = pd.DataFrame(
                {
                    ITEM_KEY: catalogue.item_ids[new],
                    "category": catalogue.category_names[catalogue.category[new]],
                    "commercial_score": catalogue.commercial_raw[new],
                    "is_repeat_purchase": catalogue.repeat_purchase[new],
                    "in_catalog": True,
                }
            )
            absent = {c: np.nan for c in self.network.item_columns if c not in frame.columns}
            log.info("%d catalogue items are new to the scorer: scored from catalogue attributes", len(new))
            vectors[new] = self.network.item_table(frame.assign(**absent))
        return CataloguePropensity(self._user_vectors, vectors, n_new_items=len(new))

    # --- other snapshots -----------------------------------------------------------------------------------

    def with_tables(self, users: pd.DataFrame, items: pd.DataFrame, as_of: date | None = None) -> PropensityScorer:
        """The same model over other user/item rows (e.g. a newer feature snapshot)."""
        metadata = {**self.metadata, "tables_as_of": as_of.isoformat() if as_of else None}
        return PropensityScorer(self.network, users, items, metadata)

    def refresh(self, stack: Stack, as_of: date) -> PropensityScorer:
        """The same model over the feature snapshot ``as_of``, read the way training read its snapshots (same
        feature source, categories and LTV predictions table)."""
        from ltvfeed.training.propensity.config import PropensityConfig
        from ltvfeed.training.propensity.data import load_tables

        cfg = PropensityConfig.from_params(self.metadata.get("config", {}))
        tables = load_tables(stack, as_of, cfg, categories=self.network.categories)
        return self.with_tables(tables.users, tables.items, as_of)

    # --- files ---------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Directory with spec.json, weights.pt, the id vocabularies and the user/item rows (Parquet)."""
        import torch

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"format_version": FORMAT_VERSION, "network": self.network.spec(), "metadata": self.metadata}
        (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        pd.DataFrame({"id": self.network.user_vocab.to_numpy()}).to_parquet(directory / USER_VOCAB_FILE)
        pd.DataFrame({"id": self.network.item_vocab.to_numpy()}).to_parquet(directory / ITEM_VOCAB_FILE)
        self.users.to_parquet(directory / USERS_FILE)
        self.items.to_parquet(directory / ITEMS_FILE)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> PropensityScorer:
        import torch

        from ltvfeed.training.propensity.model import PropensityNetwork

        directory = Path(path)
        files = (SPEC_FILE, WEIGHTS_FILE, USERS_FILE, ITEMS_FILE, USER_VOCAB_FILE, ITEM_VOCAB_FILE)
        if not all((directory / f).is_file() for f in files):
            raise UserError(f"{directory} is not a saved propensity scorer (needs {', '.join(files)})")
        spec = json.loads((directory / SPEC_FILE).read_text())
        if spec.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{directory / SPEC_FILE}: unsupported format_version {spec.get('format_version')!r}")
        network = PropensityNetwork.from_spec(
            spec["network"],
            pd.read_parquet(directory / USER_VOCAB_FILE)["id"].astype(str).to_numpy(),
            pd.read_parquet(directory / ITEM_VOCAB_FILE)["id"].astype(str).to_numpy(),
        )
        network.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        users = pd.read_parquet(directory / USERS_FILE)
        items = pd.read_parquet(directory / ITEMS_FILE)
        return cls(network, users, items, spec.get("metadata") or {})


class CataloguePropensity:
    """ltvfeed/frames/propensity.py's callable over catalogue rows; ``item_embeddings`` are aligned with the catalogue
    (pass them as ``Catalogue(..., embeddings=...)`` for retrieval that agrees with the model)."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray, n_new_items: int = 0) -> None:
        self._user_vectors = user_vectors  # last row: unknown user
        self.item_embeddings = item_vectors
        self.n_new_items = n_new_items  # catalogue items scored from catalogue attributes only

    def __call__(self, user_idx: Any, item_idx: Any) -> np.ndarray:
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if u.ndim != 1 or i.ndim != 2 or i.shape[0] != u.shape[0]:
            raise UserError(f"expected user_idx [B] and item_idx [B, K], got shapes {u.shape} and {i.shape}")
        n_items = len(self.item_embeddings)
        if i.size and (i.min() < 0 or i.max() >= n_items):
            raise UserError(f"item_idx must be catalogue rows in [0, {n_items})")
        u = _check_rows(u, len(self._user_vectors) - 1, "user_idx")
        return score_vectors(self._user_vectors, self.item_embeddings, u, i)
