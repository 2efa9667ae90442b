"""Loyalty's start at scale (issue 28): a SQLite database holding `--members` members with `--entries` ledger entries
each (100,000 x 20 by default), made over two years by the real tier rules (earns as the service details them,
redemptions, a refund now and then) with each member's state as the service stores it; then the loyalty service's
`load()` is timed outside the server, in a child process per case so its RSS is the load's alone:

- `states`: this checkout on the database as written (each member's stored state);
- `holding N` (`--hold`, 10,000): the same with `loyalty.max_accounts_in_memory` = N: N states and every
  member's id read;
- `first start`: this checkout on a copy from before states were stored (no `loyalty_accounts`, migration 27 not
  applied): the migration, and each member rebuilt from their ledger once;
- `before`, with `--before DIR`: another checkout's (the version before, e.g. `git archive <commit> | tar -x -C DIR`)
  on the same database, which replays the whole ledger.

The database is kept in the temporary directory for reruns.

    python -m bench.loyalty_scale [--members N] [--entries N] [--before DIR] [--hold N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from adapters.sqlite.db import Database
from adapters.sqlite.migrations import RECORDS
from app.config import LoyaltyConfig
from app.loyalty.accounts import YEAR, TierRules, standing
from app.loyalty.service import MULTIPLIER, green_expiry
from state.loyalty import LedgerEntry, LoyaltyAccount

BATCH = 20_000
ROOT = Path(__file__).resolve().parent.parent

# Run in a child process from the code tree measured: open the database (applying what migrations it lacks), then
# the loyalty service's load(); times, and what each added to the RSS (after a full collection), and the peak.
_LOAD = """
import asyncio, gc, json, resource, sys, time
from pathlib import Path
from adapters.pii import PiiCipher
from adapters.sqlite.db import Database
from adapters.sqlite import migrations
from adapters.sqlite.loyalty import SqliteLoyaltyStore
from adapters.sqlite.uow import SqliteUnitOfWork
from app.config import LoyaltyConfig
from app.loyalty.service import LoyaltyService
from app.runtime.clock import SystemClock

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

async def publish(event):
    pass

async def main(db_path, held=None):
    gc.collect()
    base = rss()
    started = time.perf_counter()
    db = Database(Path(db_path), migrations.RECORDS)
    await db.open()
    opened = time.perf_counter() - started
    pii = PiiCipher.generate()
    config = LoyaltyConfig(max_accounts_in_memory=int(held)) if held else LoyaltyConfig()
    service = LoyaltyService(config, SqliteLoyaltyStore(db, pii), SystemClock(), lambda *a: None, None,
                             SqliteUnitOfWork(db, pii), publish)
    gc.collect()
    before = rss()
    started = time.perf_counter()
    await service.load()
    seconds = time.perf_counter() - started
    gc.collect()
    print(json.dumps({"open_s": opened, "load_s": seconds, "rss_mb": rss() - before,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
                      "members": len(service.accounts if hasattr(service, "accounts") else service._accounts),
                      "loaded": getattr(service, "loaded", None)}))
    await db.close()

asyncio.run(main(*sys.argv[1:]))
"""


def member_history(n: int, entries: int, now: float, rules: TierRules, next_id: int
                   ) -> tuple[list[tuple[Any, ...]], LoyaltyAccount]:
    """Member n's ledger rows over the two years before `now`, and the state they leave."""
    rng = random.Random(n)
    user_id = f"member-{n:07d}"
    account = LoyaltyAccount(user_id)
    times = sorted(now - 2 * YEAR + rng.random() * 2 * YEAR for _ in range(entries))
    rows: list[tuple[Any, ...]] = []
    purchases: list[LedgerEntry] = []
    for i, at in enumerate(times):
        entry_id = next_id + i
        refundable = [e for e in purchases if e.kind == "earn" and e.transaction_id not in
                      {r.transaction_id for r in purchases if r.kind == "reverse"}]
        holds = None
        if i % 7 == 6 and account.balance >= 25:
            stars = max(s for s in (25, 60, 100, 200) if s <= account.balance)
            entry = LedgerEntry(entry_id, user_id, "redeem", -stars, at, details={"value_cents": stars * 3})
        elif i > 4 and rng.random() < 0.03 and refundable:
            earned = rng.choice(refundable)
            taken = min(earned.stars, account.balance)
            entry = LedgerEntry(entry_id, user_id, "reverse", -earned.stars, at, earned.transaction_id,
                                details={"earn_entry": earned.id, "reversed": taken,
                                         "shortfall": earned.stars - taken,
                                         "debt_after": account.debt + earned.stars - taken})
            holds = rules.holds(standing(purchases, without=earned.transaction_id))
        else:
            amount = rng.randrange(3_000, 80_000)
            tier = rules.tier(account, at)
            digital = rng.random() < 0.7
            rate = MULTIPLIER[tier] * (Decimal("1.2") if digital else 1)
            stars = math.ceil(math.ceil(Decimal(amount) / 100) * rate)
            after = max(rules.rolling(rules.qualifying(account, at) + stars), tier, key=("Green", "Gold",
                                                                                     "Reserve").index)
            paid = min(stars, account.debt)
            details: dict[str, str | int | float | bool] = {
                "rate": str(rate), "channel": rng.choice(("web", "pos", "mobile_app")), "amount_cents": amount,
                "referral": False, "digital": digital, "balance_after": account.balance + stars - paid,
                "tier_after": after, "tier_changed": after != tier}
            entry = LedgerEntry(entry_id, user_id, "earn", stars, at, f"order:{n}:{i}", True,
                                green_expiry(at, 6) if tier == "Green" else None, details)
        if entry.kind in ("earn", "reverse"):
            purchases.append(entry)
        rules.apply(account, entry, holds)
        rows.append((entry.id, user_id, account.seq, entry.kind, entry.transaction_id,
                     msgspec.json.encode(entry).decode()))
    return rows, account


