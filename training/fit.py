"""Training the LTV network, and ``LtvModel``: the fit/predict/save/load face of it.

CPU-first: the whole training set is tensors in memory, mini-batches are index slices (no DataLoader
workers), threads are capped (2 by default: the machines are small and shared). Seeded end to end: the same
data, config and seed give identical weights and predictions. Early stopping watches the ZILN loss on a
validation split drawn by *user*, so rows of one user never sit on both sides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.calibration import MeanCalibration
from ltvfeed.training.epochs import EpochRecord

if TYPE_CHECKING:
    import torch

    from ltvfeed.training.network import LtvMember, LtvNetwork

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.pt"
FORMAT_VERSION = 3  # 3: history window; 2: ensemble members and BTYD inputs; 1 (one network) still loads
READABLE_FORMATS = (1, 2, 3)


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 1024
    max_epochs: int = 200
    patience: int = 10  # epochs without validation improvement before stopping
    min_delta: float = 1e-4  # improvement smaller than this does not count
    lr_decay_patience: int = 3  # halve the learning rate after this many epochs without improvement; 0 = never
    validation_fraction: float = 0.2  # of users; 0 trains max_epochs without early stopping
    seed: int = 0
    num_threads: int = 2
    min_category_count: int = 5
    max_vocabulary: int = 1000
    calibration_bins: int = 20  # bins of validation users for the expected-LTV calibration; 0 = none
    # A seed ensemble: this many networks, each validated on its own fold of users (5 folds of 20 % by default),
    # their logits averaged. More members: less variance between training runs, proportionally longer fits.
    members: int = 5
    # BG/NBD + Gamma-Gamma fitted on the training rows: its prediction blended into the served one with the weight
    # that ranks rows no member trained on best (blend_weights), and optionally its outputs as network inputs. Off
    # by default: as inputs they lowered the ranking on a short log (bench/bench_ltv_logs.py, grocer: Spearman
    # 0.87 against 0.945 without), where the windows at training and scoring differ most.
    btyd_inputs: bool = False
    btyd_blend: bool = True
    # With rows of several cutoffs (``fit(periods=...)``): calibrate on the latest cutoff's rows, which no member
    # trains on, so the calibration corrects what changes between windows (out of time), not only in sample.
    calibrate_out_of_time: bool = True
    # Score every customer on the history length the members trained on (training/history_window.py), so that
    # a short log's network is not asked about histories longer than any it saw.
    align_history: bool = True


@dataclass
class FitReport:
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    n_train: int = 0
    n_validation: int = 0
    stopped_early: bool = False
    calibration_knots: int = 0  # 0: expected LTV uncalibrated (no validation split, or too few buyers in it)
    calibration_source: str = "none"  # out_of_time | out_of_fold | validation | none
    calibration_rows: int = 0
    btyd_weight: float = 0.0  # share of BG/NBD + Gamma-Gamma in the served prediction (see blend_weights)
    naive_weight: float = 0.0  # share of the naive baseline in it
    members: list[FitReport] = field(default_factory=list)  # one per ensemble member (this report is the first's)


def split_by_user(user_ids: Sequence[Any] | np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, validation): a seeded random ``fraction`` of distinct users, all their rows."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"validation fraction must be in [0, 1), got {fraction}")
    codes, uniques = pd.factorize(pd.Series(user_ids), sort=True)
    if (codes < 0).any():
        raise UserError("user ids must not be missing")
    n_users = len(uniques)
    n_val = round(fraction * n_users)
    if fraction > 0 and n_users >= 2:
        n_val = min(max(n_val, 1), n_users - 1)
    in_val = np.zeros(n_users, dtype=bool)
    in_val[np.random.default_rng(seed).permutation(n_users)[:n_val]] = True
    row_in_val = in_val[codes]
    return np.flatnonzero(~row_in_val), np.flatnonzero(row_in_val)


def member_splits(user_ids: Sequence[Any] | np.ndarray, cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row positions (train, validation) per ensemble member. One member: a ``validation_fraction`` split.
    Several: user-level folds, member k validated on fold k, so every user is validated exactly once (their
    out-of-fold predictions calibrate the ensemble); without validation, every member trains on every row."""
    if cfg.members < 1:
        raise UserError(f"members must be >= 1, got {cfg.members}")
    if cfg.members == 1:
        return [split_by_user(user_ids, cfg.validation_fraction, cfg.seed)]
    rows = np.arange(len(user_ids))
    if cfg.validation_fraction == 0:
        return [(rows, rows[:0])] * cfg.members
    codes, uniques = pd.factorize(pd.Series(user_ids), sort=True)
    if (codes < 0).any():
        raise UserError("user ids must not be missing")
    if len(uniques) < cfg.members:
        raise UserError(f"{len(uniques)} users cannot fill {cfg.members} ensemble folds: use fewer members")
    fold_of_user = np.empty(len(uniques), dtype=np.int64)
    fold_of_user[np.random.default_rng(cfg.seed).permutation(len(uniques))] = np.arange(len(uniques)) % cfg.members
    fold = fold_of_user[codes]
    return [(rows[fold != k], rows[fold == k]) for k in range(cfg.members)]


