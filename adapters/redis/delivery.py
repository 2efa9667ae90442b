"""Budgets, frequency caps and issued bids shared by every node bidding, in Redis (the delivery and shared-bids
ports). SQL stays the record of charges, spend and impressions; Redis holds the live reckoning.

A bid is admitted only when its campaign's spend today plus what its live bids have reserved plus this bid's
most (its CPM / 1000) stays within what pacing allows by now; admitting reserves that amount. A charge moves a
bid's reservation to the day's spend (the clearing price, never above the bid); a bid that expires unwon gives its
reservation back at the next admission. So spend never passes the budget, however many nodes bid and whichever
node hears the notices. Each step is one Lua script: atomic across nodes.

Keys (all under `redis.prefix`):
    bid:{bid_id}            the issued bid (msgpack), until it expires: any node can match a notice to it
    reserved:{campaign}     what the campaign's live bids may still cost (micros)
    resv:{campaign}         its live bids by expiry (ms), and cost:{campaign} each one's "cost:expiry"
    spent:{campaign}:{day}  micros charged on that UTC day
    imp:{user}              the user's impressions of the last day ("campaign|bid" by time in ms), for caps
    charged:{bid_id}        the bid was charged (a repeat notice changes nothing)
    seeded                  set once spend was loaded from SQL: without it (Redis came back empty) every script
                            refuses with UNSEEDED and the node reloads spend from SQL first
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence

import msgspec
from redis.exceptions import ResponseError

from adapters.redis.client import RedisClient, as_int, error_named
from adapters.sqlite.delivery import SPEND_DAYS_HELD, SqliteDeliveryStore, utc_day
from adapters.sqlite.statements import SqlDatabase
from state.delivery import Admission, AlreadyCharged, IssuedBid
from state.ports import StorageUnavailable

log = logging.getLogger("contrail.redis")

DAY_MS = 86_400_000
SPENT_TTL_S = 3 * 86_400      # a day's spend outlives the day: reports and late notices read it
CHARGED_TTL_S = 86_400        # longer than any bid lives
_BID_ID = re.compile(r"\A[0-9a-f]{16,64}\Z")

# Gives back (up to 256 of) what a campaign's bids that expired unbilled by `now` had reserved.
_LAPSE_FUNCTION = """
local function lapse(reserved, resv, costs, now)
  local gone = redis.call('ZRANGEBYSCORE', resv, '-inf', now, 'LIMIT', 0, 256)
  if #gone > 0 then
    local freed = 0
    for _, v in ipairs(redis.call('HMGET', costs, unpack(gone))) do
      if v then freed = freed + tonumber(string.match(v, '^(%d+)')) end
    end
    redis.call('ZREM', resv, unpack(gone))
    redis.call('HDEL', costs, unpack(gone))
    redis.call('DECRBY', reserved, freed)
  end
end
"""

_ADMIT = _LAPSE_FUNCTION + """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNSEEDED') end
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local imp = KEYS[2]
local windows = {60000, 3600000, 86400000}
redis.call('ZREMRANGEBYSCORE', imp, '-inf', now - windows[3])
local function seen(since, campaign)
  local members = redis.call('ZRANGEBYSCORE', imp, since, '+inf')
  if not campaign then return #members end
  local prefix, count = campaign .. '|', 0
  for _, m in ipairs(members) do
    if string.sub(m, 1, #prefix) == prefix then count = count + 1 end
  end
  return count
end
local function capped(m, h, d, campaign)
  local caps = {tonumber(m), tonumber(h), tonumber(d)}
  for w = 1, 3 do
    if caps[w] >= 0 and seen(now - windows[w], campaign) >= caps[w] then return true end
  end
  return false
end
local user_capped = capped(ARGV[3], ARGV[4], ARGV[5], nil)
local out = {}
for i = 1, n do
  local k, a = 2 + (i - 1) * 5, 5 + (i - 1) * 9
  local reserved, resv, costs, spent, bid_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local bid, cost, limit, expires = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
  lapse(reserved, resv, costs, now)
  local held = (tonumber(redis.call('GET', spent)) or 0) + (tonumber(redis.call('GET', reserved)) or 0)
  if user_capped or capped(ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 6]) then
    out[i] = 'frequency_capped'
  elseif held + cost > limit then
    out[i] = 'budget'
  else
    redis.call('INCRBY', reserved, cost)
    redis.call('ZADD', resv, expires, bid)
    redis.call('HSET', costs, bid, cost .. ':' .. expires)
    -- relative to the node's clock, not Redis's: nodes and Redis need not agree on the time
    redis.call('SET', bid_key, ARGV[a + 5], 'PX', math.max(1, tonumber(expires) - now))
    out[i] = ''
  end
