"""Settings of the purchase-propensity model: data (horizon, negatives, feature sources), the network, the fit,
the offline evaluation, and when a new version may replace the champion."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ltvfeed.cutoff import DEFAULT_PROPENSITY_HORIZON_DAYS
from ltvfeed.errors import UserError
from ltvfeed.training.registry import PromotionConfig

MODEL_NAME = "purchase_propensity"  # registered model: models:/purchase_propensity@champion
EXPERIMENT_NAME = "purchase_propensity"
DEFAULT_HORIZON_DAYS = DEFAULT_PROPENSITY_HORIZON_DAYS


@dataclass(frozen=True)
class PropensityConfig:
    """Everything that changes what is trained; logged as MLflow params (see :meth:`params`)."""

    # data
    negatives_per_positive: int = 4
    negative_popularity_power: float = 0.5  # negatives drawn with P(item) ~ (orders_i + 1) ** power; 0 = uniform
    popularity_days: int = 90  # look-back for item popularity (the negative sampler and the popularity baseline)
    user_features: Literal["feast", "marts"] = "feast"  # Feast training_frame (service ltv_model) or the mart
    ltv_model: str | None = "ltv"  # its predictions in marts.user_ltv_predictions become user features (if scored)
    # network
    embedding_dim: int = 16
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    history_terms: bool = True  # the user's spend share per category and price paid in the score (model.py)
    # fit
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    max_epochs: int = 40
    patience: int = 4  # epochs without validation improvement before stopping
    min_delta: float = 1e-4
    validation_fraction: float = 0.2  # of users; their rows only judge the fit (early stopping)
    oov_rate: float = 0.1  # share of training rows whose ids are hidden, so the out-of-vocabulary rows learn
    seed: int = 0
    num_threads: int = 1  # the network is tiny: more threads only contend on shared machines
    min_category_count: int = 5
    max_vocabulary: int = 1000
    # offline evaluation
    eval_k: int = 10
    max_eval_users: int = 5000  # users ranked against the whole item table (a seeded sample above this)

    def __post_init__(self) -> None:
        positive_ints = ("negatives_per_positive", "popularity_days", "embedding_dim", "batch_size", "max_epochs")
        for name in (*positive_ints, "eval_k", "max_eval_users", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"propensity config: {name} must be a whole number >= 1, got {value!r}")
        if self.patience < 1:
            raise UserError(f"propensity config: patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UserError(f"propensity config: validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not 0.0 <= self.oov_rate < 1.0:
            raise UserError(f"propensity config: oov_rate must be in [0, 1), got {self.oov_rate}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"propensity config: dropout must be in [0, 1), got {self.dropout}")
        if self.negative_popularity_power < 0:
            raise UserError("propensity config: negative_popularity_power must be >= 0")
        if self.user_features not in ("feast", "marts"):
            raise UserError(f"propensity config: user_features must be 'feast' or 'marts', got {self.user_features!r}")
        if any(h < 1 for h in self.hidden):
            raise UserError(f"propensity config: hidden layer sizes must be >= 1, got {self.hidden}")
        if self.seed < 0:
            raise UserError(f"propensity config: seed must be >= 0, got {self.seed}")

    def params(self) -> dict[str, Any]:
        """Flat, MLflow-loggable view of the settings."""
        return {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PropensityConfig:
        """Inverse of :meth:`params` for what :meth:`params` wrote (saved models keep their config)."""
        values = dict(params)
        if isinstance(values.get("hidden"), str):
            values["hidden"] = tuple(int(h) for h in values["hidden"].split(",") if h)
        elif values.get("hidden") is not None:
            values["hidden"] = tuple(values["hidden"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


class PropensityPromotionConfig(PromotionConfig):
    """The registry's promotion rule with ranking metrics of this model: NDCG@10 on the out-of-time holdout
    must improve by ``margin_gini``, AUC may drop by at most ``tolerance_spearman`` (the registry's field
    names are LTV-flavoured; the rule is the same). Env: LTVFEED_PROPENSITY_PROMOTION_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="LTVFEED_PROPENSITY_PROMOTION_", extra="ignore", frozen=True)

    gini_metric: str = Field("ndcg_at_10", description="Ranking metric that must improve")
    margin_gini: float = Field(0.005, ge=0, description="Minimum gain of gini_metric over the champion")
    spearman_metric: str = Field("auc", description="Metric that must not get (much) worse")
    tolerance_spearman: float = Field(0.01, ge=0, description="Largest allowed drop of spearman_metric")
