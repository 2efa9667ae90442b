"""`python -m app cluster --nodes N`: a local try of several nodes on one PostgreSQL, Redis and NATS, behind one port.

It starts a throwaway PostgreSQL, Redis and nats-server (app/localservers.py; Redis only if installed, and neither
of the two when the config names one already), migrates the database and loads the demo data once, then runs N
`serve` processes that share the system of record and listen on the same HTTP and gRPC ports with SO_REUSEPORT
(the kernel spreads connections across them; no proxy in between). Each node keeps its analytics in a data
directory of its own. Ctrl-C (or SIGTERM) stops the nodes gracefully, then the servers. For a real
deployment see docs/deployment.md.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from app import localservers
from app.config import Config


def run_cluster(config: Config, config_path: str | None, nodes: int) -> int:
    missing = localservers.missing()
    if "postgresql" in missing:
        print("error: the cluster needs PostgreSQL: apt install postgresql", file=sys.stderr)
        return 2
    root = config.data_path / "cluster"
    root.mkdir(parents=True, exist_ok=True)
    pg = localservers.Postgres().start()
    print(f"PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.root})", flush=True)
    shared = dict(os.environ)  # the caller's own CONTRAIL__ settings hold for every node, but for these
    redis: localservers.Redis | None = None
    nats: localservers.NatsServer | None = None
    if not config.redis.url:
        if "redis-server" in missing:
            print("redis-server is not installed: each node keeps its own budgets, caps and issued bids "
                  "(apt install redis-server)", file=sys.stderr)
        else:
            redis = localservers.Redis(root / "redis").start()
            shared["CONTRAIL__REDIS__URL"] = redis.url
            print(f"Redis on 127.0.0.1:{redis.port} (data in {redis.root})", flush=True)
    if not config.nats.url and (binary := localservers.nats_server_binary()) is not None:
        nats = localservers.NatsServer(binary)
        shared["CONTRAIL__NATS__URL"] = nats.url
        print(f"NATS on 127.0.0.1:{nats.port}", flush=True)
    shared.update({"CONTRAIL__STORAGE__BACKEND": "postgres", "CONTRAIL__STORAGE__POSTGRES_DSN": pg.dsn,
                   "CONTRAIL__SERVER__REUSE_PORT": "true",
                   # the nodes must agree on what signs tokens and webhooks
                   "CONTRAIL__AUTH__JWT_SECRET": config.auth.jwt_secret or secrets.token_urlsafe(48),
                   "CONTRAIL__PAYMENTS__WEBHOOK_SECRET": config.payments.webhook_secret or secrets.token_urlsafe(48),
                   # ... and on the key that seals personal data (each node would otherwise make its own)
                   "CONTRAIL__PII__KEY": config.pii.key or _new_key(),
                   "CONTRAIL__PII__LOOKUP_KEY": config.pii.lookup_key or _new_key(),
                   "CONTRAIL__SERVER__PORT": str(config.server.port), "CONTRAIL__GRPC__PORT": str(config.grpc.port)})
    command = [sys.executable, "-m", "app", *(["--config", config_path] if config_path else [])]
    procs: list[subprocess.Popen] = []
    try:
        first = {**shared, "CONTRAIL__STORAGE__DATA_DIR": str(root / "node-1")}
        for step in ("migrate", "seed-demo"):
            subprocess.run([*command, step], env=first, check=True)
        for n in range(1, nodes + 1):
            env = {**shared, "CONTRAIL__STORAGE__DATA_DIR": str(root / f"node-{n}"),
                   "CONTRAIL__SERVER__NODE_ID": f"node-{n}"}
            log = open(root / f"node-{n}.log", "ab")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen([*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT))
        url = f"http://{config.server.host}:{config.server.port}"
        _wait_ready(url, procs)
        print(f"{nodes} nodes serving {url}/ (logs in {root}/node-N.log); Ctrl-C stops them", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a node stopped; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(exc.cmd[2:])} failed", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()
        if redis is not None:
            redis.stop(graceful=True)
        if nats is not None:
            nats.stop()


def _new_key() -> str:
    """32 random bytes in base64, as pii.key and pii.lookup_key take them."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a node exited while starting; see its log")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no node became ready at {url} within {timeout:.0f} s")



def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
