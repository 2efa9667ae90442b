"""Telemetry volume (issue 28): bids as fast as they go, searches and ingested events held at the mixed load's rates
for `--seconds`, the server pinned to one core, three times: every bid, no-bid and offer written whole
(analytics.sample_bids = 1, as before the totals), with the defaults (bids and no-bids as per-second totals plus a
sample), and with offers shown sampled as well. Reports how fast events.db and contrail.db grow, which tables of
contrail.db grow (dbstat), and the bid path's rate in each.
`python -m bench --only telemetry --seconds 60`."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import bidding, channels, load, retail
from bench.server import ServerProcess

SEARCHES_PER_S = 574  # the mix
EVENTS_PER_S = 7_200  # ingested channel events, in batches of 100
SERVER_CORE = "0"
MODES = [("whole (sample 1, as before)", {"CONTRAIL__ANALYTICS__SAMPLE_BIDS": "1",
                                          "CONTRAIL__ANALYTICS__SAMPLE_OFFERS": "1",
                                          "CONTRAIL__ANALYTICS__SAMPLE_CHANNEL_EVENTS": "1"}),
         ("defaults (totals + sample)", {}),
         # Offers shown are most of the rows at this mix, and stay whole by default (offer acceptance trains on
         # them): what a carrier at this volume gets by sampling them too.
         ("defaults, sample_offers 0.1", {"CONTRAIL__ANALYTICS__SAMPLE_OFFERS": "0.1"})]


@dataclass
class Run:
    mode: str
    seconds: float
    bids: load.Result | None = None
    searches: load.Result | None = None
    ingest: load.Result | None = None
    mb_per_min: dict[str, float] = field(default_factory=dict)     # file -> MB/min (with -wal)
    tables_mb_per_min: dict[str, float] = field(default_factory=dict)  # contrail.db table or index -> MB/min
    events_bytes_per_min: float = 0.0  # contrail_events_bytes_written_total's rate
    events_rows_per_s: float = 0.0


def data_files(data_dir: Path) -> dict[str, float]:
    """MB per database, its -wal included."""
    sizes: dict[str, float] = {}
    for path in data_dir.glob("*.db*"):
        if path.name.endswith("-shm"):
            continue
        name = re.sub(r"-wal$", "", path.name)
        sizes[name] = sizes.get(name, 0.0) + path.stat().st_size / 1e6
    return sizes


def table_sizes(db: Path) -> dict[str, float]:
    """MB per table and index (pages in use), read beside the running server (WAL lets it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {name: size / 1e6 for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")}
    except sqlite3.OperationalError:  # a build without the dbstat table
        return {}
    finally:
        conn.close()


def scraped(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=60).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def pin(pid: int, cores: str) -> None:
    if shutil.which("taskset"):
        subprocess.run(["taskset", "-a", "-cp", cores, str(pid)], capture_output=True, check=False)


def run_mode(mode: str, env: dict[str, str], seconds: float) -> Run:
    result = Run(mode, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        server = ServerProcess(data_dir, CONTRAIL__SERVER__LOG_LEVEL="WARNING", **env)
        admin_key, exchange_key = bidding.setup_server(server)
        retail.prepare(server)
        server.start()
        try:
            assert server.proc is not None
            pin(server.proc.pid, SERVER_CORE)
            bidding.seed_campaigns(server, admin_key)
            bids = bidding.rest_scenarios(exchange_key)[0]
            bids.connections = 32
            searches = load.Scenario("searches", "/v1/offers/search", "POST", retail.search_bodies(),
                                     retail._guest(server), connections=16, rate=SEARCHES_PER_S)
            ingest = channels.ingest_scenario(admin_key)
            ingest.rate, ingest.connections = EVENTS_PER_S / 100, 8
            load.run_wrk(server.url, bids, 3)  # warm: first shapes, caches, the model
            time.sleep(2)
            files0, tables0 = data_files(data_dir), table_sizes(data_dir / "contrail.db")
            bytes0, rows0 = (scraped(server.url, "contrail_events_bytes_written_total"),
                             scraped(server.url, "contrail_events_written_total"))
            began = time.monotonic()
            out: dict[str, load.Result] = {}
            threads = [threading.Thread(target=lambda n=n, s=s: out.__setitem__(n, load.run_wrk(server.url, s,
                                                                                                 seconds)))
                       for n, s in (("bids", bids), ("searches", searches), ("ingest", ingest))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(2)  # the event log's last flush
            minutes = (time.monotonic() - began) / 60
            files1, tables1 = data_files(data_dir), table_sizes(data_dir / "contrail.db")
            result.bids, result.searches, result.ingest = out["bids"], out["searches"], out["ingest"]
            result.mb_per_min = {k: (v - files0.get(k, 0.0)) / minutes for k, v in files1.items()}
            result.tables_mb_per_min = {k: (v - tables0.get(k, 0.0)) / minutes for k, v in tables1.items()}
            result.events_bytes_per_min = (scraped(server.url, "contrail_events_bytes_written_total") - bytes0) \
                / minutes / 1e6
            result.events_rows_per_s = (scraped(server.url, "contrail_events_written_total") - rows0) / minutes / 60
        finally:
            server.terminate()
            server.stop()
    return result


def print_runs(runs: list[Run]) -> None:
    print(f"\nTelemetry volume: {runs[0].seconds:.0f} s of bids (as fast as they go, 32 connections), searches "
          f"held at {SEARCHES_PER_S}/s and ingested events at {EVENTS_PER_S:,}/s, the server on core {SERVER_CORE}")
    print(f"{'mode':<30}{'bids/s':>9}{'bid p99 ms':>11}{'searches/s':>11}{'events/s':>9}{'events.db MB/min':>18}"
          f"{'contrail.db MB/min':>20}{'event rows/s':>14}{'event MB/min written':>22}")
    for r in runs:
        assert r.bids is not None and r.searches is not None and r.ingest is not None
        print(f"{r.mode:<30}{r.bids.rps:>9,.0f}{r.bids.p99_ms:>11.2f}{r.searches.rps:>11,.0f}"
              f"{r.ingest.rps * 100:>9,.0f}"
              f"{r.mb_per_min.get('events.db', 0.0):>18,.1f}{r.mb_per_min.get('contrail.db', 0.0):>20,.1f}"
              f"{r.events_rows_per_s:>14,.0f}{r.events_bytes_per_min:>22,.1f}")
    for r in runs:
        grown = sorted(r.tables_mb_per_min.items(), key=lambda kv: -kv[1])[:8]
        print(f"contrail.db, {r.mode}: " + ", ".join(f"{name} +{mb:,.2f}" for name, mb in grown if mb > 0.005)
              + " MB/min")


def main(seconds: float) -> int:
    runs = [run_mode(mode, env, max(seconds, 20.0)) for mode, env in MODES]
    print_runs(runs)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
