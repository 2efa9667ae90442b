"""Builds lifetime value: its store and service; hears of purchases and refunds on the bus; refits on a schedule."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.sqlite.ltv import SqliteLtvStore
from app.infra import Infra
from app.loyalty.events import StarsEarned, StarsReversed
from app.ltv.service import LtvService

REFIT_CHECK_S = 60.0  # how often the supervisor asks whether a refit is due


@dataclass
class Ltv:
    ltv_store: SqliteLtvStore
    ltv: LtvService

    def purchased(self, event: StarsEarned | StarsReversed) -> None:
        """Every purchase earns stars once, and a refund reverses them: either changes the customer's history."""
        self.ltv.purchased(event.user_id)


def build(infra: Infra) -> Ltv:
    config = infra.config
    store = SqliteLtvStore(infra.records_db)
    domain = Ltv(store, LtvService(config.ltv, config.retail.currency, store, infra.clock, infra.metrics))
    infra.bus.subscribe(StarsEarned, domain.purchased)
    infra.bus.subscribe(StarsReversed, domain.purchased)
    if config.ltv.refit_interval_s > 0 or config.ltv.refit_after_purchases > 0:
        infra.supervisor.add_periodic("ltv_refit", min(REFIT_CHECK_S, config.ltv.refit_interval_s or REFIT_CHECK_S),
                                      domain.ltv.maybe_refit)
    return domain
