"""Orders at scale (issue 28): a fresh data directory whose SQLite holds `--orders` stored orders (1M by default;
most finished, a few percent live on flights still to fly) and as many bidding profiles (written within the
last half hour, so all are believed), written straight into the tables; then the server starts on it (pinned to
one core once ready) and we read the time to ready, how long a retail request sent then takes (it waits for the
live orders, loaded after readiness), the time until everything is loaded, the RSS then, and the latency of admin
`GET /v1/orders` pages: the first, a deep one (keyset cursor), one from a cursor of the old kind (an order id),
one owner's, one state's, and a finished order by id. `python -m bench --only orders-scale [--orders N]`."""

from __future__ import annotations

import gc
import json
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from adapters.sqlite.migrations import RECORDS
from bench.server import ServerProcess
from bench.soak import pin, rss_mb
from handlers.rest.common import encode_cursor
from state.catalog import Cabin, Flight
from state.offers import Conditions, Item
from state.orders import Barcode, Order, OrderState, Payment
from state.profiles import Profile

DAY = 86_400
LIVE_SHARE = 0.05      # orders still live: held or fulfilled on flights to come
OWNERS = 100_000       # customers the orders belong to
FLIGHTS_AHEAD = 200    # flights to come, which the live orders are on
BATCH = 10_000
REPEATS = 50           # requests per page measured
SERVER_CORE = "0"

_encode = msgspec.json.Encoder().encode


def _items(flight_id: str, passengers: int) -> tuple[Item, ...]:
    """What a comfort bundle holds: the flight, a seat, a bag and a meal for each passenger."""
    return (Item("Flight", flight_id, "LIS-BCN economy", passengers, 9_000, 0, 9_000 * passengers,
                 f"{flight_id}/economy"),
            Item("Seat", "seat-std", "Standard seat", passengers, 1_500, 10, 1_350 * passengers),
            Item("Bag", "bag-23", "Checked bag 23 kg", passengers, 3_500, 10, 3_150 * passengers),
            Item("Meal", "meal-hot", "Hot meal", passengers, 1_200, 10, 1_080 * passengers,
                 f"{flight_id}/meal-hot"))


def _order(n: int, count: int, now: float, rng: random.Random) -> Order:
    """The n-th of `count` orders, created oldest first over the last year; live ones on flights to come."""
    live = rng.random() < LIVE_SHARE
    created = now - 365 * DAY + n * (365 * DAY - 3_600) / count if not live else now - rng.uniform(0, 3_000)
    passengers = 1 + n % 3
    if live:
        flight_id = f"CT{n % FLIGHTS_AHEAD:04d}-ahead"
        departure = now + (1 + n % FLIGHTS_AHEAD) * 3_600 * 6
        state: OrderState = "FULFILLED" if rng.random() < 0.8 else "PROPOSED"
    else:
        flight_id = f"CT{n % 5_000:04d}-flown"
        departure = created + rng.uniform(2, 30) * DAY
        state = rng.choice(("ARCHIVED", "ARCHIVED", "ARCHIVED", "EXPIRED", "CANCELLED"))
    items = _items(flight_id, passengers)
    total = sum(i.total_cents for i in items)
    paid = state in ("FULFILLED", "ARCHIVED")
    payment = Payment(f"pay_{n:020x}", "approved", total, "USD", "4242", created + 60, created + 61) if paid else None
    barcodes = tuple(Barcode(f"bc{n:012x}{i:02x}{rng.getrandbits(64):016x}", p, item.kind, item.product_id)
                     for i, (item, p) in enumerate((item, p) for item in items for p in range(1, passengers + 1))
                     ) if paid else ()
    return Order(id=f"ord_{int(created * 1e6):013x}{n:020x}", owner=f"user:c{n % OWNERS}", offer_id=f"off_{n:020x}",
                 flight_id=flight_id, cabin="economy", passengers=passengers, items=items, total_cents=total,
                 currency="USD", conditions=Conditions(False, 0, True, 5_000), departure_at=departure,
                 created_at=created, updated_at=created + 61, hold_expires_at=created + 1_800, state=state,
                 payment=payment, barcodes=barcodes,
                 refund_cents=0 if state == "CANCELLED" else None)


