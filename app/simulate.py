"""`python -m app simulate`: synthetic travellers and sites driving a running Contrail through its real interfaces.

The population and its hidden truth come from ml/sim/ for `--seed`. The driver writes each traveller's profile
once (`PUT /v1/profiles/{user_id}`, before their first request), sends OpenRTB 2.6 bid requests for sampled
(traveller, site, device) impressions to `/v1/bid` at `--rate` a second, plays a simple exchange (our bid
wins when it beats a competing price drawn from the seed; a win clears at the higher of that price and the
floor, never above our bid; a loss is reported with reason 102), draws a click for each won impression from
the truth and calls the click notice, as a click tracker would. Its log (JSON lines, in request order) carries
each impression's true CTR for evaluation; the server is never told it.

Every random draw of a request is made before it is sent, from streams seeded by `--seed` alone, so the same
seed and the same server answers give the same requests. Loopback servers only.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import json
import math
import time
import zlib
from dataclasses import asdict, dataclass
from ssl import SSLContext
from typing import IO, Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from ml.sim.exchange import clearing_price, draw_prices
from ml.sim.population import COUNTRY, Population, Traveller, population
from ml.sim.shopping import PAY_SHARE, Search, Searches, choose, search_segment
from ml.sim.truth import Truth

LOSS_REASON = 102              # OpenRTB: lost to a higher bid
GUEST_RENEW_S = 25 * 60        # guest tokens last 30 minutes (auth.guest_token_ttl_s)
MEMBER_RENEW_S = 50 * 60       # customer tokens last an hour (auth.customer_token_ttl_s)
MAIL_DOMAIN = "@sim.contrail.example"
MAIL_POLL_S = 2.0
MAIL_SEEN = 10_000             # message ids remembered as answered
# The payment gateway's test card that succeeds (docs/api.md#payments), valid for years to come.
TEST_CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}
MAX_IN_FLIGHT = 256


def mail_address(traveller: Traveller) -> str:
    return f"{traveller.user_id}{MAIL_DOMAIN}"


class NotLoopback(ValueError):
    pass


def check_loopback(url: str) -> str:
    """The base URL, when it names a loopback server (the simulator drives only a local Contrail)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise NotLoopback(f"--url {url!r} is not an http(s) URL")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise NotLoopback(f"--url {url!r} is not a loopback address (127.0.0.0/8, ::1 or localhost)")
    return url.rstrip("/")


@dataclass(frozen=True)
class Draw:
    """Everything random about one request, drawn before it is sent."""
    n: int
    traveller: int
    site: int
    device: int
    floor: float
    competing: float
    click_u: float


class Draws:
    """The seeded streams of requests: the same seed gives the same sequence, whatever the server answers."""

    def __init__(self, pop: Population, seed: int) -> None:
        self._pop = pop
        self._rng = np.random.default_rng([seed, 0x51D])
        self._n = 0

    def next(self) -> Draw:
        pop, rng = self._pop, self._rng
        imp = pop.sample_impressions(rng, 1)
        site = pop.sites[int(imp["site"][0])]
        floor, competing = draw_prices(rng, np.array([site.floor]))   # the exchange of ml/sim/exchange.py
        draw = Draw(self._n, int(imp["traveller"][0]), site.index, int(imp["device"][0]), float(floor[0]),
                    float(competing[0]), float(rng.random()))
        self._n += 1
        return draw


def bid_request(pop: Population, draw: Draw, seed: int) -> dict[str, Any]:
    """The OpenRTB 2.6 request of one draw."""
    traveller, site = pop.travellers[draw.traveller], pop.sites[draw.site]
    w, h = site.size
    return {
        "id": f"sim{seed}-r{draw.n}", "at": 2, "tmax": 200, "cur": ["USD"],
        "imp": [{"id": "1", "bidfloor": draw.floor, "bidfloorcur": "USD", "banner": {"w": w, "h": h}}],
        "site": {"id": site.site_id, "domain": site.domain, "cat": [site.category],
                 "publisher": {"id": f"pub-{site.site_id}"}},
        "device": {"devicetype": draw.device, "geo": {"country": COUNTRY[traveller.home_airport]}},
        "user": {"id": traveller.user_id}}


