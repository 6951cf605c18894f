"""The propensity network: a two-tower factorisation model whose score is ONE dot product.

    logit(u, i) = < user_vector(u), item_vector(i) >,  P(buy) = sigmoid(logit)

user_vector = [ tower_u(side features) + id_embedding_u | bias_u | 1 | w1 * affinity_u | w2 * log(affinity_u + e) ]
item_vector = [ tower_i(side features) + id_embedding_i | 1 | bias_i + b0 | onehot(category_i) | onehot(category_i) ]

so the dot product is the towers' interaction + user bias + item bias + a learned function of the user's
propensity for the item's category. With ``history_terms`` (the default since issue 14) both vectors carry two
more learned terms from the user's own purchases of the past year, still inside the one dot product:

    + h_share * spend_share_u[category_i]                       (share of the user's spend in the item's category)
    - h_price * (ln price_i - mean ln price paid by u)^2        (how far the item's price is from what u pays)

user_vector += [ h_share * spend_share_u | -h_price | 2 h_price m_u | -h_price m_u^2 ]   (m_u: mean ln price paid)
item_vector += [ onehot(category_i)      | l_i^2    | l_i           | 1              ]   (l_i: ln price_i)

(each price part 0 for a user without priced purchases or an item without a price). Times bought and days since
the last purchase against the user's own cycle are pair terms outside any dot product: they enter what is served
as P(bought again) (:mod:`ltvfeed.frames.history`), which the promotion gate judges together with this model.

Because the whole score is a dot product, the vectors double as the retrieval embeddings: ranking items by
user_vector . item_vector IS ranking them by the model.

Side features are encoded by :class:`~ltvfeed.training.features.FeatureEncoder` (statistics and vocabularies
saved with the weights, as in the LTV network). Id embeddings have row 0 for out-of-vocabulary ids (cold users,
new items); training hides a share of ids behind it, so it learns the typical user/item. Categorical side
features' missing/unknown rows start at zero ("no information") rather than at random values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ltvfeed.errors import UserError
from ltvfeed.training.features import FIRST_VOCAB_INDEX, FeatureEncoder
from ltvfeed.training.propensity.data import (
    ITEM_KEY,
    PRICE_PAID,
    USER_KEY,
    affinity_columns,
    spend_share_columns,
)

log = logging.getLogger(__name__)

OOV_ID = 0  # id embedding row of ids outside the vocabulary
AFFINITY_EPS = 0.01  # log(affinity + eps): a category never engaged with still has a finite, learnable weight


def _take(encoded: Any, rows: torch.Tensor) -> Any:
    """The same encoded rows' dataclass with only ``rows`` of every tensor (absent ones stay None)."""
    return replace(encoded, **{f.name: t[rows] for f in fields(encoded) if (t := getattr(encoded, f.name)) is not None})


@dataclass(frozen=True)
class EncodedUsers:
    numeric: torch.Tensor  # [n, numeric_width] float32
    categorical: torch.Tensor  # [n, n_categorical] int64
    ids: torch.Tensor  # [n] int64, OOV_ID for unknown ids
    affinity: torch.Tensor  # [n, n_categories] float32, the user's propensity per category (raw, in [0, 1])
    spend_share: torch.Tensor | None = None  # [n, n_categories] float32 (history terms only)
    price_paid: torch.Tensor | None = None  # [n] float32 mean ln price paid, NaN without (history terms only)

    def take(self, rows: torch.Tensor) -> EncodedUsers:
        return _take(self, rows)


@dataclass(frozen=True)
class EncodedItems:
    numeric: torch.Tensor
    categorical: torch.Tensor
    ids: torch.Tensor
    category: torch.Tensor  # [n] int64 index into the category vocabulary, -1 outside it
    log_price: torch.Tensor | None = None  # [n] float32 ln price, NaN without one (history terms only)

    def take(self, rows: torch.Tensor) -> EncodedItems:
        return _take(self, rows)


