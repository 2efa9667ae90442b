"""Running the server: listen, wait for SIGTERM/SIGINT, drain, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from app import keys
from app.config import Config
from app.main import create_app
from handlers.rest.connections import GuardedRunner, QuietRepeats

log = logging.getLogger("contrail")


async def serve(config: Config) -> None:
    """Serve until a signal; then readiness turns 503 at once and in-flight work finishes."""
    app = create_app(config)
    asyncio.get_running_loop().set_exception_handler(QuietRepeats())
    runner = GuardedRunner(app, config.server, access_log=None, handle_signals=False,
                           shutdown_timeout=config.server.shutdown_grace_s)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, reuse_address=True)
    await site.start()
    log.info("HTTP listening", extra={"host": config.server.host, "port": config.server.port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.server.shutdown_grace_s})
    app[keys.HEALTH].drain()
    await runner.cleanup()
    log.info("stopped")
