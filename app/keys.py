"""Typed application keys: how handlers find the services create_app() wired."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from app.auth import AccountService, ApiKeyService, TokenService
    from app.config import Config
    from app.eventlog import EventLog
    from app.health import Health
    from app.hub import Hub
    from app.idempotency import IdempotencyService
    from app.metrics import Metrics
    from app.ratelimit import TokenBuckets
    from app.supervisor import Supervisor
    from app.admin import AdminService
    from state.clock import Clock
    from state.db import Database

CONFIG = web.AppKey("config", "Config")
CLOCK = web.AppKey("clock", "Clock")
METRICS = web.AppKey("metrics", "Metrics")
RECORDS_DB = web.AppKey("records_db", "Database")
EVENTS_DB = web.AppKey("events_db", "Database")
HUB = web.AppKey("hub", "Hub")
EVENT_LOG = web.AppKey("event_log", "EventLog")
SUPERVISOR = web.AppKey("supervisor", "Supervisor")
HEALTH = web.AppKey("health", "Health")
ACCOUNTS = web.AppKey("accounts", "AccountService")
API_KEYS = web.AppKey("api_keys", "ApiKeyService")
TOKENS = web.AppKey("tokens", "TokenService")
IDEMPOTENCY = web.AppKey("idempotency", "IdempotencyService")
ADMIN = web.AppKey("admin", "AdminService")
IP_LIMITS = web.AppKey("ip_limits", "TokenBuckets")
PRINCIPAL_LIMITS = web.AppKey("principal_limits", "TokenBuckets")
EXCHANGE_LIMITS = web.AppKey("exchange_limits", "TokenBuckets")
BIDDER = web.AppKey("bidder", "BidProcessor")
NOTICES = web.AppKey("notices", "NoticeService")
CAMPAIGNS = web.AppKey("campaigns", "CampaignService")
PROFILES = web.AppKey("profiles", "ProfileCache")
PLATFORM_SERVICES = web.AppKey("platform_services", "Platform")
BID_GATEWAY = web.AppKey("bid_gateway", "BidGateway")
