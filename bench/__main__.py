"""`make bench`: start the server as a separate process, drive it, print one table of ratios."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import bidding, channels, dsp, group_commit, learning, load, loyalty, ltv, reco, retail, scaleout, soak
from bench import nats as nats_bench
from bench import orders_scale as orders_scale_bench
from bench import telemetry as telemetry_bench
from bench import tracing as tracing_bench
from bench.server import ServerProcess


def platform_scenarios(server: ServerProcess) -> list[load.Scenario]:
    return [load.Scenario("/health/ready", "/health/ready")]


SCENARIO_SETS = [platform_scenarios]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each HTTP scenario")
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    parser.add_argument("--scale", type=float, default=1.0, help="soak: the mix's rates times this")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders-scale: stored orders")
    args = parser.parse_args()
    if args.only == "bid-scale":  # its own servers (5,000 campaigns), none of the shared one's scenarios
        from bench import bidding_scale
        bidding_scale.main()
        return 0
    if args.only == "soak":  # its own server and data: --seconds is the whole soak's length
        return soak.main(args.seconds, args.scale)
    if args.only == "offers-restart":  # --seconds: thousands of active offers
        return soak.offers_main(int(args.seconds))
    if args.only == "telemetry":  # its own servers, one per mode: --seconds is each mode's load
        return telemetry_bench.main(args.seconds)
    if args.only == "orders-scale":  # its own server and data directory of stored orders
        return orders_scale_bench.main(args.orders)

    learns = not args.only or "learning" in args.only
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "var", CONTRAIL__SERVER__LOG_LEVEL="WARNING",
                               CONTRAIL__SMTP__PORT="0", **channels.SINK_ENV,
                               **(learning.ENV if learns else {}))
        admin_key, exchange_key = bidding.setup_server(server)
        if not args.only or "retail" in args.only:
            retail.prepare(server)
        if learns:  # 150,000 logged shown ads and their clicks, for the retrain
            learning.prepare(server)
        pos_key = loyalty.partner_key(server)
        server.start()
        protocol_rows: list[tuple[str, float]] = []
        email_rates: tuple[float, float] | None = None
        reco_info: dict | None = None
        learning_info: dict | None = None
        try:
            bidding.seed_campaigns(server, admin_key)
            baseline = load.run(server.url, load.baseline(), args.seconds)
            results = [baseline]
            scenarios = [s for scenario_set in SCENARIO_SETS for s in scenario_set(server)]
            for scenario in scenarios:
                if args.only in scenario.name:
                    results.append(load.run(server.url, scenario, args.seconds))
            for scenario in bidding.rest_scenarios(exchange_key):  # a ratio target: its own baseline around it
                if args.only in scenario.name:
                    results.append(load.run_with_baseline(server.url, scenario, args.seconds))
            bid = next((r for r in results if r.name.startswith("REST /v1/bid")), None)
            if bid is not None:
                held = bidding.rest_scenarios(exchange_key)[0]
                held.name, held.rate, held.connections = "REST /v1/bid at half that rate", bid.rps / 2, 16
                results.append(load.run(server.url, held, args.seconds))
            if learns:  # after the REST bid rows: they score with the shipped model, not the retrained one
                learning_results, learning_info = learning.run_all(server, admin_key, exchange_key, args.seconds)
                results += learning_results
            if not args.only or "retail" in args.only:
                results += retail.run_all(server, args.seconds)
            if not args.only or "loyalty" in args.only:
                results += loyalty.run_all(server, pos_key, args.seconds)
            if not args.only or "reco" in args.only:  # before ingest: its own catalogue and users, then lists
                reco_results, reco_info = reco.run_all(server, admin_key, args.seconds)
                results += reco_results
            if not args.only or "ingest" in args.only:
                results.append(load.run(server.url, channels.ingest_scenario(admin_key), args.seconds))
                held = channels.ingest_scenario(admin_key)  # the target: 20,000 events/s, 200 batches of 100
                held.name, held.rate = f"{held.name} held at 20,000 events/s", 200
                results.append(load.run(server.url, held, args.seconds))
            if not args.only or "email" in args.only:
                email_rates = channels.email_rate(server, admin_key)
            if not args.only or "bid" in args.only:
                protocol_rows = bidding.protocol_rates(server, exchange_key, args.seconds)
        finally:
            server.stop()
    ltv_info = ltv.run_all(args.seconds) if not args.only or "ltv" in args.only else None
    dsp_info = dsp.run_all(args.seconds) if not args.only or "dsp" in args.only else None
    nats_rows = nats_bench.run_all(args.seconds) if not args.only or "nats" in args.only else []
    scaleout_rows = scaleout.run_all(args.seconds) if not args.only or "scaleout" in args.only else None
    tracing_rows = tracing_bench.run_all(args.seconds) if not args.only or "tracing" in args.only else []

    print(f"\nHTTP scenarios ({results[0].generator}, {args.seconds:.0f}s each; ratio = rps / baseline rps)")
    print("(ratio*: the median of three rounds, each to the mean of the baselines measured just before and after"
          " it; that mean in brackets, then every round's ratio)")
    print("(full GCs: the server's generation-2 collections during the scenario, and their mean pause)")
    print(f"{'scenario':<44}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'ratio':>8}{'errors':>8}"
          f"{'full GCs':>10}")
    for r in results:
        count, paused = r.full_gcs
        gcs = f"{count} x {paused / count * 1000:.0f}ms" if count else "0"
        ratio = f"{r.rps / (r.baseline_rps or baseline.rps):.2f}" + ("*" if r.baseline_rps else "")
        print(f"{r.name:<44}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}{r.p99_ms:>9.2f}"
              f"{ratio:>8}{r.errors:>8}{gcs:>10}" + (f"  [{r.baseline_rps:,.0f}]" if r.baseline_rps else "")
              + (f"  rounds {' '.join(f'{x:.2f}' for x in r.ratios)}" if r.ratios else ""))

    if reco_info is not None:
        i = reco_info
        print(f"\nReco lists: {i['items']} items, {i['events']:,} events of {i['users']:,} users loaded through ingest"
              f" in {i['load_s']:.1f}s ({i['dropped']:.0f} dropped); training {i['train_s']:.1f}s, live={i['live']}"
              f" ({i['model']}); list cache during the scenarios: {i['cache_hits']:.0f} hits,"
              f" {i['cache_misses']:.0f} misses")
        cpu = i["cpu_us"]
        print("Server main-thread CPU per request, alternating runs (us): ping "
              + " ".join(f"{x:.0f}" for x in cpu["ping"]) + "; uncached list "
              + " ".join(f"{x:.0f}" for x in cpu["list"])
              + f"; inside RecoService.recommend_json {i['service_us']:.0f} us a list (its latency histogram)")

    nats_bench.report(nats_rows)
    scaleout.report(scaleout_rows)
    tracing_bench.report(tracing_rows)

    if ltv_info is not None:
        ltv.report(ltv_info)

    if dsp_info is not None:
        dsp.report(dsp_info)

    if learning_info is not None:
        learning.report(learning_info)

    if email_rates is not None:
        print(f"\nEmail to the embedded SMTP sink: {email_rates[0]:,.0f} activations queued/s (durable outbox), "
              f"{email_rates[1]:,.0f} messages received by the sink/s")

    if protocol_rows:
        echo = protocol_rows[0][1]
        print("\ngRPC and streams (ratio = rate / gRPC Echo rate)")
        print(f"{'path':<44}{'per s':>10}{'ratio':>8}")
        for name, rate in protocol_rows:
            print(f"{name:<44}{rate:>10.0f}{rate / echo:>8.2f}")

    if not args.only or "scor" in args.only:
        print("\nScoring alone, one core, 1,024-row batches (16 calls x 64 candidates)")
        print("(full rows: run() on 1,024 whole 256-feature rows; batch: score() as the batcher calls it, each"
              " request with its own candidate columns; shared: every request with the same columns, as when no"
              " frequency cap is in use. The cpu provider's score() is the compiled kernel.)")
        print(f"{'provider':<14}{'format':>8}{'max batch':>11}{'full rows/s':>14}{'batch/s':>14}{'shared/s':>14}"
              f"{'modeled us/batch':>18}")
        for name, fmt, max_batch, full, own, shared, modeled in bidding.scoring_rates():
            print(f"{name:<14}{fmt:>8}{max_batch:>11}{full:>14,.0f}{own:>14,.0f}{shared:>14,.0f}{modeled:>18.1f}")
        w = bidding.batcher_window()
        print(f"\nBatcher window (max_wait_us=500): lone calls wait p50 {w['p50_us']:.0f} us, "
              f"p99 {w['p99_us']:.0f} us, max {w['max_us']:.0f} us; bursts of 40 calls: "
              f"{w['burst_mean_calls']:.1f} calls per batch, {w['burst_full_share']:.0%} full batches of 16")
        print(f"Memory: {bidding.profile_memory():.1f} MiB RSS per 100,000 cached profiles")

    if "group" in args.only or not args.only:
        rows = group_commit.run()
        print("\nDurable writes, 64 concurrent writers, synchronous=FULL (ratio = writes/s / one-commit-per-write)")
        print(f"{'mode':<28}{'writes/s':>10}{'writes/commit':>15}{'ratio':>8}")
        for name, rate, per_commit in rows:
            print(f"{name:<28}{rate:>10.0f}{per_commit:>15.1f}{rate / rows[0][1]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
