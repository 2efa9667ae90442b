"""Bid-model retraining under load (issue 22): the event loop's lag and REST /v1/bid latency at a fixed rate,
without and then with a retrain running in the server's worker thread."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

from bench import bidding, load
from bench.server import ROOT, ServerProcess

ROWS = 150_000      # simulated shown ads logged before the server starts (max_rows is 200,000: all are read)
RATE = 1000.0       # REST /v1/bid requests a second, Poisson arrivals, in both phases
CONNECTIONS = 16
SEED = 5
# The server must train only when told: the periodic retrain would otherwise take the logged rows at startup.
ENV = {"CONTRAIL__LEARNING__RETRAIN_INTERVAL_S": "0"}


# ---- before the server starts: its event log filled offline, as the CLI opens the storage ----

def prepare(server: ServerProcess, rows: int = ROWS) -> None:
    """Log `rows` simulated shown ads and their clicks into the server's data dir (a child with its environment)."""
    code = f"import bench.learning as m; m._fill({rows}, {SEED})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=server.env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr


def _fill(rows: int, seed: int) -> None:
    import asyncio
    import os
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    from app.config import load_config
    from app.platform import Platform
    from eval.ctr import World
    from ml import features

    async def main() -> None:
        platform = Platform(load_config(ROOT / "config.toml"))
        await platform.open_storage()
        try:
            world = World(seed)
            rng = np.random.default_rng(seed)
            # Shown over the hour before the last ten minutes: every one older than learning.label_delay_s.
            imps = world.impressions(rng, np.sort(rng.uniform(0, 3000, rows)))
            start = time.time() - 3600
            log = platform.event_log
            chunk = 10_000  # the in-memory queue holds analytics.queue_capacity rows: flush between chunks
            for lo in range(0, rows, chunk):
                shown, clicks = [], []
                for n in range(lo, min(rows, lo + chunk)):
                    bid_id = f"{n:012x}bench{seed}"
                    columns, values = features.to_sparse(imps["x"][n])
                    shown.append({"bid_id": bid_id, "campaign_id": "c", "at": start + float(imps["at"][n]),
                                  "i": columns, "v": values})
                    if imps["clicked"][n]:
                        clicks.append({"bid_id": bid_id, "campaign_id": "c", "user_id": "u"})
                assert log.log_events("Shown", shown) == len(shown)
                assert log.log_events("Click", clicks) == len(clicks)
                await log.flush()
        finally:
            await platform.close_storage()
    asyncio.run(main())


# ---- the server's loop-lag histogram ----

