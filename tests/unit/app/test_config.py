import re

import msgspec
import pytest

from app.config import Config, ConfigError, load_config, markdown_table, section_fields
from tests.conftest import ROOT


def test_defaults_match_the_contract():
    config = load_config(None, env={})
    assert config.server.port == 8080
    assert config.grpc.port == 9090
    assert config.storage.data_dir == "var"
    assert config.analytics.queue_capacity == 100_000
    assert config.analytics.flush_rows == 10_000
    assert config.analytics.flush_interval_ms == 1000
    assert config.server.max_body_bytes == 1_048_576


def test_environment_overrides_every_section_with_typed_values():
    env = {"CONTRAIL__SERVER__HOST": "0.0.0.0", "CONTRAIL__SERVER__PORT": "8181",
           "CONTRAIL__GRPC__PORT": "9191", "CONTRAIL__STORAGE__DATA_DIR": "/tmp/x",
           "CONTRAIL__SERVER__PRODUCTION": "false", "CONTRAIL__RATELIMIT__IP_PER_S": "2.5"}
    config = load_config(None, env=env)
    assert (config.server.host, config.server.port, config.grpc.port) == ("0.0.0.0", 8181, 9191)
    assert config.storage.data_dir == "/tmp/x"
    assert config.ratelimit.ip_per_s == 2.5


def test_environment_beats_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 7000\n[grpc]\nport = 7001\n")
    config = load_config(path, env={"CONTRAIL__SERVER__PORT": "7002"})
    assert (config.server.port, config.grpc.port) == (7002, 7001)


@pytest.mark.parametrize("env, file, needle", [
    ({"CONTRAIL__SERVER__PORT": "eighty"}, "", "server.port"),
    ({"CONTRAIL__SERVER__PORT": "70000"}, "", "server.port"),
    ({"CONTRAIL__SERVER__NOPE": "1"}, "", "server.nope"),
    ({"CONTRAIL__NOPE__PORT": "1"}, "", "nope"),
    ({}, "[server]\nbogus = 1\n", "bogus"),
    ({}, "[storage]\nsynchronous = 'OFF'\n", "storage.synchronous"),
    ({"CONTRAIL__STORAGE__CHECKPOINT_INTERVAL_MS": "0"}, "", "storage.checkpoint_interval_ms"),
    ({"CONTRAIL__STORAGE__WAL_RESTART_FRAMES": "10"}, "", "storage.wal_restart_frames"),
    ({"CONTRAIL__STORAGE__BACKEND": "postgres"}, "", "storage.postgres_dsn"),
    ({"CONTRAIL__STORAGE__BACKEND": "cassandra"}, "", "storage.backend"),
    ({}, "[server\n", "not valid TOML"),
    ({"CONTRAIL__SERVER__PRODUCTION": "true"}, "", "auth.jwt_secret"),
])
def test_bad_values_name_the_key(tmp_path, env, file, needle):
    path = tmp_path / "c.toml"
    path.write_text(file)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


