"""Training the bid scorer (ml.model.SpikingNet) from logged bids and clicks, in numpy.

Forward pass (exactly the server's): h = x·W1 + b1, spikes s = [h > theta], z = s·W2 + b2.
The CTR head is p = CTR_MAX · (tanh(z1) + 1) / 2 = CTR_MAX · sigmoid(2·z1).

Learning: minibatch Adam on the binary cross-entropy of p against `clicked`. The spike is a step,
whose derivative is zero almost everywhere, so the backward pass replaces it with a surrogate, the
derivative of a fast sigmoid around theta (SuperSpike, Zenke & Ganguli 2018):
    ds/dh ≈ 1 / (1 + beta·|h - theta|)²
The forward pass keeps the hard spike, so the loss that is minimised and early-stopped is the one
of the network the server runs. theta is not trained (b1 moves each unit's threshold instead), and
the reserved features' rows of W1 stay zero.

Split: by time. The last `holdout` fraction of rows (by `times`) is never used for fitting; the
`valid` fraction before it chooses the epoch (early stopping on its log-loss) and fits the
calibration; the rest trains. Evaluating the new and current model on the holdout is then fair to
both (see ml.training.metrics.better).

After fitting, the three heads are set:
- CTR: Platt scaling in the head's own logit, folded into its weights (z1 ← a·z1 + b/2), so the
  calibrated CTR is what the unchanged server computes; kept only if it lowers the validation log-loss.
- bid factor ≈ min(1, CTR × click_value), click_value being the value of a click in units of the
  candidate's bid cap (the auction prices cap × (0.25 + 0.75 × bid factor)). With click_value =
  1 / CTR_MAX (the default) that is CTR / CTR_MAX, which the head represents exactly (a copy of the
  CTR head); other values are fitted by least squares in the head's pre-activation.
- score = 2 · CTR / CTR_MAX - 1 (a copy of the CTR head): candidates rank by predicted CTR, which for
  one click value is ranking by expected value.

CTR above CTR_MAX: the head cannot say more than 5%. On rows whose true rate is higher the loss
keeps pushing z1 up, but its gradient, -2·(1 - sigmoid(2·z1)) for a click, vanishes as the head
saturates, so training stays finite; those rows are predicted 5%, and their bid factor is the
highest the head gives. TrainResult.saturated reports the share of holdout rows predicted within
1% of CTR_MAX, and the reliability curve's last bin shows any rate above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ml.features import DIM
from ml.model import CTR_MAX, SpikingNet, forward, make_default
from ml.training import metrics

RESERVED = slice(140, DIM)  # ml.features: [140, 256) carries no information
_CTR = 1  # the CTR head's column of W2


@dataclass(frozen=True)
class Split:
    """Row indices of the time split, each in time order."""
    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray


def time_split(times: np.ndarray, holdout: float = 0.2, valid: float = 0.1) -> Split:
    """The last `holdout` fraction of rows by time, the `valid` fraction before it, the rest. Cuts fall on
    time values, so rows logged at the same instant stay on one side."""
    t = np.asarray(times, dtype=np.float64)
    n = len(t)
    if not (0 < holdout < 1 and 0 < valid < 1 and holdout + valid < 1):
        raise ValueError("holdout and valid must be fractions in (0, 1) with room left for training")
    order = np.argsort(t, kind="stable")
    ts = t[order]
    hold_cut = ts[min(n - 1, int(round(n * (1 - holdout))))]
    valid_cut = ts[min(n - 1, int(round(n * (1 - holdout - valid))))]
    in_hold = ts >= hold_cut
    in_valid = (ts >= valid_cut) & ~in_hold
    split = Split(order[~in_hold & ~in_valid], order[in_valid], order[in_hold])
    if min(len(split.train), len(split.valid), len(split.holdout)) == 0:
        raise ValueError("the time split left a part empty (too few distinct times)")
    return split


@dataclass
class TrainResult:
    net: SpikingNet                      # the trained, calibrated model with its three heads set
    split: Split
    epochs: int                          # epochs run (the best one's weights are kept)
    best_epoch: int
    history: list[dict[str, float]]      # per epoch: train loss (minibatch mean), validation log-loss
    calibration: tuple[float, float]     # Platt (a, b) on 2·z1, (1, 0) when it did not help
    holdout: dict[str, float]            # metrics.evaluate of `net` on the holdout rows
    holdout_uncalibrated: dict[str, float]
    bid_error: float                     # mean |bid factor - min(1, CTR × click_value)| on the training rows
    saturated: float                     # share of holdout rows predicted within 1% of CTR_MAX
    notes: list[str] = field(default_factory=list)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def _head_loss_grad(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean BCE of p = CTR_MAX·sigmoid(2z) and its gradient with respect to z (per row, already / n)."""
    s = _sigmoid(2.0 * z)
    p = CTR_MAX * s
    n = len(z)
    # log p = log CTR_MAX + log sigmoid(2z); log sigmoid(v) = -softplus(-v), computed stably.
    log_s = -np.logaddexp(0.0, -2.0 * z)
    loss = -np.sum(y * (math.log(CTR_MAX) + log_s) + (1 - y) * np.log1p(-p)) / n
    grad = np.where(y > 0, -2.0 * (1.0 - s), 2.0 * p * (1.0 - s) / (1.0 - p)) / n
    return float(loss), grad.astype(np.float32)


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(p.dtype)


