"""BG/NBD, Pareto/NBD and Gamma-Gamma: likelihoods, maximum-likelihood fits, conditional predictions.

Times here are in weeks (the models' parameters are then of a readable size); callers convert.
(x, tx, T) = (repeat purchases, recency, age) as in Fader, Hardie and Lee (2005).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import betaln, gammaln, hyp2f1

Params = tuple[float, float, float, float]


def bgnbd_loglik(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD, (r, alpha, a, b)."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + tx), -np.inf)
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4))


def _pnbd_log_a0(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, s, beta = params
    # The series is taken in the variable that stays in [0, 1): w = (max - min) / (max + t). The function,
    # 2F1(r+s+x, b; r+s+x+1; w) with b = s+1 (alpha >= beta) or r+x, is taken by Euler's transformation,
    # (1-w)^(1-b) 2F1(1, r+s+x+1-b; r+s+x+1; w), with the power in logs: the direct form overflows after a few
    # hundred repeat purchases, a frequent flyer's history.
    hi, lo = max(alpha, beta), min(alpha, beta)
    power = -s if alpha >= beta else 1.0 - r - x
    other = r + x if alpha >= beta else s + 1.0
    rsx = r + s + x
    q1, q2 = hi + tx, hi + T
    w1, w2 = (hi - lo) / q1, (hi - lo) / q2
    l1 = power * np.log1p(-w1) + np.log(hyp2f1(1.0, other, rsx + 1.0, w1)) - rsx * np.log(q1)
    l2 = power * np.log1p(-w2) + np.log(hyp2f1(1.0, other, rsx + 1.0, w2)) - rsx * np.log(q2)
    # A0 = e^l1 - e^l2 >= 0; it is 0 for a purchase at "now" (tx == T), floored to keep logs finite.
    return np.asarray(l1 + np.log(np.maximum(-np.expm1(np.minimum(l2 - l1, 0.0)), 1e-300)))


def pnbd_parts(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-likelihood, P(alive)) of Pareto/NBD, (r, alpha, s, beta), per customer."""
    r, alpha, s, beta = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive_term = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    a2 = np.logaddexp(alive_term, np.log(s) + _pnbd_log_a0(params, x, tx, T) - np.log(r + s + x))
    return a1 + a2, np.exp(alive_term - a2)


def pnbd_alive(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive) of Pareto/NBD: the likelihood's terms that do not cancel in the ratio."""
    r, _, s, beta = params
    alive_term = -(r + x) * np.log(params[1] + T) - s * np.log(beta + T)
    gone = np.log(s) + _pnbd_log_a0(params, x, tx, T) - np.log(r + s + x)
    with np.errstate(over="ignore"):  # long gone: e^(gone - alive) overflows, and P(alive) is 0
        return np.asarray(1.0 / (1.0 + np.exp(gone - alive_term)))