@dataclass
class Summary:
    seed: int
    requests: int = 0
    bids: int = 0
    no_bids: int = 0
    wins: int = 0
    losses: int = 0
    clicks: int = 0
    profiles: int = 0
    searches: int = 0
    events: int = 0   # ingested (product views)
    mails: int = 0    # messages to simulated travellers, reported delivered
    opens: int = 0
    mail_clicks: int = 0
    accepts: int = 0
    paid: int = 0
    errors: int = 0
    seconds: float = 0.0


class Simulator:
    def __init__(self, seed: int, url: str, api_key: str, *, profile_key: str | None = None,
                 mail_key: str | None = None, log: IO[str] | None = None, ssl: SSLContext | bool = True) -> None:
        self.seed = seed
        self._ssl = ssl  # what https:// is verified against (True: the system's store)
        self.base = check_loopback(url)
        self.population = population(seed)
        self.truth = Truth(self.population)
        self._bid_headers = {"X-Api-Key": api_key, "Content-Type": "application/json"}
        self._profile_headers = {"X-Api-Key": profile_key or api_key}
        self._log = log
        self._profiles: dict[int, asyncio.Task[None]] = {}
        self._done: dict[int, dict[str, Any]] = {}
        self._next_line = 0
        self.summary = Summary(seed)
        self._start = 0.0
        self._routes: list[tuple[str, str]] = []
        self._guests: dict[int, tuple[str, float]] = {}  # traveller -> (guest token, when it was issued)
        self._told: dict[int, float] = {}  # traveller -> when the server was last told they were seen
        # With an admin key for the mailbox: members shop signed in, get mail, and their opens and clicks come back.
        self._mail_headers = {"X-Api-Key": mail_key} if mail_key else None
        self._members: dict[int, tuple[str, float]] = {}  # traveller -> (customer token, when it was issued)
        self._mailed: dict[str, None] = {}  # message ids answered (the newest MAIL_SEEN, in order)

    async def run(self, rate: float, seconds: float, session: aiohttp.ClientSession | None = None,
                  search_rate: float = 0.0) -> Summary:
        """Send `rate` bid requests a second (and `search_rate` searches) for `seconds` (inf: until cancelled), then
        wait for the ones in flight and stop."""
        own = session is None
        session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                                   connector=aiohttp.TCPConnector(ssl=self._ssl))
        shopping = asyncio.create_task(self._shop_at(session, search_rate, seconds)) if search_rate > 0 else None
        mail = asyncio.create_task(self._read_mail(session)) if self._mail_headers is not None else None
        draws = Draws(self.population, self.seed)
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        self._start = time.time()
        started = loop.time()

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            limit.release()

        try:
            for n in itertools.count() if math.isinf(seconds) else range(int(rate * seconds)):
                delay = started + n / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await limit.acquire()
                task = asyncio.create_task(self._one(session, draws.next()))
                tasks.add(task)
                task.add_done_callback(finished)
            if tasks:
                await asyncio.wait(tasks, timeout=15)
            if shopping is not None:
                await shopping
            if mail is not None:  # what was mailed by now is answered before the run ends
                await self._answer_mail(session)
        finally:
            for task in tasks:
                task.cancel()
            for background in (shopping, mail):
                if background is not None:
                    background.cancel()
                    await asyncio.gather(background, return_exceptions=True)
            if own:
                await session.close()
        self._flush(final=True)
        self.summary.seconds = round(loop.time() - started, 3)
        return self.summary

    async def _profile(self, session: aiohttp.ClientSession, index: int) -> None:
        """Write a traveller's profile once (concurrent first requests wait for the same write)."""
        task = self._profiles.get(index)
        if task is None:
            traveller = self.population.travellers[index]
            body = traveller.profile(self._start)
            self._told[index] = body["last_seen"]
            task = self._profiles[index] = asyncio.ensure_future(self._put(session, traveller.user_id, body))
            task.add_done_callback(functools.partial(self._profile_written, index))
        await asyncio.shield(task)

    def _profile_written(self, index: int, task: asyncio.Task[None]) -> None:
        """A write that failed (the server gone, a refusal) is tried again by the traveller's next request. Its
        error is taken here: the requests that waited for it may have been cancelled (the run ending) and
        never read it."""
        if task.cancelled() or task.exception() is not None:
            if self._profiles.get(index) is task:
                del self._profiles[index]
                self._told.pop(index, None)

    def recency(self, index: int, now: float) -> float:
        """The recency feature the server holds for a traveller now: from when it was last told the traveller was
        seen (the profile's last_seen, or an ingested event since), as ml/features.py computes it. The truth clicks
        on what the server knows, so this moves with every event the simulator sends."""
        told = self._told.get(index)
        if told is None:  # not told yet: what the profile about to be written will say
            return self.population.recency(self.population.travellers[index], now - self._start)
        return 1.0 / (1.0 + max(0.0, now - told) / 86_400)

    async def _put(self, session: aiohttp.ClientSession, user_id: str, body: dict) -> None:
        async with session.put(f"{self.base}/v1/profiles/{user_id}", json=body,
                               headers=self._profile_headers) as resp:
            await resp.read()
            if resp.status != 200:
                self.summary.errors += 1
                raise RuntimeError(f"PUT /v1/profiles/{user_id}: {resp.status}")
            self.summary.profiles += 1

    async def _get(self, session: aiohttp.ClientSession, path: str, params: dict[str, str]) -> bool:
        async with session.get(f"{self.base}{path}", params=params) as resp:
            await resp.read()
            if resp.status != 200:
                self.summary.errors += 1
            return resp.status == 200

    async def _one(self, session: aiohttp.ClientSession, draw: Draw) -> None:
        pop, s = self.population, self.summary
        traveller, site = pop.travellers[draw.traveller], pop.sites[draw.site]
        recency = self.recency(draw.traveller, time.time())
        true_ctr = self.truth.p_click(traveller, draw.device, recency)
        line: dict[str, Any] = {
            "request_id": f"sim{self.seed}-r{draw.n}", "user_id": traveller.user_id, "site": site.site_id,
            "device": draw.device, "recency": round(recency, 6), "bid_id": None, "bid": None, "won": False,
            "price": None, "clicked": False, "true_ctr": round(true_ctr, 6), "at": round(time.time(), 3)}
        try:
            await self._profile(session, draw.traveller)
            s.requests += 1
            async with session.post(f"{self.base}/v1/bid", data=json.dumps(bid_request(pop, draw, self.seed)),
                                    headers=self._bid_headers) as resp:
                body = await resp.read()
                status = resp.status
            if status == 204:
                s.no_bids += 1
                return
            if status != 200:
                s.errors += 1
                return
            answer = json.loads(body)
            if not answer.get("seatbid"):
                s.no_bids += 1
                return
            bid = answer["seatbid"][0]["bid"][0]
            s.bids += 1
            ours = float(bid["price"])
            line.update(bid_id=bid["id"], bid=ours)
            if ours > draw.competing:
                # Second price: the higher of the competing bid and the floor, never above our bid.
                clearing = float(clearing_price(ours, draw.competing, draw.floor))
                if await self._get(session, "/v1/notices/win", {"bid": bid["id"], "price": f"{clearing:.4f}"}):
                    s.wins += 1
                    line.update(won=True, price=clearing)
                    if draw.click_u < true_ctr:
                        if await self._get(session, "/v1/notices/click", {"bid": bid["id"]}):
                            s.clicks += 1
                            line["clicked"] = True
            else:
                if await self._get(session, "/v1/notices/loss", {"bid": bid["id"], "reason": str(LOSS_REASON),
                                                                 "price": f"{draw.competing:.4f}"}):
                    s.losses += 1
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError, KeyError, IndexError):
            s.errors += 1
        finally:
            self._done[draw.n] = line
            self._flush()

    async def _shop_at(self, session: aiohttp.ClientSession, rate: float, seconds: float) -> None:
        """Searches at `rate` a second, each answered by the traveller's choice among the offers shown."""
        async with session.get(f"{self.base}/v1/routes") as resp:
            self._routes = [(r["origin"], r["destination"]) for r in (await resp.json())["items"]]
        if not self._routes:
            return
        searches = Searches(self.population, self.seed, len(self._routes))
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for n in itertools.count() if math.isinf(seconds) else range(int(rate * seconds)):
                delay = started + n / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) < MAX_IN_FLIGHT:  # a server that cannot keep up gets fewer searches, not a pile
                    task = asyncio.create_task(self._shop(session, searches.next()))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=15)
        finally:
            for task in tasks:
                task.cancel()

    async def _guest(self, session: aiohttp.ClientSession, traveller: int) -> str:
        """The traveller's guest session (renewed before the token's 30 minutes are up)."""
        token, issued = self._guests.get(traveller, ("", 0.0))
        if not token or time.time() - issued > GUEST_RENEW_S:
            async with session.post(f"{self.base}/v1/auth/guest") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"POST /v1/auth/guest: {resp.status}")
                token = (await resp.json())["access_token"]
            self._guests[traveller] = (token, time.time())
        return token

    async def _sign_in(self, session: aiohttp.ClientSession, traveller: int) -> str:
        """A member (tier above Blue) shops with their customer account when mail is simulated (registered once,
        signed in again before the token's hour is up); everyone else as a guest."""
        member = self.population.travellers[traveller]
        if self._mail_headers is None or member.tier <= 0:
            return await self._guest(session, traveller)
        token, issued = self._members.get(traveller, ("", 0.0))
        if not token or time.time() - issued > MEMBER_RENEW_S:
            login = {"email": mail_address(member), "password": f"sim-{self.seed}-{member.user_id}"}
            async with session.post(f"{self.base}/v1/accounts", json=login) as resp:
                await resp.read()
                if resp.status not in (201, 409):  # 409: registered by an earlier run
                    raise RuntimeError(f"POST /v1/accounts: {resp.status}")
            token = (await self._post(session, "/v1/auth/token", {}, login))["access_token"]
            self._members[traveller] = (token, time.time())
        return token

    async def _read_mail(self, session: aiohttp.ClientSession) -> None:
        """Play the mailbox provider: every MAIL_POLL_S, read what the node sent (the embedded sink's mailbox), and
        report each new message to a simulated traveller delivered, opened and clicked as the truth decides, in
        SendGrid Event Webhook form."""
        while True:
            await asyncio.sleep(MAIL_POLL_S)
            await self._answer_mail(session)

    async def _answer_mail(self, session: aiohttp.ClientSession) -> None:
        assert self._mail_headers is not None
        try:
            async with session.get(f"{self.base}/v1/admin/mailbox", params={"limit": "200"},
                                   headers=self._mail_headers) as resp:
                messages = (await resp.json())["items"] if resp.status == 200 else []
            events = []
            for message in messages:
                events += self._mail_events(message)
            if events:
                await self._post(session, "/v1/webhooks/sendgrid", {}, events)
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError, KeyError, TypeError):
            self.summary.errors += 1

    def _mail_events(self, message: dict) -> list[dict]:
        message_id = message.get("message_id", "")
        to = (message.get("to") or [""])[0]
        traveller = self.population.by_id.get(to.removesuffix(MAIL_DOMAIN)) if to.endswith(MAIL_DOMAIN) else None
        if traveller is None or not message_id or message_id in self._mailed:
            return []
        self._mailed[message_id] = None
        if len(self._mailed) > MAIL_SEEN:
            del self._mailed[next(iter(self._mailed))]
        rng = np.random.default_rng([self.seed, 0xE3A1, zlib.crc32(message_id.encode())])
        topic = zlib.crc32(message.get("subject", "").encode()) % 64
        opened = rng.random() < self.truth.p_email_open(traveller)
        clicked = opened and rng.random() < self.truth.p_email_click(traveller, topic)
        s, now = self.summary, int(time.time())
        s.mails += 1
        s.opens += opened
        s.mail_clicks += clicked
        kinds = ["delivered"] + ["open"] * opened + ["click"] * clicked
        return [{"email": to, "timestamp": now, "event": kind, "smtp-id": message_id,
                 "sg_event_id": f"sim{self.seed}-{message_id.strip('<>')}-{kind}",
                 "sg_message_id": f"sim{self.seed}.{message_id.strip('<>')}",
                 **({"url": "https://contrail.example/offers"} if kind == "click" else {})} for kind in kinds]

    async def _post(self, session: aiohttp.ClientSession, path: str, headers: dict[str, str],
                    body: dict | list | None = None) -> dict:
        async with session.post(f"{self.base}{path}", json=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
            if resp.status not in (200, 201):
                raise RuntimeError(f"POST {path}: {resp.status}")
            return answer

    async def _viewed(self, session: aiohttp.ClientSession, search: Search, destination: str) -> None:
        """The web channel reports that the traveller looked at the destination (`product_view` through ingest, the
        carrier's destination item): the recommendations learn from it and the server's recency moves."""
        traveller = self.population.travellers[search.traveller]
        at = time.time()
        await self._post(session, "/v1/channels/ingest", self._profile_headers, {
            "source": "web", "type": "product_view", "user_id": traveller.user_id, "at": at,
            "session_id": f"sim{self.seed}-s{search.n}", "product_id": f"dest-{destination}"})
        self._told[search.traveller] = at
        self.summary.events += 1

    async def _shop(self, session: aiohttp.ClientSession, search: Search) -> None:
        """One search: the offers shown, the traveller's choice drawn from the truth, the accept and the payment."""
        s, traveller = self.summary, self.population.travellers[search.traveller]
        origin, destination = self._routes[search.route]
        line: dict[str, Any] = {"search_id": f"sim{self.seed}-s{search.n}", "user_id": traveller.user_id,
                                "route": f"{origin}-{destination}", "segment": search_segment(traveller),
                                "offers": [], "accepted": None, "order_id": None, "paid": False,
                                "at": round(time.time(), 3)}
        try:
            await self._profile(session, search.traveller)  # before the events that move its recency
            auth = {"Authorization": f"Bearer {await self._sign_in(session, search.traveller)}"}
            day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + search.days_ahead * 86_400))
            found = await self._post(session, "/v1/offers/search", auth, {
                "origin": origin, "destination": destination, "departure_date": day,
                "passengers": search.passengers, "cabin": search.cabin, "segment": line["segment"]})
            s.searches += 1
            await self._viewed(session, search, destination)
            offers = found["offers"]
            pick, p = choose(self.truth, traveller, [([i["kind"] for i in o["items"]], o["total_cents"] / 100)
                                                     for o in offers], search)
            line["offers"] = [{"offer_id": o["id"], "bundle": o["bundle"], "total_cents": o["total_cents"],
                               "p_accept": round(q, 6)} for o, q in zip(offers, p, strict=True)]
            if pick is None:
                return
            offer_id = offers[pick]["id"]
            order = await self._post(session, f"/v1/offers/{offer_id}/accept",
                                     {**auth, "Idempotency-Key": f"accept-{offer_id}"})
            s.accepts += 1
            line.update(accepted=offer_id, order_id=order["id"])
            if search.pay_u < PAY_SHARE:
                await self._post(session, f"/v1/orders/{order['id']}/pay",
                                 {**auth, "Idempotency-Key": f"pay-{order['id']}"}, {"card": TEST_CARD})
                s.paid += 1
                line["paid"] = True
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError, KeyError, IndexError, TypeError):
            s.errors += 1
        finally:
            self._write(line)

    def _flush(self, final: bool = False) -> None:
        """Write finished lines in request order (the last ones at the end, whatever is missing)."""
        while self._next_line in self._done:
            self._write(self._done.pop(self._next_line))
            self._next_line += 1
        if final:
            for n in sorted(self._done):
                self._write(self._done.pop(n))

    def _write(self, line: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(line, separators=(",", ":")) + "\n")


async def simulate(seed: int, rate: float, seconds: float, url: str, api_key: str, log_path: str | None = None,
                   profile_key: str | None = None, search_rate: float = 0.0,
                   mail_key: str | None = None) -> dict[str, Any]:
    """The `simulate` command: runs, writes the log, returns the summary."""
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    try:
        sim = Simulator(seed, url, api_key, profile_key=profile_key, mail_key=mail_key, log=log)
        return asdict(await sim.run(rate, seconds, search_rate=search_rate))
    finally:
        if log is not None:
            log.close()