def lag_buckets(base_url: str) -> tuple[list[tuple[float, float]], float]:
    """contrail_event_loop_lag_seconds's cumulative buckets so far, (upper bound, count), and its sum."""
    text = urllib.request.urlopen(base_url + "/metrics", timeout=10).read().decode()
    found = re.findall(r'^contrail_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    total = re.search(r"^contrail_event_loop_lag_seconds_sum (\S+)$", text, re.M)
    return [(float(le), float(count)) for le, count in found], float(total.group(1)) if total else float("nan")


def lag_p99(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float = 0.99
            ) -> tuple[float, float, int]:
    """The q-quantile of the lags observed between two readings, in seconds: linearly interpolated within its
    bucket (as Prometheus's histogram_quantile does), the bucket's upper bound, and the number of observations."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    if total <= 0:
        return float("nan"), float("nan"), 0
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):  # beyond the last bound: report that bound
                return lower, le, int(total)
            inside = cumulative - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0), le, int(total)
        lower, below = le, cumulative
    return lower, float("inf"), int(total)


# ---- load held until the retrain is done ----

def _wrk_until(base_url: str, scenario: load.Scenario, min_seconds: float, done: threading.Event,
               limit_s: float = 900.0) -> load.Result:
    """wrk for at least `min_seconds` and until `done` is set: stopped by SIGINT, on which wrk reports as usual."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(load._lua(scenario))
    cmd = ["wrk", f"-t{load.THREADS}", f"-c{scenario.connections}", f"-d{int(limit_s)}s", "--latency", "-s",
           script.name, base_url + scenario.path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.perf_counter()
    done.wait(limit_s)
    time.sleep(max(0.0, min_seconds - (time.perf_counter() - started)))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    rps = float(load._wrk_field(r"Requests/sec:\s+([\d.]+)", out))
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    p95 = int(load._wrk_field(r"P95_US (\d+)", out)) / 1000
    return load.Result(scenario.name, rps, load._ms(pct["50"]), p95, load._ms(pct["99"]), errors, "wrk")


@dataclass
class Phase:
    result: load.Result
    lag_p99_ms: float      # interpolated within its bucket
    lag_bound_ms: float    # that bucket's upper bound
    lag_samples: int       # probe wake-ups (one per 50 ms)
    lag_mean_ms: float
    seconds: float
    # Each second of the phase: probe wake-ups, how many were over 10 ms late, the highest bucket bound reached (ms).
    timeline: list[tuple[int, int, float]]


def _held(exchange_key: str, name: str) -> load.Scenario:
    scenario = bidding.rest_scenarios(exchange_key)[0]
    scenario.name, scenario.rate, scenario.connections = name, RATE, CONNECTIONS
    return scenario


def _window(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> tuple[int, int, float]:
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    within_10ms = next(c for le, c in counts if le >= 0.01)
    worst = next((le for le, c in counts if c >= total), float("inf")) if total else 0.0
    return int(total), int(total - within_10ms), worst * 1000


def _phase(server: ServerProcess, run) -> Phase:
    before, started = lag_buckets(server.url), time.perf_counter()
    gcs = load.full_gcs(server.url)
    readings = [before[0]]
    stop = threading.Event()

    def sample() -> None:  # the histogram once a second: when in the phase the loop was late
        while not stop.wait(1.0):
            readings.append(lag_buckets(server.url)[0])
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = run()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = lag_buckets(server.url)
    readings.append(after[0])
    gcs_after = load.full_gcs(server.url)
    result.full_gcs = (gcs_after[0] - gcs[0], gcs_after[1] - gcs[1])
    p99, bound, samples = lag_p99(before[0], after[0])
    mean = (after[1] - before[1]) / samples if samples else float("nan")
    timeline = [_window(a, b) for a, b in zip(readings, readings[1:], strict=False)]
    return Phase(result, p99 * 1000, bound * 1000, samples, mean * 1000, seconds, timeline)


def run_all(server: ServerProcess, admin_key: str, exchange_key: str, seconds: float
            ) -> tuple[list[load.Result], dict]:
    """The bid load alone, then the same load while a retrain of the 150,000 logged rows runs."""
    rate = f"{RATE:,.0f}/s"
    quiet = _phase(server, lambda: load.run(server.url, _held(exchange_key, f"learning: REST /v1/bid at {rate}"),
                                            seconds))
    trained: dict = {}
    finished = threading.Event()

    def retrain() -> None:
        time.sleep(0.5)  # the load is under way first
        trained["sent_at"] = time.perf_counter()
        req = urllib.request.Request(f"{server.url}/v1/admin/models/bidnet/train", data=b"", method="POST",
                                     headers={"X-Api-Key": admin_key})
        try:
            trained.update(json.loads(urllib.request.urlopen(req, timeout=900).read()))
        finally:
            trained["answered_at"] = time.perf_counter()
            finished.set()

    name = f"learning: REST /v1/bid at {rate}, retraining"
    scenario = _held(exchange_key, name)
    thread = threading.Thread(target=retrain, daemon=True)

    def loaded() -> load.Result:
        trained["load_at"] = time.perf_counter()
        thread.start()
        if shutil.which("wrk"):
            return _wrk_until(server.url, scenario, seconds, finished)
        return load.run(server.url, scenario, max(seconds, 120.0))  # the built-in generator: a fixed, long window
    busy = _phase(server, loaded)
    thread.join()
    info = {"rate": RATE, "quiet": quiet, "busy": busy, "train": trained}
    return [quiet.result, busy.result], info


def report(info: dict) -> None:
    quiet, busy, run = info["quiet"], info["busy"], info["train"]
    print(f"\nBid-model retraining under load (issue 22): REST /v1/bid held at {info['rate']:,.0f}/s "
          f"({CONNECTIONS} connections), alone and then while POST /v1/admin/models/bidnet/train runs")
    print("(loop lag: how late the server's 50 ms probe timer woke, p99 interpolated within its histogram bucket, "
          "the bucket's bound in brackets; the retrain's phase lasts as long as the training)")
    print(f"{'phase':<24}{'seconds':>8}{'lag samples':>13}{'lag mean ms':>13}{'loop lag p99 ms':>22}"
          f"{'bid p99 ms':>12}{'bid req/s':>11}{'errors':>8}")
    for label, p in (("without training", quiet), ("while training", busy)):
        print(f"{label:<24}{p.seconds:>8.1f}{p.lag_samples:>13}{p.lag_mean_ms:>13.2f}{p.lag_p99_ms:>11.2f} "
              f"(≤ {p.lag_bound_ms:>5.1f}){p.result.p99_ms:>12.2f}{p.result.rps:>11.0f}{p.result.errors:>8}")
    print(f"{'ratio (with / without)':<24}{'':>21}{busy.lag_mean_ms / quiet.lag_mean_ms:>13.2f}"
          f"{busy.lag_p99_ms / quiet.lag_p99_ms:>11.2f}{'':>11}{busy.result.p99_ms / quiet.result.p99_ms:>12.2f}")
    for label, p in (("without training", quiet), ("while training", busy)):
        print(f"{label}, each second: wake-ups over 10 ms late / wake-ups, worst bucket (ms): "
              + "  ".join(f"{late}/{n} ≤{worst:g}" for n, late, worst in p.timeline if n))
    sent, answered = run.get("sent_at", 0.0) - run.get("load_at", 0.0), run.get("answered_at", 0.0) - run.get(
        "load_at", 0.0)
    print(f"The retrain was posted {sent:.1f} s into the loaded phase and answered at {answered:.1f} s")
    print(f"Training: status {run.get('status')}, {run.get('rows', 0):,} rows with {run.get('clicks', 0):,} clicks, "
          f"{run.get('seconds', float('nan')):.1f} s ({run.get('reason', '')})")
