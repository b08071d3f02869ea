"""Transferability scores of frozen features, with no training: pure functions of arrays.

LogME (You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for
Transfer Learning", ICML 2021, Algorithm 1; the fixed-point form in t = alpha / beta from
You et al., "Ranking and Tuning Pre-trained Models", arXiv 2110.10545; reference code
github.com/thuml/LogME, LogME.py `_fit_fixed_point`): the log marginal likelihood of each
class's one-hot target under Bayesian linear regression on the features, maximised over
the prior precision alpha and the noise precision beta, per sample, averaged over classes.
Differences from that code, each so that the score is the true maximum evidence (checked
against a generic optimiser of the marginal likelihood in tests/screen): when F has rank
k < d (n < d) log|A| counts the d - k zero directions too (thuml/LogME issue 23, PR 24);
no 1e-5 added to the updates' denominators (it biases alpha when ||m||^2 is small), the
boundary cases it guarded handled apart; iterated to convergence, not at most 11 steps.

k-NN accuracy and the converged linear probe's accuracy, which Sorkhei et al. (2025)
found rank backbones as well as the fancier scores.
"""

from __future__ import annotations

import numpy as np

_TOLERANCE = 1e-9  # relative change of t = alpha / beta at which the fixed point has converged
_GAIN = 1e-12  # per-sample evidence gained by a step below which going on is pointless
_MAX_ITERATIONS = 1000  # usually a few steps; many only near a boundary (alpha or beta -> inf)
_RANK_CUTOFF = 1e-10  # eigenvalues of F^T F below this share of the largest count as zero


