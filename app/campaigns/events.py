"""What the campaign workflow tells the other domains, on the bus, once a step is durable."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CampaignChanged:
    """A campaign took a workflow step (`action`: create, submit, approve, reject, schedule, start, pause, resume,
    complete, archive, edit, revise, approve_changes, reject_changes); from_state == to_state for a step that does
    not move it (an approval short of the number needed, an edit)."""
    campaign_id: str
    action: str
    from_state: str
    to_state: str
    actor: str
    at: float
    comment: str
