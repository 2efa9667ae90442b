"""Customer lifetime value: BG/NBD and Pareto/NBD purchase counts, Gamma-Gamma spend, the served
"contrail" model and its time-holdout evaluation. See docs/ltv.md."""

from ml.ltv.holdout import holdout
from ml.ltv.model import InnerSplit, LTVModel, fit, fit_transactions, inner_split
from ml.ltv.summary import summarise
from ml.ltv.types import Prediction, Summary

__all__ = ["InnerSplit", "LTVModel", "Prediction", "Summary", "fit", "fit_transactions", "holdout", "inner_split",
           "summarise"]
