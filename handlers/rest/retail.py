"""Retailing over REST: flights, offers, orders, payments, fulfilment, and the catalog admin."""

from __future__ import annotations

import datetime
import functools
import io
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
import segno
from aiohttp import web

from app.errors import NotFound, Unauthenticated
from app.retail.catalog import CatalogService
from app.retail.changes import ChangeRequestBody, OrderChangeService
from app.retail.offers import Airport, OfferService, SearchQuery
from app.retail.orders import PaymentEvent, require_owner_or_admin
from app.retail.payments import webhook_signature_valid
from app.retail.ranking import Ranker
from app.runtime.clock import Clock
from handlers.rest.common import (
    Cursor,
    PageQuery,
    decode,
    endpoint,
    json_response,
    keyset_after,
    keyset_page,
)
from state.catalog import Cabin, Flight, Product
from state.changes import ChangeOffer, ChangeRequest, OrderVersion
from state.offers import Offer
from state.orders import Barcode, CancellationQuote, Order, OrderState
from state.ports import OrderStore
from state.text import whole

SHOPPERS = ("guest", "customer", "admin")
ADMIN = ("admin",)
Identifier = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_\-]{1,64}"))]


# ---- flights ----
# A calendar day, YYYY-MM-DD (RFC 3339 full-date): 2026-13-45 has the shape and is no day.
CalendarDay = Annotated[str, msgspec.Meta(pattern=whole(r"\d{4}-\d{2}-\d{2}"), extra_json_schema={"format": "date"})]


class AdminFlightQuery(PageQuery, forbid_unknown_fields=True):
    departs_after: Annotated[float, msgspec.Meta(
        ge=0, le=1e10, description="Epoch seconds: start the list at the flights departing then or later (the "
                                   "next_cursor goes on from there)")] | None = None


class FlightQuery(msgspec.Struct, forbid_unknown_fields=True):
    origin: Airport
    destination: Airport
    date: CalendarDay

    def __post_init__(self) -> None:
        try:
            datetime.date.fromisoformat(self.date)
        except ValueError:
            raise ValueError(f"date {self.date!r} is not a calendar day (YYYY-MM-DD)") from None


class FlightView(msgspec.Struct):
    id: str
    number: str
    origin: str
    destination: str
    departure_at: float
    arrival_at: float
    seats_left: dict[str, int]
    status: str
    fares_now: dict[str, int]  # per cabin: one economy-segment passenger's fare if searched now (cents)


class Route(msgspec.Struct):
    origin: str
    destination: str


class RouteList(msgspec.Struct):
    items: list[Route]


class FlightList(msgspec.Struct):
    items: list[FlightView]


def _flight_view(catalog: CatalogService, f: Flight, now: float) -> FlightView:
    return FlightView(f.id, f.number, f.origin, f.destination, f.departure_at, f.arrival_at,
                      catalog.seats_left_by_cabin(f), f.status, catalog.fares_now(f, now))


class FlightNow(Flight, frozen=True, gc=False):
    """A flight as staff manage it: its definition, with the seats left and the fares now per cabin."""
    seats_left: dict[str, int] = {}
    fares_now: dict[str, int] = {}  # one economy-segment passenger's fare if searched now (cents)


# ---- offers ----
class OfferList(msgspec.Struct):
    offers: list[Offer]
    ranked_by: str      # remote, model, rules (none when nothing had room)
    model_version: str  # of the in-process model: rules, or the live acceptance version (acceptance-<n>)


# ---- orders ----
class OrderQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: Cursor | None = None
    state: OrderState | None = None


class OrderPage(msgspec.Struct):
    items: list[Order]
    next_cursor: str | None


class Card(msgspec.Struct, forbid_unknown_fields=True):
    number: Annotated[str, msgspec.Meta(min_length=12, max_length=23)]
    exp_month: Annotated[int, msgspec.Meta(ge=1, le=12)]
    exp_year: Annotated[int, msgspec.Meta(ge=2000, le=2100)]
    cvc: Annotated[str, msgspec.Meta(pattern=whole(r"\d{3,4}"))]


