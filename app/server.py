"""Running the server: listen, wait for SIGTERM/SIGINT, drain, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from app.config import Config
from app.main import TLS, create_app
from app.platform import Platform
from handlers.rest.connections import GuardedRunner, QuietRepeats

log = logging.getLogger("contrail")


async def serve(config: Config) -> None:
    """Serve until a signal; then readiness turns 503 at once and in-flight work finishes."""
    platform = Platform(config)
    app = create_app(config, platform=platform)
    asyncio.get_running_loop().set_exception_handler(QuietRepeats())
    runner = GuardedRunner(app, config.server, platform.metrics, access_log=None, handle_signals=False,
                           shutdown_timeout=config.server.shutdown_grace_s)
    tls = app.get(TLS)
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.server.host, config.server.port, reuse_address=True,
                           reuse_port=config.server.reuse_port or None,
                           ssl_context=tls.http if tls is not None else None)
        await site.start()
    except BaseException:
        # Close what did start (the databases and their writer threads, the gRPC server): left open, their
        # threads kept the process alive after the error.
        await runner.cleanup()
        raise
    host, port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
    platform.public_urls.listening(config.server.host, port)
    log.info("HTTP listening", extra={"host": host, "port": port, "links": platform.public_urls.links()})
    log.info(f"console: open {platform.public_urls.links()}/", extra={"console": f"{platform.public_urls.links()}/"})
    if config.smtp.embedded_sink:
        log.info("mail goes to the embedded SMTP sink, not to anyone; read it at GET /v1/admin/mailbox",
                 extra={"smtp": f"{config.smtp.host}:{platform.channels.relay.port}"})
    if config.sendgrid.allow_unsigned and not config.sendgrid.verification_key:
        log.warning("unsigned SendGrid webhooks are accepted (sendgrid.allow_unsigned): anyone can report an "
                    "address as bounced; set sendgrid.verification_key outside a demo")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_certificates, tls.reload)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.server.shutdown_grace_s})
    platform.health.drain()
    await runner.cleanup()
    log.info("stopped")


def _reload_certificates(reload: Callable[[], None]) -> None:
    """SIGHUP: new connections get the certificate files as they are now; a bad file keeps the old ones."""
    try:
        reload()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.error("certificates not reloaded; still serving the previous ones", extra={"error": str(exc)})
        return
    log.info("certificates reloaded")
