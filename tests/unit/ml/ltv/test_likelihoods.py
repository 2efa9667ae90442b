"""The closed-form likelihoods against direct numerical integration over the latent rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from ml.ltv import base


def _gamma_pdf(v: float, shape: float, rate: float) -> float:
    return float(stats.gamma.pdf(v, shape, scale=1 / rate))


_U, _W = np.polynomial.legendre.leggauss(600)
_U, _W = (_U + 1) / 2, _W / 2


def _expect(h, *dists):
    """E[h(v1, v2, ...)] over independent latent rates by quadrature in probability space (v = F^-1(u))."""
    grids = np.meshgrid(*[d.ppf(_U) for d in dists], indexing="ij")
    weights = np.ones_like(grids[0])
    for i in range(len(dists)):
        weights = weights * _W.reshape([-1 if j == i else 1 for j in range(len(dists))])
    return float(np.sum(h(*grids) * weights))


@pytest.mark.parametrize("x,tx,T", [(0, 0.0, 30.0), (1, 5.0, 30.0), (4, 20.0, 25.0), (2, 12.0, 12.0)])
def test_bgnbd_likelihood_matches_the_integral_over_lambda_and_p(x, tx, T):
    r, alpha, a, b = 0.7, 5.0, 1.3, 2.5

    def h(lam, p):
        alive = (1 - p) ** x * lam ** x * np.exp(-lam * T)
        gone = p * (1 - p) ** (x - 1) * lam ** x * np.exp(-lam * tx) if x > 0 else 0.0
        return alive + gone

    want = _expect(h, stats.gamma(r, scale=1 / alpha), stats.beta(a, b))
    got = base.bgnbd_loglik((r, alpha, a, b), np.array([x]), np.array([tx]), np.array([T]))[0]
    assert got == pytest.approx(np.log(want), abs=2e-3)


@pytest.mark.parametrize("params", [(0.6, 8.0, 0.7, 12.0), (0.9, 14.0, 1.2, 6.0)])  # alpha < beta, alpha > beta
@pytest.mark.parametrize("x,tx,T", [(0, 0.0, 30.0), (1, 5.0, 30.0), (5, 28.0, 30.0)])
def test_pareto_nbd_likelihood_matches_the_integral_over_lambda_and_mu(params, x, tx, T):
    r, alpha, s, beta = params

    def h(lam, mu):
        total = lam + mu
        alive = lam ** x * np.exp(-total * T)
        gone = lam ** x * mu / total * (np.exp(-total * tx) - np.exp(-total * T))
        return alive + gone

    want = _expect(h, stats.gamma(r, scale=1 / alpha), stats.gamma(s, scale=1 / beta))
    ll, alive = base.pnbd_parts(params, np.array([float(x)]), np.array([tx]), np.array([T]))
    assert ll[0] == pytest.approx(np.log(want), abs=2e-3)
    assert 0 < alive[0] <= 1


def test_pareto_nbd_alive_is_one_half_way_textbook_cases():
    params = (0.55, 10.58, 0.61, 11.67)  # Fader-Hardie CDNOW estimates
    x = np.array([0.0, 2.0, 2.0])
    tx = np.array([0.0, 30.43, 5.0])
    T = np.array([38.86, 38.86, 38.86])
    _, alive = base.pnbd_parts(params, x, tx, T)
    # A recent repeat buyer is likelier alive than one who has not bought since week 5.
    assert alive[1] > alive[2] and alive[1] > 0.8 and alive[2] < 0.5


def test_gamma_gamma_likelihood_matches_the_integral_over_nu():
    p, q, g = 6.0, 4.0, 15.0
    for x, m in [(1, 20.0), (3, 35.0), (10, 12.0)]:
        def inner(nu: float, x: int = x, m: float = m) -> float:
            # x purchases of mean m: their sum x*m is gamma(p*x, nu); density of the mean is x times it.
            return x * _gamma_pdf(x * m, p * x, nu) * _gamma_pdf(nu, q, g)

        want, _ = integrate.quad(inner, 0, 5, epsabs=1e-14, epsrel=1e-10, limit=200)
        got = base.gg_loglik((p, q, g), np.array([float(x)]), np.array([m]))[0]
        assert got == pytest.approx(np.log(want), abs=1e-6)


def test_bgnbd_expectation_matches_simulation_of_one_customer_type():
    params = (0.5, 6.0, 0.8, 3.0)
    rng = np.random.default_rng(0)
    x, tx, T, t = 3.0, 20.0, 30.0, 26.0
    # Posterior draws given alive (lambda ~ Gamma(r+x, alpha+T), p ~ Beta(a, b+x)), mixed with P(alive).
    n = 200_000
    alive = rng.random(n) < base.bgnbd_alive(params, np.array([x]), np.array([tx]), np.array([T]))[0]
    lam = rng.gamma(params[0] + x, 1 / (params[1] + T), n)
    p = rng.beta(params[2], params[3] + x, n)
    counts = np.minimum(rng.poisson(lam * t), rng.geometric(p))
    want = float(np.mean(np.where(alive, counts, 0)))
    got = base.bgnbd_expected(params, t, np.array([x]), np.array([tx]), np.array([T]))[0]
    assert got == pytest.approx(want, rel=0.02)