class PayBody(msgspec.Struct, forbid_unknown_fields=True):
    card: Card


class ConfirmChangeBody(msgspec.Struct, forbid_unknown_fields=True):
    """A change's confirmation: a card when the change offer's total is owed (> 0); no body otherwise."""
    card: Card | None = None


class OrderHistory(msgspec.Struct):
    order_id: str
    versions: list[OrderVersion]  # oldest first; the last is the order now


class WebhookResult(msgspec.Struct):
    order_id: str
    state: str | None
    duplicate: bool


class Fulfilment(msgspec.Struct):
    order_id: str
    state: str
    barcodes: tuple[Barcode, ...]


class Consumed(msgspec.Struct):
    order_id: str
    barcode: Barcode


# ---- catalog admin ----
# Cabins by name; the catalog refuses other names, saying which (so the names are documented, not typed).
Cabins = Annotated[dict[str, Cabin], msgspec.Meta(
    min_length=1, max_length=3, extra_json_schema={"propertyNames": {"enum": ["economy", "premium", "business"]}})]


class NewFlight(msgspec.Struct, forbid_unknown_fields=True):
    id: Identifier
    airline: Annotated[str, msgspec.Meta(pattern=whole(r"[A-Z0-9]{2}"))]
    number: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]
    origin: Airport
    destination: Airport
    departure_at: Annotated[float, msgspec.Meta(ge=0, le=4_102_444_800)]
    arrival_at: Annotated[float, msgspec.Meta(ge=0, le=4_102_444_800)]
    cabins: Cabins
    currency: Annotated[str, msgspec.Meta(pattern=whole(r"[A-Z]{3}"))] = "USD"


