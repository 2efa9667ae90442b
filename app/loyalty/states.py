"""Members' accounts in memory: at most `loyalty.max_accounts_in_memory`, the most recently used; another member's
is read back from their stored state (and the entries after it) when a decision or a read needs it. The start reads
stored states, not the ledger; a member with entries and no state (a database from before states were stored) is
rebuilt from their ledger once and their state stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from app.loyalty.accounts import Holds, TierRules, standing
from app.runtime.idset import IdSet, hashes
from app.runtime.lru import LRU
from state.loyalty import LedgerEntry, LoyaltyAccount
from state.ports import LoyaltyStore

log = logging.getLogger("contrail.loyalty")

PAGE = 2_000  # rows a start reads at a time: stored states, a rebuild's entries (ids: ten times as many)
REBUILT_PAGE = 500  # members without a stored state rebuilt (and their states written) at a time
READS_IN_FLIGHT = 1_000  # accounts read back for the bidder at once (it prices a member not held as a non-member)


class MemberStates:
    def __init__(self, store: LoyaltyStore, rules: TierRules, capacity: int,
                 replayed: Callable[[LedgerEntry], None]) -> None:
        self._store = store
        self._rules = rules
        self._replayed = replayed  # told of each entry another writer appended, once applied
        self.accounts: LRU[str, LoyaltyAccount] = LRU(capacity, "loyalty_accounts")
        self.ids = IdSet()  # every member with an account, 8 bytes each: who is worth reading back
        self._reading: set[object] = set()  # what is being read back for the bidder (in_background)
        self.loaded = {"states": 0, "replayed": 0, "rebuilt": 0}  # what the last start read

    async def load(self) -> None:
        """The stored states of up to `capacity` members and the few entries after them (appended by a version
        that stored none), every member's id, and the members without a state rebuilt."""
        loaded = self.loaded = {"states": 0, "replayed": 0, "rebuilt": 0}
        after: str | None = None
        ids: list[np.ndarray] = []
        while room := self.accounts.capacity - len(self.accounts):
            states = await self._store.accounts(after, min(PAGE, room))
            if not states:
                break
            page = {account.user_id: account for account in states}
            loaded["states"] += len(states)
            behind = await self._store.unapplied(states[0].user_id, states[-1].user_id)
            if behind:
                await self._replay_stored(page, behind)
                await self._store.save_accounts([page[u] for u in dict.fromkeys(e.user_id for _, e in behind)])
            for user_id, account in page.items():
                self.accounts.put(user_id, account)
            ids.append(hashes(page))
            after = states[-1].user_id
        if len(self.accounts) == self.accounts.capacity:  # the members not held: their ids only
            while more := await self._store.account_ids(after, PAGE * 10):
                ids.append(hashes(more))
                after = more[-1]
        self.ids = IdSet.of_hashes(ids)
        after = None
        while stateless := await self._store.stateless_members(after, REBUILT_PAGE):
            await self._rebuild(stateless)
            loaded["rebuilt"] += len(stateless)
            after = stateless[-1]
        if loaded["replayed"] or loaded["rebuilt"]:
            log.info("loyalty states rebuilt from the ledger", extra=dict(loaded))

    async def _replay_stored(self, held: dict[str, LoyaltyAccount], entries: list[tuple[int, LedgerEntry]]) -> None:
        """Apply entries the members' stored states do not include yet, in their order."""
        for seq, entry in entries:
            holds = await self.reversal_holds(entry, seq) if entry.kind == "reverse" else None
            account = held[entry.user_id]
            if seq == account.seq + 1:
                self._rules.apply(account, entry, holds)
                self.loaded["replayed"] += 1

    async def _rebuild(self, user_ids: list[str]) -> None:
        """These members' states from their whole ledger (read a page at a time), then stored and held."""
        rebuilt = {user_id: LoyaltyAccount(user_id) for user_id in user_ids}
        purchases: list[LedgerEntry] = []  # the earns and reversals of the member being replayed
        position: tuple[str, int] | None = None
        while entries := await self._store.entries_of(user_ids, position, PAGE):
            for seq, entry in entries:
                if position is None or entry.user_id != position[0]:
                    purchases = []
                position = entry.user_id, seq
                account = rebuilt[entry.user_id]
                if seq != account.seq + 1:
                    continue
                holds = None
                if entry.kind == "reverse":
                    holds = self._rules.holds(standing(purchases, without=entry.transaction_id))
                if entry.kind in ("earn", "reverse"):
                    purchases.append(entry)
                self._rules.apply(account, entry, holds)
        await self._store.save_accounts(list(rebuilt.values()))
        for user_id, account in rebuilt.items():
            self.ids.add(user_id)
            self.accounts.put(user_id, account)

    async def held(self, user_id: str, create: bool = False) -> LoyaltyAccount | None:
        """A member's account: from memory, else read back from their stored state and the entries after it
        (another node's, or a version's that stored none), else a new one if `create` (None otherwise). A decision
        takes it under the member's lock and decides with no await after it."""
        account = self.accounts.get(user_id)
        if account is not None:
            return account
        stored = await self._store.account(user_id)
        after = await self._store.entries_after(user_id, stored.seq if stored else 0)
        holds = {seq: await self.reversal_holds(e, seq) for seq, e in after if e.kind == "reverse"}
        account = self.accounts.get(user_id)
        if account is not None:  # read back meanwhile, or made by a decision
            return account
        if stored is None and not after and not create:
            return None
        account = stored or LoyaltyAccount(user_id)
        for seq, entry in after:
            if seq == account.seq + 1:
                self.replay(account, entry, holds.get(seq))
        self.committed(account)
        return account

    def committed(self, account: LoyaltyAccount) -> None:
        """Hold this account as the member's (its state is stored): after a commit, memory may have let it go."""
        self.accounts.put(account.user_id, account)
        self.ids.add(account.user_id)

    def read_back(self, user_id: str) -> None:
        """Read a member's account back for the bidder, in the background; a user with no account is dropped from
        the ids, so the next bid for them reads nothing."""
        if user_id in self.ids:
            self.in_background(("account", user_id), lambda: self._read_for_bids(user_id))

    async def _read_for_bids(self, user_id: str) -> None:
        if await self.held(user_id) is None:
            self.ids.discard(user_id)

    def in_background(self, key: tuple[str, str], read: Callable[[], Awaitable[object]]) -> None:
        """Run `read` for the bidder, which never waits for it: one per `key` at a time, at most READS_IN_FLIGHT
        at once (past that the bid goes on without it), a failure logged."""
        if key in self._reading or len(self._reading) >= READS_IN_FLIGHT:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a caller outside the server)
            return

        async def logged() -> None:
            try:
                await read()
            except Exception:
                log.warning("a member could not be read back", exc_info=True, extra={"read": key[0], "user_id": key[1]})
        self._reading.add(key)
        loop.create_task(logged()).add_done_callback(lambda _: self._reading.discard(key))

    async def reversal_holds(self, entry: LedgerEntry, seq: int) -> Holds:
        """The tiers a member holds after the reversal `entry` (their `seq`-th): recounted from every purchase of
        theirs still standing, read from the ledger."""
        before = await self._store.purchases(entry.user_id, seq)
        return self._rules.holds(standing(before, without=entry.transaction_id))

    def replay(self, account: LoyaltyAccount, entry: LedgerEntry, holds: Holds | None) -> None:
        """Apply an entry another writer appended."""
        self._rules.apply(account, entry, holds)
        self._replayed(entry)

    async def catch_up(self, user_id: str) -> int:
        """Apply what other writers (other nodes) appended to a member's ledger since this node last did; how many
        entries that was. A member not held is read back when next needed, with all of it."""
        known = self.accounts.peek(user_id)
        if known is None:
            return 0
        applied = 0
        for seq, entry in await self._store.entries_after(user_id, known.seq):
            holds = await self.reversal_holds(entry, seq) if entry.kind == "reverse" else None
            account = self.accounts.peek(user_id)
            if account is not None and seq == account.seq + 1:  # not one of this node's, applied meanwhile
                self.replay(account, entry, holds)
                applied += 1
        return applied
