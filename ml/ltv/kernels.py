"""The served LTV model's arithmetic around its special functions, as a few compiled loops (numba): the fast path.

Done with numpy, a batch of 8 customers predicted and explained was about two hundred small array calls (the base
models' terms one array at a time, the correction's columns, the predictive count moments' cumulative products, the
interval's moment algebra, the coalitions of the explanation), each call's own overhead costing more than its
arithmetic. Here the same arithmetic runs in one call a step; scipy keeps the special functions numba cannot call
(hyp2f1, gammaincinv, gammainc), each called once per batch on every row that needs it:

    predict:      inputs -> base_args -> hyp2f1 -> point -> interval -> gammaincinv, gammainc -> interval_end
    explain_many: coalitions -> base_args -> hyp2f1 -> point -> attribute (Shapley weights, order)

base_args hands hyp2f1 each distinct set of arguments once: explain_many's 8 distinct rows a customer have 4
distinct (frequency, age), and the average customer's row is every customer's.

The formulas and their order of operations are those of ml/ltv/base.py and ml/ltv/model.py (the plain path,
`LTVModel.fast = False`); libm's log/exp/log1p may differ from numpy's in the last bit and a few sums run in order
rather than pairwise or through BLAS, and the correction's linear predictor adds its terms in
another order, so results agree with the plain path to about 1e-12 relative, not bit for bit
(tests/unit/ml/ltv/test_kernels.py compares the two). Signatures are explicit, and the loops compile (or load from
numba's on-disk cache) when first called or when a server loads them in the background once it is ready
(ml/compiled.py), not at import: only a request in a start's first moments can wait for them. The small helpers
they inline have none: they are compiled only into a loop being compiled, so loading the loops from the cache
compiles nothing.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from ml.compiled import later

_F64 = types.Array(types.float64, 1, "C", readonly=True)
_F64A = types.Array(types.float64, 1, "A", readonly=True)
_F64_2D = types.Array(types.float64, 2, "C", readonly=True)
_F64_2DA = types.Array(types.float64, 2, "A", readonly=True)
_F64_2DW = types.Array(types.float64, 2, "C")
_I64 = types.Array(types.int64, 1, "C", readonly=True)
_I64W = types.Array(types.int64, 1, "C")
_I64_2D = types.Array(types.int64, 2, "C", readonly=True)
_I64_2DW = types.Array(types.int64, 2, "C")
_UNI = types.UniTuple

# Method codes (ml.ltv.model.METHODS order).
PARETO, BG, MIXTURE, CORRECTED = 0, 1, 2, 3
# `par`, the model's numbers as one array: Pareto/NBD (r, alpha, s, beta), BG/NBD (r, alpha, a, b),
# Gamma-Gamma (p, q, gamma), then the horizon t (weeks), the weekly discount rate and the correction's constant.
PAR_T, PAR_RATE, PAR_CONST, PAR_TREF = 11, 12, 13, 14
# PAR_TREF: the corrected method's reference horizon (weeks), where its BG/NBD / Pareto/NBD input is read
# (LTVModel.reference_days); 0: at the horizon asked.
WEEK = 7.0


@numba.njit(inline="always")
def _max(a, b):
    """np.maximum: a NaN on either side is the answer."""
    return a if a > b or a != a else b


@numba.njit(inline="always")
def _min(a, b):
    """np.minimum: a NaN on either side is the answer."""
    return a if a < b or a != a else b


@later(_UNI(_F64_2DW, 2)(_F64A, _F64A, _F64A, _F64A), boundscheck=False, cache=True)
def inputs(frequency, recency, age, monetary):
    """((3, n) x, tx, T in weeks, (1, n) spend per purchase): LTVModel._inputs."""
    n = len(frequency)
    xtT, m = np.empty((3, n)), np.empty((1, n))
    for i in range(n):
        T = _max(age[i] / WEEK, 1e-6)
        xtT[0, i] = frequency[i]
        xtT[1, i] = _min(recency[i] / WEEK, T)
        xtT[2, i] = T
        m[0, i] = _max(monetary[i], 0.0)
    return xtT, m


@numba.njit(inline="always")
def _same(xtT, i, j, row):
    """Rows i and j share frequency and xtT[row] (recency or age)."""
    return xtT[0, i] == xtT[0, j] and xtT[row, i] == xtT[row, j]


@later(types.Tuple((_F64_2DW, _I64_2DW))(types.int64, _F64, _F64_2D, types.int64), boundscheck=False,
            cache=True)
def base_args(method, par, xtT, group):
    """((4, distinct) hyp2f1's (a, b, c, z), (terms, rows) which of them each row's term reads). The terms: BG/NBD's
    expectation if alive (base.bgnbd_expected_if_alive), then (unless BG/NBD serves alone) Pareto/NBD's two terms of
    A0 (base._pnbd_log_a0) at recency and at age. A term whose arguments an earlier row of the same group of
    `group` rows, or the first row, already has (the same frequency and age, or frequency and recency) reads
    that row's: explain_many's coalitions share them (its rows come 8 a customer, the first the average
    customer's)."""
    n = xtT.shape[1]
    t_ref = par[PAR_TREF] if method == CORRECTED else 0.0
    terms = 1 if method == BG else 4 if t_ref > 0 else 3
    args = np.empty((4, n * terms))
    idx = np.empty((terms, n), np.int64)
    r, alpha, s, beta = par[0], par[1], par[2], par[3]
    br, balpha, ba, bb = par[4], par[5], par[6], par[7]
    t = par[PAR_T]
    hi, lo = max(alpha, beta), min(alpha, beta)
    u = 0
    for i in range(n):
        x, tx, T = xtT[0, i], xtT[1, i], xtT[2, i]
        start = i - i % group
        for term in range(terms):
            row = 1 if term == 1 else 2  # the term at recency reads tx, the others T
            found = -1
            if start > 0 and _same(xtT, i, 0, row):
                found = idx[term, 0]
            j = start
            while found < 0 and j < i:
                if _same(xtT, i, j, row):
                    found = idx[term, j]
                j += 1
            if found >= 0:
                idx[term, i] = found
                continue
            idx[term, i] = u
            if term == 0 or term == 3:  # Euler's transformation, as base.bgnbd_expected_if_alive (3: at t_ref)
                horizon = t if term == 0 else t_ref
                args[0, u] = ba + bb - 1 - br
                args[1, u] = ba - 1
                args[2, u] = ba + bb + x - 1
                args[3, u] = horizon / (balpha + T + horizon)
            else:  # the same, as base._pnbd_log_a0
                rsx = r + s + x
                args[0, u] = 1.0
                args[1, u] = r + x if alpha >= beta else s + 1.0
                args[2, u] = rsx + 1.0
                args[3, u] = (hi - lo) / ((hi + tx) if term == 1 else (hi + T))
            u += 1
    return args[:, :u].copy(), idx


@later(_F64_2DW(types.int64, _F64, _F64, _F64, _F64_2D, _F64, _I64_2D, types.int64, _I64, _F64_2D, _F64_2DA,
                     _F64, _F64), boundscheck=False, cache=True)
def point(method, par, coef, gl, xtT, h, hidx, group, inv, m, extra, glx, glw):
    """(6, rows) expected purchases, P(alive), BG/NBD's expectation if alive, spend per purchase, discount ratio and
    point LTV of every row; row k's frequency, recency and age are those of distinct row inv[k] of xtT, whose
    hypergeometric functions are h[hidx[:, inv[k]]] (base_args). `coef`: the correction's coefficients of the raw
    features (LTVModel._linear), `extra` (rows, extra features) when the correction reads them. `gl`: the
    discount's Gauss-Legendre weights times the discount at each node, glx/glw the nodes and weights
    (base.pnbd_discount_ratio); a distinct row whose age an earlier one of its group of `group` (or the first)
    has reads that one's discount ratio.

    The correction's linear predictor adds the distinct row's terms first, then spend and the extra features
    (ml.ltv.model._columns adds them in FEATURES order): a different rounding in the last bit, no more.
    """
    n, rows = xtT.shape[1], len(inv)
    r, alpha, s, beta = par[0], par[1], par[2], par[3]
    br, balpha, ba, bb = par[4], par[5], par[6], par[7]
    p, q, g = par[8], par[9], par[10]
    t, rate = par[PAR_T], par[PAR_RATE]
    corrected = method == CORRECTED
    # The distinct rows' base-model terms (ml.ltv.model.LTVModel._base_parts), discount ratio and (corrected) the
    # correction's terms that do not depend on spend or the extra features.
    parts = np.empty((6, n))
    discounted = rate > 0 and t > 0
    for i in range(n):
        x, tx, T = xtT[0, i], xtT[1, i], xtT[2, i]
        z = t / (balpha + T + t)
        head = (ba + bb + x - 1) / (ba - 1)
        tail = 1.0 - math.exp((ba - 1.0) * math.log1p(-z)) * h[hidx[0, i]]
        parts[0, i] = _max(head * tail, 0.0)
        if method != BG:
            hi, lo = max(alpha, beta), min(alpha, beta)
            power = -s if alpha >= beta else 1.0 - r - x
            rsx = r + s + x
            l1 = power * math.log1p(-(hi - lo) / (hi + tx)) + math.log(h[hidx[1, i]]) - rsx * math.log(hi + tx)
            l2 = power * math.log1p(-(hi - lo) / (hi + T)) + math.log(h[hidx[2, i]]) - rsx * math.log(hi + T)
            log_a0 = l1 + math.log(_max(-math.expm1(_min(l2 - l1, 0.0)), 1e-300))
            alive_term = -(r + x) * math.log(alpha + T) - s * math.log(beta + T)
            gone = math.log(s) + log_a0 - math.log(r + s + x)
            alive = 1.0 / (1.0 + math.exp(gone - alive_term))
            log_growth = math.log1p(t / (beta + T))
            span = -math.expm1(-(s - 1) * log_growth) / (s - 1) if abs(s - 1) > 1e-9 else log_growth
            parts[1, i] = alive
            parts[2, i] = alive * (r + x) * (beta + T) / (alpha + T) * span
        if method != PARETO:
            if x > 0:
                log_odds = math.log(ba / _max(bb + x - 1, 1e-300)) + (br + x) * math.log((balpha + T) / (balpha + tx))
                parts[3, i] = 1.0 / (1.0 + math.exp(_min(log_odds, 700.0)))
            else:
                parts[3, i] = 1.0
        if not discounted:
            parts[4, i] = 1.0
        else:
            start = i - i % group
            found = 0 if start > 0 and xtT[2, 0] == T else -1
            j = start
            while found < 0 and j < i:
                if xtT[2, j] == T:
                    found = j
                j += 1
            if found >= 0:
                parts[4, i] = parts[4, found]
            else:
                num, den = 0.0, 0.0
                for j in range(len(glx)):
                    shape = math.exp(-s * math.log1p(glx[j] * t / (beta + T)))
                    num += shape * gl[j]
                    den += shape * glw[j]
                parts[4, i] = num / den
        if corrected:
            e_bg = parts[0, i] * parts[3, i]
            e_pn = parts[2, i]
            t_ref = par[PAR_TREF]
            if t_ref > 0:  # the ratio at the horizon the correction was learned at (LTVModel.reference_days)
                z_ref = t_ref / (balpha + T + t_ref)
                tail_ref = 1.0 - math.exp((ba - 1.0) * math.log1p(-z_ref)) * h[hidx[3, i]]
                e_bg = _max(head * tail_ref, 0.0) * parts[3, i]
                growth_ref = math.log1p(t_ref / (beta + T))
                span_ref = -math.expm1(-(s - 1) * growth_ref) / (s - 1) if abs(s - 1) > 1e-9 else growth_ref
                e_pn = parts[1, i] * (r + x) * (beta + T) / (alpha + T) * span_ref
            parts[5, i] = (coef[0] * parts[1, i] + coef[1] * math.log1p(x) + coef[2] * (tx / _max(T, 1e-9) if x > 0
                           else 0.0) + coef[4] * math.log(_max(T, 1e-3)) + coef[5] * math.log((e_bg + 0.01)
                                                                                          / (e_pn + 0.01)))
    out = np.empty((6, rows))
    last_m, log_m = math.nan, math.nan
    for k in range(rows):
        i = inv[k]
        x = xtT[0, i]
        if_alive, alive_pn, e_pn, alive_bg = parts[0, i], parts[1, i], parts[2, i], parts[3, i]
        if method == BG:
            e, alive = if_alive * alive_bg, alive_bg
        elif method == PARETO:
            e, alive = e_pn, alive_pn
        elif method == MIXTURE:
            e, alive = 0.5 * (e_pn + if_alive * alive_bg), 0.5 * (alive_pn + alive_bg)
        else:
            if m[0, k] != last_m:  # explain_many's coalitions hold two spends a customer, in runs of 8
                last_m, log_m = m[0, k], math.log1p(m[0, k])
            acc = parts[5, i] + coef[3] * log_m
            for j in range(len(coef) - 6):
                acc += coef[6 + j] * extra[k, j]
            e, alive = e_pn * math.exp(par[PAR_CONST] + acc), alive_pn
        spend = (g + m[0, k] * x) * p / (p * x + q - 1)
        out[0, k] = e
        out[1, k] = alive
        out[2, k] = if_alive
        out[3, k] = spend
        out[4, k] = parts[4, i]
        out[5, k] = e * spend * parts[4, i]
    return out


@later(_F64_2DW(_F64, _F64_2D, _F64_2D, _F64_2D, types.float64), boundscheck=False, cache=True)
def interval(par, xtT, m, pt, level):
    """(10, n) for LTVModel._interval from point()'s rows: shape twice, the two levels' gamma quantile
    fractions, the two confidence bounds over theta (so gammaincinv(out[0:2], out[2:4]) and
    gammainc(out[0:2], out[4:6]) are one call each), then theta, P(no purchase) and the two levels.

    The predictive count moments are _bg_count_moments': each row's sums run to 8 standard deviations past its
    mean (rounded up to a power of two), whatever the other rows are."""
    n = xtT.shape[1]
    br, balpha, ba, bb = par[4], par[5], par[6], par[7]
    p, q, g = par[8], par[9], par[10]
    t = par[PAR_T]
    tt = np.empty(n)
    bucket = np.empty(n, np.int64)
    for i in range(n):
        e, alive, if_alive = pt[0, i], pt[1, i], pt[2, i]
        expected_if_alive = alive * if_alive
        scale = e / _max(expected_if_alive, 1e-12) if expected_if_alive > 1e-12 else 1.0
        tt[i] = scale * t
        x, T = xtT[0, i], xtT[2, i]
        q0 = (balpha + T) / (balpha + T + tt[i])
        nb_mean = (br + x) * (1 - q0) / q0
        need = _min(nb_mean + 8 * math.sqrt(nb_mean / q0) + 8, 4096.0)
        bucket[i] = np.int64(max(math.ceil(math.log2(_max(need, 16.0))), 4.0))
    out = np.empty((10, n))
    low_tail = (1 - level) / 2
    for i in range(n):
        x, T, alive = xtT[0, i], xtT[2, i], pt[1, i]
        ymax = 1 << bucket[i]
        k = br + x
        q0 = (balpha + T) / (balpha + T + tt[i])
        # The NBD's pmf by its ratio recursion, P(N >= y) = 1 - cdf(y - 1), times P(alive after y - 1 more).
        pmf = math.exp(k * math.log(q0))
        cdf = pmf
        chain = alive
        bx = (bb - 1) + x
        first = _max(1.0 - cdf, 0.0) * chain
        ey, ey2 = first, first
        for j in range(1, ymax):
            y = float(j)
            pmf *= (k + (y - 1)) / y * (1 - q0)
            cdf += pmf
            chain *= (bx + y) / (bx + ba + y)
            surv = _max(1.0 - cdf, 0.0) * chain
            ey += surv
            ey2 += surv * (2 * (y + 1) - 1)
        p_none = 1.0 - first
        e, disc, ltv = pt[0, i], pt[4, i], pt[5, i]
        q_post, g_post = q + p * x, g + m[0, i] * x
        qv = _max(q_post, 2.05)
        pos = _max(1.0 - p_none, 1e-12)
        mp = (p * g_post / (q_post - 1)) * ey * disc / pos
        m2 = g_post ** 2 / ((qv - 1) * (qv - 2)) * (p * ey + p * p * ey2) * disc ** 2 / pos
        vp = _max(m2 - mp ** 2, 1e-12 * mp ** 2 + 1e-300)
        shape = _max(mp ** 2 / vp, 1e-6)
        theta = vp / _max(mp, 1e-300)
        lo = low_tail if p_none < low_tail else 0.0
        out[0, i] = shape
        out[1, i] = shape
        for row, lvl in ((2, lo), (3, lo + level)):
            u = (lvl - p_none) / pos
            out[row, i] = u if u != u else min(max(u, 0.0), 1.0 - 1e-12)
        out[4, i] = 1.5 * ltv / theta
        out[5, i] = 0.5 * ltv / theta
        out[6, i] = theta
        out[7, i] = p_none
        out[8, i] = lo
        out[9, i] = lo + level
    return out


@later(_F64_2DW(_F64_2D, _F64_2D, _F64_2D, _F64), boundscheck=False, cache=True)
def interval_end(prep, quantile, inside, ltv):
    """(3, n) lower, upper and confidence from interval()'s rows and the gamma functions' answers."""
    n = prep.shape[1]
    out = np.empty((3, n))
    for i in range(n):
        theta, p_none = prep[6, i], prep[7, i]
        for row in range(2):
            out[row, i] = 0.0 if prep[8 + row, i] <= p_none else theta * quantile[row, i]
        pos = _max(1.0 - p_none, 1e-12)
        conf = pos * (inside[0, i] - inside[1, i]) if ltv[i] > 0 else p_none
        out[2, i] = conf if conf != conf else min(max(conf, 0.0), 1.0)
    return out


@later(types.Tuple((_F64_2DW, _F64_2DW, _F64_2DW, _F64_2DW, _I64W))(
    _F64A, _F64A, _F64A, _F64A, _F64_2DA, _I64, _F64, types.float64), boundscheck=False, cache=True)
def coalitions(frequency, recency, age, monetary, extra_in, rows, mean, own_monetary):
    """explain_many's rows for every subset of the inputs (bit j of coalition c: input j is the customer's own,
    else the population mean), with the first three inputs (frequency, recency, age) deduplicated. Returns
    ((n, k) each explained customer's own inputs: frequency, recency, age, monetary and the extra features
    (`extra_in`'s columns, none when it has none), (3, 8n) x, tx, T of each customer's 8 distinct rows,
    (1, n 2^k) spend per purchase, (n 2^k, k - 4) extra features, (n 2^k,) the distinct row of each coalition:
    8i + (c & 7) for coalition c of customer i). A customer without a repeat purchase attributes no spend: their
    own monetary is `own_monetary` (the population's)."""
    n, k = len(rows), 4 + extra_in.shape[1]
    width = 1 << k
    vals = np.empty((n, k))
    xtT = np.empty((3, 8 * n))
    m = np.empty((1, n * width))
    extra = np.empty((n * width, k - 4))
    inv = np.empty(n * width, np.int64)
    for i in range(n):
        a = rows[i]
        vals[i, 0], vals[i, 1], vals[i, 2], vals[i, 3] = frequency[a], recency[a], age[a], monetary[a]
        for e in range(k - 4):
            vals[i, 4 + e] = extra_in[a, e]
        for j in range(8):
            f = vals[i, 0] if j & 1 else mean[0]
            rec = vals[i, 1] if j & 2 else mean[1]
            days = vals[i, 2] if j & 4 else mean[2]
            # Recency cannot pass age, and means nothing without a repeat purchase.
            rec = _min(rec, days) if f > 0 else 0.0
            T = _max(days / WEEK, 1e-6)
            xtT[0, 8 * i + j] = f
            xtT[1, 8 * i + j] = _min(rec / WEEK, T)
            xtT[2, 8 * i + j] = T
        own = own_monetary if vals[i, 0] <= 0 else vals[i, 3]
        for c in range(width):
            row = i * width + c
            inv[row] = 8 * i + (c & 7)
            m[0, row] = _max(own if c & 8 else mean[3], 0.0)
            for e in range(k - 4):
                extra[row, e] = vals[i, 4 + e] if (c >> (4 + e)) & 1 else mean[4 + e]
    return vals, xtT, m, extra, inv


@later(types.Tuple((_F64_2DW, _I64_2DW))(_F64, _F64_2D), boundscheck=False, cache=True)
def attribute(ltv, weights):
    """((n, k) each customer's attributions: their 2^k coalitions' LTV times the Shapley weights, (n, k) the
    inputs' order by |attribution|, largest first, ties in input order: Python's stable sort)."""
    k, width = weights.shape
    n = len(ltv) // width
    contrib = np.zeros((n, k))
    order = np.empty((n, k), np.int64)
    for i in range(n):
        for j in range(k):
            acc = 0.0
            for c in range(width):
                acc += ltv[i * width + c] * weights[j, c]
            contrib[i, j] = acc
            # Insertion: past every earlier input with a smaller |attribution|.
            at = j
            while at > 0 and abs(contrib[i, order[i, at - 1]]) < abs(acc):
                order[i, at] = order[i, at - 1]
                at -= 1
            order[i, at] = j
    return contrib, order
