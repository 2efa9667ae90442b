"""Typed configuration: config.toml, then CONTRAIL__SECTION__KEY environment overrides."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from state.campaigns import CampaignChannel
from state.loyalty import EarnChannel

ENV_PREFIX = "CONTRAIL__"


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key."""


# Constraints live on the fields: msgspec checks them while converting, and its error names the key.
Port = Annotated[int, Meta(ge=0, le=65535)]
AtLeast1 = Annotated[int, Meta(ge=1)]
NotNegative = Annotated[int, Meta(ge=0)]
# Finite: an infinite wait or rate is never what an operator means (and NaN fails every bound).
Positive = Annotated[float, Meta(gt=0, le=1e12)]
EARN_CHANNELS: tuple[str, ...] = get_args(EarnChannel)  # what loyalty.channel_bonus may name
NotNegativeFloat = Annotated[float, Meta(ge=0, le=1e12)]
# A listening address: empty would bind every interface, never what a setting left blank means.
Host = Annotated[str, Meta(min_length=1)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
# \A and \Z because msgspec searches for a pattern rather than matching it whole.
_URL_PATTERN = r"\A(?:https?://|\Z)"
_HOST_PORT_PATTERN = r"\A(?:[\w.\-]+:\d{1,5})?\Z"
# What a pattern means, in place of the regex in msgspec's message.
_HTTP_URL_PATTERN = r"\Ahttps?://\S+\Z"
_NATS_URL_PATTERN = r"\A(?:(?:nats|tls)://\S+)?\Z"
_REDIS_URL_PATTERN = r"\A(?:(?:redis|rediss|unix)://\S+)?\Z"
_NODE_ID_PATTERN = r"\A[A-Za-z0-9_.\-]{0,64}\Z"
_NAME_PATTERN = r"\A[a-z0-9][a-z0-9_\-]{0,31}\Z"
_GUID_OR_EMPTY_PATTERN = r"\A(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})?\Z"
_BASIC_LOGIN_PATTERN = r"\A[^:]*\Z"  # RFC 7617: a Basic auth user-id holds no colon
_ONE_PARAMETER_PATTERN = r"\A[^?]*\?[^?]*\Z"
_TRIMMED_NAME_PATTERN = r"\A\S(?:.{0,253}\S)?\Z"
_CURRENCY_PATTERN = r"\A[A-Z]{3}\Z"  # ISO 4217
_PATTERN_HINTS = {_URL_PATTERN: "must be empty or an http(s) URL", _HOST_PORT_PATTERN: "must be host:port or empty",
                  _HTTP_URL_PATTERN: "must be an http(s) URL", _NATS_URL_PATTERN: "must be empty or a nats:// or "
                  "tls:// URL", _REDIS_URL_PATTERN: "must be empty or a redis://, rediss:// or unix:// URL",
                  _NODE_ID_PATTERN: "must be at most 64 letters, digits, '.', '_' or '-'",
                  _NAME_PATTERN: "must be 1 to 32 lowercase letters, digits, '_' or '-', starting with a letter or "
                  "digit", _GUID_OR_EMPTY_PATTERN: "must be empty or a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                  _BASIC_LOGIN_PATTERN: "must not contain ':' (Basic auth cannot send it)",
                  _ONE_PARAMETER_PATTERN: "must hold exactly one '?', where the searched value goes",
                  _TRIMMED_NAME_PATTERN: "must be 1 to 255 characters, with no spaces at either end",
                  _CURRENCY_PATTERN: "must be a currency's three capital letters (ISO 4217, e.g. USD)"}
Currency = Annotated[str, Meta(pattern=_CURRENCY_PATTERN)]
HttpUrlOrEmpty = Annotated[str, Meta(pattern=_URL_PATTERN)]
IngestSource = Literal["mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot"]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _invalid(key: str, message: str) -> ValueError:
    """For a rule no type can express: raised from __post_init__, msgspec reports it at the section's path and
    load_config folds the leading `key:` into `section.key`."""
    return ValueError(f"{key}: {message}")


class ServerConfig(_Section):
    host: Host = "127.0.0.1"
    port: Port = 8080
    production: bool = False
    shutdown_grace_s: NotNegativeFloat = 10.0
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    max_connections: AtLeast1 = 4096
    header_timeout_s: Positive = 10.0
    body_timeout_s: Positive = 30.0
    keepalive_timeout_s: Positive = 75.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False
    node_id: Annotated[str, Meta(pattern=_NODE_ID_PATTERN)] = ""
    reuse_port: bool = False


class GrpcConfig(_Section):
    host: Host = "127.0.0.1"
    port: Port = 9090
    max_message_bytes: Annotated[int, Meta(ge=1024, le=2**31 - 1)] = 1_048_576
    keepalive_time_s: Positive = 10.0
    keepalive_timeout_s: Positive = 5.0


class StorageConfig(_Section):
    data_dir: Annotated[str, Meta(min_length=1)] = "var"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_group_size: AtLeast1 = 512
    busy_timeout_ms: NotNegative = 5000
    checkpoint_interval_ms: Annotated[int, Meta(ge=10)] = 1000
    wal_restart_frames: Annotated[int, Meta(ge=100)] = 4096
    backend: Literal["sqlite", "postgres"] = "sqlite"
    postgres_dsn: str = ""
    postgres_pool_size: Annotated[int, Meta(ge=2, le=500)] = 10
    events_postgres_dsn: str = ""  # the event log's database when on PostgreSQL; empty: postgres_dsn's
    max_database_bytes: Annotated[int, Meta(ge=0)] = 20_000_000_000

    def __post_init__(self) -> None:
        if 0 < self.max_database_bytes < 1_000_000:
            raise _invalid("max_database_bytes", "must be 0 (no budget) or at least 1000000")
        if self.backend == "postgres" and not self.postgres_dsn.startswith(("postgresql://", "postgres://")):
            raise _invalid("postgres_dsn", "backend \"postgres\" needs a postgresql:// URL")
        if self.events_postgres_dsn and not self.events_postgres_dsn.startswith(("postgresql://", "postgres://")):
            raise _invalid("events_postgres_dsn", "must be empty or a postgresql:// URL")


class AnalyticsConfig(_Section):
    queue_capacity: AtLeast1 = 100_000
    flush_rows: AtLeast1 = 10_000
    flush_interval_ms: AtLeast1 = 1000
    retention_days: AtLeast1 = 7
    max_bytes: Annotated[int, Meta(ge=0)] = 10_000_000_000
    sample_bids: Fraction = 0.01
    sample_offers: Fraction = 1.0
    sample_channel_events: Fraction = 0.01
    whole_per_s: NotNegative = 10
    totals_s: Annotated[int, Meta(ge=1, le=3600)] = 1
    max_totals: AtLeast1 = 100_000

    def __post_init__(self) -> None:
        if 3600 % self.totals_s:  # an hourly report adds whole windows
            raise _invalid("totals_s", "must divide an hour (1, 2, 5, 10, 60, 300, ...)")
        if 0 < self.max_bytes < 1_000_000:
            raise _invalid("max_bytes", "must be 0 (no budget) or at least 1000000")


class AuthConfig(_Section):
    jwt_secret: str = ""
    customer_token_ttl_s: AtLeast1 = 3600
    guest_token_ttl_s: AtLeast1 = 1800
    account_cache_entries: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000

    def __post_init__(self) -> None:
        if self.jwt_secret and len(self.jwt_secret) < 32:
            raise _invalid("jwt_secret", "must be empty (generated) or at least 32 characters (RFC 7518 3.2)")


class RateLimitConfig(_Section):
    ip_per_s: Positive = 200.0
    ip_burst: AtLeast1 = 400
    principal_per_s: Positive = 100.0
    principal_burst: AtLeast1 = 200


class IdempotencyConfig(_Section):
    ttl_s: AtLeast1 = 86_400
    max_in_memory: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000


class WebsocketConfig(_Section):
    client_queue: AtLeast1 = 1000
    max_lag_s: Positive = 5.0
    heartbeat_s: Positive = 20.0


class TasksConfig(_Section):
    restart_backoff_s: NotNegativeFloat = 0.5
    restart_backoff_max_s: NotNegativeFloat = 30.0

    def __post_init__(self) -> None:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise _invalid("restart_backoff_max_s", "must not be below restart_backoff_s")


class BiddingConfig(_Section):
    seat: str = "contrail"
    currency: Currency = "USD"
    currency_rates: dict[str, Positive] = msgspec.field(
        default_factory=lambda: {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73, "AUD": 0.66, "JPY": 0.0067})
    batch_size: Annotated[int, Meta(ge=1, le=1024)] = 64
    nobid_body: bool = False
    default_tmax_ms: AtLeast1 = 100
    min_scoring_ms: NotNegativeFloat = 2.0
    bid_ttl_s: AtLeast1 = 300
    max_live_bids: Annotated[int, Meta(ge=1000, le=100_000_000)] = 1_000_000
    notice_base_url: HttpUrlOrEmpty = ""
    user_cap_minute: NotNegative = 0
    user_cap_hour: NotNegative = 0
    user_cap_day: NotNegative = 0
    pacing_slack: Fraction = 0.05
    profile_l1_size: AtLeast1 = 100_000
    profile_l2_ttl_s: AtLeast1 = 3600
    exchange_per_s: Positive = 20_000.0
    exchange_burst: AtLeast1 = 40_000
    stream_max_in_flight: AtLeast1 = 256
    value_burst_micros: NotNegative = 50_000_000
    value_burst_window_s: Positive = 60.0
    shape_cache_mb: Annotated[int, Meta(ge=1, le=65_536)] = 64

    def __post_init__(self) -> None:
        if "USD" not in self.currency_rates:
            raise _invalid("currency_rates", "needs a rate for USD")


class InferenceConfig(_Section):
    provider: Literal["cpu", "groq", "inferentia2", "inferentia3", "ampere", "tenstorrent"] = "cpu"
    model_path: str = ""
    max_batch: AtLeast1 = 16
    max_wait_us: NotNegative = 500
    max_queue: AtLeast1 = 1024
    timeout_ms: Positive = 5.0


class RetailConfig(_Section):
    currency: Currency = "USD"
    offer_ttl_s: AtLeast1 = 900
    hold_ttl_s: AtLeast1 = 1800
    tax_percent: Annotated[float, Meta(ge=0, le=100)] = 12.0
    booking_fee_cents: NotNegative = 500
    max_passengers: Annotated[int, Meta(ge=1, le=50)] = 9
    max_offers: Annotated[int, Meta(ge=3, le=20)] = 5
    quote_ttl_s: AtLeast1 = 900
    change_offer_ttl_s: AtLeast1 = 900
    archive_after_days: NotNegative = 7
    sweep_interval_s: Positive = 1.0
    offers_power_safe: bool = False
    draft_cache_size: AtLeast1 = 20_000
    offer_retention_days: Annotated[float, Meta(gt=0, le=3650)] = 1.0
    max_offers_in_memory: AtLeast1 = 1_000_000


class PaymentsConfig(_Section):
    webhook_secret: str = ""
    gateway_timeout_s: Positive = 10.0
    pending_timeout_s: AtLeast1 = 300
    simulator_settle_s: NotNegativeFloat = 60.0

    def __post_init__(self) -> None:
        if self.webhook_secret and len(self.webhook_secret) < 32:
            raise _invalid("webhook_secret", "must be empty (generated) or at least 32 characters")


class RankingConfig(_Section):
    remote: Annotated[str, Meta(pattern=_HOST_PORT_PATTERN)] = ""
    remote_api_key: str = ""
    remote_share: Fraction = 0.0
    remote_deadline_ms: AtLeast1 = 200
    breaker_failures: AtLeast1 = 3
    breaker_slow_ms: AtLeast1 = 500
    breaker_open_s: Positive = 30.0
    breaker_successes: AtLeast1 = 2
    retrain_interval_s: Positive = 300.0
    min_training_offers: Annotated[int, Meta(ge=10)] = 200


class LoyaltyConfig(_Section):
    gold_stars: AtLeast1 = 500
    reserve_stars: AtLeast1 = 2500
    green_expiry_months: Annotated[int, Meta(ge=1, le=120)] = 6
    birthday_stars: Annotated[int, Meta(ge=0, le=10_000)] = 50
    channel_bonus: dict[str, Annotated[float, Meta(ge=0, le=10)]] = msgspec.field(
        default_factory=lambda: {"mobile_app": 0.1})
    expiry_interval_s: Positive = 3600.0
    transactions_in_memory: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000
    max_accounts_in_memory: Annotated[int, Meta(ge=1, le=100_000_000)] = 1_000_000

    def __post_init__(self) -> None:
        if self.reserve_stars <= self.gold_stars:
            raise _invalid("reserve_stars", f"must be above gold_stars ({self.gold_stars}): Reserve is the top tier")
        unknown = sorted(set(self.channel_bonus) - set(EARN_CHANNELS))
        if unknown:  # a misspelt channel's bonus would never apply
            raise _invalid("channel_bonus", f"unknown channel {', '.join(unknown)}; the channels stars are earned "
                           f"through are {', '.join(EARN_CHANNELS)}")


class SmtpConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 2525
    starttls: bool = False
    use_tls: bool = False
    username: str = ""
    password: str = ""
    from_address: str = "Contrail Air <hello@contrail.example>"
    pool_size: Annotated[int, Meta(ge=1, le=64)] = 4
    rate_per_s: Positive = 200.0
    max_attempts: AtLeast1 = 5
    retry_backoff_s: NotNegativeFloat = 2.0
    timeout_s: Positive = 10.0
    embedded_sink: bool = False
    queue_capacity: AtLeast1 = 10_000


class ChannelsConfig(_Section):
    public_base_url: HttpUrlOrEmpty = ""
    max_per_customer_per_day: AtLeast1 = 3
    suppression_cache_entries: Annotated[int, Meta(ge=1, le=10_000_000)] = 200_000


class IngestConfig(_Section):
    enabled_sources: list[IngestSource] = msgspec.field(default_factory=lambda: [
        "mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot"])
    check_in_stars: Annotated[int, Meta(ge=0, le=10_000)] = 25
    triggers: bool = True
    max_pending_triggers: NotNegative = 1000
    profile_flush_interval_s: Positive = 1.0
    max_future_skew_s: Annotated[float, Meta(ge=0, le=86_400)] = 300.0


class RecoConfig(_Section):
    weight_view: Annotated[float, Meta(ge=0, le=100)] = 1.0
    weight_click: Annotated[float, Meta(ge=0, le=100)] = 3.0
    weight_wishlist: Annotated[float, Meta(ge=0, le=100)] = 3.0
    weight_cart: Annotated[float, Meta(ge=0, le=100)] = 5.0
    weight_purchase: Annotated[float, Meta(ge=0, le=100)] = 10.0
    weight_dismiss: Annotated[float, Meta(ge=-100, lt=0)] = -5.0  # subtracts: a dismissal is told by its sign
    recent_n: Annotated[int, Meta(ge=1, le=500)] = 50
    recent_ttl_s: NotNegativeFloat = 86_400.0
    popularity_half_life_s: NotNegativeFloat = 30 * 86_400.0
    trending_window_s: NotNegativeFloat = 7 * 86_400.0
    coview_window: Annotated[int, Meta(ge=0, le=100)] = 10
    coview_ttl_s: NotNegativeFloat = 86_400.0
    max_users: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000
    max_items: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000
    cache_ttl_s: NotNegativeFloat = 300.0
    cache_entries: Annotated[int, Meta(ge=1, le=10_000_000)] = 50_000
    cache_bytes: Annotated[int, Meta(ge=1 << 16, le=1 << 36)] = 64 << 20
    explore_items: Annotated[int, Meta(ge=0, le=10)] = 1
    max_n: Annotated[int, Meta(ge=1, le=1000)] = 100
    retrain_interval_s: NotNegativeFloat = 3600.0
    min_training_events: Annotated[int, Meta(ge=1)] = 50
    training_max_events: Annotated[int, Meta(ge=1)] = 2_000_000
    factors: Annotated[int, Meta(ge=2, le=512)] = 64
    checkpoint_interval_s: NotNegativeFloat = 300.0


class LtvConfig(_Section):
    horizon_days: Annotated[int, Meta(ge=1, le=3650)] = 365
    annual_discount_rate: Annotated[float, Meta(ge=0, le=1)] = 0.10
    refit_interval_s: NotNegativeFloat = 86_400.0
    refit_after_purchases: Annotated[int, Meta(ge=0)] = 1000
    holdout_days: Annotated[int, Meta(ge=7, le=730)] = 90
    target_accuracy: Fraction = 0.6
    cache_entries: Annotated[int, Meta(ge=1, le=10_000_000)] = 200_000
    # 4,000 explained answers with short ids (about 250 bytes each) fit the default grpc.max_message_bytes of 1 MiB.
    max_batch: Annotated[int, Meta(ge=1, le=100_000)] = 4_000
    max_events: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    remote: Annotated[str, Meta(pattern=_HOST_PORT_PATTERN)] = ""
    remote_api_key: str = ""
    remote_deadline_ms: AtLeast1 = 1000  # past breaker_slow_ms: a call between the two is slow, not cut off
    breaker_failures: AtLeast1 = 3
    breaker_slow_ms: AtLeast1 = 500
    breaker_open_s: Positive = 30.0
    breaker_successes: AtLeast1 = 2
    # Bids believe a predicted LTV (currency units) only inside these bounds; outside, the customer has no value.
    value_min: NotNegativeFloat = 0.0
    value_max: Annotated[float, Meta(gt=0)] = 1_000_000.0
    platform_multipliers: dict[str, Annotated[float, Meta(ge=0, le=100)]] = msgspec.field(
        default_factory=lambda: {"google_ads": 1.0, "meta": 1.0, "tiktok": 1.5, "linkedin": 1.2, "amazon": 1.0,
                                 "tradedesk": 1.0, "x": 0.75})

    def __post_init__(self) -> None:
        if self.value_min >= self.value_max:
            raise _invalid("value_min", f"must be below value_max ({self.value_max})")


class AdaptorsConfig(_Section):
    push_url: HttpUrlOrEmpty = ""
    sms_url: HttpUrlOrEmpty = ""
    paid_media_url: HttpUrlOrEmpty = ""
    timeout_s: Positive = 2.0
    max_attempts: AtLeast1 = 3


class SendgridConfig(_Section):
    verification_key: str = ""
    allow_unsigned: bool = False

    def __post_init__(self) -> None:
        if self.verification_key:
            from app.channels.analytics import load_verification_key
            try:
                load_verification_key(self.verification_key)
            except ValueError:
                raise _invalid("verification_key", "must be empty or a base64 DER EC P-256 public key") from None


class ApprovalRule(_Section):
    """Matched on submit: a campaign whose daily budget is above `daily_budget_above_micros` (when set) or that
    reaches any of `channels` (when set) needs `approvers` approvals; a rule with neither matches every campaign.
    Of the rules that match, the one asking the most approvers applies."""
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    approvers: Annotated[int, Meta(ge=1, le=10)] = 1
    daily_budget_above_micros: Annotated[int, Meta(ge=0)] | None = None
    channels: list[CampaignChannel] = []


def _default_rules() -> list[ApprovalRule]:
    return [ApprovalRule(name="standard", approvers=1),
            ApprovalRule(name="high_budget", approvers=2, daily_budget_above_micros=1_000_000_000),
            ApprovalRule(name="regulated_channel", approvers=2, channels=["sms"])]


class CampaignsConfig(_Section):
    approval_rules: list[ApprovalRule] = msgspec.field(default_factory=_default_rules)
    # Editing these fields of a running (live or paused) campaign waits for approval while the running version
    # keeps serving; other fields change at once. Empty: every edit applies at once.
    reapprove_fields: list[Literal["bid_cap_micros", "daily_budget_micros", "targeting", "creatives", "channels"]] = \
        msgspec.field(default_factory=lambda: ["daily_budget_micros", "targeting", "creatives", "channels"])
    scheduler_interval_s: Positive = 1.0
    rollup_interval_s: Positive = 1.0
    # An external decision service (OfferFit-like) that chooses offers for campaigns with a policy; empty: the local
    # Thompson policy decides. On failure or timeout the breaker falls back to the local policy.
    decision_url: HttpUrlOrEmpty = ""
    decision_api_key: str = ""
    decision_deadline_ms: Annotated[int, Meta(ge=1, le=10_000)] = 250
    breaker_failures: AtLeast1 = 3
    breaker_slow_ms: Annotated[int, Meta(ge=1)] = 500
    breaker_open_s: Positive = 30.0
    breaker_successes: AtLeast1 = 2
    # How long a reward signal's id is remembered, so that a repeat teaches a policy nothing twice.
    reward_memory_days: Annotated[int, Meta(ge=1, le=3650)] = 30

    def __post_init__(self) -> None:
        if not self.approval_rules:
            raise _invalid("approval_rules", "needs at least one rule (a rule with no condition matches every "
                                             "campaign)")
        names = [r.name for r in self.approval_rules]
        if len(set(names)) != len(names):
            raise _invalid("approval_rules", "rule names must be unique")


class IntegrationsConfig(_Section):
    """The campaign team's tools (adapters/http/): a task tracker, a digital asset manager and Power BI. Each is off
    until chosen; choosing one needs its URL, its project (folder, dataset) and its credentials."""
    task_tool: Literal["", "jira", "asana"] = ""
    jira_url: HttpUrlOrEmpty = ""
    jira_email: str = ""
    jira_api_token: str = ""
    jira_project: str = ""
    jira_issue_type: Annotated[str, Meta(pattern=_TRIMMED_NAME_PATTERN)] = "Task"  # an issue type of jira_project
    asana_url: HttpUrlOrEmpty = "https://app.asana.com"
    asana_token: str = ""
    asana_project: str = ""
    task_sync_interval_s: Positive = 60.0
    dam: Literal["", "aem", "bynder", "aprimo"] = ""
    dam_url: HttpUrlOrEmpty = ""
    dam_token: str = ""
    dam_folder: str = ""
    # AEM only: Basic auth with a technical account (on-premises, Adobe Managed Services), in place of dam_token.
    aem_login: Annotated[str, Meta(pattern=_BASIC_LOGIN_PATTERN)] = ""
    aem_password: str = ""       # a secret, like the tokens: from the environment, never logged
    # Aprimo only: the search expressions of `search` and of the folder (a classification); the value is their one
    # `?` parameter, never spliced in.
    aprimo_fulltext_expression: Annotated[str, Meta(pattern=_ONE_PARAMETER_PATTERN)] = "FullText = ?"
    aprimo_folder_expression: Annotated[str, Meta(pattern=_ONE_PARAMETER_PATTERN)] = "Classification.Id = ?"
    dam_sync_interval_s: Positive = 300.0
    # Off by default: Microsoft is retiring real-time streaming (push semantic models) in Power BI.
    powerbi_enabled: bool = False
    powerbi_url: HttpUrlOrEmpty = "https://api.powerbi.com"
    powerbi_dataset_id: str = ""
    powerbi_table: str = "campaign_hours"
    powerbi_token: str = ""
    powerbi_group_id: Annotated[str, Meta(pattern=_GUID_OR_EMPTY_PATTERN)] = ""  # the workspace; empty: My workspace
    powerbi_interval_s: Positive = 300.0
    timeout_s: Positive = 10.0
    max_attempts: AtLeast1 = 3

    def __post_init__(self) -> None:
        needs: dict[str, list[str]] = {
            "jira": ["jira_url", "jira_project", "jira_email", "jira_api_token"],
            "asana": ["asana_url", "asana_project", "asana_token"],
        }
        for key in needs.get(self.task_tool, []):
            if not getattr(self, key):
                raise _invalid(key, f'must be set when task_tool is "{self.task_tool}"')
        # Messages name keys, never values: aem_password and the tokens are secrets.
        if self.aem_login and not self.aem_password:
            raise _invalid("aem_password", "must be set with aem_login (Basic auth needs both)")
        if self.aem_password and not self.aem_login:
            raise _invalid("aem_login", "must be set with aem_password (Basic auth needs both)")
        if self.dam:
            if not self.dam_url:
                raise _invalid("dam_url", f'must be set when dam is "{self.dam}"')
            basic = self.dam == "aem" and bool(self.aem_login)
            if not self.dam_token and not basic:
                raise _invalid("dam_token", f'must be set when dam is "{self.dam}"'
                               + (" (or aem_login and aem_password for Basic auth)" if self.dam == "aem" else ""))
            if self.dam_token and basic:
                raise _invalid("dam_token", 'must be empty when aem_login and aem_password are set: AEM takes a '
                                            "Bearer token or Basic auth, not both")
        if self.powerbi_enabled:
            for key in ("powerbi_url", "powerbi_dataset_id", "powerbi_table", "powerbi_token"):
                if not getattr(self, key):
                    raise _invalid(key, "must be set when powerbi_enabled is true")


class DspPlatform(_Section):
    """One demand-side platform Contrail buys through: its adapter (`kind`), where and how to call it."""
    name: Annotated[str, Meta(pattern=_NAME_PATTERN)]
    url: Annotated[str, Meta(pattern=_HTTP_URL_PATTERN)]
    kind: Literal["openrtb", "dv360", "amazon", "ttd", "meta"] = "openrtb"
    auth_header: str = ""        # e.g. "x-api-key"; empty with a token: Authorization: Bearer <token>
    auth_token: str = ""
    timeout_ms: AtLeast1 = 100
    bid_adjustment: Annotated[float, Meta(ge=0, le=10)] = 1.0
    enabled: bool = True


class DspConfig(_Section):
    platforms: list[DspPlatform] = []
    reserve_ms: NotNegative = 10
    network_buffer_ms: NotNegative = 5
    min_timeout_ms: AtLeast1 = 5
    default_tmax_ms: AtLeast1 = 200
    include_own_bidder: bool = True
    debug: bool = False
    breaker_failures: AtLeast1 = 3
    breaker_slow_ms: AtLeast1 = 500
    breaker_open_s: Positive = 30.0
    breaker_successes: AtLeast1 = 2

    def __post_init__(self) -> None:
        names = [p.name for p in self.platforms]
        if len(set(names)) != len(names):  # wins, status and metrics are kept by name
            raise _invalid("platforms", f"each name must be unique, got {names}")


class NatsConfig(_Section):
    url: Annotated[str, Meta(pattern=_NATS_URL_PATTERN)] = ""  # empty: no NATS entry points
    agents: Annotated[int, Meta(ge=1, le=256)] = 4
    subject: Annotated[str, Meta(min_length=1, max_length=256)] = "campaign-bids.bid-requests"
    queue: Annotated[str, Meta(min_length=1, max_length=256)] = "bid-agents"
    ingest: bool = True          # subscribe to ingest.{source}.> as well
    max_payload_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1_048_576


class RedisConfig(_Section):
    url: Annotated[str, Meta(pattern=_REDIS_URL_PATTERN)] = ""  # empty: budgets, caps and issued bids are this node's
    prefix: Annotated[str, Meta(pattern=_NAME_PATTERN)] = "contrail"  # every key starts with it
    timeout_ms: Annotated[int, Meta(ge=1, le=60_000)] = 250
    pool_size: Annotated[int, Meta(ge=1, le=1000)] = 32
    spend_refresh_ms: Annotated[int, Meta(ge=50, le=60_000)] = 1000
    rate_limit_sync_ms: Annotated[int, Meta(ge=20, le=60_000)] = 200


class LearningConfig(_Section):
    retrain_interval_s: NotNegativeFloat = 3600.0
    min_rows: Annotated[int, Meta(ge=100, le=10_000_000)] = 5000
    min_clicks: Annotated[int, Meta(ge=10, le=1_000_000)] = 50
    label_delay_s: NotNegativeFloat = 60.0
    max_rows: Annotated[int, Meta(ge=1000, le=2_000_000)] = 200_000
    feature_slots: Annotated[int, Meta(ge=0, le=4_000_000)] = 65_536
    l1: Annotated[float, Meta(ge=0, le=10)] = 0.1
    max_epochs: Annotated[int, Meta(ge=1, le=200)] = 30
    keep_files: Annotated[int, Meta(ge=1, le=1000)] = 10
    auto_promote: bool = True


class TracingConfig(_Section):
    """OpenTelemetry traces over OTLP/HTTP (docs/operations.md, "Tracing")."""

    otlp_endpoint: HttpUrlOrEmpty = ""  # empty: no tracing, at no cost
    sample_ratio: Fraction = 1.0
    service_name: Annotated[str, Meta(min_length=1, max_length=128)] = "contrail"
    headers: dict[str, str] = {}
    max_queue_spans: Annotated[int, Meta(ge=64, le=1_000_000)] = 8192
    export_interval_ms: Annotated[int, Meta(ge=10, le=60_000)] = 1000
    export_timeout_ms: Annotated[int, Meta(ge=100, le=120_000)] = 10_000


class TlsConfig(_Section):
    """TLS for HTTP and gRPC, mTLS between services, and what outbound clients trust (docs/operations.md, "TLS")."""

    cert_file: str = ""           # with key_file: HTTP and gRPC serve TLS
    key_file: str = ""
    client_ca_file: str = ""      # gRPC asks callers for a certificate signed by this CA
    require_client_cert: bool = False
    client_principals: dict[str, str] = {}  # a client certificate's CN -> a key role, or an API key's id
    outbound_ca_file: str = ""    # empty: the system's trust store
    outbound_cert_file: str = ""  # the certificate outbound clients present (with outbound_key_file)
    outbound_key_file: str = ""
    outbound_grpc: bool = False   # ranking.remote and ltv.remote are called over TLS

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def __post_init__(self) -> None:
        for cert, key in (("cert_file", "key_file"), ("outbound_cert_file", "outbound_key_file")):
            if bool(getattr(self, cert)) != bool(getattr(self, key)):
                missing = key if getattr(self, cert) else cert
                raise _invalid(missing, f"must be set with {key if missing == cert else cert}")
        for key in ("cert_file", "key_file", "client_ca_file", "outbound_ca_file", "outbound_cert_file",
                    "outbound_key_file"):
            if getattr(self, key) and not Path(getattr(self, key)).is_file():
                raise _invalid(key, f"file {getattr(self, key)} not found")
        if self.client_ca_file and not self.cert_file:
            raise _invalid("client_ca_file", "client certificates need TLS: set cert_file and key_file")
        if self.require_client_cert and not self.client_ca_file:
            raise _invalid("require_client_cert", "needs client_ca_file (the CA client certificates are checked "
                                                  "against)")
        if self.client_principals and not self.client_ca_file:
            raise _invalid("client_principals", "needs client_ca_file (no client certificate is checked without "
                                                "it)")
        for cn, who in self.client_principals.items():
            if who not in ("exchange", "partner", "admin") and not re.fullmatch(r"key_[0-9a-f]{16}", who):
                raise _invalid("client_principals", f"{cn!r} = {who!r}: must be exchange, partner, admin or an "
                                                    "API key's id (key_ and 16 hex digits)")
        # Loaded once here so that a wrong file is one line naming its key, not a traceback at the first handshake.
        import ssl
        for cert, key in (("cert_file", "key_file"), ("outbound_cert_file", "outbound_key_file")):
            if getattr(self, cert):
                try:
                    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(getattr(self, cert))
                except (ssl.SSLError, ValueError):
                    raise _invalid(cert, "is not a PEM certificate") from None
                try:
                    # A key protected by a passphrase is refused, never prompted for on a terminal.
                    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(getattr(self, cert), getattr(self, key),
                                                                            password=lambda: b"")
                except (ssl.SSLError, ValueError):
                    raise _invalid(key, f"is not the unencrypted PEM private key of {cert}") from None
        for key in ("client_ca_file", "outbound_ca_file"):
            if getattr(self, key):
                try:
                    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(getattr(self, key))
                except (ssl.SSLError, ValueError):
                    raise _invalid(key, "is not a PEM file of CA certificates") from None


class PiiConfig(_Section):
    """Personal data encrypted at rest (docs/operations.md, "Personal data")."""
    key: str = ""                # base64 AES-256 key; empty: the key file's
    lookup_key: str = ""         # base64 HMAC key for email lookups; needed with `key`
    previous_keys: list[str] = []
    key_file: str = ""           # empty: pii.key in the data directory
    rewrap_batch: Annotated[int, Meta(ge=1, le=100_000)] = 500
    rewrap_check_s: Annotated[float, Meta(ge=0.1, le=86_400)] = 30.0

    def __post_init__(self) -> None:
        import base64
        import binascii
        for name, values in (("key", [self.key]), ("lookup_key", [self.lookup_key]),
                             ("previous_keys", self.previous_keys)):
            for value in values:
                try:
                    size = len(base64.b64decode(value, validate=True)) if value else 32
                except (binascii.Error, ValueError):
                    size = -1
                if size != 32:
                    raise _invalid(name, "must be 32 random bytes in base64 (openssl rand -base64 32)")
        if self.key and not self.lookup_key:
            raise _invalid("lookup_key", "must be set with pii.key (emails are found by a hash under it)")
        if self.lookup_key and not self.key:
            raise _invalid("key", "must be set with pii.lookup_key")


class CanaryConfig(_Section):
    """Model versions deployed as canaries before they go live (docs/learning.md, "Canaries")."""
    share: Annotated[float, Meta(gt=0, lt=1)] = 0.1
    duration_s: Annotated[float, Meta(gt=0, le=30 * 86_400)] = 86_400.0
    max_p95_ms: Positive = 2.0
    max_error_rate: Fraction = 0.01
    min_calls: Annotated[int, Meta(ge=1, le=10_000_000)] = 200
    window: Annotated[int, Meta(ge=100, le=1_000_000)] = 10_000
    check_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    on_retrain: bool = False


class DemoConfig(_Section):
    traffic_per_s: Annotated[float, Meta(ge=0, le=10_000)] = 0.0
    searches_per_s: Annotated[float, Meta(ge=0, le=1000)] = 0.0
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 1


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    grpc: GrpcConfig = msgspec.field(default_factory=GrpcConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    analytics: AnalyticsConfig = msgspec.field(default_factory=AnalyticsConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    ratelimit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    idempotency: IdempotencyConfig = msgspec.field(default_factory=IdempotencyConfig)
    websocket: WebsocketConfig = msgspec.field(default_factory=WebsocketConfig)
    tasks: TasksConfig = msgspec.field(default_factory=TasksConfig)
    bidding: BiddingConfig = msgspec.field(default_factory=BiddingConfig)
    inference: InferenceConfig = msgspec.field(default_factory=InferenceConfig)
    retail: RetailConfig = msgspec.field(default_factory=RetailConfig)
    payments: PaymentsConfig = msgspec.field(default_factory=PaymentsConfig)
    ranking: RankingConfig = msgspec.field(default_factory=RankingConfig)
    loyalty: LoyaltyConfig = msgspec.field(default_factory=LoyaltyConfig)
    smtp: SmtpConfig = msgspec.field(default_factory=SmtpConfig)
    channels: ChannelsConfig = msgspec.field(default_factory=ChannelsConfig)
    sendgrid: SendgridConfig = msgspec.field(default_factory=SendgridConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
    reco: RecoConfig = msgspec.field(default_factory=RecoConfig)
    ltv: LtvConfig = msgspec.field(default_factory=LtvConfig)
    campaigns: CampaignsConfig = msgspec.field(default_factory=CampaignsConfig)
    adaptors: AdaptorsConfig = msgspec.field(default_factory=AdaptorsConfig)
    integrations: IntegrationsConfig = msgspec.field(default_factory=IntegrationsConfig)
    learning: LearningConfig = msgspec.field(default_factory=LearningConfig)
    dsp: DspConfig = msgspec.field(default_factory=DspConfig)
    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    pii: PiiConfig = msgspec.field(default_factory=PiiConfig)
    canary: CanaryConfig = msgspec.field(default_factory=CanaryConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.storage.data_dir)


def section_fields() -> dict[str, dict[str, Any]]:
    """Every section and key with its default: the config contract, used by docs tests."""
    out: dict[str, dict[str, Any]] = {}
    defaults = Config()
    for name in Config.__struct_fields__:
        section = getattr(defaults, name)
        out[name] = {k: getattr(section, k) for k in type(section).__struct_fields__}
    return out


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            if (name.upper().startswith("CONTRAIL_") and "__" in name[len("CONTRAIL_"):]) or \
                    name.startswith(ENV_PREFIX.lower()):  # a setting misspelt: it would silently do nothing
                raise ConfigError(f"config: environment variable {name} looks like a setting but is not one: "
                                  "settings are CONTRAIL__SECTION__KEY (capitals, two underscores after CONTRAIL)")
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"config: environment variable {name} must look like CONTRAIL__SECTION__KEY")
        overrides.setdefault(parts[0], {})[parts[1]] = value
    return overrides


def _json_or_str(raw: str, key: str, default: Any) -> Any:
    """A table or array from the environment is JSON; a text setting (a secret may start with "{") is the text."""
    if raw[:1] in ("{", "[") and not isinstance(default, str):  # not `in "{["`: that holds for "" too
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:  # the value may be a secret: it is not repeated
            raise ConfigError(f"config: {key}: the environment's value starts like JSON (a table or array) "
                              "but does not parse as JSON") from None
    return raw


# msgspec ends a ValidationError with " - at `$.section.key`" (plus `[...]` or `[0]` inside a table or array).
_PATH_RE = re.compile(r"(?: - )?at `\$\.([^`]+)`")
_KEY_RE = re.compile(r"(\w+): (.*)", re.DOTALL)


def _explain(exc: msgspec.ValidationError, fields: dict[str, dict[str, Any]]) -> str:
    """One line naming the key: "config: server.port: Expected `int` <= 65535"."""
    message = str(exc)
    match = _PATH_RE.search(message)
    where = match.group(1) if match else ""  # the whole file (an unknown section)
    reason = _PATH_RE.sub("", message).strip(" -")
    for pattern, hint in _PATTERN_HINTS.items():
        reason = reason.replace(f"Expected `str` matching regex {pattern!r}", hint)
    # A section's __post_init__ fails at the section's path with "key: reason" (see _invalid).
    keyed = _KEY_RE.fullmatch(reason)
    if keyed and keyed.group(1) in fields.get(where, {}):
        where, reason = f"{where}.{keyed.group(1)}", keyed.group(2)
    return f"config: {where}: {reason}" if where else f"config: {reason}"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load config.toml (if present) and apply environment overrides; raise ConfigError."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config: file {path} not found (pass --config PATH or set CONTRAIL_CONFIG)")
        try:
            data = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    fields = section_fields()
    for section, values in _env_overrides(env).items():
        if section not in fields:
            raise ConfigError(f"config: {section}: unknown section (from CONTRAIL__{section.upper()}__...)")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config: {section}: must be a table")
        for key, raw in values.items():
            if key not in fields[section]:
                raise ConfigError(f"config: {section}.{key}: unknown key "
                                  f"(from CONTRAIL__{section.upper()}__{key.upper()})")
            # Tables and arrays come from the environment as JSON, e.g. '{"USD": 1.0}'.
            target[key] = _json_or_str(raw, f"{section}.{key}", fields[section][key])
    try:
        # strict=False lets "8081" from the environment become the int the field wants.
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, fields)) from None
    # Production keeps its secrets where its operators keep secrets (and shares them between nodes),
    # not only in a file beside the data.
    if config.server.production and not config.auth.jwt_secret:
        raise ConfigError("config: auth.jwt_secret: production mode needs it set (32+ characters)")
    if config.server.production and not config.payments.webhook_secret:
        raise ConfigError("config: payments.webhook_secret: production mode needs it set (32+ characters)")
    if config.server.production and not (config.pii.key or config.pii.key_file):
        # Losing a generated key beside the data loses every customer's contact details with it.
        raise ConfigError("config: pii.key: production mode needs it set (with pii.lookup_key), or pii.key_file "
                          "naming a key file kept and backed up apart from the data")
    return config


def markdown_table(toml_path: Path) -> str:
    """The configuration table of docs/operations.md, from config.toml's keys, values and comments."""
    rows = ["| key | default | environment | meaning |", "|---|---|---|---|"]
    section, after_key = "", False
    comment: list[str] = []
    for line in toml_path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section, comment = line[1:-1], []
        elif line.startswith("#"):
            if after_key:  # a comment covers the keys right below it, up to the next comment
                comment, after_key = [], False
            comment.append(line.lstrip("# "))
        elif "=" in line and section:
            key, _, value = (part.strip() for part in line.partition("="))
            meaning = " ".join(comment).replace("|", "\\|")
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            rows.append(f"| `{section}.{key}` | `{value}` | `{env}` | {meaning} |")
            after_key = True
        elif not line:
            comment = []
    return "\n".join(rows)


if __name__ == "__main__":
    # python -m app.config [docs/operations.md]: rewrite the configuration table in place from config.toml.
    import sys
    root = Path(__file__).resolve().parent.parent
    guide = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "operations.md"
    text = guide.read_text()
    start = text.index("| key | default | environment | meaning |")
    end = text.index("\n\n", start)
    guide.write_text(text[:start] + markdown_table(root / "config.toml") + text[end:])
