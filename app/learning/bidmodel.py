"""Retraining the bid model from the ads it showed and the clicks they got, and the record of its versions.

Each won bid's feature row, as the scorer saw it, is logged with its win (`Shown`, see app/bidding/shown.py); each
click is logged by its notice (`Click`). A retrain reads the newest `learning.max_rows` shown ads older than
`learning.label_delay_s` (younger ones may still get their click) from the event log, labels them by their clicks,
and fits a candidate in a worker thread from the live model (ml/training/bidnet.py: time split, early stopping,
calibration). The candidate and the live model are measured on the same held-out newest rows, which neither was
fitted on; the candidate goes live only when ml.training.metrics.better() says it beats the live one. Every
candidate is recorded with its metrics, promoted or not; a rollback puts any version whose file is kept back live.
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
from app.bidding.models import ModelHolder
from app.config import CanaryConfig, LearningConfig
from app.learning.versions import Run, VersionedModel, write_atomically
from app.runtime.canary import Split
from app.runtime.clock import Clock
from ml import features
from ml.model import SpikingNet
from ml.training import bidnet
from ml.training import metrics as quality
from state.models import ModelVersion
from state.ports import ModelRegistry

NAME = "bidnet"
SEED = 0  # minibatch order; a retrain on the same rows gives the same model
MIN_BATCH, MAX_BATCH, MIN_STEPS = 32, 2048, 50


class _Shown(msgspec.Struct, gc=False):
    bid_id: str
    at: float
    i: list[int]
    v: list[float]


class _Click(msgspec.Struct, gc=False):
    bid_id: str


_shown = msgspec.json.Decoder(_Shown).decode
_click = msgspec.json.Decoder(_Click).decode


@dataclass(frozen=True)
class Logged:
    """Shown ads as training rows: features, clicked, when shown."""
    x: np.ndarray
    y: np.ndarray
    at: np.ndarray
    unreadable: int = 0  # payloads that did not decode or fit the layout (left out, counted)

    @property
    def clicks(self) -> int:
        return int(self.y.sum())


def clicked_bids(clicks: list[str]) -> tuple[set[str], int]:
    """The bid ids `Click` payloads name, and how many did not decode."""
    clicked, unreadable = set(), 0
    for raw in clicks:
        try:
            clicked.add(_click(raw).bid_id)
        except msgspec.DecodeError:
            unreadable += 1
    return clicked, unreadable


def labelled_rows(shown: list[str], clicked: set[str], before: float) -> Logged:
    """The `Shown` payloads logged before `before`, labelled by whether their bid was clicked (in `clicked`).

    Each payload is decoded and written into the preallocated rows at once, so its lists die as they are made:
    keeping 150,000 rows' lists alive until the end made the collector run again and again over them, and its
    passes (up to 47 ms) stalled the event loop the retrain runs beside."""
    unreadable = 0
    x = np.zeros((len(shown), features.DIM), dtype=np.float32)
    y = np.zeros(len(shown), dtype=np.float32)
    at = np.zeros(len(shown), dtype=np.float64)
    n = 0
    for raw in shown:
        try:
            s = _shown(raw)
        except msgspec.DecodeError:
            unreadable += 1
            continue
        if s.at >= before:
            continue
        if len(s.i) != len(s.v) or (s.i and (min(s.i) < 0 or max(s.i) >= features.USED)):
            unreadable += 1  # one row that does not fit the layout is left out, not the whole retrain
            continue
        x[n, s.i] = s.v
        y[n] = s.bid_id in clicked
        at[n] = s.at
        n += 1
    return Logged(x[:n], y[:n], at[:n], unreadable)


def joined(parts: list[Logged], unreadable: int = 0) -> Logged:
    """Pages of rows as one, in the order given."""
    if not parts:
        return Logged(np.zeros((0, features.DIM), dtype=np.float32), np.zeros(0, dtype=np.float32), np.zeros(0),
                      unreadable)
    return Logged(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                  np.concatenate([p.at for p in parts]), unreadable + sum(p.unreadable for p in parts))


def _write_model(net: SpikingNet, path: Path) -> None:
    write_atomically(path, lambda f: np.savez(f, version=np.array(net.version), w1=net.w1, b1=net.b1, w2=net.w2,
                                              b2=net.b2, theta=np.array(net.theta)))


def _fit(logged: Logged, start: SpikingNet, config: LearningConfig, version: str) -> tuple[bidnet.TrainResult,
                                                                                          dict[str, float]]:
    """Train a candidate from `start` and measure `start` on the candidate's held-out rows (worker thread)."""
    # At least MIN_STEPS minibatches an epoch: a few thousand rows in batches of 2048 would move the weights a
    # handful of Adam steps in a whole training.
    batch = int(min(MAX_BATCH, max(MIN_BATCH, len(logged.y) * 0.7 // MIN_STEPS)))
    result = bidnet.train(logged.x, logged.y, logged.at, start=start, seed=SEED, epochs=config.max_epochs,
                          l1=config.l1, batch=batch, version=version)
    hold = result.split.holdout
    return result, quality.evaluate(start, logged.x[hold], logged.y[hold])


def _curve(net: SpikingNet, x: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    return quality.reliability(quality.predict_ctr(net, x), y).rows()


class BidModelLearner(VersionedModel[SpikingNet]):
    """The bid model's learner: retrain from logged outcomes, evaluate before the swap (the rest: VersionedModel)."""

    name = NAME

    def __init__(self, config: LearningConfig, holder: ModelHolder, registry: ModelRegistry, events, clock: Clock,
                 metrics, audit: AuditTrail, models_dir: Path, canary: CanaryConfig) -> None:
        super().__init__(registry, clock, metrics, audit, models_dir, config.keep_files, canary)
        self._config = config
        self._holder = holder
        self._events = events   # the analytics event log: payload_pages(type, limit)

    async def _read(self, path: str) -> SpikingNet:
        return await ModelHolder.read(path)

    def _write(self, model: SpikingNet, path: Path) -> None:
        _write_model(model, path)

    def _serve(self, model: SpikingNet, path: str) -> None:
        self._holder.swap(model, path)

    def _serving(self) -> tuple[str, str]:
        return self._holder.current.version, str(self._holder.path)

    def _split(self, split: Split[SpikingNet] | None) -> None:
        self._holder.split(split)

    async def reload(self, actor: Principal | str, path: str | None) -> ModelVersion:
        """POST /v1/admin/model/reload: a model file (or the configured one again) goes live as a version."""
        return await self.load_file(actor, path or str(self._holder.path))

    async def retrain(self, actor: Principal | str = "learning") -> Run:
        """Train a candidate from the logged outcomes, measure it against the live model, promote it if better."""
        async with self._changing():
            run = await self._retrain()
        return await self._finish(run, actor)

    async def _retrain(self) -> Run:
        cfg, started = self._config, time.perf_counter()
        now = self._clock.now()
        run = Run(NAME, "skipped", "", now)
        loop = asyncio.get_running_loop()
        # By pages (EventLog.payload_pages), each decoded in a worker thread: the newest max_rows ads shown,
        # labelled by the newest max_rows clicks.
        clicked: set[str] = set()
        unreadable = 0
        async for page in self._events.payload_pages("Click", cfg.max_rows):
            found, bad = await loop.run_in_executor(None, clicked_bids, page)
            clicked |= found
            unreadable += bad
        parts = [await loop.run_in_executor(None, labelled_rows, page, clicked, now - cfg.label_delay_s)
                 async for page in self._events.payload_pages("Shown", cfg.max_rows)]
        logged = joined(parts[::-1], unreadable)  # oldest first, as shown
        del clicked, parts
        run.rows, run.clicks = len(logged.y), logged.clicks
        if run.rows < cfg.min_rows or run.clicks < cfg.min_clicks:
            run.reason = (f"{run.rows} shown ads with {run.clicks} clicks are logged; training needs "
                          f"{cfg.min_rows} and {cfg.min_clicks} (learning.min_rows, learning.min_clicks)")
            run.seconds = time.perf_counter() - started
            return run
        sequence = await self._registry.next_sequence(NAME)
        label = f"{NAME}-{sequence}"
        live_net = self._holder.current
        result, live_hold = await loop.run_in_executor(None, _fit, logged, live_net, cfg, label)
        hold = result.split.holdout
        curve = await loop.run_in_executor(None, _curve, result.net, logged.x[hold], logged.y[hold])
        run.version, run.candidate, run.live = label, result.holdout, live_hold
        wins = quality.better(result.holdout, live_hold)
        promote = wins and cfg.auto_promote
        run.status = "promoted" if promote else ("recorded" if wins else "rejected")
        run.reason = (f"holdout log-loss {result.holdout['log_loss']:.5f} vs {live_hold['log_loss']:.5f}, "
                      f"AUC {result.holdout['auc']:.4f} vs {live_hold['auc']:.4f} (live {live_net.version})"
                      + ("" if wins else ": not better than the live model")
                      + (": better, kept for an admin to promote (learning.auto_promote is off)"
                         if wins and not promote else ""))
        recorded = await self._record(result.net, sequence, label, promote, {
            "holdout": result.holdout, "live_holdout": live_hold, "compared_with": live_net.version,
            "rows": run.rows, "clicks": run.clicks, "train_rows": len(result.split.train),
            "valid_rows": len(result.split.valid), "holdout_rows": len(hold), "epochs": result.epochs,
            "best_epoch": result.best_epoch, "calibration": list(result.calibration), "reliability": curve,
            "saturated": result.saturated, "unreadable": logged.unreadable}, run.reason)
        self._outcome(run, recorded)
        run.seconds = time.perf_counter() - started
        return run
