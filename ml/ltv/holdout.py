"""Fit on a calibration period, score on the period after it: the eval command and refit gating use this."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ml.ltv import base
from ml.ltv.model import WEEK, LTVModel, fit_transactions
from ml.ltv.summary import summarise


def _row(name: str, predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | str]:
    err = predicted - actual
    return {"name": name, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "total_predicted": float(predicted.sum())}


def holdout(customer: np.ndarray, day: np.ndarray, value: np.ndarray, calibration_end_day: float,
            holdout_days: float, extra: tuple[np.ndarray, np.ndarray] | None = None,
            extra_names: tuple[str, ...] = (), seed: int = 0, refit_inner: bool = True) -> dict:
    """Every model fitted on transactions up to `calibration_end_day`, scored on the repeat purchases of
    those customers in the following `holdout_days` (same-day purchases merged, as in the summary).

    Returns {"customers", "total_actual", "rows": [{"name", "mae", "rmse", "total_predicted"}], "spend",
    "served", "inner"}; the served model's row is named "contrail".
    """
    customer, day, value = np.asarray(customer), np.asarray(day, dtype=np.float64), np.asarray(value)
    ids, s, model = fit_transactions(customer, day, value, calibration_end_day, extra, extra_names, seed,
                                     refit_inner)
    end = calibration_end_day + holdout_days
    ids_all, s_all = summarise(customer, day, value, end)
    at = np.searchsorted(ids_all, ids)
    actual = s_all.frequency[at] - s.frequency
    x, tx, T, m = LTVModel._inputs(s)
    t = holdout_days / WEEK
    pred = model.predict(s, holdout_days, 0.0)
    rows = [_row("BG/NBD", base.bgnbd_expected(model.bgnbd, t, x, tx, T), actual),
            _row("Pareto/NBD", base.pnbd_expected(model.pnbd, t, x, tx, T), actual)]
    # The candidates contrail chose among, each as if served, then the one it serves.
    def counts(method: str) -> np.ndarray:
        return replace(model, method=method).counts(s, holdout_days)

    rows.append(_row("mixture (BG/NBD + Pareto/NBD)/2", counts("mixture"), actual))
    if model.weights:
        rows.append(_row("Pareto/NBD x correction", counts("corrected"), actual))
    rows.append(_row("contrail", pred.expected_purchases, actual))
    # Spend: mean value of the holdout purchases of those who made some, vs the Gamma-Gamma estimate
    # and the naive estimate (the customer's own mean over all calibration purchases).
    holdout_value = s_all.monetary[at] * s_all.frequency[at] - s.monetary * s.frequency
    buyers = actual > 0
    observed = holdout_value[buyers] / actual[buyers]
    keep = day <= calibration_end_day
    total_cal = np.bincount(np.searchsorted(ids, customer[keep]), weights=np.asarray(value, float)[keep],
                            minlength=len(ids))
    naive = total_cal / (s.frequency + 1)
    # The served model's 80% LTV interval (undiscounted, over the holdout) against the realised spend.
    inside = (holdout_value >= pred.ltv_lower - 1e-9) & (holdout_value <= pred.ltv_upper + 1e-9)
    interval = {"coverage": float(inside.mean()), "nominal": 0.8,
                "coverage_buyers": float(inside[buyers].mean()) if buyers.any() else None,
                "ltv_total": float(pred.ltv.sum()), "spend_total": float(holdout_value.sum())}
    spend = {"customers": int(buyers.sum()),
             "gamma_gamma_mae": float(np.mean(np.abs(pred.expected_spend[buyers] - observed))) if buyers.any()
             else None,
             "naive_mae": float(np.mean(np.abs(naive[buyers] - observed))) if buyers.any() else None}
    return {"customers": len(ids), "total_actual": float(actual.sum()), "rows": rows, "spend": spend,
            "interval": interval,
            "served": model.method, "inner": model.inner, "parameters": {"pareto/nbd": list(model.pnbd),
                                                                         "bg/nbd": list(model.bgnbd),
                                                                         "gamma-gamma": list(model.gg)}}
