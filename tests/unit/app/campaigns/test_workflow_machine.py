"""The campaign workflow against a model of its rules, by hypothesis: any sequence of steps by any of three admins
(creating, editing, submitting, approving, rejecting, scheduling, pausing, resuming, archiving, and time passing
under the scheduler), and the asset sync refreshing a creative, leaves every campaign in the state the rules say,
with the editors, approvals and pending changes they say, one history entry per step, and only live campaigns
bidding. A refused step is 409 (or 403 for an approver who created the campaign, edited it before its approval or
last, or whose changes wait for approval) and changes nothing. The sync's edits are no one's: they neither free an
editor to approve nor take a rejected campaign back to draft."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.errors import Conflict, Forbidden, InvalidInput
from state.campaigns import Campaign, Creative
from tests.unit.app.campaigns.helpers import WorkflowOn

ADMINS = ("author", "ana", "ben")
SYNC = "dam-sync"  # the asset sync, a system: its edits are no admin's
LOW, HIGH = 100_000_000, 5_000_000_000  # a daily budget under and over the high-budget rule's 1,000 USD
RUNNING = ("approved", "scheduled", "live", "paused")
T0 = 1_800_000_000.0


class _Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> float:
        return self.at


@dataclass
class Expected:
    """What the rules say one campaign is."""
    state: str
    creator: str
    editor: str
    budget: int
    channels: list[str]
    creative: bool
    starts_at: float | None
    ends_at: float | None
    approvals: list[str] = field(default_factory=list)
    required: int = 0
    pending: dict | None = None  # {"budget" (None: unchanged), "submitted_by", "approvals", "editors", "required"}
    editors: list[str] = field(default_factory=list)  # who edited it before its approval
    steps: int = 1  # history entries (create is the first)


def required(budget: int, channels: list[str]) -> int:
    return 2 if budget > 1_000_000_000 or "sms" in channels else 1


class WorkflowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = _Clock()
        node = self.run(WorkflowOn.open(Path(self.tmp.name) / "records.db", self.clock))
        self.db, self.store, self.campaigns, self.workflow = node.db, node.store, node.campaigns, node.workflow
        self.published = node.published
        self.model: dict[str, Expected] = {}

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def who(self, principal: str) -> str:
        """The admin (one of ADMINS) a stored principal is: here the workflow is called with the names themselves."""
        return principal

    def advance(self, seconds: float) -> None:
        self.clock.at += seconds

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()
        self.tmp.cleanup()

    def _pick(self, pick: int) -> str:
        ids = sorted(self.model)
        return ids[pick % len(ids)]

    def _attempt(self, call, allowed: bool, forbidden: bool = False) -> bool:
        """Run a step; it must succeed exactly when the model allows it (403 when `forbidden`, else 409/400)."""
        before = {c.id: c for c in self.store.all()}
        try:
            self.run(call)
        except Forbidden:
            assert forbidden, "refused as forbidden, but the rules allow it"
        except (Conflict, InvalidInput) as exc:
            assert not allowed and not forbidden, f"refused ({exc.message}), but the rules allow it"
        else:
            assert allowed, "taken, but the rules refuse it"
            return True
        assert {c.id: c for c in self.store.all()} == before  # a refused step changes nothing
        return False

    @initialize(live=st.booleans(), budget=st.sampled_from([LOW, HIGH]))
    def running_campaign(self, live, budget):
        """Each run starts with one campaign already approved (and live or not), so that the steps on a running
        campaign (its changes under review, pausing, the scheduler ending it) are reached as often as the rest."""
        self.create("author", budget, ["display"], True, -10.0 if live else None, 300.0)
        self.submit(0, "author")
        for approver in ("ana", "ben")[:required(budget, [])]:
            self.approve(0, approver)
        assert self.model["c0"].state == "approved"
        self.time_passes(1.0)

    # ---- the steps ----
    @precondition(lambda self: len(self.model) < 3)  # few campaigns: steps meet the same one often
    @rule(actor=st.sampled_from(ADMINS), budget=st.sampled_from([LOW, HIGH]),
          channels=st.sampled_from([[], ["display"], ["sms"], ["email", "sms"]]), creative=st.booleans(),
          start=st.sampled_from([None, -10.0, 100.0]), length=st.sampled_from([None, 300.0]))
    def create(self, actor, budget, channels, creative, start, length):
        campaign_id = f"c{len(self.model)}"
        starts_at = None if start is None else self.clock.now() + start
        ends_at = None if length is None else (starts_at or self.clock.now()) + length
        creatives = [Creative("k", "banner", "<b>", w=300, h=250)] if creative else []
        self.run(self.workflow.create(actor, Campaign(
            id=campaign_id, name="x", advertiser_domain="contrail.example", bid_cap_micros=1_000_000,
            daily_budget_micros=budget, channels=channels, creatives=creatives, starts_at=starts_at,
            ends_at=ends_at, state="live")))  # the state a caller sends is not taken
        self.model[campaign_id] = Expected("draft", actor, actor, budget, channels, creative, starts_at, ends_at)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS), budget=st.sampled_from([None, LOW, HIGH]))
    def edit(self, pick, actor, budget):
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        changes = {"name": "renamed"} if budget is None else {"daily_budget_micros": budget}
        allowed = m.state not in ("in_review", "completed", "archived")
        if self._attempt(self.workflow.edit(actor, campaign_id, changes), allowed):
            m.editor = actor
            m.steps += 1
            if m.state in ("draft", "rejected"):
                m.editors = [*(e for e in m.editors if e != actor), actor]
            if budget is not None and m.state in RUNNING:
                earlier = [e for e in (m.pending or {}).get("editors", []) if e != actor]
                m.pending = {"budget": budget, "submitted_by": actor, "approvals": [], "editors": [*earlier, actor],
                             "required": required(budget, m.channels)}
            elif budget is not None:
                m.budget = budget
            if m.state == "rejected":
                m.state = "draft"

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def asset_sync(self, pick):
        """The asset sync refreshes the campaign's creative (a newer version of its asset), as a system."""
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        if not m.creative:
            return  # nothing imported to refresh
        refreshed = {"creatives": [Creative("k", "banner", "<b>v2</b>", w=300, h=250)]}
        allowed = m.state not in ("in_review", "completed", "archived")
        if self._attempt(self.workflow.edit(SYNC, campaign_id, refreshed, system=True), allowed):
            m.steps += 1  # the state, `edited_by` and the editors stay as they were
            if m.state in RUNNING:  # creatives wait for approval: the sync's change joins those under review
                p = m.pending or {"budget": None, "editors": []}
                budget = p["budget"]
                m.pending = {"budget": budget, "submitted_by": SYNC, "approvals": [],
                             "editors": [*(e for e in p["editors"] if e != SYNC), SYNC],
                             "required": required(m.budget if budget is None else budget, m.channels)}

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS))
    def submit(self, pick, actor):
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        showable = m.creative or "display" not in (m.channels or ["display"])
        if self._attempt(self.workflow.submit(actor, campaign_id), m.state in ("draft", "rejected") and showable):
            m.steps += 2 if m.state == "rejected" else 1
            m.state, m.approvals, m.required = "in_review", [], required(m.budget, m.channels)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS))
    def approve(self, pick, actor):
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        if m.state == "in_review":
            own = actor in (m.creator, m.editor, *m.editors)  # no one who edited the version under review
            allowed = not own and actor not in m.approvals
            if self._attempt(self.workflow.approve(actor, campaign_id), allowed, forbidden=own):
                m.approvals.append(actor)
                m.steps += 1
                if len(m.approvals) >= m.required:
                    m.state, m.editors = "approved", []
        elif m.state in RUNNING and m.pending is not None:
            p = m.pending
            own = actor in (m.creator, m.editor, *p["editors"])  # no one whose changes it holds, nor the last editor
            allowed = not own and actor not in p["approvals"]
            if self._attempt(self.workflow.approve(actor, campaign_id), allowed, forbidden=own):
                p["approvals"].append(actor)
                m.steps += 1
                if len(p["approvals"]) >= p["required"]:
                    m.approvals, m.required, m.pending = p["approvals"], p["required"], None
                    if p["budget"] is not None:
                        m.budget = p["budget"]
        else:
            self._attempt(self.workflow.approve(actor, campaign_id), False)

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS))
    def reject(self, pick, actor):
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        reviewing = m.state == "in_review" or (m.state in RUNNING and m.pending is not None)
        if self._attempt(self.workflow.reject(actor, campaign_id), reviewing):
            m.steps += 1
            if m.state == "in_review":
                m.state, m.approvals = "rejected", []
            else:
                m.pending = None

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS), start=st.sampled_from([None, -5.0, 50.0]))
    def schedule(self, pick, actor, start):
        campaign_id = self._pick(pick)
        m = self.model[campaign_id]
        starts_at = None if start is None else self.clock.now() + start
        ends_ok = True
        begin = starts_at if starts_at is not None else m.starts_at if m.starts_at is not None else self.clock.now()
        if m.ends_at is not None and m.ends_at <= begin:
            ends_ok = False
        if self._attempt(self.workflow.schedule(actor, campaign_id, starts_at), m.state == "approved" and ends_ok):
            m.state, m.starts_at = "scheduled", begin
            m.steps += 1
            self._expect_ticks()

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), actor=st.sampled_from(ADMINS),
          move=st.sampled_from([("pause", "live", "paused"), ("resume", "paused", "live"),
                                ("archive", "completed", "archived")]))
    def move(self, pick, actor, move):
        campaign_id = self._pick(pick)
        action, from_state, to_state = move
        m = self.model[campaign_id]
        if self._attempt(getattr(self.workflow, action)(actor, campaign_id), m.state == from_state):
            m.state = to_state
            m.steps += 1

    @rule(seconds=st.sampled_from([1.0, 60.0, 200.0, 1000.0]))
    def time_passes(self, seconds):
        self.advance(seconds)
        taken = self.run(self.workflow.tick())
        assert taken == self._expect_ticks()

    def _expect_ticks(self) -> int:
        """What the scheduler does now, in the model: start, then complete, each campaign whose time has come."""
        now, taken = self.clock.now(), 0
        for m in self.model.values():
            if m.state in ("approved", "scheduled") and m.starts_at is not None and m.starts_at <= now:
                m.state, m.steps, taken = "live", m.steps + 1, taken + 1
            if m.state == "live" and m.ends_at is not None and m.ends_at <= now:
                m.state, m.steps, taken = "completed", m.steps + 1, taken + 1
        return taken

    # ---- what must always hold ----
    @invariant()
    def campaigns_are_as_the_rules_say(self):
        for campaign_id, m in self.model.items():
            c = self.run(self.store.read(campaign_id))
            assert c is not None
            assert (self.store.get(campaign_id) is None) == (m.state == "archived")  # the archived leave memory
            assert (c.state, c.daily_budget_micros, self.who(c.created_by), self.who(c.edited_by)) == \
                (m.state, m.budget, m.creator, m.editor)
            assert [self.who(e) for e in c.editors] == m.editors
            if m.state in ("in_review", "approved") or (m.state in RUNNING and m.approvals):
                assert ([self.who(a) for a in c.approvals], c.approvals_required) == (m.approvals, m.required)
            if m.pending is None:
                assert c.pending is None
            else:
                assert c.pending is not None
                assert (c.pending.daily_budget_micros, self.who(c.pending.submitted_by),
                        [self.who(a) for a in c.pending.approvals], c.pending.approvals_required) == \
                    (m.pending["budget"], m.pending["submitted_by"], m.pending["approvals"], m.pending["required"])

    @invariant()
    def every_step_is_in_the_history_and_on_the_bus(self):
        for campaign_id, m in self.model.items():
            history = self.run(self.workflow.history(campaign_id))
            assert len(history) == m.steps
            assert history[-1].to_state == m.state
            assert sum(e.campaign_id == campaign_id for e in self.published) == m.steps

    @invariant()
    def only_live_campaigns_bid(self):
        indexed = {e.campaign.id for e in self.campaigns._entries()}
        assert indexed == {i for i, m in self.model.items() if m.state == "live" and m.creative}


WorkflowMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestWorkflowMatchesItsRules = WorkflowMachine.TestCase