# One refused value for every range, pattern and cross-value rule on the config: (section.key, value).
RULES = [
    ("server.port", "-1"), ("grpc.port", "65536"), ("smtp.port", "70000"),
    # An empty address would listen on every interface; a blank data directory would write beside the command.
    ("server.host", ""), ("grpc.host", ""), ("storage.data_dir", ""), ("storage.busy_timeout_ms", "-1"),
    ("server.shutdown_grace_s", "inf"), ("auth.customer_token_ttl_s", "-1"), ("auth.guest_token_ttl_s", "0"),
    ("idempotency.ttl_s", "-1"), ("websocket.max_lag_s", "-1"), ("websocket.heartbeat_s", "0"),
    ("websocket.heartbeat_s", "nan"), ("tasks.restart_backoff_s", "-1"), ("tasks.restart_backoff_max_s", "0.1"),
    ("bidding.default_tmax_ms", "-5"), ("bidding.min_scoring_ms", "-2"), ("bidding.bid_ttl_s", "0"),
    ("bidding.user_cap_minute", "-1"), ("bidding.user_cap_hour", "-1"), ("bidding.user_cap_day", "-1"),
    ("bidding.exchange_burst", "0"), ("bidding.currency", "dollars"), ("retail.currency", "usd"),
    ("loyalty.reserve_stars", "500"), ("loyalty.channel_bonus", '{"mobile-app": 0.5}'),
    ("dsp.platforms", '[{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]'),
    ("server.max_body_bytes", "1023"), ("grpc.max_message_bytes", "1023"), ("grpc.max_message_bytes", "2147483648"),
    ("server.shutdown_grace_s", "-0.1"), ("server.max_connections", "0"), ("server.header_timeout_s", "0"),
    ("server.body_timeout_s", "0"), ("server.keepalive_timeout_s", "-1"),
    ("storage.max_group_size", "0"), ("storage.checkpoint_interval_ms", "9"), ("storage.wal_restart_frames", "99"),
    ("storage.postgres_pool_size", "1"), ("storage.postgres_pool_size", "501"),
    ("storage.events_postgres_dsn", "mysql://x"), ("storage.max_database_bytes", "999999"),
    ("storage.max_database_bytes", "-1"),
    ("analytics.queue_capacity", "0"), ("analytics.flush_rows", "0"), ("analytics.flush_interval_ms", "0"),
    ("analytics.retention_days", "0"), ("analytics.max_bytes", "-1"), ("analytics.max_bytes", "999999"),
    ("analytics.sample_bids", "1.5"), ("analytics.sample_offers", "-0.1"),
    ("analytics.sample_channel_events", "2"), ("analytics.whole_per_s", "-1"),
    ("analytics.totals_s", "0"), ("analytics.totals_s", "7"), ("analytics.max_totals", "0"),
    ("auth.jwt_secret", "x" * 31), ("auth.account_cache_entries", "0"),
    ("ratelimit.ip_per_s", "0"), ("ratelimit.principal_per_s", "nan"), ("ratelimit.ip_burst", "0"),
    ("ratelimit.principal_burst", "0"),
    ("websocket.client_queue", "0"), ("idempotency.max_in_memory", "0"),
    ("bidding.batch_size", "0"), ("bidding.batch_size", "1025"), ("bidding.max_live_bids", "999"),
    ("bidding.currency_rates", '{"EUR": 1.08}'), ("bidding.currency_rates", '{"USD": 1.0, "EUR": 0}'),
    ("bidding.pacing_slack", "1.5"), ("bidding.pacing_slack", "-0.1"), ("bidding.profile_l1_size", "0"),
    ("bidding.profile_l2_ttl_s", "0"), ("bidding.exchange_per_s", "0"), ("bidding.stream_max_in_flight", "0"),
    ("bidding.notice_base_url", "ftp://example.com"),
    ("bidding.value_burst_micros", "-1"), ("bidding.value_burst_window_s", "0"),
    ("bidding.shape_cache_mb", "0"), ("bidding.shape_cache_mb", "65537"),
    ("demo.traffic_per_s", "10001"), ("demo.traffic_per_s", "-1"), ("demo.seed", "-1"), ("demo.seed", "2147483648"),
    ("demo.searches_per_s", "-1"), ("demo.searches_per_s", "1001"),
    ("inference.max_batch", "0"), ("inference.max_wait_us", "-1"), ("inference.max_queue", "0"),
    ("inference.timeout_ms", "0"),
    ("retail.offer_ttl_s", "0"), ("retail.hold_ttl_s", "0"), ("retail.tax_percent", "100.5"),
    ("retail.tax_percent", "-1"), ("retail.booking_fee_cents", "-1"), ("retail.max_passengers", "0"),
    ("retail.max_passengers", "51"), ("retail.max_offers", "2"), ("retail.max_offers", "21"),
    ("retail.quote_ttl_s", "0"), ("retail.archive_after_days", "-1"), ("retail.sweep_interval_s", "0"),
    ("retail.change_offer_ttl_s", "0"), ("retail.draft_cache_size", "0"),
    ("retail.offer_retention_days", "0"), ("retail.max_offers_in_memory", "0"),
    ("payments.webhook_secret", "too-short"), ("payments.gateway_timeout_s", "0"),
    ("payments.pending_timeout_s", "0"), ("payments.simulator_settle_s", "-1"),
    ("ranking.remote", "http://ranker:50051"), ("ranking.remote", "ranker:123456"), ("ranking.remote_share", "1.01"),
    ("ranking.remote_deadline_ms", "0"), ("ranking.breaker_failures", "0"), ("ranking.breaker_slow_ms", "0"),
    ("ranking.breaker_open_s", "0"), ("ranking.breaker_successes", "0"), ("ranking.retrain_interval_s", "0"),
    ("ranking.min_training_offers", "9"),
    ("loyalty.gold_stars", "0"), ("loyalty.reserve_stars", "0"), ("loyalty.green_expiry_months", "0"),
    ("loyalty.green_expiry_months", "121"), ("loyalty.birthday_stars", "-1"), ("loyalty.birthday_stars", "10001"),
    ("loyalty.channel_bonus", '{"mobile_app": 10.5}'), ("loyalty.channel_bonus", '{"kiosk": -0.1}'),
    ("loyalty.expiry_interval_s", "0"), ("loyalty.transactions_in_memory", "0"),
    ("loyalty.max_accounts_in_memory", "0"),
    ("smtp.pool_size", "0"), ("smtp.pool_size", "65"), ("smtp.rate_per_s", "0"), ("smtp.max_attempts", "0"),
    ("smtp.queue_capacity", "0"),
    ("smtp.retry_backoff_s", "-1"), ("smtp.timeout_s", "0"),
    ("channels.public_base_url", "example.com"), ("channels.max_per_customer_per_day", "0"),
    ("channels.suppression_cache_entries", "0"),
    ("ingest.enabled_sources", '["pos", "fax"]'), ("ingest.check_in_stars", "-1"),
    ("ingest.check_in_stars", "10001"), ("ingest.max_pending_triggers", "-1"),
    ("ingest.profile_flush_interval_s", "0"), ("ingest.max_future_skew_s", "-1"),
    ("ingest.max_future_skew_s", "86401"),
    ("reco.max_items", "0"), ("reco.weight_view", "-1"), ("reco.weight_click", "101"), ("reco.weight_wishlist", "-0.5"),
    ("reco.weight_cart", "-1"), ("reco.weight_purchase", "101"), ("reco.weight_dismiss", "1"),
    ("reco.weight_dismiss", "0"),
    ("reco.recent_n", "0"), ("reco.recent_n", "501"), ("reco.recent_ttl_s", "-1"),
    ("reco.popularity_half_life_s", "-1"), ("reco.trending_window_s", "-1"), ("reco.coview_window", "-1"),
    ("reco.coview_window", "101"), ("reco.coview_ttl_s", "-1"), ("reco.max_users", "0"), ("reco.cache_ttl_s", "-1"),
    ("reco.cache_entries", "0"), ("reco.cache_bytes", "65535"),
    ("reco.explore_items", "11"), ("reco.max_n", "0"), ("reco.max_n", "1001"),
    ("reco.retrain_interval_s", "-1"), ("reco.min_training_events", "0"), ("reco.factors", "1"),
    ("reco.training_max_events", "0"), ("reco.checkpoint_interval_s", "-1"),
    ("grpc.keepalive_time_s", "0"), ("grpc.keepalive_timeout_s", "-1"),
    ("ltv.horizon_days", "0"), ("ltv.horizon_days", "3651"), ("ltv.annual_discount_rate", "-0.1"),
    ("ltv.annual_discount_rate", "1.5"), ("ltv.refit_interval_s", "-1"), ("ltv.refit_after_purchases", "-1"),
    ("ltv.holdout_days", "6"), ("ltv.holdout_days", "731"), ("ltv.target_accuracy", "1.1"),
    ("ltv.cache_entries", "0"), ("ltv.max_batch", "0"), ("ltv.max_batch", "100001"), ("ltv.max_events", "0"),
    ("ltv.remote", "http://x:1"), ("ltv.remote_deadline_ms", "0"), ("ltv.breaker_failures", "0"),
    ("ltv.breaker_slow_ms", "0"), ("ltv.breaker_open_s", "0"), ("ltv.breaker_successes", "0"),
    ("ltv.platform_multipliers", '{"meta": -1}'), ("ltv.value_min", "-1"), ("ltv.value_max", "0"),
    ("ltv.value_min", "2000000"),
    ("server.node_id", "a b"), ("server.node_id", "x" * 65),
    ("dsp.platforms", '[{"name": "Bad Name", "url": "http://x"}]'), ("dsp.platforms", '[{"name": "x", "url": "ftp://x"}]'),
    ("dsp.platforms", '[{"name": "x", "url": "http://x", "kind": "yahoo"}]'),
    ("dsp.platforms", '[{"name": "x", "url": "http://x", "timeout_ms": 0}]'),
    ("dsp.platforms", '[{"name": "x", "url": "http://x", "bid_adjustment": -1}]'), ("dsp.platforms", '[{"name": "x"}]'),
    ("dsp.reserve_ms", "-1"), ("dsp.network_buffer_ms", "-1"), ("dsp.min_timeout_ms", "0"),
    ("dsp.default_tmax_ms", "0"), ("dsp.breaker_failures", "0"), ("dsp.breaker_slow_ms", "0"),
    ("dsp.breaker_open_s", "0"), ("dsp.breaker_successes", "0"),
    ("nats.url", "http://127.0.0.1:4222"), ("nats.agents", "0"), ("nats.agents", "257"), ("nats.subject", ""),
    ("nats.queue", ""), ("nats.max_payload_bytes", "1023"),
    ("redis.url", "http://127.0.0.1:6379"), ("redis.prefix", "Has Spaces"), ("redis.timeout_ms", "0"),
    ("redis.pool_size", "0"), ("redis.spend_refresh_ms", "10"),
    ("redis.rate_limit_sync_ms", "10"),
    ("tracing.otlp_endpoint", "127.0.0.1:4318"), ("tracing.sample_ratio", "1.5"), ("tracing.sample_ratio", "-0.1"),
    ("tracing.service_name", ""), ("tracing.max_queue_spans", "63"), ("tracing.export_interval_ms", "9"),
    ("tracing.export_timeout_ms", "99"),
    ("learning.retrain_interval_s", "-1"), ("learning.min_rows", "99"), ("learning.min_clicks", "9"),
    ("learning.label_delay_s", "-1"), ("learning.max_rows", "999"), ("learning.max_rows", "2000001"),
    ("learning.feature_slots", "-1"), ("learning.feature_slots", "4000001"), ("learning.l1", "-0.1"),
    ("learning.l1", "11"), ("learning.max_epochs", "0"), ("learning.max_epochs", "201"), ("learning.keep_files", "0"),
    ("learning.keep_files", "1001"),
    ("canary.share", "0"), ("canary.share", "1"), ("canary.duration_s", "0"), ("canary.max_p95_ms", "0"),
    ("canary.max_error_rate", "1.5"), ("canary.min_calls", "0"), ("canary.window", "99"),
    ("canary.check_interval_s", "0"),
    ("pii.key", "c2hvcnQ="), ("pii.lookup_key", "c2hvcnQ="), ("pii.previous_keys", '["c2hvcnQ="]'),
    ("pii.rewrap_batch", "0"), ("pii.rewrap_check_s", "0"),
    ("adaptors.push_url", "push.example.com"), ("adaptors.sms_url", "ftp://sms.example.com"),
    ("adaptors.paid_media_url", " https://media.example.com"), ("adaptors.timeout_s", "0"),
    ("adaptors.max_attempts", "0"),
    ("sendgrid.verification_key", "bm90IGEga2V5"),
    ("campaigns.reapprove_fields", '["budget"]'), ("campaigns.scheduler_interval_s", "0"),
    ("campaigns.approval_rules", "[]"), ("campaigns.approval_rules", '[{"name": "x", "approvers": 0}]'),
    ("campaigns.approval_rules", '[{"name": "x"}, {"name": "x", "approvers": 2}]'),
    ("campaigns.rollup_interval_s", "0"), ("campaigns.decision_url", "decide.example"),
    ("campaigns.decision_deadline_ms", "0"), ("campaigns.breaker_failures", "0"), ("campaigns.breaker_slow_ms", "0"),
    ("campaigns.breaker_open_s", "0"), ("campaigns.breaker_successes", "0"), ("campaigns.reward_memory_days", "0"),
    ("integrations.task_tool", "trello"), ("integrations.jira_url", "atlassian.net"),
    ("integrations.asana_url", "ftp://app.asana.com"), ("integrations.task_sync_interval_s", "0"),
    ("integrations.dam", "dropbox"), ("integrations.dam_url", "bynder.example"),
    ("integrations.dam_sync_interval_s", "-1"), ("integrations.powerbi_url", "api.powerbi.com"),
    ("integrations.powerbi_interval_s", "0"), ("integrations.timeout_s", "0"), ("integrations.max_attempts", "0"),
    ("integrations.jira_issue_type", ""), ("integrations.jira_issue_type", " Story"),
    ("integrations.jira_issue_type", "x" * 256), ("integrations.aem_login", "dam:reader"),
    ("integrations.aprimo_fulltext_expression", "FullText = fares"),
    ("integrations.aprimo_folder_expression", "Classification.Id = ? OR Parent.Id = ?"),
    ("integrations.powerbi_group_id", "Marketing workspace"),
    ("integrations.powerbi_group_id", "f089354e-8366-4e18-aea3-4cb4a3a50b4"),
]


