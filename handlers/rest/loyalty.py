"""Loyalty over REST: earn, redeem, reverse, balance, ledger, members, birthday, promotions, reward signals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from app.errors import Forbidden
from app.loyalty.service import CHANNEL_CODES, EarnResult, LoyaltyService, owner_or_staff
from handlers.rest.common import PageQuery, decode_cursor, encode_cursor, endpoint, json_response
from state.accounts import EMAIL_PATTERN
from state.loyalty import EarnChannel, LedgerEntry, Member, Promotion
from state.text import whole

STAFF = ("admin", "partner")
MEMBERS = ("customer", "admin", "partner")
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ContextKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ContextValue = Annotated[str, msgspec.Meta(max_length=128)]


class EarnBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Id
    amount_cents: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
    channel: EarnChannel
    transaction_id: Id
    is_referral: bool = False
    is_digital: bool = False


class RedeemBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Id
    stars: Literal[25, 60, 100, 200, 300, 400, 500]


class Redemption(msgspec.Struct):
    entry: LedgerEntry
    balance: int


class ReverseBody(msgspec.Struct, forbid_unknown_fields=True):
    transaction_id: Id


class Tier(msgspec.Struct):
    name: str
    qualifying_stars: int  # stars earned in the last 12 months that reach this tier


class Reward(msgspec.Struct):
    stars: int
    value_cents: int
    min_tier: str


class Program(msgspec.Struct):
    tiers: list[Tier]
    rewards: list[Reward]


class MemberQuery(msgspec.Struct, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(max_length=128)] = ""  # a user id prefix, any case
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class Balance(msgspec.Struct):
    user_id: str
    balance: int
    tier: str
    lifetime_stars: int
    qualifying_stars_12m: int
    tier_kept_until: float | None
    birthday_eligible: bool
    debt_stars: int = 0  # reversed stars the balance could not cover; later earns pay it first


class MemberList(msgspec.Struct):
    items: list[Balance]


class LedgerPage(msgspec.Struct):
    items: list[LedgerEntry]
    next_cursor: str | None


# MM-DD, a day some year has (02-29 included).
MonthDay = Annotated[str, msgspec.Meta(
    pattern=whole(r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-9])|(?:0[13-9]|1[0-2])-30|(?:0[13578]|1[02])-31)"))]


class MemberBody(msgspec.Struct, forbid_unknown_fields=True):
    birthday: MonthDay | None = None
    preferred_channel: Literal[CHANNEL_CODES] | None = None  # type: ignore[valid-type]
    email: Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN)] | None = None
    phone: Annotated[str, msgspec.Meta(pattern=whole(r"\+[1-9]\d{6,14}"))] | None = None
    push_token: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class BirthdayBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Id


class SignalBody(msgspec.Struct, forbid_unknown_fields=True):
    offer_id: Id
    user_id: Id
    signal_type: Literal["clicked", "redeemed", "ignored"]
    tier: Literal["Green", "Gold", "Reserve"] | None = None
    # For a campaign's offer-selection policy (docs/policies.md), sent by a partner system or an admin (a customer's
    # signal naming a campaign is 403): the signal's idempotency key (required with campaign_id: a policy learns
    # from each id once), the campaign, the arm shown (an offer id or creative id; default offer_id) and the context
    # it was shown in (its policy's buckets, e.g. {"device": "mobile"}; the tier comes from `tier` unless given here).
    signal_id: Id | None = None
    campaign_id: Id | None = None
    arm: Id | None = None
    context: Annotated[dict[ContextKey, ContextValue], msgspec.Meta(max_length=16)] = {}


class SignalResult(msgspec.Struct):
    reward: float


class PromotionList(msgspec.Struct):
    items: list[Promotion]


class LoyaltyApi:
    """Earn, redeem, reverse, balances, ledgers, members, the birthday reward, reward signals, promotions."""

    def __init__(self, loyalty: LoyaltyService,
                 check_signal: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        self._loyalty = loyalty
        # The campaigns' check of a signal naming a campaign (404 unknown campaign, 400 unknown arm), before it is
        # logged; loyalty itself knows no campaigns.
        self._check_signal = check_signal

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/loyalty/earn", self.earn)
        router.add_post("/v1/loyalty/redeem", self.redeem)
        router.add_post("/v1/loyalty/reverse", self.reverse)
        router.add_get("/v1/loyalty/balance/{user_id}", self.balance)
        router.add_get("/v1/loyalty/ledger/{user_id}", self.ledger)
        router.add_put("/v1/loyalty/members/{user_id}", self.put_member)
        router.add_post("/v1/loyalty/birthday", self.birthday)
        router.add_post("/v1/loyalty/reward-signal", self.reward_signal)
        router.add_post("/v1/admin/loyalty/promotions", self.put_promotion)
        router.add_get("/v1/admin/loyalty/promotions", self.list_promotions)
        router.add_get("/v1/admin/loyalty/members", self.find_members)
        router.add_get("/v1/loyalty/program", self.program)

    @endpoint("Earn stars for a purchase (partner systems, admins); a replay of the same transaction_id returns "
              "the first result", tags=("loyalty",), roles=STAFF, body=EarnBody, response=EarnResult, status=201,
              also=(200,), errors=(422,),
              descriptions={201: "Earned", 200: "A replay of a transaction_id already earned: the first result"})
    async def earn(self, request: web.Request, principal, body: EarnBody) -> web.Response:
        result = await self._loyalty.earn(body.user_id, body.amount_cents, body.channel, body.transaction_id,
                                          is_referral=body.is_referral, is_digital=body.is_digital)
        return json_response(result, status=200 if result.replayed else 201)

    @endpoint("Redeem stars for a reward: 25/60/100/200/300/400/500 stars ($0.80 to $25.00); 500 needs Gold; "
              "not enough stars is 422 (send an Idempotency-Key)", tags=("loyalty",), roles=MEMBERS, body=RedeemBody,
              response=Redemption, status=201, errors=(403, 422))
    async def redeem(self, request: web.Request, principal, body: RedeemBody) -> web.Response:
        owner_or_staff(principal, body.user_id)
        loyalty = self._loyalty
        entry = await loyalty.redeem(body.user_id, body.stars)
        await loyalty.hold(body.user_id)
        return json_response(Redemption(entry, loyalty.balance(body.user_id)["balance"]), status=201)

    @endpoint("Take back the stars a transaction earned (a refund); repeats return the first reversal",
              tags=("loyalty",), roles=STAFF, body=ReverseBody, response=LedgerEntry, errors=(404,))
    async def reverse(self, request: web.Request, principal, body: ReverseBody) -> web.Response:
        return json_response(await self._loyalty.reverse(body.transaction_id))

    @endpoint("A member's balance and tier (customers: their own)", tags=("loyalty",), roles=MEMBERS, response=Balance,
              errors=(403, 404))
    async def balance(self, request: web.Request, principal) -> web.Response:
        user_id = request.match_info["user_id"]
        owner_or_staff(principal, user_id)
        loyalty = self._loyalty
        await loyalty.hold(user_id)  # read back if memory let it go; the reads below answer with no await between
        return json_response(Balance(**loyalty.balance(user_id), debt_stars=loyalty.debt(user_id)))

    @endpoint("The programme: tiers by qualifying stars and the rewards stars buy (public)", tags=("loyalty",),
              response=Program)
    async def program(self, request: web.Request, principal) -> web.Response:
        return json_response(Program(**self._loyalty.program()))

    @endpoint("Members whose user id starts with q, with their balance and tier (staff)", tags=("loyalty",),
              roles=("admin",), query=MemberQuery, response=MemberList)
    async def find_members(self, request: web.Request, principal, query: MemberQuery) -> web.Response:
        loyalty = self._loyalty
        found = []
        for user_id in await loyalty.member_ids(query.q, query.limit):
            if await loyalty.hold(user_id):
                found.append(Balance(**loyalty.balance(user_id), debt_stars=loyalty.debt(user_id)))
        return json_response(MemberList(found))

    @endpoint("A member's ledger, oldest first (customers: their own)", tags=("loyalty",), roles=MEMBERS,
              query=PageQuery, response=LedgerPage, errors=(403, 404))
    async def ledger(self, request: web.Request, principal, query: PageQuery) -> web.Response:
        user_id = request.match_info["user_id"]
        owner_or_staff(principal, user_id)
        cursor = decode_cursor(query.after)
        after = None if cursor is None else cursor.get("id", "")  # an entry's id; anything else is refused
        page, more = await self._loyalty.ledger(user_id, "" if cursor is not None and after is None else after,
                                                query.limit)
        return json_response(LedgerPage(page, encode_cursor({"id": page[-1].id}) if more and page else None))

    @endpoint("A member's birthday and how to reach them (customers: their own)", tags=("loyalty",), roles=MEMBERS,
              body=MemberBody, response=Member, errors=(403,))
    async def put_member(self, request: web.Request, principal, body: MemberBody) -> web.Response:
        user_id = request.match_info["user_id"]
        owner_or_staff(principal, user_id)
        member = await self._loyalty.put_member(Member(user_id, **msgspec.structs.asdict(body)))
        return json_response(member)

    @endpoint("Claim the birthday reward (once a year, within 1/7/30 days of the birthday by tier)", tags=("loyalty",),
              roles=MEMBERS, body=BirthdayBody, response=EarnResult, errors=(403, 422))
    async def birthday(self, request: web.Request, principal, body: BirthdayBody) -> web.Response:
        owner_or_staff(principal, body.user_id)
        return json_response(await self._loyalty.birthday_reward(body.user_id))

    @endpoint("Record how a member responded to an offer (clicked +1.0, redeemed +2.0, ignored -0.1) for training; "
              "with campaign_id and signal_id (partner systems and admins only), the campaign's policy learns from it "
              "once per signal_id", tags=("loyalty",), roles=MEMBERS, body=SignalBody, response=SignalResult,
              errors=(403, 404))
    async def reward_signal(self, request: web.Request, principal, body: SignalBody) -> web.Response:
        owner_or_staff(principal, body.user_id)
        if body.campaign_id is not None and principal.role not in STAFF:
            # A campaign's policy learns what its decisions earned, and only partner systems and admins ask it to
            # decide: a customer's own claim would let anyone steer which offer everyone is shown.
            raise Forbidden("a reward signal naming a campaign_id teaches that campaign's offer-selection policy: "
                            "it is sent by the partner system or admin that asked the policy to decide (POST "
                            "/v1/campaigns/{campaign_id}/decide), not with a customer token; send the signal "
                            "without campaign_id", {"field": "campaign_id"})
        if body.campaign_id is not None and self._check_signal is not None:
            await self._check_signal(body.campaign_id, body.arm or body.offer_id)
        reward = await self._loyalty.reward_signal(body.offer_id, body.user_id, body.signal_type, body.tier,
                                                   signal_id=body.signal_id, campaign_id=body.campaign_id,
                                                   arm=body.arm, context=body.context,
                                                   by_customer=principal.role not in STAFF)
        return json_response(SignalResult(reward))

    @endpoint("Create or replace a promotion: a bonus earn rate between two times, optionally for some channels",
              tags=("loyalty",), roles=("admin",), body=Promotion, response=Promotion)
    async def put_promotion(self, request: web.Request, principal, body: Promotion) -> web.Response:
        promotion = await self._loyalty.put_promotion(principal, body)
        return json_response(promotion)

    @endpoint("List promotions", tags=("loyalty",), roles=("admin",), response=PromotionList)
    async def list_promotions(self, request: web.Request, principal) -> web.Response:
        return json_response(PromotionList(self._loyalty.promotions()))
