"""ZILN loss and predictive distribution, checked against arithmetic done by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import lognorm

from ltvfeed.training.ziln import ziln_expected_value, ziln_loss, ziln_params, ziln_quantiles

# softplus(x) = log(1 + e^x), so raw = log(e^s - 1) gives sigma = s exactly.
RAW_SIGMA_1 = math.log(math.e - 1)
RAW_SIGMA_2 = math.log(math.e**2 - 1)


def test_loss_matches_hand_computation() -> None:
    # Row 1: label 0, logit 0 -> p = 1/2: BCE = -log(1 - 1/2) = log 2; no regression term.
    # Row 2: label e (log y = 1), logit log 3 -> p = 3/4: BCE = -log(3/4);
    #        lognormal(mu=0, sigma=1) NLL at y = e: log y + log sigma + log(2 pi)/2 + (log y - mu)^2 / (2 sigma^2)
    #        = 1 + 0 + log(2 pi)/2 + 1/2.
    # Row 3: label 5, logit -log 4 -> p = 1/5: BCE = -log(1/5);
    #        lognormal(mu=1, sigma=2) NLL at 5 = log 5 + log 2 + log(2 pi)/2 + (log 5 - 1)^2 / 8.
    logits = torch.tensor(
        [[0.0, 3.0, 0.3], [math.log(3.0), 0.0, RAW_SIGMA_1], [-math.log(4.0), 1.0, RAW_SIGMA_2]], dtype=torch.float64
    )
    labels = torch.tensor([0.0, math.e, 5.0], dtype=torch.float64)
    row1 = math.log(2.0)
    row2 = -math.log(0.75) + 1.0 + 0.5 * math.log(2 * math.pi) + 0.5
    row3 = -math.log(0.2) + math.log(5.0) + math.log(2.0) + 0.5 * math.log(2 * math.pi) + (math.log(5.0) - 1.0) ** 2 / 8
    expected = (row1 + row2 + row3) / 3
    assert float(ziln_loss(logits, labels)) == pytest.approx(expected, rel=1e-12)


def test_loss_on_zero_labels_is_classification_only_and_has_finite_gradients() -> None:
    logits = torch.tensor([[2.0, 100.0, -50.0], [-1.0, -3.0, 40.0]], dtype=torch.float64, requires_grad=True)
    loss = ziln_loss(logits, torch.zeros(2, dtype=torch.float64))
    # -log(1 - sigmoid(z)) = log(1 + e^z)
    assert loss.item() == pytest.approx((math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))) / 2, rel=1e-12)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[:, 1:] == 0).all()  # zero labels must not move the lognormal part


def test_expected_value_is_p_times_lognormal_mean() -> None:
    logits = torch.tensor([[math.log(3.0), 0.0, RAW_SIGMA_1], [0.0, 2.0, RAW_SIGMA_2]], dtype=torch.float64)
    expected = [0.75 * math.exp(0.5), 0.5 * math.exp(2.0 + 2.0)]
    assert ziln_expected_value(logits).tolist() == pytest.approx(expected, rel=1e-12)
    p, mu, sigma = ziln_params(logits)
    assert p.tolist() == pytest.approx([0.75, 0.5])
    assert mu.tolist() == [0.0, 2.0]
    assert sigma.tolist() == pytest.approx([1.0, 2.0])


def test_mixture_quantiles() -> None:
    # p = 3/4: the lowest quarter of the mass is the zero spike.
    logits = torch.tensor([[math.log(3.0), 1.0, RAW_SIGMA_2]], dtype=torch.float64)
    q = ziln_quantiles(logits, [0.1, 0.25, 0.5, 0.9])[0].numpy()
    assert q[0] == 0.0 and q[1] == 0.0  # q <= 1 - p
    # q > 1 - p: lognormal quantile at (q - 1/4) / (3/4); scipy's lognorm(s=sigma, scale=e^mu) is independent.
    assert q[2] == pytest.approx(lognorm.ppf((0.5 - 0.25) / 0.75, s=2.0, scale=math.e), rel=1e-9)
    assert q[3] == pytest.approx(lognorm.ppf((0.9 - 0.25) / 0.75, s=2.0, scale=math.e), rel=1e-9)
    # The mixture CDF at each positive quantile gives back q.
    for level, value in zip([0.5, 0.9], q[2:], strict=True):
        assert 0.25 + 0.75 * lognorm.cdf(value, s=2.0, scale=math.e) == pytest.approx(level, rel=1e-9)


def test_quantiles_are_monotone_and_zero_for_unlikely_buyers() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(200, 3)) * 2)
    q = ziln_quantiles(logits, [0.1, 0.5, 0.9]).numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    p = torch.sigmoid(logits[:, 0]).numpy()
    assert (q[p < 0.5, 1] == 0).all() and (q[p > 0.5, 1] > 0).all()


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        ziln_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="rows"):
        ziln_loss(torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="quantile"):
        ziln_quantiles(torch.zeros(1, 3), [1.0])
