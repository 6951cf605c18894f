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
from ltvfeed.training.btyd_inputs import BtydInputs
from ltvfeed.training.calibration import MeanCalibration
from ltvfeed.training.features import FeatureEncoder
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
    the BG/NBD + Gamma-Gamma outputs to the inputs before encoding (:mod:`ltvfeed.training.btyd_inputs`).
    ``calibration`` (fitted after training, see :mod:`ltvfeed.training.calibration`) rescales the predicted
    revenue distribution."""

    def __init__(
        self,
        encoder: FeatureEncoder,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        members: int = 1,
        btyd: BtydInputs | None = None,
    ) -> None:
        super().__init__()
        if members < 1:
            raise UserError(f"an LTV network needs at least one member, got {members}")
        self.encoder = encoder
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.btyd = btyd
        self.members = nn.ModuleList(LtvMember(encoder, self.hidden, self.dropout) for _ in range(members))
        self.calibration = MeanCalibration()

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0](numeric, categorical)
        return torch.stack([member(numeric, categorical) for member in self.members]).mean(dim=0)

    def inputs(self, df: pd.DataFrame) -> pd.DataFrame:
        """The frame the encoder reads: ``df`` plus the BTYD columns when the network uses them."""
        return df if self.btyd is None else self.btyd.add_to(df)

    def encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.encode(self.inputs(df))

    @torch.inference_mode()
    def _logits(self, df: pd.DataFrame, batch_size: int) -> torch.Tensor:
        """ZILN logits ``[n, 3]`` (float64) for ``df``, in eval mode, the forward pass batched."""
        was_training = self.training
        self.eval()
        try:
            numeric, categorical = self.encode(df)
            parts = [
                self(numeric[start : start + batch_size], categorical[start : start + batch_size]).double()
                for start in range(0, len(df), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else torch.empty((0, 3), dtype=torch.float64)

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 65536) -> pd.DataFrame:
        """Score ``df``: P(buys again), expected LTV and P10/P50/P90 of the horizon revenue (same index),
        calibrated."""
        logits = self._logits(df, batch_size)
        out = np.empty((len(df), len(PREDICTION_COLUMNS)), dtype=np.float64)
        out[:, 0] = ziln_params(logits)[0].numpy()
        out[:, 1] = ziln_expected_value(logits).numpy()
        out[:, 2:] = ziln_quantiles(logits, QUANTILES).numpy()
        if not self.calibration.is_identity:
            out[:, 1:] *= self.calibration.factor(out[:, 1])[:, None]
        return pd.DataFrame(out, index=df.index, columns=list(PREDICTION_COLUMNS))

    def predictive_distribution(self, df: pd.DataFrame, batch_size: int = 65536) -> pd.DataFrame:
        """The calibrated ZILN mixture behind :meth:`predict_frame` per row: ``prob_return``, ``mu``, ``sigma``
        (revenue is 0 with probability 1 - prob_return, else LogNormal(mu, sigma)). For checks that need the
        whole distribution, e.g. how noisy a metric is on a population."""
        logits = self._logits(df, batch_size)
        p, mu, sigma = (t.numpy() for t in ziln_params(logits))
        if not self.calibration.is_identity:
            mu = mu + np.log(self.calibration.factor(ziln_expected_value(logits).numpy()))
        return pd.DataFrame({"prob_return": p, "mu": mu, "sigma": sigma}, index=df.index)

    def spec(self) -> dict[str, Any]:
        """JSON-able architecture + feature plan; with the state dict it rebuilds this module exactly."""
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "members": len(self.members),
            "btyd": None if self.btyd is None else self.btyd.to_spec(),
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
        )
        network.calibration = MeanCalibration.from_spec(spec.get("calibration"))
        return network


def single_member_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict saved before ensembles (format 1: one network's layers at the top level) as member 0's."""
    return {k if k.startswith("encoder.") else f"members.0.{k}": v for k, v in state.items()}
