"""Accounts and suppressions at scale (issue 28): a fresh data directory whose SQLite holds `--accounts` customer
accounts (1M by default) and `--suppressions` suppression entries, sealed through the real PiiCipher under the data
directory's own key file and written straight into the tables; then

- each store's `load()` is timed outside the server (a child process per store, so its RSS is the store's alone),
- the server starts on the data (pinned to one core): time to ready, RSS once ready and 30 s later,
- lookups that miss memory are timed against the stored rows (an account by id and by email, a suppression check).

`--code DIR` runs the server and the loads from another checkout (the version before, for the comparison); the
data is written by this one, whose schema must match. The written database is kept for reruns.

    python -m bench.accounts_scale [--accounts N] [--suppressions N] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

import bench.server
from adapters.pii import cipher_from
from adapters.sqlite.migrations import RECORDS
from app.auth import hash_password
from bench.server import ServerProcess
from bench.soak import pin, rss_mb
from state.suppressions import Suppression

BATCH = 20_000
SERVER_CORE = "0"
YEARS = 5 * 365 * 86_400.0

# Run in a child process from the code tree measured: one store's load() on a copy of the database, its time and
# what it added to the RSS (after a full collection).
_LOAD = """
import asyncio, gc, json, sys, time
from pathlib import Path
from adapters.pii import cipher_from
from adapters.sqlite.db import Database
from adapters.sqlite import migrations
from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.suppressions import SqliteSuppressionStore

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

async def main(db_path, key_file, which):
    db = Database(Path(db_path), migrations.RECORDS)
    await db.open()
    pii = cipher_from("", [], "", Path(key_file))
    store = (SqliteAccountStore if which == "accounts" else SqliteSuppressionStore)(db, pii)
    gc.collect()
    before = rss()
    started = time.perf_counter()
    await store.load()
    seconds = time.perf_counter() - started
    gc.collect()
    print(json.dumps({"seconds": seconds, "rss_mb": rss() - before}))
    await db.close()

asyncio.run(main(*sys.argv[1:]))
"""

# Lookups that miss memory, timed in a child process from the code tree measured (the version after only).
_MISSES = """
import asyncio, json, random, statistics, sys, time
from pathlib import Path
from adapters.pii import cipher_from
from adapters.sqlite.db import Database
from adapters.sqlite import migrations
from adapters.sqlite.accounts import SqliteAccountStore
from adapters.sqlite.suppressions import SqliteSuppressionStore

async def main(db_path, key_file, accounts, suppressions):
    accounts, suppressions = int(accounts), int(suppressions)
    db = Database(Path(db_path), migrations.RECORDS)
    await db.open()
    pii = cipher_from("", [], "", Path(key_file))
    store, suppressed = SqliteAccountStore(db, pii, 1), SqliteSuppressionStore(db, pii, capacity=1)
    rng = random.Random(28)
    out = {}
    for name, lookup in (
            ("account by id", lambda n: store.fetch(f"usr_{n:032x}")),
            ("account by email", lambda n: store.fetch_by_email(f"c{n}@example.com")),
            ("suppression check, suppressed", lambda n: suppressed.get(f"b{n % suppressions}@example.com", "email")),
            ("suppression check, not suppressed", lambda n: suppressed.get(f"c{n}@example.com", "email"))):
        times = []
        for _ in range(2000):
            n = rng.randrange(accounts)
            started = time.perf_counter()
            found = await lookup(n)
            times.append((time.perf_counter() - started) * 1e6)
            assert (found is None) == name.endswith("not suppressed"), name
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.99)])
    print(json.dumps(out))
    await db.close()

