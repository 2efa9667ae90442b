"""What a start does not import: libraries only some requests or some configurations use, which cost every start
their import time otherwise (docs/performance.md, the restart)."""

import subprocess
import sys

NOT_AT_START = ("scipy.optimize", "scipy.stats",  # fitting models; a bandit's posterior shown
                "openpyxl",  # an XLSX report asked for
                "nats", "redis", "asyncpg")  # only with nats.url, redis.url, storage.backend = "postgres" set


def test_the_server_module_imports_none_of_them():
    script = f"import sys; import app.server; print([m for m in {NOT_AT_START!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
