"""`make bench`: start the server as a separate process, drive it, print one table of ratios."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import group_commit, load
from bench.server import ServerProcess


def platform_scenarios(server: ServerProcess) -> list[load.Scenario]:
    return [load.Scenario("/health/ready", "/health/ready")]


SCENARIO_SETS = [platform_scenarios]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each HTTP scenario")
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING")
        server.start()
        try:
            baseline = load.run(server.url, load.Scenario("baseline /v1/ping", "/v1/ping"), args.seconds)
            results = [baseline]
            for scenario_set in SCENARIO_SETS:
                for scenario in scenario_set(server):
                    if args.only in scenario.name:
                        results.append(load.run(server.url, scenario, args.seconds))
        finally:
            server.stop()

    print(f"\nHTTP scenarios ({results[0].generator}, {args.seconds:.0f}s each; ratio = rps / baseline rps)")
    print(f"{'scenario':<44}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'ratio':>8}{'errors':>8}")
    for r in results:
        print(f"{r.name:<44}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}{r.p99_ms:>9.2f}"
              f"{r.rps / baseline.rps:>8.2f}{r.errors:>8}")

    if "group" in args.only or not args.only:
        rows = group_commit.run()
        print("\nDurable writes, 64 concurrent writers, synchronous=FULL (ratio = writes/s / one-commit-per-write)")
        print(f"{'mode':<28}{'writes/s':>10}{'writes/commit':>15}{'ratio':>8}")
        for name, rate, per_commit in rows:
            print(f"{name:<28}{rate:>10.0f}{per_commit:>15.1f}{rate / rows[0][1]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
