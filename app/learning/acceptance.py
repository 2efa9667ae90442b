"""Retraining offer acceptance from paid orders, and the record of its versions (docs/acceptance.md).

Every offer shown is logged with the features the ranker saw (`OfferGenerated`, with when it was shown); an accept
logs `OfferAccepted`, a paid order `OrderPaid` with its offer. The label is the paid order: an offer accepted but
never paid is a negative like one never accepted (accepts are counted, as an intermediate signal, in each run's
metrics). A retrain reads the newest `learning.max_rows` of each from the event log, keeps the offers shown long
enough ago that their outcome is known (`retail.offer_ttl_s + retail.hold_ttl_s`: by then an unaccepted offer has
expired and an unpaid order's hold has lapsed), and fits a logistic candidate on the oldest 80% by time. The
candidate and the live version are measured on the newest 20%, which neither was fitted on; the candidate goes live
only when ml.training.metrics.better() says it beats the live one. Until a trained version is live, the live
version is the ranker's rules (version 0, "rules"), measured on the same rows by their own probabilities.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from app.admin import AuditTrail
from app.auth import Principal
from app.config import CanaryConfig, LearningConfig, RankingConfig
from app.errors import InvalidInput
from app.learning.versions import Run, VersionedModel, write_atomically
from app.retail.ranking import Ranker, rule_probabilities
from app.runtime.canary import Split
from app.runtime.clock import Clock
from ml.acceptance import DIM, FEATURES, AcceptanceModel, train
from ml.training import metrics as quality
from state.ports import ModelRegistry

NAME = "acceptance"
RULES = "rules"
RULES_PATH = "builtin:rules"   # version 0 has no file: the rules are code; rollback to it serves them again
HOLDOUT = 0.2


class _Generated(msgspec.Struct, gc=False):
    offer_id: str
    features: list[float]
    at: float = 0.0   # offers logged before `at` was: as old as can be


class _Outcome(msgspec.Struct, gc=False):
    offer_id: str


_generated = msgspec.json.Decoder(_Generated).decode
_outcome = msgspec.json.Decoder(_Outcome).decode


@dataclass(frozen=True)
class Outcomes:
    """Shown offers as training rows: features, paid, accepted, when shown."""
    x: np.ndarray
    y: np.ndarray          # paid (the label)
    accepted: np.ndarray   # accepted (paid or not): the intermediate signal
    at: np.ndarray
    unreadable: int = 0    # payloads that did not decode or fit the layout (left out, counted)

    @property
    def paid(self) -> int:
        return int(self.y.sum())

    @property
    def accepts(self) -> int:
        return int(self.accepted.sum())


def _ids(payloads: list[str]) -> tuple[set[str], int]:
    found, unreadable = set(), 0
    for raw in payloads:
        try:
            found.add(_outcome(raw).offer_id)
        except msgspec.DecodeError:
            unreadable += 1
    return found, unreadable


def labelled_offers(generated: list[str], taken: set[str], bought: set[str], before: float) -> Outcomes:
    """The `OfferGenerated` payloads shown before `before`, labelled by whether their offer was paid for (an
    `OrderPaid` named it: in `bought`) and, apart, accepted (in `taken`)."""
    unreadable = 0
    # Written into preallocated rows as decoded, so no row's list outlives its turn (see bidmodel.labelled_rows).
    x = np.zeros((len(generated), DIM), dtype=np.float64)
    y = np.zeros(len(generated), dtype=np.float64)
    accepts = np.zeros(len(generated), dtype=bool)
    at = np.zeros(len(generated), dtype=np.float64)
    n = 0
    for raw in generated:
        try:
            g = _generated(raw)
        except msgspec.DecodeError:
            unreadable += 1
            continue
        if len(g.features) != DIM:
            unreadable += 1  # logged under another feature layout: left out, not the whole retrain
            continue
        if g.at >= before:
            continue
        x[n] = g.features
        y[n] = g.offer_id in bought
        accepts[n] = g.offer_id in taken or g.offer_id in bought
        at[n] = g.at
        n += 1
    return Outcomes(x[:n], y[:n], accepts[:n], at[:n], unreadable)


def joined(parts: list[Outcomes], unreadable: int = 0) -> Outcomes:
    """Pages of outcomes as one, in the order given."""
    if not parts:
        return Outcomes(np.zeros((0, DIM)), np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0), unreadable)
    return Outcomes(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                    np.concatenate([p.accepted for p in parts]), np.concatenate([p.at for p in parts]),
                    unreadable + sum(p.unreadable for p in parts))


def time_split(at: np.ndarray, holdout: float = HOLDOUT) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, holdout) row indices: the newest `holdout` share by time is held out. The cut falls on a time value,
    so offers shown at one instant (one search's) stay on one side; None when that leaves a side empty."""
    order = np.argsort(at, kind="stable")
    ts = at[order]
    cut = ts[min(len(ts) - 1, int(round(len(ts) * (1 - holdout))))]
    train_rows, hold_rows = order[ts < cut], order[ts >= cut]
    return (train_rows, hold_rows) if len(train_rows) and len(hold_rows) else None


