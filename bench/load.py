"""Load generators: wrk when installed, else a built-in asyncio generator in its own process."""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Scenario:
    name: str
    path: str
    method: str = "GET"
    bodies: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 64
    # Requests per second to hold (None = as fast as possible). Used for "p99 at half rate".
    rate: float | None = None
    # One path per request, each used once (accepting an offer twice is not the same request); empty = `path`.
    paths: list[str] = field(default_factory=list)
    # A body whose {n} marks are replaced by a number unique to each request (a transaction id); overrides bodies.
    body_format: str | None = None


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    generator: str
    # Full (generation 2) garbage collections in the server during the scenario: how many, and seconds paused.
    full_gcs: tuple[int, float] = (0, 0.0)
    # The trivial endpoint's rate measured just before and after this scenario (their mean), when it was.
    baseline_rps: float | None = None
    # Every round's ratio to its baseline, when the scenario ran in rounds (run_with_baseline).
    ratios: tuple[float, ...] = ()


def _lua(scenario: Scenario) -> str:
    headers = "".join(f'wrk.headers["{k}"] = {json.dumps(v)}\n' for k, v in scenario.headers.items())
    if scenario.rate:
        # Poisson arrivals at `rate`: each thread draws exponential gaps averaging `threads / rate` on the
        # wall clock (LuaJIT's FFI), and a connection done with its request waits for the next arrival. A
        # late schedule is caught up rather than dropped, so the offered rate holds whatever the latency.
        headers += f"""local ffi = require("ffi")
ffi.cdef[[ typedef struct {{ long tv_sec; long tv_nsec; }} contrail_ts; int clock_gettime(int, contrail_ts *); ]]
local ts = ffi.new("contrail_ts")
local mean_gap = {THREADS * 1000 / scenario.rate}
local next_at = nil
delay = function()
  ffi.C.clock_gettime(1, ts)
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  if next_at == nil then
    math.randomseed(1000 + (tid or 0))  -- each thread its own arrivals
    next_at = now
  end
  next_at = next_at - mean_gap * math.log(1 - math.random())
  return math.max(0, next_at - now)
end
"""
    # wrk prints p50/75/90/99 only; the exact p95 comes from done().
    report = 'done = function(summary, latency, requests) io.write(string.format("P95_US %d\\n", ' \
             'latency:percentile(95))) end\n'
    bodies = ",\n".join(json.dumps(b.decode()) for b in scenario.bodies) or '""'
    paths = ",\n".join(json.dumps(p) for p in scenario.paths) or json.dumps(scenario.path)
    body = "bodies[i % #bodies + 1]" if scenario.bodies else "nil"
    if scenario.body_format is not None:
        body = f"(string.gsub({json.dumps(scenario.body_format)}, \"{{n}}\", tostring(k)))"
    # Threads take interleaved paths (thread t uses t, t+T, t+2T, ...), so no path is sent twice.
    return f"""wrk.method = "{scenario.method}"
{headers}{report}
local bodies = {{ {bodies} }}
local paths = {{ {paths} }}
local threads = {THREADS}
local counter = 0
setup = function(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local i = 0
request = function()
  local k = i * threads + (tid or 0)
  i = i + 1
  return wrk.format(nil, paths[k % #paths + 1], nil, {body})
end
"""


THREADS = 2


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    number, unit = float(m.group(1)), m.group(2)
    return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number


def _wrk_field(pattern: str, out: str) -> str:
    """The first group of `pattern` in wrk's report; a report without it means wrk did not run."""
    m = re.search(pattern, out)
    if m is None:
        raise RuntimeError(f"wrk's report has no match for {pattern!r}:\n{out}")
    return m.group(1)