class FlightPatch(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["scheduled", "cancelled"] | None = None
    cabins: Cabins | None = None


class AdminFlightPage(msgspec.Struct):
    items: list[FlightNow]
    next_cursor: str | None


class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
    id: Identifier
    kind: Literal["Seat", "Bag", "Meal", "Lounge", "CarbonOffset", "Insurance", "FastTrack"]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    currency: Annotated[str, msgspec.Meta(pattern=whole(r"[A-Z]{3}"))] = "USD"
    capacity_per_flight: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None


class ProductPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None
    capacity_per_flight: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    status: Literal["active", "retired"] | None = None


class ProductList(msgspec.Struct):
    items: list[Product]


class RetailApi:
    """Flights, offers, orders, payments and fulfilment for shoppers; the catalog for admins."""

    def __init__(self, catalog: CatalogService, offers: OfferService, ranker: Ranker, orders: OrderChangeService,
                 order_store: OrderStore, webhook_secret: str, clock: Clock,
                 orders_loaded: Callable[[], Awaitable[None]] | None = None) -> None:
        """`orders_loaded`: returns once the live orders are in memory (a server loads them after it is ready);
        every route but the order list, which reads the store, waits for it."""
        self._catalog = catalog
        self._clock = clock
        self._offers = offers
        self._ranker = ranker
        self._orders = orders
        self._order_store = order_store
        self._webhook_secret = webhook_secret
        self._orders_loaded = orders_loaded

    def _with_orders(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The handler, run once the live orders (and the seats they hold) are in memory."""
        loaded = self._orders_loaded
        if loaded is None:
            return handler

        @functools.wraps(handler)  # its endpoint spec too
        async def once_loaded(request: web.Request) -> web.StreamResponse:
            await loaded()
            return await handler(request)
        return once_loaded

    def register(self, router: web.UrlDispatcher) -> None:
        r, w = router, self._with_orders  # every route but the order list waits for the live orders
        r.add_get("/v1/routes", w(self.list_routes))
        r.add_get("/v1/flights", w(self.list_flights))
        r.add_post("/v1/offers/search", w(self.search_offers))
        r.add_get("/v1/offers/{offer_id}", w(self.get_offer))
        r.add_delete("/v1/offers/{offer_id}", w(self.cancel_offer))
        r.add_post("/v1/offers/{offer_id}/accept", w(self.accept_offer))
        r.add_get("/v1/orders", self.list_orders)  # a keyset read of the store: answered while orders load
        r.add_get("/v1/orders/{order_id}", w(self.get_order))
        r.add_post("/v1/orders/{order_id}/pay", w(self.pay_order))
        r.add_get("/v1/orders/{order_id}/fulfillment", w(self.fulfilment))
        r.add_post("/v1/orders/{order_id}/cancellations", w(self.quote_cancellation))
        r.add_post("/v1/orders/{order_id}/cancellations/{quote_id}/confirm", w(self.confirm_cancellation))
        r.add_post("/v1/orders/{order_id}/change-requests", w(self.request_change))
        r.add_get("/v1/orders/{order_id}/change-requests/{request_id}", w(self.get_change_request))
        r.add_get("/v1/orders/{order_id}/change-offers/{change_offer_id}", w(self.get_change_offer))
        r.add_post("/v1/orders/{order_id}/change-offers/{change_offer_id}/confirm", w(self.confirm_change))
        r.add_get("/v1/orders/{order_id}/history", w(self.order_history))
        r.add_get("/v1/orders/{order_id}/barcodes/{code}.svg", w(self.barcode_image))
        r.add_post("/v1/fulfillment/{barcode}/consume", w(self.consume_barcode))
        r.add_post("/v1/webhooks/payments", w(self.payment_webhook))
        r.add_post("/v1/admin/flights", w(self.create_flight))
        r.add_get("/v1/admin/flights", w(self.admin_flights))
        r.add_patch("/v1/admin/flights/{flight_id}", w(self.patch_flight))
        r.add_post("/v1/admin/products", w(self.create_product))
        r.add_get("/v1/admin/products", w(self.list_products))
        r.add_get("/v1/products", w(self.products_for_sale))
        r.add_patch("/v1/admin/products/{product_id}", w(self.patch_product))

    # ---- flights ----
    @endpoint("The routes the carrier flies: every origin and destination with a scheduled flight to come (public)",
              tags=("retail",), response=RouteList)
    async def list_routes(self, request: web.Request, principal) -> web.Response:
        return json_response(RouteList([Route(a, b) for a, b in self._catalog.routes(self._clock.now())]))

    @endpoint("Scheduled flights of a route on a day, with the seats left per cabin (public)", tags=("retail",),
              query=FlightQuery, response=FlightList)
    async def list_flights(self, request: web.Request, principal, query: FlightQuery) -> web.Response:
        flights = self._catalog.flights_on(query.origin, query.destination, query.date)
        now = self._clock.now()
        return json_response(FlightList([_flight_view(self._catalog, f, now) for f in flights]))

    # ---- offers ----
    @endpoint("Search: 3 to 5 priced, ranked offers that expire (empty when nothing has room)", tags=("retail",),
              roles=SHOPPERS, body=SearchQuery, response=OfferList)
    async def search_offers(self, request: web.Request, principal, body: SearchQuery) -> web.Response:
        offers, ranked_by = await self._offers.search(body, principal.scope, is_guest=principal.kind == "guest",
                                                      session_id=principal.id)
        return json_response(OfferList(offers, ranked_by, self._ranker.model_version))

    @endpoint("One of your offers; its state is EXPIRED once expires_at has passed", tags=("retail",),
              roles=SHOPPERS, response=Offer, errors=(404,))
    async def get_offer(self, request: web.Request, principal) -> web.Response:
        owner = require_owner_or_admin(principal)
        return json_response(await self._offers.visible(request.match_info["offer_id"], owner))

    @endpoint("Withdraw one of your offers (ACTIVE → CANCELLED)", tags=("retail",), roles=SHOPPERS, response=Offer,
              errors=(404, 409, 410))
    async def cancel_offer(self, request: web.Request, principal) -> web.Response:
        owner = require_owner_or_admin(principal)
        return json_response(await self._offers.cancel(request.match_info["offer_id"], owner))

    @endpoint("Accept an offer: holds its inventory in a PROPOSED order (send an Idempotency-Key)",
              tags=("retail",), roles=SHOPPERS, response=Order, status=201, errors=(404, 409, 410))
    async def accept_offer(self, request: web.Request, principal) -> web.Response:
        require_owner_or_admin(principal)
        order = await self._orders.accept(request.match_info["offer_id"], principal.scope, admin=principal.is_admin)
        return json_response(order, status=201)

    # ---- orders ----
    @endpoint("Your orders, oldest first (admins: everyone's), optionally only those in one state", tags=("retail",),
              roles=SHOPPERS, query=OrderQuery, response=OrderPage)
    async def list_orders(self, request: web.Request, principal, query: OrderQuery) -> web.Response:
        owner = require_owner_or_admin(principal)
        after = await keyset_after(query.after, lambda order_id: self._own_position(order_id, owner))
        orders = await self._order_store.page(owner, query.state, after, query.limit + 1)
        page, nxt = keyset_page(orders, query.limit, lambda o: (o.created_at, o.id))
        return json_response(OrderPage(page, nxt))

    async def _own_position(self, order_id: str, owner: str | None) -> tuple[float, str] | None:
        """Where one of the caller's orders (an admin's: anyone's) sorts in lists; None for any other id, so another
        customer's order answers as an unknown one would (neither its existence nor its time shows)."""
        order = await self._order_store.fetch(order_id)
        if order is None or (owner is not None and order.owner != owner):
            return None
        return order.created_at, order.id

    @endpoint("One of your orders", tags=("retail",), roles=SHOPPERS, response=Order, errors=(404,))
    async def get_order(self, request: web.Request, principal) -> web.Response:
        owner = require_owner_or_admin(principal)
        return json_response(await self._orders.visible(request.match_info["order_id"], owner))

    @endpoint("Pay for a PROPOSED order (send an Idempotency-Key). 200 paid and fulfilled, 202 pending at the "
              "gateway, 402 declined (the order is PROPOSED again)", tags=("retail",), roles=SHOPPERS, body=PayBody,
              response=Order, also=(202,), errors=(402, 404, 409, 410),
              descriptions={200: "Paid and fulfilled", 202: "Pending at the payment gateway"})
    async def pay_order(self, request: web.Request, principal, body: PayBody) -> web.Response:
        owner = require_owner_or_admin(principal)
        card = body.card
        order = await self._orders.pay(request.match_info["order_id"], owner, card.number,
                                       (card.exp_year, card.exp_month))
        return json_response(order, status=202 if order.state == "PAYMENT_PENDING" else 200)

    @endpoint("Payment gateway webhook (HMAC-SHA256 of the body in X-Contrail-Signature: sha256=<hex>); "
              "settles a pending payment; repeats change nothing", tags=("retail",), raw_body=PaymentEvent,
              response=WebhookResult, errors=(401,), request_headers=[{
                  "name": "X-Contrail-Signature", "in": "header", "required": True,
                  "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                  "description": "sha256=<hex HMAC-SHA256 of the body with payments.webhook_secret>; 401 when it "
                                 "is missing or wrong"}])
    async def payment_webhook(self, request: web.Request, principal) -> web.Response:
        raw = await request.read()
        if not webhook_signature_valid(self._webhook_secret, raw, request.headers.get("X-Contrail-Signature")):
            raise Unauthenticated("missing or wrong X-Contrail-Signature")
        event = decode(raw, PaymentEvent)
        order, first = await self._orders.payment_webhook(event)
        return json_response(WebhookResult(event.order_id, order.state if order else None, not first))

    @endpoint("The barcodes of a paid order: one per passenger and product", tags=("retail",), roles=SHOPPERS,
              response=Fulfilment, errors=(404,))
    async def fulfilment(self, request: web.Request, principal) -> web.Response:
        order = await self._orders.visible(request.match_info["order_id"], require_owner_or_admin(principal))
        return json_response(Fulfilment(order.id, order.state, order.barcodes))

    @endpoint("A barcode of a paid order as a scannable QR code (SVG)", tags=("retail",), roles=SHOPPERS,
              response=str, errors=(404,), content_type="image/svg+xml")
    async def barcode_image(self, request: web.Request, principal) -> web.Response:
        order = await self._orders.visible(request.match_info["order_id"], require_owner_or_admin(principal))
        code = request.match_info["code"]
        if not any(b.code == code for b in order.barcodes):
            raise NotFound(f"order {order.id} has no barcode {code}")
        svg = io.BytesIO()
        segno.make_qr(code, error="m").save(svg, kind="svg", xmldecl=False, svgns=True, scale=4, border=4,
                                            dark="#000", light="#fff", title=f"Barcode {code}")
        return web.Response(body=svg.getvalue(), content_type="image/svg+xml",
                            headers={"Cache-Control": "private, max-age=3600"})

    @endpoint("Use a barcode at the gate, lounge or counter (staff); a second use is 409", tags=("retail",),
              roles=ADMIN, response=Consumed, errors=(404, 409))
    async def consume_barcode(self, request: web.Request, principal) -> web.Response:
        order, barcode = await self._orders.consume(request.match_info["barcode"])
        return json_response(Consumed(order.id, barcode))

    @endpoint("Ask for a cancellation: a refund quote from the order's conditions (unpaid orders refund 0)",
              tags=("retail",), roles=SHOPPERS, response=CancellationQuote, status=201, errors=(404, 409))
    async def quote_cancellation(self, request: web.Request, principal) -> web.Response:
        quote = await self._orders.quote_cancellation(request.match_info["order_id"],
                                                      require_owner_or_admin(principal))
        return json_response(quote, status=201)

    @endpoint("Confirm a cancellation quote: the order is CANCELLED, its inventory released, the refund recorded",
              tags=("retail",), roles=SHOPPERS, response=Order, errors=(404, 409, 410))
    async def confirm_cancellation(self, request: web.Request, principal) -> web.Response:
        order = await self._orders.confirm_cancellation(
            request.match_info["order_id"], request.match_info["quote_id"], require_owner_or_admin(principal))
        return json_response(order)

    # ---- changes (app/retail/changes.py) ----
    @endpoint("Ask to change a paid order (another flight, services added or removed): 1 to 5 priced change offers "
              "that expire", tags=("retail",), roles=SHOPPERS, body=ChangeRequestBody, response=ChangeRequest,
              status=201, errors=(404, 409, 422))
    async def request_change(self, request: web.Request, principal, body: ChangeRequestBody) -> web.Response:
        change = await self._orders.request_change(request.match_info["order_id"], require_owner_or_admin(principal),
                                                   body)
        return json_response(change, status=201)

    @endpoint("A change request of one of your orders, with its change offers", tags=("retail",), roles=SHOPPERS,
              response=ChangeRequest, errors=(404,))
    async def get_change_request(self, request: web.Request, principal) -> web.Response:
        change = await self._orders.change_request(request.match_info["order_id"], request.match_info["request_id"],
                                                   require_owner_or_admin(principal))
        return json_response(change)

    @endpoint("A change offer of one of your orders; its state is EXPIRED once expires_at has passed",
              tags=("retail",), roles=SHOPPERS, response=ChangeOffer, errors=(404,))
    async def get_change_offer(self, request: web.Request, principal) -> web.Response:
        offer = await self._orders.change_offer(request.match_info["order_id"], request.match_info["change_offer_id"],
                                                require_owner_or_admin(principal))
        return json_response(offer)

    @endpoint("Confirm a change offer (send an Idempotency-Key; a card when money is owed): 200 the changed order, "
              "202 its payment pending at the gateway, 402 declined (the order is unchanged)", tags=("retail",),
              roles=SHOPPERS, raw_body=ConfirmChangeBody, response=Order, also=(202,),
              errors=(402, 404, 409, 410, 422),
              descriptions={200: "Changed", 202: "The change's payment is pending at the gateway"})
    async def confirm_change(self, request: web.Request, principal) -> web.Response:
        owner = require_owner_or_admin(principal)
        raw = await request.read()
        body = decode(raw, ConfirmChangeBody) if raw.strip() else ConfirmChangeBody()
        card = body.card
        order = await self._orders.confirm_change(
            request.match_info["order_id"], request.match_info["change_offer_id"], owner,
            card.number if card else None, (card.exp_year, card.exp_month) if card else None)
        return json_response(order, status=202 if order.state == "PAYMENT_PENDING" else 200)

    @endpoint("Every version of one of your orders, oldest first (each change makes the next)", tags=("retail",),
              roles=SHOPPERS, response=OrderHistory, errors=(404,))
    async def order_history(self, request: web.Request, principal) -> web.Response:
        order_id = request.match_info["order_id"]
        versions = await self._orders.history(order_id, require_owner_or_admin(principal))
        return json_response(OrderHistory(order_id, versions))

    # ---- catalog admin (the catalog records each change in the audit log) ----
    @endpoint("Create a flight", tags=("catalog",), roles=ADMIN, body=NewFlight, response=Flight, status=201,
              errors=(409,))
    async def create_flight(self, request: web.Request, principal, body: NewFlight) -> web.Response:
        flight = Flight(**msgspec.structs.asdict(body))
        await self._catalog.put_flights(principal, [flight])
        return json_response(flight, status=201)

    @endpoint("List flights by departure, those flown long ago too (departs_after: from a time on)",
              tags=("catalog",), roles=ADMIN, query=AdminFlightQuery,
              response=AdminFlightPage)
    async def admin_flights(self, request: web.Request, principal, query: AdminFlightQuery) -> web.Response:
        after = await keyset_after(query.after, self._catalog.flight_position)
        if after is None and query.departs_after is not None:
            after = (query.departs_after, "")  # every id sorts after "": those departing at that time are in
        read = await self._catalog.flights_page(after, query.limit + 1)
        page, nxt = keyset_page(read, query.limit, lambda f: (f.departure_at, f.id))
        catalog, now = self._catalog, self._clock.now()
        flights = [FlightNow(**msgspec.structs.asdict(f), seats_left=catalog.seats_left_by_cabin(f),
                             fares_now=catalog.fares_now(f, now)) for f in page]
        return json_response(AdminFlightPage(flights, nxt))

    @endpoint("Cancel, reinstate or resize a flight (capacity never below the seats sold or held)",
              tags=("catalog",), roles=ADMIN, body=FlightPatch, response=Flight, errors=(404, 409))
    async def patch_flight(self, request: web.Request, principal, body: FlightPatch) -> web.Response:
        flight = await self._catalog.update_flight(principal, request.match_info["flight_id"],
                                                   **msgspec.structs.asdict(body))
        return json_response(flight)

    @endpoint("Create an ancillary product", tags=("catalog",), roles=ADMIN, body=NewProduct, response=Product,
              status=201, errors=(409,))
    async def create_product(self, request: web.Request, principal, body: NewProduct) -> web.Response:
        product = await self._catalog.put_product(principal, Product(**msgspec.structs.asdict(body)))
        return json_response(product, status=201)

    @endpoint("The products on sale (active), with their prices per passenger (public): what a traveller can add to a "
              "booking or to a paid order as a change", tags=("retail",), response=ProductList)
    async def products_for_sale(self, request: web.Request, principal) -> web.Response:
        return json_response(ProductList([p for p in self._catalog.products() if p.status == "active"]))

    @endpoint("List products", tags=("catalog",), roles=ADMIN, response=ProductList)
    async def list_products(self, request: web.Request, principal) -> web.Response:
        return json_response(ProductList(self._catalog.products()))

    @endpoint("Change a product's name, price, capacity or status", tags=("catalog",), roles=ADMIN,
              body=ProductPatch, response=Product, errors=(404, 409))
    async def patch_product(self, request: web.Request, principal, body: ProductPatch) -> web.Response:
        product = await self._catalog.update_product(principal, request.match_info["product_id"],
                                                     **msgspec.structs.asdict(body))
        return json_response(product)
