"""Recommendation benchmark: uncached `GET /v1/recommendations/{user_id}` against realistic features.

Before the scenario the server learns a catalogue and a day of history through the real edges: 300 items
(`POST /v1/reco/items`), then 8 feedback events for each of 40,000 users through ingest with their `at`
(spread over the last day, older than any session, so they teach reco and trigger nothing), then one
training (`POST /v1/admin/reco/train`) so the blend scores with embeddings as it would in production.

Every request misses the list cache: within a round each path names a different user, and each round (and the
half-rate run) asks for a different `n`, so no (user, strategy, n) key repeats. The cache's own hit and miss
counters are read around each run to show it.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request

from bench.load import Result, Scenario, run, run_with_baseline
from bench.server import ServerProcess

ITEMS = 300
USERS = 40_000
EVENTS_PER_USER = 8
CATEGORIES = ("beach", "city", "ski", "family", "culture", "ancillary")
KINDS = (("product_view", 0.70), ("click", 0.15), ("cart_add", 0.08), ("wishlist_add", 0.04), ("purchase", 0.03))


def _post(url: str, key: str, body: object) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"X-Api-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read() or b"{}")


def _metric(base_url: str, pattern: str) -> float:
    text = urllib.request.urlopen(base_url + "/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def _queue_depth(base_url: str) -> float:
    return _metric(base_url, r'^contrail_queue_depth\{queue="bus_reco_learning"\} (\S+)$')


def _service_seconds(base_url: str) -> tuple[float, float]:
    """(seconds, lists) spent in RecoService.recommend_json for personalized lists so far (its latency histogram)."""
    return (_metric(base_url, r'^contrail_reco_seconds_sum\{strategy="personalized"\} (\S+)$'),
            _metric(base_url, r'^contrail_reco_seconds_count\{strategy="personalized"\} (\S+)$'))


def cache_counts(base_url: str) -> tuple[float, float]:
    """(hits, misses) of the recommendation list cache so far."""
    return (_metric(base_url, r'^contrail_reco_cache_total\{result="hit"\} (\S+)$'),
            _metric(base_url, r'^contrail_reco_cache_total\{result="miss"\} (\S+)$'))


def load_history(server: ServerProcess, admin_key: str) -> dict:
    """The catalogue and the users' history, through the API; returns what was loaded."""
    url = server.url
    rng = random.Random(19)
    items = [{"item_id": f"reco-item-{i}", "category": CATEGORIES[i % len(CATEGORIES)],
              "tags": [f"t{i % 17}", f"t{i % 29}"], "created_at": time.time() - 86_400 * (1 + i % 90)}
             for i in range(ITEMS)]
    _post(f"{url}/v1/reco/items", admin_key, items)
    # Popularity skewed as in a real catalogue (Zipf-like), and each user leaning to two categories.
    weights = [1 / (1 + r) ** 0.8 for r in range(ITEMS)]
    by_category = {c: [i for i in range(ITEMS) if i % len(CATEGORIES) == k] for k, c in enumerate(CATEGORIES)}
    kinds = [k for k, _ in KINDS]
    kind_p = [p for _, p in KINDS]
    start = time.time() - 23 * 3600  # a day of history, ending an hour ago (older than any session)
    step = 22 * 3600 / (USERS * EVENTS_PER_USER)
    events, sent, started = [], 0, time.perf_counter()
    dropped_before = _metric(url, r'^contrail_bus_dropped_total\{[^}]*reco[^}]*\} (\S+)$')
    for seq in range(USERS * EVENTS_PER_USER):
        u = rng.randrange(USERS)  # interleaved users, in time order, as live traffic arrives
        liked = (CATEGORIES[u % len(CATEGORIES)], CATEGORIES[(u * 7 + 1) % len(CATEGORIES)])
        if rng.random() < 0.7:
            pool = by_category[liked[rng.random() < 0.5]]
            item = pool[min(int(rng.expovariate(1 / 8)), len(pool) - 1)]
        else:
            item = rng.choices(range(ITEMS), weights)[0]
        events.append({"source": "web", "type": rng.choices(kinds, kind_p)[0], "user_id": f"reco-u{u}",
                       "session_id": f"r{u}", "product_id": f"reco-item-{item}", "at": start + seq * step})
        if len(events) == 2000:
            _post(f"{url}/v1/channels/ingest", admin_key, events)
            sent += len(events)
            events = []
            while _queue_depth(url) > 4:  # keep the learning queue short: a full queue would drop batches
                time.sleep(0.02)
    if events:
        _post(f"{url}/v1/channels/ingest", admin_key, events)
        sent += len(events)
    while _queue_depth(url) > 0:
        time.sleep(0.05)
    loaded_s = time.perf_counter() - started
    dropped = _metric(url, r'^contrail_bus_dropped_total\{[^}]*reco[^}]*\} (\S+)$') - dropped_before
    train_started = time.perf_counter()
    trained = _post(f"{url}/v1/admin/reco/train", admin_key, {})
    return {"events": sent, "users": USERS, "items": ITEMS, "load_s": loaded_s, "dropped": dropped,
            "train_s": time.perf_counter() - train_started, "live": trained.get("live"),
            "model": trained.get("model"), "reason": trained.get("reason")}


def scenario(admin_key: str, n: int, seed: int) -> Scenario:
    """Uncached personalized lists: every user once, in a shuffled order, asking for `n` items."""
    users = list(range(USERS))
    random.Random(seed).shuffle(users)
    return Scenario("reco: GET /v1/recommendations uncached", "", headers={"X-Api-Key": admin_key},
                    paths=[f"/v1/recommendations/reco-u{u}?n={n}" for u in users])


def _main_thread_cpu(server: ServerProcess) -> float:
    """Seconds of CPU the server's main thread (the event loop) has used, from /proc."""
    assert server.proc is not None
    pid = server.proc.pid
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    import os
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(server: ServerProcess, make: object, seconds: float, rounds: int = 3) -> dict:
    """Main-thread CPU per request (us) of the ping and of uncached lists, in alternating runs: the measure that the
    machine's other load moves least. Returns each run's figure, in order."""
    from bench.load import baseline
    out: dict[str, list[float]] = {"ping": [], "list": []}
    for _ in range(rounds):
        for name, scenario in (("ping", baseline()), ("list", make())):  # type: ignore[operator]
            before = _main_thread_cpu(server)
            result = run(server.url, scenario, seconds)
            out[name].append((_main_thread_cpu(server) - before) / max(1.0, result.rps * round(seconds)) * 1e6)
    return out


def run_all(server: ServerProcess, admin_key: str, seconds: float) -> tuple[list[Result], dict]:
    info = load_history(server, admin_key)
    rounds = iter(range(10, 30))
    before = cache_counts(server.url)
    served = _service_seconds(server.url)

    def fresh() -> Scenario:
        n = next(rounds)
        return scenario(admin_key, n, n)
    full = run_with_baseline(server.url, fresh, seconds)
    held = fresh()
    held.name, held.rate, held.connections = "reco: uncached list at half that rate", full.rps / 2, 16
    results = [full, run(server.url, held, seconds)]
    hits, misses = (a - b for a, b in zip(cache_counts(server.url), before, strict=True))
    info["cache_hits"], info["cache_misses"] = hits, misses
    spent, count = (a - b for a, b in zip(_service_seconds(server.url), served, strict=True))
    info["service_us"] = spent / max(count, 1) * 1e6
    info["cpu_us"] = cpu_per_request(server, fresh, min(seconds, 3.0))
    return results, info