def _mlp(width: int, hidden: Sequence[int], out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def _side_embeddings(encoder: FeatureEncoder) -> nn.ModuleList:
    embeddings = nn.ModuleList(nn.Embedding(c.num_embeddings, c.embedding_dim) for c in encoder.categorical)
    with torch.no_grad():
        for emb in embeddings:
            emb.weight[:FIRST_VOCAB_INDEX].zero_()  # missing / out-of-vocabulary: neutral until trained
    return embeddings


def _with_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """``frame`` with absent model columns added as missing (the encoder fills them) and a warning."""
    absent = [c for c in columns if c not in frame.columns]
    if not absent:
        return frame
    log.warning("%s frame lacks %d model column(s), scored as missing: %s", what, len(absent), ", ".join(absent))
    return frame.assign(**{c: np.nan for c in absent})


class PropensityNetwork(nn.Module):
    """Towers, id embeddings and the category cross term; see the module docstring for the score."""

    def __init__(
        self,
        user_encoder: FeatureEncoder,
        item_encoder: FeatureEncoder,
        user_vocab: Sequence[str],
        item_vocab: Sequence[str],
        categories: Sequence[str],
        dim: int = 16,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
        history_terms: bool = False,
    ) -> None:
        super().__init__()
        self.user_encoder = user_encoder
        self.item_encoder = item_encoder
        self.user_vocab = pd.Index(np.asarray(user_vocab, dtype=object).astype(str))
        self.item_vocab = pd.Index(np.asarray(item_vocab, dtype=object).astype(str))
        if not (self.user_vocab.is_unique and self.item_vocab.is_unique):
            raise UserError("user and item id vocabularies must be unique")
        self.categories = tuple(str(c) for c in categories)
        self.dim = int(dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.user_side = _side_embeddings(user_encoder)
        self.item_side = _side_embeddings(item_encoder)
        user_width = user_encoder.numeric_width + sum(c.embedding_dim for c in user_encoder.categorical)
        item_width = item_encoder.numeric_width + sum(c.embedding_dim for c in item_encoder.categorical)
        self.user_tower = _mlp(user_width, self.hidden, self.dim + 1, self.dropout)
        self.item_tower = _mlp(item_width, self.hidden, self.dim + 1, self.dropout)
        self.user_id = nn.Embedding(len(self.user_vocab) + 1, self.dim)
        self.item_id = nn.Embedding(len(self.item_vocab) + 1, self.dim)
        self.user_id_bias = nn.Embedding(len(self.user_vocab) + 1, 1)
        self.item_id_bias = nn.Embedding(len(self.item_vocab) + 1, 1)
        self.cross = nn.Parameter(torch.tensor([1.0, 0.0]))
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.history_terms = bool(history_terms)
        # added to every item's bias in the serving tables (item_table), not in training: see sampling_offset()
        self.sampling_offset = 0.0
        if self.history_terms:  # (h_share, h_price): 0 at the start, the towers' score unchanged until learnt
            self.history = nn.Parameter(torch.zeros(2))
        with torch.no_grad():
            for emb in (self.user_id, self.item_id):
                emb.weight.normal_(0.0, 0.01)
            self.user_id_bias.weight.zero_()
            self.item_id_bias.weight.zero_()

    @property
    def user_columns(self) -> list[str]:
        """Columns a user frame should have (besides user_id): side features and category affinities."""
        history = [*spend_share_columns(self.categories), PRICE_PAID] if self.history_terms else []
        return list(dict.fromkeys([*self.user_encoder.columns, *affinity_columns(self.categories), *history]))

    @property
    def item_columns(self) -> list[str]:
        """Columns an item frame should have (besides item_id)."""
        return list(dict.fromkeys([*self.item_encoder.columns, "category", *(["price"] if self.history_terms else [])]))

    def unknown_user_frame(self) -> pd.DataFrame:
        """One user with no id in the vocabulary and every feature missing (typical values after encoding)."""
        return pd.DataFrame({USER_KEY: ["\x00unknown"], **{c: [np.nan] for c in self.user_columns}})

    def unknown_item_frame(self) -> pd.DataFrame:
        return pd.DataFrame({ITEM_KEY: ["\x00unknown"], **{c: [np.nan] for c in self.item_columns}})

    @property
    def vector_width(self) -> int:
        """Width of user and item vectors (the retrieval embedding dimension)."""
        return self.dim + 2 + 2 * len(self.categories) + (len(self.categories) + 3 if self.history_terms else 0)

    # --- encoding (pandas -> tensors) --------------------------------------------------------------------

    def encode_users(self, frame: pd.DataFrame) -> EncodedUsers:
        """Side features, id rows and category affinities of a user frame (``user_id`` + feature columns)."""
        if USER_KEY not in frame.columns:
            raise UserError(f"user frame lacks column {USER_KEY!r}")
        aff_cols = affinity_columns(self.categories)
        frame = _with_columns(frame, self.user_columns, "user")
        numeric, categorical = self.user_encoder.encode(frame)
        ids = self.user_vocab.get_indexer(pd.Index(frame[USER_KEY].astype(str))) + 1  # -1 -> OOV_ID
        affinity = frame[aff_cols].apply(pd.to_numeric, errors="coerce").fillna(0.0).clip(0.0, 1.0)
        ids_t = torch.from_numpy(ids.astype(np.int64))
        share = paid = None
        if self.history_terms:
            spend = frame[spend_share_columns(self.categories)].apply(pd.to_numeric, errors="coerce")
            share = torch.from_numpy(spend.fillna(0.0).clip(0.0, 1.0).to_numpy(np.float32))
            paid = torch.from_numpy(pd.to_numeric(frame[PRICE_PAID], errors="coerce").to_numpy(np.float32))
        return EncodedUsers(numeric, categorical, ids_t, torch.from_numpy(affinity.to_numpy(np.float32)), share, paid)

    def encode_items(self, frame: pd.DataFrame) -> EncodedItems:
        """Side features, id rows and category codes of an item frame (``item_id``, ``category`` + features)."""
        if ITEM_KEY not in frame.columns:
            raise UserError(f"item frame lacks column {ITEM_KEY!r}")
        frame = _with_columns(frame, self.item_columns, "item")
        numeric, categorical = self.item_encoder.encode(frame)
        ids = self.item_vocab.get_indexer(pd.Index(frame[ITEM_KEY].astype(str))) + 1
        category = pd.Index(self.categories).get_indexer(pd.Index(frame["category"].astype(str)))
        log_price = None
        if self.history_terms:
            price = pd.to_numeric(frame["price"], errors="coerce").to_numpy(np.float64)
            valid = np.isfinite(price) & (price > 0)
            log_price = torch.from_numpy(np.log(np.where(valid, price, 1.0)).astype(np.float32))
            log_price[torch.from_numpy(~valid)] = float("nan")
        return EncodedItems(
            numeric,
            categorical,
            torch.from_numpy(ids.astype(np.int64)),
            torch.from_numpy(category.astype(np.int64)),
            log_price,
        )

    # --- vectors and scores ------------------------------------------------------------------------------

    def user_vectors(self, users: EncodedUsers) -> torch.Tensor:
        parts = [users.numeric] + [emb(users.categorical[:, j]) for j, emb in enumerate(self.user_side)]
        z = self.user_tower(torch.cat(parts, dim=1))
        vec = z[:, : self.dim] + self.user_id(users.ids)
        bias = z[:, self.dim :] + self.user_id_bias(users.ids)
        ones = torch.ones_like(bias)
        aff = users.affinity
        parts = [vec, bias, ones, self.cross[0] * aff, self.cross[1] * torch.log(aff + AFFINITY_EPS)]
        if self.history_terms:
            assert users.spend_share is not None and users.price_paid is not None
            paid = users.price_paid[:, None]
            known = torch.isfinite(paid).to(vec.dtype)
            m = torch.nan_to_num(paid, nan=0.0)
            h_share, h_price = self.history[0], self.history[1]
            parts += [h_share * users.spend_share, -h_price * known, 2 * h_price * m * known, -h_price * m * m * known]
        return torch.cat(parts, dim=1)

    def item_vectors(self, items: EncodedItems) -> torch.Tensor:
        parts = [items.numeric] + [emb(items.categorical[:, j]) for j, emb in enumerate(self.item_side)]
        z = self.item_tower(torch.cat(parts, dim=1))
        vec = z[:, : self.dim] + self.item_id(items.ids)
        bias = z[:, self.dim :] + self.item_id_bias(items.ids) + self.global_bias
        ones = torch.ones_like(bias)
        onehot = torch.zeros(len(items.category), len(self.categories), dtype=vec.dtype)
        known = items.category >= 0
        onehot[known, items.category[known]] = 1.0
        parts = [vec, ones, bias, onehot, onehot]
        if self.history_terms:
            assert items.log_price is not None
            price = items.log_price[:, None]
            priced = torch.isfinite(price).to(vec.dtype)
            lp = torch.nan_to_num(price, nan=0.0)
            parts += [onehot, lp * lp * priced, lp * priced, priced]
        return torch.cat(parts, dim=1)

    def forward(self, users: EncodedUsers, items: EncodedItems) -> torch.Tensor:
        """Logits of aligned (user, item) rows."""
        return (self.user_vectors(users) * self.item_vectors(items)).sum(dim=1)

    def init_output_bias(self, positive_rate: float) -> None:
        """Start at the training set's base rate (log odds), so the first epochs learn structure, not the mean."""
        rate = min(max(positive_rate, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.global_bias.fill_(math.log(rate / (1 - rate)))

    @torch.inference_mode()
    def user_table(self, frame: pd.DataFrame, chunk: int = 65536) -> np.ndarray:
        """[len(frame), vector_width] float32 user vectors (eval mode)."""
        return self._table(self.encode_users(frame), self.user_vectors, chunk)

    @torch.inference_mode()
    def item_table(self, frame: pd.DataFrame, chunk: int = 65536) -> np.ndarray:
        """[len(frame), vector_width] float32 item vectors (eval mode), the bias shifted by ``sampling_offset``
        so that the dot product is P(buys within the horizon), not P in the sampled training design."""
        table = self._table(self.encode_items(frame), self.item_vectors, chunk)
        table[:, self.dim + 1] += np.float32(self.sampling_offset)  # the item bias (times the user's 1)
        return table

    def _table(self, encoded: Any, vectors: Any, chunk: int) -> np.ndarray:
        was_training = self.training
        self.eval()
        try:
            n = len(encoded.ids)
            out = np.empty((n, self.vector_width), dtype=np.float32)
            for start in range(0, n, chunk):
                rows = torch.arange(start, min(start + chunk, n))
                out[start : start + chunk] = vectors(encoded.take(rows)).numpy()
        finally:
            self.train(was_training)
        return out

    # --- persistence -------------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-able architecture and feature plan (vocabularies of ids are saved beside it)."""
        return {
            "dim": self.dim,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "categories": list(self.categories),
            "history_terms": self.history_terms,
            "sampling_offset": self.sampling_offset,
            "user_features": self.user_encoder.spec(),
            "item_features": self.item_encoder.spec(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], user_vocab: Sequence[str], item_vocab: Sequence[str]) -> PropensityNetwork:
        network = cls(
            FeatureEncoder.from_spec(spec["user_features"]),
            FeatureEncoder.from_spec(spec["item_features"]),
            user_vocab,
            item_vocab,
            spec["categories"],
            dim=spec["dim"],
            hidden=spec["hidden"],
            dropout=spec["dropout"],
            history_terms=bool(spec.get("history_terms", False)),  # versions saved before the terms have none
        )
        network.sampling_offset = float(spec.get("sampling_offset", 0.0))  # likewise: the training design's P
        return network
