"""Transactions to the per-customer (frequency, recency, age, monetary) summary the models read."""

from __future__ import annotations

import numpy as np

from ml.ltv.types import Summary


def summarise(customer: np.ndarray, day: np.ndarray, value: np.ndarray, now_day: float,
              extra: tuple[np.ndarray, np.ndarray] | None = None,
              extra_names: tuple[str, ...] = ()) -> tuple[np.ndarray, Summary]:
    """(customer ids in row order, summary) of the transactions on or before `now_day`.

    Transactions of one customer on the same (integer) day are merged into one purchase whose value
    is their sum, as the CDNOW studies do: a basket split over several orders is one visit.
    Customers whose first purchase is after `now_day` are not in the summary.
    `extra` is (customer ids, (n, k) matrix) of per-customer features; customers missing from it get 0.
    """
    customer = np.asarray(customer)
    day = np.floor(np.asarray(day, dtype=np.float64))
    value = np.asarray(value, dtype=np.float64)
    if not (customer.shape == day.shape == value.shape) or customer.ndim != 1:
        raise ValueError("customer, day and value must be 1-D arrays of the same length")
    keep = day <= now_day
    customer, day, value = customer[keep], day[keep], value[keep]
    ids, cust_idx = np.unique(customer, return_inverse=True)
    # One purchase per (customer, day): sort by both, then sum values within each run.
    order = np.lexsort((day, cust_idx))
    c, d, v = cust_idx[order], day[order], value[order]
    new = np.ones(len(c), dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (d[1:] != d[:-1])
    starts = np.flatnonzero(new)
    pc, pd = c[starts], d[starts]
    pv = np.add.reduceat(v, starts) if len(starts) else np.zeros(0)
    n = len(ids)
    first_row = np.ones(len(pc), dtype=bool)
    first_row[1:] = pc[1:] != pc[:-1]
    first = np.full(n, np.inf)
    np.minimum.at(first, pc, pd)
    last = np.full(n, -np.inf)
    np.maximum.at(last, pc, pd)
    count = np.bincount(pc, minlength=n).astype(np.float64)
    repeat_value = np.bincount(pc, weights=np.where(first_row, 0.0, pv), minlength=n)
    frequency = count - 1.0
    monetary = np.divide(repeat_value, frequency, out=np.zeros(n), where=frequency > 0)
    extra_matrix = None
    if extra is not None:
        e_ids, e_mat = np.asarray(extra[0]), np.asarray(extra[1], dtype=np.float64)
        if e_mat.ndim != 2 or e_mat.shape[0] != len(e_ids):
            raise ValueError("extra must be (customer ids, (n, k) matrix) with one row per id")
        if len(extra_names) != e_mat.shape[1]:
            raise ValueError("extra_names must name every extra column")
        extra_matrix = np.zeros((n, e_mat.shape[1]))
        pos = np.searchsorted(ids, e_ids)
        ok = (pos < n) & (ids[np.minimum(pos, n - 1)] == e_ids) if n else np.zeros(len(e_ids), dtype=bool)
        extra_matrix[pos[ok]] = e_mat[ok]
    return ids, Summary(frequency, last - first, now_day - first, monetary, extra_matrix, tuple(extra_names))
