"""The classic models' predictions beside the LTV network's inputs: BG/NBD + Gamma-Gamma outputs (fitted on the
training rows) and the naive baseline's, to blend into the served prediction or to feed the network.

Why: on real logs (one churning cohort, two or three orders per customer, long gaps) the classic models encode
what a small network struggles to learn from raw RFM alone: how silence after a customer's own buying rhythm
means churn. Fitted on the training window and handed to the network as features (P(alive), P(buys in H),
expected purchases, expected order value and their product), they put the network's starting point at the
baseline's and let it learn the corrections, so its ranking should not fall below the baseline's.

The summary comes from the model's own RFM inputs in days (no order timestamps), so the served model needs
nothing beyond the ``ltv_model`` features: x = frequency - 1 repeat orders, T = tenure_days (days since first
seen: the first order for a transaction log, sign-up on a shop that records it), t_x = T - recency_days for
repeat customers, mean order value = monetary_total / frequency. The parameters travel in the model's spec.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.baselines import BgnbdParams, BtydBaseline, GammaGammaParams, NaiveBaseline

log = logging.getLogger(__name__)

RFM_COLUMNS = ("frequency", "tenure_days", "recency_days", "monetary_total")
# What the network receives: BtydBaseline.predict_summary's outputs under a btyd_ prefix.
OUTPUTS = ("prob_alive", "prob_return", "expected_purchases", "expected_order_value", "expected_ltv")
NAIVE = "naive_expected_ltv"  # past spend per day of tenure x H: the naive baseline, from the same inputs
COLUMNS = (*(f"btyd_{name}" for name in OUTPUTS), NAIVE)


def mix(network: np.ndarray, btyd: np.ndarray, naive: np.ndarray, w_btyd: float, w_naive: float) -> np.ndarray:
    """The served expected LTV: the network's with shares ``w_btyd`` of BG/NBD's and ``w_naive`` of naive's."""
    return (1 - w_btyd - w_naive) * network + w_btyd * btyd + w_naive * naive


def summary_from_days(df: pd.DataFrame) -> pd.DataFrame:
    """The BTYD summary (frequency, recency, T, monetary_value, is_customer) from the day-count RFM features."""
    missing = [c for c in RFM_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"BTYD inputs need column(s) {', '.join(missing)}")
    orders, tenure, silent, total = (
        np.nan_to_num(pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)) for c in RFM_COLUMNS
    )
    is_customer = orders > 0
    T = np.maximum(tenure, 0.0)
    repeat = np.maximum(orders - 1, 0.0)
    recency = np.where(repeat > 0, np.clip(T - silent, 0.0, T), 0.0)
    return pd.DataFrame(
        {
            "frequency": np.where(is_customer, repeat, 0.0),
            "recency": np.where(is_customer, recency, 0.0),
            "T": np.where(is_customer, T, 0.0),
            "monetary_value": np.divide(total, orders, out=np.zeros(len(df)), where=is_customer),
            "is_customer": is_customer,
        },
        index=df.index,
    )


@dataclass(frozen=True)
class BtydInputs:
    """Fitted BG/NBD + Gamma-Gamma parameters and the horizon they predict over."""

    horizon_days: int
    bgnbd: BgnbdParams
    gamma_gamma: GammaGammaParams

    @classmethod
    def fit(cls, df: pd.DataFrame, horizon_days: int) -> BtydInputs | None:
        """Fitted on the customers in ``df``; None (logged) when the frame lacks the RFM columns or the data
        cannot support the models (too few repeat customers): the network then learns without them."""
        try:
            baseline = BtydBaseline(horizon_days)
            summary = summary_from_days(df)
            baseline.fit_summary(summary[summary["is_customer"]])
        except UserError as exc:
            log.info("LTV network without BTYD inputs: %s", exc)
            return None
        assert baseline.bgnbd is not None and baseline.gamma_gamma is not None
        return cls(int(horizon_days), baseline.bgnbd, baseline.gamma_gamma)

    def add_to(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the BTYD and naive columns added (a copy); non-customers get zeros from BTYD."""
        baseline = BtydBaseline(self.horizon_days, bgnbd=self.bgnbd, gamma_gamma=self.gamma_gamma)
        predicted = baseline.predict_summary(summary_from_days(df))
        out = df.copy()
        for name in OUTPUTS:
            out[f"btyd_{name}"] = predicted[name].to_numpy(np.float64)
        out[NAIVE] = NaiveBaseline(self.horizon_days).predict(df)["expected_ltv"].to_numpy(np.float64)
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"horizon_days": self.horizon_days, "bgnbd": asdict(self.bgnbd), "gamma_gamma": asdict(self.gamma_gamma)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> BtydInputs | None:
        if not spec:
            return None
        return cls(int(spec["horizon_days"]), BgnbdParams(**spec["bgnbd"]), GammaGammaParams(**spec["gamma_gamma"]))
