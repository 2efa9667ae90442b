"""Order changes after payment: another flight, services added or removed (Duffel's change requests and change
offers; IATA ONE Order's reshop and order change).

Entities (state/changes.py): a ChangeRequest is answered with 1 to 5 ChangeOffers, each priced now against the
order's current `version`, persisted (change_offers) and expiring after `retail.change_offer_ttl_s`.

Pricing a change offer is app/retail/change_pricing.py's: one change offer per flight with room for the party
and its limited ancillaries (or one on the order's own flight for a change of services), cheapest first, at most 5.

Confirm (Idempotency-Key): the order must be PAID or FULFILLED, its flight not departed, unused, unchanged since
the change offer was priced (else 409), the change offer unexpired (else 410). With nothing owed, in one step
with no await: check the inventory the change adds, hold it and release what it replaces; the order's next
version (new barcodes for the changed items, the replaced ones stop working) commits with its history
(order_versions) and the change offer's CONFIRMED state in one transaction; a failed commit undoes memory;
then OrderChanged goes on the bus. With money owed, the order goes PAYMENT_PENDING as a first payment does,
keeping its itinerary (and barcodes) while also holding what the change adds (`Order.pending_change`, so a
restart rebuilds exactly that hold); the card is charged; approved applies the change as above, declined returns
the order as it was and releases the added hold (402). The payment's settling (checkout, webhook, reconciliation)
is the order service's, which this extends.

Money: a change's refund (its negative total) is never more than was paid for the order net of earlier refunds
(orders.refund_within_paid: 409 `refund_exceeds_paid`, nothing changes). Each version records the change
penalties paid so far (`change_fees_cents`, kept if the order is cancelled) and the offer's total its conditions
were priced on (`offer_total_cents`: the refund penalty's rate follows what the order is worth now). A new version
ends the refund quote the order had (orders.superseded): it was for the version before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Annotated, Literal

import msgspec

from app import ids
from app.config import PaymentsConfig, RetailConfig
from app.errors import Conflict, Gone, InvalidInput, NotFound, PaymentRequired, RuleViolation
from app.persist import atomically
from app.retail.catalog import CatalogService
from app.retail.change_pricing import ChangeBasis, change_offer, item_key
from app.retail.events import OrderChanged
from app.retail.offers import Airport, Day, OfferService
from app.retail.orders import OrderService, PaymentEventRecord, priced_on, refund_within_paid, superseded
from app.retail.payments import ChargeResult, PaymentGateway, checked_card
from app.retail.pricing import day_start, fare_cents
from app.runtime.bus import Bus
from app.runtime.clock import Clock
from state.catalog import Flight, Product
from state.changes import ChangeOffer, ChangeRequest, OrderVersion
from state.offers import Item, held_by
from state.orders import Barcode, Order, Payment, PendingChange
from state.ports import ChangeStore, OfferStore, OrderStore, UnitOfWork
from state.text import whole

log = logging.getLogger("contrail.retail")

MAX_CHANGE_OFFERS = 5
CHANGEABLE = ("PAID", "FULFILLED")
ProductId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_\-]{1,64}"))]


class NewSlice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    origin: Airport
    destination: Airport
    departure_date: Day
    cabin: Literal["economy", "premium", "business"] | None = None  # None: the order's cabin


class SliceChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    remove: Annotated[list[ProductId], msgspec.Meta(min_length=1, max_length=1)]  # the order's flight id
    add: NewSlice


class ChangeRequestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to change: at most one slice (orders fly one flight), services to add and to remove (product ids,
    one per passenger)."""
    slices: Annotated[list[SliceChange], msgspec.Meta(max_length=1)] = []
    add_services: Annotated[list[ProductId], msgspec.Meta(max_length=10)] = []
    remove_services: Annotated[list[ProductId], msgspec.Meta(max_length=10)] = []