def _spectrum(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero eigenvalues sigma (k,) of F^T F, and the targets' coordinates (k, c) on
    F's left singular vectors U: all that the evidence needs of F."""
    n, d = features.shape
    if n > d:  # the d x d Gram matrix is cheaper than F's SVD, as in the reference code
        sigma, v = np.linalg.eigh(features.T @ features)
        keep = sigma > _RANK_CUTOFF * sigma.max()  # eigh's rounding: tiny, even negative
        sigma, v = sigma[keep], v[:, keep]
        coordinates = (v.T @ (features.T @ targets)) / np.sqrt(sigma)[:, None]  # U = F V / s
        return sigma, coordinates
    u, s, _ = np.linalg.svd(features, full_matrices=False)  # n x min(n, d): the n x n form
    sigma = s**2
    keep = sigma > _RANK_CUTOFF * sigma.max()
    return sigma[keep], u[:, keep].T @ targets


def _fit_terms(t: float, sigma: np.ndarray, z2: np.ndarray, outside: float):
    """At t = alpha / beta: gamma (the effective number of parameters), ||m||^2 and the
    residual ||F m - y||^2 of the posterior mean m, in F's singular basis. `outside` is
    the part of ||y||^2 off F's column space, which no m can fit."""
    gamma = float(np.sum(sigma / (sigma + t)))
    m2 = float(np.sum(sigma * z2 / (sigma + t) ** 2))
    residual = float(np.sum(z2 * (t / (sigma + t)) ** 2) + outside)
    return gamma, m2, residual


def _log_evidence(alpha: float, beta: float, sigma: np.ndarray, terms, n: int) -> float:
    """log N(y; 0, F F^T / alpha + I / beta), exact for any alpha, beta given `terms` at
    t = alpha / beta (the paper's equation, with m the posterior mean there)."""
    _, m2, residual = terms
    # d/2 log alpha - 1/2 log|alpha I + beta F^T F|: F's d - k null directions cancel
    log_det_ratio = -0.5 * float(np.sum(np.log1p(sigma * beta / alpha)))
    return float(
        0.5 * n * np.log(beta / (2 * np.pi)) + log_det_ratio - 0.5 * (beta * residual + alpha * m2)
    )


def _max_evidence(sigma: np.ndarray, z: np.ndarray, y2: float, n: int) -> float:
    """MacKay's fixed point (the paper's Algorithm 1) for one target with ||y||^2 = y2,
    then its maximum log evidence per sample."""
    if y2 <= 0:
        raise ValueError("a target of zeros has no finite evidence: every F fits it exactly")
    z2 = z**2
    outside = max(y2 - float(np.sum(z2)), 0.0)  # rounding can make it a hair below zero
    if outside >= y2 * (1 - _RANK_CUTOFF):
        # y off F's column space: the evidence grows as alpha -> inf (w = 0), to y's under
        # white noise alone, beta = n / ||y||^2; the updates would divide by ||m||^2 = 0
        return float(-0.5 * (np.log(2 * np.pi * y2 / n) + 1))
    t, evidence = 1.0, -np.inf  # alpha = beta = 1, the reference's start
    terms = _fit_terms(t, sigma, z2, outside)
    for _ in range(_MAX_ITERATIONS):
        gamma, m2, residual = terms
        alpha, beta = gamma / m2, (n - gamma) / residual
        if not (np.isfinite(alpha) and np.isfinite(beta) and alpha > 0 and beta > 0):
            break  # alpha or beta on its way to infinity, as far as floats go: keep the last
        terms = _fit_terms(alpha / beta, sigma, z2, outside)
        previous, evidence = evidence, _log_evidence(alpha, beta, sigma, terms, n)
        # converged, or creeping to a boundary (alpha or beta -> inf) with nothing to gain
        if abs(alpha / beta - t) <= _TOLERANCE * t or evidence - previous <= _GAIN * n:
            break
        t = alpha / beta
    return evidence / n


def logme_single(features: np.ndarray, target: np.ndarray) -> float:
    """The maximum log evidence per sample of one real target (n,) on features (n, d)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64).reshape(-1, 1)
    sigma, z = _spectrum(f, y)
    return _max_evidence(sigma, z[:, 0], float(np.sum(y**2)), len(y))


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """LogME: the mean over classes of the maximum log evidence per sample of each class's
    one-hot target. Higher is better; comparable across backbones on the same labels."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
        found = f"{labels.min()}..{labels.max()}"
        raise ValueError(f"labels must lie in [0, {num_classes}); got {found}")
    # a class with no example has the target y = 0, fit exactly by any features (evidence
    # +inf with no guard): it says nothing of the features, so only present classes count
    present = np.unique(labels)
    one_hot = (labels[:, None] == present[None, :]).astype(np.float64)
    sigma, z = _spectrum(f, one_hot)  # one decomposition of F for every class
    evidences = [
        _max_evidence(sigma, z[:, j], float(np.sum(one_hot[:, j])), len(labels))
        for j in range(len(present))
    ]
    return float(np.mean(evidences))


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, k: int = 5
) -> float:
    """Accuracy on val of a k-nearest-neighbour vote among train's features."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Euclidean on features standardised by train's mean and std, the view the linear probe
    # has of them (one scale per feature), rather than cosine on the raw features: a few
    # large-valued channels of a pooled ReLU output would otherwise decide every distance.
    # Brute force is exact and deterministic; a tied vote goes to the smallest class label
    # (scikit-learn's argmax over the classes' votes).
    neighbours = KNeighborsClassifier(n_neighbors=min(k, len(train_y)), algorithm="brute")
    model = make_pipeline(StandardScaler(), neighbours).fit(train_x, train_y)
    return float(np.mean(model.predict(val_x) == np.asarray(val_y)))


def fit_probe(x: np.ndarray, y: np.ndarray, c: float = 1.0, class_weight: str = "none"):
    """Thaw's converged linear probe, the one protocol the screen, the freeze-depth curve
    and the final stage's probe candidate share: standardised multinomial logistic
    regression by L-BFGS to convergence, L2 strength 1/C. `class_weight` "balanced" is
    scikit-learn's rule, the one the train step uses (loop.class_weights: n / (k n_c))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    weights = None if class_weight == "none" else class_weight
    regression = LogisticRegression(C=c, max_iter=5000, class_weight=weights)
    return make_pipeline(StandardScaler(), regression).fit(x, y)


def probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
) -> float:
    """The best val accuracy over C in `grid` of the converged probe (`fit_probe`), with no
    class weighting."""
    fits = (fit_probe(train_x, train_y, c) for c in grid)
    return max(float(np.mean(f.predict(val_x) == np.asarray(val_y))) for f in fits)


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two rankings' scores; nan when it is undefined (fewer than
    two pairs, or either side constant), without scipy's warning."""
    from scipy.stats import kendalltau

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b).statistic)  # tau-b, scipy's default: ties on either side
