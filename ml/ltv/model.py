"""The served lifetime-value model, "contrail": Pareto/NBD and BG/NBD counts, Gamma-Gamma spend, and a
correction chosen on an inner time split of the calibration period.

Time unit inside is the week; the public API speaks days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy.special import gammainc, gammaincinv, hyp2f1

from ml.ltv import base, kernels
from ml.ltv.summary import summarise
from ml.ltv.types import Prediction, Summary

WEEK = 7.0
MIN_CUSTOMERS = 20
MIN_REPEATERS = 10
INTERVAL = 0.8  # the width of the ltv_lower..ltv_upper interval
METHODS = ("pareto/nbd", "bg/nbd", "mixture", "corrected")  # what `LTVModel.method` can be
FEATURES = ("pnbd_alive", "log_frequency", "recency_ratio", "log_monetary", "log_age", "bg_vs_pnbd")
RIDGE = 1.0
# (indexes of unique rows, each row's position among them): see LTVModel._counts.
Same = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class InnerSplit:
    """The calibration period cut in two: summaries at the inner cut-off and the repeat purchases after it."""

    summary: Summary
    actual: np.ndarray
    horizon_days: float


def _columns(pn_alive: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray, m: np.ndarray,
             e_pn: np.ndarray, e_bg: np.ndarray, extra: np.ndarray | None) -> list[np.ndarray]:
    """The correction's inputs, in FEATURES order, then the extra features."""
    cols = [pn_alive, np.log1p(x), np.where(x > 0, tx / np.maximum(T, 1e-9), 0.0), np.log1p(m),
            np.log(np.maximum(T, 1e-3)), np.log((e_bg + 0.01) / (e_pn + 0.01))]
    if extra is not None:
        cols.extend(extra.T)
    return cols