@pytest.mark.parametrize("key, value", RULES, ids=[f"{key}={value}" for key, value in RULES])
def test_every_rule_refuses_with_one_line_naming_the_key(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError) as err:
        load_config(None, env={f"CONTRAIL__{section.upper()}__{name.upper()}": value})
    message = str(err.value)
    assert message.startswith(f"config: {key}"), message
    assert "\n" not in message and "regex" not in message and "unknown key" not in message


def test_every_constrained_key_has_a_refusal_case():
    constrained = set()
    for section, info in zip(Config.__struct_fields__, msgspec.structs.fields(Config), strict=True):
        for field in msgspec.structs.fields(info.type):
            if "Meta(" in repr(field.type) or "Literal" in repr(field.type) or field.name in {
                    "jwt_secret", "webhook_secret", "currency_rates", "verification_key"}:
                constrained.add(f"{section}.{field.name}")
    # covered by msgspec's enum check
    literals = {"server.log_level", "storage.synchronous", "storage.backend", "inference.provider"}
    assert constrained - literals - {key for key, _ in RULES} == set()


@pytest.mark.parametrize("key, value", [
    ("server.port", "0"), ("server.port", "65535"), ("server.max_body_bytes", "1024"),
    ("grpc.max_message_bytes", "2147483647"), ("auth.jwt_secret", "x" * 32), ("payments.webhook_secret", ""),
    ("bidding.currency_rates", '{"USD": 1.0}'), ("bidding.pacing_slack", "0"), ("bidding.pacing_slack", "1"),
    ("bidding.notice_base_url", "https://bids.example.com"), ("channels.public_base_url", "http://localhost:8080"),
    ("ranking.remote", "ranker.internal:50051"), ("ranking.remote", ""), ("retail.max_offers", "3"),
    ("loyalty.channel_bonus", '{"mobile_app": 10, "kiosk": 0}'), ("ingest.enabled_sources", "[]"),
    ("ingest.enabled_sources", '["iot", "pos"]'), ("demo.traffic_per_s", "10000"), ("adaptors.sms_url", ""),
    ("reco.recent_ttl_s", "0"), ("reco.coview_ttl_s", "0"), ("reco.popularity_half_life_s", "0"),
    ("reco.retrain_interval_s", "0"), ("reco.explore_items", "0"), ("reco.weight_dismiss", "-0.01"),
    ("reco.weight_purchase", "0"),
    ("integrations.jira_issue_type", "Sub-task"), ("integrations.jira_issue_type", "x" * 255),
    ("integrations.aprimo_fulltext_expression", "FieldName('DisplayTitle') = ?"),
    ("integrations.powerbi_group_id", "F089354E-8366-4E18-AEA3-4CB4A3A50B48"), ("integrations.powerbi_group_id", ""),
])
def test_values_on_the_edge_of_a_rule_are_accepted(key, value):
    section, name = key.split(".")
    config = load_config(None, env={f"CONTRAIL__{section.upper()}__{name.upper()}": value})
    assert getattr(getattr(config, section), name) is not None


