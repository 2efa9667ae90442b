"""`python -m app eval ltv --data PATH`: lifetime-value models on a CDNOW-format transaction file.

Protocol (the CDNOW studies'): fit on the transactions up to the calibration end (1997-09-30), then
count each calibration customer's repeat purchases in the following 39 weeks; same-day purchases are
one purchase. Per-customer MAE and RMSE of those counts and the total predicted vs actual, for every
model fitted in the same run, plus the Gamma-Gamma spend error.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ml.ltv import holdout

EPOCH = np.datetime64("1970-01-01", "D")


class CdnowFileError(ValueError):
    """The file is not in one of the CDNOW layouts."""


def load_cdnow(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, day since 1970-01-01, amount) from a CDNOW file.

    Two layouts, whitespace-separated, an optional header line whose first field is not a number:
    `customer YYYYMMDD quantity amount` (CDNOW_master) and `customer original_id YYYYMMDD quantity amount`
    (CDNOW_sample); the first column is the customer.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CdnowFileError(f"{path}: cannot read: {exc}") from exc
    lines = [ln.split() for ln in text.splitlines()]
    numbered = [(i + 1, f) for i, f in enumerate(lines) if f]
    header = bool(numbered) and not numbered[0][1][0].replace(".", "", 1).isdigit()
    if header:
        numbered = numbered[1:]
    if not numbered:
        raise CdnowFileError(f"{path}: no transactions" + (" after the header line (a first field that is not a "
                                                          "number is taken for a header)" if header else ""))
    width = len(numbered[0][1])
    if width not in (4, 5):
        raise CdnowFileError(f"{path}: line {numbered[0][0]}: expected 4 columns (customer, YYYYMMDD, quantity, "
                             f"amount) or 5 (customer, id, YYYYMMDD, quantity, amount), got {width}")
    date_col = width - 3
    customers, dates, amounts = [], [], []
    for no, fields in numbered:
        if len(fields) != width:
            raise CdnowFileError(f"{path}: line {no}: expected {width} columns like the first line, got {len(fields)}")
        d = fields[date_col]
        try:
            if len(d) != 8:
                raise ValueError(d)
            dates.append(np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "D"))
            amounts.append(float(fields[-1]))
            float(fields[-2])
        except ValueError:
            raise CdnowFileError(f"{path}: line {no}: expected a YYYYMMDD date in column {date_col + 1} and "
                                 f"numeric quantity and amount, got {' '.join(fields)!r}") from None
        if not 0 <= amounts[-1] < math.inf:  # float() reads nan and inf, which the report would print as such
            raise CdnowFileError(f"{path}: line {no}: the amount must be a finite number, 0 or more, got "
                                 f"{fields[-1]!r}")
        customers.append(fields[0])
    day = (np.asarray(dates, dtype="datetime64[D]") - EPOCH).astype(np.float64)
    return np.asarray(customers), day, np.asarray(amounts, dtype=np.float64)


def parse_day(value: str) -> float:
    try:
        return float((np.datetime64(value, "D") - EPOCH).astype(np.float64))
    except ValueError:
        raise CdnowFileError(f"not a YYYY-MM-DD date: {value!r}") from None


def evaluate(path: str | Path, calibration_end: str = "1997-09-30", holdout_weeks: float = 39.0) -> dict:
    started = time.perf_counter()
    if not 0 < holdout_weeks <= 520:  # also refuses nan
        raise CdnowFileError(f"--holdout-weeks must be more than 0 and at most 520, got {holdout_weeks:g}")
    customer, day, value = load_cdnow(path)
    end = parse_day(calibration_end)
    if not (day <= end).any():
        raise CdnowFileError(f"{path}: no transaction on or before the calibration end {calibration_end}")
    if not (day > end).any():
        raise CdnowFileError(f"{path}: no transaction after the calibration end {calibration_end}: nothing to "
                             "hold out")
    report = holdout(customer, day, value, end, holdout_weeks * 7.0)
    report.update({"transactions": int(len(day)), "calibration_end": calibration_end,
                   "holdout_weeks": holdout_weeks, "seconds": round(time.perf_counter() - started, 2)})
    return report


def table(report: dict) -> str:
    width = max(len(r["name"]) for r in report["rows"])
    head = f"{'model':<{width}}     MAE    RMSE  total predicted  (actual {report['total_actual']:.0f})"
    lines = [f"{report['transactions']} transactions, {report['customers']} customers; calibration to "
             f"{report['calibration_end']}, {report['holdout_weeks']:g}-week holdout; repeat purchases per customer",
             "", head, "-" * len(head)]
    for r in report["rows"]:
        diff = 100 * (r["total_predicted"] / report["total_actual"] - 1) if report["total_actual"] else float("nan")
        lines.append(f"{r['name']:<{width}}  {r['mae']:.4f}  {r['rmse']:.4f}  {r['total_predicted']:15.1f}  "
                     f"({diff:+.1f}%)")
    sp = report["spend"]
    inner = ", ".join(f"{k} {v:.4f}" for k, v in report["inner"].items())
    lines += ["", f"contrail serves: {report['served']} (inner-split RMSE: {inner or 'no inner split'})"]
    if sp["customers"]:
        lines.append(f"spend per purchase, {sp['customers']} customers with holdout purchases: Gamma-Gamma MAE "
                     f"{sp['gamma_gamma_mae']:.2f}, naive (own calibration mean) MAE {sp['naive_mae']:.2f}")
    iv = report["interval"]
    lines.append(f"contrail 80% LTV interval (undiscounted, holdout) covers the realised spend of "
                 f"{100 * iv['coverage']:.1f}% of customers ({100 * (iv['coverage_buyers'] or 0):.1f}% of those who "
                 f"bought); LTV total {iv['ltv_total']:.0f} vs realised {iv['spend_total']:.0f}")
    lines.append(f"{report['seconds']:.1f} s")
    return "\n".join(lines)


def as_json(report: dict) -> str:
    doc = {"total_actual": report["total_actual"], "customers": report["customers"],
           "rows": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in report["rows"]],
           "spend": report["spend"], "interval": report["interval"], "served": report["served"],
           "inner": report["inner"],
           "parameters": report["parameters"], "calibration_end": report["calibration_end"],
           "holdout_weeks": report["holdout_weeks"]}
    return json.dumps(doc, indent=2)
