"""The LTV network: feature encoder + embeddings + small MLP + ZILN head, as one self-contained nn.Module.

Everything needed to score a DataFrame (encoding statistics, vocabularies, weights) lives in this module, so
the module alone can be logged to MLflow and served without the training code's preprocessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ltvfeed.errors import UserError
from ltvfeed.training.btyd_inputs import NAIVE, BtydInputs, mix
from ltvfeed.training.calibration import MeanCalibration
from ltvfeed.training.features import FeatureEncoder
from ltvfeed.training.history_window import HistoryWindow
from ltvfeed.training.ziln import ziln_expected_value, ziln_params, ziln_quantiles

QUANTILES = (0.1, 0.5, 0.9)
PREDICTION_COLUMNS = ("prob_return", "expected_ltv", "p10", "p50", "p90")


class LtvMember(nn.Module):
    """One trained network of the ensemble: embeddings + MLP + ZILN head on the shared encoder's tensors."""

    def __init__(self, encoder: FeatureEncoder, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c.num_embeddings, c.embedding_dim) for c in encoder.categorical)
        layers: list[nn.Module] = []
        width = encoder.numeric_width + sum(c.embedding_dim for c in encoder.categorical)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, 3)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.head(self.mlp(torch.cat(parts, dim=1)))

    def init_output_bias(self, labels: torch.Tensor) -> None:
        """Start the head at the training population's ZILN fit (repeat rate, mean and spread of log
        revenue): training then learns deviations instead of first walking mu from 0 to log(typical spend)."""
        positive = labels[labels > 0]
        rate = float((labels > 0).float().mean().clamp(1e-4, 1 - 1e-4))
        log_y = torch.log(positive.double()) if positive.numel() else torch.zeros(1, dtype=torch.float64)
        mu = float(log_y.mean())
        sigma = max(float(log_y.std()) if log_y.numel() > 1 else 1.0, 0.1)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(
                torch.tensor([math.log(rate / (1 - rate)), mu, math.log(math.expm1(sigma))], dtype=torch.float32)
            )