class OrderChangeService(OrderService):
    """The order service with changes: it shares the order store, the commit and the payment settling, so a
    change's payment has the same lock-in as a first one (see the module docstring)."""

    def __init__(self, retail: RetailConfig, payments: PaymentsConfig, catalog: CatalogService,
                 offers: OfferService, offer_store: OfferStore, orders: OrderStore, gateway: PaymentGateway,
                 clock: Clock, log_event, metrics, bus: Bus, uow: UnitOfWork, changes: ChangeStore) -> None:
        super().__init__(retail, payments, catalog, offers, offer_store, orders, gateway, clock, log_event,
                         metrics, bus, uow)
        self._changes = changes

    # ---- change requests ----
    def _changeable(self, order: Order, now: float) -> None:
        if order.state not in CHANGEABLE:
            why = ("has a change being paid for" if order.pending_change is not None else
                   "is not paid" if order.state in ("PROPOSED", "PAYMENT_PENDING") else "cannot be changed")
            raise Conflict(f"order {order.id} is {order.state} and {why}", {"state": order.state})
        if now >= order.departure_at:
            raise Conflict("the flight has departed; the order can no longer be changed", {"reason": "departed"})
        if any(b.consumed_at is not None for b in order.barcodes):
            raise Conflict("part of this order has been used; it can no longer be changed", {"reason": "used"})

    async def request_change(self, order_id: str, owner: str | None, body: ChangeRequestBody) -> ChangeRequest:
        """Price the ways to make this change now: 1 to 5 change offers, persisted, expiring."""
        order = await self.visible(order_id, owner)
        if not (body.slices or body.add_services or body.remove_services):
            raise InvalidInput("nothing to change: give slices, add_services or remove_services")
        self._changeable(order, self._clock.now())
        if body.slices and not order.conditions.changeable:
            raise RuleViolation("this order's fare conditions do not allow changing the flight",
                                {"reason": "not_changeable"})
        segment = await self._segment(order)
        order = await self.visible(order_id, owner)  # as it is now, after the await
        now = self._clock.now()
        self._changeable(order, now)
        removed_services = self._removed_services(order, body.remove_services)
        new_products = self._added_products(order, body.add_services, removed_services)
        flights: list[tuple[Flight, str] | None] = [None]
        if body.slices:
            flights = list(self._candidate_flights(order, body.slices[0], now))
        basis = ChangeBasis.of(order, removed_services, new_products)
        drafts = [change_offer(basis, self._fare(t, segment, now), self._retail.tax_percent, now,
                               self._retail.change_offer_ttl_s) for t in flights]
        drafts = [o for o in drafts if not self._short(basis.held, o.items)]
        if not drafts:
            raise Conflict("no flight has room for this change (seats or the order's limited services)",
                           {"reason": "sold_out"})
        drafts.sort(key=lambda o: (o.total_cents, o.departure_at))
        request_id, *offer_ids = ids.ordered_hexes(1 + min(len(drafts), MAX_CHANGE_OFFERS))
        request_id = "chr_" + request_id
        chosen = tuple(msgspec.structs.replace(o, id="cho_" + i, request_id=request_id)
                       for o, i in zip(drafts, offer_ids, strict=False))
        # Persisted as a search's offers are: they survive kill -9; a power cut may lose the last moments' quotes
        # unless retail.offers_power_safe says otherwise.
        async with atomically(self._uow, power_safe=self._retail.offers_power_safe) as tx:
            tx.orders.insert_change_offers(chosen)
        return ChangeRequest(request_id, order.id, now, now + self._retail.change_offer_ttl_s, chosen)

    async def _segment(self, order: Order) -> str:
        """The segment the order was priced for (its offer's), economy when the offer is gone."""
        offer = self._offer_store.get(order.offer_id) or await self._offer_store.fetch(order.offer_id)
        return offer.segment if offer is not None else "economy"

    @staticmethod
    def _removed_services(order: Order, product_ids: list[str]) -> list[Item]:
        items = []
        for pid in dict.fromkeys(product_ids):
            item = next((i for i in order.items if i.kind != "Flight" and i.product_id == pid), None)
            if item is None:
                raise RuleViolation(f"order {order.id} has no service {pid} to remove", {"product_id": pid})
            items.append(item)
        return items

    def _added_products(self, order: Order, product_ids: list[str], removed: list[Item]) -> list[Product]:
        gone = {i.product_id for i in removed}
        products = []
        for pid in dict.fromkeys(product_ids):
            product = self._catalog.find_product(pid)
            if product is None or product.status != "active":
                raise RuleViolation(f"no service {pid} on sale", {"product_id": pid})
            if pid in gone or any(i.product_id == pid for i in order.items):
                raise RuleViolation(f"order {order.id} already has {pid}", {"product_id": pid})
            products.append(product)
        return products

    def _candidate_flights(self, order: Order, change: SliceChange, now: float):
        if change.remove != [order.flight_id]:
            raise RuleViolation(f"remove must name the order's flight, {order.flight_id}",
                                {"remove": change.remove, "flight_id": order.flight_id})
        new = change.add
        if day_start(new.departure_date) is None:
            raise InvalidInput("departure_date is not a calendar date")
        cabin = new.cabin or order.cabin
        for flight in self._catalog.flights_on(new.origin, new.destination, new.departure_date):
            if flight.departure_at <= now or cabin not in flight.cabins:
                continue
            if flight.id == order.flight_id and cabin == order.cabin:
                continue  # no change at all
            if self._catalog.seats_left(flight, cabin) >= order.passengers:
                yield flight, cabin

    def _fare(self, target: tuple[Flight, str] | None, segment: str, now: float) -> tuple[Flight, str, int] | None:
        """The target flight and cabin with one passenger's fare now, as a search would price it."""
        if target is None:
            return None
        flight, cabin = target
        return flight, cabin, fare_cents(flight.cabins[cabin].base_fare_cents,
                                         self._catalog.utilisation(flight, cabin),
                                         (flight.departure_at - now) / 3600, segment)

    def _short(self, held: Counter[str], items: tuple[Item, ...]) -> list[str]:
        """The resources that lack room for `items`: what they need beyond what the order already `held`."""
        return sorted(r for r, n in held_by(items).items() if n > held[r] and self._catalog.available(r) < n - held[r])

    # ---- reading ----
    async def change_offer(self, order_id: str, change_offer_id: str, owner: str | None) -> ChangeOffer:
        """A change offer of this order as its owner (or an admin) sees it; EXPIRED once its time has passed."""
        offer = await self._changes.fetch(change_offer_id) if len(change_offer_id) <= 64 else None
        if offer is None or offer.order_id != order_id or (owner is not None and offer.owner != owner):
            raise NotFound(f"no change offer {change_offer_id} for order {order_id}")
        if offer.state == "ACTIVE" and self._clock.now() >= offer.expires_at:
            return msgspec.structs.replace(offer, state="EXPIRED")
        return offer

    async def change_request(self, order_id: str, request_id: str, owner: str | None) -> ChangeRequest:
        offers = await self._changes.of_request(request_id) if len(request_id) <= 64 else []
        if not offers or offers[0].order_id != order_id or (owner is not None and offers[0].owner != owner):
            raise NotFound(f"no change request {request_id} for order {order_id}")
        now = self._clock.now()
        shown = tuple(msgspec.structs.replace(o, state="EXPIRED") if o.state == "ACTIVE" and now >= o.expires_at
                      else o for o in offers)
        return ChangeRequest(request_id, order_id, offers[0].created_at, offers[0].expires_at, shown)

    async def history(self, order_id: str, owner: str | None) -> list[OrderVersion]:
        """Every version of the order, oldest first; the last is the order as it is now."""
        await self.visible(order_id, owner)
        recorded = await self._changes.versions(order_id)
        order = await self.visible(order_id, owner)  # as it is now, after the await
        cause = next((v.change_offer_id for v in recorded if v.version == order.version), None)
        at = order.created_at if order.version == 1 else next(
            (v.at for v in recorded if v.version == order.version), order.updated_at)
        return [*(v for v in recorded if v.version < order.version), OrderVersion(order.version, at, cause, order)]

    # ---- confirm ----
    async def confirm_change(self, order_id: str, change_offer_id: str, owner: str | None,
                             card_number: str | None = None, expires: tuple[int, int] | None = None) -> Order:
        """Apply a change offer: at once when nothing is owed (a refund is recorded), else through a payment."""
        offer = await self.change_offer(order_id, change_offer_id, owner)
        number = None
        if offer.total_cents > 0:
            if card_number is None:
                raise RuleViolation(f"this change costs {offer.total_cents} {offer.currency}: send a card",
                                    {"reason": "payment_required", "total_cents": offer.total_cents})
            number = checked_card(card_number, expires, self._clock.now())
        # From here to the commit there is no await: the checks, the hold and the release are one step.
        now = self._clock.now()
        if offer.state == "CONFIRMED":  # a confirm racing this one is refused below: the order's version moved
            raise Conflict(f"change offer {offer.id} was already confirmed", {"state": "CONFIRMED"})
        if now >= offer.expires_at:
            raise Gone(f"change offer {offer.id} has expired; ask for a new change", {"state": "EXPIRED"})
        order = self._orders.get(order_id)
        if order is None or (owner is not None and order.owner != owner):
            # Not live here: 404, or 409 saying why a finished order cannot change (an await is fine: it refuses).
            self._changeable(await self.visible(order_id, owner), now)
            raise Conflict(f"order {order_id} changed meanwhile; try again")
        self._changeable(order, now)
        if order.version != offer.order_version:
            raise Conflict(f"order {order_id} has changed since this change offer was priced; ask again",
                           {"reason": "order_changed", "version": order.version})
        if offer.flight_id != order.flight_id and self._catalog.flight(offer.flight_id).status != "scheduled":
            raise Conflict(f"flight {offer.flight_id} has been cancelled; ask for a new change")
        short = self._short(held_by(order.items), offer.items)
        if short:
            raise Conflict("not enough inventory left for this change; ask again", {"sold_out": short})
        if number is None:
            return await self._apply(order, offer, now)
        return await self._pay_for_change(order, offer, number, now)

    async def _apply(self, order: Order, offer: ChangeOffer, now: float, *, settled_from: Order | None = None,
                     payment: Payment | None = None, event: PaymentEventRecord | None = None) -> Order:
        """The order's next version with the change applied, committed with its history; then OrderChanged.
        `settled_from`: the PAYMENT_PENDING version a paid change replaces (order is the version before it)."""
        base = settled_from or order
        kept = {item_key(i) for i in order.items} & {item_key(i) for i in offer.items}
        kept_products = {(k, p) for k, p, _ in kept}
        barcodes = tuple(b for b in order.barcodes if (b.kind, b.product_id) in kept_products)
        barcodes += tuple(Barcode(ids.token_urlsafe(18), p, item.kind, item.product_id)
                          for item in offer.items if item_key(item) not in kept for p in range(1, item.quantity + 1))
        refund = -offer.total_cents if offer.total_cents < 0 else 0  # recorded: the CONFIRMED change offer's total
        refund_within_paid(order, refund)
        changed = msgspec.structs.replace(
            order, flight_id=offer.flight_id, cabin=offer.cabin, items=offer.items, departure_at=offer.departure_at,
            total_cents=order.total_cents + offer.total_cents, barcodes=barcodes, updated_at=now,
            version=order.version + 1, pending_change=None, payment=payment or order.payment,
            change_fees_cents=order.change_fees_cents + offer.penalty_cents, offer_total_cents=priced_on(order),
            quote=superseded(order.quote, now))
        confirmed = msgspec.structs.replace(offer, state="CONFIRMED")
        held_now = [*base.items, *(base.pending_change.added if base.pending_change else ())]
        if self._orders.get(base.id) is not base:
            raise Conflict(f"order {base.id} changed meanwhile; try again")
        self._orders.remember(changed)
        self._orders.release(held_now)
        self._orders.hold(changed.items)

        def undo() -> None:
            self._orders.release(changed.items)
            self._orders.hold(held_now)
            self._orders.remember(base)
        async with atomically(self._uow, undo) as tx:
            tx.orders.update(changed, base.state)
            tx.inventory.release(held_now)
            tx.inventory.hold(changed.items, self._catalog.capacity)
            tx.orders.record_version(OrderVersion(order.version, order.created_at if order.version == 1
                                                  else order.updated_at, None, order))
            tx.orders.record_version(OrderVersion(changed.version, now, offer.id, changed))
            tx.orders.change_offer_state(confirmed, "ACTIVE")
            if event is not None:
                tx.orders.record_payment_event(*event)
        self._metrics.orders.labels("CHANGED").inc()
        self._log_event("OrderChanged", {"order_id": order.id, "owner": order.owner, "change_offer_id": offer.id,
                                         "version": changed.version, "flight_id": changed.flight_id,
                                         "total_cents": offer.total_cents, "refund_cents": refund})
        await self._bus.publish(OrderChanged(changed, order, confirmed))
        return changed

    async def _pay_for_change(self, order: Order, offer: ChangeOffer, number: str, now: float) -> Order:
        """Lock the order PAYMENT_PENDING holding both itineraries, charge the card, and settle."""
        payment = Payment(id=f"pay_{ids.token_hex(10)}", status="pending", amount_cents=offer.total_cents,
                          currency=offer.currency, card_last4=number[-4:], started_at=now, updated_at=now)
        added = tuple(i for i in offer.added if i.resource is not None)
        pending = msgspec.structs.replace(order, state="PAYMENT_PENDING", payment=payment, updated_at=now,
                                          pending_change=PendingChange(offer.id, added, order.state, order.payment))
        self._orders.remember(pending)
        self._orders.hold(added)

        def undo() -> None:
            self._orders.release(added)
            self._orders.remember(order)
        async with atomically(self._uow, undo) as tx:
            tx.orders.update(pending, order.state)
            tx.inventory.hold(added, self._catalog.capacity)
        try:
            result = await asyncio.wait_for(self.gateway.charge(payment.id, offer.total_cents, offer.currency, number),
                                            self._payments.gateway_timeout_s)
        except Exception as exc:  # the gateway is outside: its failure leaves the payment for reconciliation
            self._metrics.payments.labels("error").inc()
            log.warning("change payment left pending", extra={"payment_id": payment.id, "error": repr(exc)[:200]})
            return await self._orders.fetch(order.id) or pending
        settled = await self._settle(order.id, payment.id, result) or pending
        if settled.state != "PAYMENT_PENDING" and settled.version == order.version:
            raise PaymentRequired(f"payment declined: {result.reason or 'declined'}; the order is unchanged",
                                  {"reason": result.reason, "order": {"id": order.id, "state": settled.state}})
        return settled

    def _given_up_at(self, order: Order) -> float:
        """A change's payment is given up as a first payment's is, counting from the change offer's time to live
        after the payment started (the hold of a paid order ended long ago)."""
        if order.pending_change is None or order.payment is None:
            return super()._given_up_at(order)
        return order.payment.started_at + self._retail.change_offer_ttl_s + self._payments.pending_timeout_s

    async def _settle(self, order_id: str, payment_id: str, result: ChargeResult,
                      event: PaymentEventRecord | None = None, *, final: bool = False) -> Order | None:
        """A first payment settles as the order service does; a change's payment applies or undoes the change."""
        pending = self._orders.get(order_id)
        if pending is None or pending.pending_change is None or pending.state != "PAYMENT_PENDING" \
                or pending.payment is None or pending.payment.id != payment_id:
            return await super()._settle(order_id, payment_id, result, event, final=final)
        change = pending.pending_change
        offer = await self._changes.fetch(change.change_offer_id) if result.status == "approved" else None
        if self._orders.get(order_id) is not pending:  # settled meanwhile (the webhook beside the checkout)
            return await self._settle(order_id, payment_id, result, event, final=final)
        self._metrics.payments.labels(result.status).inc()
        if result.status == "pending":
            await self._record(event)
            return pending
        now = self._clock.now()
        before = msgspec.structs.replace(pending, state=change.previous_state, payment=change.previous_payment,
                                         pending_change=None, updated_at=now)
        if result.status == "approved":
            if offer is not None:
                paid = msgspec.structs.replace(pending.payment, status="approved", updated_at=now)
                return await self._apply(before, offer, now, settled_from=pending, payment=paid, event=event)
            result = ChargeResult("declined", "change_offer_lost")  # cannot happen: it was persisted first
        current = self._orders.get(order_id)
        if current is not pending:
            raise Conflict(f"order {order_id} changed meanwhile; try again")
        self._orders.remember(before)
        self._orders.release(change.added)

        def undo() -> None:
            self._orders.hold(change.added)
            self._orders.remember(pending)
        async with atomically(self._uow, undo) as tx:
            tx.orders.update(before, "PAYMENT_PENDING")
            tx.inventory.release(change.added)
            if event is not None:
                tx.orders.record_payment_event(*event)
        self._log_event("OrderChangeDeclined", {"order_id": order_id, "change_offer_id": change.change_offer_id,
                                                "reason": result.reason})
        return before
