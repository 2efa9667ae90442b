"""kill -9 while mail is going out: after a restart every queued message arrives, none twice."""

import asyncio
import signal
import time

import aiohttp

from bench.server import ServerProcess
from tests.integration.channels.helpers import Relay


async def test_kill_9_while_sending_loses_and_repeats_nothing(tmp_path):
    relay = await Relay().start()
    port = relay.port
    # Slow sending (20 messages/s) so the kill lands while the outbox is still draining.
    server = ServerProcess(tmp_path / "var", CONTRAIL__SMTP__PORT=str(port), CONTRAIL__SMTP__RATE_PER_S="20",
                           CONTRAIL__SMTP__POOL_SIZE="2", CONTRAIL__CHANNELS__MAX_PER_CUSTOMER_PER_DAY="1000")
    key = server.cli("create-api-key", "--name", "crm", "--role", "admin").stdout.strip().splitlines()[-1]
    headers = {"X-Api-Key": key}
    try:
        await asyncio.to_thread(server.start)
        queued: list[str] = []
        async with aiohttp.ClientSession() as session:
            for n in range(60):
                async with session.put(f"{server.url}/v1/loyalty/members/m{n}", headers=headers,
                                       json={"email": f"m{n}@example.com"}) as resp:
                    assert resp.status == 200
            for n in range(60):
                async with session.post(f"{server.url}/v1/channels/activate", headers=headers,
                                        json={"user_id": f"m{n}", "subject": "Hello", "text": "Hi"}) as resp:
                    body = await resp.json()
                    assert body["status"] == "queued"
                    queued.append(f"<{body['provider_message_id']}@contrail>")
        while len(relay.messages) < 10:
            await asyncio.sleep(0.01)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        before_restart = len(relay.messages)
        assert before_restart < len(queued)  # the kill really interrupted the sending
        await asyncio.to_thread(server.start)
        deadline = time.monotonic() + 30
        while len({m["Message-ID"] for m in relay.messages}) < len(queued) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ids = [m["Message-ID"] for m in relay.messages]
        assert set(ids) == set(queued), "a queued message was lost"
        repeats = len(ids) - len(set(ids))
        # A message the relay accepted in the instant before the kill, but not yet marked sent,
        # can go out again (at most one per pooled connection); its Message-ID lets receivers drop it.
        assert repeats <= 2
    finally:
        server.stop()
        await relay.stop()
