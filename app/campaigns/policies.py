"""Offer selection per campaign: a bandit policy over a campaign's creatives or offers (docs/policies.md).

Each campaign may have one policy (ml/bandit: thompson, epsilon_greedy or uniform), optionally per context bucket
(e.g. tier or device). A decision for a live campaign asks the external decision service first when one is
configured (and the policy lets it), within `decision_deadline_ms`, through the shared CircuitBreaker; a failure,
timeout, slow answer (over `breaker_slow_ms`), answer that is not one of the arms, or an open breaker falls back to
the local policy, counted by reason. Rewards arrive as RewardSignalled on the bus: each signal id teaches once,
the policy's new state and the id are committed in one transaction, and the reward is forwarded to the decision
service in the background. The state is rebuilt from the store on start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from app.bidding.campaigns import CampaignService
from app.bidding.events import BidClicked
from app.campaigns.events import CampaignChanged
from app.campaigns.ports import DecisionService
from app.config import CampaignsConfig
from app.errors import Conflict, InvalidInput, NotFound
from app.loyalty.events import RewardSignalled
from app.retail.events import OrderPaid
from app.runtime.breaker import CircuitBreaker
from app.runtime.bus import Bus
from app.runtime.clock import Clock
from app.runtime.metrics import Metrics
from ml.bandit.policies import Policy, make_policy
from state.campaigns import Campaign
from state.ports import ChangeFeed, PolicyStore

log = logging.getLogger("contrail.campaigns.policies")

KINDS = ("thompson", "epsilon_greedy", "uniform")
ARMS = ("creatives", "offers")
LOCAL, REMOTE, FALLBACK = "local", "remote", "fallback"
BREAKER_STATES = {CircuitBreaker.CLOSED: "closed", CircuitBreaker.HALF_OPEN: "half_open",
                  CircuitBreaker.OPEN: "open"}
MAX_CONTEXT_NAMES = 4       # context names a policy buckets by
MAX_BUCKET_VALUE = 64       # characters of a context value that make its bucket
SENDS_IN_FLIGHT = 256       # rewards being forwarded to the decision service; more are dropped and counted
PURGE_EVERY_S = 3600.0      # forgotten signal ids are purged lazily, at most this often, by the reward path
PURGE_CHUNK = 5_000
CONVERSION_REWARD = 2.0     # a paid order after a decision, as much as a redemption
CLICK_REWARD = 1.0          # a click notice on a decided creative, as much as a clicked signal
CONVERSION_WINDOW_S = 7 * 86_400.0  # how long after a decision a paid order still counts for it
LEARN_ATTEMPTS = 8          # a reward's tries when other nodes keep learning first (each try reads their state)
POLICY_NOTICE = "policy"    # the change notice another node reads a campaign's stored policy back on


class Stored(msgspec.Struct, frozen=True):
    """A campaign's policy as stored: its settings and the bandit's state (ml/bandit Policy.to_bytes, as text)."""
    kind: str
    arms: str
    context: list[str]
    epsilon: float | None
    remote: bool
    configured_by: str
    configured_at: float
    updated_at: float
    state: str


class ArmPosterior(msgspec.Struct):
    """One arm's posterior: Thompson's success rate (a click one success, a redemption two, an ignored offer one
    failure) with its 90% credible interval; the other kinds' mean reward with a 90% interval."""
    arm: str
    mean: float
    interval: list[float]
    pulls: int           # rewards learned
    reward_sum: float
    in_campaign: bool    # still one of the campaign's creatives or offers


class BucketPosterior(msgspec.Struct):
    bucket: str          # e.g. "tier=Gold"
    arms: list[ArmPosterior]


class PolicyView(msgspec.Struct):
    campaign_id: str
    kind: str
    arms: str            # what the arms are: the campaign's creatives or its offers
    context: list[str]
    epsilon: float | None
    remote: bool         # the decision service is asked first (when one is configured)
    configured_by: str
    configured_at: float
    updated_at: float
    posterior: list[ArmPosterior]        # every reward, whatever its context
    buckets: list[BucketPosterior]       # per context bucket (empty without context)
    decision_service: str                # "none", or its breaker's state: closed, half_open, open


class Decision(msgspec.Struct):
    arm: str
    source: str          # local, remote or fallback
    policy: str          # the policy's kind
    fallback_reason: str | None = None   # error, timeout, slow, breaker_open, bad_answer


