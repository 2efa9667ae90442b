"""Orders: accept an offer into a hold, pay, fulfil, cancel, and the sweeps that expire and archive.

PROPOSED → PAYMENT_PENDING → PAID → FULFILLED → ARCHIVED
PROPOSED → EXPIRED (hold released) · PROPOSED → CANCELLED
PAYMENT_PENDING → PROPOSED (declined at checkout or on reconciliation: pay again while the hold lasts)
PAYMENT_PENDING → CANCELLED (the gateway's webhook says the payment failed: hold released)
PAID / FULFILLED → CANCELLED through a confirmed refund quote.
A refund quote is for the order as it was quoted (its version, what had been paid): paying or changing the order
ends it, and a confirm of a quote the order has moved on from is refused (409, ask for a new quote). No refund, a
cancellation's or a change's, is ever more than was paid for the order net of earlier refunds (refund_within_paid).
Every change is checked and applied in memory without an await in between, then committed
(guarded on the state it came from) before anyone is told; a failed commit undoes it.
Live orders are in memory; an order that reaches a finished state (EXPIRED, CANCELLED, ARCHIVED) leaves it
once that is committed, and reads of it go to the store (state/orders.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Literal, NamedTuple, TypeGuard

import msgspec

from app import ids
from app.config import PaymentsConfig, RetailConfig
from app.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, PaymentRequired
from app.persist import atomically
from app.retail.catalog import CatalogService
from app.retail.events import OrderCancelled, OrderPaid
from app.retail.offers import OfferService
from app.retail.payments import ChargeResult, PaymentGateway, checked_card
from app.runtime.bus import Bus
from app.runtime.clock import Clock
from state.orders import FINISHED, Barcode, CancellationQuote, Order, Payment
from state.ports import OfferStore, OrderStore, UnitOfWork

# A payment webhook event as recorded with the change it causes: (event id, payment id, received at).
PaymentEventRecord = tuple[str, str, float]

log = logging.getLogger("contrail.retail")


def departed_horizon(retail: RetailConfig, now: float) -> float:
    """Flights that departed before this have their fulfilled orders archived and leave memory (they stay in the
    store): `retail.archive_after_days` ago."""
    return now - retail.archive_after_days * 86_400


class PaymentEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A payment gateway's webhook: the final result of a payment that was pending."""

    id: str
    payment_id: str
    order_id: str
    status: str  # approved or declined
    reason: str | None = None


