"""Builds the campaign workflow over bidding's campaigns, with its scheduler under the supervisor."""

from __future__ import annotations

from dataclasses import dataclass

from app.bidding.campaigns import CampaignService
from app.campaigns.workflow import CampaignWorkflow
from app.infra import Infra
from state.ports import CampaignStore


@dataclass
class Campaigns:
    workflow: CampaignWorkflow


def build(infra: Infra, campaigns: CampaignService, store: CampaignStore) -> Campaigns:
    config = infra.config.campaigns
    workflow = CampaignWorkflow(campaigns, store, config, infra.clock, infra.audit, infra.bus.publish)
    infra.supervisor.add_periodic("campaign_scheduler", config.scheduler_interval_s, workflow.tick)
    return Campaigns(workflow)
