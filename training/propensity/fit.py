"""Training the propensity network on labelled (user, item) pairs.

CPU-first like the LTV fit: encoded tables in memory, mini-batches are index slices, threads capped, seeded end
to end (same data + config -> identical weights). The validation split is by USER: a seeded share of users
whose pairs only judge the fit. Their ids are kept out of the id vocabulary, so early stopping measures what
generalises (side features, item ids) rather than what the user id embeddings memorise, and the
out-of-vocabulary path cold users take at serving time is exercised every epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ltvfeed.errors import UserError
from ltvfeed.training.epochs import EpochRecord
from ltvfeed.training.propensity.config import PropensityConfig
from ltvfeed.training.propensity.data import ITEM_KEY, USER_KEY, LabelledPairs

log = logging.getLogger(__name__)


@dataclass
class FitReport:
    best_epoch: int = 0
    best_val_loss: float | None = None
    history: list[EpochRecord] = field(default_factory=list)
    n_train: int = 0
    n_validation: int = 0
    n_train_users: int = 0
    stopped_early: bool = False


def fit_network(pairs: LabelledPairs, cfg: PropensityConfig):
    """Fit encoders and network on ``pairs``; returns (PropensityNetwork in eval mode, FitReport)."""
    import torch

    from ltvfeed.training.features import FeatureEncoder
    from ltvfeed.training.fit import split_by_user
    from ltvfeed.training.propensity.model import PropensityNetwork

    tables = pairs.tables
    if len(pairs.labels) == 0 or pairs.n_positive == 0 or pairs.n_positive == len(pairs.labels):
        raise UserError("the training set needs both positive and negative pairs")
    train_rows, val_rows = split_by_user(pairs.user_rows, cfg.validation_fraction, cfg.seed)
    train_users = np.unique(pairs.user_rows[train_rows])
    user_vocab = tables.users[USER_KEY].astype(str).to_numpy()[train_users]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.num_threads))
    # fork_rng: seed this fit without leaving the caller's global RNG changed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        try:
            user_encoder = FeatureEncoder.fit(
                tables.users.iloc[train_users],
                exclude_columns=[USER_KEY],
                min_category_count=cfg.min_category_count,
                max_vocabulary=cfg.max_vocabulary,
            )
            item_encoder = FeatureEncoder.fit(
                tables.items,
                categorical_columns=["category"],
                exclude_columns=[ITEM_KEY],
                min_category_count=cfg.min_category_count,
                max_vocabulary=cfg.max_vocabulary,
            )
            network = PropensityNetwork(
                user_encoder,
                item_encoder,
                user_vocab,
                tables.items[ITEM_KEY].astype(str).to_numpy(),
                tables.categories,
                dim=cfg.embedding_dim,
                hidden=cfg.hidden,
                dropout=cfg.dropout,
                history_terms=cfg.history_terms,
            )
            users = network.encode_users(tables.users)
            items = network.encode_items(tables.items)
            u = torch.from_numpy(pairs.user_rows)
            i = torch.from_numpy(pairs.item_rows)
            y = torch.from_numpy(pairs.labels.astype(np.float32))
            train = (u[train_rows], i[train_rows], y[train_rows])
            val = (u[val_rows], i[val_rows], y[val_rows]) if len(val_rows) else None
            network.init_output_bias(float(train[2].mean()))
            report = _train(network, users, items, train, val, cfg)
            report.n_train_users = len(train_users)
        finally:
            torch.set_num_threads(previous_threads)
    network.sampling_offset = sampling_offset(pairs)
    network.eval()
    return network, report


def sampling_offset(pairs: LabelledPairs) -> float:
    """The log-odds shift from the training design to the shop: ln(sampled negatives / all user x item pairs).

    Why: the network learns P(bought) among each buyer's purchases and ``negatives_per_positive`` drawn items,
    about 1 in 5, while a user buys a few of thousands of items in the horizon, and users who bought nothing have
    no rows at all. Served, that P is combined with the history's P(bought again) as two probabilities of a
    purchase within the horizon (:func:`ltvfeed.frames.history.either_reason`), so it must be one. For rare
    events the odds scale with the share of the negatives kept (King and Zeng's prior correction); shifting
    every item's bias by the same amount leaves each user's ranking of items unchanged."""
    n_negative = len(pairs.labels) - pairs.n_positive
    n_pairs = len(pairs.tables.users) * len(pairs.tables.items)
    if n_negative <= 0 or n_pairs <= 0:
        return 0.0
    return float(np.log(min(n_negative / n_pairs, 1.0)))


def _hide_ids(ids, rate: float, generator):
    import torch

    if rate <= 0:
        return ids
    hidden = torch.rand(ids.shape, generator=generator) < rate
    return torch.where(hidden, torch.zeros_like(ids), ids)


def _train(network, users, items, train, val, cfg: PropensityConfig) -> FitReport:
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    from ltvfeed.training.epochs import run_epochs

    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = len(train[2])

    def train_epoch() -> float:
        total = 0.0
        for batch in torch.randperm(n, generator=generator).split(cfg.batch_size):
            ub = users.take(train[0][batch])
            ib = items.take(train[1][batch])
            ub = replace(ub, ids=_hide_ids(ub.ids, cfg.oov_rate, generator))
            ib = replace(ib, ids=_hide_ids(ib.ids, cfg.oov_rate, generator))
            optimizer.zero_grad(set_to_none=True)
            loss = bce(network(ub, ib), train[2][batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.numel()
        return total / n

    run = run_epochs(
        network,
        train_epoch,
        None if val is None else lambda: _loss(network, users, items, val),
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        min_delta=cfg.min_delta,
        desc="propensity epochs",
    )
    report = FitReport(
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val_loss,
        history=run.history,
        n_train=n,
        n_validation=0 if val is None else len(val[2]),
        stopped_early=run.stopped_early,
    )
    log.info(
        "propensity fit: %d train / %d validation pairs, %d epochs, best epoch %d (val loss %s)",
        report.n_train,
        report.n_validation,
        len(report.history),
        report.best_epoch,
        "-" if run.best_val_loss is None else f"{run.best_val_loss:.4f}",
    )
    return report


def _loss(network, users, items, data, chunk: int = 65536) -> float:
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    network.eval()
    total = 0.0
    n = len(data[2])
    with torch.inference_mode():
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            logits = network(users.take(data[0][rows]), items.take(data[1][rows]))
            total += float(bce(logits, data[2][rows], reduction="sum"))
    return total / n