def run_wrk(base_url: str, scenario: Scenario, seconds: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(scenario))
    threads = THREADS
    cmd = ["wrk", f"-t{threads}", f"-c{scenario.connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "-s", script.name, base_url + scenario.path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(_wrk_field(r"Requests/sec:\s+([\d.]+)", out))
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    p95 = int(_wrk_field(r"P95_US (\d+)", out)) / 1000
    return Result(scenario.name, rps, _ms(pct["50"]), p95, _ms(pct["99"]), errors, "wrk")


async def _drive(base_url: str, scenario: Scenario, seconds: float) -> tuple[list[float], int, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    done = 0
    sent = 0
    stop = time.perf_counter() + seconds
    interval = scenario.connections / scenario.rate if scenario.rate else 0.0

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal errors, done
        nonlocal sent
        i = offset
        rng = random.Random(offset)
        next_at = time.perf_counter()
        while time.perf_counter() < stop:
            body = scenario.bodies[i % len(scenario.bodies)] if scenario.bodies else None
            if scenario.body_format is not None:
                body = scenario.body_format.replace("{n}", str(sent)).encode()
            i += 1
            path = scenario.paths[sent % len(scenario.paths)] if scenario.paths else scenario.path
            sent += 1
            started = time.perf_counter()
            try:
                async with session.request(scenario.method, base_url + path, data=body,
                                           headers=scenario.headers) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)
            done += 1
            if interval:  # Poisson arrivals, as with wrk
                next_at += rng.expovariate(1 / interval)
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    connector = aiohttp.TCPConnector(limit=scenario.connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, n) for n in range(scenario.connections)))
    return latencies, errors, done


def _builtin_child(base_url: str, scenario: Scenario, seconds: float, queue) -> None:
    started = time.perf_counter()
    latencies, errors, done = asyncio.run(_drive(base_url, scenario, seconds))
    queue.put((latencies, errors, done, time.perf_counter() - started))


def run_builtin(base_url: str, scenario: Scenario, seconds: float) -> Result:
    """The fallback generator, in a child process so it does not share the caller's loop."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_builtin_child, args=(base_url, scenario, seconds, queue))
    child.start()
    latencies, errors, done, elapsed = queue.get(timeout=seconds + 60)
    child.join()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    return Result(scenario.name, done / elapsed, pct(0.50), pct(0.95), pct(0.99), errors, "builtin")


def full_gcs(base_url: str) -> tuple[int, float]:
    """The server's full collections so far (count, seconds), from its /metrics."""
    import urllib.request
    text = urllib.request.urlopen(base_url + "/metrics", timeout=10).read().decode()
    found = dict(re.findall(r'^contrail_gc_pause_seconds_(count|sum)\{generation="2"\} (\S+)$', text, re.M))
    return int(float(found.get("count", 0))), float(found.get("sum", 0))


def run(base_url: str, scenario: Scenario, seconds: float) -> Result:
    """wrk where installed (its Lua delay() holds a rate), else the built-in generator."""
    before = full_gcs(base_url)
    result = (run_wrk if shutil.which("wrk") else run_builtin)(base_url, scenario, seconds)
    after = full_gcs(base_url)
    result.full_gcs = (after[0] - before[0], after[1] - before[1])
    return result


def baseline() -> Scenario:
    return Scenario("baseline /v1/ping", "/v1/ping")


def run_with_baseline(base_url: str, scenario: Scenario | Callable[[], Scenario], seconds: float, rounds: int = 3
                      ) -> Result:
    """run() `rounds` times, the trivial endpoint before, between and after: each round's ratio is to the
    mean of the baselines either side of it, and the round with the median ratio is the result (its
    `ratios` hold every round's). The machine's speed drifts by a fifth within a minute and dips for
    seconds at a time; one round against one baseline pair moved by a quarter from run to run. `scenario` may be
    a function making each round's (a scenario whose requests must not repeat across rounds)."""
    make = scenario if callable(scenario) else lambda: scenario
    pings = [run(base_url, baseline(), seconds)]
    results = []
    for _ in range(rounds):
        results.append(run(base_url, make(), seconds))
        pings.append(run(base_url, baseline(), seconds))
    ratios = []
    for result, (before, after) in zip(results, itertools.pairwise(pings), strict=True):
        baseline_rps = (before.rps + after.rps) / 2
        result.baseline_rps = baseline_rps
        ratios.append(result.rps / baseline_rps)
    median = sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]
    result = results[median]
    result.ratios = tuple(ratios)
    return result