def _head_z(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, theta: np.float32, w: np.ndarray,
            b: np.float32 | float, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(CTR head pre-activation, spikes) with the hard spike, in chunks."""
    zs, ss = [], []
    for i in range(0, len(x), chunk):
        s = (x[i:i + chunk] @ w1 + b1 > theta).astype(np.float32)
        ss.append(s)
        zs.append(s @ w + np.float32(b))
    return np.concatenate(zs), np.concatenate(ss)


def fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the BCE of CTR_MAX·sigmoid(a·2z + b) (a > 0 keeps the ranking)."""
    u = 2.0 * np.asarray(z, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)

    def f(ab: np.ndarray) -> tuple[float, np.ndarray]:
        loss, g = _head_loss_grad((ab[0] * u + ab[1]) / 2.0, yy)
        g = g.astype(np.float64) / 2.0  # d loss / d v where v = 2·z'
        return loss, np.array([np.sum(g * u), np.sum(g)])

    from scipy import optimize  # here: ~0.2 s of every start to import, and only fitting uses it

    res = optimize.minimize(f, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                            bounds=[(1e-3, 100.0), (-50.0, 50.0)])
    return float(res.x[0]), float(res.x[1])


def calibrate(net: SpikingNet, x: np.ndarray, y: np.ndarray) -> tuple[SpikingNet, tuple[float, float]]:
    """The net with its CTR head Platt-scaled on (x, y), folded into W2[:, 1] and b2[1]. Also returns (a, b)."""
    z = forward(net, np.asarray(x, dtype=np.float32))[:, _CTR]
    a, b = fit_platt(z, y)
    w2, b2 = net.w2.copy(), net.b2.copy()
    w2[:, _CTR] *= np.float32(a)
    b2[_CTR] = np.float32(a * float(b2[_CTR]) + b / 2.0)
    return replace(net, w2=w2, b2=b2), (a, b)


def set_heads(net: SpikingNet, spikes: np.ndarray, click_value: float = 1.0 / CTR_MAX,
              ridge: float = 1e-3) -> tuple[SpikingNet, float]:
    """Score and bid-factor heads from the CTR head: score = 2·CTR/CTR_MAX - 1; bid factor ≈
    min(1, CTR × click_value). `spikes` are the hidden spikes of the rows the bid head is fitted on.
    Returns the net and the mean |bid factor - target| on those rows."""
    if click_value <= 0:
        raise ValueError("click_value must be positive")
    w2, b2 = net.w2.copy(), net.b2.copy()
    w2[:, 0], b2[0] = w2[:, _CTR], b2[_CTR]
    z1 = spikes @ w2[:, _CTR] + b2[_CTR]
    ctr = CTR_MAX * _sigmoid(2.0 * z1.astype(np.float64))
    target = np.minimum(1.0, ctr * click_value)
    if math.isclose(click_value * CTR_MAX, 1.0, rel_tol=1e-9):
        w2[:, 2], b2[2] = w2[:, _CTR], b2[_CTR]  # exact: (tanh(z1) + 1) / 2 = CTR / CTR_MAX
    else:
        t = np.clip(target, 1e-3, 1 - 1e-3)
        zt = np.arctanh(2 * t - 1)
        design = np.hstack([spikes.astype(np.float64), np.ones((len(spikes), 1))])
        gram = design.T @ design + ridge * len(spikes) * np.eye(design.shape[1])
        coef = np.linalg.solve(gram, design.T @ zt)
        w2[:, 2], b2[2] = coef[:-1].astype(np.float32), np.float32(coef[-1])
    bid = (np.tanh((spikes @ w2[:, 2] + b2[2]).astype(np.float64)) + 1) / 2
    return replace(net, w2=w2, b2=b2), float(np.mean(np.abs(bid - target)))


def train(x: np.ndarray, clicked: np.ndarray, times: np.ndarray, *, start: SpikingNet | None = None,
          seed: int = 0, epochs: int = 30, batch: int = 2048, lr: float = 3e-3, beta: float = 5.0,
          weight_decay: float = 0.0, l1: float = 0.5, patience: int = 3, holdout: float = 0.2, valid: float = 0.1,
          click_value: float = 1.0 / CTR_MAX, version: str | None = None) -> TrainResult:
    """Fit W1, b1 and the CTR head of `start` (make_default() when None) to logged rows.

    x (n, DIM) float32 feature rows as ml.features builds them, clicked (n,) 0/1, times (n,) when each
    row was logged. Deterministic for a seed (minibatch order and nothing else is random). The caller
    runs this in a worker thread; it does no I/O.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(clicked).astype(np.float32).ravel()
    if x.ndim != 2 or x.shape[1] != DIM or len(y) != len(x) or len(np.asarray(times)) != len(x):
        raise ValueError(f"x must be (n, {DIM}) with one click and one time per row")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("clicked must be 0 or 1")
    net = start if start is not None else make_default()
    split = time_split(times, holdout, valid)
    notes: list[str] = []
    if np.any(x[:, RESERVED] != 0):
        notes.append("reserved features [140, 256) are non-zero in the data; their weights stay zero")

    theta = np.float32(net.theta)
    w1 = net.w1.astype(np.float32).copy()
    w1[RESERVED] = 0.0
    b1 = net.b1.astype(np.float32).copy()
    w = net.w2[:, _CTR].astype(np.float32).copy()
    b = np.array([net.b2[_CTR]], dtype=np.float32)
    params = [w1, b1, w, b]
    adam = _Adam(params, lr)
    rng = np.random.default_rng(seed)
    xt, yt = x[split.train], y[split.train]
    xv, yv = x[split.valid], y[split.valid]

    def valid_loss() -> float:
        z, _ = _head_z(xv, w1, b1, theta, w, b[0])
        return _head_loss_grad(z, yv)[0]

    best = (valid_loss(), 0, [p.copy() for p in params])
    history: list[dict[str, float]] = [{"epoch": 0, "train_loss": math.nan, "valid_log_loss": best[0]}]
    stale, ran = 0, 0
    for epoch in range(1, epochs + 1):
        ran = epoch
        order = rng.permutation(len(xt))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb, yb = xt[idx], yt[idx]
            h = xb @ w1 + b1
            s = (h > theta).astype(np.float32)
            z = s @ w + b[0]
            loss, gz = _head_loss_grad(z, yb)
            total += loss * len(idx)
            gw = s.T @ gz
            gb = np.array([gz.sum()], dtype=np.float32)
            surrogate = 1.0 / np.square(1.0 + beta * np.abs(h - theta))
            gh = np.outer(gz, w) * surrogate
            gw1 = xb.T @ gh
            gw1[RESERVED] = 0.0
            adam.step([gw1, gh.sum(axis=0), gw, gb])
            if weight_decay:  # decoupled (AdamW) shrinkage of the first layer...
                w1 *= np.float32(1.0 - lr * weight_decay)
            if l1:  # ...and a proximal L1 step: features that do not earn their weight lose it
                np.copysign(np.maximum(np.abs(w1) - np.float32(lr * l1), 0.0), w1, out=w1)
        current = valid_loss()
        history.append({"epoch": epoch, "train_loss": total / len(xt), "valid_log_loss": current})
        if current < best[0] - 1e-6:
            best, stale = (current, epoch, [p.copy() for p in params]), 0
        else:
            stale += 1
            if stale >= patience:
                break
    w1, b1, w, b = best[2]
    w1[RESERVED] = 0.0
    w2, b2 = net.w2.astype(np.float32).copy(), net.b2.astype(np.float32).copy()
    w2[:, _CTR], b2[_CTR] = w, b[0]
    name = version or f"{net.version}+trained-s{seed}"
    fitted = SpikingNet(name, w1, b1, w2, b2, float(net.theta))

    plain, _ = _fitted_heads(fitted, xt, click_value)
    calibrated, ab = calibrate(fitted, xv, yv)
    if metrics.log_loss(metrics.predict_ctr(calibrated, xv), yv) < metrics.log_loss(metrics.predict_ctr(fitted, xv),
                                                                                   yv):
        fitted = calibrated
    else:
        ab = (1.0, 0.0)
    final, bid_error = _fitted_heads(fitted, xt, click_value)
    xh, yh = x[split.holdout], y[split.holdout]
    hold = metrics.evaluate(final, xh, yh)
    p_hold = metrics.predict_ctr(final, xh)
    return TrainResult(final, split, ran, best[1], history, ab, hold, metrics.evaluate(plain, xh, yh), bid_error,
                       float(np.mean(p_hold >= 0.99 * CTR_MAX)), notes)


def _fitted_heads(net: SpikingNet, x: np.ndarray, click_value: float) -> tuple[SpikingNet, float]:
    _, spikes = _head_z(x, net.w1, net.b1, np.float32(net.theta), net.w2[:, _CTR], net.b2[_CTR])
    return set_heads(net, spikes, click_value)