class LtvModel:
    """Predicts a user's revenue over ``horizon_days`` with a ZILN network.

    ``fit(df, y)`` builds the network from the columns ``df`` has (minus ``exclude_columns``); ``predict``
    returns prob_return, expected_ltv, p10, p50, p90 per row; ``save``/``load`` round-trip exactly;
    ``module`` is the self-contained nn.Module (for MLflow).
    """

    def __init__(
        self,
        horizon_days: int = 90,
        config: TrainConfig | None = None,
        *,
        categorical_columns: Iterable[str] | None = None,
        id_column: str | None = "user_id",
        exclude_columns: Iterable[str] = (),
    ) -> None:
        self.horizon_days = int(horizon_days)
        self.config = config or TrainConfig()
        self.categorical_columns = list(categorical_columns) if categorical_columns is not None else None
        self.id_column = id_column
        self.exclude_columns = list(exclude_columns)
        self._network: LtvNetwork | None = None
        self.report: FitReport | None = None
        self.validation_index: pd.Index | None = None

    @property
    def module(self) -> LtvNetwork:
        """The trained nn.Module: encoder buffers + weights; ``module.predict_frame(df)`` scores a frame."""
        if self._network is None:
            raise UserError("the LTV model is not fitted: call fit() or load() first")
        return self._network

    @property
    def feature_columns(self) -> list[str]:
        return self.module.encoder.columns

    def fit(
        self,
        df: pd.DataFrame,
        y: Sequence[float] | np.ndarray | pd.Series,
        periods: Sequence[Any] | np.ndarray | None = None,
    ) -> LtvModel:
        """Train on features ``df`` and horizon revenue ``y`` (one value per row, >= 0). ``periods`` (e.g. each
        row's cutoff) lets the calibration be learned out of time on the latest period (see TrainConfig)."""
        import torch

        from ltvfeed.training.btyd_inputs import BtydInputs
        from ltvfeed.training.features import FeatureEncoder
        from ltvfeed.training.history_window import HistoryWindow
        from ltvfeed.training.network import LtvNetwork

        labels = _check_labels(df, y)
        cfg = self.config
        if self.id_column is not None and self.id_column in df.columns:
            user_ids = df[self.id_column].to_numpy()
        else:
            user_ids = np.arange(len(df))  # one row per user
        fit_rows, later_rows = _time_split(periods, len(df), cfg)
        splits = [(fit_rows[t], fit_rows[v]) for t, v in member_splits(user_ids[fit_rows], cfg)]
        self.validation_index = df.index[splits[0][1]]
        fit_df = df.iloc[fit_rows]

        excluded = [*self.exclude_columns, *([self.id_column] if self.id_column else [])]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, cfg.num_threads))
        # fork_rng: seed our own run without leaving the caller's global RNG changed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            try:
                btyd = BtydInputs.fit(fit_df, self.horizon_days) if cfg.btyd_inputs or cfg.btyd_blend else None
                encoder = FeatureEncoder.fit(
                    btyd.add_to(fit_df) if btyd is not None and cfg.btyd_inputs else fit_df,
                    categorical_columns=self.categorical_columns,
                    exclude_columns=excluded,
                    min_category_count=cfg.min_category_count,
                    max_vocabulary=cfg.max_vocabulary,
                )
                network = LtvNetwork(
                    encoder,
                    hidden=cfg.hidden,
                    dropout=cfg.dropout,
                    members=cfg.members,
                    btyd=btyd,
                    window=HistoryWindow.fit(fit_df) if cfg.align_history else None,
                )
                numeric, categorical = network.encode(df)
                y_all = torch.from_numpy(labels.astype(np.float32))
                reports, out_of_fold = [], np.full(len(df), np.nan)
                for k, (member, (train_rows, val_rows)) in enumerate(zip(network.members, splits, strict=True)):
                    torch.manual_seed(cfg.seed + k)
                    train = (numeric[train_rows], categorical[train_rows], y_all[train_rows])
                    val = (numeric[val_rows], categorical[val_rows], y_all[val_rows]) if len(val_rows) else None
                    member.init_output_bias(train[2])
                    reports.append(_train(member, train, val, cfg, seed=cfg.seed + k))
                    if len(val_rows):
                        out_of_fold[val_rows] = _expected_ltv(member, val[0], val[1])
                network.eval()
                self.report = reports[0]
                self.report.members = reports
                self._calibrate(network, df, labels, later_rows, out_of_fold, splits)
            finally:
                torch.set_num_threads(previous_threads)
        network.eval()
        self._network = network
        return self

    def _calibrate(
        self,
        network: LtvNetwork,
        df: pd.DataFrame,
        labels: np.ndarray,
        later_rows: np.ndarray,
        out_of_fold: np.ndarray,
        splits: list[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Fit the expected-LTV calibration on rows no member trained on: the latest period's when there is
        one (out of time), else every member's validation fold (out of fold)."""
        cfg, report = self.config, self.report
        assert report is not None
        if cfg.calibration_bins <= 0:
            return
        if len(later_rows):
            rows, source = later_rows, "out_of_time"
            raw = network.raw_prediction(df.iloc[later_rows])[1]
        else:
            rows = np.flatnonzero(np.isfinite(out_of_fold))
            source = "validation" if len(splits) == 1 else "out_of_fold"
            raw = out_of_fold[rows]
        if not len(rows):
            return
        if network.btyd is not None and cfg.btyd_blend:
            from ltvfeed.training.btyd_inputs import NAIVE, mix

            classic = network.inputs(df.iloc[rows])
            btyd, naive = (classic[c].to_numpy(np.float64) for c in ("btyd_expected_ltv", NAIVE))
            w_b, w_n = blend_weights(raw, btyd, naive, labels[rows])
            network.btyd_weight, network.naive_weight = w_b, w_n
            report.btyd_weight, report.naive_weight = w_b, w_n
            raw = mix(raw, btyd, naive, w_b, w_n)
        network.calibration = MeanCalibration.fit(raw, labels[rows], bins=cfg.calibration_bins)
        report.calibration_knots = len(network.calibration.knots_x)
        report.calibration_source = source if report.calibration_knots else "none"
        report.calibration_rows = len(rows)

    def predict(self, df: pd.DataFrame, batch_size: int = 65536) -> pd.DataFrame:
        """DataFrame[prob_return, expected_ltv, p10, p50, p90] with ``df``'s index."""
        return self.module.predict_frame(df, batch_size=batch_size)

    def save(self, path: str | Path) -> Path:
        """Write ``path``/spec.json (feature plan, architecture, settings) and ``path``/model.pt (weights and
        encoder statistics). Returns the directory."""
        import torch

        network = self.module
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {
            "format_version": FORMAT_VERSION,
            "horizon_days": self.horizon_days,
            "id_column": self.id_column,
            "exclude_columns": self.exclude_columns,
            "categorical_columns": self.categorical_columns,
            "config": asdict(self.config),
            "network": network.spec(),
        }
        (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
        torch.save(network.state_dict(), directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, path: str | Path) -> LtvModel:
        import torch

        from ltvfeed.training.network import LtvNetwork, single_member_state

        directory = Path(path)
        spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
        if not spec_path.is_file() or not weights_path.is_file():
            raise UserError(f"{directory} is not a saved LTV model (needs {SPEC_FILE} and {WEIGHTS_FILE})")
        spec = json.loads(spec_path.read_text())
        if spec.get("format_version") not in READABLE_FORMATS:
            raise UserError(f"{spec_path}: unsupported format_version {spec.get('format_version')!r}")
        config_fields = {**spec["config"], "hidden": tuple(spec["config"]["hidden"])}
        model = cls(
            horizon_days=spec["horizon_days"],
            config=TrainConfig(**config_fields),
            categorical_columns=spec["categorical_columns"],
            id_column=spec["id_column"],
            exclude_columns=spec["exclude_columns"],
        )
        network = LtvNetwork.from_spec(spec["network"])
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(single_member_state(state) if spec["format_version"] == 1 else state)
        network.eval()
        model._network = network
        return model


def _check_labels(df: pd.DataFrame, y: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    labels = np.asarray(pd.to_numeric(pd.Series(np.asarray(y).reshape(-1)), errors="coerce"), dtype=np.float64)
    if len(labels) != len(df):
        raise UserError(f"y has {len(labels)} values but the feature frame has {len(df)} rows")
    if len(df) == 0:
        raise UserError("cannot fit the LTV model on an empty frame")
    if not np.isfinite(labels).all():
        raise UserError(f"y has {int((~np.isfinite(labels)).sum())} missing or infinite values")
    if (labels < 0).any():
        raise UserError(f"y (horizon revenue) must be >= 0; {int((labels < 0).sum())} values are negative")
    return labels


BLEND_STEPS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


def blend_weights(network: np.ndarray, btyd: np.ndarray, naive: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The shares (BG/NBD + Gamma-Gamma, naive) of the classic models' expected LTV in the served prediction,
    on a grid of eighths (shares summing to at most 1), judged on the calibration rows (no member trained on
    them) against the envelope of the classics: the best Spearman and the best normalized Gini either of them
    reaches there (often two different models: BG/NBD orders the many low-value customers, naive finds the
    few big ones).

    - Blends at or above the envelope on both: the one that ranks best (Spearman + Gini), as before.
    - None: the one whose worse margin to the envelope is smallest (the ranking closest to never worse than
      the classics; a sum would let Gini's wider range buy a Spearman below BG/NBD's).

    The network alone wins ties, so where the network's features do not carry over to a later window (a young
    cohort, a short log) the classic models take over instead of the network ranking below them."""
    from ltvfeed.training.btyd_inputs import mix
    from ltvfeed.training.metrics import normalized_gini, spearman

    if np.sum(y) <= 0:
        return 0.0, 0.0

    def ranking(prediction: np.ndarray) -> tuple[float, float]:
        return np.nan_to_num(spearman(y, prediction), nan=-1.0), np.nan_to_num(normalized_gini(y, prediction), nan=-1.0)

    classics = [ranking(btyd), ranking(naive)]
    envelope = (max(c[0] for c in classics), max(c[1] for c in classics))
    best, best_key = (0.0, 0.0), (-np.inf, -np.inf)
    for w_b in BLEND_STEPS:
        for w_n in BLEND_STEPS:
            if w_b + w_n > 1:
                continue
            rho, gini = ranking(mix(network, btyd, naive, w_b, w_n))
            margin = round(min(rho - envelope[0], gini - envelope[1]), 6)
            key = (1.0, round(rho + gini, 6)) if margin >= 0 else (0.0, margin)
            if key > best_key:  # strictly better: ties keep the earlier, more network-weighted pair
                best, best_key = (w_b, w_n), key
    return best


def _time_split(periods: Sequence[Any] | np.ndarray | None, n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (trained on, calibrated on): the latest period apart when there are several periods and
    out-of-time calibration is on; else every row is trained on."""
    rows = np.arange(n)
    if periods is None or not cfg.calibrate_out_of_time or cfg.calibration_bins <= 0:
        return rows, rows[:0]
    values = pd.Series(np.asarray(periods))
    if len(values) != n:
        raise UserError(f"periods has {len(values)} values but the feature frame has {n} rows")
    if values.nunique() < 2:
        return rows, rows[:0]
    later = (values == values.max()).to_numpy()
    return rows[~later], rows[later]


def _expected_ltv(member: LtvMember, numeric: torch.Tensor, categorical: torch.Tensor) -> np.ndarray:
    """One member's uncalibrated expected LTV for encoded rows (its out-of-fold predictions)."""
    import torch

    from ltvfeed.training.ziln import ziln_expected_value

    member.eval()
    with torch.inference_mode():
        return ziln_expected_value(member(numeric, categorical).double()).numpy()


def _train(
    network: LtvMember,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    cfg: TrainConfig,
    seed: int,
) -> FitReport:
    import torch

    from ltvfeed.training.epochs import run_epochs
    from ltvfeed.training.ziln import ziln_loss

    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=cfg.lr_decay_patience - 1)
        if cfg.lr_decay_patience > 0 and val is not None
        else None
    )
    shuffle = torch.Generator().manual_seed(seed)
    n = train[2].shape[0]

    def train_epoch() -> float:
        total = 0.0
        for batch in torch.randperm(n, generator=shuffle).split(cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = ziln_loss(network(train[0][batch], train[1][batch]), train[2][batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.numel()
        return total / n

    run = run_epochs(
        network,
        train_epoch,
        None if val is None else lambda: _loss(network, val),
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        min_delta=cfg.min_delta,
        desc="LTV epochs",
        after_validation=None if scheduler is None else scheduler.step,
    )
    report = FitReport(
        best_epoch=run.best_epoch,
        history=run.history,
        n_train=n,
        n_validation=0 if val is None else val[2].shape[0],
        stopped_early=run.stopped_early,
    )
    log.info(
        "LTV fit: %d train / %d validation rows, %d epochs, best epoch %d (val loss %s)",
        report.n_train,
        report.n_validation,
        len(report.history),
        report.best_epoch,
        "-" if run.best_val_loss is None else f"{run.best_val_loss:.4f}",
    )
    return report


def _loss(network: LtvMember, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], chunk: int = 65536) -> float:
    import torch

    from ltvfeed.training.ziln import ziln_loss

    network.eval()
    total = 0.0
    n = data[2].shape[0]
    with torch.inference_mode():
        for start in range(0, n, chunk):
            stop = start + chunk
            total += float(ziln_loss(network(data[0][start:stop], data[1][start:stop]), data[2][start:stop])) * (
                min(stop, n) - start
            )
    return total / n
