"""Channels over REST: activation, the suppression list, email tracking links and unsubscribe, the mailbox."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.channels.activation import ActivationService
from app.channels.analytics import MAX_EVENTS, EmailAnalytics
from app.channels.email import EmailService
from app.channels.ingest import MAX_BATCH, ChannelEvent, IngestService
from app.channels.ports import Mailbox
from app.channels.suppression import SuppressionService
from app.errors import InvalidInput, NotFound
from app.jsondepth import check_depth
from handlers.rest.common import Cursor, decode_cursor, encode_cursor, endpoint, json_response
from state.campaigns import ActivationChannel
from state.text import whole

ADMIN = ("admin",)
STAFF = ("admin", "partner")
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


class ActivateBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    html: Annotated[str, msgspec.Meta(max_length=500_000)] | None = None
    channel: ActivationChannel | None = None
    present: bool = False
    # Only customers whose predicted lifetime value is inside the band (either end may be left open).
    ltv_min: Annotated[float, msgspec.Meta(ge=0, le=1e9)] | None = None
    ltv_max: Annotated[float, msgspec.Meta(ge=0, le=1e9)] | None = None
    # For a campaign: it must be live (409 naming its state otherwise); the activation is logged with it.
    campaign_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ActivationResult(msgspec.Struct):
    activation_id: str
    channel: str | None
    status: str              # queued, suppressed, capped, unreachable, outside_ltv_band, ltv_unknown
    provider_message_id: str | None
    predicted_ltv: float | None = None  # with an LTV band: the value it was checked against


class IngestResult(msgspec.Struct):
    accepted: int
    rejected: list[dict]       # {index, error} for each event that was not accepted
    stars_earned_events: int
    earn_errors: list[str]


IngestBody = ChannelEvent | Annotated[list[ChannelEvent], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


# ---- suppression list ----
class SuppressionEntry(msgspec.Struct, forbid_unknown_fields=True):
    identifier: Identifier
    channel: Literal["email", "sms", "push", "all"] = "all"
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "manual"
    expires_at: float | None = None


class SuppressionKey(msgspec.Struct, forbid_unknown_fields=True):
    identifier: Identifier
    channel: Literal["email", "sms", "push", "all"] = "all"


class SuppressionAdd(msgspec.Struct, forbid_unknown_fields=True):
    entries: Annotated[list[SuppressionEntry], msgspec.Meta(min_length=1, max_length=10_000)]


class SuppressionRemove(msgspec.Struct, forbid_unknown_fields=True):
    entries: Annotated[list[SuppressionKey], msgspec.Meta(min_length=1, max_length=10_000)]


class SuppressionView(msgspec.Struct):
    id: str
    identifier: str
    channel: str
    reason: str
    created_at: float
    expires_at: float | None


class SuppressionPage(msgspec.Struct):
    items: list[SuppressionView]
    next_cursor: str | None


class SuppressionQuery(msgspec.Struct, forbid_unknown_fields=True):
    identifier: str | None = None
    channel: Literal["email", "sms", "push", "all"] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: Cursor | None = None


class Changed(msgspec.Struct):
    changed: int


# ---- what recipients click ----
LinkSignature = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]*"), description="The link's signature (hex)")]


class ClickLink(msgspec.Struct):
    """What a tracked link carries (the handler reads it; checked first)."""
    u: Annotated[str, msgspec.Meta(description="The link's target, http:// or https://")]
    t: LinkSignature


class UnsubscribeLink(msgspec.Struct):
    """What an unsubscribe link carries (the handler reads it; checked first)."""
    m: Annotated[str, msgspec.Meta(description="The message id")]
    t: LinkSignature


def _unsubscribe_page(text: str) -> web.Response:
    return web.Response(text=f"<!doctype html><title>Contrail</title><p>{text}</p>", content_type="text/html")


class MailboxPage(msgspec.Struct):
    received: int
    items: list[dict]


class MailboxQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50


class SendGridEvent(msgspec.Struct):
    """One event of SendGrid's Event Webhook (its other fields are kept as sent)."""
    event: str
    email: str = ""


SendGridBatch = Annotated[list[SendGridEvent], msgspec.Meta(max_length=MAX_EVENTS)]


class WebhookCounts(msgspec.Struct):
    recorded: int
    duplicate: int
    ignored: int


