"""Builds campaign management over bidding's campaigns: the workflow with its scheduler, the reports' roll-up, the
offer-selection policies (with the external decision service when one is configured), and the team's tools from
`[integrations]` (a task tracker, an asset library, Power BI), each off until configured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.http.dam import AemAssets, AprimoAssets, BynderAssets
from adapters.http.decision import DecisionClient
from adapters.http.powerbi import PowerBIExporter
from adapters.http.retry import RetryPolicy
from adapters.http.tasks import AsanaTasks, JiraTasks
from adapters.sqlite.cursors import SqliteCursorStore
from adapters.sqlite.policies import SqlitePolicyStore
from adapters.sqlite.reports import SqliteReportStore
from adapters.sqlite.tasks import SqliteTaskStore
from app.bidding.campaigns import CampaignService
from app.campaigns.events import CampaignChanged
from app.campaigns.integrations import AssetImport, ReviewTasks
from app.campaigns.policies import PolicyService
from app.campaigns.ports import AssetLibrary, TaskTracker
from app.campaigns.powerbi_sync import PowerBISync
from app.campaigns.reports import CampaignReports
from app.campaigns.workflow import CampaignWorkflow
from app.config import IntegrationsConfig
from app.infra import Infra
from state.ports import CampaignStore


@dataclass
class Campaigns:
    workflow: CampaignWorkflow
    policy_store: SqlitePolicyStore
    policies: PolicyService
    reports: CampaignReports
    tasks: ReviewTasks
    assets: AssetImport

    async def close(self, wait_s: float | None = None) -> None:
        """The team's tools' sessions, after the review tasks being opened have finished (at most `wait_s`)."""
        await self.tasks.close(wait_s)
        await self.assets.close()


def build(infra: Infra, campaigns: CampaignService, store: CampaignStore,
          route_of: Callable[[str], str | None]) -> Campaigns:
    """`route_of`: a flight's route ("ORIGIN-DESTINATION"), which reports attribute paid orders by."""
    config = infra.config.campaigns
    workflow = CampaignWorkflow(campaigns, store, config, infra.clock, infra.audit, infra.bus.publish)
    infra.supervisor.add_periodic("campaign_scheduler", config.scheduler_interval_s, workflow.tick)
    policy_store = SqlitePolicyStore(infra.records_db)
    metrics = infra.metrics
    tools = infra.config.integrations

    def counted(tool: str, outcome: str) -> None:
        metrics.integration_calls.labels(tool, outcome).inc()
    # Rewards and the catalogue retry like every tool; a recommendation has its own deadline and one attempt.
    retry = RetryPolicy(attempts=tools.max_attempts, deadline_s=tools.timeout_s)
    decision = DecisionClient(config.decision_url, config.decision_api_key,
                              recommendation_deadline_s=config.decision_deadline_ms / 1000, policy=retry,
                              on_attempt=counted) if config.decision_url else None
    policies = PolicyService(campaigns, policy_store, config, infra.clock, infra.metrics, infra.bus, decision,
                             route_of=route_of, changes=infra.changes)
    infra.supervisor.add_periodic("policy_reward_memory", 3600, policies.purge_signals)
    metrics.watch_queue("policies_in_memory", lambda: len(policies))
    infra.supervisor.add_periodic("policy_memory", 60, policies.forget_archived)
    reports = CampaignReports(infra.event_log, SqliteReportStore(infra.records_db), campaigns, infra.clock,
                              infra.metrics, route_of, revenue_currency=infra.config.retail.currency,
                              signal_memory_s=config.reward_memory_days * 86_400, history=store.history)
    infra.supervisor.add_periodic("campaign_rollup", config.rollup_interval_s, reports.roll_up)
    tasks = ReviewTasks(task_tracker(tools, retry, counted), tools.task_tool, SqliteTaskStore(infra.records_db),
                        campaigns, infra.clock, infra.config.channels.public_base_url)
    infra.bus.subscribe(CampaignChanged, tasks.on_change)
    assets = AssetImport(asset_library(tools, retry, counted), tools.dam, workflow, campaigns, infra.clock,
                         tools.dam_folder)
    metrics.dam_assets_failing.set_function(lambda: assets.failing)
    # The syncs with the team's tools run on one node at a time: two would open a task twice, revise a creative
    # twice or push the same rows twice, and share one tool's rate limit.
    if tasks.enabled:
        infra.add_on_one_node("review_task_sync", tools.task_sync_interval_s, tasks.sync)
    if tools.dam:
        infra.add_on_one_node("asset_sync", tools.dam_sync_interval_s, assets.sync)
    if tools.powerbi_enabled:  # off by default: Microsoft is retiring real-time streaming datasets
        exporter = powerbi_exporter(tools, retry, counted)
        sync = PowerBISync(exporter, SqliteReportStore(infra.records_db), SqliteCursorStore(infra.records_db),
                           infra.clock, metrics, table=tools.powerbi_table, interval_s=tools.powerbi_interval_s,
                           name_of=lambda c: campaigns.get(c).name if campaigns.exists(c) else None,
                           one_node=infra.one_node("powerbi_sync", tools.powerbi_interval_s).run)
        infra.supervisor.add("powerbi_sync", sync.run)
    return Campaigns(workflow, policy_store, policies, reports, tasks, assets)


def task_tracker(tools: IntegrationsConfig, retry: RetryPolicy, counted: Callable[[str, str], None]
                 ) -> TaskTracker | None:
    """The task tool `tools.task_tool` names, with every setting of `[integrations]` it has; None for none."""
    if tools.task_tool == "jira":
        return JiraTasks(tools.jira_url, tools.jira_email, tools.jira_api_token, tools.jira_project,
                         issue_type=tools.jira_issue_type, policy=retry, on_attempt=counted)
    if tools.task_tool == "asana":
        return AsanaTasks(tools.asana_url, tools.asana_token, tools.asana_project, policy=retry, on_attempt=counted)
    return None


def asset_library(tools: IntegrationsConfig, retry: RetryPolicy, counted: Callable[[str, str], None]
                  ) -> AssetLibrary | None:
    """The asset manager `tools.dam` names, with every setting of `[integrations]` it has; None for none."""
    if tools.dam == "aem":
        # The config allows one of the two (Basic auth on premises, a Bearer token on AEM as a Cloud Service).
        basic = (tools.aem_login, tools.aem_password) if tools.aem_login else None
        return AemAssets(tools.dam_url, basic=basic, token=tools.dam_token or None, policy=retry, on_attempt=counted)
    if tools.dam == "bynder":
        return BynderAssets(tools.dam_url, tools.dam_token, policy=retry, on_attempt=counted)
    if tools.dam == "aprimo":
        return AprimoAssets(tools.dam_url, tools.dam_token, fulltext_expression=tools.aprimo_fulltext_expression,
                            folder_expression=tools.aprimo_folder_expression, policy=retry, on_attempt=counted)
    return None


def powerbi_exporter(tools: IntegrationsConfig, retry: RetryPolicy, counted: Callable[[str, str], None]
                     ) -> PowerBIExporter:
    """The Power BI exporter of `[integrations]`: its dataset, in the workspace `powerbi_group_id` (else My
    workspace), enabled (the caller builds it only when `powerbi_enabled`)."""
    return PowerBIExporter(tools.powerbi_url, tools.powerbi_dataset_id, tools.powerbi_token,
                           group_id=tools.powerbi_group_id or None, enabled=True, policy=retry, on_attempt=counted)
