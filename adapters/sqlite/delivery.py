"""SQLite storage of delivery: the delivery port's SQL."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Sequence

from adapters.sqlite.db import WriteConflict
from adapters.sqlite.statements import Insert, SqlDatabase
from state.delivery import Admission, AlreadyCharged, ClickOutcome, IssuedBid

IDLE_SCAN_PER_ROW = 20  # users looked at per impression row purge may delete: a pass outpaces new users
LOAD_PAGE = 10_000  # impressions read per round trip at start
SPEND_DAYS_HELD = 2  # days of spend in memory besides today: pacing reads today's, reports read the store
# A click proves an impression, so it contradicts a loss notice: one statement, so that no loss recorded before it
# (by this node or another) is passed over.
_CLICK = ("INSERT INTO bid_outcomes(bid_id, kind, campaign_id, at) SELECT ?, 'click', ?, CAST(? AS DOUBLE PRECISION) "
          "WHERE NOT EXISTS (SELECT 1 FROM bid_outcomes WHERE bid_id = ? AND kind = 'loss') ON CONFLICT DO NOTHING")


def utc_day(at: float) -> str:
    """The UTC date of a timestamp, as spend is kept (YYYY-MM-DD)."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class SqliteDeliveryStore:
    """Impressions per user (for frequency caps) and spend per campaign per day, hot in memory."""

    def __init__(self, db: SqlDatabase, keep_s: float = 86_400, max_reserved: int = 1_000_000) -> None:
        self._db = db
        self._keep = keep_s
        self.impressions: dict[str, deque[tuple[float, str]]] = defaultdict(deque)
        self.spend: dict[tuple[str, str], int] = {}
        # Bids being charged right now: a repeat arriving meanwhile is refused without a write. Once written, the
        # stored charge refuses repeats, so nothing is remembered past the write (this set is bounded by the
        # charges in flight).
        self._charging: set[str] = set()
        self._idle_scan: list[str] = []  # users still to look at in the current pass of forget_idle
        self.version = 0  # bumps whenever spend or a reservation changes, so budget views know to refresh
        # One node's live bids (several nodes reckon theirs in Redis, adapters/redis/delivery.py): what each
        # campaign's admitted, not yet charged bids may still cost, so spend never passes a budget however late
        # the billing notices come. A bid's reservation goes when it is charged or expires; past `max_reserved`
        # (bidding.max_live_bids: the ledger forgets such bids, so they can no longer be charged) the oldest goes.
        self.reserved: dict[str, int] = {}
        self._held: dict[str, tuple[str, int, float]] = {}  # bid id -> (campaign, its most, expires at)
        self._by_expiry: deque[tuple[float, str]] = deque()  # (expires at, bid id) as issued; charged ones too
        self._max_reserved = max_reserved
        self._reserved_moved: set[str] = set()

    async def load(self, now: float) -> None:
        """Impressions within the cap windows, in keyset pages by (at, id) rather than one fetch of every row,
        each campaign id one string (as the live process holds it, not one per row)."""
        campaigns: dict[str, str] = {}
        after: tuple[float, int] = (now - self._keep, 2**63 - 1)  # strictly after the window opens
        while rows := await self._db.fetchall(
                "SELECT user_id, campaign_id, at, id FROM impressions WHERE (at, id) > (?, ?) ORDER BY at, id "
                f"LIMIT {LOAD_PAGE}", after):
            for user_id, campaign_id, at, _ in rows:
                self.impressions[user_id].append((at, campaigns.setdefault(campaign_id, campaign_id)))
            after = rows[-1][2], rows[-1][3]
        rows = await self._db.fetchall("SELECT campaign_id, day, spent_micros FROM campaign_spend WHERE day >= ?",
                                       (utc_day(now - SPEND_DAYS_HELD * 86_400),))
        for campaign_id, day, spent in rows:
            self.spend[(campaign_id, day)] = spent
        self.version += 1

    async def charge(self, bid_id: str, campaign_id: str, user_id: str, price_micros: int, day: str,
                     at: float) -> None:
        """Charge a bid once: spend and impression applied in memory, persisted, undone on failure."""
        if bid_id in self._charging:
            raise AlreadyCharged(bid_id)
        self._charging.add(bid_id)
        try:
            await self._charge_once(bid_id, campaign_id, user_id, price_micros, day, at)
        finally:
            self._charging.discard(bid_id)

    async def _charge_once(self, bid_id: str, campaign_id: str, user_id: str, price_micros: int, day: str,
                           at: float) -> None:
        self._apply(campaign_id, user_id, price_micros, day, at)
        held = self._release(bid_id)  # the charge takes the reservation's place
        try:
            await self._persist_charge(bid_id, campaign_id, user_id, price_micros, day, at)
        except BaseException:
            self._apply(campaign_id, user_id, price_micros, day, at, undo=True)
            if held is not None and held[2] > at:
                self._hold(bid_id, held, queued=True)
            raise

    # ---- one node's admission (the shared-bids port's rule, in memory) ----
    async def admit(self, bids: Sequence[Admission], user_id: str, user_caps: tuple[int, int, int],
                    now: float) -> list[str]:
        """Per bid, '' when admitted (its most, CPM / 1000, reserved against its campaign's budget) or 'budget' when
        today's spend, the live bids' reservations and this bid's most would pass what pacing allows. Frequency
        caps were checked as the candidates were chosen, from this node's memory of impressions."""
        self.lapse(now)
        day, verdicts = utc_day(now), []
        for a in bids:
            bid = a.bid
            campaign_id, most = bid.campaign_id, bid.price_micros // 1000
            if self.spend.get((campaign_id, day), 0) + self.reserved.get(campaign_id, 0) + most > a.limit_micros:
                verdicts.append("budget")
            else:
                self._hold(bid.bid_id, (campaign_id, most, bid.expires_at))
                verdicts.append("")
        return verdicts

    async def find(self, bid_id: str) -> IssuedBid | None:
        return None  # one node: its own ledger holds every bid it issued

    def _hold(self, bid_id: str, held: tuple[str, int, float], queued: bool = False) -> None:
        self._held[bid_id] = held
        self.reserved[held[0]] = self.reserved.get(held[0], 0) + held[1]
        self._reserved_moved.add(held[0])
        self.version += 1
        if not queued:
            self._by_expiry.append((held[2], bid_id))
            if len(self._by_expiry) > self._max_reserved:
                self._release(self._by_expiry.popleft()[1])

    def _release(self, bid_id: str) -> tuple[str, int, float] | None:
        held = self._held.pop(bid_id, None)
        if held is not None:
            campaign_id, most, _ = held
            left = self.reserved[campaign_id] - most
            if left:
                self.reserved[campaign_id] = left
            else:
                del self.reserved[campaign_id]
            self._reserved_moved.add(campaign_id)
            self.version += 1
        return held

    def lapse(self, now: float) -> None:
        """Give back what bids that expired unbilled had reserved."""
        queue = self._by_expiry
        while queue and queue[0][0] <= now:
            self._release(queue.popleft()[1])

    def reservations_moved(self) -> set[str]:
        """The campaigns whose reservations changed since the last call: a budget view reads those again."""
        moved, self._reserved_moved = self._reserved_moved, set()
        return moved

    async def reserved_now(self, campaign_ids: Sequence[str], now: float) -> list[int]:
        """What each campaign's live bids may still cost at `now`: this node's are all there are."""
        self.lapse(now)
        return [self.reserved.get(c, 0) for c in campaign_ids]

    @property
    def reservations(self) -> int:
        """Bids whose reservation is remembered (charged ones among them until they would have expired)."""
        return len(self._by_expiry)

    def _apply(self, campaign_id: str, user_id: str, price_micros: int, day: str, at: float, *,
               undo: bool = False) -> None:
        """Add a charge to the memory of spend and impressions (`undo`: take it back)."""
        key = (campaign_id, day)
        self.spend[key] = self.spend.get(key, 0) + (-price_micros if undo else price_micros)
        self.version += 1
        if not undo:
            seen = self.impressions[user_id]
            seen.append((at, campaign_id))
            while seen[0][0] < at - self._keep:  # no cap window reads them: a user seen daily keeps a day
                seen.popleft()
        else:
            try:
                self.impressions[user_id].remove((at, campaign_id))
            except ValueError:
                pass

    async def _persist_charge(self, bid_id: str, campaign_id: str, user_id: str, price_micros: int, day: str,
                              at: float) -> None:
        """Store the charge, its day's spend and its impression in one write; AlreadyCharged when stored before."""
        try:
            await self._db.write([
                ("INSERT OR IGNORE INTO bid_outcomes(bid_id, kind, campaign_id, price_micros, at) VALUES (?,?,?,?,?)",
                 (bid_id, "charge", campaign_id, price_micros, at), 1),
                ("INSERT INTO campaign_spend(campaign_id, day, spent_micros) VALUES (?,?,?) "
                 "ON CONFLICT(campaign_id, day) "
                 "DO UPDATE SET spent_micros = campaign_spend.spent_micros + excluded.spent_micros",
                 (campaign_id, day, price_micros)),
                Insert("impressions", ("user_id", "campaign_id", "at"), [(user_id, campaign_id, at)]),
            ])
        except WriteConflict:
            raise AlreadyCharged(bid_id) from None

    async def record(self, bid_id: str, kind: str, campaign_id: str, price_micros: int | None, reason: int | None,
                     at: float) -> bool:
        """Record a win or loss notice once; returns False for a repeat."""
        counts = await self._db.write([(
            "INSERT OR IGNORE INTO bid_outcomes(bid_id, kind, campaign_id, price_micros, reason, at)"
            " VALUES (?,?,?,?,?,?)",
            (bid_id, kind, campaign_id, price_micros, reason, at))])
        return counts[0] == 1

    async def record_click(self, bid_id: str, campaign_id: str, at: float) -> ClickOutcome:
        """Record a click once, unless a loss notice was recorded for the bid (by any node: the outcomes are shared):
        "recorded", "repeat", or "lost" (nothing written)."""
        counts = await self._db.write([(_CLICK, (bid_id, campaign_id, at, bid_id))])
        if counts[0] == 1:
            return "recorded"
        lost = await self._db.fetchone("SELECT 1 FROM bid_outcomes WHERE bid_id = ? AND kind = 'loss'", (bid_id,))
        return "lost" if lost is not None else "repeat"

    async def purge(self, now: float, limit: int) -> int:
        """Delete up to `limit` stored impressions older than any frequency-cap window reads (and than
        a restart loads); returns how many went."""
        deleted, = await self._db.write([(
            "DELETE FROM impressions WHERE rowid IN (SELECT rowid FROM impressions WHERE at <= ? LIMIT ?)",
            (now - self._keep, limit))])
        self.forget_idle(now, limit * IDLE_SCAN_PER_ROW)
        self.forget_old_spend(now)
        return deleted

    def forget_old_spend(self, now: float) -> int:
        """Forget the spend of days before SPEND_DAYS_HELD ago (the stored rows stay for reports); how many went."""
        oldest = utc_day(now - SPEND_DAYS_HELD * 86_400)
        old = [key for key in self.spend if key[1] < oldest]
        for key in old:
            del self.spend[key]
        return len(old)

    async def purge_outcomes(self, before: float, limit: int) -> int:
        """Delete up to `limit` stored notices (the charged-bid ids among them) recorded before `before`: a notice
        for a bid that old finds no bid (the ledger forgot it when it expired), so its row refuses nothing."""
        deleted, = await self._db.write([(
            "DELETE FROM bid_outcomes WHERE (bid_id, kind) IN "
            "(SELECT bid_id, kind FROM bid_outcomes WHERE at < ? LIMIT ?)", (before, limit))])
        return deleted

    def forget_idle(self, now: float, limit: int) -> int:
        """Forget users none of whose impressions a cap window still reads (so the memory holds a day's users,
        not every user ever shown an ad), looking at up to `limit` of them: a pass over all users is resumed call
        after call. How many went."""
        if not self._idle_scan:
            self._idle_scan = list(self.impressions)
        cutoff, gone = now - self._keep, 0
        for _ in range(min(limit, len(self._idle_scan))):
            user = self._idle_scan.pop()
            seen = self.impressions.get(user)
            if seen is not None and (not seen or seen[-1][0] < cutoff):
                del self.impressions[user]
                gone += 1
        return gone

    async def outcomes_since(self, since: float) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (campaign, notice kind: win, loss, charge), how many arrived since `since` and their prices' sum."""
        rows = await self._db.fetchall(
            "SELECT campaign_id, kind, count(*), CAST(coalesce(sum(price_micros), 0) AS BIGINT) FROM bid_outcomes "
            "WHERE at >= ? GROUP BY campaign_id, kind", (since,))
        return {(campaign_id, kind): (count, total) for campaign_id, kind, count, total in rows}

    def has_impressions(self, user_id: str) -> bool:
        return bool(self.impressions.get(user_id))

    def spent(self, campaign_id: str, day: str) -> int:
        return self.spend.get((campaign_id, day), 0)

    def campaigns_shown(self, user_id: str, since: float) -> set[str]:
        """The campaigns with an impression of the user at `since` or later."""
        seen = self.impressions.get(user_id)
        return {c for at, c in seen if at >= since} if seen else set()

    def count_since(self, user_id: str, since: float, campaign_id: str | None = None) -> int:
        """Impressions of a user since `since`, optionally for one campaign."""
        seen = self.impressions.get(user_id)
        if not seen:
            return 0
        while seen and seen[0][0] < since - self._keep:
            seen.popleft()
        return sum(1 for at, c in seen if at >= since and (campaign_id is None or c == campaign_id))
