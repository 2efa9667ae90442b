"""The interfaces the domain (app/) holds its stores by.

app/ depends on these Protocols only; the composition root (`app/platform.py` and each domain's
`wiring.py`) builds the SQLite implementations in adapters/sqlite/. A deployment that outgrows
one node can write adapters for PostgreSQL, Redis or ClickHouse against the same Protocols
without touching the domain code. `tests/unit/state/test_ports.py` checks that every SQLite
store satisfies its Protocol, signature by signature, and that nothing but the composition
root imports an adapter.

Writes that must land together go through a `UnitOfWork`: a domain operation begins a
`Transaction`, makes its writes on it (`tx.orders.insert(order)`, `tx.offers.change_state(...)`)
and commits it once (`app/persist.py`'s `atomically` does that, and undoes the in-memory change
if the commit fails). That is how an order and the accepted offer land in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from state.accounts import Account
from state.apikeys import ApiKey
from state.audit import AuditEntry
from state.campaigns import Campaign, HistoryEntry, ReviewTask
from state.catalog import Flight, Product
from state.changes import ChangeOffer, ChangeOfferState, OrderVersion
from state.delivery import Admission, ClickOutcome, IssuedBid
from state.dsp import DspForward, DspSpend, DspWin, RoutedBid
from state.eventlog import StoredEvent
from state.idempotency import StoredResponse
from state.inbox import InAppMessage
from state.loyalty import LedgerEntry, LoyaltyAccount, Member, Promotion
from state.ltv import Purchase, SavedLtvModel
from state.models import ModelVersion
from state.offers import Item, Offer, OfferState, SharedDraft
from state.orders import Order
from state.outbox import EmailEvent, OutboxMessage
from state.profiles import Profile
from state.reco import Interaction, RecoItem, SavedModel
from state.suppressions import Suppression


@runtime_checkable
class AccountStore(Protocol):
    """Accounts, the ones used lately held in memory (a bounded cache): a lookup that misses reads the store."""

    async def erase(self, account_id: str) -> Account | None:
        """Forget an account's email and password (erasure), keeping its row; the account as it was, or None."""

    async def load(self) -> None:
        """Start: nothing is read (accounts are read on first use)."""

    def get(self, account_id: str) -> Account | None:
        """The account if memory holds it; None may mean only that it was not read lately (fetch reads it)."""

    def by_email(self, email: str) -> Account | None:
        """The account of this email if memory holds it (fetch_by_email reads the store)."""

    async def fetch_by_email(self, email: str) -> Account | None:
        """Read the account of this email from the store, and hold it."""

    async def fetch(self, account_id: str) -> Account | None:
        """Read an account from the store (not held, or opened by another node or the CLI), and hold it."""

    async def add(self, account: Account) -> None:
        """Reserve the email in memory (no await in between), persist, undo on failure; EmailTaken when an account
        of that email is held or stored."""


@runtime_checkable
class ActivationCountStore(Protocol):
    """Activations sent per customer per UTC day (the daily cap survives restarts)."""

    async def counts(self, day: str) -> dict[str, int]:
        ...

    async def add_one(self, user_id: str, day: str) -> None:
        ...


@runtime_checkable
class ApiKeyStore(Protocol):
    """Hot index of API keys by hash, written through to storage."""

    async def load(self) -> None:
        ...

    def by_hash(self, key_hash: str) -> ApiKey | None:
        ...

    async def fetch_by_hash(self, key_hash: str) -> ApiKey | None:
        """Read a key another process (the CLI) may have added since start, and index it."""

    def live(self) -> list[ApiKey]:
        """The keys that work (held in memory), oldest first."""

    async def page(self, after: tuple[float, str] | None, limit: int) -> list[ApiKey]:
        """Every key, revoked ones too, from the store, in (created_at, id) order after that position."""

    async def add(self, key: ApiKey) -> None:
        """Persist a new key, then make it usable."""

    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        """Mark a key revoked; it stops authenticating at once."""

    async def refresh(self, key_ids: Sequence[str]) -> list[str]:
        """Another node changed these keys: read them back; the ids of those revoked."""


