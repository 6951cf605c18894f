"""One training run of the propensity model: build sets, fit, evaluate out of time, log, register, promote.

Train on cutoff T1 (purchases in [T1, T1 + h), features as of T1); evaluate on T2 >= T1 + h (purchases in
[T2, T2 + h), features as of T2), so no purchase is both learnt and judged. The logged model carries the T2
rows (the newest snapshot this run read); the registry compares it with the champion on the same holdout.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.propensity.config import (
    DEFAULT_HORIZON_DAYS,
    EXPERIMENT_NAME,
    MODEL_NAME,
    PropensityConfig,
    PropensityPromotionConfig,
)

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack
    from ltvfeed.training.propensity.data import FeatureTables
    from ltvfeed.training.propensity.evaluate import Holdout, PairValues
    from ltvfeed.training.propensity.fit import FitReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    version: str  # registered version of purchase_propensity
    promoted: bool
    reason: str  # the promotion decision, as recorded on the version
    metrics: pd.DataFrame  # rows model / two_tower / popularity / classic / buy_again / cold_start; columns auc,
    # ndcg_at_k, recall_at_k
    registry_metrics: dict[str, float]  # what register_and_promote measured for this version (model row)
    champion_metrics: dict[str, float] | None  # the previous champion on the same holdout, if there was one
    holdout_id: str
    fit: FitReport
    eval_window_complete: bool


def check_dates(cutoff: date, eval_cutoff: date, horizon_days: int, data_end: date | None) -> bool:
    """Raise on an unusable split; return whether the evaluation window is fully inside the data."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise UserError(f"horizon_days must be a whole number of days >= 1, got {horizon_days!r}")
    if eval_cutoff < cutoff + timedelta(days=horizon_days):
        raise UserError(
            f"eval cutoff {eval_cutoff} must be at least {horizon_days} days after the training cutoff {cutoff} "
            f"(>= {cutoff + timedelta(days=horizon_days)}), so training and evaluation purchases do not overlap"
        )
    if data_end is None:
        raise UserError("raw.orders is empty: ingest orders before training the propensity model")
    if eval_cutoff >= data_end:
        raise UserError(
            f"eval cutoff {eval_cutoff} is not before the end of the data ({data_end}): no purchases to evaluate on"
        )
    complete = eval_cutoff + timedelta(days=horizon_days) <= data_end
    if not complete:
        log.warning("the evaluation window ends after the data (%s): purchases there are a lower bound", data_end)
    return complete


def evaluate_pyfunc(model, tables: FeatureTables, holdout: Holdout, history: PairValues) -> dict[str, float]:
    """The model row's metrics of a registered pyfunc model on the holdout (its rows rebuilt over the holdout's
    snapshot), as served (with ``history``, P(bought again) per pair): the function register_and_promote applies
    to challenger and champion alike."""
    from ltvfeed.training.propensity.evaluate import ServedRanker, evaluate_ranker
    from ltvfeed.training.propensity.registry import scorer_from_pyfunc

    scorer = scorer_from_pyfunc(model).with_tables(tables.users, tables.items, tables.as_of)
    return evaluate_ranker(ServedRanker(scorer, history), holdout)


def _example(holdout: Holdout, n: int = 5) -> pd.DataFrame:
    pairs = holdout.pairs
    take = np.arange(min(n, len(pairs.labels)))
    return pd.DataFrame(
        {
            "user_id": pairs.tables.users["user_id"].to_numpy()[pairs.user_rows[take]],
            "item_id": pairs.tables.items["item_id"].to_numpy()[pairs.item_rows[take]],
        }
    )


def format_metrics(table: pd.DataFrame) -> str:
    return table.to_string(float_format=lambda v: f"{v:.4f}")