def write_orders(db_path: Path, count: int, now: float) -> dict[str, Any]:
    """`count` orders (and their barcodes, and the flights to come) straight into a migrated database."""
    rng = random.Random(28)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous=OFF")
    flights = [Flight(id=f"CT{i:04d}-ahead", airline="CT", number=f"CT{i:04d}", origin="LIS", destination="BCN",
                      departure_at=now + (1 + i) * 3_600 * 6, arrival_at=now + (1 + i) * 3_600 * 6 + 7_500,
                      cabins={"economy": Cabin(1_000, 9_000)}) for i in range(FLIGHTS_AHEAD)]
    conn.executemany("INSERT INTO flights(id, departure_at, body) VALUES (?,?,?)",
                     [(f.id, f.departure_at, _encode(f).decode()) for f in flights])
    marks: dict[str, Any] = {"live": 0}
    deep_at = int(count * 0.9)
    for start in range(0, count, BATCH):
        orders = [_order(n, count, now, rng) for n in range(start, min(count, start + BATCH))]
        conn.executemany("INSERT INTO orders(id, owner, state, created_at, body) VALUES (?,?,?,?,?)",
                         [(o.id, o.owner, o.state, o.created_at, _encode(o).decode()) for o in orders])
        conn.executemany("INSERT INTO order_barcodes(code, order_id) VALUES (?,?)",
                         [(b.code, o.id) for o in orders for b in o.barcodes])
        for n, o in enumerate(orders, start):
            marks["live"] += o.state in ("PROPOSED", "FULFILLED")
            if n == deep_at:
                marks["deep"] = (o.created_at, o.id)
            if n == 1_000:
                marks["finished"] = o.id if o.state != "FULFILLED" else None
                marks["owner"] = o.owner
        profiles = [Profile(f"traveller-{n:08d}", [round(rng.random(), 4) for _ in range(8)], [n % 64],
                            [], now - rng.uniform(0, 86_400), now - rng.uniform(0, 1_800))
                    for n in range(start, min(count, start + BATCH))]
        conn.executemany("INSERT INTO profiles(user_id, body, updated_at) VALUES (?,?,?)",
                         [(p.user_id, _encode(p).decode(), p.updated_at) for p in profiles])
        conn.commit()
    conn.close()
    marks["profiles"] = count
    return marks


def _timed_get(url: str, headers: dict[str, str]) -> tuple[float, dict]:
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = resp.read()
    return (time.perf_counter() - started) * 1000, json.loads(body)


def _latency(url: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """p50 and p95 ms over REPEATS requests, and the items of the page."""
    times, items = [], 0
    for _ in range(REPEATS):
        ms, body = _timed_get(url, headers)
        times.append(ms)
        items = len(body["items"]) if "next_cursor" in body else 1
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], items


