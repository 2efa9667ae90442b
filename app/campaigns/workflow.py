"""The campaign workflow: nothing goes live without approval.

    draft -> in_review -> approved -> scheduled -> live -> completed -> archived
             in_review -> rejected -> draft (an edit, or submitting again)
             live <-> paused

Submitting matches the approval rules (campaigns.approval_rules): the most demanding rule that matches says how many
admins must approve; whoever created the campaign, edited it before its approval, or last edited it cannot approve
it (nor can whoever made changes waiting for approval), one rejection rejects, and the last approval needed approves.
A system's edit (the asset sync refreshing creatives: `system=True`) is no one's: it leaves the editors, and a rejected
campaign's state, as they were. An approved campaign goes live at its start (the scheduler, on the injectable clock),
or when scheduled; a live one completes at its end. Editing what needs approval (campaigns.reapprove_fields) of a
campaign that was approved keeps the approved version running and puts the changes under review (`pending`); they
apply when approved. Any other step is 409 naming the current state.

Each step is written with its history entry in one transaction, then audited and published on the bus. Steps are
serialised by one lock, so two callers (or the scheduler and a caller) never both act on what they each read. Nodes
sharing a store are kept apart by the store: a write names the revision it read and is refused when another node
changed the campaign meanwhile (`ChangedElsewhere`). A caller's step is then decided again on what is stored (up to
STEP_ATTEMPTS times); the scheduler leaves the campaign to its next pass.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import msgspec

from app.admin import AuditTrail
from app.auth import Principal
from app.bidding.campaigns import CampaignService, ChangedElsewhere
from app.campaigns.events import CampaignChanged
from app.config import ApprovalRule, CampaignsConfig
from app.errors import Conflict, Forbidden, InvalidInput
from app.runtime.clock import Clock
from state.campaigns import Campaign, Creative, HistoryEntry, Revision
from state.ports import CampaignStore

SCHEDULER = "scheduler"
RUNNING = ("approved", "scheduled", "live", "paused")  # states with an approved version, whose edits are reviewed
HISTORY_LIMIT = 1000
STEP_ATTEMPTS = 3  # a step another node's steps keep overtaking answers 409 after this many

P = ParamSpec("P")
T = TypeVar("T")


def _decided_again(step: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Take a caller's step again when another node changed the campaign since this node read it (nothing was
    written, and the store has read it back): the step is decided on what is stored now, as if it had come later."""
    @functools.wraps(step)
    async def taken(*args: P.args, **kwargs: P.kwargs) -> T:
        for _ in range(STEP_ATTEMPTS - 1):
            with contextlib.suppress(ChangedElsewhere):
                return await step(*args, **kwargs)
        return await step(*args, **kwargs)  # the last attempt's refusal is the caller's 409
    return taken


REVISABLE = ("bid_cap_micros", "daily_budget_micros", "targeting", "creatives", "channels")


def _who(actor: Principal | str) -> str:
    """Who takes a step: the person, so an API key made by an admin is that admin (it cannot approve their
    campaign, nor count as a second approver beside them)."""
    return actor if isinstance(actor, str) else actor.person


def match_rule(rules: list[ApprovalRule], campaign: Campaign) -> ApprovalRule:
    """The most demanding rule the campaign matches (the first of equals); a rule without conditions matches all."""
    best: ApprovalRule | None = None
    for rule in rules:
        conditions = []
        if rule.daily_budget_above_micros is not None:
            conditions.append(campaign.daily_budget_micros > rule.daily_budget_above_micros)
        if rule.channels:
            conditions.append(any(c in rule.channels for c in campaign.channels))
        if (not conditions or any(conditions)) and (best is None or rule.approvers > best.approvers):
            best = rule
    if best is None:  # only when every rule has a condition and none holds: one approver, as the least rule asks
        return ApprovalRule(name="default", approvers=1)
    return best


