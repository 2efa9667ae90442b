"""Typed configuration: config.toml, then CONTRAIL__SECTION__KEY environment overrides."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

import msgspec

ENV_PREFIX = "CONTRAIL__"


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    production: bool = False
    shutdown_grace_s: float = 10.0
    max_body_bytes: int = 1_048_576
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False


class GrpcConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 9090
    max_message_bytes: int = 1_048_576


class StorageConfig(_Section):
    data_dir: str = "var"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_group_size: int = 512
    busy_timeout_ms: int = 5000
    checkpoint_interval_ms: int = 1000
    wal_restart_frames: int = 4096


class AnalyticsConfig(_Section):
    queue_capacity: int = 100_000
    flush_rows: int = 10_000
    flush_interval_ms: int = 1000
    retention_days: int = 7


class AuthConfig(_Section):
    jwt_secret: str = ""
    customer_token_ttl_s: int = 3600
    guest_token_ttl_s: int = 1800


class RateLimitConfig(_Section):
    ip_per_s: float = 200.0
    ip_burst: int = 400
    principal_per_s: float = 100.0
    principal_burst: int = 200


class IdempotencyConfig(_Section):
    ttl_s: int = 86_400


class WebsocketConfig(_Section):
    client_queue: int = 1000
    max_lag_s: float = 5.0
    heartbeat_s: float = 20.0


class TasksConfig(_Section):
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0


class BiddingConfig(_Section):
    seat: str = "contrail"
    currency: str = "USD"
    currency_rates: dict[str, float] = msgspec.field(
        default_factory=lambda: {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73, "AUD": 0.66, "JPY": 0.0067})
    batch_size: int = 64
    nobid_body: bool = False
    default_tmax_ms: int = 100
    min_scoring_ms: float = 2.0
    bid_ttl_s: int = 300
    notice_base_url: str = ""
    user_cap_minute: int = 0
    user_cap_hour: int = 0
    user_cap_day: int = 0
    pacing_slack: float = 0.05
    profile_l1_size: int = 100_000
    profile_l2_ttl_s: int = 3600
    exchange_per_s: float = 20_000.0
    exchange_burst: int = 40_000
    stream_max_in_flight: int = 256


class InferenceConfig(_Section):
    provider: Literal["cpu", "groq", "inferentia2", "inferentia3", "ampere", "tenstorrent"] = "cpu"
    model_path: str = ""
    max_batch: int = 16
    max_wait_us: int = 500
    max_queue: int = 1024
    timeout_ms: float = 5.0


class RetailConfig(_Section):
    currency: str = "USD"
    offer_ttl_s: int = 900
    hold_ttl_s: int = 1800
    tax_percent: float = 12.0
    booking_fee_cents: int = 500
    max_passengers: int = 9
    max_offers: int = 5
    quote_ttl_s: int = 900
    archive_after_days: int = 7
    sweep_interval_s: float = 1.0
    offers_power_safe: bool = False
    draft_cache_size: int = 20_000
    offer_retention_days: int = 30


class PaymentsConfig(_Section):
    webhook_secret: str = ""
    gateway_timeout_s: float = 10.0
    pending_timeout_s: int = 300
    simulator_settle_s: float = 60.0


class RankingConfig(_Section):
    remote: str = ""
    remote_api_key: str = ""
    remote_share: float = 0.0
    remote_deadline_ms: int = 200
    breaker_failures: int = 3
    breaker_slow_ms: int = 500
    breaker_open_s: float = 30.0
    breaker_successes: int = 2
    retrain_interval_s: float = 300.0
    min_training_offers: int = 200


class LoyaltyConfig(_Section):
    gold_stars: int = 500
    reserve_stars: int = 2500
    green_expiry_months: int = 6
    birthday_stars: int = 50
    channel_bonus: dict[str, float] = msgspec.field(default_factory=lambda: {"mobile_app": 0.1})
    expiry_interval_s: float = 3600.0


class SmtpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 2525
    starttls: bool = False
    use_tls: bool = False
    username: str = ""
    password: str = ""
    from_address: str = "Contrail Air <hello@contrail.example>"
    pool_size: int = 4
    rate_per_s: float = 200.0
    max_attempts: int = 5
    retry_backoff_s: float = 2.0
    timeout_s: float = 10.0
    embedded_sink: bool = False


class ChannelsConfig(_Section):
    public_base_url: str = ""
    max_per_customer_per_day: int = 3


class IngestConfig(_Section):
    enabled_sources: list[str] = msgspec.field(default_factory=lambda: [
        "mobile_app", "pos", "kiosk", "web", "call_center", "partner_api", "iot"])
    check_in_stars: int = 25
    triggers: bool = True
    max_pending_triggers: int = 1000
    profile_flush_interval_s: float = 1.0


class AdaptorsConfig(_Section):
    push_url: str = ""
    sms_url: str = ""
    paid_media_url: str = ""
    timeout_s: float = 2.0
    max_attempts: int = 3


class SendgridConfig(_Section):
    verification_key: str = ""
    allow_unsigned: bool = False


class DemoConfig(_Section):
    traffic_per_s: float = 0.0


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
    adaptors: AdaptorsConfig = msgspec.field(default_factory=AdaptorsConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.storage.data_dir)


# Range checks msgspec types cannot express: (section, key) -> (predicate, message).
_CHECKS: dict[tuple[str, str], tuple[Any, str]] = {
    ("server", "port"): (lambda v: 0 <= v <= 65535, "must be a port number 0-65535"),
    ("grpc", "port"): (lambda v: 0 <= v <= 65535, "must be a port number 0-65535"),
    ("server", "max_body_bytes"): (lambda v: v >= 1024, "must be at least 1024"),
    ("grpc", "max_message_bytes"): (lambda v: 1024 <= v <= 2**31 - 1, "must be 1024 to 2147483647"),
    ("server", "shutdown_grace_s"): (lambda v: v >= 0, "must not be negative"),
    ("server", "max_connections"): (lambda v: v >= 1, "must be at least 1"),
    ("server", "header_timeout_s"): (lambda v: v > 0, "must be positive"),
    ("server", "body_timeout_s"): (lambda v: v > 0, "must be positive"),
    ("server", "keepalive_timeout_s"): (lambda v: v > 0, "must be positive"),
    ("storage", "max_group_size"): (lambda v: v >= 1, "must be at least 1"),
    ("storage", "checkpoint_interval_ms"): (lambda v: v >= 10, "must be at least 10"),
    ("storage", "wal_restart_frames"): (lambda v: v >= 100, "must be at least 100"),
    ("analytics", "queue_capacity"): (lambda v: v >= 1, "must be at least 1"),
    ("analytics", "flush_rows"): (lambda v: v >= 1, "must be at least 1"),
    ("analytics", "flush_interval_ms"): (lambda v: v >= 1, "must be at least 1"),
    ("analytics", "retention_days"): (lambda v: v >= 1, "must be at least 1"),
    ("auth", "jwt_secret"): (lambda v: v == "" or len(v) >= 32,
                             "must be empty (generated) or at least 32 characters (RFC 7518 3.2)"),
    ("ratelimit", "ip_per_s"): (lambda v: v > 0, "must be positive"),
    ("ratelimit", "principal_per_s"): (lambda v: v > 0, "must be positive"),
    ("ratelimit", "ip_burst"): (lambda v: v >= 1, "must be at least 1"),
    ("ratelimit", "principal_burst"): (lambda v: v >= 1, "must be at least 1"),
    ("websocket", "client_queue"): (lambda v: v >= 1, "must be at least 1"),
    ("bidding", "batch_size"): (lambda v: 1 <= v <= 1024, "must be 1 to 1024"),
    ("bidding", "currency_rates"): (lambda v: all(r > 0 for r in v.values()) and "USD" in v,
                                    "needs a positive rate for every currency and one for USD"),
    ("bidding", "pacing_slack"): (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    ("bidding", "profile_l1_size"): (lambda v: v >= 1, "must be at least 1"),
    ("bidding", "profile_l2_ttl_s"): (lambda v: v >= 1, "must be at least 1"),
    ("bidding", "exchange_per_s"): (lambda v: v > 0, "must be positive"),
    ("bidding", "stream_max_in_flight"): (lambda v: v >= 1, "must be at least 1"),
    ("demo", "traffic_per_s"): (lambda v: 0 <= v <= 10_000, "must be between 0 and 10000"),
    ("inference", "max_batch"): (lambda v: v >= 1, "must be at least 1"),
    ("inference", "max_wait_us"): (lambda v: v >= 0, "must not be negative"),
    ("inference", "max_queue"): (lambda v: v >= 1, "must be at least 1"),
    ("inference", "timeout_ms"): (lambda v: v > 0, "must be positive"),
    ("retail", "offer_ttl_s"): (lambda v: v >= 1, "must be at least 1"),
    ("retail", "hold_ttl_s"): (lambda v: v >= 1, "must be at least 1"),
    ("retail", "tax_percent"): (lambda v: 0 <= v <= 100, "must be between 0 and 100"),
    ("retail", "booking_fee_cents"): (lambda v: v >= 0, "must not be negative"),
    ("retail", "max_passengers"): (lambda v: 1 <= v <= 50, "must be 1 to 50"),
    ("retail", "max_offers"): (lambda v: 3 <= v <= 20, "must be 3 to 20"),
    ("retail", "quote_ttl_s"): (lambda v: v >= 1, "must be at least 1"),
    ("retail", "archive_after_days"): (lambda v: v >= 0, "must not be negative"),
    ("retail", "sweep_interval_s"): (lambda v: v > 0, "must be positive"),
    ("retail", "draft_cache_size"): (lambda v: v >= 1, "must be at least 1"),
    ("retail", "offer_retention_days"): (lambda v: v >= 1, "must be at least 1"),
    ("payments", "webhook_secret"): (lambda v: v == "" or len(v) >= 32,
                                     "must be empty (generated) or at least 32 characters"),
    ("payments", "gateway_timeout_s"): (lambda v: v > 0, "must be positive"),
    ("payments", "pending_timeout_s"): (lambda v: v >= 1, "must be at least 1"),
    ("payments", "simulator_settle_s"): (lambda v: v >= 0, "must not be negative"),
    ("ranking", "remote"): (lambda v: v == "" or re.fullmatch(r"[\w.\-]+:\d{1,5}", v) is not None,
                            "must be host:port or empty"),
    ("ranking", "remote_share"): (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    ("ranking", "remote_deadline_ms"): (lambda v: v >= 1, "must be at least 1"),
    ("ranking", "breaker_failures"): (lambda v: v >= 1, "must be at least 1"),
    ("ranking", "breaker_slow_ms"): (lambda v: v >= 1, "must be at least 1"),
    ("ranking", "breaker_open_s"): (lambda v: v > 0, "must be positive"),
    ("ranking", "breaker_successes"): (lambda v: v >= 1, "must be at least 1"),
    ("ranking", "retrain_interval_s"): (lambda v: v > 0, "must be positive"),
    ("ranking", "min_training_offers"): (lambda v: v >= 10, "must be at least 10"),
    ("loyalty", "gold_stars"): (lambda v: v >= 1, "must be at least 1"),
    ("loyalty", "reserve_stars"): (lambda v: v >= 1, "must be at least 1"),
    ("loyalty", "green_expiry_months"): (lambda v: 1 <= v <= 120, "must be 1 to 120"),
    ("loyalty", "birthday_stars"): (lambda v: 0 <= v <= 10_000, "must be 0 to 10000"),
    ("loyalty", "channel_bonus"): (lambda v: all(0 <= b <= 10 for b in v.values()), "bonuses must be 0 to 10"),
    ("loyalty", "expiry_interval_s"): (lambda v: v > 0, "must be positive"),
    ("smtp", "port"): (lambda v: 0 <= v <= 65535, "must be a port number 0-65535"),
    ("smtp", "pool_size"): (lambda v: 1 <= v <= 64, "must be 1 to 64"),
    ("smtp", "rate_per_s"): (lambda v: v > 0, "must be positive"),
    ("smtp", "max_attempts"): (lambda v: v >= 1, "must be at least 1"),
    ("smtp", "retry_backoff_s"): (lambda v: v >= 0, "must not be negative"),
    ("smtp", "timeout_s"): (lambda v: v > 0, "must be positive"),
    ("channels", "public_base_url"): (lambda v: v == "" or v.startswith(("http://", "https://")),
                                      "must be empty (derived) or an http(s) URL"),
    ("bidding", "notice_base_url"): (lambda v: v == "" or v.startswith(("http://", "https://")),
                                     "must be empty (derived) or an http(s) URL"),
    ("channels", "max_per_customer_per_day"): (lambda v: v >= 1, "must be at least 1"),
    ("ingest", "enabled_sources"): (lambda v: set(v) <= {"mobile_app", "pos", "kiosk", "web", "call_center",
                                                         "partner_api", "iot"},
                                    "must list only mobile_app, pos, kiosk, web, call_center, partner_api, iot"),
    ("ingest", "check_in_stars"): (lambda v: 0 <= v <= 10_000, "must be 0 to 10000"),
    ("ingest", "max_pending_triggers"): (lambda v: v >= 0, "must not be negative"),
    ("ingest", "profile_flush_interval_s"): (lambda v: v > 0, "must be positive"),
    ("adaptors", "push_url"): (lambda v: v == "" or v.startswith(("http://", "https://")), "must be an http(s) URL"),
    ("adaptors", "sms_url"): (lambda v: v == "" or v.startswith(("http://", "https://")), "must be an http(s) URL"),
    ("adaptors", "paid_media_url"): (lambda v: v == "" or v.startswith(("http://", "https://")),
                                     "must be an http(s) URL"),
    ("adaptors", "timeout_s"): (lambda v: v > 0, "must be positive"),
    ("adaptors", "max_attempts"): (lambda v: v >= 1, "must be at least 1"),
    ("sendgrid", "verification_key"): (lambda v: _is_p256_key(v), "must be empty or a base64 DER EC P-256 public key"),
}


def _is_p256_key(value: str) -> bool:
    from app.channels.analytics import load_verification_key
    try:
        load_verification_key(value)
    except ValueError:
        return False
    return True


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
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"config: environment variable {name} must look like CONTRAIL__SECTION__KEY")
        overrides.setdefault(parts[0], {})[parts[1]] = value
    return overrides


def _json_or_str(raw: str) -> Any:
    if raw[:1] in "{[":
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise ConfigError(f"config: environment value {raw[:40]!r} looks like JSON but does not parse") from None
    return raw


_PATH_RE = re.compile(r"at `\$\.([\w.]+)`")


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
                raise ConfigError(f"config: {section}.{key}: unknown key (from CONTRAIL__{section.upper()}__{key.upper()})")
            # Tables and arrays come from the environment as JSON, e.g. '{"USD": 1.0}'.
            target[key] = _json_or_str(raw)
    try:
        # strict=False lets "8081" from the environment become the int the field wants.
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_RE.search(message)
        where = match.group(1) if match else "config"
        reason = _PATH_RE.sub("", message).strip(" -")
        raise ConfigError(f"config: {where}: {reason}") from None
    for (section, key), (ok, message) in _CHECKS.items():
        value = getattr(getattr(config, section), key)
        if not ok(value):
            raise ConfigError(f"config: {section}.{key}: {message} (got {value!r})")
    # Production keeps its secrets where its operators keep secrets (and shares them between nodes),
    # not only in a file beside the data.
    if config.server.production and not config.auth.jwt_secret:
        raise ConfigError("config: auth.jwt_secret: production mode needs it set (32+ characters)")
    if config.server.production and not config.payments.webhook_secret:
        raise ConfigError("config: payments.webhook_secret: production mode needs it set (32+ characters)")
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
            rows.append(f"| `{section}.{key}` | `{value}` | `{ENV_PREFIX}{section.upper()}__{key.upper()}` | {meaning} |")
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
