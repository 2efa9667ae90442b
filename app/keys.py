"""Typed application keys: how handlers find the services create_app() wired."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from app.admin import AdminService
    from app.auth import AccountService, ApiKeyService, Authenticator, TokenService
    from app.bidding.campaigns import CampaignService
    from app.bidding.gateway import BidGateway
    from app.bidding.notices import NoticeService
    from app.bidding.processor import BidProcessor
    from app.bidding.profiles import ProfileCache
    from app.channels.activation import ActivationService
    from app.channels.analytics import EmailAnalytics
    from app.channels.email import EmailService
    from app.channels.inapp import InAppService
    from app.channels.ingest import IngestService
    from app.channels.sink import Mailbox
    from app.channels.suppression import SuppressionService
    from app.config import Config
    from app.eventlog import EventLog
    from app.hub import Hub
    from app.idempotency import IdempotencyService
    from app.loyalty.service import LoyaltyService
    from app.platform import Platform
    from app.ratelimit import RateLimiter
    from app.retail.catalog import CatalogService
    from app.retail.offers import OfferService
    from app.retail.orders import OrderService
    from app.retail.ranking import Ranker
    from app.runtime.clock import Clock
    from app.runtime.health import Health
    from app.runtime.metrics import Metrics
    from app.runtime.supervisor import Supervisor
    from app.urls import PublicUrls
    from state.ports import OrderStore

CONFIG: web.AppKey[Config] = web.AppKey("config")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HUB: web.AppKey[Hub] = web.AppKey("hub")
EVENT_LOG: web.AppKey[EventLog] = web.AppKey("event_log")
SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")
HEALTH: web.AppKey[Health] = web.AppKey("health")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("accounts")
API_KEYS: web.AppKey[ApiKeyService] = web.AppKey("api_keys")
TOKENS: web.AppKey[TokenService] = web.AppKey("tokens")
IDEMPOTENCY: web.AppKey[IdempotencyService] = web.AppKey("idempotency")
ADMIN: web.AppKey[AdminService] = web.AppKey("admin")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter")
PUBLIC_URLS: web.AppKey[PublicUrls] = web.AppKey("public_urls")
BIDDER: web.AppKey[BidProcessor] = web.AppKey("bidder")
NOTICES: web.AppKey[NoticeService] = web.AppKey("notices")
CAMPAIGNS: web.AppKey[CampaignService] = web.AppKey("campaigns")
PROFILES: web.AppKey[ProfileCache] = web.AppKey("profiles")
PLATFORM_SERVICES: web.AppKey[Platform] = web.AppKey("platform_services")
BID_GATEWAY: web.AppKey[BidGateway] = web.AppKey("bid_gateway")
CATALOG: web.AppKey[CatalogService] = web.AppKey("catalog")
OFFERS: web.AppKey[OfferService] = web.AppKey("offers")
ORDERS: web.AppKey[OrderService] = web.AppKey("orders")
ORDER_STORE: web.AppKey[OrderStore] = web.AppKey("order_store")
RANKER: web.AppKey[Ranker] = web.AppKey("ranker")
LOYALTY: web.AppKey[LoyaltyService] = web.AppKey("loyalty")
EMAIL: web.AppKey[EmailService] = web.AppKey("email")
SUPPRESSION: web.AppKey[SuppressionService] = web.AppKey("suppression")
ACTIVATION: web.AppKey[ActivationService] = web.AppKey("activation")
MAILBOX: web.AppKey[Mailbox] = web.AppKey("mailbox")
EMAIL_ANALYTICS: web.AppKey[EmailAnalytics] = web.AppKey("email_analytics")
INGEST: web.AppKey[IngestService] = web.AppKey("ingest")
INAPP: web.AppKey[InAppService] = web.AppKey("inapp")
