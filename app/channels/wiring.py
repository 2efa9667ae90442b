"""Builds the channels domain: suppression, the email outbox and sender, in-app messages, push/SMS/paid-media
providers, activation (its messages carry the customer's recommended items: the reco domain, built before),
omnichannel ingest and email analytics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.http.providers import HttpAdaptors
from adapters.smtp.relay import SmtpRelay
from adapters.smtp.sink import Mailbox
from adapters.sqlite.activations import SqliteActivationCountStore
from adapters.sqlite.inbox import SqliteInboxStore
from adapters.sqlite.outbox import SqliteOutboxStore
from adapters.sqlite.suppressions import SqliteSuppressionStore
from app.bidding.profiles import ProfileCache
from app.channels.activation import ActivationService, CustomerValue, Recommendations
from app.channels.analytics import EmailAnalytics, load_verification_key
from app.channels.confirmations import OrderConfirmations
from app.channels.email import EmailService
from app.channels.inapp import InAppService
from app.channels.ingest import IngestService, WebActivity
from app.channels.suppression import SuppressionService
from app.hub import Hub
from app.infra import Infra
from app.loyalty.service import LoyaltyService
from app.retail.events import OrderPaid


@dataclass
class Channels:
    suppression_store: SqliteSuppressionStore
    suppression: SuppressionService
    outbox_store: SqliteOutboxStore
    email: EmailService
    inapp_hub: Hub
    inapp: InAppService
    adaptors: HttpAdaptors
    web_activity: WebActivity
    activation: ActivationService
    mailbox: Mailbox
    ingest: IngestService
    email_analytics: EmailAnalytics
    relay: SmtpRelay


def build(infra: Infra, loyalty: LoyaltyService, profiles: ProfileCache,
          email_of: Callable[[str], Awaitable[str | None]], recommendations: Recommendations | None = None,
          product_name: Callable[[str], str | None] = lambda _: None,
          customer_value: CustomerValue | None = None,
          campaign_state: Callable[[str], Awaitable[tuple[str, list[str]] | None]] | None = None) -> Channels:
    """`email_of`: an order owner's email address (None for guests), for order confirmations; `recommendations`
    and `product_name` (a catalog product's name): the recommended items activation messages carry;
    `customer_value`: predicted lifetime values, for activations limited to an LTV band."""
    config, clock, metrics, log_event = infra.config, infra.clock, infra.metrics, infra.event_log.log_event
    suppression_store = SqliteSuppressionStore(infra.records_db, infra.personal_data, infra.changes,
                                               config.channels.suppression_cache_entries)
    metrics.caches.register(suppression_store.cache)
    suppression = SuppressionService(suppression_store, clock, infra.audit)
    outbox_store = SqliteOutboxStore(infra.records_db, infra.personal_data)
    relay = SmtpRelay(config.smtp)
    email = EmailService(config.smtp, relay, infra.public_urls.links, config.auth.jwt_secret,
                         outbox_store, suppression, clock, log_event)
    inapp_hub = Hub(config.websocket.client_queue, on_drop=lambda s: metrics.ws_dropped.labels(s).inc())
    inapp = InAppService(SqliteInboxStore(infra.records_db), inapp_hub, clock)
    adaptors = HttpAdaptors(config.adaptors)
    web_activity = WebActivity(clock)
    activation = ActivationService(config.channels, loyalty.member, email, inapp, adaptors, suppression,
                                   SqliteActivationCountStore(infra.records_db), clock, log_event, web_activity.seen,
                                   recommendations, product_name, infra.public_urls.links, customer_value,
                                   campaign_state)
    ingest = IngestService(config.ingest, loyalty, profiles, activation, web_activity, clock,
                           infra.event_log.log_events, infra.bus.publish)
    verification_key = load_verification_key(config.sendgrid.verification_key)
    analytics = EmailAnalytics(outbox_store, suppression, clock, verification_key,
                               allow_unsigned=config.sendgrid.allow_unsigned, log_event=log_event)
    # Awaited after the order's commit, so the confirmation is queued durably before the payment is answered.
    infra.bus.subscribe(OrderPaid, OrderConfirmations(email, email_of, infra.public_urls.links).on_paid)
    supervisor = infra.supervisor
    supervisor.add_periodic("profile_write_behind", config.ingest.profile_flush_interval_s, ingest.flush_profiles)
    supervisor.add("email_sender", email.run)
    infra.metrics.watch_queue("email_outbox", lambda: email.held)
    infra.metrics.watch_queue("activations_counted_today", lambda: activation.counted_today)
    infra.metrics.watch_queue("profiles_write_behind", lambda: ingest.profiles_pending)
    supervisor.add_periodic("suppression_cleanup", 600, suppression.purge_expired)
    return Channels(suppression_store, suppression, outbox_store, email, inapp_hub, inapp, adaptors, web_activity,
                    activation, Mailbox(), ingest, analytics, relay)
