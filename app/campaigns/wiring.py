"""Builds campaign management over bidding's campaigns: the workflow with its scheduler, the reports' roll-up, and
the offer-selection policies (with the external decision service when one is configured)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.http.decision import DecisionClient
from adapters.sqlite.policies import SqlitePolicyStore
from adapters.sqlite.reports import SqliteReportStore
from app.bidding.campaigns import CampaignService
from app.campaigns.policies import PolicyService
from app.campaigns.reports import CampaignReports
from app.campaigns.workflow import CampaignWorkflow
from app.infra import Infra
from state.ports import CampaignStore


@dataclass
class Campaigns:
    workflow: CampaignWorkflow
    policy_store: SqlitePolicyStore
    policies: PolicyService
    reports: CampaignReports


def build(infra: Infra, campaigns: CampaignService, store: CampaignStore,
          route_of: Callable[[str], str | None]) -> Campaigns:
    """`route_of`: a flight's route ("ORIGIN-DESTINATION"), which reports attribute paid orders by."""
    config = infra.config.campaigns
    workflow = CampaignWorkflow(campaigns, store, config, infra.clock, infra.audit, infra.bus.publish)
    infra.supervisor.add_periodic("campaign_scheduler", config.scheduler_interval_s, workflow.tick)
    policy_store = SqlitePolicyStore(infra.records_db)
    metrics = infra.metrics
    decision = DecisionClient(config.decision_url, config.decision_api_key,
                              recommendation_deadline_s=config.decision_deadline_ms / 1000,
                              on_attempt=lambda tool, outcome: metrics.integration_calls.labels(tool, outcome).inc()
                              ) if config.decision_url else None
    policies = PolicyService(campaigns, policy_store, config, infra.clock, infra.metrics, infra.bus, decision)
    reports = CampaignReports(infra.event_log, SqliteReportStore(infra.records_db), campaigns, infra.clock,
                              infra.metrics, route_of)
    infra.supervisor.add_periodic("campaign_rollup", config.rollup_interval_s, reports.roll_up)
    return Campaigns(workflow, policy_store, policies, reports)