def _features(pn_alive: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray, m: np.ndarray,
              e_pn: np.ndarray, e_bg: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
    return np.column_stack(_columns(pn_alive, x, tx, T, m, e_pn, e_bg, extra))


def _poisson_glm(Z: np.ndarray, offset: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge Poisson regression with an offset: a multiplicative correction of the offset model's mean.

    Z's first column is the constant."""
    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = offset + Z @ w
        mu = np.exp(np.minimum(eta, 30.0))
        reg = np.r_[0.0, w[1:]]
        return float(mu.sum() - y @ eta + RIDGE * reg @ reg), Z.T @ (mu - y) + 2 * RIDGE * reg

    from scipy.optimize import minimize  # here: ~0.2 s of every start to import, and only fitting uses it

    w = np.asarray(minimize(nll, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B").x)
    # The correction only redistributes: its level is reset so the corrected total equals the
    # uncorrected one. An inner holdout is shorter and earlier than the served horizon, so a level
    # learned there does not carry over (and a lower level always looks better by MAE).
    base_mean = np.exp(offset)
    w[0] = float(np.log(base_mean.sum() / max(float(base_mean @ np.exp(Z[:, 1:] @ w[1:])), 1e-300)))
    return w


@dataclass
class LTVModel:
    """Fitted parameters only (so that to_bytes is plain JSON); `kind` names the model family served."""

    pnbd: base.Params
    bgnbd: base.Params
    gg: tuple[float, float, float]
    method: str = "pareto/nbd"
    weights: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    use_extra: bool = False
    extra_names: tuple[str, ...] = ()
    population: dict[str, float] = field(default_factory=dict)  # mean of each explained input, for explain()
    inner: dict[str, float] = field(default_factory=dict)  # inner-split RMSE of each candidate
    kind: str = "contrail"
    # The horizon (days) the correction was learned at (the inner split's). Its BG/NBD ÷ Pareto/NBD input is read
    # there whatever horizon is asked, so the correction is one multiplier a customer and the count follows
    # Pareto/NBD's, which grows with the horizon; at the horizon asked instead, the ratio's growth over years
    # (with the negative coefficient fits learn) made values fall past about 1,000 days. 0: a model saved before
    # this was recorded, which reads it at the horizon asked, as it did.
    reference_days: float = 0.0
    # predict() and explain_many() through ml/ltv/kernels.py (compiled loops around scipy's special functions);
    # False: the plain numpy path below, the reference the kernels are tested against.
    fast: ClassVar[bool] = True

    # -- point predictions -------------------------------------------------------------------------

    def _counts(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, m: np.ndarray, extra: np.ndarray | None,
                t: float, same: Same | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected purchases, P(alive), BG/NBD expectation if alive) over t weeks.

        `same` (unique rows, inverse): rows that share frequency, recency and age share the base models'
        terms (the hypergeometric functions are most of the cost), so those are computed once per unique row."""
        parts = self._base_parts(x, tx, T, t) if same is None else \
            [p[same[1]] for p in self._base_parts(x[same[0]], tx[same[0]], T[same[0]], t)]
        if self.method == "bg/nbd":
            if_alive, alive_bg = parts
            return if_alive * alive_bg, alive_bg, if_alive
        if self.method == "pareto/nbd":
            if_alive, alive_pn, e_pn = parts
            return e_pn, alive_pn, if_alive
        if_alive, alive_pn, e_pn, alive_bg = parts
        e_bg = if_alive * alive_bg
        if self.method == "mixture":
            return 0.5 * (e_pn + e_bg), 0.5 * (alive_pn + alive_bg), if_alive
        const, coef = self._linear
        ref_pn, ref_bg = e_pn, e_bg
        t_ref = self.reference_days / WEEK
        if t_ref > 0 and t_ref != t:  # the correction's ratio at the horizon it was learned at
            ref = self._base_parts(x, tx, T, t_ref) if same is None else \
                [p[same[1]] for p in self._base_parts(x[same[0]], tx[same[0]], T[same[0]], t_ref)]
            ref_pn, ref_bg = ref[2], ref[0] * ref[3]
        cols = _columns(alive_pn, x, tx, T, m, ref_pn, ref_bg, extra if self.uses_extra else None)
        eta = const + sum(c * col for c, col in zip(coef, cols, strict=True))
        return e_pn * np.exp(eta), alive_pn, if_alive

    def _base_parts(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, t: float) -> list[np.ndarray]:
        """The served method's terms from the base models: BG/NBD if alive, then P(alive) and the expectation of
        Pareto/NBD (unless BG/NBD serves alone), then BG/NBD's P(alive) (unless Pareto/NBD serves alone)."""
        out = [base.bgnbd_expected_if_alive(self.bgnbd, t, x, T)]
        if self.method != "bg/nbd":  # Pareto/NBD's P(alive) costs two hypergeometric functions a customer
            alive_pn = base.pnbd_alive(self.pnbd, x, tx, T)
            out += [alive_pn, base.pnbd_expected(self.pnbd, t, x, tx, T, alive_pn)]
        if self.method != "pareto/nbd":
            out.append(base.bgnbd_alive(self.bgnbd, x, tx, T))
        return out

    @cached_property
    def _linear(self) -> tuple[float, list[float]]:
        """The correction folded into const + sum(coef * raw feature): no standardising per call."""
        w, mu, sd = np.asarray(self.weights), np.asarray(self.mean), np.asarray(self.scale)
        return float(w[0] - (mu / sd) @ w[1:]), [float(v) for v in w[1:] / sd]

    def _spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return base.gg_expected(self.gg, x, m)

    @staticmethod
    def _weekly_rate(annual_discount_rate: float) -> float:
        # The annual rate is an effective yearly rate; discounting is continuous at the equivalent rate.
        return float(np.log1p(annual_discount_rate) / (365.25 / WEEK))

    @staticmethod
    def _inputs(s: Summary) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = np.asarray(s.frequency, dtype=np.float64)
        T = np.maximum(np.asarray(s.age, dtype=np.float64) / WEEK, 1e-6)
        tx = np.minimum(np.asarray(s.recency, dtype=np.float64) / WEEK, T)
        # Refunds can leave a customer's mean below 0; spend per purchase is not negative.
        return x, tx, T, np.maximum(np.asarray(s.monetary, dtype=np.float64), 0.0)

    @property
    def uses_extra(self) -> bool:
        return self.method == "corrected" and self.use_extra

    def _extra(self, s: Summary) -> np.ndarray | None:
        if not self.uses_extra:
            return None
        if s.extra is None or tuple(s.extra_names) != tuple(self.extra_names):
            raise ValueError(f"this model was fitted with extra features {list(self.extra_names)}; "
                             f"the summary has {list(s.extra_names)}")
        return np.asarray(s.extra, dtype=np.float64)

    # -- public API --------------------------------------------------------------------------------

    def predict(self, s: Summary, horizon_days: float, annual_discount_rate: float) -> Prediction:
        _check_horizon(horizon_days, annual_discount_rate)
        if self.fast:
            return self._predict_fast(s, horizon_days, annual_discount_rate)
        x, tx, T, m = self._inputs(s)
        t = horizon_days / WEEK
        e, alive, if_alive = self._counts(x, tx, T, m, self._extra(s), t)
        spend = self._spend(x, m)
        disc = base.pnbd_discount_ratio(self.pnbd[2], self.pnbd[3], T, t, self._weekly_rate(annual_discount_rate))
        ltv = e * spend * disc
        lower, upper, conf = self._interval(x, T, m, t, e, alive, if_alive, disc, ltv)
        return Prediction(e, alive, spend, ltv, lower, upper, conf)

    def _interval(self, x: np.ndarray, T: np.ndarray, m: np.ndarray, t: float, e: np.ndarray, alive: np.ndarray,
                  if_alive: np.ndarray, disc: np.ndarray, ltv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """80% interval and confidence from the predictive distribution of the discounted spend.

        Counts: P(alive) of the served model times the BG/NBD predictive of a customer alive now (closed
        form, see _bg_count_moments), each customer's purchase rate scaled so that the mean is the served
        expectation. Spend: the Gamma-Gamma posterior gives the first two moments of the sum of y
        purchases exactly. The discounted spend is 0 with P(no purchase), otherwise a gamma with the
        exact mean and variance of that positive part; its quantiles give the interval.
        """
        expected_if_alive = alive * if_alive
        scale = np.where(expected_if_alive > 1e-12, e / np.maximum(expected_if_alive, 1e-12), 1.0)
        p_none, ey, ey2 = _bg_count_moments(self.bgnbd, x, T, alive, scale * t)
        p, q, g = self.gg
        q_post, g_post = q + p * x, g + m * x
        # q' > 2 for a finite variance; below that the spread is taken as at q' = 2.05.
        qv = np.maximum(q_post, 2.05)
        pos = np.maximum(1.0 - p_none, 1e-12)
        mp = (p * g_post / (q_post - 1)) * ey * disc / pos
        m2 = g_post ** 2 / ((qv - 1) * (qv - 2)) * (p * ey + p * p * ey2) * disc ** 2 / pos
        vp = np.maximum(m2 - mp ** 2, 1e-12 * mp ** 2 + 1e-300)
        shape = np.maximum(mp ** 2 / vp, 1e-6)
        theta = vp / np.maximum(mp, 1e-300)
        # Equal tails when P(0) < 10%; else the interval starts at 0 and holds 80% of the mass.
        lo_level = np.where(p_none < (1 - INTERVAL) / 2, (1 - INTERVAL) / 2, 0.0)
        levels = np.stack([lo_level, lo_level + INTERVAL])
        u = np.clip((levels - p_none) / pos, 0.0, 1.0 - 1e-12)
        lower, upper = np.where(levels <= p_none, 0.0, theta * gammaincinv(shape, u))
        # Confidence: the model's probability that the realised value lands within +-50% of the point.
        inside = gammainc(shape, np.stack([1.5 * ltv, 0.5 * ltv]) / theta)
        conf = np.where(ltv > 0, pos * (inside[0] - inside[1]), p_none)
        return lower, upper, np.clip(conf, 0.0, 1.0)

    def counts(self, s: Summary, horizon_days: float) -> np.ndarray:
        """Expected purchases in the horizon alone (no spend, no interval)."""
        x, tx, T, m = self._inputs(s)
        return self._counts(x, tx, T, m, self._extra(s), horizon_days / WEEK)[0]

    def point_ltv(self, s: Summary, horizon_days: float, annual_discount_rate: float,
                  same: Same | None = None) -> np.ndarray:
        _check_horizon(horizon_days, annual_discount_rate)
        x, tx, T, m = self._inputs(s)
        t = horizon_days / WEEK
        e, _, _ = self._counts(x, tx, T, m, self._extra(s), t, same)
        rate = self._weekly_rate(annual_discount_rate)
        disc = base.pnbd_discount_ratio(self.pnbd[2], self.pnbd[3], T if same is None else T[same[0]], t, rate)
        return np.asarray(e * self._spend(x, m) * (disc if same is None else disc[same[1]]))

    def explain(self, s: Summary, row: int, horizon_days: float, annual_discount_rate: float,
                top: int = 5) -> list[tuple[str, float, float]]:
        """(input, contribution, value), largest |contribution| first.

        Contributions are exact Shapley values of the point LTV over the inputs (frequency, recency,
        age, monetary and the extra features the model uses), against the average customer of the
        fitting data: each input's average change in LTV when it goes from the population mean to this
        customer's value, over every subset of the other inputs. They sum to this customer's LTV minus
        the average customer's. Past 8 inputs each is instead replaced alone by its mean.
        """
        return self.explain_many(s, [row], horizon_days, annual_discount_rate, top)[0]

    @property
    def _spendless_monetary(self) -> float:
        """The monetary value a customer without a repeat purchase is explained with. They have no spend of their
        own, so the population's gives their monetary input no attribution, where the model does not read it for
        them (Gamma-Gamma's spend does not). The correction does: its log(1 + monetary) input is their own 0, as in
        its fit, and with the population's the contributions would no longer add up to their value."""
        return 0.0 if self.method == "corrected" else self.population["monetary"]

    def explain_many(self, s: Summary, rows: list[int], horizon_days: float, annual_discount_rate: float,
                     top: int = 5) -> list[list[tuple[str, float, float]]]:
        """explain() for several rows at once: every row's coalitions in one point_ltv call."""
        names = ["frequency", "recency", "age", "monetary"]
        vals = np.column_stack([np.asarray(s.frequency, dtype=np.float64)[rows],
                                np.asarray(s.recency, dtype=np.float64)[rows],
                                np.asarray(s.age, dtype=np.float64)[rows],
                                np.asarray(s.monetary, dtype=np.float64)[rows]])
        if self.fast and len(names) + (len(self.extra_names) if self.uses_extra else 0) <= 8:
            return self._explain_fast(s, rows, horizon_days, annual_discount_rate, top)
        if self.uses_extra:
            ex = self._extra(s)
            assert ex is not None
            names += list(self.extra_names)
            vals = np.column_stack([vals, ex[rows]])
        own = vals.copy()
        own[:, 3] = np.where(own[:, 0] <= 0, self._spendless_monetary, own[:, 3])
        mean = np.asarray([self.population[n] for n in names])
        k = len(names)
        masks, weights = _coalitions(k)
        cols = np.where(masks[None, :, :], own[:, None, :], mean[None, None, :]).reshape(-1, k)
        # Recency cannot pass age, and means nothing without a repeat purchase.
        cols[:, 1] = np.where(cols[:, 0] > 0, np.minimum(cols[:, 1], cols[:, 2]), 0.0)
        batch = Summary(cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], cols[:, 4:] if k > 4 else None,
                        self.extra_names if k > 4 else ())
        # Frequency, recency and age are the first three inputs, so with every mask present (k <= 8) a customer's
        # coalitions i and i + 8j share them: the base models run on 8 rows a customer, not 2^k.
        same = None
        if k <= 8 and len(masks) == 2 ** k:
            n = len(masks)
            same = ((np.arange(len(rows))[:, None] * n + np.arange(8)[None, :]).ravel(),
                    (np.arange(len(rows))[:, None] * 8 + (np.arange(n) & 7)[None, :]).ravel())
        ltv = self.point_ltv(batch, horizon_days, annual_discount_rate, same).reshape(len(rows), -1)
        contrib = ltv @ weights.T
        return [sorted(zip(names, c, v, strict=True), key=lambda f: -abs(f[1]))[:top]
                for c, v in zip(contrib.tolist(), vals.tolist(), strict=True)]

    # -- the fast path (ml/ltv/kernels.py): the same arithmetic, a few calls a batch ------------------------------

    def _fast_numbers(self, horizon_days: float, annual_discount_rate: float
                      ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(method code, kernels' `par`, the correction's coefficients, the discount's weights at each node)."""
        t, rate = horizon_days / WEEK, self._weekly_rate(annual_discount_rate)
        code = METHODS.index(self.method)
        const, coef = self._fast_linear if code == kernels.CORRECTED else (0.0, _NO_COEF)
        t_ref = self.reference_days / WEEK if code == kernels.CORRECTED else 0.0
        par = np.array([*self.pnbd, *self.bgnbd, *self.gg, t, rate, const, 0.0 if t_ref == t else t_ref],
                       dtype=np.float64)
        u = base._GL_X * t
        return code, par, coef, base._GL_W * np.exp(-rate * u)

    @cached_property
    def _fast_linear(self) -> tuple[float, np.ndarray]:
        const, coef = self._linear
        return const, np.asarray(coef, dtype=np.float64)

    @staticmethod
    def _hyp(code: int, par: np.ndarray, xtT: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct hypergeometric function of the rows in one scipy call, and which one each row's term reads
        (kernels.base_args)."""
        a, idx = kernels.base_args(code, par, xtT, group)
        return np.asarray(hyp2f1(a[0], a[1], a[2], a[3])), idx

    def _predict_fast(self, s: Summary, horizon_days: float, annual_discount_rate: float) -> Prediction:
        code, par, coef, gl = self._fast_numbers(horizon_days, annual_discount_rate)
        f, r, a, mo = (np.asarray(c, dtype=np.float64) for c in (s.frequency, s.recency, s.age, s.monetary))
        xtT, m = kernels.inputs(f, r, a, mo)
        extra = self._extra(s)
        pt = kernels.point(code, par, coef, gl, xtT, *self._hyp(code, par, xtT, 1), 1, np.arange(xtT.shape[1]), m,
                           _NO_EXTRA if extra is None else extra, base._GL_X, base._GL_W)
        prep = kernels.interval(par, xtT, m, pt, INTERVAL)
        quantile = np.asarray(gammaincinv(prep[0:2], prep[2:4]))
        inside = np.asarray(gammainc(prep[0:2], prep[4:6]))
        lower, upper, conf = kernels.interval_end(prep, quantile, inside, pt[5])
        return Prediction(pt[0], pt[1], pt[3], pt[5], lower, upper, conf)

    def _explain_fast(self, s: Summary, rows: list[int], horizon_days: float, annual_discount_rate: float,
                      top: int) -> list[list[tuple[str, float, float]]]:
        _check_horizon(horizon_days, annual_discount_rate)
        names = ["frequency", "recency", "age", "monetary"]
        extra = self._extra(s)
        if extra is None:
            extra = _NO_EXTRA
        else:
            names += list(self.extra_names)
        mean = np.asarray([self.population[n] for n in names], dtype=np.float64)
        code, par, coef, gl = self._fast_numbers(horizon_days, annual_discount_rate)
        f, r, a, mo = (np.asarray(c, dtype=np.float64) for c in (s.frequency, s.recency, s.age, s.monetary))
        vals, xtT, m, coalition_extra, inv = kernels.coalitions(f, r, a, mo, extra, np.asarray(rows, dtype=np.int64),
                                                                mean, self._spendless_monetary)
        pt = kernels.point(code, par, coef, gl, xtT, *self._hyp(code, par, xtT, 8), 8, inv, m, coalition_extra,
                           base._GL_X, base._GL_W)
        contrib, order = kernels.attribute(pt[5], _coalitions(len(names))[1])
        return [[(names[j], c[j], v[j]) for j in o[:top]]
                for o, c, v in zip(order.tolist(), contrib.tolist(), vals.tolist(), strict=True)]

    def to_bytes(self) -> bytes:
        doc = {"format": "contrail-ltv/1", "kind": self.kind, "pnbd": list(self.pnbd), "bgnbd": list(self.bgnbd),
               "gg": list(self.gg), "method": self.method, "weights": self.weights, "mean": self.mean,
               "scale": self.scale, "use_extra": self.use_extra, "extra_names": list(self.extra_names),
               "population": self.population, "inner": self.inner, "reference_days": self.reference_days}
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LTVModel:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != "contrail-ltv/1":
            raise ValueError("not a serialised Contrail LTV model (format contrail-ltv/1)")
        four = tuple(float(v) for v in doc["pnbd"]), tuple(float(v) for v in doc["bgnbd"])
        return cls(pnbd=four[0], bgnbd=four[1], gg=tuple(float(v) for v in doc["gg"]),  # type: ignore[arg-type]
                   method=str(doc["method"]), weights=[float(v) for v in doc["weights"]],
                   mean=[float(v) for v in doc["mean"]], scale=[float(v) for v in doc["scale"]],
                   use_extra=bool(doc["use_extra"]), extra_names=tuple(doc["extra_names"]),
                   population={k: float(v) for k, v in doc["population"].items()},
                   inner={k: float(v) for k, v in doc["inner"].items()}, kind=str(doc["kind"]),
                   reference_days=float(doc.get("reference_days", 0.0)))


_NO_EXTRA = np.empty((0, 0))
_NO_COEF = np.empty(0)


def _bg_count_block(params: base.Params, x: np.ndarray, T: np.ndarray, alive: np.ndarray, t: np.ndarray,
                    ymax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, alpha, a, b = params
    n = len(x)
    k = r + x
    q0 = (alpha + T) / (alpha + T + t)  # NBD "success" probability of the alive customer
    y = np.arange(1.0, ymax)
    # pmf of the NBD by its ratio recursion, then P(N >= y) = 1 - cdf(y - 1).
    steps = np.empty((n, ymax))
    steps[:, 0] = np.exp(k * np.log(q0))
    steps[:, 1:] = (k[:, None] + (y - 1)) / y * (1 - q0)[:, None]
    pmf = np.cumprod(steps, axis=1)
    nb_surv = np.maximum(1.0 - np.cumsum(pmf, axis=1), 0.0)  # column j is P(N >= j + 1) = 1 - cdf(j)
    # P(alive now) and still alive after y - 1 further purchases: B(a, b+x+y-1) / B(a, b+x).
    bx = (b - 1) + x[:, None]
    steps[:, 0] = alive
    steps[:, 1:] = (bx + y) / (bx + a + y)
    surv = nb_surv * np.cumprod(steps, axis=1)  # P(Y >= y)
    return 1.0 - surv[:, 0], surv.sum(axis=1), surv @ (2 * np.arange(1.0, ymax + 1) - 1)


def _bg_count_moments(params: base.Params, x: np.ndarray, T: np.ndarray, alive: np.ndarray,
                      t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(Y = 0), E[Y], E[Y^2]) of future purchases Y in t weeks, BG/NBD posterior predictive, closed form:
    P(Y >= y) = P(alive) * P(NBD(r + x, (alpha + T) / (alpha + T + t)) >= y) * B(a, b + x + y - 1) / B(a, b + x).

    The sums run to 8 standard deviations past the mean, rounded up to a power of two, each customer's to their
    own length (grouped by it): one heavy buyer does not lengthen everyone's sum, and a customer's answer is the
    same alone or in any batch.
    """
    r, alpha, _, _ = params
    q0 = (alpha + T) / (alpha + T + t)
    nb_mean = (r + x) * (1 - q0) / q0
    need = np.minimum(nb_mean + 8 * np.sqrt(nb_mean / q0) + 8, 4096)
    bucket = np.maximum(np.ceil(np.log2(np.maximum(need, 16))), 4).astype(np.int64)
    p0, e1, e2 = np.empty(len(x)), np.empty(len(x)), np.empty(len(x))
    for b in np.unique(bucket):
        rows = np.flatnonzero(bucket == b)
        p0[rows], e1[rows], e2[rows] = _bg_count_block(params, x[rows], T[rows], alive[rows], t[rows],
                                                         int(2 ** b))
    return p0, e1, e2


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


_COALITIONS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _coalitions(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks, weights): LTV of each coalition mask, times `weights`, gives each input's attribution.

    Up to 8 inputs: all 2^k masks and the Shapley weights. Beyond: the all-own row and one row per
    input replaced by its mean (attribution = difference).
    """
    if k in _COALITIONS:
        return _COALITIONS[k]
    if k <= 8:
        masks = ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
        size = masks.sum(axis=1)
        fact = np.cumprod(np.r_[1.0, np.arange(1, k + 1)])
        weights = np.zeros((k, 2 ** k))
        for i in range(k):
            without = ~masks[:, i]
            w = fact[size[without]] * fact[k - size[without] - 1] / fact[k]
            weights[i, without] -= w
            weights[i, np.flatnonzero(without) | (1 << i)] += w
    else:
        masks = np.ones((k + 1, k), dtype=bool)
        masks[np.arange(1, k + 1), np.arange(k)] = False
        weights = np.zeros((k, k + 1))
        weights[:, 0] = 1.0
        weights[np.arange(k), np.arange(1, k + 1)] = -1.0
    _COALITIONS[k] = (masks, weights)
    return masks, weights


def _check_horizon(horizon_days: float, annual_discount_rate: float) -> None:
    if not horizon_days >= 0:
        raise ValueError(f"horizon_days must be 0 or more, got {horizon_days}")
    if not annual_discount_rate > -1:
        raise ValueError(f"annual_discount_rate must be above -1 (e.g. 0.1 for 10%), got {annual_discount_rate}")


def _check(s: Summary) -> None:
    n, rep = len(s), int(np.sum(s.frequency > 0))
    if n < MIN_CUSTOMERS or rep < MIN_REPEATERS:
        raise ValueError(f"too little data for a lifetime-value model: {n} customers, {rep} with a repeat "
                         f"purchase (needs {MIN_CUSTOMERS} customers and {MIN_REPEATERS} repeat buyers)")


def fit(s: Summary, inner: InnerSplit | None = None, seed: int = 0, refit_inner: bool = True) -> LTVModel:
    """Fit on one calibration summary; with `inner`, choose and learn the served correction on it.

    Candidates: Pareto/NBD, BG/NBD, their mean, and Pareto/NBD times a level-preserving ridge-Poisson
    correction on RFM features (with the extra features only if they lower the inner error). Each is
    scored by RMSE of the inner holdout's repeat purchases, the correction by 2-fold cross-validation
    over customers; the lowest serves. With `refit_inner` (the default) the candidates are refitted on
    the inner calibration period alone, as serving fits on the past and predicts the future.
    Without `inner` (or with too little data before the inner cut) Pareto/NBD serves.
    """
    _check(s)
    x, tx, T, m = LTVModel._inputs(s)
    model = LTVModel(pnbd=base.fit_pnbd(x, tx, T), bgnbd=base.fit_bgnbd(x, tx, T), gg=base.fit_gg(x, m),
                     extra_names=tuple(s.extra_names))
    pop = {"frequency": float(np.mean(s.frequency)), "recency": float(np.mean(s.recency)),
           "age": float(np.mean(s.age)), "monetary": float(np.mean(s.monetary[s.frequency > 0]))}
    if s.extra is not None:
        pop.update({name: float(v) for name, v in zip(s.extra_names, np.mean(s.extra, axis=0), strict=True)})
    model.population = pop
    if inner is None or len(inner.summary) < MIN_CUSTOMERS:
        return model
    xi, txi, Ti, mi = LTVModel._inputs(inner.summary)
    if refit_inner:
        # Mirror serving: models fitted on the inner calibration alone predict the inner holdout, so
        # what is learned is how a fit on past data errs on the following period.
        if int(np.sum(xi > 0)) < MIN_REPEATERS:
            return model
        p_pn, p_bg = base.fit_pnbd(xi, txi, Ti), base.fit_bgnbd(xi, txi, Ti)
    else:
        # The served parameters (fitted on the whole calibration period, the inner holdout included).
        p_pn, p_bg = model.pnbd, model.bgnbd
    t = inner.horizon_days / WEEK
    _, alive = base.pnbd_parts(p_pn, xi, txi, Ti)
    e_pn = base.pnbd_expected(p_pn, t, xi, txi, Ti, alive)
    e_bg = base.bgnbd_expected(p_bg, t, xi, txi, Ti)
    y = np.asarray(inner.actual, dtype=np.float64)
    # Scored by RMSE: it is minimised by the conditional mean, which the LTV needs; MAE would reward
    # whichever model predicts fewest purchases (most customers buy nothing in a holdout).
    scores = {"pareto/nbd": _rmse(e_pn, y), "bg/nbd": _rmse(e_bg, y), "mixture": _rmse(0.5 * (e_pn + e_bg), y)}
    folds = np.random.default_rng(seed).permutation(len(y)) % 2
    offset = np.log(e_pn + 1e-9)
    best: tuple[float, bool] | None = None
    for use_extra in (False, True) if inner.summary.extra is not None else (False,):
        f = _features(alive, xi, txi, Ti, mi, e_pn, e_bg, inner.summary.extra if use_extra else None)
        err = np.zeros(len(y))
        for k in (0, 1):
            tr, te = folds != k, folds == k
            mu, sd = f[tr].mean(axis=0), f[tr].std(axis=0) + 1e-9
            z = np.column_stack([np.ones(len(y)), (f - mu) / sd])
            w = _poisson_glm(z[tr], offset[tr], y[tr])
            err[te] = e_pn[te] * np.exp(z[te] @ w) - y[te]
        score = float(np.sqrt(np.mean(err ** 2)))
        scores["corrected+extra" if use_extra else "corrected"] = score
        if best is None or score < best[0]:
            best = (score, use_extra)
    assert best is not None
    model.inner = scores
    # The correction is kept even when it does not serve, so that an evaluation can show it.
    model.use_extra = best[1]
    f = _features(alive, xi, txi, Ti, mi, e_pn, e_bg, inner.summary.extra if model.use_extra else None)
    mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(y)), (f - mu) / sd])
    model.weights = [float(v) for v in _poisson_glm(z, offset, y)]
    model.mean, model.scale = [float(v) for v in mu], [float(v) for v in sd]
    model.reference_days = float(inner.horizon_days)
    candidates = {k: scores[k] for k in METHODS[:3]}
    candidates["corrected"] = best[0]
    model.method = min(candidates, key=lambda k: candidates[k])
    return model


def inner_split(customer: np.ndarray, day: np.ndarray, value: np.ndarray, now_day: float,
                extra: tuple[np.ndarray, np.ndarray] | None = None, extra_names: tuple[str, ...] = (),
                horizon_days: float | None = None) -> InnerSplit | None:
    """The last part of the calibration period (at most half of it, at most `horizon_days`) held out."""
    day = np.asarray(day, dtype=np.float64)
    start = float(np.min(day)) if len(day) else now_day
    span = now_day - start
    h = span / 2 if horizon_days is None else min(horizon_days, span / 2)
    if h < 7:
        return None
    ids_in, s_in = summarise(customer, day, value, now_day - h, extra, extra_names)
    ids_all, s_all = summarise(customer, day, value, now_day, extra, extra_names)
    actual = s_all.frequency[np.searchsorted(ids_all, ids_in)] - s_in.frequency
    return InnerSplit(s_in, actual, h)


def fit_transactions(customer: np.ndarray, day: np.ndarray, value: np.ndarray, now_day: float,
                     extra: tuple[np.ndarray, np.ndarray] | None = None, extra_names: tuple[str, ...] = (),
                     seed: int = 0, refit_inner: bool = True) -> tuple[np.ndarray, Summary, LTVModel]:
    """Summarise, cut the inner split and fit: what a refit from the transaction log calls."""
    ids, s = summarise(customer, day, value, now_day, extra, extra_names)
    _check(s)
    return ids, s, fit(s, inner_split(customer, day, value, now_day, extra, extra_names), seed, refit_inner)
