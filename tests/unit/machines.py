"""A base for hypothesis state machines that drive the real Platform (real SQLite, injectable clock)."""

import asyncio
import tempfile
from pathlib import Path

from hypothesis.stateful import RuleBasedStateMachine

from app.errors import DomainError
from app.platform import Platform
from app.runtime.clock import ManualClock
from tests.conftest import make_config


class PlatformMachine(RuleBasedStateMachine):
    """Each example gets its own data directory, event loop and manual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock()
        self.platform = Platform(make_config(Path(self.tmp.name)), self.clock)
        self.run(self.platform.open_storage())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def attempt(self, coro):
        """Run a step that may be refused; a refusal (any domain error) is a valid outcome."""
        try:
            return self.run(coro)
        except DomainError:
            return None

    def teardown(self) -> None:
        self.run(self.platform.close_storage())
        self.loop.close()
        self.tmp.cleanup()