def train_propensity(
    stack: Stack,
    cutoff: date,
    eval_cutoff: date,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    cfg: PropensityConfig | None = None,
    promotion: PropensityPromotionConfig | None = None,
) -> TrainResult:
    """Train on ``cutoff``, evaluate on ``eval_cutoff`` against the baselines, log everything to MLflow
    (experiment ``purchase_propensity``), register the model as ``purchase_propensity`` and promote it to
    champion if it beats every floor row (popularity, classic, buy_again, cold_start) and the current champion
    on the same holdout."""
    from ltvfeed.infra.tracking import use_experiment
    from ltvfeed.training.propensity.data import load_tables, served_history, window_pairs
    from ltvfeed.training.propensity.evaluate import (
        PairValues,
        ScorerRanker,
        ServedRanker,
        baseline_veto,
        baselines,
        compare,
        flat_metrics,
        make_holdout,
    )
    from ltvfeed.training.propensity.fit import fit_network
    from ltvfeed.training.propensity.registry import LTV_FEATURES_PARAM, log_scorer
    from ltvfeed.training.propensity.scorer import PropensityScorer
    from ltvfeed.training.registry import register_and_promote
    from ltvfeed.warehouse.propensity_reads import orders_end, purchase_counts

    cfg = cfg or PropensityConfig()
    promotion = promotion or PropensityPromotionConfig()
    complete = check_dates(cutoff, eval_cutoff, horizon_days, orders_end(stack.warehouse_dsn))

    train_tables = load_tables(stack, cutoff, cfg)
    train_pairs = window_pairs(stack, train_tables, horizon_days, cfg, seed=cfg.seed)
    network, report = fit_network(train_pairs, cfg)

    eval_tables = load_tables(stack, eval_cutoff, cfg, categories=network.categories)
    eval_pairs = window_pairs(stack, eval_tables, horizon_days, cfg, seed=cfg.seed + 1)
    holdout = make_holdout(eval_pairs, cfg.eval_k, cfg.max_eval_users, cfg.seed)
    metadata = {
        "config": cfg.params(),
        "trained_cutoff": cutoff.isoformat(),
        "horizon_days": horizon_days,
        "tables_as_of": eval_cutoff.isoformat(),
        "ltv_features": [c for c in network.user_encoder.columns if c.startswith("ltv_")],
    }
    scorer = PropensityScorer(network, eval_tables.users, eval_tables.items, metadata)
    history = purchase_counts(stack.warehouse_dsn, eval_cutoff - timedelta(days=cfg.popularity_days), eval_cutoff)
    read = served_history(stack.warehouse_dsn, eval_tables, holdout.users, horizon_days)
    again = PairValues(len(eval_tables.items), read.user_rows, read.item_rows, read.probability)
    served = ServedRanker(scorer, again)
    floor = baselines(holdout, history, again, read.recent_popularity)
    table = compare(holdout, {"model": served, "two_tower": ScorerRanker(scorer), **floor})
    veto = baseline_veto(table, f"ndcg_at_{cfg.eval_k}")

    import mlflow

    use_experiment(stack, EXPERIMENT_NAME)
    with mlflow.start_run(run_name=f"propensity {cutoff} -> {eval_cutoff} ({horizon_days}d)") as run:
        mlflow.log_params(
            {
                **cfg.params(),
                "cutoff": cutoff.isoformat(),
                "eval_cutoff": eval_cutoff.isoformat(),
                "horizon_days": horizon_days,
                "ltv_features": f"train: {train_tables.ltv_note}; eval: {eval_tables.ltv_note}",
                "eval_window_complete": complete,
                "n_users_train_table": len(train_tables.users),
                "n_items_train_table": len(train_tables.items),
                "n_train_users_vocab": report.n_train_users,
                "n_train_pairs": report.n_train,
                "n_validation_pairs": report.n_validation,
                "n_train_positives": train_pairs.n_positive,
                "n_eval_positives": eval_pairs.n_positive,
                "n_eval_users_ranked": len(holdout.users),
                "n_eval_items": len(eval_tables.items),
                "user_feature_columns": len(network.user_encoder.columns),
                LTV_FEATURES_PARAM: ",".join(metadata["ltv_features"]) or "none",
                "item_feature_columns": len(network.item_encoder.columns),
                **{f"train_dropped_{k}": v for k, v in train_pairs.dropped.items()},
                **{f"eval_dropped_{k}": v for k, v in eval_pairs.dropped.items()},
            }
        )
        for record in report.history:
            mlflow.log_metric("train_loss", record.train_loss, step=record.epoch)
            if record.val_loss is not None:
                mlflow.log_metric("val_loss", record.val_loss, step=record.epoch)
        mlflow.log_metrics({**flat_metrics(table), "best_epoch": float(report.best_epoch)})
        mlflow.log_text(format_metrics(table), "metrics.txt")
        mlflow.log_dict({"fit": asdict(report), "holdout_id": holdout.holdout_id}, "fit_report.json")
        info = log_scorer(scorer, _example(holdout))
        outcome = register_and_promote(
            stack,
            info.model_uri,
            MODEL_NAME,
            holdout.holdout_id,
            lambda model: evaluate_pyfunc(model, eval_tables, holdout, again),
            promotion,
            data_through=eval_cutoff + timedelta(days=horizon_days),
            veto=veto,
        )
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=outcome.version,
        promoted=outcome.decision.promoted,
        reason=outcome.decision.reason,
        metrics=table,
        registry_metrics=outcome.challenger_metrics,
        champion_metrics=outcome.champion_metrics,
        holdout_id=holdout.holdout_id,
        fit=report,
        eval_window_complete=complete,
    )
