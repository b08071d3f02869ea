"""The screen's scores: LogME against the marginal likelihood computed directly, and every
score ranking separable features above the same features with shuffled labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from pipeline.screen import scores


def direct_max_evidence(f: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """max over (log alpha, log beta) of log N(y; 0, F F^T / alpha + I / beta), per sample,
    by a generic optimiser from several starts: nothing shared with LogME's fixed point."""
    n = len(y)
    gram = f @ f.T

    def negative(p: np.ndarray) -> float:
        covariance = gram * np.exp(-p[0]) + np.eye(n) * np.exp(-p[1])
        return -multivariate_normal.logpdf(y, mean=np.zeros(n), cov=covariance)

    options = {"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000}
    starts = [(0.0, 0.0), (3.0, 3.0), (-3.0, 3.0), (3.0, -3.0)]
    runs = [minimize(negative, s, method="Nelder-Mead", options=options) for s in starts]
    best = min(runs, key=lambda r: r.fun)
    return -best.fun / n, best.x


def one_hot_case(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), (rng.integers(0, 3, size=n) == 0).astype(np.float64)


@pytest.mark.parametrize(("n", "d", "seed"), [(40, 5, 0), (12, 30, 0)], ids=["n>d", "n<d"])
def test_logme_is_the_maximum_marginal_likelihood(n, d, seed):
    """A wrong fixed point (or log|A| missing F's null directions when n < d, the reference
    code's slip) lands away from the optimum a generic optimiser finds."""
    f, y = one_hot_case(n, d, seed)
    expected, optimum = direct_max_evidence(f, y)
    assert np.all(np.abs(optimum) < 15), optimum  # an interior maximum: a known answer
    assert scores.logme_single(f, y) == pytest.approx(expected, abs=1e-6)


def test_logme_of_a_target_off_the_features_span_is_white_noise_evidence():
    """y orthogonal to F's columns: the maximum sits at alpha -> inf (w = 0), which the
    optimiser approaches and the closed form reaches."""
    f, y = one_hot_case(40, 5, 1)
    q, _ = np.linalg.qr(f)
    y = y - q @ (q.T @ y)
    expected, optimum = direct_max_evidence(f, y)
    assert optimum[0] > 15, optimum
    assert scores.logme_single(f, y) == pytest.approx(expected, abs=1e-6)


def test_logme_of_an_exactly_fitting_target_is_the_noiseless_limit():
    """n < d, F of full row rank: here the maximum sits at beta -> inf, which the fixed point
    creeps towards until a step gains nothing."""
    f, y = one_hot_case(12, 30, 2)
    expected, optimum = direct_max_evidence(f, y)
    assert optimum[1] > 15, optimum
    assert scores.logme_single(f, y) == pytest.approx(expected, abs=1e-6)


def separable(seed: int = 0, n: int = 300, d: int = 16, classes: int = 3):
    """Class means far apart against unit noise: linearly separable, almost surely."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centers = 4.0 * rng.normal(size=(classes, d))
    return centers[labels] + rng.normal(size=(n, d)), labels, rng.permutation(labels)


def test_logme_averages_the_classes_one_hot_targets():
    f, labels, _ = separable(n=60, d=8)
    per_class = [scores.logme_single(f, (labels == c).astype(float)) for c in range(3)]
    assert scores.logme(f, labels, 3) == pytest.approx(np.mean(per_class), abs=1e-10)
    # a class with no example says nothing of the features: it is left out, not +inf
    assert scores.logme(f, labels, 5) == pytest.approx(np.mean(per_class), abs=1e-10)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        scores.logme(f, labels, 2)


def test_every_score_ranks_separable_features_above_shuffled_labels():
    f, labels, shuffled = separable()
    train, val = slice(0, 200), slice(200, None)
    assert scores.logme(f, labels, 3) > scores.logme(f, shuffled, 3) + 0.2
    for score in (scores.knn_accuracy, scores.probe_accuracy):
        assert score(f[train], labels[train], f[val], labels[val]) > 0.95, score
        assert score(f[train], shuffled[train], f[val], shuffled[val]) < 0.55, score


def test_knn_standardises_each_feature_by_train():
    """One informative feature beside a noise feature a thousand times larger: raw distances
    would follow the noise; standardised ones weigh both alike."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=400)
    informative = 3.0 * labels + 0.3 * rng.normal(size=400)
    f = np.stack([informative, 1000.0 * rng.normal(size=400)], axis=1)
    accuracy = scores.knn_accuracy(f[:300], labels[:300], f[300:], labels[300:], k=5)
    assert accuracy > 0.85
    assert accuracy == scores.knn_accuracy(f[:300], labels[:300], f[300:], labels[300:], k=5)


def test_kendall_tau():
    assert scores.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert scores.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert scores.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(scores.kendall_tau([1.0], [2.0]))
    assert math.isnan(scores.kendall_tau([1, 2, 3], [5, 5, 5]))