@dataclass
class Fitted:
    model: AcceptanceModel
    train_rows: int
    holdout_rows: int
    candidate: dict[str, float]
    live: dict[str, float]
    reliability: list[dict[str, float]]


def _both(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < len(y)


def fit(rows: Outcomes, live: AcceptanceModel | None, version: str) -> Fitted | str:
    """Train a candidate on the older rows and measure it and the live model (None: the rules) on the newest
    (worker thread); or why it could not be done."""
    split = time_split(rows.at)
    if split is None:
        return "the offers were all shown at one time: no older part to train on and newer part to test on"
    train_rows, hold = split
    if not _both(rows.y[train_rows]):
        return "the older 80% of the offers (the training part) are all paid or all unpaid"
    if not _both(rows.y[hold]):
        return "the newest 20% of the offers (the holdout) are all paid or all unpaid: nothing to measure on"
    model = train(rows.x[train_rows], rows.y[train_rows], version=version)
    x, y = rows.x[hold], rows.y[hold]
    p = model.predict(x)
    live_p = rule_probabilities(x) if live is None else live.predict(x)
    return Fitted(model, len(train_rows), len(hold), quality.metrics_of(p, y), quality.metrics_of(live_p, y),
                  quality.reliability(p, y).rows())


def _load(path: str) -> AcceptanceModel:
    try:
        return AcceptanceModel.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot load the acceptance model {path}: {exc}") from None


class AcceptanceLearner(VersionedModel[AcceptanceModel | None]):
    """Offer acceptance's learner: the ranker's local model (None: its rules) is what it serves."""

    name = NAME

    def __init__(self, ranking: RankingConfig, config: LearningConfig, label_delay_s: float, ranker: Ranker,
                 registry: ModelRegistry, events, clock: Clock, metrics, audit: AuditTrail, models_dir: Path,
                 canary: CanaryConfig) -> None:
        super().__init__(registry, clock, metrics, audit, models_dir, config.keep_files, canary)
        self._ranking = ranking
        self._config = config
        self.label_delay_s = label_delay_s
        self._ranker = ranker
        self._events = events   # the analytics event log: flush(), payload_pages(type, limit)
        self._path = RULES_PATH
        self._seen: tuple | None = None   # what the last trained candidate was fitted on (the periodic skip)

    async def _read(self, path: str) -> AcceptanceModel | None:
        if path == RULES_PATH:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, _load, path)

    def _write(self, model: AcceptanceModel | None, path: Path) -> None:
        assert model is not None, "the rules have no weights to write"
        write_atomically(path, model.save)

    def _serve(self, model: AcceptanceModel | None, path: str) -> None:
        self._ranker.serve(model)
        self._path = path

    def _serving(self) -> tuple[str, str]:
        return self._ranker.model_version, self._path

    def _split(self, split: Split[AcceptanceModel | None] | None) -> None:
        self._ranker.canary = split

    def _label(self, model: AcceptanceModel | None) -> str:
        return RULES if model is None else model.version or NAME

    async def retrain_if_due(self) -> None:
        """The periodic retrain: nothing while another change is under way, nor when no outcome is new since the
        last candidate (a rejected candidate would only be trained again on the same rows)."""
        if not self._lock.locked():
            await self.retrain(only_if_new=True)

    async def retrain(self, actor: Principal | str = "learning", only_if_new: bool = False) -> Run:
        """Train a candidate from the logged outcomes, measure it against the live version, promote it if better."""
        async with self._changing():
            run = await self._retrain(only_if_new)
        return await self._finish(run, actor)

    async def _retrain(self, only_if_new: bool) -> Run:
        cfg, started = self._config, time.perf_counter()
        now = self._clock.now()
        run = Run(NAME, "skipped", "", now)
        await self._events.flush()
        loop = asyncio.get_running_loop()
        # By pages (EventLog.payload_pages), each decoded in a worker thread: the newest max_rows offers shown,
        # labelled by the newest max_rows acceptances and payments.
        taken: set[str] = set()
        bought: set[str] = set()
        unreadable = 0
        for type_, ids in (("OfferAccepted", taken), ("OrderPaid", bought)):
            async for page in self._events.payload_pages(type_, cfg.max_rows):
                found, bad = await loop.run_in_executor(None, _ids, page)
                ids |= found
                unreadable += bad
        parts = [await loop.run_in_executor(None, labelled_offers, page, taken, bought, now - self.label_delay_s)
                 async for page in self._events.payload_pages("OfferGenerated", cfg.max_rows)]
        rows = joined(parts[::-1], unreadable)  # oldest first, as shown
        del taken, bought, parts
        run.rows, run.clicks = len(rows.y), rows.paid
        counts = f"{run.rows} offers with a known outcome, {rows.accepts} accepted, {run.clicks} paid"
        need = self._ranking.min_training_offers
        seen = (run.rows, rows.accepts, run.clicks, float(rows.at.max()) if run.rows else 0.0)
        if run.rows < need or run.clicks == 0 or run.clicks == run.rows:
            run.reason = (f"{counts}; training needs {need} (ranking.min_training_offers), some paid and some not"
                          f" (offers shown in the last {self.label_delay_s:.0f} s wait for their outcome)")
        elif only_if_new and seen == self._seen:
            run.reason = f"{counts}: nothing new since the last candidate"
        if run.reason:
            run.seconds = time.perf_counter() - started
            return run
        self._seen = seen
        sequence = await self._registry.next_sequence(NAME)
        label = f"{NAME}-{sequence}"
        live_model, live_version = self._ranker.model, self._ranker.model_version
        fitted = await loop.run_in_executor(None, fit, rows, live_model, label)
        if isinstance(fitted, str):
            run.reason = f"{counts}: {fitted}"
            run.seconds = time.perf_counter() - started
            return run
        run.version, run.candidate, run.live = label, fitted.candidate, fitted.live
        wins = quality.better(fitted.candidate, fitted.live)
        promote = wins and cfg.auto_promote
        run.status = "promoted" if promote else ("recorded" if wins else "rejected")
        run.reason = (f"{counts}; holdout log-loss {fitted.candidate['log_loss']:.5f} vs {fitted.live['log_loss']:.5f},"
                      f" AUC {fitted.candidate['auc']:.4f} vs {fitted.live['auc']:.4f} (live {live_version})"
                      + ("" if wins else ": not better than the live version")
                      + (": better, kept for an admin to promote (learning.auto_promote is off)"
                         if wins and not promote else ""))
        recorded = await self._record(fitted.model, sequence, label, promote, {
            "holdout": fitted.candidate, "live_holdout": fitted.live, "compared_with": live_version,
            "rows": run.rows, "paid": run.clicks, "accepted": rows.accepts,
            "accepted_unpaid": int((rows.accepted & (rows.y == 0)).sum()), "train_rows": fitted.train_rows,
            "holdout_rows": fitted.holdout_rows, "label_delay_s": self.label_delay_s,
            "reliability": fitted.reliability, "unreadable": rows.unreadable,
            "weights": dict(zip(FEATURES, (round(float(w), 4) for w in fitted.model.weights), strict=True))},
            run.reason)
        self._outcome(run, recorded)
        run.seconds = time.perf_counter() - started
        return run

