"""When a refit replaces the serving model: evaluated on the time holdout first, it serves only if its MAE there is
at most 5% worse than plain Pareto/NBD's (the first fit always serves: any model beats none)."""

import pytest

import ml.ltv
from app.ltv.service import _fit
from state.ltv import Purchase
from tests.integration.ltv.helpers import DAY, purchases


@pytest.fixture(scope="module")
def history() -> list[Purchase]:
    return [Purchase(f"cust-{c}", t * DAY, cents, "web") for t, c, cents in purchases(150, 540, seed=11)]


def _holdout_with_contrail_at(monkeypatch, times_pareto: float) -> None:
    """The real evaluation, with the served model's holdout MAE set to `times_pareto` Pareto/NBD's."""
    real = ml.ltv.holdout

    def evaluated(*args, **kwargs):
        report = real(*args, **kwargs)
        rows = {r["name"]: r for r in report["rows"]}
        rows["contrail"]["mae"] = rows["Pareto/NBD"]["mae"] * times_pareto
        return report
    monkeypatch.setattr(ml.ltv, "holdout", evaluated)


def test_a_refit_more_than_5_percent_worse_than_pareto_nbd_on_the_holdout_replaces_nothing(history, monkeypatch):
    _holdout_with_contrail_at(monkeypatch, 1.06)
    refit = _fit(history, 540 * DAY, 90, first=False)
    assert refit["live"] is False and "body" not in refit
    assert refit["reason"].startswith("holdout MAE ") and "worse than Pareto/NBD's" in refit["reason"]
    assert refit["evaluation"]["customers"] == 150
    first = _fit(history, 540 * DAY, 90, first=True)
    assert first["live"] is True and first["body"]


def test_a_refit_within_5_percent_of_pareto_nbd_serves(history, monkeypatch):
    _holdout_with_contrail_at(monkeypatch, 1.04)
    refit = _fit(history, 540 * DAY, 90, first=False)
    assert refit["live"] is True and refit["reason"] == "evaluated on the holdout" and refit["body"]