class CampaignWorkflow:
    def __init__(self, campaigns: CampaignService, store: CampaignStore, config: CampaignsConfig, clock: Clock,
                 audit: AuditTrail, publish: Callable[[Any], Awaitable[None]]) -> None:
        self._campaigns = campaigns
        self._store = store
        self._config = config
        self._clock = clock
        self._audit = audit
        self._publish = publish
        self._lock = asyncio.Lock()

    # ---- creating and editing ----
    async def create(self, actor: Principal | str, campaign: Campaign) -> Campaign:
        """A new campaign, in draft, whoever asks (the state a caller sends is not taken)."""
        who = _who(actor)
        campaign = msgspec.structs.replace(campaign, state="draft", created_by=who, edited_by=who, approvals=[],
                                           approval_rule="", approvals_required=0, pending=None, editors=[])
        _check_window(campaign.starts_at, campaign.ends_at)
        async with self._lock:
            created = await self._campaigns.create(actor, campaign, step=self._step(who, "create", "", "draft", ""))
        await self._publish(CampaignChanged(created.id, "create", "", "draft", who, created.created_at, ""))
        return created

    @_decided_again
    async def edit(self, actor: Principal | str, campaign_id: str,
                   changes: dict[str, Any] | Callable[[Campaign], dict[str, Any]], comment: str = "", *,
                   system: bool = False) -> Campaign:
        """Apply `changes` (field -> new value, None to clear; or a function of the current campaign giving them,
        called under the workflow's lock): at once in draft (and in rejected, which goes back to draft); for a
        campaign with an approved version, the fields that need approval go under review (`pending`) and the rest
        apply at once. A `system` edit (a sync's, `actor` naming it) changes the fields alone: `edited_by` and the
        editors stay the people's who edited, so its edit cannot free one of them to approve their own changes, and
        a rejected campaign stays rejected (no one asked to take it up again)."""
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            state = current.state
            if state in ("in_review", "completed", "archived"):
                raise Conflict(f"campaign {campaign_id} is {state}: it cannot be edited"
                               + (" while in review (reject it to edit it)" if state == "in_review" else ""),
                               {"state": state})
            fields = changes(current) if callable(changes) else changes
            if "starts_at" in fields or "ends_at" in fields:
                _check_window(fields.get("starts_at", current.starts_at), fields.get("ends_at", current.ends_at))
            needs_review: set[str] = set(self._config.reapprove_fields) if state in RUNNING else set()
            reviewed = {k: v for k, v in fields.items() if k in needs_review}
            at_once = {k: v for k, v in fields.items() if k not in reviewed}
            updated = msgspec.structs.replace(current, **at_once)
            to_state = state
            if not system:
                updated = msgspec.structs.replace(updated, edited_by=who)
                if state in ("draft", "rejected"):  # the version that goes to review is theirs too
                    to_state = "draft"
                    updated = msgspec.structs.replace(updated, editors=[*(e for e in current.editors if e != who),
                                                                        who])
            if reviewed:
                updated = msgspec.structs.replace(updated, pending=self._revision(updated, reviewed, who))
            updated = msgspec.structs.replace(updated, state=to_state)
            action = "revise" if reviewed else "edit"
            step = self._step(who, action, state, to_state, comment)
            updated = await self._campaigns.replace(updated, [step])
        await self._audit.record(actor, f"campaign.{action}", campaign_id, from_state=state, to_state=to_state,
                                 comment=comment, **_loggable(fields))
        await self._publish(CampaignChanged(campaign_id, action, state, to_state, who, step.at, comment))
        return updated

    async def add_creative(self, actor: Principal | str, campaign_id: str, creative: Creative) -> Campaign:
        def added(current: Campaign) -> dict[str, Any]:  # under the lock: two adds at once both land
            base = current.pending.creatives if current.pending is not None and current.pending.creatives is not None \
                else current.creatives
            if any(c.id == creative.id for c in base):
                raise Conflict(f"creative {creative.id} already exists in campaign {campaign_id}")
            return {"creatives": [*base, creative]}
        return await self.edit(actor, campaign_id, added, f"creative {creative.id} added")

    def _revision(self, campaign: Campaign, reviewed: dict[str, Any], who: str) -> Revision:
        """The pending changes with these merged in (their approvals start over), and the rule the changed campaign
        matches."""
        fields = {k: getattr(campaign.pending, k) for k in REVISABLE} if campaign.pending is not None else {}
        fields.update(reviewed)
        proposed = msgspec.structs.replace(campaign, **{k: v for k, v in fields.items() if v is not None})
        rule = match_rule(self._config.approval_rules, proposed)
        earlier = campaign.pending.editors or [campaign.pending.submitted_by] if campaign.pending is not None else []
        editors = [*(e for e in earlier if e != who), who]
        return Revision(who, self._clock.now(), rule.name, rule.approvers, [], **fields, editors=editors)

    # ---- the steps ----
    @_decided_again
    async def submit(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        """draft -> in_review (a rejected campaign goes back through draft); the approval rule is matched now."""
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            steps: list[tuple[str, str]] = []
            if current.state == "rejected":
                steps.append(("rejected", "draft"))
            elif current.state != "draft":
                raise _cannot("submit", current)
            if not current.creatives and "display" in (current.channels or ["display"]):
                raise InvalidInput(f"campaign {campaign_id} has no creative: add one before submitting it",
                                   {"field": "creatives"})
            steps.append(("draft", "in_review"))
            rule = match_rule(self._config.approval_rules, current)
            updated = msgspec.structs.replace(current, state="in_review", approval_rule=rule.name,
                                              approvals_required=rule.approvers, approvals=[])
            updated = await self._record(updated, who, "submit", steps, comment)
        await self._after(actor, updated, "submit", steps, comment, rule=rule.name, approvers=rule.approvers)
        return updated

    @_decided_again
    async def approve(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        """One approval of the version under review (or of the pending changes to a running campaign); the last one
        needed approves (or applies the changes)."""
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            if current.state == "in_review":
                # Whoever edited the version under review, not only its last editor, may not approve it.
                self._may_approve(who, current, current.approvals, current.edited_by, *current.editors)
                approvals = [*current.approvals, who]
                done = len(approvals) >= current.approvals_required
                # Approved, the version's editors are done with: later changes are reviewed with their own.
                updated = msgspec.structs.replace(current, approvals=approvals,
                                                  state="approved" if done else "in_review",
                                                  editors=[] if done else current.editors)
                steps = [("in_review", updated.state)]
                action = "approve"
            elif current.state in RUNNING and current.pending is not None:
                pending = current.pending
                # Whoever put changes into the revision, and whoever last edited the campaign since, may not approve.
                self._may_approve(who, current, pending.approvals, current.edited_by,
                                  *(pending.editors or [pending.submitted_by]))
                approvals = [*pending.approvals, who]
                if len(approvals) >= pending.approvals_required:
                    applied = {k: getattr(pending, k) for k in REVISABLE if getattr(pending, k) is not None}
                    updated = msgspec.structs.replace(current, pending=None, approval_rule=pending.rule,
                                                      approvals_required=pending.approvals_required,
                                                      approvals=approvals, **applied)
                    action = "approve_changes"
                else:
                    updated = msgspec.structs.replace(
                        current, pending=msgspec.structs.replace(pending, approvals=approvals))
                    action = "approve"
                steps = [(current.state, current.state)]
            else:
                raise _cannot("approve", current, " (nothing is waiting for approval)"
                              if current.state in RUNNING else "")
            updated = await self._record(updated, who, action, steps, comment)
        await self._after(actor, updated, action, steps, comment)
        return updated

    @_decided_again
    async def reject(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        """in_review -> rejected; for a running campaign, the pending changes are dropped (it keeps running)."""
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            if current.state == "in_review":
                updated = msgspec.structs.replace(current, state="rejected", approvals=[])
                action = "reject"
            elif current.state in RUNNING and current.pending is not None:
                updated = msgspec.structs.replace(current, pending=None)
                action = "reject_changes"
            else:
                raise _cannot("reject", current, " (nothing is waiting for approval)"
                              if current.state in RUNNING else "")
            steps = [(current.state, updated.state)]
            updated = await self._record(updated, who, action, steps, comment)
        await self._after(actor, updated, action, steps, comment)
        return updated

    @_decided_again
    async def schedule(self, actor: Principal | str, campaign_id: str, starts_at: float | None = None,
                       ends_at: float | None = None, comment: str = "") -> Campaign:
        """approved -> scheduled, to start at `starts_at` (the campaign's own start, else now); a start already
        past goes live at once."""
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            if current.state != "approved":
                raise _cannot("schedule", current)
            start = starts_at if starts_at is not None else current.starts_at
            start = self._clock.now() if start is None else start
            end = ends_at if ends_at is not None else current.ends_at
            _check_window(start, end)
            updated = msgspec.structs.replace(current, state="scheduled", starts_at=start, ends_at=end)
            steps = [("approved", "scheduled")]
            updated = await self._record(updated, who, "schedule", steps, comment)
        await self._after(actor, updated, "schedule", steps, comment, starts_at=start, ends_at=end)
        await self.tick()
        return self._campaigns.get(campaign_id)

    async def pause(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        return await self._move(actor, campaign_id, "pause", "live", "paused", comment)

    async def resume(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        return await self._move(actor, campaign_id, "resume", "paused", "live", comment)

    async def archive(self, actor: Principal | str, campaign_id: str, comment: str = "") -> Campaign:
        return await self._move(actor, campaign_id, "archive", "completed", "archived", comment)

    @_decided_again
    async def _move(self, actor: Principal | str, campaign_id: str, action: str, from_state: str, to_state: str,
                    comment: str) -> Campaign:
        who = _who(actor)
        async with self._lock:
            current = await self._campaigns.read(campaign_id)
            if current.state != from_state:
                raise _cannot(action, current)
            steps = [(from_state, to_state)]
            updated = await self._record(msgspec.structs.replace(current, state=to_state), who, action, steps,
                                         comment)
        await self._after(actor, updated, action, steps, comment)
        return updated

    # ---- the scheduler ----
    async def tick(self) -> int:
        """Start approved or scheduled campaigns whose start has come, complete live ones whose end has; returns
        how many steps it took. Each step is durable before the next, and a restart reads the states back, so a
        step is never taken twice."""
        now = self._clock.now()
        taken = 0
        for campaign in self._campaigns.timed():  # those with a start or an end to reach, not every campaign
            due = _due(campaign, now)
            while due is not None:
                action, from_state, to_state = due
                async with self._lock:
                    current = await self._campaigns.read(campaign.id)
                    if current.state != from_state:  # a caller moved it meanwhile
                        break
                    steps = [(from_state, to_state)]
                    try:
                        updated = await self._record(msgspec.structs.replace(current, state=to_state), SCHEDULER,
                                                     action, steps, "")
                    except ChangedElsewhere:  # another node took a step first: the next pass sees what it did
                        break
                await self._after(SCHEDULER, updated, action, steps, "")
                taken += 1
                due = _due(updated, now)
        return taken

    # ---- reading ----
    async def history(self, campaign_id: str) -> builtins.list[HistoryEntry]:
        await self._campaigns.read(campaign_id)  # 404 for an unknown campaign
        return await self._store.history(campaign_id, HISTORY_LIMIT)

    def approval_queue(self) -> builtins.list[Campaign]:
        """What waits for an approver: campaigns in review and running campaigns with pending changes."""
        return [c for c in self._campaigns.list()
                if c.state == "in_review" or (c.state in RUNNING and c.pending is not None)]

    # ---- helpers ----
    def _may_approve(self, who: str, campaign: Campaign, approvals: builtins.list[str], *editors: str) -> None:
        if who == campaign.created_by or who in editors:
            raise Forbidden(f"{who} created or edited campaign {campaign.id}, or made the changes waiting for "
                            "approval, and cannot approve it")
        if who in approvals:
            raise Conflict(f"{who} has already approved campaign {campaign.id}", {"state": campaign.state})

    def _step(self, who: str, action: str, from_state: str, to_state: str, comment: str) -> HistoryEntry:
        return HistoryEntry(self._clock.now(), who, action, from_state, to_state, comment)

    async def _record(self, updated: Campaign, who: str, action: str, steps: Sequence[tuple[str, str]],
                      comment: str) -> Campaign:
        """Write the campaign with a history entry per step, in one transaction (a multi-step move, such as a
        rejected campaign submitted again through draft, is written whole or not at all)."""
        return await self._campaigns.replace(updated, [self._step(who, action, from_state, to_state, comment)
                                                       for from_state, to_state in steps])

    async def _after(self, actor: Principal | str, campaign: Campaign, action: str,
                     steps: Sequence[tuple[str, str]], comment: str, **details: object) -> None:
        who = _who(actor)
        for from_state, to_state in steps:
            await self._audit.record(actor, f"campaign.{action}", campaign.id, from_state=from_state,
                                     to_state=to_state, comment=comment, **details)
            await self._publish(CampaignChanged(campaign.id, action, from_state, to_state, who, self._clock.now(),
                                                comment))


def _due(campaign: Campaign, now: float) -> tuple[str, str, str] | None:
    if campaign.state in ("approved", "scheduled") and campaign.starts_at is not None and campaign.starts_at <= now:
        return "start", campaign.state, "live"
    if campaign.state == "live" and campaign.ends_at is not None and campaign.ends_at <= now:
        return "complete", "live", "completed"
    return None


def _cannot(action: str, campaign: Campaign, why: str = "") -> Conflict:
    return Conflict(f"cannot {action} campaign {campaign.id}: it is {campaign.state}{why}", {"state": campaign.state})


def _check_window(starts_at: float | None, ends_at: float | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at", {"field": "ends_at"})


def _loggable(changes: dict[str, Any]) -> dict[str, Any]:
    """Audit details: the changed fields' values as JSON can hold them."""
    return {k: msgspec.to_builtins(v) if v is not None else None for k, v in changes.items()}
