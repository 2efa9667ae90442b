"""Builds lifetime value: its store and service; hears of purchases and refunds on the bus; refits on a schedule."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.grpc.syncvalue import RemoteSyncValue
from adapters.sqlite.ltv import SqliteLtvStore
from adapters.sqlite.models import SqliteModelRegistry
from adapters.tls import grpc_client_ssl
from app.infra import Infra
from app.learning.versions import Versioning
from app.loyalty.events import StarsEarned, StarsReversed
from app.ltv.service import LtvService
from app.ltv.values import ValueSource
from app.ltv.versions import LtvVersions

REFIT_CHECK_S = 60.0  # how often the supervisor asks whether a refit is due
VALUES_REFRESH_S = 1.0  # how often the values bids read are refreshed (a batch of the customers waiting)


class RemoteCustomerValue:
    """A customer's value from the remote SyncValueService, for activation (channels' CustomerValue)."""

    PLATFORM = "activation"

    def __init__(self, values: ValueSource) -> None:
        self._values = values

    async def value(self, customer_id: str) -> float | None:
        return await self._values.value_of(customer_id, self.PLATFORM)


@dataclass
class Ltv:
    ltv_store: SqliteLtvStore
    ltv: LtvService
    values: ValueSource                 # what bids read: from the in-process model, or the remote one
    remote: RemoteSyncValue | None      # the remote SyncValueService's client, when `ltv.remote` names one

    @property
    def versions(self) -> LtvVersions:
        """The model's versions in the registry (GET /v1/admin/models/ltv, its canaries)."""
        assert self.ltv.versions is not None
        return self.ltv.versions

    @property
    def customer_value(self) -> LtvService | RemoteCustomerValue:
        """What activation's LTV bands read: the remote model when `ltv.remote` names one (through its breaker and
        deadline), else this node's."""
        return RemoteCustomerValue(self.values) if self.remote is not None else self.ltv

    def purchased(self, event: StarsEarned | StarsReversed) -> None:
        """Every purchase earns stars once, and a refund reverses them: either changes the customer's history."""
        self.ltv.purchased(event.user_id)

    def forget(self, customer_id: str) -> None:
        """An erased customer (app/privacy.py): what is held of them, their history and the values bids read, is
        dropped."""
        self.ltv.forget(customer_id)
        self.values.forget(customer_id)


def build(infra: Infra) -> Ltv:
    config = infra.config
    store = SqliteLtvStore(infra.records_db)
    versioning = Versioning(SqliteModelRegistry(infra.records_db), infra.audit, config.canary,
                            config.learning.keep_files)
    service = LtvService(config.ltv, config.retail.currency, store, infra.clock, infra.metrics, versioning)
    metrics = infra.metrics
    remote = RemoteSyncValue(config.ltv.remote, config.ltv.remote_api_key, grpc_client_ssl(config.tls)) \
        if config.ltv.remote else None
    values = ValueSource.remote(remote.predict_many, config.ltv, infra.clock, metrics=metrics) if remote else \
        ValueSource.in_process(service, config.ltv, infra.clock, metrics=metrics)
    domain = Ltv(store, service, values, remote)
    infra.supervisor.add_periodic("ltv_values", VALUES_REFRESH_S, values.refresh)
    infra.bus.subscribe(StarsEarned, domain.purchased)
    infra.bus.subscribe(StarsReversed, domain.purchased)
    if config.ltv.refit_interval_s > 0 or config.ltv.refit_after_purchases > 0:
        infra.supervisor.add_periodic("ltv_refit", min(REFIT_CHECK_S, config.ltv.refit_interval_s or REFIT_CHECK_S),
                                      domain.ltv.maybe_refit)
    return domain