asyncio.run(main(*sys.argv[1:]))
"""


def write_rows(db_path: Path, key_file: Path, accounts: int, suppressions: int, now: float) -> None:
    """`accounts` customer accounts (created over five years) and `suppressions` email suppressions (bounces,
    unsubscribes), sealed and hashed as the stores write them."""
    pii = cipher_from("", [], "", key_file)
    password = hash_password("a-long-password-1")  # one scrypt hash for all: its length is what memory holds
    encode = msgspec.json.Encoder().encode
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous=OFF")
    for start in range(0, accounts, BATCH):
        rows = []
        for n in range(start, min(accounts, start + BATCH)):
            email = f"c{n}@example.com"
            rows.append((f"usr_{n:032x}", pii.seal(email, "accounts.email"), pii.lookup(email), password, "customer",
                         now - YEARS + n * YEARS / accounts))
        conn.executemany("INSERT INTO accounts(id, email, email_hash, password_hash, role, created_at) "
                         "VALUES (?,?,?,?,?,?)", rows)
        conn.commit()
    reasons = ("hard_bounce", "unsubscribe", "spam_report")
    for start in range(0, suppressions, BATCH):
        entries: list[tuple[str, str, str]] = []
        for n in range(start, min(suppressions, start + BATCH)):
            s = Suppression(f"b{n}@example.com", "email", reasons[n % 3], now - YEARS + n * YEARS / suppressions)
            entries.append((pii.lookup(s.identifier), s.channel, pii.seal(encode(s).decode(), "suppressions.body")))
        conn.executemany("INSERT INTO suppressions(identifier, channel, body) VALUES (?,?,?)", entries)
        conn.commit()
    conn.close()


def _child(code: Path, script: str, *args: str) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONTRAIL")}, "PYTHONPATH": str(code)}
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=code, env=env, capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(accounts: int, suppressions: int, code: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        bench.server.ROOT = code  # the server (and its config.toml) of the checkout measured
        server = ServerProcess(Path(tmp) / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING")
        result = server.cli("migrate")
        assert result.returncode == 0, result.stderr
        started = time.monotonic()  # the same server on no accounts at all: what a start costs anyway
        server.start(timeout=120)
        empty_ready_s = time.monotonic() - started
        assert server.proc is not None
        time.sleep(2)
        empty_rss = rss_mb(server.proc.pid)
        server.terminate()
        db, key_file = server.data_dir / "contrail.db", server.data_dir / "pii.key"
        kept = Path(tempfile.gettempdir()) / f"contrail-accounts-scale-{accounts}-{suppressions}-m{RECORDS[-1].version}"
        started = time.monotonic()
        if (kept / "contrail.db").exists():
            for stale in server.data_dir.glob("contrail.db-*"):  # the empty start's WAL: not the copied database's
                stale.unlink()
            shutil.copyfile(kept / "contrail.db", db)
            shutil.copyfile(kept / "pii.key", key_file)
        else:
            write_rows(db, key_file, accounts, suppressions, time.time())
            kept.mkdir(exist_ok=True)
            shutil.copyfile(db, kept / "contrail.db")
            shutil.copyfile(key_file, kept / "pii.key")
        written_s = time.monotonic() - started
        db_mb = db.stat().st_size / 2**20
        loads = {which: _child(code, _LOAD, str(db), str(key_file), which) for which in ("accounts", "suppressions")}
        misses = _child(code, _MISSES, str(db), str(key_file), str(accounts), str(max(suppressions, 1))) \
            if code == Path(__file__).resolve().parent.parent and suppressions else {}
        started = time.monotonic()
        server.start(timeout=600)
        ready_s = time.monotonic() - started
        assert server.proc is not None
        pin(server.proc.pid, SERVER_CORE)
        time.sleep(2)
        rss = rss_mb(server.proc.pid)
        time.sleep(28)
        rss_30 = rss_mb(server.proc.pid)
        server.terminate()
        return {"accounts": accounts, "suppressions": suppressions, "code": str(code), "written_s": written_s,
                "db_mb": db_mb, "loads": loads, "ready_s": ready_s, "rss_mb": rss, "rss_30s_mb": rss_30,
                "empty_ready_s": empty_ready_s, "empty_rss_mb": empty_rss, "misses": misses}


def report(r: dict[str, Any]) -> None:
    print(f"\nAccounts and suppressions at scale ({r['code']}): {r['accounts']:,} accounts, {r['suppressions']:,} "
          f"suppressions, written (or copied) in {r['written_s']:.0f}s, contrail.db {r['db_mb']:,.0f} MB")
    for which, load in r["loads"].items():
        print(f"{which} store load(): {load['seconds']:.2f}s, +{load['rss_mb']:,.0f} MB RSS")
    print(f"start to ready {r['ready_s']:.2f}s; RSS once ready {r['rss_mb']:,.0f} MB, 30 s later "
          f"{r['rss_30s_mb']:,.0f} MB; with nothing stored: ready {r['empty_ready_s']:.2f}s, "
          f"{r['empty_rss_mb']:,.0f} MB")
    if r["misses"]:
        print(f"{'a lookup memory does not hold':<36}{'p50 us':>9}{'p99 us':>9}")
        for name, (p50, p99) in r["misses"].items():
            print(f"{name:<36}{p50:>9.0f}{p99:>9.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts_scale")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, default=1_000_000)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout whose server and stores are measured (default: this one)")
    args = parser.parse_args()
    result = run(args.accounts, args.suppressions, args.code.resolve())
    report(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