class EmailReport(msgspec.Struct):
    activation_id: str | None
    sent: int
    delivered: int
    opens: int
    unique_opens: int
    clicks: int
    unique_clicks: int
    bounces: int
    blocked: int
    dropped: int
    deferred: int
    spam_reports: int
    unsubscribes: int
    open_rate: float
    click_rate: float
    bounce_rate: float


class ChannelsApi:
    """Activation, ingest, the suppression list, what email recipients click, the mailbox, email analytics."""

    def __init__(self, activation: ActivationService, ingest: IngestService, suppression: SuppressionService,
                 email: EmailService, mailbox: Mailbox, email_analytics: EmailAnalytics) -> None:
        self._activation = activation
        self._ingest = ingest
        self._suppression = suppression
        self._email = email
        self._mailbox = mailbox
        self._email_analytics = email_analytics

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/channels/activate", self.activate)
        router.add_post("/v1/channels/ingest", self.ingest)
        router.add_get("/v1/suppressions", self.list_suppressions)
        router.add_post("/v1/suppressions", self.add_suppressions)
        router.add_delete("/v1/suppressions", self.remove_suppressions)
        router.add_get("/v1/email/open/{message_id}.gif", self.open_pixel)
        router.add_get("/v1/email/click/{message_id}", self.click)
        router.add_get("/v1/email/unsubscribe", self.unsubscribe_page)
        router.add_post("/v1/email/unsubscribe", self.unsubscribe)
        router.add_get("/v1/admin/mailbox", self.mailbox)
        router.add_post("/v1/webhooks/sendgrid", self.sendgrid_webhook)
        router.add_get("/v1/channels/email/analytics", self.email_report_all)
        router.add_get("/v1/channels/email/analytics/{activation_id}", self.email_report)

    @endpoint("Reach a customer over the best channel (or the one named): suppression and the daily cap are checked, "
              "and an LTV band (ltv_min, ltv_max) when given; for a campaign_id, only a live campaign activates, by "
              "the channels it was approved for",
              tags=("channels",), roles=STAFF, body=ActivateBody, response=ActivationResult, status=201,
              errors=(404, 409))
    async def activate(self, request: web.Request, principal, body: ActivateBody) -> web.Response:
        result = await self._activation.activate(body.user_id, body.subject, body.text, body.html, body.channel,
                                                 body.present, ltv_band=(body.ltv_min, body.ltv_max),
                                                 campaign_id=body.campaign_id)
        return json_response(ActivationResult(**result), status=201)

    @endpoint("Omnichannel events: one JSON object or an array (up to 5,000). Each invalid event is reported with "
              "its index; the others are accepted. An event further in the future than ingest.max_future_skew_s "
              "refuses the whole request (422, naming the event)", tags=("channels",), roles=STAFF,
              raw_body=IngestBody, response=IngestResult, errors=(422,))
    async def ingest(self, request: web.Request, principal) -> web.Response:
        return json_response(IngestResult(**await self._ingest.ingest(await request.read())))

    @endpoint("The suppression list (filter by identifier or channel)", tags=("channels",), roles=ADMIN,
              query=SuppressionQuery, response=SuppressionPage)
    async def list_suppressions(self, request: web.Request, principal, query: SuppressionQuery) -> web.Response:
        # A keyset page of the store: the cursor names the page's last entry ("identifier|channel", as its id).
        after = None
        cursor = decode_cursor(query.after)
        if cursor is not None:
            identifier, _, channel = str(cursor.get("id", "")).rpartition("|")
            if not identifier or channel not in ("email", "sms", "push", "all"):
                raise InvalidInput("invalid 'after' cursor; pass the next_cursor of a previous page")
            after = (identifier, channel)
        entries = await self._suppression.page(after, query.limit + 1, query.identifier, query.channel)
        views = [SuppressionView(f"{s.identifier}|{s.channel}", s.identifier, s.channel, s.reason, s.created_at,
                                 s.expires_at) for s in entries[:query.limit]]
        more = len(entries) > query.limit and views
        return json_response(SuppressionPage(views, encode_cursor({"id": views[-1].id}) if more else None))

    @endpoint("Suppress identifiers (bulk; permanent or until expires_at)", tags=("channels",), roles=ADMIN,
              body=SuppressionAdd, response=Changed, status=201)
    async def add_suppressions(self, request: web.Request, principal, body: SuppressionAdd) -> web.Response:
        added = await self._suppression.suppress(principal, [(e.identifier, e.channel, e.reason, e.expires_at)
                                                             for e in body.entries])
        return json_response(Changed(len(added)), status=201)

    @endpoint("Lift suppressions (bulk)", tags=("channels",), roles=ADMIN, body=SuppressionRemove, response=Changed)
    async def remove_suppressions(self, request: web.Request, principal, body: SuppressionRemove) -> web.Response:
        removed = await self._suppression.lift(principal, [(e.identifier, e.channel) for e in body.entries])
        return json_response(Changed(removed))

    @endpoint("Open pixel (records an open)", tags=("channels",), response=bytes, content_type="image/gif")
    async def open_pixel(self, request: web.Request, principal) -> web.Response:
        await self._email.record("open", request.match_info["message_id"])
        return web.Response(body=PIXEL, content_type="image/gif", headers={"Cache-Control": "no-store"})

    @endpoint("Click redirect (records a click, then 302 to the signed link)", tags=("channels",), status=302,
              errors=(404,), params=ClickLink, headers={"Location": {"type": "string"}})
    async def click(self, request: web.Request, principal) -> web.StreamResponse:
        email, message_id = self._email, request.match_info["message_id"]
        url, signature = request.query.get("u", ""), request.query.get("t", "")
        if not url.startswith(("http://", "https://")) or not email.check(signature, "c", message_id, url):
            raise NotFound("unknown link")
        await email.record("click", message_id, url=url)
        return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})

    @endpoint("Unsubscribe page (GET shows a button; RFC 8058 one-click POST unsubscribes)", tags=("channels",),
              errors=(404,), params=UnsubscribeLink, response=str, content_type="text/html")
    async def unsubscribe_page(self, request: web.Request, principal) -> web.Response:
        m, t = request.query.get("m", ""), request.query.get("t", "")
        if not self._email.check(t, "u", m):
            raise NotFound("unknown unsubscribe link")
        return web.Response(text='<!doctype html><title>Unsubscribe</title><form method="post">'
                                 '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                                 '<button>Unsubscribe from Contrail emails</button></form>', content_type="text/html")

    @endpoint("One-click unsubscribe (RFC 8058): the address goes on the email suppression list", tags=("channels",),
              errors=(404,), params=UnsubscribeLink, response=str, content_type="text/html", any_body=True)
    async def unsubscribe(self, request: web.Request, principal) -> web.Response:
        address = await self._email.unsubscribe(request.query.get("m", ""), request.query.get("t", ""))
        if address is None:
            raise NotFound("unknown unsubscribe link")
        return _unsubscribe_page("You are unsubscribed. You will get no more marketing email from us.")

    @endpoint("What the embedded SMTP sink received (smtp.embedded_sink): the count and the newest messages",
              tags=("channels",), roles=ADMIN, query=MailboxQuery, response=MailboxPage)
    async def mailbox(self, request: web.Request, principal, query: MailboxQuery) -> web.Response:
        box = self._mailbox
        return json_response(MailboxPage(box.received, box.messages(query.limit)))

    @endpoint("SendGrid Event Webhook: an array of events as SendGrid sends them; signed webhooks are verified "
              "(403 on a bad signature) when sendgrid.verification_key is set; repeats are counted, not recorded",
              tags=("channels",), raw_body=SendGridBatch, response=WebhookCounts, errors=(403,), request_headers=[
                  {"name": "X-Twilio-Email-Event-Webhook-Signature", "in": "header", "required": False,
                   "schema": {"type": "string"}, "description": "Base64 ECDSA signature (signed webhooks)"},
                  {"name": "X-Twilio-Email-Event-Webhook-Timestamp", "in": "header", "required": False,
                   "schema": {"type": "string"}, "description": "The signed timestamp (signed webhooks)"}])
    async def sendgrid_webhook(self, request: web.Request, principal) -> web.Response:
        raw = await request.read()
        check_depth(raw)
        analytics = self._email_analytics
        analytics.verify(raw, request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
                         request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"))
        return json_response(WebhookCounts(**await analytics.ingest(raw)))

    @endpoint("Email analytics of one activation: sent, delivered, opens, clicks (and unique), bounces, spam "
              "reports, unsubscribes, rates", tags=("channels",), roles=STAFF, response=EmailReport)
    async def email_report(self, request: web.Request, principal) -> web.Response:
        report = await self._email_analytics.report(request.match_info["activation_id"])
        return json_response(EmailReport(**report))

    @endpoint("Email analytics over all mail", tags=("channels",), roles=STAFF, response=EmailReport)
    async def email_report_all(self, request: web.Request, principal) -> web.Response:
        return json_response(EmailReport(**await self._email_analytics.report(None)))