def test_the_defaults_meet_every_constraint():
    # msgspec checks constraints when converting, not on defaults: convert the defaults back in to check them.
    defaults = Config()
    assert msgspec.convert(msgspec.to_builtins(defaults), Config) == defaults
    assert load_config(None, env={}) == defaults


def test_production_needs_its_secrets_set():
    env = {"CONTRAIL__SERVER__PRODUCTION": "1", "CONTRAIL__AUTH__JWT_SECRET": "a-long-real-secret-from-the-vault"}
    with pytest.raises(ConfigError, match="payments.webhook_secret"):
        load_config(None, env=env)
    env["CONTRAIL__PAYMENTS__WEBHOOK_SECRET"] = "another-long-secret-from-the-vault"
    with pytest.raises(ConfigError, match="pii.key"):
        load_config(None, env=env)
    config = load_config(None, env={**env, "CONTRAIL__PII__KEY_FILE": "/run/secrets/contrail-pii.key"})
    assert config.server.production and config.auth.jwt_secret == "a-long-real-secret-from-the-vault"


def test_every_config_key_is_documented_in_the_operations_guide_and_config_toml():
    guide = (ROOT / "docs" / "operations.md").read_text()
    toml = (ROOT / "config.toml").read_text()
    missing_guide, missing_toml = [], []
    for section, fields in section_fields().items():
        for key in fields:
            if f"`{section}.{key}`" not in guide:
                missing_guide.append(f"{section}.{key}")
            # Within the section: up to the next line that opens one (values may hold brackets).
            if not re.search(rf"^\[{section}\]$(?:\n(?!\[).*)*?\n#?\s*{key}\s*=", toml, re.MULTILINE):
                missing_toml.append(f"{section}.{key}")
    assert not missing_guide, f"undocumented in docs/operations.md: {missing_guide}"
    assert not missing_toml, f"missing from config.toml: {missing_toml}"
    assert markdown_table(ROOT / "config.toml") in guide, "docs/operations.md's config table is stale: run `make docs`"