@runtime_checkable
class AuditStore(Protocol):
    """The append-only audit trail of admin actions."""

    async def append(self, at: float, actor: str, action: str, target: str, details: dict) -> None:
        ...

    async def page(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        """Newest first; `before_id` continues a previous page."""


@runtime_checkable
class Leases(Protocol):
    """Turns at work only one of the nodes sharing the store may do at a time: a lease per name."""

    async def hold(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl_s; False while another holder's has not
        lapsed."""


@runtime_checkable
class CampaignStore(Protocol):
    """Campaigns with their creatives, written through; those not archived are held in memory."""

    async def load(self) -> None:
        ...

    def get(self, campaign_id: str) -> Campaign | None:
        """A campaign that is not archived (from memory)."""

    def all(self) -> list[Campaign]:
        """Every campaign that is not archived (from memory)."""

    def __len__(self) -> int:
        """How many campaigns are held in memory."""

    async def read(self, campaign_id: str) -> Campaign | None:
        """Any campaign, an archived one read from the store."""

    async def archived(self, after: str, limit: int) -> list[Campaign]:
        """Archived campaigns by id, at most `limit` of those whose id is above `after`."""

    async def put(self, campaign: Campaign, at: float, steps: Sequence[HistoryEntry] = (), *,
                  new: bool = False) -> None:
        """Create (`new`) or replace a campaign (durable before it is used); its history `steps` are written with
        it, atomically."""

    async def history(self, campaign_id: str, limit: int) -> list[HistoryEntry]:
        """The campaign's workflow steps, oldest first (the last `limit`)."""
        ...

    @property
    def version(self) -> int:
        """Changes whenever any campaign changes, so an index built from `all()` knows to rebuild."""


@runtime_checkable
class CatalogStore(Protocol):
    """Flights by id and by (origin, destination, date); products by id. Hot in memory: every product, and the
    flights departing after a horizon (those departed before it are read from the store)."""

    async def load(self, departed_after: float = -math.inf) -> None:
        """Every product, and the flights departing at or after `departed_after`."""

    def __len__(self) -> int:
        """Flights held in memory."""

    def flight(self, flight_id: str) -> Flight | None:
        """A flight held in memory."""

    async def read_flight(self, flight_id: str, *, hold: bool = False) -> Flight | None:
        """A flight, from memory or else from the store (`hold`: held in memory until the next forget_departed)."""

    def forget_departed(self, before: float) -> int:
        """Let go of the flights that departed before `before`, and do not load them again; how many."""

    async def page(self, after: tuple[float, str] | None, limit: int) -> list[Flight]:
        """Flights in (departure, id) order after a position, from the store."""

    def flights_on(self, origin: str, destination: str, date: str) -> list[Flight]:
        ...

    def flights(self) -> list[Flight]:
        """The flights held in memory, by departure."""

    def product(self, product_id: str) -> Product | None:
        ...

    def products(self) -> list[Product]:
        ...

    def product_of_kind(self, kind: str) -> Product | None:
        """The active product sold for a kind: the first one created."""

    async def put_flights(self, flights: list[Flight]) -> None:
        """Create or replace flights (durable before they are sold)."""

    async def put_product(self, product: Product) -> None:
        ...

    @property
    def version(self) -> int:
        """Changes whenever any flight or product changes, so prices computed from them know to redo."""


@runtime_checkable
class DeliveryStore(Protocol):
    """Impressions per user (for frequency caps) and spend per campaign per day, hot in memory."""

    async def load(self, now: float) -> None:
        ...

    async def charge(self, bid_id: str, campaign_id: str, user_id: str, price_micros: int, day: str, at: float) -> None:
        """Charge a bid once: spend and impression applied in memory, persisted, undone on failure."""

    async def record(self, bid_id: str, kind: str, campaign_id: str, price_micros: int | None,
                     reason: int | None, at: float) -> bool:
        """Record a win or loss notice once; returns False for a repeat."""

    async def record_click(self, bid_id: str, campaign_id: str, at: float) -> ClickOutcome:
        """Record a click once unless a loss notice was recorded for the bid: "recorded", "repeat" or "lost"."""

    async def purge(self, now: float, limit: int) -> int:
        """Delete up to `limit` stored impressions older than any frequency-cap window reads."""

    async def purge_outcomes(self, before: float, limit: int) -> int:
        """Delete up to `limit` stored notices (charges, wins, losses, clicks) recorded before `before`."""

    async def outcomes_since(self, since: float) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (campaign, notice kind: win, loss, charge), how many arrived since `since` and their prices' sum."""

    def has_impressions(self, user_id: str) -> bool:
        ...

    def spent(self, campaign_id: str, day: str) -> int:
        ...

    def count_since(self, user_id: str, since: float, campaign_id: str | None = None) -> int:
        """Impressions of a user since `since`, optionally for one campaign."""

    @property
    def spend(self) -> Mapping[tuple[str, str], int]:
        """Micros spent by (campaign_id, day), as `spent()` reads them one at a time; absent means 0."""

    @property
    def reserved(self) -> Mapping[str, int]:
        """Micros this node's live, not yet charged bids may still cost, by campaign (one node; several nodes
        reckon theirs in the shared store, and this stays empty)."""

    async def reserved_now(self, campaign_ids: Sequence[str], now: float) -> list[int]:
        """What each campaign's live, not yet charged bids, every node's, may still cost at `now` (the spend
        report), once bids that expired unbilled gave theirs back. StorageUnavailable when unreachable."""

    def lapse(self, now: float) -> None:
        """Give back what bids that expired unbilled had reserved."""

    def reservations_moved(self) -> set[str]:
        """The campaigns whose reservations changed since the last call."""

    @property
    def version(self) -> int:
        """Changes whenever `spend` or `reserved` changes, so a view built from it knows to refresh."""


class SharedBids(Protocol):
    """The reckoning every bid is admitted by, so spend never passes a budget whenever the notices come: one node's
    in its memory (adapters/sqlite/delivery.py); several nodes' in Redis (adapters/redis), with the bids each
    issued, so a notice is accepted by any node, and frequency caps, so no node overspends another's."""

    async def admit(self, bids: Sequence[Admission], user_id: str, user_caps: tuple[int, int, int],
                    now: float) -> list[str]:
        """Per bid, '' when admitted (its most it can cost reserved against its campaign's budget, the bid
        shared with every node), else why not: 'budget' or 'frequency_capped'. `user_caps` are a user's
        impressions of any campaign a minute, hour and day (-1: no cap). StorageUnavailable when unreachable."""

    async def find(self, bid_id: str) -> IssuedBid | None:
        """A live bid any node issued, or None (unknown, expired)."""


@runtime_checkable
class DemoMarkerStore(Protocol):
    """Which demo data sets are loaded, so seeding runs once."""

    async def is_loaded(self, name: str) -> bool:
        ...

    async def mark_loaded(self, name: str, at: float) -> None:
        ...


@runtime_checkable
class EventLogStore(Protocol):
    """The analytics event log: appended in large batches, read back by type and time."""

    async def anonymise(self, user_id: str, chunk: int = 1_000) -> int:
        """Replace a customer's id in the events naming it with "erased" (erasure); the events rewritten."""

    async def append_batch(self, rows: Sequence[tuple[float, str, str]]) -> int:
        """Write (at, type, payload_json) rows in one transaction."""

    async def purge(self, before: float, limit: int) -> int:
        """Delete those of the oldest `limit` events that happened before `before`; how many went."""

    async def purge_oldest(self, limit: int) -> int:
        """Delete the oldest `limit` events whatever their age (the size budget); how many went."""

    async def used_bytes(self) -> int:
        """The bytes the events take in the store."""

    async def query(self, type_: str | None, since: float | None, after_id: int, limit: int) -> list[StoredEvent]:
        """Oldest first from `since`, continuing after `after_id`."""

    async def recent_payloads(self, type_: str, limit: int) -> list[str]:
        """The newest `limit` payloads (JSON text) of one event type, oldest first."""

    async def payload_page(self, type_: str, before_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, payload) of the newest `limit` events of one type written before id `before_id`, newest first."""


@runtime_checkable
class IdempotencyStore(Protocol):
    """Responses by (scope, key), durable until they expire; the latest held in memory."""

    complete: bool  # memory holds every live response (False: a miss in `get` must `fetch`)

    async def forget_scope(self, scope: str) -> int:
        """Delete every stored response of one caller (erasure)."""

    async def load(self, now: float) -> None:
        ...

    def get(self, scope: str, key: str, now: float) -> StoredResponse | None:
        """From memory only."""

    async def put(self, record: StoredResponse) -> None:
        ...

    async def claim(self, scope: str, key: str, request_hash: str, now: float, until: float) -> bool:
        """Several nodes: mark a key in flight for all of them, unless a live record holds it."""

    async def fetch(self, scope: str, key: str, now: float) -> StoredResponse | None:
        """The live record of a key as stored (status 0: in flight on some node)."""

    async def release(self, scope: str, key: str) -> None:
        """Drop a claim whose request ended without a response to keep."""

    async def purge_expired(self, now: float) -> int:
        """Forget responses past their expiry; return how many."""


@runtime_checkable
class InboxStore(Protocol):
    """The durable in-app inbox of customers who were offline."""

    async def forget(self, user_id: str) -> int:
        """Delete a customer's in-app messages (erasure)."""

    async def add(self, message: InAppMessage) -> None:
        ...

    async def newest(self, user_id: str, limit: int, before: float | None) -> list[InAppMessage]:
        ...


@runtime_checkable
class LoyaltyStore(Protocol):
    """Members, promotions, the append-only ledger, and each member's state derived from it (stored with each entry,
    so a start reads states, not history)."""

    async def forget_member(self, user_id: str) -> bool:
        """Delete a member's contact details (erasure); their ledger stays."""

    async def prepare(self) -> None:
        """Count entry ids on from the highest stored."""

    async def accounts(self, after: str | None, limit: int) -> list[LoyaltyAccount]:
        """Members' stored states in user id order, after the member `after`."""

    async def account_ids(self, after: str | None, limit: int) -> list[str]:
        """Members with a stored state, in user id order after the member `after` (their ids only)."""

    async def account(self, user_id: str) -> LoyaltyAccount | None:
        """A member's stored state."""

    async def member_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` members whose user id starts with `prefix` in any case, in user id order."""

    async def unapplied(self, first: str, last: str) -> list[tuple[int, LedgerEntry]]:
        """The entries of the members from `first` to `last` after their stored state, numbered, in order."""

    async def stateless_members(self, after: str | None, limit: int) -> list[str]:
        """Members with ledger entries and no stored state, in user id order after `after`."""

    async def entries_of(self, user_ids: list[str], after: tuple[str, int] | None,
                         limit: int) -> list[tuple[int, LedgerEntry]]:
        """These members' entries, numbered, by member and in order, after the position (user id, number)."""

    async def due(self, now: float, after: str | None, limit: int) -> list[str]:
        """Members with stars past their expiry as stored, in user id order after the member `after`."""

    async def save_accounts(self, accounts: list[LoyaltyAccount]) -> None:
        """Store members' states, never over a later one."""

    async def entries_after(self, user_id: str, seq: int) -> list[tuple[int, LedgerEntry]]:
        """A member's entries after their `seq`-th, with their numbers, in order."""

    async def page(self, user_id: str, after_id: int | None, limit: int) -> list[LedgerEntry] | None:
        """Up to `limit` of a member's entries in order after the entry `after_id`; None if it is not theirs."""

    async def transaction(self, kind: str, transaction_id: str) -> LedgerEntry | None:
        """The entry of kind `kind` ("earn" or "reverse") of a transaction, if there is one."""

    async def purchases(self, user_id: str, before_seq: int) -> list[LedgerEntry]:
        """A member's earns and reversals before their `before_seq`-th entry, in order."""

    async def members(self, after: str | None, limit: int) -> list[Member]:
        """Members' details in user id order, after the member `after`."""

    async def member(self, user_id: str) -> Member | None:
        ...

    async def promotions(self, after: str | None, limit: int) -> list[Promotion]:
        """Promotions in id order, after the promotion `after`."""

    async def new_id(self) -> int:
        """An entry id unique across every writer."""



@runtime_checkable
class OfferStore(Protocol):
    """OfferStore"""

    async def load(self, now: float, page: int = 5_000) -> None:
        """Offers that can still be accepted come back after a restart, read `page` rows at a time."""

    def get(self, offer_id: str) -> Offer | None:
        ...

    async def fetch(self, offer_id: str) -> Offer | None:
        """An offer no longer held in memory (expired or finished), from storage."""

    def readmit(self, offer: Offer) -> Offer:
        """An ACTIVE offer read back after it left memory for the bound, held again (or the one held meanwhile)."""

    async def purge(self, expired_before: float, limit: int) -> int:
        """Delete up to `limit` offers, whatever their state, that expired before `expired_before`."""

    async def unused_drafts(self, stored_before: float, limit: int) -> list[str]:
        """Up to `limit` drafts stored before `stored_before` that no offer is made from."""

    async def drop_drafts(self, draft_ids: Sequence[str]) -> int:
        """Delete these drafts, unless an offer has been made from one since; queued before the first await."""

    def remember(self, offer: Offer) -> None:
        ...

    def due(self, now: float, limit: int = 1_000) -> list[Offer]:
        """Up to `limit` offers in memory whose expiry has come (each returned once)."""

    def forget(self, offer_id: str) -> None:
        ...



@runtime_checkable
class OrderStore(Protocol):
    """OrderStore"""

    async def load(self) -> None:
        ...

    def get(self, order_id: str) -> Order | None:
        """A live order, from memory (None for a finished one: see fetch)."""

    def live(self) -> list[Order]:
        """Every order in memory: the live ones."""

    async def fetch(self, order_id: str) -> Order | None:
        """Any order as it stands: live from memory, finished from the store."""

    async def fetch_by_barcode(self, code: str) -> Order | None:
        """The order, live or finished, that has this barcode."""

    async def page(self, owner: str | None, state: str | None, after: tuple[float, str] | None,
                   limit: int) -> list[Order]:
        """Up to `limit` orders after position `after`, oldest first: one owner's or everyone's (None),
        optionally only in `state`; read from the store."""

    def retire(self, order: Order) -> None:
        """A finished order whose change is committed leaves memory."""

    def in_state(self, *states: str) -> list[Order]:
        ...

    def due(self, state: str, before: float) -> list[Order]:
        """Orders in `state` (PROPOSED: by hold expiry; FULFILLED: by departure) due at or before `before`."""

    def hold(self, items: Sequence[Item]) -> None:
        ...

    def release(self, items: Sequence[Item]) -> None:
        ...

    def remember(self, order: Order) -> Order | None:
        """Put the new version in memory; returns the version it replaced."""

    def forget(self, order_id: str) -> None:
        ...

    async def seen_payment_event(self, event_id: str) -> bool:
        ...

    @property
    def held(self) -> Mapping[str, int]:
        """Units held by live orders per inventory resource (`flight/cabin` or `flight/product`); absent means 0."""

    @property
    def flight_versions(self) -> Mapping[str, int]:
        """Per flight id, changes whenever the inventory held on that flight changes; absent means 0."""

    def forget_flights(self, flight_ids: Sequence[str]) -> None:
        """Drop the versions of departed flights the catalog let go of (no offer is priced for them again)."""


@runtime_checkable
class ChangeStore(Protocol):
    """Order changes: change offers (read from storage when confirmed) and the versions of orders."""

    async def fetch(self, change_offer_id: str) -> ChangeOffer | None:
        ...

    async def of_request(self, request_id: str) -> list[ChangeOffer]:
        """A change request's offers, in the order they were priced."""

    async def versions(self, order_id: str) -> list[OrderVersion]:
        """The versions recorded of an order, oldest first (an order never changed has none)."""

    async def purge(self, expired_before: float, limit: int) -> int:
        """Delete up to `limit` unconfirmed change offers that expired before `expired_before`."""


@runtime_checkable
class OutboxStore(Protocol):
    """OutboxStore"""

    async def erase(self, user_id: str, addresses: Sequence[str]) -> tuple[list[str], int]:
        """Blank a customer's mail and email events (erasure): their pending message ids, and the rows rewritten."""

    async def unfinished(self, after: tuple[float, str], limit: int) -> list[OutboxMessage]:
        """Up to `limit` pending messages after `after` (created_at, id), in that order: a page of the queue."""

    async def get(self, message_id: str) -> OutboxMessage | None:
        ...

    async def insert(self, message: OutboxMessage) -> bool:
        """Store a new message; False if one with this id exists already (the same message is never queued twice)."""

    async def update(self, message: OutboxMessage) -> None:
        ...

    async def mark_sent(self, message: OutboxMessage, event: EmailEvent) -> None:
        """The message's new state and its `sent` event, in one commit."""

    async def record_event(self, event: EmailEvent) -> bool:
        """Record an email event once (by id); False for a repeat."""

    async def events(self, activation_id: str | None) -> list[EmailEvent]:
        ...


@runtime_checkable
class ProfileStore(Protocol):
    """Customer profiles for bidding (the L2 tier behind the in-memory cache)."""

    async def forget(self, user_id: str) -> bool:
        """Delete a customer's bidding profile (erasure)."""

    async def load(self) -> None:
        """Remember which users have a stored profile, so lookups for anyone else need no I/O."""

    async def get(self, user_id: str) -> Profile | None:
        ...

    async def put(self, *profiles: Profile) -> None:
        """Create or replace profiles, all in one commit."""

    async def purge(self, before: float, limit: int) -> int:
        """Delete up to `limit` stored profiles last updated before `before`; how many went."""


@runtime_checkable
class SuppressionStore(Protocol):
    """Who must not be contacted, by (identifier, channel); recent answers held in memory (a bounded cache)."""

    async def anonymise(self, identifiers: Sequence[str]) -> int:
        """Keep these identifiers' entries under their keyed hash alone (erasure)."""

    async def load(self) -> None:
        """Start: nothing is read (entries are read when a check asks for them)."""

    async def get(self, identifier: str, channel: str) -> Suppression | None:
        """The entry for this identifier on exactly this channel, or None: from memory, else read and held."""

    async def page(self, after: tuple[str, str] | None, limit: int, identifier: str | None = None,
                   channel: str | None = None) -> list[Suppression]:
        """Up to `limit` entries in the store's order after the entry `after` (identifier, channel)."""

    async def put(self, entries: list[Suppression]) -> None:
        ...

    async def remove(self, keys: list[tuple[str, str]]) -> int:
        """Lift these (identifier, channel) entries: how many there were."""


@runtime_checkable
class RecoStore(Protocol):
    """Recommendation items and the interaction log the real-time features and models are rebuilt from."""

    async def items(self) -> list[RecoItem]:
        ...

    async def items_named(self, item_ids: list[str]) -> list[RecoItem]:
        ...

    async def put_items(self, items: list[RecoItem]) -> None:
        ...

    async def add_interactions(self, rows: list[Interaction]) -> None:
        ...

    async def interactions(self) -> list[Interaction]:
        ...

    async def interactions_after(self, after_id: int, limit: int) -> tuple[int, list[tuple[int, Interaction]]]:
        """A page of the log in arrival order after `after_id`, each with its id, and the last id."""

    async def interactions_before(self, before_id: int | None, limit: int) -> tuple[int | None, list[Interaction]]:
        """A page of the log in arrival order before `before_id` (None: the newest), and its first id."""

    async def interactions_since(self, after_id: int) -> tuple[int, int | None]:
        """How many interactions are stored after `after_id`, and the newest id (None: none)."""

    async def save_checkpoint(self, covered: int, taken_at: float, body: bytes) -> None:
        """The real-time features' checkpoint, covering the log up to id `covered`; only the latest is kept."""

    async def latest_checkpoint(self) -> tuple[int, float, bytes] | None:
        """(covered, taken_at, body) of the latest checkpoint, if any."""

    async def user_interactions(self, user_id: str, limit: int, before_id: int | None = None) -> list[Interaction]:
        ...

    async def known_users(self, user_ids: list[str], before_id: int | None = None) -> list[str]:
        ...

    async def user_final_items(self, user_id: str, before_id: int | None = None) -> list[str]:
        ...

    async def user_dismissed_items(self, user_id: str) -> list[str]:
        ...

    async def user_items(self, user_id: str, before_id: int | None = None) -> list[str]:
        ...

    async def save_model(self, model: SavedModel) -> None:
        """Durably, keeping the last few."""
        ...

    async def add_model(self, model: SavedModel) -> None:
        """Durably, deleting none (a version of the model registry)."""
        ...

    async def model(self, sequence: int) -> SavedModel | None:
        ...

    async def drop_model(self, sequence: int) -> None:
        ...

    async def latest_model(self) -> SavedModel | None:
        ...


@runtime_checkable
class LtvStore(Protocol):
    """The purchases lifetime value learns from (the loyalty ledger's purchases, less those reversed) and its
    fitted models."""

    async def purchases(self) -> list[Purchase]:
        """Every customer's, oldest first."""
        ...

    async def customer_purchases(self, customer_id: str) -> list[Purchase]:
        ...

    async def purchase_count(self) -> int:
        """How many `purchases` would return, without reading them."""
        ...

    async def save_model(self, model: SavedLtvModel) -> None:
        """Durably, keeping the last few."""
        ...

    async def add_model(self, model: SavedLtvModel) -> None:
        """Durably, deleting none (a version of the model registry)."""
        ...

    async def model(self, sequence: int) -> SavedLtvModel | None:
        ...

    async def drop_model(self, sequence: int) -> None:
        ...

    async def latest_model(self) -> SavedLtvModel | None:
        ...


# ---- the unit of work ----
class WriteConflict(Exception):
    """A guarded write found the store not as its writer expected (another request, or another node, changed it
    first): nothing of the transaction was written. `what` names the guard ("inventory:<resource>" for a hold)."""

    def __init__(self, sql: str, expected: int, actual: int, what: str = "") -> None:
        super().__init__(f"expected {expected} row(s), changed {actual}" + (f" ({what})" if what else ""))
        self.sql = sql
        self.expected = expected
        self.actual = actual
        self.what = what


class StorageUnavailable(Exception):
    """The shared database cannot be reached (a server down, a network cut): the request is refused with 503 and
    nothing of it was acknowledged; the node keeps serving what does not need the database."""


class ChangeFeed(Protocol):
    """Several nodes: tell the others which records this node committed (they read them back from the shared
    database into their memory)."""

    def changed(self, kind: str, ids: Sequence[str]) -> None:
        ...


class UnstorableValue(ValueError):
    """The database cannot hold a value the request carried (PostgreSQL's text has no NUL character): refused as
    bad input, with nothing of the request written."""


@runtime_checkable
class InventoryWrites(Protocol):
    """Inventory held in a store several nodes share: a hold that would pass a resource's capacity fails the
    whole transaction with WriteConflict("inventory:<resource>"). One node keeps inventory in memory only, and
    its adapter writes nothing here."""

    def hold(self, items: Sequence[Item], capacity: Callable[[str], int]) -> None:
        ...

    def release(self, items: Sequence[Item]) -> None:
        ...


@runtime_checkable
class OrderWrites(Protocol):
    def insert(self, order: Order) -> None:
        ...

    def update(self, order: Order, expected: str) -> None:
        """Write the new version, guarded on the state it was changed from: if the stored order is in another
        state, the whole transaction fails (and nothing of it is written)."""

    def record_payment_event(self, event_id: str, payment_id: str, at: float) -> None:
        """A payment webhook event, once: a repeat writes nothing and does not fail the transaction."""

    def insert_change_offers(self, offers: Sequence[ChangeOffer]) -> None:
        """A change request's priced change offers."""

    def change_offer_state(self, offer: ChangeOffer, expected: ChangeOfferState) -> None:
        """The change offer's new state, guarded on `expected` as update is."""

    def record_version(self, version: OrderVersion) -> None:
        """One version of an order, once (a version already recorded is kept as it is)."""


@runtime_checkable
class OfferWrites(Protocol):
    def insert(self, offers: Sequence[Offer], drafts: Sequence[SharedDraft]) -> None:
        """A search's offers, offers[i] made from drafts[i] (each draft written once, the first time)."""

    def change_state(self, offer: Offer, expected: OfferState) -> None:
        """Only the state changes, guarded on `expected` as OrderWrites.update is."""


@runtime_checkable
class LedgerWrites(Protocol):
    def append(self, entry: LedgerEntry, seq: int) -> None:
        """The member's `seq`-th entry; WriteConflict at commit if that one exists already."""

    def save_account(self, account: LoyaltyAccount) -> None:
        """The member's state after their latest entry, written with it."""

    def put_member(self, member: Member) -> None:
        ...

    def put_promotion(self, promotion: Promotion) -> None:
        ...


@runtime_checkable
class Transaction(Protocol):
    """The writes of one domain operation on the system of record, committed together or not at all."""

    @property
    def orders(self) -> OrderWrites:
        ...

    @property
    def offers(self) -> OfferWrites:
        ...

    @property
    def loyalty(self) -> LedgerWrites:
        ...

    @property
    def inventory(self) -> InventoryWrites:
        ...

    def commit(self, *, power_safe: bool = True) -> Awaitable[object]:
        """Queue the writes now; the awaitable resolves once they are durable, or fails with none written.

        power_safe=False: survives kill -9, may be lost in a power cut (a search's offers)."""


@runtime_checkable
class UnitOfWork(Protocol):
    def begin(self) -> Transaction:
        ...


@runtime_checkable
class PolicyStore(Protocol):
    """Campaigns' offer-selection policies, and the reward signals they learned from."""

    async def load_all(self) -> list[tuple[str, bytes]]: ...

    async def load_one(self, campaign_id: str) -> bytes | None: ...

    async def save(self, campaign_id: str, body: bytes, at: float) -> None: ...

    async def seen(self, signal_id: str) -> bool: ...

    async def learn(self, campaign_id: str, body: bytes, signal_id: str, at: float, previous: bytes) -> bool: ...

    async def purge_signals(self, before: float, limit: int = 5_000) -> int: ...

    async def remember(self, user_id: str, campaign_id: str, arm: str, context: str, at: float) -> None: ...

    async def decisions(self, user_ids: list[str], since: float) -> list[tuple[str, str, str, float]]: ...

    async def forget_decisions(self, user_id: str) -> None: ...

    async def purge_decisions(self, before: float) -> int: ...


@runtime_checkable
class ReportStore(Protocol):
    """Campaign reports' hourly totals, rolled up from the event log, and the roll-up's place in it."""

    async def cursor(self) -> int:
        ...

    async def add(self, totals: Mapping[tuple[str, int], list[int]], no_bids: Mapping[tuple[int, str], int],
                  after: int, cursor: int, signals: Mapping[str, float] | None = None) -> None:
        """Raises WriteConflict, writing nothing, unless the cursor is still at `after`. `signals`: the reward-signal
        ids these totals count (id → when), remembered with them."""

    async def counted(self, signal_ids: Sequence[str]) -> set[str]:
        ...

    async def purge_signals(self, before: float, limit: int = 5_000) -> int:
        ...

    async def series(self, campaign_id: str, first_hour: int, last_hour: int, step_hours: int
                     ) -> list[tuple[int, ...]]:
        ...

    async def by_campaign(self, first_hour: int, last_hour: int) -> list[tuple[object, ...]]:
        ...

    async def no_bids(self, first_hour: int, last_hour: int) -> dict[str, int]:
        ...

    async def hours(self, first_hour: int, last_hour: int, limit: int) -> list[tuple[object, ...]]:
        ...


@runtime_checkable
class TaskStore(Protocol):
    """The review tasks campaigns have in the team's task tool."""

    async def put(self, task: ReviewTask) -> None:
        ...

    async def unfinished(self, limit: int) -> list[ReviewTask]:
        ...

    async def of_campaign(self, campaign_id: str) -> list[ReviewTask]:
        ...

    async def claim(self, task: ReviewTask, now: float) -> bool:
        """Count an attempt at opening an unopened task (attempts + 1, synced_at = now, status opening), unless it
        was opened or another attempt was counted since `task` was read."""


@runtime_checkable
class CursorStore(Protocol):
    """Named places in a stream (the Power BI sync's last hour sent)."""

    async def get(self, name: str) -> int | None:
        ...

    async def put(self, name: str, value: int) -> None:
        ...


@runtime_checkable
class ModelRegistry(Protocol):
    """Every version of every learned model, with its measurements; which one is live survives a restart."""

    async def versions(self, model: str, limit: int, before: int | None = None) -> list[ModelVersion]:
        """Newest first (by sequence), at most `limit`, those with a sequence below `before` when given."""

    async def live(self, model: str) -> ModelVersion | None:
        """The live version, None before the model has one."""

    async def get(self, model: str, sequence: int) -> ModelVersion | None:
        """One version by its sequence."""

    async def canary(self, model: str) -> ModelVersion | None:
        """The version running as a canary, None when none is."""

    async def add(self, version: ModelVersion, demote_to: str = "") -> None:
        """Register a version; when it is live, the version live before gets status `demote_to`, in the same
        transaction."""

    async def activate(self, model: str, sequence: int, at: float, demote_to: str, note: str) -> None:
        """Make an existing version live (with `note`) and give the one live before status `demote_to`, atomically."""

    async def pruned(self, model: str, sequence: int) -> None:
        """Its weights' file is gone (disk budget): its path is cleared."""

    async def next_sequence(self, model: str) -> int:
        """The sequence the next registered version of `model` gets."""


class SharedDspBids(Protocol):
    """Several nodes routing to DSPs (adapters/redis): the bids each answered with, so a notice is accepted by any
    node, and which of the DSP's own notices have been forwarded, so each is called once."""

    async def remember(self, bids: Sequence[RoutedBid]) -> None:
        """Share these bids with every node until they expire."""

    async def find(self, platform: str, bid_id: str) -> RoutedBid | None:
        """A live bid any node answered with, or None."""



@runtime_checkable
class DspWinStore(Protocol):
    """The wins (and so the spend) of the demand-side platforms Contrail routes to, one row per bid: idempotent."""

    async def record(self, win: DspWin, forwards: Sequence[DspForward] = ()) -> tuple[bool, list[DspForward]]:
        """Store the win (False when this platform's bid was recorded before: nothing changes), and queue the DSP's
        own notices in the same transaction, each once per bid: returns those queued now."""

    async def claim_forward(self, forward: DspForward, now: float, lease_s: float) -> bool:
        """Take a due notice to call (one caller, any node): not due again for `lease_s`, its attempts counted."""

    async def forward_done(self, forward: DspForward, retry_at: float | None) -> None:
        """A call ended: due again at `retry_at`, or finished (None: called, refused or given up). Written only while
        the row's attempts are `forward.attempts` (the claim this caller made is the last)."""

    async def due_forwards(self, now: float, limit: int, platforms: Sequence[str]) -> list[DspForward]:
        """Notices to these platforms due by `now`, the longest due first."""

    async def queued_forwards(self) -> dict[str, int]:
        """Per platform, the notices not finished yet."""

    async def purge_forwards(self, before: float, limit: int, *, finished_only: bool = True) -> int:
        """Delete up to `limit` notices queued before `before`: finished ones, or any."""

    async def get(self, platform: str, bid_id: str) -> DspWin | None:
        """One recorded win."""

    async def spend_since(self, at: float) -> dict[str, DspSpend]:
        """Wins and spend per platform of the wins recorded at or after `at`."""
