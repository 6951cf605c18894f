"""Zero-inflated lognormal (ZILN) head: loss and predictive distribution.

After Wang, Liu & Miao (2019), "A Deep Probabilistic Model for Customer Lifetime Value Prediction", and the
ideas of Google's ``lifetime_value`` package. The network emits three numbers per user:

- ``logit``: P(revenue > 0 in the horizon) = sigmoid(logit);
- ``mu`` and ``sigma = softplus(raw)``: the lognormal of the revenue given it is positive.

Revenue is a mixture: 0 with probability 1 - p, LogNormal(mu, sigma) with probability p. Besides the mean
(what the reference computes) we give mixture quantiles, so the feed can see how uncertain an LTV is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Floor on sigma: a degenerate lognormal would make the likelihood unbounded (sqrt of Keras' epsilon, as in
# the reference implementation).
SIGMA_FLOOR = math.sqrt(1e-7)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def ziln_params(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``[n, 3]`` logits into (p, mu, sigma), each of shape ``[n]``."""
    _check_logits(logits)
    p = torch.sigmoid(logits[:, 0])
    mu = logits[:, 1]
    sigma = torch.clamp(F.softplus(logits[:, 2]), min=SIGMA_FLOOR)
    return p, mu, sigma


def ziln_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of BCE(label > 0) + [label > 0] * lognormal negative log-likelihood(label).

    Zero labels only teach the classifier; positive ones teach both parts. Labels must be >= 0.
    """
    _check_logits(logits)
    labels = labels.reshape(-1).to(logits.dtype)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows, logits {logits.shape[0]}")
    positive = (labels > 0).to(logits.dtype)
    classification = F.binary_cross_entropy_with_logits(logits[:, 0], positive, reduction="none")

    mu = logits[:, 1]
    sigma = torch.clamp(F.softplus(logits[:, 2]), min=SIGMA_FLOOR)
    # log(1) = 0 keeps zero labels finite; their term is masked out anyway.
    log_y = torch.log(torch.where(labels > 0, labels, torch.ones_like(labels)))
    nll = log_y + torch.log(sigma) + _HALF_LOG_2PI + 0.5 * ((log_y - mu) / sigma) ** 2
    return (classification + positive * nll).mean()


def ziln_expected_value(logits: torch.Tensor) -> torch.Tensor:
    """E[revenue] = p * exp(mu + sigma^2 / 2), shape ``[n]``."""
    p, mu, sigma = ziln_params(logits)
    return p * torch.exp(mu + 0.5 * sigma**2)


def ziln_quantiles(logits: torch.Tensor, quantiles: Sequence[float]) -> torch.Tensor:
    """Quantiles of the mixture, shape ``[n, len(quantiles)]``.

    The mixture CDF is (1 - p) + p * LogNormalCDF(x) for x > 0 and jumps from 0 to 1 - p at x = 0, so the
    q-quantile is 0 when q <= 1 - p, else the lognormal's quantile at (q - (1 - p)) / p.
    """
    p, mu, sigma = ziln_params(logits)
    columns = []
    for q in quantiles:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        zero_part = 1.0 - p
        u = (q - zero_part) / p
        # Clamp keeps ndtri finite where u <= 0; those rows are replaced by 0 below.
        u_safe = torch.clamp(u, min=1e-12, max=1.0 - 1e-12)
        value = torch.exp(mu + sigma * torch.special.ndtri(u_safe))
        columns.append(torch.where(q <= zero_part, torch.zeros_like(value), value))
    return torch.stack(columns, dim=1)


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[1] != 3:
        raise ValueError(f"ZILN logits must have shape [n, 3], got {tuple(logits.shape)}")