def test_shipped_config_toml_loads():
    config = load_config(ROOT / "config.toml", env={})
    assert config.server.port == 8080
    assert msgspec.convert(msgspec.to_builtins(config), Config) == config


def test_a_bad_verification_key_stops_the_start():
    from app.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="sendgrid.verification_key"):
        load_config(None, env={"CONTRAIL__SENDGRID__VERIFICATION_KEY": "bm90IGEga2V5"})


@pytest.mark.parametrize("env, key", [
    ({"TASK_TOOL": "jira"}, "jira_url"),
    ({"TASK_TOOL": "jira", "JIRA_URL": "https://x.atlassian.net", "JIRA_EMAIL": "a@x", "JIRA_API_TOKEN": "t"},
     "jira_project"),
    ({"TASK_TOOL": "jira", "JIRA_URL": "https://x.atlassian.net", "JIRA_PROJECT": "MKT"}, "jira_email"),
    ({"TASK_TOOL": "asana", "ASANA_TOKEN": "t"}, "asana_project"),
    ({"TASK_TOOL": "asana", "ASANA_URL": "", "ASANA_TOKEN": "t", "ASANA_PROJECT": "1"}, "asana_url"),
    ({"DAM": "bynder", "DAM_TOKEN": "t"}, "dam_url"),
    ({"DAM": "aprimo", "DAM_URL": "https://x.aprimo.com"}, "dam_token"),
    ({"DAM": "aem", "DAM_URL": "https://author.example"}, "dam_token"),
    ({"POWERBI_ENABLED": "true", "POWERBI_TOKEN": "t"}, "powerbi_dataset_id"),
    ({"POWERBI_ENABLED": "true", "POWERBI_DATASET_ID": "d", "POWERBI_TOKEN": "t", "POWERBI_URL": ""}, "powerbi_url"),
    ({"POWERBI_ENABLED": "true", "POWERBI_DATASET_ID": "d"}, "powerbi_token"),
    ({"POWERBI_ENABLED": "true", "POWERBI_DATASET_ID": "d", "POWERBI_TOKEN": "t", "POWERBI_TABLE": ""},
     "powerbi_table"),
])
def test_a_chosen_tool_needs_its_url_project_and_credentials(env, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()})
    message = str(err.value)
    assert message.startswith(f"config: integrations.{key}: must be set when "), message
    assert "\n" not in message


