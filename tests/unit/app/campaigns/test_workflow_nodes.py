"""Two nodes sharing one store take workflow steps on the same campaign, each from the copy it holds: a node whose
copy is stale (the other's step not yet heard) writes nothing, reads the campaign back, and decides again on what is
stored, so no step is undone or taken twice. Two databases on one SQLite file stand for the shared store here; the
PostgreSQL store runs the same statements."""

from __future__ import annotations

import pytest

from adapters.sqlite.campaigns import SqliteCampaignStore
from app.bidding.campaigns import ChangedElsewhere
from app.errors import Conflict
from state.campaigns import Campaign, Creative
from state.ports import WriteConflict
from tests.unit.app.campaigns.helpers import WorkflowOn

T0 = 1_800_000_000.0
HIGH = 5_000_000_000  # over the high-budget rule's 1,000 USD: two approvers


class _Clock:
    at = T0

    def now(self) -> float:
        return self.at


@pytest.fixture
async def nodes(tmp_path):
    clock = _Clock()
    a = await WorkflowOn.open(tmp_path / "records.db", clock)
    b = await WorkflowOn.open(tmp_path / "records.db", clock)
    yield a, b, clock
    for node in (a, b):
        await node.db.close()


def _spring(budget: int = 100_000_000, starts_at: float | None = None, name: str = "Spring") -> Campaign:
    return Campaign(id="spring", name=name, advertiser_domain="contrail.example", bid_cap_micros=1_000_000,
                    daily_budget_micros=budget, channels=["display"],
                    creatives=[Creative("k", "banner", "<b>", w=300, h=250)], starts_at=starts_at, ends_at=None)


async def _approved_on_both(a: WorkflowOn, b: WorkflowOn, budget: int = 100_000_000,
                            starts_at: float | None = None) -> str:
    """A campaign created and approved on A, then read by B (as B's change feed would have it)."""
    await a.workflow.create("author", _spring(budget, starts_at))
    await a.workflow.submit("author", "spring")
    if budget <= 1_000_000_000:
        await a.workflow.approve("ana", "spring")
    await b.store.refresh(["spring"])
    return "spring"


async def _history(node: WorkflowOn) -> list[tuple[str, str, str, str]]:
    return [(h.actor, h.action, h.from_state, h.to_state) for h in await node.store.history("spring", 100)]


async def test_a_stale_write_is_refused_whole_and_the_store_reads_the_campaign_back(nodes):
    a, b, _ = nodes
    await _approved_on_both(a, b)
    await a.workflow.schedule("ana", "spring")          # goes live at once (no start of its own)
    assert b.store.get("spring").state == "approved"  # B has not heard
    stale = b.store.get("spring")
    with pytest.raises(WriteConflict):
        await b.store.put(stale, T0)                    # would put "approved" back over "live"
    assert b.store.get("spring").state == "live"       # read back
    fresh = SqliteCampaignStore(a.db)
    await fresh.load()
    assert fresh.get("spring").state == "live"
    assert [h[3] for h in await _history(a)] == ["draft", "in_review", "approved", "scheduled", "live"]


async def test_a_campaign_created_at_once_on_two_nodes_is_created_once(nodes):
    a, b, _ = nodes
    await a.workflow.create("author", _spring())
    with pytest.raises(WriteConflict):  # B's create, past its own check, which found nothing yet
        await b.store.put(_spring(name="Other"), T0, new=True)
    assert b.store.get("spring").name == "Spring"      # read back; A's campaign stands
    assert [h[1] for h in await _history(b)] == ["create"]


async def test_both_schedulers_due_at_once_start_the_campaign_once(nodes):
    a, b, clock = nodes
    await _approved_on_both(a, b, starts_at=T0 + 60)
    clock.at = T0 + 61
    assert await a.workflow.tick() == 1
    assert await b.workflow.tick() == 0                # its copy said "approved": refused, nothing written
    assert b.store.get("spring").state == "live"
    assert [h for h in await _history(b) if h[1] == "start"] == [("scheduler", "start", "approved", "live")]
    assert [e.action for e in b.published] == []      # B published no step it did not take


async def test_two_approvers_on_two_nodes_both_count(nodes):
    a, b, _ = nodes
    await _approved_on_both(a, b, budget=HIGH)        # in review, two approvals needed
    assert b.store.get("spring").approvals == []
    await a.workflow.approve("ana", "spring")
    approved = await b.workflow.approve("ben", "spring")  # B held no approval: decided again, after ana's
    assert approved.state == "approved" and approved.approvals == ["ana", "ben"]
    assert [h[:2] for h in await _history(a) if h[1] == "approve"] == [("ana", "approve"), ("ben", "approve")]


async def _paused_on_a_while_b_holds_it_live(a: WorkflowOn, b: WorkflowOn) -> None:
    await _approved_on_both(a, b)
    await a.workflow.schedule("ana", "spring")
    await b.store.refresh(["spring"])
    await a.workflow.pause("ana", "spring")


async def test_a_step_the_other_node_already_took_is_409_naming_the_state_it_is_in(nodes):
    a, b, _ = nodes
    await _paused_on_a_while_b_holds_it_live(a, b)
    with pytest.raises(Conflict) as refused:           # B still holds "live": decided again on "paused"
        await b.workflow.pause("ben", "spring")
    assert not isinstance(refused.value, ChangedElsewhere)
    assert refused.value.details == {"state": "paused"}
    assert [h[1] for h in await _history(a)].count("pause") == 1


async def test_an_edit_on_a_stale_node_keeps_the_other_nodes_step(nodes):
    a, b, _ = nodes
    await _paused_on_a_while_b_holds_it_live(a, b)
    edited = await b.workflow.edit("ben", "spring", {"name": "Spring sale"})
    assert edited.state == "paused" and edited.name == "Spring sale"  # the pause is not undone
    assert a.store.get("spring").name == "Spring"      # A's own copy is stale now: its next write is refused too
    await a.store.refresh(["spring"])
    assert a.store.get("spring").name == "Spring sale" and a.store.get("spring").state == "paused"