end
return out
"""

# KEYS: seeded, charged, reserved, resv, costs, spent, imp. ARGV: bid, price, at_ms, impression ('' for no user),
# spent ttl, charged ttl. Returns nil for a repeat, else the reservation it released ("cost:expiry", or '').
_CHARGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNSEEDED') end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[6]) then return false end
local held = redis.call('HGET', KEYS[5], ARGV[1])
if held then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('DECRBY', KEYS[3], tonumber(string.match(held, '^(%d+)')))
end
redis.call('INCRBY', KEYS[6], ARGV[2])
redis.call('EXPIRE', KEYS[6], ARGV[5])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[7], 86400000)
end
return held or ''
"""

# Takes a charge back (its SQL write failed). KEYS as _CHARGE. ARGV: bid, price, impression, held, now_ms, forget
_UNCHARGE = """
if ARGV[6] == '1' then redis.call('DEL', KEYS[2]) end
redis.call('DECRBY', KEYS[6], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[7], ARGV[3]) end
local cost, expires = string.match(ARGV[4], '^(%d+):(%d+)$')
if cost and tonumber(expires) > tonumber(ARGV[5]) then
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('ZADD', KEYS[4], expires, ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
end
return 1
"""

# KEYS: reserved, resv, costs of each campaign. ARGV: now_ms. What each campaign's live bids hold at `now`, once
# those that expired unbilled gave theirs back (a campaign with more than 256 such bids reads a little high).
_RESERVED = _LAPSE_FUNCTION + """
local now, out = tonumber(ARGV[1]), {}
for i = 1, #KEYS, 3 do
  lapse(KEYS[i], KEYS[i + 1], KEYS[i + 2], now)
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i])) or 0
end
return out
"""

