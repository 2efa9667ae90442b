"""What a start does not import: libraries only some requests or some configurations use, which cost every start
their import time otherwise (docs/performance.md, the restart and the test suite)."""

import subprocess
import sys

NOT_AT_START = ("scipy.optimize", "scipy.stats",  # fitting models; a bandit's posterior shown
                "openpyxl",  # an XLSX report asked for
                "nats", "redis", "asyncpg")  # only with nats.url, redis.url, storage.backend = "postgres" set

# The server's module, then a whole app built on SQLite (the wiring picks its adapters as it builds).
SCRIPT = f"""
import sys, tempfile
import app.server
from app.config import load_config
from app.main import create_app
create_app(load_config(None, env={{"CONTRAIL__STORAGE__DATA_DIR": tempfile.mkdtemp()}}))
print([m for m in {NOT_AT_START!r} if m in sys.modules])
"""


def test_a_server_on_sqlite_imports_none_of_them():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
