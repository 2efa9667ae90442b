"""Starting the real server as a subprocess on free loopback ports (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from app.localservers import free_port

__all__ = ["ROOT", "ServerProcess", "free_port"]

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    def __init__(self, data_dir: Path, lift_limits: bool = True, /, **env: str) -> None:
        """A server on free loopback ports; with lift_limits, rate limits lifted (load comes from one address)."""
        self.data_dir = data_dir
        self.http_port = free_port()
        self.grpc_port = free_port()
        limits = {"CONTRAIL__RATELIMIT__IP_PER_S": "100000", "CONTRAIL__RATELIMIT__IP_BURST": "100000",
                  "CONTRAIL__RATELIMIT__PRINCIPAL_PER_S": "100000",
                  "CONTRAIL__RATELIMIT__PRINCIPAL_BURST": "100000"} if lift_limits else {}
        own = {k: v for k, v in os.environ.items() if not k.startswith("CONTRAIL")}  # nothing from the caller's shell
        self.env = {**own, "CONTRAIL__STORAGE__DATA_DIR": str(data_dir), "CONTRAIL__SERVER__PORT": str(self.http_port),
                    "CONTRAIL__GRPC__PORT": str(self.grpc_port), **limits, **env}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.http_port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", "--config", str(ROOT / "config.toml"), *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=60)

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(ROOT / "config.toml"), "serve"],
                                     cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log_path.read_text()}")

    def wait_loaded(self, timeout: float = 120.0) -> None:
        """Until what the server loads after it is ready (its `warm_up` task) is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=5) as resp:
                    if json.loads(resp.read()).get("tasks", {}).get("warm_up", "finished") == "finished":
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("the server did not finish loading after it was ready")

    async def kill_9_mid_load(self, load: list[asyncio.Task], enough: Callable[[], bool], by: float) -> None:
        """kill -9 once `enough()` holds (or the load's tasks ended, or the monotonic clock passed `by`), then wait
        for the load's tasks to find the server gone, and for the process."""
        assert self.proc is not None
        while not enough() and time.monotonic() < by and not all(task.done() for task in load):
            await asyncio.sleep(0.005)
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.gather(*load)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as an orchestrator stops it; the exit code (killed if it does not exit in `timeout`)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if hasattr(self, "log"):
            self.log.close()
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "log"):
            self.log.close()