@dataclass
class _Held:
    stored: Stored
    policy: Policy
    lock: asyncio.Lock
    body: bytes  # the stored row this state was read from or written as: a reward is written only over it

    def replace(self, other: _Held) -> None:
        """Take another read of the same campaign's policy, keeping this one's lock."""
        self.stored, self.policy, self.body = other.stored, other.policy, other.body


def _decoded(campaign_id: str, body: bytes) -> _Held | None:
    """A stored policy, or None (logged) when its row cannot be read."""
    try:
        stored = msgspec.json.decode(body, type=Stored)
        return _Held(stored, Policy.from_bytes(stored.state.encode()), asyncio.Lock(), bytes(body))
    except (msgspec.DecodeError, ValueError) as exc:
        log.error("a stored policy could not be read", extra={"campaign_id": campaign_id, "error": str(exc)[:300]})
        return None


def arms_of(campaign: Campaign, arms: str) -> list[str]:
    """The campaign's arms: its creatives' ids or its offer ids, each once, and none empty (a reward signal could
    never name it). Input refuses both; a campaign stored before it did is decided for without them."""
    ids = (c.id for c in campaign.creatives) if arms == "creatives" else iter(campaign.offer_ids)
    return list(dict.fromkeys(i for i in ids if i))


def bucket_of(names: list[str], context: Mapping[str, Any]) -> str:
    """The context bucket: "name=value" for each of the policy's context names, joined by "&"; "" without any."""
    values = ((n, context.get(n)) for n in names)
    return "&".join(f"{n}={'' if v is None else str(v)[:MAX_BUCKET_VALUE]}" for n, v in values)