# KEYS: seeded, then spent keys. ARGV: their values, then the ttl. Loads spend from SQL unless already seeded.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = ARGV[#ARGV]
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i - 1], 'EX', ttl) end
redis.call('SET', KEYS[1], '1')
return 1
"""


class RedisDeliveryStore(SqliteDeliveryStore):
    """Delivery for several nodes: admission, charges and caps in Redis, the record in SQL.

    What the SQLite store keeps in memory stays, as this node's view: spend is refreshed from Redis every
    `redis.spend_refresh_ms` (the bidder's quick first filter and the spend reports), impressions are those this
    node charged. The scripts above decide; the memory only spares Redis the requests that cannot bid.
    """

    def __init__(self, db: SqlDatabase, client: RedisClient, campaign_ids: Callable[[], Iterable[str]],
                 keep_s: float = 86_400, clock: Callable[[], float] = time.time) -> None:
        super().__init__(db, keep_s)
        self._r = client
        self._campaign_ids = campaign_ids
        self._now = clock
        redis = client.redis
        self._admit = redis.register_script(_ADMIT)
        self._charge = redis.register_script(_CHARGE)
        self._uncharge = redis.register_script(_UNCHARGE)
        self._seed = redis.register_script(_SEED)
        self._reserved_now = redis.register_script(_RESERVED)
        self.reseeds = 0

    def _k(self, *parts: str) -> str:
        return self._r.key(*parts)

    # ---- loading, and loading again when Redis lost what it held ----
    async def load(self, now: float) -> None:
        await super().load(now)
        try:
            await self.seed()
        except StorageUnavailable as exc:  # the node serves what needs no Redis; the first admission seeds
            log.warning("Redis is unavailable as the node starts: no bids until it is back", extra={"error": str(exc)})

    async def seed(self) -> None:
        """Load spend and the last day's impressions from SQL into Redis, unless Redis holds them already."""
        seeded = self._k("seeded")
        if await self._r.run("seed", self._r.redis.exists(seeded)):
            return
        now = self._now()
        rows = await self._db.fetchall("SELECT user_id, campaign_id, at FROM impressions WHERE at > ?",
                                       (now - 86_400,))
        for start in range(0, len(rows), 5000):  # idempotent (members name the row), so before the spend
            pipe = self._r.redis.pipeline(transaction=False)
            for user_id, campaign_id, at in rows[start:start + 5000]:
                key = self._k("imp", user_id)
                pipe.zadd(key, {f"{campaign_id}|seed-{at!r}": int(at * 1000)})
                pipe.pexpire(key, DAY_MS)
            await self._r.run("seed", pipe.execute())
        since = utc_day(now - SPEND_DAYS_HELD * 86_400)
        spend = await self._db.fetchall("SELECT campaign_id, day, spent_micros FROM campaign_spend WHERE day >= ?",
                                        (since,))
        keys = [seeded] + [self._k("spent", c, day) for c, day, _ in spend]
        if await self._r.run("seed", self._seed(keys, [v for _, _, v in spend] + [SPENT_TTL_S])):
            self.reseeds += 1
            log.info("loaded spend into Redis from the record", extra={"campaign_days": len(spend)})

    async def _script(self, what: str, call: Callable[[], object]):
        """Run a script; if Redis came back empty (UNSEEDED), load it from SQL and run it once more."""
        try:
            return await self._r.run(what, call())  # type: ignore[arg-type]
        except ResponseError as exc:
            if not error_named(exc, "UNSEEDED"):
                raise
        await self.seed()
        return await self._r.run(what, call())  # type: ignore[arg-type]

    # ---- the shared-bids port ----
    async def admit(self, bids: Sequence[Admission], user_id: str, user_caps: tuple[int, int, int],
                    now: float) -> list[str]:
        keys = [self._k("seeded"), self._k("imp", user_id or "-")]
        args: list[bytes | str | int] = [int(now * 1000), len(bids), *user_caps]
        day = utc_day(now)
        for a in bids:
            b = a.bid
            c = b.campaign_id
            keys += [self._k("reserved", c), self._k("resv", c), self._k("cost", c), self._k("spent", c, day),
                     self._k("bid", b.bid_id)]
            args += [b.bid_id, b.price_micros // 1000, a.limit_micros, int(b.expires_at * 1000),
                     msgspec.msgpack.encode(b), c, *a.caps]
        found = await self._script("admit", lambda: self._admit(keys, args))
        return [r.decode() if isinstance(r, bytes) else str(r) for r in found]

    async def find(self, bid_id: str) -> IssuedBid | None:
        if not _BID_ID.match(bid_id):
            return None
        raw = await self._r.run("find", self._r.redis.get(self._k("bid", bid_id)))
        if not isinstance(raw, bytes):
            return None
        bid = msgspec.msgpack.decode(raw, type=IssuedBid)
        return bid if bid.expires_at > self._now() else None

    # ---- charges: Redis first (once across nodes), then the record ----
    def _charge_keys(self, bid_id: str, campaign_id: str, user_id: str, day: str) -> list[str]:
        return [self._k("seeded"), self._k("charged", bid_id), self._k("reserved", campaign_id),
                self._k("resv", campaign_id), self._k("cost", campaign_id), self._k("spent", campaign_id, day),
                self._k("imp", user_id or "-")]

    async def _charge_once(self, bid_id: str, campaign_id: str, user_id: str, price_micros: int, day: str,
                           at: float) -> None:
        keys = self._charge_keys(bid_id, campaign_id, user_id, day)
        impression = f"{campaign_id}|{bid_id}" if user_id else ""
        held = await self._script("charge", lambda: self._charge(
            keys, [bid_id, price_micros, int(at * 1000), impression, SPENT_TTL_S, CHARGED_TTL_S]))
        if held is None:
            raise AlreadyCharged(bid_id)
        self._apply(campaign_id, user_id, price_micros, day, at)
        try:
            await self._persist_charge(bid_id, campaign_id, user_id, price_micros, day, at)
        except BaseException as exc:
            self._apply(campaign_id, user_id, price_micros, day, at, undo=True)
            # Stored before (Redis had lost its mark): keep the mark, take back the spend counted twice.
            forget = "0" if isinstance(exc, AlreadyCharged) else "1"
            try:
                await self._r.run("uncharge", self._uncharge(
                    keys, [bid_id, price_micros, impression, held or b"", int(self._now() * 1000), forget]))
            except StorageUnavailable:
                log.warning("a charge that failed to store stays counted in Redis (unreachable)",
                            extra={"bid_id": bid_id})
            raise

    async def reserved_now(self, campaign_ids: Sequence[str], now: float) -> list[int]:
        if not campaign_ids:
            return []
        keys = [k for c in campaign_ids for k in (self._k("reserved", c), self._k("resv", c), self._k("cost", c))]
        held = await self._r.run("reserved", self._reserved_now(keys, [int(now * 1000)]))
        return [as_int(v) for v in held]

    # ---- this node's view of spend ----
    async def refresh_spend(self) -> list[str]:
        """Today's spend of every campaign, as all the nodes charged it, into this node's view; the campaigns whose
        spend changed."""
        day = utc_day(self._now())
        ids = sorted(set(self._campaign_ids()))
        if not ids:
            return []
        values = await self._r.run("refresh", self._r.redis.mget([self._k("spent", c, day) for c in ids]))
        changed = []
        for c, v in zip(ids, values, strict=True):
            spent = as_int(v)
            if self.spend.get((c, day), 0) != spent:
                self.spend[(c, day)] = spent
                changed.append(c)
        if changed:
            self.version += 1
        return changed
