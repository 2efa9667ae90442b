"""Builds the learning loop: the model registry, the bid model's and offer acceptance's learners, their periodic
retrains and the periodic judgement of every versioned model's canaries (recommendations and LTV included)."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.sqlite.models import SqliteModelRegistry
from app.bidding.models import ModelHolder
from app.infra import Infra
from app.learning.acceptance import AcceptanceLearner
from app.learning.bidmodel import BidModelLearner
from app.learning.versions import VersionedModel
from app.retail.ranking import Ranker


@dataclass
class Learning:
    registry: SqliteModelRegistry
    bid_model: BidModelLearner
    acceptance: AcceptanceLearner
    others: tuple[VersionedModel, ...] = ()   # models that train themselves (reco, LTV), recorded here too

    @property
    def learners(self) -> dict[str, VersionedModel]:
        """Each versioned model by its name in /v1/admin/models/{name}."""
        models: list[VersionedModel] = [self.bid_model, self.acceptance, *self.others]
        return {m.name: m for m in models}

    async def load(self) -> None:
        for learner in self.learners.values():
            await learner.load()

    async def check_canaries(self) -> None:
        """Judge every running canary (canary.check_interval_s)."""
        for learner in self.learners.values():
            await learner.check_canary()


def build(infra: Infra, holder: ModelHolder, ranker: Ranker, *others: VersionedModel) -> Learning:
    """`others`: the version records of models their own domains train (reco, LTV): loaded, listed and their
    canaries judged with the rest."""
    config = infra.config
    registry = SqliteModelRegistry(infra.records_db)
    bid_model = BidModelLearner(config.learning, holder, registry, infra.event_log, infra.clock, infra.metrics,
                                infra.audit, config.data_path / "models", config.canary)
    if config.learning.retrain_interval_s > 0:
        infra.supervisor.add_periodic("bid_model_retrain", config.learning.retrain_interval_s,
                                      bid_model.retrain_if_due)
    # An offer's outcome is known once it has expired unaccepted or its order's hold has lapsed unpaid.
    label_delay_s = config.retail.offer_ttl_s + config.retail.hold_ttl_s
    acceptance = AcceptanceLearner(config.ranking, config.learning, label_delay_s, ranker, registry, infra.event_log,
                                   infra.clock, infra.metrics, infra.audit, config.data_path / "models", config.canary)
    infra.supervisor.add_periodic("acceptance_retrain", config.ranking.retrain_interval_s, acceptance.retrain_if_due)
    learning = Learning(registry, bid_model, acceptance, others)
    infra.supervisor.add_periodic("model_canaries", config.canary.check_interval_s, learning.check_canaries)
    return learning