class PolicyService:
    def __init__(self, campaigns: CampaignService, store: PolicyStore, config: CampaignsConfig, clock: Clock,
                 metrics: Metrics, bus: Bus, decision: DecisionService | None, *,
                 route_of: Callable[[str], str | None] = lambda flight_id: None,
                 rng: np.random.Generator | None = None, timer: Callable[[], float] = time.perf_counter,
                 changes: ChangeFeed | None = None) -> None:
        """`changes`: with several nodes, where this one tells the others a policy's stored state changed."""
        self._campaigns = campaigns
        self._changes = changes
        self._store = store
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._decision = decision
        self._rng = rng if rng is not None else np.random.default_rng()
        self._timer = timer
        self._held: dict[str, _Held] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._catalog_task: asyncio.Task[None] | None = None
        self._catalog_dirty = False
        self._purged_at = 0.0
        self.forward_failures = 0     # rewards the decision service was not told (failed or dropped)
        self.catalog_failures = 0
        metrics.policy_breaker.set(CircuitBreaker.CLOSED)
        self.breaker = CircuitBreaker(clock, failures=config.breaker_failures, open_s=config.breaker_open_s,
                                      successes=config.breaker_successes, on_change=metrics.policy_breaker.set)
        self._route_of = route_of
        bus.subscribe(RewardSignalled, self._on_reward)
        bus.subscribe(CampaignChanged, self._campaign_changed)
        bus.subscribe(OrderPaid, self._on_paid)
        bus.subscribe(BidClicked, self._on_click)

    async def load(self) -> None:
        """Rebuild the policies of the campaigns held (not archived) from the store (a row that cannot be read is
        logged and skipped)."""
        self._held.clear()
        for campaign_id, body in await self._store.load_all():
            if self._campaigns.exists(campaign_id):
                held = _decoded(campaign_id, body)
                if held is not None:
                    self._held[campaign_id] = held

    def __len__(self) -> int:
        """How many policies are held in memory: those of the campaigns that are not archived."""
        return len(self._held)

    def forget_archived(self) -> int:
        """Let go of the policies of campaigns no longer held: archived on another node, which this one heard as a
        stored change, not as CampaignChanged. Returns how many went."""
        gone = [campaign_id for campaign_id in self._held if not self._campaigns.exists(campaign_id)]
        for campaign_id in gone:
            del self._held[campaign_id]
        return len(gone)

    # ---- configuring and reading ----
    async def configure(self, actor: str, campaign_id: str, kind: str, arms: str, context: list[str],
                        epsilon: float | None = None, remote: bool = True) -> PolicyView:
        """Create or replace the campaign's policy; the learned state is kept when kind and arms are unchanged."""
        campaign = await self._campaigns.read(campaign_id)
        if campaign.state == "archived":
            raise Conflict(f"campaign {campaign_id} is archived: its policy is the record of what it learned",
                           {"state": campaign.state})
        _check_settings(kind, arms, context, epsilon)
        if kind == "epsilon_greedy" and epsilon is None:
            epsilon = 0.1
        held = self._held.get(campaign_id)
        now = self._clock.now()
        lock = held.lock if held is not None else asyncio.Lock()
        async with lock:
            held = self._held.get(campaign_id)
            if held is not None and held.stored.kind == kind and held.stored.arms == arms:
                policy = Policy.from_bytes(held.policy.to_bytes())
                if epsilon is not None:
                    policy.epsilon = float(epsilon)  # type: ignore[attr-defined]  # an EpsilonGreedyPolicy
            else:
                policy = make_policy(kind, **({"epsilon": epsilon} if epsilon is not None else {}))
            policy.set_arms(arms_of(campaign, arms))
            stored = Stored(kind, arms, list(context), epsilon, remote, actor, now, now, policy.to_bytes().decode())
            body = msgspec.json.encode(stored)
            await self._store.save(campaign_id, body, now)
            held = self._held[campaign_id] = _Held(stored, policy, lock, body)
        self._notify(campaign_id)
        log.info("policy configured", extra={"campaign_id": campaign_id, "kind": kind, "arms": arms, "by": actor})
        if campaign.state == "live":
            self._sync_catalog()
        return self._view(campaign, held)

    async def view(self, campaign_id: str) -> PolicyView:
        campaign = await self._campaigns.read(campaign_id)
        if campaign.state == "archived":  # its policy left memory with it
            body = await self._store.load_one(campaign_id)
            held = _decoded(campaign_id, body) if body is not None else None
            if held is not None:
                return self._view(campaign, held)
        return self._view(campaign, await self._policy_of(campaign))

    async def _policy_of(self, campaign: Campaign) -> _Held:
        held = self._held.get(campaign.id) or await self._read(campaign.id)
        if held is None:
            raise Conflict(f"campaign {campaign.id} has no policy: configure one with PUT "
                           f"/v1/admin/campaigns/{campaign.id}/policy", {"policy": None}, code="no_policy")
        return held

    def _view(self, campaign: Campaign, held: _Held) -> PolicyView:
        current = set(arms_of(campaign, held.stored.arms))
        held.policy.set_arms(sorted(current - set(held.policy.arms)))

        def posterior(bucket: str) -> list[ArmPosterior]:
            return [ArmPosterior(p["arm"], p["mean"], [p["lower"], p["upper"]], p["pulls"], p["reward_sum"],
                                 p["arm"] in current) for p in held.policy.posterior(bucket)]

        s = held.stored
        service = "none" if self._decision is None else BREAKER_STATES[self.breaker.state]
        return PolicyView(campaign.id, s.kind, s.arms, s.context, s.epsilon, s.remote, s.configured_by,
                          s.configured_at, s.updated_at, posterior(""),
                          [BucketPosterior(b, posterior(b)) for b in held.policy.buckets if b], service)

    # ---- deciding ----
    async def decide(self, campaign_id: str, user_id: str, context: Mapping[str, Any]) -> Decision:
        """The arm to show this customer: the decision service's when it answers well and in time, else the
        campaign's local policy's. Only a live campaign decides (409 naming its state otherwise)."""
        campaign = await self._campaigns.read(campaign_id)
        if campaign.state != "live":  # first: whatever else is wrong, a campaign that is not live never decides
            raise Conflict(f"cannot decide for campaign {campaign_id}: it is {campaign.state} (only live campaigns "
                           "appear in offers)",
                           {"state": campaign.state})
        held = await self._policy_of(campaign)
        arms = arms_of(campaign, held.stored.arms)
        if not arms:
            raise Conflict(f"campaign {campaign_id} has no {held.stored.arms} to choose from",
                           {"arms": held.stored.arms})
        kind = held.stored.kind
        reason: str | None = None
        if self._decision is not None and held.stored.remote:
            arm, reason = await self._remote(self._decision, user_id, dict(context), arms)
            if arm is not None:
                await self.remember(user_id, campaign_id, arm, context)
                return self._chosen(Decision(arm, REMOTE, kind))
        held = self._held.get(campaign_id, held)  # the policy may have been replaced while the remote was asked
        arm = held.policy.choose(bucket_of(held.stored.context, context), self._rng, allowed=arms)
        await self.remember(user_id, campaign_id, arm, context)
        if reason is None:
            return self._chosen(Decision(arm, LOCAL, kind))
        self._metrics.policy_fallbacks.labels(reason).inc()
        return self._chosen(Decision(arm, FALLBACK, kind, reason))

    def _chosen(self, decision: Decision) -> Decision:
        self._metrics.policy_choices.labels(decision.source).inc()
        return decision

    async def remember(self, user_id: str, campaign_id: str, arm: str, context: Mapping[str, Any]) -> None:
        """The customer's decision for the campaign, stored before `decide` answers (replacing their one before):
        a paid order or click within the window is credited to it, after a restart or on another node too."""
        shown = {str(k): str(v)[:MAX_BUCKET_VALUE] for k, v in context.items()}
        await self._store.remember(user_id, campaign_id, arm, msgspec.json.encode(shown).decode(), self._clock.now())

    async def _decisions(self, *user_ids: str) -> list[tuple[str, str, dict[str, str], float]]:
        """(campaign id, arm, context, at) of the customers' decisions within the window, oldest first."""
        since = self._clock.now() - CONVERSION_WINDOW_S
        return [(campaign_id, arm, msgspec.json.decode(context), at)
                for campaign_id, arm, context, at in await self._store.decisions(list(user_ids), since)]

    async def forget_decisions(self, user_id: str) -> None:
        """An erased customer's decisions (app/privacy.py), under their account id or as an order's owner."""
        for named in (user_id, f"user:{user_id}"):
            await self._store.forget_decisions(named)

    async def _on_paid(self, event: OrderPaid) -> None:
        """A paid order rewards the last decision each campaign made for its owner in the window: a creative shown
        (any order converts), or an offer arm the order is for (its offer, route or one of its products)."""
        order = event.order
        kind, _, account = order.owner.partition(":")
        held = await self._decisions(order.owner, *([account] if kind == "user" else []))
        if not held:
            return
        now = self._clock.now()
        route = self._route_of(order.flight_id)
        bought = {order.offer_id, *(i.product_id for i in order.items), *([route] if route else [])}
        for campaign_id, arm, context, at in held:
            policy = self._held.get(campaign_id)
            if policy is None or now - at > CONVERSION_WINDOW_S:
                continue
            if policy.stored.arms == "offers" and arm not in bought:
                continue
            await self.learn(RewardSignalled(f"order:{order.id}:{campaign_id}", order.owner, arm, "converted",
                                             CONVERSION_REWARD, None, campaign_id, arm, dict(context), now))

    async def _on_click(self, event: BidClicked) -> None:
        """A click notice on an ad whose creative the campaign's creatives policy decided for this customer in the
        window: that decision's reward, as a `clicked` signal (once per bid). A click with no decision behind it
        teaches nothing: the policy saw no trial it could credit."""
        now = self._clock.now()
        for campaign_id, arm, context, at in await self._decisions(event.user_id):
            policy = self._held.get(campaign_id)
            if campaign_id != event.campaign_id or arm != event.creative_id or policy is None \
                    or policy.stored.arms != "creatives" or now - at > CONVERSION_WINDOW_S:
                continue
            await self.learn(RewardSignalled(f"click:{event.bid_id}", event.user_id, arm, "clicked", CLICK_REWARD,
                                             None, campaign_id, arm, dict(context), now))
            return

    async def _remote(self, decision: DecisionService, user_id: str, context: dict[str, Any],
                      arms: list[str]) -> tuple[str | None, str | None]:
        """(the service's arm or None, the fallback reason or None). None, None: it has no opinion."""
        if not self.breaker.allow():
            return None, "breaker_open"
        started = self._timer()
        try:
            async with asyncio.timeout(self._config.decision_deadline_ms / 1000):
                action = await decision.get_recommendation(user_id, context, arms)
        except asyncio.CancelledError:
            self.breaker.failed()  # a half-open trial is not left in flight
            raise
        except TimeoutError:
            reason = "timeout"
        except Exception as exc:  # IntegrationError (adapters/http/retry.py), or anything a broken client raises
            reason = _failure_reason(exc)
            log.warning("decision service failed", extra={"reason": reason, "error": str(exc)[:300]})
        else:
            if self._timer() - started > self._config.breaker_slow_ms / 1000:
                reason = "slow"
            elif action is not None and action not in arms:
                reason = "bad_answer"
            else:
                self.breaker.succeeded()
                return action, None
        self.breaker.failed()
        return None, reason

    # ---- learning ----
    async def check_signal(self, campaign_id: str, arm: str) -> None:
        """Refuse a reward signal that could never teach: NotFound for a campaign that does not exist, InvalidInput
        for an arm that neither the campaign's policy nor the campaign has (a typo, or another campaign's arm).
        A campaign without a policy, or archived, takes it: the signal is still logged for training."""
        campaign = await self._campaigns.read(campaign_id)
        held = self._held.get(campaign_id) or await self._read(campaign_id)
        if held is None:
            return
        if arm not in held.policy.arms and arm not in arms_of(campaign, held.stored.arms):
            raise InvalidInput(f"arm {arm} is not one of campaign {campaign_id}'s {held.stored.arms}",
                               {"field": "arm"})

    async def learn(self, event: RewardSignalled) -> str | None:
        """Teach the campaign's policy a reward signal once per signal id; the outcome counted (learned, repeat,
        no_policy, unknown_arm), None for a signal that names no campaign."""
        if event.campaign_id is None or not event.signal_id:
            return None
        held = self._held.get(event.campaign_id) or await self._read(event.campaign_id)
        if held is None:
            return self._outcome("no_policy")
        arm = event.arm or event.offer_id
        campaign = self._find(event.campaign_id)
        known = set(held.policy.arms) | (set(arms_of(campaign, held.stored.arms)) if campaign is not None else set())
        if arm not in known:
            return self._outcome("unknown_arm")
        if await self._store.seen(event.signal_id):
            return self._outcome("repeat")
        context: dict[str, Any] = {"tier": event.tier} if event.tier is not None else {}
        context.update(event.context)
        now = self._clock.now()
        for _ in range(LEARN_ATTEMPTS):
            async with held.lock:
                held = self._held.get(event.campaign_id, held)
                # Read together, before the write's await: a read of another node's state may replace them then.
                before, previous = held.stored, held.body
                bucket = bucket_of(before.context, context)
                policy = Policy.from_bytes(held.policy.to_bytes())
                policy.update(arm, event.reward, bucket)
                if bucket and policy.bucket_key(bucket) == bucket:  # an overflowing bucket's reward went to "" already
                    policy.update(arm, event.reward, "")  # the pooled view, and what an overflowing bucket uses
                stored = msgspec.structs.replace(before, updated_at=now, state=policy.to_bytes().decode())
                body = msgspec.json.encode(stored)
                if await self._store.learn(event.campaign_id, body, event.signal_id, now, previous):
                    held.policy, held.stored, held.body = policy, stored, body
                    break
            # Refused: the signal was learned meanwhile, or another node learned first (read its state, try again).
            if await self._store.seen(event.signal_id):
                return self._outcome("repeat")
            fresh = await self._read(event.campaign_id)
            if fresh is None:
                return self._outcome("no_policy")
            held = fresh
        else:
            log.warning("a reward lost the race for its policy too often", extra={
                "campaign_id": event.campaign_id, "signal_id": event.signal_id})
            return self._outcome("conflict")
        self._notify(event.campaign_id)
        self._forward(event.user_id, arm, event.reward)
        if now - self._purged_at >= PURGE_EVERY_S:
            self._purged_at = now
            await self.purge_signals()
        return self._outcome("learned")

    async def _read(self, campaign_id: str) -> _Held | None:
        """The campaign's policy as stored, now held (None when it has none, or the campaign is not held: archived
        or unknown): another node configured it or learned since this one read it."""
        if not self._campaigns.exists(campaign_id):
            return None
        body = await self._store.load_one(campaign_id)
        fresh = _decoded(campaign_id, body) if body is not None else None
        if fresh is None:
            return None
        held = self._held.get(campaign_id)
        if held is None:
            held = self._held[campaign_id] = fresh
        else:
            held.replace(fresh)
        return held

    async def refresh(self, campaign_ids: list[str]) -> None:
        """Another node changed these campaigns' policies: read them back (their decisions use what it learned)."""
        for campaign_id in campaign_ids:
            await self._read(campaign_id)

    def _notify(self, campaign_id: str) -> None:
        if self._changes is not None:
            self._changes.changed(POLICY_NOTICE, [campaign_id])

    async def _on_reward(self, event: RewardSignalled) -> None:
        await self.learn(event)

    def _find(self, campaign_id: str) -> Campaign | None:
        try:
            return self._campaigns.get(campaign_id)
        except NotFound:
            return None

    def _outcome(self, outcome: str) -> str:
        self._metrics.policy_rewards.labels(outcome).inc()
        return outcome

    async def purge_signals(self) -> int:
        """Forget the signal ids older than reward_memory_days (a chunk per commit until none is left), and the
        decisions past the conversion window. Returns how many signal ids went."""
        now = self._clock.now()
        await self._store.purge_decisions(now - CONVERSION_WINDOW_S)
        before = now - self._config.reward_memory_days * 86_400
        total = 0
        while True:
            n = await self._store.purge_signals(before, PURGE_CHUNK)
            total += n
            if n < PURGE_CHUNK:
                return total

    # ---- the decision service in the background ----
    def _forward(self, user_id: str, arm: str, reward: float) -> None:
        if self._decision is None:
            return
        if len(self._sending) >= SENDS_IN_FLIGHT:
            self.forward_failures += 1
            self._metrics.policy_forward_failures.labels("dropped").inc()
            return
        task = asyncio.create_task(self._send(self._decision, user_id, arm, reward))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, decision: DecisionService, user_id: str, arm: str, reward: float) -> None:
        try:
            await decision.send_reward(user_id, arm, reward)
        except Exception as exc:  # counted (here and in integration_calls), never the reward's caller's problem
            self.forward_failures += 1
            self._metrics.policy_forward_failures.labels("failed").inc()
            log.warning("a reward was not forwarded to the decision service", extra={"error": str(exc)[:300]})

    def _campaign_changed(self, event: CampaignChanged) -> None:
        if event.to_state == "archived":  # its policy is read from the store from now on
            self._held.pop(event.campaign_id, None)
        elif event.campaign_id in self._held and "live" in (event.from_state, event.to_state):  # arms may change
            self._sync_catalog()

    def catalog(self) -> list[dict[str, Any]]:
        """Every live campaign's arms, as the decision service's catalog."""
        items = []
        for campaign_id, held in sorted(self._held.items()):
            campaign = self._find(campaign_id)
            if campaign is not None and campaign.state == "live" and held.stored.remote:
                kind = "creative" if held.stored.arms == "creatives" else "offer"
                items += [{"id": arm, "campaign_id": campaign_id, "kind": kind}
                          for arm in arms_of(campaign, held.stored.arms)]
        return items

    def _sync_catalog(self) -> None:
        """Send the catalog in the background; a change while a sync runs sends it again after."""
        if self._decision is None:
            return
        self._catalog_dirty = True
        if self._catalog_task is None or self._catalog_task.done():
            self._catalog_task = asyncio.create_task(self._sync_loop(self._decision))

    async def _sync_loop(self, decision: DecisionService) -> None:
        while self._catalog_dirty:
            self._catalog_dirty = False
            try:
                await decision.sync_catalog(self.catalog())
            except Exception as exc:
                self.catalog_failures += 1
                log.warning("the catalog was not synced to the decision service", extra={"error": str(exc)[:300]})

    async def idle(self) -> None:
        """Wait for the background sends (tests, shutdown)."""
        pending = [*self._sending, *([self._catalog_task] if self._catalog_task is not None else [])]
        await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Stop the background sends (counted as dropped: the local policy learned those rewards all the same) and
        close the decision service's client."""
        if self._sending:
            self.forward_failures += len(self._sending)
            self._metrics.policy_forward_failures.labels("dropped").inc(len(self._sending))
        pending = [*self._sending, *([self._catalog_task] if self._catalog_task is not None else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._decision is not None:
            await self._decision.close()


def _failure_reason(exc: Exception) -> str:
    """bad_answer when the service answered 2xx with something unusable, timeout when it did not answer in time,
    else error (IntegrationError's status and message, read without importing the adapter)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 200 <= status < 300:
        return "bad_answer"
    message = str(getattr(exc, "message", exc))
    if status is None and ("did not answer within" in message or "deadline" in message):
        return "timeout"
    return "error"


def _check_settings(kind: str, arms: str, context: list[str], epsilon: float | None) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})
    if arms not in ARMS:
        raise InvalidInput(f"arms must be one of {', '.join(ARMS)}", {"field": "arms"})
    if len(context) > MAX_CONTEXT_NAMES or len(set(context)) != len(context):
        raise InvalidInput(f"context must name at most {MAX_CONTEXT_NAMES} distinct fields", {"field": "context"})
    if epsilon is not None and kind != "epsilon_greedy":
        raise InvalidInput("epsilon applies only to kind epsilon_greedy", {"field": "epsilon"})
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise InvalidInput("epsilon must be between 0 and 1", {"field": "epsilon"})
