"""A loop error that repeats (the listening socket out of descriptors) is logged once per interval."""

import asyncio
import logging

from handlers.rest.connections import QuietRepeats


def test_a_repeating_loop_error_is_logged_once_per_interval(caplog):
    loop = asyncio.new_event_loop()
    handler = QuietRepeats(interval_s=60)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for _ in range(1000):
            handler(loop, {"message": "socket.accept() out of system resource"})
        handler(loop, {"message": "something else"})
    loop.close()
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
        "socket.accept() out of system resource", "something else"]