class LtvNetwork(nn.Module):
    """Maps a feature frame to ZILN logits ``[n, 3]`` (return logit, mu, raw sigma): the mean of its members'
    logits (a seed ensemble: one distribution, less variance between training runs). ``btyd`` (optional) adds
    the BG/NBD + Gamma-Gamma outputs to the frame (:mod:`ltvfeed.training.btyd_inputs`): inputs when the encoder
    was fitted with them, and blended into the served prediction with the naive baseline's by ``btyd_weight`` and
    ``naive_weight``. ``window`` (optional) puts every row on the history length the members trained on
    (:mod:`ltvfeed.training.history_window`) before the encoder reads it; the baselines keep the raw history.
    ``calibration`` (fitted after training, see :mod:`ltvfeed.training.calibration`) rescales the predicted
    revenue distribution."""

    def __init__(
        self,
        encoder: FeatureEncoder,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        members: int = 1,
        btyd: BtydInputs | None = None,
        window: HistoryWindow | None = None,
    ) -> None:
        super().__init__()
        if members < 1:
            raise UserError(f"an LTV network needs at least one member, got {members}")
        self.encoder = encoder
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.btyd = btyd
        self.window = window
        self.members = nn.ModuleList(LtvMember(encoder, self.hidden, self.dropout) for _ in range(members))
        self.calibration = MeanCalibration()
        # shares of BG/NBD + Gamma-Gamma's and of the naive prediction in the served one (chosen out of time)
        self.btyd_weight = 0.0
        self.naive_weight = 0.0

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0](numeric, categorical)
        return torch.stack([member(numeric, categorical) for member in self.members]).mean(dim=0)

    def inputs(self, df: pd.DataFrame) -> pd.DataFrame:
        """The frame the encoder reads: ``df`` plus the BTYD columns (from the raw history) when the network uses
        them, put on the training history's length."""
        frame = df if self.btyd is None else self.btyd.add_to(df)
        return frame if self.window is None else self.window.align(frame)

    def encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.encode(self.inputs(df))

    @torch.inference_mode()
    def _logits(self, frame: pd.DataFrame, batch_size: int) -> torch.Tensor:
        """The members' mean ZILN logits ``[n, 3]`` (float64) for an :meth:`inputs` frame, in eval mode, the
        forward pass batched."""
        was_training = self.training
        self.eval()
        try:
            numeric, categorical = self.encoder.encode(frame)
            parts = [
                self(numeric[start : start + batch_size], categorical[start : start + batch_size]).double()
                for start in range(0, len(frame), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else torch.empty((0, 3), dtype=torch.float64)

    def raw_prediction(self, df: pd.DataFrame, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """(P(buys again), expected LTV) before calibration: the network's, blended with BG/NBD + Gamma-Gamma's
        and the naive baseline's by their weights. What the calibration is fitted on."""
        frame = self.inputs(df)
        logits = self._logits(frame, batch_size)
        return self._blend(logits, frame)

    def _blend(self, logits: torch.Tensor, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        p, expected = ziln_params(logits)[0].numpy(), ziln_expected_value(logits).numpy()
        if not self._blends:
            return p, expected
        w_b, w_n = self.btyd_weight, self.naive_weight
        p = (1 - w_b) * p + w_b * frame["btyd_prob_return"].to_numpy(np.float64)  # naive has no P(buys again)
        btyd, naive = (frame[c].to_numpy(np.float64) for c in ("btyd_expected_ltv", NAIVE))
        return p, mix(expected, btyd, naive, w_b, w_n)

    @property
    def _blends(self) -> bool:
        return self.btyd is not None and (self.btyd_weight > 0 or self.naive_weight > 0)

    def final_logits(self, df: pd.DataFrame, batch_size: int = 65536) -> torch.Tensor:
        """The ZILN logits of the served distribution: the members' mean, P(buys again) and the level moved to
        the blend with BG/NBD (if any) and then to the calibrated expected LTV (the lognormal's mu shifted, its
        sigma kept), so the expectation, the quantiles and P(buys again) all describe one distribution."""
        frame = self.inputs(df)
        logits = self._logits(frame, batch_size)
        p, target = self._blend(logits, frame)
        if not self.calibration.is_identity:
            target = self.calibration.calibrate(target)
        final = logits.clone()
        if self._blends:
            p = np.clip(p, 1e-9, 1 - 1e-9)
            final[:, 0] = torch.from_numpy(np.log(p / (1 - p)))
        current = ziln_expected_value(final).numpy()
        shift = np.log(np.maximum(target, 1e-300) / np.maximum(current, 1e-300))
        final[:, 1] += torch.from_numpy(np.where((target > 0) & (current > 0), shift, 0.0))
        return final

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 65536) -> pd.DataFrame:
        """Score ``df``: P(buys again), expected LTV and P10/P50/P90 of the horizon revenue (same index),
        calibrated."""
        logits = self.final_logits(df, batch_size)
        out = np.empty((len(df), len(PREDICTION_COLUMNS)), dtype=np.float64)
        out[:, 0] = ziln_params(logits)[0].numpy()
        out[:, 1] = ziln_expected_value(logits).numpy()
        out[:, 2:] = ziln_quantiles(logits, QUANTILES).numpy()
        return pd.DataFrame(out, index=df.index, columns=list(PREDICTION_COLUMNS))

    def predictive_distribution(self, df: pd.DataFrame, batch_size: int = 65536) -> pd.DataFrame:
        """The served ZILN mixture behind :meth:`predict_frame` per row: ``prob_return``, ``mu``, ``sigma``
        (revenue is 0 with probability 1 - prob_return, else LogNormal(mu, sigma)). For checks that need the
        whole distribution, e.g. how noisy a metric is on a population."""
        p, mu, sigma = (t.numpy() for t in ziln_params(self.final_logits(df, batch_size)))
        return pd.DataFrame({"prob_return": p, "mu": mu, "sigma": sigma}, index=df.index)

    def spec(self) -> dict[str, Any]:
        """JSON-able architecture + feature plan; with the state dict it rebuilds this module exactly."""
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "members": len(self.members),
            "btyd": None if self.btyd is None else self.btyd.to_spec(),
            "window": None if self.window is None else self.window.to_spec(),
            "btyd_weight": self.btyd_weight,
            "naive_weight": self.naive_weight,
            "features": self.encoder.spec(),
            "calibration": self.calibration.to_spec(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LtvNetwork:
        network = cls(
            FeatureEncoder.from_spec(spec["features"]),
            hidden=spec["hidden"],
            dropout=spec["dropout"],
            members=int(spec.get("members", 1)),
            btyd=BtydInputs.from_spec(spec.get("btyd")),
            window=HistoryWindow.from_spec(spec.get("window")),
        )
        network.calibration = MeanCalibration.from_spec(spec.get("calibration"))
        network.btyd_weight = float(spec.get("btyd_weight", 0.0))
        network.naive_weight = float(spec.get("naive_weight", 0.0))
        return network


def single_member_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict saved before ensembles (format 1: one network's layers at the top level) as member 0's."""
    return {k if k.startswith("encoder.") else f"members.0.{k}": v for k, v in state.items()}