def write_rows(db_path: Path, members: int, entries: int, now: float) -> None:
    config = LoyaltyConfig()
    rules = TierRules(config.gold_stars, config.reserve_stars)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous=OFF")
    next_id = 1
    for start in range(0, members, BATCH // entries):
        ledger, states = [], []
        for n in range(start, min(members, start + BATCH // entries)):
            rows, account = member_history(n, entries, now, rules, next_id)
            next_id += entries
            ledger += rows
            expiry = min((lot.expires_at for lot in account.lots if lot.expires_at is not None), default=None)
            states.append((account.user_id, account.seq, expiry, msgspec.json.encode(account).decode()))
        conn.executemany("INSERT INTO loyalty_ledger(id, user_id, seq, kind, transaction_id, body) "
                         "VALUES (?,?,?,?,?,?)", ledger)
        conn.executemany("INSERT INTO loyalty_accounts(user_id, seq, next_expiry, body) VALUES (?,?,?,?)", states)
        conn.commit()
    conn.close()


def without_states(source: Path, target: Path) -> None:
    """A copy of the database as the version before kept it: no states, migration 27 not applied."""
    shutil.copyfile(source, target)
    conn = sqlite3.connect(target)
    conn.executescript("DROP TABLE loyalty_accounts; DROP INDEX loyalty_ledger_firsts; "
                       "DELETE FROM schema_migrations WHERE version = 27; VACUUM")
    conn.close()


def _child(code: Path, db: Path, *args: str) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONTRAIL")}, "PYTHONPATH": str(code)}
    result = subprocess.run([sys.executable, "-c", _LOAD, str(db), *args], cwd=code, env=env, capture_output=True,
                            text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(members: int, entries: int, before: Path | None, held: int) -> dict[str, Any]:
    kept = Path(tempfile.gettempdir()) / f"contrail-loyalty-scale-{members}-{entries}-m{RECORDS[-1].version}.db"
    started = time.monotonic()
    if not kept.exists():
        import asyncio
        writing = kept.with_suffix(".writing")
        writing.unlink(missing_ok=True)
        asyncio.run(_migrated(Database(writing, RECORDS)))
        write_rows(writing, members, entries, time.time())
        writing.rename(kept)
    written_s = time.monotonic() - started
    results: dict[str, Any] = {"members": members, "entries": entries, "written_s": written_s,
                               "db_mb": kept.stat().st_size / 2**20}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "contrail.db"
        if before is not None:
            without_states(kept, copy)
            results["before"] = _child(before, copy)
        shutil.copyfile(kept, copy)
        results["states"] = _child(ROOT, copy)
        results[f"holding {held:,}"] = _child(ROOT, copy, str(held))
        without_states(kept, copy)
        results["first start"] = _child(ROOT, copy)
        results["states again"] = _child(ROOT, copy)  # the states the first start stored
    return results


async def _migrated(db: Database) -> None:
    await db.open()
    await db.close()


def report(r: dict[str, Any]) -> None:
    print(f"\nLoyalty's start: {r['members']:,} members x {r['entries']} entries, written (or kept) in "
          f"{r['written_s']:.0f}s, contrail.db {r['db_mb']:,.0f} MB")
    print(f"{'case':<14}{'open s':>8}{'load s':>8}{'RSS MB':>9}{'peak MB':>9}  loaded")
    for case in r:
        if isinstance(r[case], dict):
            c = r[case]
            print(f"{case:<14}{c['open_s']:>8.2f}{c['load_s']:>8.2f}{c['rss_mb']:>9.0f}{c['peak_mb']:>9.0f}  "
                  f"{c['members']:,} members {c['loaded'] or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--before", type=Path, help="a checkout of the version before, to compare with")
    parser.add_argument("--hold", type=int, default=10_000, help="a case with loyalty.max_accounts_in_memory so")
    args = parser.parse_args()
    report(run(args.members, args.entries, args.before, args.hold))


if __name__ == "__main__":
    main()