class OrderService:
    def __init__(self, retail: RetailConfig, payments: PaymentsConfig, catalog: CatalogService,
                 offers: OfferService, offer_store: OfferStore, orders: OrderStore, gateway: PaymentGateway,
                 clock: Clock, log_event, metrics, bus: Bus, uow: UnitOfWork) -> None:
        self._retail = retail
        self._uow = uow
        self._payments = payments
        self._catalog = catalog
        self._offers = offers
        self._offer_store = offer_store
        self._orders = orders
        self.gateway = gateway
        self._clock = clock
        self._log_event = log_event
        self._metrics = metrics
        # Other domains react to paid and cancelled orders (loyalty earns and reverses stars): the bus
        # awaits them after the commit, and a failure of theirs never undoes the order.
        self._bus = bus

    # ---- accept ----
    async def accept(self, offer_id: str, owner: str, *, admin: bool = False) -> Order:
        """Hold the offer's inventory and open a PROPOSED order, durably, or say why not."""
        offer = await self._offers.acceptable(offer_id, None if admin else owner)
        now = self._clock.now()
        # From here to the write there is no await: the check and the hold are one step.
        if self._offer_store.get(offer_id) is not offer or offer.state != "ACTIVE":
            raise Conflict(f"offer {offer_id} was just accepted or cancelled")
        if now >= offer.expires_at or now >= offer.departure_at:
            raise Gone(f"offer {offer_id} has expired; search again", {"state": "EXPIRED"})
        if self._catalog.flight(offer.flight_id).status != "scheduled":
            raise Conflict(f"flight {offer.flight_id} has been cancelled; search again")
        short = sorted({i.resource for i in offer.items
                        if i.resource is not None and self._catalog.available(i.resource) < i.quantity})
        if short:
            raise Conflict("not enough inventory left for this offer; search again", {"sold_out": short})
        order = Order(id=ids.ordered_hex(prefix="ord_"), owner=offer.owner, offer_id=offer.id,
                      flight_id=offer.flight_id, cabin=offer.cabin, passengers=offer.passengers, items=offer.items,
                      total_cents=offer.total_cents, currency=offer.currency, conditions=offer.conditions,
                      departure_at=offer.departure_at, created_at=now, updated_at=now,
                      hold_expires_at=now + self._retail.hold_ttl_s, offer_total_cents=offer.total_cents)
        accepted = msgspec.structs.replace(offer, state="ACCEPTED")
        self._orders.hold(order.items)
        self._orders.remember(order)
        self._offer_store.remember(accepted)

        def undo() -> None:
            self._orders.release(order.items)
            self._orders.forget(order.id)
            self._offer_store.remember(offer)
        # The order and the offer's change land in one transaction (statements of one backend commit together).
        async with atomically(self._uow, undo) as tx:
            tx.orders.insert(order)
            tx.offers.change_state(accepted, "ACTIVE")
            tx.inventory.hold(order.items, self._catalog.capacity)
        self._metrics.orders.labels("PROPOSED").inc()
        self._log_event("OfferAccepted", {"offer_id": offer.id, "order_id": order.id, "owner": order.owner,
                                          "total_cents": order.total_cents})
        return order

    # ---- reading ----
    async def visible(self, order_id: str, owner: str | None) -> Order:
        """The order as its owner (or an admin, owner None) sees it; 404 for anyone else. A live order comes from
        memory without suspending; a finished one from the store."""
        order = self._orders.get(order_id) or await self._orders.fetch(order_id)
        if order is None or (owner is not None and order.owner != owner):
            raise NotFound(f"no order {order_id}")
        return order

    # ---- state changes ----
    async def _commit(self, old: Order, new: Order, *, release: bool = False,
                      event: PaymentEventRecord | None = None, chain: list[Order] | None = None) -> Order:
        """Put `new` in memory (releasing the hold if asked), then commit it guarded on `old`'s state.

        `chain` lists intermediate versions written in the same transaction (e.g. PAID before FULFILLED),
        `event` the payment webhook event that caused the change.
        If the order changed since `old` was read, nothing happens and the caller gets a 409.
        """
        current = self._orders.get(old.id)
        if current is not old:
            state = current.state if current is not None else "unknown"
            raise Conflict(f"order {old.id} changed meanwhile (now {state}); try again", {"state": state})
        self._orders.remember(new)
        if release:
            self._orders.release(old.items)
        steps = [old, *(chain or []), new]

        def undo() -> None:
            self._orders.remember(old)
            if release:
                self._orders.hold(old.items)
        async with atomically(self._uow, undo) as tx:
            for a, b in itertools.pairwise(steps):
                tx.orders.update(b, a.state)
            if release:
                tx.inventory.release(old.items)
            if event is not None:
                tx.orders.record_payment_event(*event)
        if new.state in FINISHED:
            self._orders.retire(new)  # committed: it never changes again, so it is read from the store from now on
        for step in steps[1:]:
            if step.state != old.state:
                self._metrics.orders.labels(step.state).inc()
        return new

    async def pay(self, order_id: str, owner: str | None, card_number: str,
                  expires: tuple[int, int] | None = None) -> Order:
        """Lock the order PAYMENT_PENDING, charge the card, and settle: PAID→FULFILLED, or back to PROPOSED (402).

        A charge the gateway leaves pending (or that times out) keeps the order PAYMENT_PENDING:
        the webhook or the reconciliation sweep settles it, and the expiry sweep never touches it.
        """
        number = checked_card(card_number, expires, self._clock.now())
        order = await self.visible(order_id, owner)
        now = self._clock.now()
        if order.state == "EXPIRED":
            raise Gone(f"order {order_id} expired and its hold was released; search again", {"state": "EXPIRED"})
        if order.state != "PROPOSED":
            raise Conflict(f"order {order_id} is {order.state}; only a PROPOSED order can be paid",
                           {"state": order.state})
        if now >= order.hold_expires_at:
            await self._expire(order)
            raise Gone(f"order {order_id}'s hold expired; search again", {"state": "EXPIRED"})
        payment = Payment(id=f"pay_{ids.token_hex(10)}", status="pending", amount_cents=order.total_cents,
                          currency=order.currency, card_last4=number[-4:], started_at=now, updated_at=now)
        pending = await self._commit(order, msgspec.structs.replace(order, state="PAYMENT_PENDING", payment=payment,
                                                                     updated_at=now))
        try:
            result = await asyncio.wait_for(self.gateway.charge(payment.id, order.total_cents, order.currency, number),
                                            self._payments.gateway_timeout_s)
        except TimeoutError:
            self._metrics.payments.labels("timeout").inc()
            log.warning("payment gateway timed out; reconciliation will settle it", extra={"payment_id": payment.id})
            return _refused_if_declined(await self._orders.fetch(order_id) or pending, payment.id)
        except Exception as exc:  # the gateway is outside: its failure leaves the payment for reconciliation
            self._metrics.payments.labels("error").inc()
            log.warning("payment gateway failed", extra={"payment_id": payment.id, "error": str(exc)[:200]})
            return _refused_if_declined(await self._orders.fetch(order_id) or pending, payment.id)
        settled = await self._settle(order_id, payment.id, result)
        return _refused_if_declined(settled or pending, payment.id)

    async def _settle(self, order_id: str, payment_id: str, result: ChargeResult,
                      event: PaymentEventRecord | None = None, *, final: bool = False) -> Order | None:
        """Apply a gateway result to an order still waiting on that payment; None if there is no such order.

        A decline returns the order to PROPOSED (the shopper may pay again while the hold lasts), unless
        it is `final` (the gateway's webhook: the payment has definitively failed), which cancels the
        order and releases its hold."""
        order = self._orders.get(order_id)
        if order is None or order.state != "PAYMENT_PENDING" or order.payment is None \
                or order.payment.id != payment_id:
            await self._record(event)
            # already settled (a repeat, or the webhook and the reconciler raced), perhaps finished and stored
            return order or await self._orders.fetch(order_id)
        self._metrics.payments.labels(result.status).inc()
        if result.status == "pending":
            await self._record(event)
            return order
        now = self._clock.now()
        payment = msgspec.structs.replace(order.payment, status=result.status, reason=result.reason, updated_at=now)
        if result.status == "declined":
            failed = msgspec.structs.replace(order, state="PROPOSED", payment=payment,
                                             payments_failed=order.payments_failed + 1, updated_at=now)
            if not final:
                return await self._commit(order, failed, event=event)
            cancelled = await self._commit(order, msgspec.structs.replace(failed, state="CANCELLED", refund_cents=0),
                                           release=True, event=event)
            self._log_event("OrderCancelled", {"order_id": order.id, "owner": order.owner, "refund_cents": 0,
                                               "reason": f"payment_failed: {result.reason or 'declined'}"})
            await self._bus.publish(OrderCancelled(cancelled))
            return cancelled
        # paid: a refund quote taken while it was unpaid (refund 0) no longer stands
        paid = msgspec.structs.replace(order, state="PAID", payment=payment, updated_at=now,
                                       quote=superseded(order.quote, now))
        barcodes = tuple(Barcode(ids.token_urlsafe(18), p, item.kind, item.product_id)
                         for item in order.items for p in range(1, item.quantity + 1))
        fulfilled = msgspec.structs.replace(paid, state="FULFILLED", barcodes=barcodes)
        done = await self._commit(order, fulfilled, chain=[paid], event=event)
        self._log_event("OrderPaid", {"order_id": order.id, "offer_id": order.offer_id, "owner": order.owner,
                                      "total_cents": order.total_cents, "payment_id": payment_id,
                                      "flight_id": order.flight_id,  # campaign reports attribute by route
                                      "products": sorted({i.product_id for i in order.items if i.product_id})})
        await self._bus.publish(OrderPaid(done))
        return done

    async def _record(self, event: PaymentEventRecord | None) -> None:
        """A webhook event that changes no order is still recorded, so a repeat is known as one."""
        if event is not None:
            async with atomically(self._uow) as tx:
                tx.orders.record_payment_event(*event)

    async def payment_webhook(self, event: PaymentEvent) -> tuple[Order | None, bool]:
        """Settle a pending payment from a signed gateway webhook; (order as it now stands, first time seen).

        approved: PAYMENT_PENDING → PAID → FULFILLED; declined (a definitive failure): PAYMENT_PENDING →
        CANCELLED, the hold released. An event for an order no longer waiting on that payment (already
        paid, cancelled, or paying again) changes nothing: the answer is the order's current state."""
        if not _is_final_status(event.status):
            raise InvalidInput("status must be approved or declined")
        if await self._orders.seen_payment_event(event.id):
            return await self._orders.fetch(event.order_id), False
        order = await self._settle(event.order_id, event.payment_id, ChargeResult(event.status, event.reason),
                                   (event.id, event.payment_id, self._clock.now()), final=True)
        return order, True

    async def _expire(self, order: Order) -> Order:
        expired = await self._commit(order, msgspec.structs.replace(order, state="EXPIRED",
                                                                     updated_at=self._clock.now()), release=True)
        self._log_event("OrderExpired", {"order_id": order.id, "owner": order.owner})
        return expired

    # ---- fulfilment ----
    async def consume(self, code: str) -> tuple[Order, Barcode]:
        """Use a barcode at the gate or the lounge: once only (then 409)."""
        order = await self._orders.fetch_by_barcode(code)
        if order is None:
            raise NotFound("no such barcode")
        barcode = next(b for b in order.barcodes if b.code == code)
        if order.state != "FULFILLED":
            raise Conflict(f"order {order.id} is {order.state}; its barcodes cannot be used", {"state": order.state})
        if barcode.consumed_at is not None:
            raise Conflict("barcode already used", {"consumed_at": barcode.consumed_at})
        used = msgspec.structs.replace(barcode, consumed_at=self._clock.now())
        updated = msgspec.structs.replace(order, barcodes=tuple(used if b.code == code else b for b in order.barcodes),
                                          updated_at=used.consumed_at)
        await self._commit(order, updated)
        return updated, used

    # ---- cancellation ----
    async def quote_cancellation(self, order_id: str, owner: str | None) -> CancellationQuote:
        """A refund quote for the order as it is now (cancellation_terms), valid retail.quote_ttl_s while the order
        stays as it is."""
        order = await self.visible(order_id, owner)
        now = self._clock.now()
        if order.state not in ("PROPOSED", "PAID", "FULFILLED"):
            raise Conflict(f"order {order_id} is {order.state} and cannot be cancelled", {"state": order.state})
        if now >= order.departure_at:
            raise Conflict("the flight has departed; the order can no longer be cancelled")
        if any(b.consumed_at is not None for b in order.barcodes):
            raise Conflict("part of this order has been used; it can no longer be cancelled")
        terms = cancellation_terms(order)
        quote = CancellationQuote(f"qte_{ids.token_hex(8)}", terms.refund_cents, order.currency, now,
                                  now + self._retail.quote_ttl_s, order_version=order.version,
                                  paid_cents=terms.paid_cents, change_fees_cents=terms.change_fees_cents,
                                  penalty_cents=terms.penalty_cents)
        await self._commit(order, msgspec.structs.replace(order, quote=quote, updated_at=now))
        return quote

    async def confirm_cancellation(self, order_id: str, quote_id: str, owner: str | None) -> Order:
        """Cancel the order with the refund its quote gave, as long as the order is still as it was quoted:
        404 no such quote, 409 not cancellable or changed (or paid) since the quote, 410 the quote expired."""
        order = await self.visible(order_id, owner)
        now = self._clock.now()
        quote = order.quote
        if quote is None or quote.id != quote_id:
            raise NotFound(f"no cancellation quote {quote_id} for order {order_id}")
        if order.state not in ("PROPOSED", "PAID", "FULFILLED"):
            raise Conflict(f"order {order_id} is {order.state} and cannot be cancelled", {"state": order.state})
        terms = cancellation_terms(order)
        if (quote.order_version, quote.paid_cents, quote.refund_cents) != \
                (order.version, terms.paid_cents, terms.refund_cents):
            raise Conflict(f"order {order_id} has changed since cancellation quote {quote_id} was made (it was for "
                           f"version {quote.order_version} with {quote.paid_cents} paid; the order is now version "
                           f"{order.version} with {terms.paid_cents} paid): ask for a new quote",
                           {"reason": "order_changed", "state": order.state, "version": order.version,
                            "paid_cents": terms.paid_cents})
        if now >= quote.expires_at:
            raise Gone("the cancellation quote has expired; ask for a new one")
        if any(b.consumed_at is not None for b in order.barcodes):
            raise Conflict("part of this order has been used; it can no longer be cancelled")
        refund_within_paid(order, quote.refund_cents)
        cancelled = await self._commit(order, msgspec.structs.replace(
            order, state="CANCELLED", refund_cents=quote.refund_cents, updated_at=now), release=True)
        self._log_event("OrderCancelled", {"order_id": order.id, "owner": order.owner,
                                           "refund_cents": quote.refund_cents})
        await self._bus.publish(OrderCancelled(cancelled))
        return cancelled

    # ---- sweeps ----
    async def sweep(self) -> dict[str, int]:
        """Expire unpaid holds, reconcile stuck payments, archive flown orders. PAYMENT_PENDING never expires here."""
        now = self._clock.now()
        due = self._orders.due("PROPOSED", now)
        stuck = [o for o in self._orders.in_state("PAYMENT_PENDING")
                 if o.payment is not None and now - o.payment.started_at >= self._payments.pending_timeout_s]
        flown_before = departed_horizon(self._retail, now)
        flown = self._orders.due("FULFILLED", flown_before)
        # _commit skips any order that changed since this snapshot (a payment that just started is
        # PAYMENT_PENDING now and is left alone); the group commit merges the writes.
        await asyncio.gather(*(_unless_changed(self._expire(o)) for o in due),
                             *(_unless_changed(self._reconcile(o, now)) for o in stuck),
                             *(_unless_changed(self._commit(o, msgspec.structs.replace(o, state="ARCHIVED",
                                                                                        updated_at=now)))
                               for o in flown))
        let_go = self._catalog.forget_departed(flown_before)  # their flights leave memory with them
        return {"expired": len(due), "reconciled": len(stuck), "archived": len(flown), "flights_let_go": let_go}

    async def _reconcile(self, order: Order, now: float) -> None:
        assert order.payment is not None
        try:
            result = await asyncio.wait_for(self.gateway.status(order.payment.id), self._payments.gateway_timeout_s)
        except Exception as exc:  # try again next sweep
            log.warning("payment reconciliation failed", extra={"payment_id": order.payment.id, "error": str(exc)})
            return
        if result is None:
            result = ChargeResult("declined", "payment_not_found")
        elif result.status == "pending" and now >= self._given_up_at(order):
            result = ChargeResult("declined", "payment_not_settled")
        await self._settle(order.id, order.payment.id, result)

    def _given_up_at(self, order: Order) -> float:
        """When a payment the gateway still calls pending is taken as declined: the hold's end plus
        payments.pending_timeout_s."""
        return order.hold_expires_at + self._payments.pending_timeout_s