def test_a_fully_configured_tool_set_loads():
    env = {"TASK_TOOL": "jira", "JIRA_URL": "https://x.atlassian.net", "JIRA_EMAIL": "a@x.example",
           "JIRA_API_TOKEN": "secret", "JIRA_PROJECT": "MKT", "DAM": "aem", "DAM_URL": "https://author.example",
           "DAM_TOKEN": "t", "POWERBI_ENABLED": "true", "POWERBI_DATASET_ID": "d", "POWERBI_TOKEN": "t"}
    config = load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()})
    assert config.integrations.task_tool == "jira" and config.integrations.powerbi_enabled
    assert config.integrations.powerbi_table == "campaign_hours" and config.integrations.powerbi_interval_s == 300
    assert load_config(None, env={}).integrations.powerbi_enabled is False


def test_the_tools_settings_load_from_the_environment():
    env = {"TASK_TOOL": "jira", "JIRA_URL": "https://x.atlassian.net", "JIRA_EMAIL": "a@x.example",
           "JIRA_API_TOKEN": "secret", "JIRA_PROJECT": "MKT", "JIRA_ISSUE_TYPE": "Story",
           "DAM": "aem", "DAM_URL": "https://author.example", "AEM_LOGIN": "dam-reader", "AEM_PASSWORD": "s3cret",
           "APRIMO_FULLTEXT_EXPRESSION": "FieldName('DisplayTitle') = ?",
           "APRIMO_FOLDER_EXPRESSION": "Classification.Id = ? AND Status = Released",
           "POWERBI_ENABLED": "true", "POWERBI_DATASET_ID": "d", "POWERBI_TOKEN": "t",
           "POWERBI_GROUP_ID": "f089354e-8366-4e18-aea3-4cb4a3a50b48"}
    tools = load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()}).integrations
    assert tools.jira_issue_type == "Story"
    assert (tools.aem_login, tools.aem_password, tools.dam_token) == ("dam-reader", "s3cret", "")  # no token needed
    assert tools.aprimo_fulltext_expression == "FieldName('DisplayTitle') = ?"
    assert tools.aprimo_folder_expression == "Classification.Id = ? AND Status = Released"
    assert tools.powerbi_group_id == "f089354e-8366-4e18-aea3-4cb4a3a50b48"
    defaults = load_config(None, env={}).integrations
    assert (defaults.jira_issue_type, defaults.aem_login, defaults.aem_password, defaults.powerbi_group_id) == (
        "Task", "", "", "")
    assert (defaults.aprimo_fulltext_expression, defaults.aprimo_folder_expression) == (
        "FullText = ?", "Classification.Id = ?")


