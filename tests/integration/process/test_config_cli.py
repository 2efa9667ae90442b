"""The config from the command line: a bad value stops `serve` with exit 2 and one line; `python -m app.config`
rewrites the operations guide's table in place (`make docs`)."""

import subprocess
import sys

from app.config import markdown_table
from tests.conftest import ROOT


def test_bad_config_stops_the_start_with_exit_2_and_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CONTRAIL__SERVER__PORT": "not-a-port",
           "CONTRAIL__STORAGE__DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "app", "--config", str(ROOT / "config.toml"), "serve"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.port" in lines[0]
    assert "Traceback" not in result.stderr


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