class CancellationTerms(NamedTuple):
    """What cancelling an order gives back now: refund = paid − change fees − penalty."""
    paid_cents: int
    change_fees_cents: int
    penalty_cents: int
    refund_cents: int


def paid_cents(order: Order) -> int:
    """What has been paid for the order, net of what was refunded: nothing until its payment is approved; then its
    total, which each confirmed change moved by what it charged or refunded."""
    if order.state in ("PAID", "FULFILLED", "ARCHIVED") or order.pending_change is not None:
        return order.total_cents
    return 0


def refund_within_paid(order: Order, refund_cents: int) -> None:
    """The one guard on money going back (a cancellation's refund, a change's): never more than was paid for the
    order net of earlier refunds. Past it: 409 `refund_exceeds_paid`, nothing refunded."""
    paid = paid_cents(order)
    if refund_cents > paid:
        raise Conflict(f"a refund of {refund_cents} {order.currency} is more than the {paid} paid for order "
                       f"{order.id} net of refunds; nothing was refunded",
                       {"reason": "refund_exceeds_paid", "state": order.state, "refund_cents": refund_cents,
                        "paid_cents": paid})


def cancellation_terms(order: Order) -> CancellationTerms:
    """Cancelling the order as it is now. Unpaid: nothing back. Paid: the change fees its changes charged are kept;
    of the rest, a refundable fare keeps its penalty rate (conditions.refund_penalty_cents as a share of the price
    they were set for, the offer's total, halves up) applied to what the order is worth now; a non-refundable fare
    keeps all of it. An order changed before the offer's total was recorded keeps the penalty as sold."""
    paid = paid_cents(order)
    fees = min(paid, order.change_fees_cents)
    value = paid - fees
    conditions = order.conditions
    basis = priced_on(order)
    if not conditions.refundable:
        penalty = value
    elif basis is None or basis <= 0:
        penalty = min(value, conditions.refund_penalty_cents)
    else:
        penalty = min(value, (conditions.refund_penalty_cents * value * 2 + basis) // (2 * basis))
    return CancellationTerms(paid, fees, penalty, value - penalty)


def priced_on(order: Order) -> int | None:
    """The price the order's conditions were set for: its offer's total (a version-1 order's own total when it was
    accepted before that was recorded); None for an order changed before then."""
    if order.offer_total_cents is not None:
        return order.offer_total_cents
    return order.total_cents if order.version == 1 else None


def superseded(quote: CancellationQuote | None, now: float) -> CancellationQuote | None:
    """A refund quote the order has moved on from (paid, changed): kept, so a late confirm is told why it is
    refused, but ended now."""
    if quote is None or quote.expires_at <= now:
        return quote
    return msgspec.structs.replace(quote, expires_at=now)


def _is_final_status(status: str) -> TypeGuard[Literal["approved", "declined"]]:
    """A status a payment webhook may report: the payment's final result."""
    return status in ("approved", "declined")


def _refused_if_declined(order: Order, payment_id: str) -> Order:
    """The order a checkout answers with, or 402 when this payment was declined: the order is back to
    PROPOSED (the card was declined at checkout), or CANCELLED (the gateway's webhook got there first)."""
    payment = order.payment
    if order.state in ("PROPOSED", "CANCELLED") and payment is not None and payment.id == payment_id \
            and payment.status == "declined":
        raise PaymentRequired(f"payment declined: {payment.reason or 'declined'}",
                              {"reason": payment.reason, "order": {"id": order.id, "state": order.state}})
    return order


async def _unless_changed(change) -> None:
    try:
        await change
    except Conflict:
        pass


def require_owner_or_admin(principal) -> str | None:
    """The owner scope a caller may see, or None for admins (who see every order)."""
    if principal.is_admin:
        return None
    if principal.role not in ("guest", "customer"):
        raise Forbidden("orders belong to customers and guests")
    return principal.scope
