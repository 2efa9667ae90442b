"""`python -m app serve | migrate | create-api-key | create-user | seed-demo | eval | simulate`."""

from __future__ import annotations

import os

# Inference batches are small (about 1,000 x 256 x 64): BLAS worker threads cost more in
# hand-offs than they save, and they compete with the event loop for the machine's cores.
# Measured with `make bench`; set before numpy is imported anywhere.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import sys  # noqa: E402
from collections.abc import Awaitable, Callable

from app.config import Config, ConfigError, load_config
from app.errors import CannotStart, DomainError
from app.runtime.clock import Clock, ShiftedClock
from app.runtime.logs import setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Contrail server and operator commands")
    parser.add_argument("--config", default=os.environ.get("CONTRAIL_CONFIG"),
                        help="path to config.toml (default: $CONTRAIL_CONFIG, else ./config.toml if there is one, "
                             "else the built-in defaults and CONTRAIL__ environment overrides)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="start the HTTP, gRPC and websocket server")
    sub.add_parser("migrate", help="apply pending database migrations")
    key = sub.add_parser("create-api-key", help="create an API key; prints it alone on the last line")
    key.add_argument("--name", required=True)
    key.add_argument("--role", required=True, choices=["exchange", "partner", "admin"])
    user = sub.add_parser("create-user", help="create a customer or admin account")
    user.add_argument("--email", required=True)
    user.add_argument("--password", required=True)
    user.add_argument("--role", required=True, choices=["customer", "admin"])
    sub.add_parser("seed-demo", help="load the demo data into the data dir (idempotent)")
    sub.add_parser("rotate-pii-key", help="make a new current key in the PII key file (the old ones stay to read "
                                          "with); a running server re-encrypts personal data under it in the "
                                          "background (docs/operations.md, \"Personal data\")")
    from app.devcerts import add_parser as add_dev_certs
    add_dev_certs(sub)
    move = sub.add_parser("migrate-to-postgres", help="copy this node's SQLite system of record (storage.data_dir) "
                                                      "into an empty PostgreSQL database, for storage.backend = "
                                                      "\"postgres\"; the SQLite files are only read")
    move.add_argument("--dsn", required=True, help="the PostgreSQL database: postgresql://user@host:port/database")
    cluster = sub.add_parser("cluster", help="a local try of several nodes on one throwaway PostgreSQL, all on "
                                             "server.port (SO_REUSEPORT), with the demo data")
    cluster.add_argument("--nodes", type=int, default=2, choices=range(1, 9), metavar="N", help="nodes (1-8)")
    ev = sub.add_parser("eval", help="model-quality evaluations on public data sets")
    evals = ev.add_subparsers(dest="eval_name", required=True)
    reco = evals.add_parser("reco", help="recommenders on a RecBole atomic .inter file (e.g. MovieLens-100K): "
                                         "leave-last-out, HR@10 and NDCG@10")
    reco.add_argument("--data", required=True, help="the .inter file (tab-separated, typed header)")
    reco.add_argument("--items", default=None,
                      help="an .item file with item features (default: the .inter file's sibling .item, if any)")
    reco.add_argument("--no-items", action="store_true", help="ignore item features even when a .item file is there")
    reco.add_argument("--seed", type=int, default=0, help="seed for the sampled negatives and the models")
    reco.add_argument("--json", action="store_true", help='print {"rows": [{"name", "hr@10", ...}]} instead')
    ltv = evals.add_parser("ltv", help="lifetime-value models on a CDNOW-format transaction file: time holdout, "
                                       "MAE/RMSE of repeat purchases")
    ltv.add_argument("--data", required=True, help="CDNOW_master.txt or CDNOW_sample.txt layout")
    ltv.add_argument("--calibration-end", default="1997-09-30", help="last day of the calibration period")
    ltv.add_argument("--holdout-weeks", type=float, default=39.0, help="length of the holdout period")
    ltv.add_argument("--json", action="store_true", help='print {"total_actual", "rows": [{"name", "mae", ...}]}')
    bandit = evals.add_parser("bandit", help="offer-selection bandits: simulated regret, and off-policy CTR on the "
                                             "Open Bandit Dataset with --data")
    bandit.add_argument("--seeds", type=int, default=64, help="simulated problems (seeds) per policy")
    bandit.add_argument("--rounds", default="10000,100000",
                        help="comma-separated horizons at which to report the cumulative regret")
    bandit.add_argument("--data", default=None,
                        help="an Open Bandit Dataset CSV, or a directory (random/all/all.csv if there, else every "
                             "log CSV under it)")
    bandit.add_argument("--json", action="store_true",
                        help='print {"rows": [{"name", "regret", "ctr_estimate", "ratio_to_random", ...}]}')
    ctr = evals.add_parser("ctr", help="the bid model against the simulator's hidden truth: train on --hours of "
                                       "simulated impressions, test on a fresh held-out day (AUC, log-loss, ECE; "
                                       "clicks and conversions per USD at the same budget)")
    ctr.add_argument("--seed", type=int, default=0, help="selects the population and its hidden truth")
    ctr.add_argument("--hours", type=float, default=12.0,
                     help="simulated hours of training traffic, 72,000 impressions an hour (default 12)")
    ctr.add_argument("--budget-share", type=float, default=0.1,
                     help="the economic comparison's budget, as a share in (0, 1] of what winning every winnable "
                          "impression of the test day would cost (default 0.1)")
    ctr.add_argument("--json", action="store_true",
                     help='print {"rows": [{"name", "auc", "log_loss", "ece", "auc_gap", "spend_usd", '
                          '"clicks_per_usd", ...}], "goal", "economics", ...} instead')
    ranking = evals.add_parser("ranking", help="offer acceptance against the simulator's hidden truth: train on "
                                               "--days of simulated searches, test on a fresh day (AUC vs paid "
                                               "orders, log-loss, revenue per search vs the rule fallback)")
    ranking.add_argument("--seed", type=int, default=0, help="selects the population and its hidden truth")
    ranking.add_argument("--days", type=float, default=7.0,
                         help="simulated days of training searches, 2,000 a day (default 7)")
    ranking.add_argument("--json", action="store_true",
                         help='print {"rows": [{"name", "auc", "log_loss", "revenue_per_search", ...}], ...} instead')
    sim = sub.add_parser("simulate", help="drive a running Contrail on loopback with synthetic travellers and sites "
                                          "whose behaviour follows a hidden, seeded ground truth")
    sim.add_argument("--seed", type=int, default=0, help="selects the population and its hidden truth")
    sim.add_argument("--rate", type=float, default=20.0, help="bid requests a second")
    sim.add_argument("--search-rate", type=float, default=0.0,
                     help="searches a second, each answered by the traveller's accept and payment as the hidden "
                          "truth decides (default 0: bidding only)")
    sim.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    sim.add_argument("--url", default="http://127.0.0.1:8080", help="the server's base URL (loopback only)")
    sim.add_argument("--api-key", required=True,
                     help="an admin key (bids need exchange or admin, profiles partner or admin)")
    sim.add_argument("--profile-key", default=None, help="a partner key for the profiles (default: --api-key)")
    sim.add_argument("--mail-key", default=None,
                     help="an admin key to read the embedded SMTP sink's mailbox: members then shop signed in, and "
                          "the mail sent to them is reported delivered, opened and clicked through the SendGrid "
                          "webhook as the truth decides (the server needs sendgrid.allow_unsigned)")
    sim.add_argument("--log", default=None, help="write one JSON line per request (with its true CTR) here")
    return parser


def _simulate(args: argparse.Namespace) -> int:
    """The simulator talks to a server over HTTP only: no config, no database."""
    import json
    import math

    from app.simulate import NotLoopback, check_loopback, simulate

    if not all(math.isfinite(v) and v > 0 for v in (args.rate, args.seconds)):
        print("error: --rate and --seconds must be positive", file=sys.stderr)
        return 2
    if not (math.isfinite(args.search_rate) and args.search_rate >= 0):
        print("error: --search-rate must be 0 or positive", file=sys.stderr)
        return 2
    try:
        check_loopback(args.url)
    except NotLoopback as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = asyncio.run(simulate(args.seed, args.rate, args.seconds, args.url, args.api_key, args.log,
                                   args.profile_key, args.search_rate, args.mail_key))
    print(json.dumps(summary))
    if summary.get("errors") and not summary.get("requests"):  # nothing got through: a wrong URL or key, say
        print(f"error: every request failed ({summary['errors']} errors): is a server at {args.url}, and does it "
              "take the --api-key?", file=sys.stderr)
        return 1
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Offline evaluations read only the files they are given: no config, no database, no server."""
    import importlib.util

    if importlib.util.find_spec("eval") is None:
        # eval/ ships with the checkout, not with the installed wheel (pyproject packages app, ml, ...).
        print("error: `eval` runs from a Contrail checkout: its eval/ package is not installed", file=sys.stderr)
        return 2
    if args.eval_name == "bandit":
        return _eval_bandit(args)
    if args.eval_name == "ctr":
        return _eval_ctr(args)
    if args.eval_name == "ranking":
        return _eval_ranking(args)
    return _eval_ltv(args) if args.eval_name == "ltv" else _eval_reco(args)


def _eval_reco(args: argparse.Namespace) -> int:
    from eval.atomic import AtomicFileError, load_dataset
    from eval.reco import NothingToEvaluate, as_json, evaluate, table

    try:
        data = load_dataset(args.data, args.items, find_items=not args.no_items)
    except AtomicFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = evaluate(data, seed=args.seed)
    except NothingToEvaluate as exc:
        print(f"error: {args.data}: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if args.json else table(report))
    return 0


def _eval_ltv(args: argparse.Namespace) -> int:
    from eval.ltv import CdnowFileError, as_json, evaluate, table

    try:
        report = evaluate(args.data, args.calibration_end, args.holdout_weeks)
    except ValueError as exc:  # CdnowFileError, and too little data to fit
        print(f"error: {exc}" if isinstance(exc, CdnowFileError) else f"error: {args.data}: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if args.json else table(report))
    return 0


def _eval_bandit(args: argparse.Namespace) -> int:
    from eval.bandit import as_json, evaluate, table

    try:
        horizons = tuple(int(h.replace("_", "")) for h in args.rounds.split(",") if h.strip())
    except ValueError:
        print(f"error: --rounds: expected comma-separated numbers of rounds, got {args.rounds!r}", file=sys.stderr)
        return 2
    try:
        report = evaluate(args.seeds, horizons, args.data)
    except ValueError as exc:  # ObdFileError (a bad --data), and bad --seeds/--rounds
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if args.json else table(report))
    return 0


def _eval_ctr(args: argparse.Namespace) -> int:
    from eval.ctr import BadArgument, as_json, evaluate, table

    try:
        report = evaluate(args.seed, args.hours, budget_share=args.budget_share)
    except BadArgument as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if args.json else table(report))
    return 0


def _eval_ranking(args: argparse.Namespace) -> int:
    from eval.ranking import BadArgument, as_json, evaluate, table

    try:
        report = evaluate(args.seed, args.days)
    except BadArgument as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(as_json(report) if args.json else table(report))
    return 0


async def _with_platform(config: Config, action: Callable[..., Awaitable[None]], clock: Clock | None = None) -> None:
    from app.platform import Platform

    platform = Platform(config, clock)
    try:
        await platform.open_storage()
    except BaseException:
        # close what opened: a database's writer thread left running would keep the command from exiting
        await platform.events_db.close()
        await platform.records_db.close()
        raise
    try:
        await action(platform)
    finally:
        await platform.close_storage()


def _migrate_to_postgres(config: Config, dsn: str) -> int:
    from app.platform import copy_to_postgres

    source = config.data_path / "contrail.db"
    try:
        copied = asyncio.run(copy_to_postgres(source, dsn))
    except ValueError as exc:  # refused, or PostgreSQL could not be reached or refused the copy
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table, rows in copied.items():
        print(f"{table}: {rows}")
    print(f"copied {sum(copied.values())} rows from {source}; now set storage.backend = \"postgres\" and "
          "storage.postgres_dsn, and start the nodes")
    if not config.pii.key:  # personal data was copied sealed: the nodes must open it with this node's keys
        from app.platform import pii_key_file
        print(f"personal data is sealed with the keys in {pii_key_file(config)}: give every node that file "
              "(pii.key_file) or its keys (pii.key, pii.lookup_key, pii.previous_keys)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "eval":
        return _eval(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "dev-certs":  # files only: no config, no database
        from app.devcerts import run as dev_certs
        return dev_certs(args)
    path = args.config
    if path is None and os.path.isfile("config.toml"):
        path = "config.toml"
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_logging(config.server.log_level)

    if args.command == "cluster":
        from app.cluster import run_cluster
        return run_cluster(config, path, args.nodes)
    if args.command == "migrate-to-postgres":
        return _migrate_to_postgres(config, args.dsn)
    if args.command == "rotate-pii-key":
        from app.platform import rotate_pii_key
        try:
            old, new = rotate_pii_key(config)
        except (ValueError, OSError) as exc:  # a key file it cannot read, a data directory it cannot write
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"PII key {new} is current (was {old}); running servers re-encrypt under it within "
              f"pii.rewrap_check_s ({config.pii.rewrap_check_s:g} s), a stopped one when it starts")
        return 0
    if args.command == "serve":
        from app.runtime.allocator import fix_mmap_threshold
        from app.server import serve
        fix_mmap_threshold()
        try:
            asyncio.run(serve(config))
        except CannotStart as exc:
            print(f"config: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a port taken, an address this machine does not have
            print(f"error: cannot start: {exc}", file=sys.stderr)
            return 1
        return 0

    async def migrate(platform) -> None:
        print(f"migrations applied; database at {platform.records_db.path}")

    async def create_api_key(platform) -> None:
        key, plaintext = await platform.admin.create_api_key("cli", args.name, args.role)
        print(f"created API key {key.id} ({key.role}) named {key.name!r}; it is shown once:")
        print(plaintext)

    async def create_user(platform) -> None:
        account = await platform.admin.create_user("cli", args.email, args.password, args.role)
        print(f"created {account.role} {account.email} ({account.id})")

    async def seed_demo(platform) -> None:
        from app.demo import seed_demo as seed
        for line in await seed(platform):
            print(line)

    actions = {"migrate": migrate, "create-api-key": create_api_key, "create-user": create_user,
               "seed-demo": seed_demo}
    try:
        # The demo seed moves its clock on to play out expiries and flights (see app/demo.py).
        clock = ShiftedClock() if args.command == "seed-demo" else None
        asyncio.run(_with_platform(config, actions[args.command], clock))
    except CannotStart as exc:
        print(f"config: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The `contrail` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
