"""What a start does not import: libraries only some requests or some configurations use, which cost every start
their import time otherwise (docs/performance.md, the restart and the test suite). And what a server loads before
it is ready that a command does not: the bid path's compiled loops."""

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

# The bid path's loops (app.bidding.wiring.BID_LOOPS) after a command opened the storage, and after a server started.
LOOPS = """
import asyncio, sys, tempfile
from aiohttp.test_utils import TestServer
import app.bidding.auction as auction
import ml.kernels as kernels
from app.config import load_config
from app.main import create_app
from app.platform import Platform

def kinds():
    return [type(auction._auction).__name__, type(kernels._layers).__name__]

async def main():
    config = load_config(None, env={"CONTRAIL__STORAGE__DATA_DIR": tempfile.mkdtemp()})
    command = Platform(config)  # what the operator commands build
    await command.open_storage()
    print("command", kinds())
    await command.close_storage()
    server = TestServer(create_app(load_config(None, env={"CONTRAIL__STORAGE__DATA_DIR": tempfile.mkdtemp()})))
    await server.start_server()  # ready: it answers requests
    print("server", kinds())
    await server.close()

asyncio.run(main())
"""


def test_a_server_on_sqlite_imports_none_of_them():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_server_loads_its_bid_loops_before_it_is_ready_and_a_command_never():
    done = subprocess.run([sys.executable, "-c", LOOPS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "command ['Later', 'Later']" in lines
    assert "server ['CPUDispatcher', 'CPUDispatcher']" in lines