def pnbd_loglik(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    return pnbd_parts(params, x, tx, T)[0]


def _compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows and their counts: many customers share (x, tx, T) and the fit is per distinct row."""
    stacked = np.column_stack(cols)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(np.float64)


# Log-parameter bounds (shape, scale, shape, scale). Past a shape of e^5 a gamma is nearly a point mass
# (no heterogeneity left) and the hypergeometric series get slow, so the search stops there.
BOUNDS = [(-7.0, 5.0), (-7.0, 10.0), (-7.0, 5.0), (-7.0, 10.0)]


def _fit(loglik: Callable[..., np.ndarray], cols: list[np.ndarray], weights: np.ndarray, x0: np.ndarray) -> Params:
    total = float(weights.sum())

    def nll(logp: np.ndarray) -> float:
        p = np.exp(logp)
        with np.errstate(all="ignore"):
            ll = loglik(tuple(float(v) for v in p), *cols)
        val = -float(weights @ ll) / total
        return val if np.isfinite(val) else 1e10

    from scipy.optimize import minimize  # here: ~0.2 s of every start to import, and only fitting uses it

    best = None
    for start in (x0, x0 + 0.5, x0 - 0.5):
        res = minimize(nll, start, method="L-BFGS-B", bounds=BOUNDS, options={"ftol": 1e-12, "gtol": 1e-8})
        if best is None or res.fun < best.fun:
            best = res
        if best.success and best.fun < 1e10:
            break  # the other starts are for when the first one fails
    assert best is not None
    if best.fun >= 1e10:
        raise ValueError("the purchase-count model did not converge on this data")
    p = np.exp(best.x)
    return float(p[0]), float(p[1]), float(p[2]), float(p[3])


def fit_bgnbd(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> Params:
    cols, w = _compress(x, tx, T)
    return _fit(bgnbd_loglik, cols, w, np.log([0.5, max(float(np.mean(T)), 1e-3) / 4, 1.0, 2.0]))


def fit_pnbd(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> Params:
    cols, w = _compress(x, tx, T)
    return _fit(pnbd_loglik, cols, w, np.log([0.5, max(float(np.mean(T)), 1e-3) / 4, 0.5, 10.0]))


def bgnbd_alive(params: Params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params
    log_odds = np.log(a / np.maximum(b + x - 1, 1e-300)) + (r + x) * np.log((alpha + T) / (alpha + tx))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_odds, 700.0))), 1.0)


def bgnbd_expected_if_alive(params: Params, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T + t] | x, tx, T, alive at T] under BG/NBD."""
    r, alpha, a, b = params
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    # (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) by Euler's transformation, (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z):
    # the same value, where the direct form's function overflows after a few hundred repeat purchases.
    tail = 1.0 - np.exp((a - 1) * np.log1p(-z)) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    return np.asarray(np.maximum(head * tail, 0.0))


def bgnbd_expected(params: Params, t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T + t] | x, tx, T] under BG/NBD."""
    return bgnbd_expected_if_alive(params, t, x, T) * bgnbd_alive(params, x, tx, T)


def pnbd_expected(params: Params, t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray,
                  alive: np.ndarray | None = None) -> np.ndarray:
    """E[purchases in (T, T + t] | x, tx, T] under Pareto/NBD."""
    r, alpha, s, beta = params
    if alive is None:
        alive = pnbd_parts(params, x, tx, T)[1]
    log_growth = np.log1p(t / (beta + T))
    # (1 - ((beta+T)/(beta+T+t))^(s-1)) / (s-1), with its limit log-growth at s = 1.
    span = -np.expm1(-(s - 1) * log_growth) / (s - 1) if abs(s - 1) > 1e-9 else log_growth
    return np.asarray(alive * (r + x) * (beta + T) / (alpha + T) * span)


# 8-point Gauss-Legendre on [0, 1]: the discount integrals are smooth, 8 nodes are exact to ~1e-8.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_X, _GL_W = (_GL_X + 1) / 2, _GL_W / 2


def pnbd_discount_ratio(s: float, beta: float, T: np.ndarray, t: float, rate: float) -> np.ndarray:
    """(discounted / undiscounted) expected purchases over (0, t] for a customer alive at T (Pareto/NBD timing).

    The purchase rate of a customer alive now decays like ((beta+T)/(beta+T+u))^s as they may leave;
    `rate` is the continuous discount rate per week.
    """
    if rate <= 0 or t <= 0:
        return np.ones_like(T, dtype=np.float64)
    u = _GL_X * t
    shape = np.exp(-s * np.log1p(u[None, :] / (beta + T[:, None])))
    return np.asarray((shape @ (_GL_W * np.exp(-rate * u))) / (shape @ _GL_W))


def gg_loglik(params: tuple[float, float, float], x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Gamma-Gamma log-likelihood of the mean spend m over x purchases, (p, q, gamma)."""
    p, q, g = params
    px = p * x
    return np.asarray(gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(g) + (px - 1) * np.log(m)
                      + px * np.log(x) - (px + q) * np.log(g + m * x))


def fit_gg(x: np.ndarray, m: np.ndarray) -> tuple[float, float, float]:
    use = (x > 0) & (m > 0)
    if use.sum() < 10:
        raise ValueError(f"Gamma-Gamma needs 10 or more customers with a repeat purchase, got {int(use.sum())}")
    xs, ms = x[use], m[use]
    x0 = np.log([2.0, 3.0, float(np.mean(ms))])

    def nll(logp: np.ndarray) -> float:
        p, q, g = np.exp(logp)
        with np.errstate(all="ignore"):
            v = -float(np.mean(gg_loglik((p, q, g), xs, ms)))
        return v if np.isfinite(v) else 1e10

    from scipy.optimize import minimize  # here: ~0.2 s of every start to import, and only fitting uses it

    # q > 1 keeps the population mean spend finite, which the LTV needs.
    res = minimize(nll, x0, method="L-BFGS-B", bounds=[(-9.0, 9.0), (np.log(1.01), 9.0), (-20.0, 20.0)])
    p, q, g = np.exp(res.x)
    return float(p), float(q), float(g)


def gg_expected(params: tuple[float, float, float], x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[spend per purchase | x purchases of mean m]: the posterior mean, shrunk towards the population."""
    p, q, g = params
    return np.asarray((g + m * x) * p / (p * x + q - 1))
