import re
import subprocess
import sys

import pytest

from app.config import ConfigError, load_config, markdown_table, section_fields
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


def test_production_needs_its_secrets_set():
    env = {"CONTRAIL__SERVER__PRODUCTION": "1", "CONTRAIL__AUTH__JWT_SECRET": "a-long-real-secret-from-the-vault"}
    with pytest.raises(ConfigError, match="payments.webhook_secret"):
        load_config(None, env=env)
    config = load_config(None, env={**env, "CONTRAIL__PAYMENTS__WEBHOOK_SECRET": "another-long-secret-from-the-vault"})
    assert config.server.production and config.auth.jwt_secret == "a-long-real-secret-from-the-vault"


def test_bad_config_stops_the_start_with_exit_2_and_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CONTRAIL__SERVER__PORT": "not-a-port",
           "CONTRAIL__STORAGE__DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "app", "--config", str(ROOT / "config.toml"), "serve"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.port" in lines[0]
    assert "Traceback" not in result.stderr


def test_every_config_key_is_documented_in_the_operations_guide_and_config_toml():
    guide = (ROOT / "docs" / "operations.md").read_text()
    toml = (ROOT / "config.toml").read_text()
    missing_guide, missing_toml = [], []
    for section, fields in section_fields().items():
        for key in fields:
            if f"`{section}.{key}`" not in guide:
                missing_guide.append(f"{section}.{key}")
            if not re.search(rf"^\[{section}\][^\[]*^#?\s*{key}\s*=", toml, re.MULTILINE | re.DOTALL):
                missing_toml.append(f"{section}.{key}")
    assert not missing_guide, f"undocumented in docs/operations.md: {missing_guide}"
    assert not missing_toml, f"missing from config.toml: {missing_toml}"
    assert markdown_table(ROOT / "config.toml") in guide, "docs/operations.md's config table is stale: run `make docs`"


def test_make_docs_rewrites_the_operations_guides_table_in_place(tmp_path):
    guide = tmp_path / "operations.md"
    guide.write_text("# Ops\n\n| key | default | environment | meaning |\n|---|---|---|---|\n| `old.key` | | | |\n\n"
                     "After the table.\n")
    result = subprocess.run([sys.executable, "-m", "app.config", str(guide)], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    text = guide.read_text()
    assert text.startswith("# Ops\n\n") and text.endswith("\n\nAfter the table.\n")
    assert markdown_table(ROOT / "config.toml") in text and "old.key" not in text


def test_shipped_config_toml_loads():
    assert load_config(ROOT / "config.toml", env={}).server.port == 8080