def run(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING")
        result = server.cli("migrate")
        assert result.returncode == 0, result.stderr
        started = time.monotonic()  # the same server on no orders at all: what a start costs anyway
        server.start(timeout=120)
        empty_ready_s = time.monotonic() - started
        assert server.proc is not None
        server.wait_loaded()
        time.sleep(2)
        empty_rss = rss_mb(server.proc.pid)
        server.terminate()
        db = server.data_dir / "contrail.db"
        # The written database is kept for the next run (a million orders take minutes to write): keyed by the
        # count and the schema's version, its marks beside it.
        kept = Path(tempfile.gettempdir()) / f"contrail-orders-scale-{count}-m{RECORDS[-1].version}-p.db"
        started = time.monotonic()
        if kept.exists():
            shutil.copyfile(kept, db)
            marks = json.loads(kept.with_suffix(".json").read_text())
            with sqlite3.connect(db) as conn:  # the profiles young again: believed, and not due for pruning
                conn.execute("UPDATE profiles SET updated_at = ? - rowid % 1800", (time.time(),))
        else:
            marks = write_orders(db, count, time.time())
            shutil.copyfile(db, kept)
            kept.with_suffix(".json").write_text(json.dumps(marks))
        written_s = time.monotonic() - started
        key = server.cli("create-api-key", "--name", "ops", "--role", "admin").stdout.strip().splitlines()[-1]
        admin = {"X-Api-Key": key}
        db_mb = (server.data_dir / "contrail.db").stat().st_size / 2**20
        gc.collect()
        started = time.monotonic()
        server.start(timeout=120)
        ready_s = time.monotonic() - started
        assert server.proc is not None
        pin(server.proc.pid, SERVER_CORE)
        # Asked at once, a retail request waits for the live orders the server loads after it is ready.
        retail_s = _timed_get(f"{server.url}/v1/routes", {})[0] / 1000
        server.wait_loaded()
        loaded_s = time.monotonic() - started
        time.sleep(2)
        rss = rss_mb(server.proc.pid)
        base = f"{server.url}/v1/orders"
        deep = encode_cursor({"at": marks["deep"][0], "id": marks["deep"][1]})
        first_page = _timed_get(f"{base}?limit=100", admin)[1]
        old_kind = encode_cursor({"id": first_page["items"][-1]["id"]})
        pages = {
            "first page (100)": _latency(f"{base}?limit=100", admin),
            "deep page at 90% (100)": _latency(f"{base}?limit=100&after={deep}", admin),
            "old cursor, an order id (100)": _latency(f"{base}?limit=100&after={old_kind}", admin),
            "one state, FULFILLED (100)": _latency(f"{base}?limit=100&state=FULFILLED", admin),
            "one state, deep (100)": _latency(f"{base}?limit=100&state=ARCHIVED&after={deep}", admin),
        }
        finished = marks.get("finished")
        if finished:
            pages["a finished order by id"] = _latency(f"{base}/{finished}", admin)
        rss_after = rss_mb(server.proc.pid)
        server.terminate()
        return {"orders": count, "live": marks["live"], "written_s": written_s, "db_mb": db_mb, "ready_s": ready_s,
                "first_retail_s": retail_s, "loaded_s": loaded_s,
                "rss_mb": rss, "rss_after_pages_mb": rss_after, "empty_ready_s": empty_ready_s,
                "empty_rss_mb": empty_rss, "pages": pages}


def report(r: dict[str, Any]) -> None:
    print(f"\nOrders at scale: {r['orders']:,} stored orders ({r['live']:,} live) and as many profiles, written "
          f"(or copied) in "
          f"{r['written_s']:.0f}s, "
          f"contrail.db {r['db_mb']:,.0f} MB")
    print(f"start to ready {r['ready_s']:.2f}s (issue's before: 10.9 s); a retail request sent then answered in "
          f"{r['first_retail_s']:.2f}s; all loaded {r['loaded_s']:.2f}s after the start")
    print(f"RSS once loaded {r['rss_mb']:,.0f} MB "
          f"(before: 3,697 MB), {r['rss_after_pages_mb']:,.0f} MB after the page requests; with no orders stored: "
          f"ready {r['empty_ready_s']:.2f}s, {r['empty_rss_mb']:,.0f} MB")
    print(f"{'admin GET /v1/orders':<36}{'p50 ms':>9}{'p95 ms':>9}{'items':>7}")
    for name, (p50, p95, items) in r["pages"].items():
        print(f"{name:<36}{p50:>9.2f}{p95:>9.2f}{items:>7}")


def main(count: int) -> int:
    result = run(count)
    report(result)
    print(json.dumps({k: v for k, v in result.items() if k != "pages"}))
    return 0