@pytest.mark.parametrize("env, key, reason", [
    ({"AEM_LOGIN": "dam-reader"}, "aem_password", "must be set with aem_login"),
    ({"AEM_PASSWORD": "s3cret-pw"}, "aem_login", "must be set with aem_password"),
    ({"DAM": "aem", "DAM_URL": "https://author.example", "AEM_LOGIN": "dam-reader", "AEM_PASSWORD": "s3cret-pw",
      "DAM_TOKEN": "t"}, "dam_token", "must be empty when aem_login and aem_password are set"),
])
def test_aem_basic_auth_needs_login_and_password_and_no_token(env, key, reason):
    with pytest.raises(ConfigError) as err:
        load_config(None, env={f"CONTRAIL__INTEGRATIONS__{k}": v for k, v in env.items()})
    message = str(err.value)
    assert message.startswith(f"config: integrations.{key}: {reason}"), message
    assert "s3cret-pw" not in message and "\n" not in message  # a secret is never repeated


def test_an_unknown_section_is_named_once(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[nosuch]\nkey = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == "config: Object contains unknown field `nosuch`"


def test_a_text_setting_from_the_environment_is_the_text_even_when_it_starts_like_json():
    secret = "{my-super-secret-value-0123456789abcdefXYZ"
    assert load_config(None, env={"CONTRAIL__AUTH__JWT_SECRET": secret}).auth.jwt_secret == secret
    with pytest.raises(ConfigError) as err:  # a table that does not parse: named, and the value not repeated
        load_config(None, env={"CONTRAIL__BIDDING__CURRENCY_RATES": '{"USD": 1.0, "hunter2'})
    assert str(err.value).startswith("config: bidding.currency_rates:") and "hunter2" not in str(err.value)


@pytest.mark.parametrize("name", ["CONTRAIL_SERVER__PORT", "contrail__server__port", "Contrail_Server__Port"])
def test_a_misspelt_setting_in_the_environment_stops_the_start(name):
    with pytest.raises(ConfigError) as err:
        load_config(None, env={name: "1"})
    assert name in str(err.value) and "CONTRAIL__SECTION__KEY" in str(err.value)
    assert load_config(None, env={"CONTRAIL_CONFIG": "config.toml"}) == load_config(None, env={})
