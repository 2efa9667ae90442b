"""Task management tools a campaign team works in: a campaign's review, a creative to make, a broken feed to fix becomes
an issue in Jira or a task in Asana, and Contrail reads back whether it is done.

Both speak one interface, `TaskTracker`: `create(summary, description, labels) -> TaskLink` and
`status(link) -> TaskStatus` with `state` one of "open", "in_progress", "done" and `raw` the tool's own word.

Jira (Cloud or Data Center, REST API v2; Basic auth with the account's email and an API token):
  POST /rest/api/2/issue  {"fields": {"project": {"key": K}, "summary": S, "description": D,
                                      "issuetype": {"name": T}, "labels": [...]}}
       (T: the issue type, "Task" unless integrations.jira_issue_type names another the project has)
       -> 201 {"id": "10000", "key": "K-1", "self": ".../rest/api/2/issue/10000"}
  GET  /rest/api/2/issue/K-1?fields=status
       -> {"fields": {"status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}}
  The status category, not the workflow's status name, gives the state: new -> open, indeterminate -> in_progress,
  done -> done. Jira labels cannot hold spaces: runs of whitespace in a label become "-".

Asana (REST API 1.0; Bearer personal access token or OAuth token):
  POST /api/1.0/tasks  {"data": {"name": S, "notes": D, "projects": [gid]}}   (or "workspace": gid)
       -> 201 {"data": {"gid": "1204...", "permalink_url": "https://app.asana.com/...", ...}}
  GET  /api/1.0/tasks/{gid}?opt_fields=completed,name  -> {"data": {"completed": false, "name": ...}}
  Asana has no "in progress": a task is "done" when completed, else "open". Asana tags need tag gids, so labels are
  written on the last line of the notes ("Labels: a, b") rather than created as tags.
"""

from __future__ import annotations

import re

import aiohttp

from adapters.http.retry import OnAttempt, RetryPolicy, Sleep, ToolClient
from state.integrations import IntegrationError, TaskLink, TaskState, TaskStatus

_JIRA_CATEGORIES: dict[str, TaskState] = {"new": "open", "indeterminate": "in_progress", "done": "done"}


class JiraTasks(ToolClient):
    """Issues in one Jira project over REST API v2."""

    tool = "jira"

    def __init__(self, base_url: str, email: str, api_token: str, project_key: str, issue_type: str = "Task", *,
                 policy: RetryPolicy | None = None, on_attempt: OnAttempt | None = None,
                 sleep: Sleep | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        self._authorization = aiohttp.encode_basic_auth(email, api_token)
        self.project_key = project_key
        self.issue_type = issue_type

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": self._authorization}

    async def create(self, summary: str, description: str, labels: list[str]) -> TaskLink:
        fields = {"project": {"key": self.project_key}, "summary": summary, "description": description,
                  "issuetype": {"name": self.issue_type}, "labels": [jira_label(label) for label in labels if label]}
        # A POST that times out may have created the issue: retrying it could make a second one. Only answers that
        # say nothing was created (429, 5xx) and refused connections are retried, as for every other call.
        answer = await self._call("POST", "/rest/api/2/issue", json={"fields": fields})
        body = answer.body if isinstance(answer.body, dict) else {}
        key, issue_id = body.get("key"), body.get("id")
        if not key or not issue_id:
            raise IntegrationError(self.tool, f"created an issue but answered no id/key: {body!r:.200}", answer.status)
        return TaskLink(self.tool, str(issue_id), str(key), f"{self.base_url}/browse/{key}")

    async def status(self, link: TaskLink) -> TaskStatus:
        answer = await self._call("GET", f"/rest/api/2/issue/{link.key}", params={"fields": "status"})
        status = ((answer.body or {}).get("fields") or {}).get("status") or {}
        name = str(status.get("name") or "")
        category = str((status.get("statusCategory") or {}).get("key") or "")
        if category not in _JIRA_CATEGORIES:
            raise IntegrationError(self.tool, f"issue {link.key} has status {name!r} in unknown category {category!r}")
        return TaskStatus(_JIRA_CATEGORIES[category], name)


def jira_label(label: str) -> str:
    """Jira refuses labels with spaces; runs of whitespace become one "-"."""
    return re.sub(r"\s+", "-", label.strip())


class AsanaTasks(ToolClient):
    """Tasks in one Asana project (or, with `workspace=True`, a workspace without a project)."""

    tool = "asana"

    def __init__(self, base_url: str, token: str, workspace_or_project_gid: str, *, workspace: bool = False,
                 policy: RetryPolicy | None = None, on_attempt: OnAttempt | None = None,
                 sleep: Sleep | None = None) -> None:
        super().__init__(base_url, policy=policy, on_attempt=on_attempt, sleep=sleep)
        self._token = token
        self.gid = workspace_or_project_gid
        self.workspace = workspace

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {self._token}"}

    async def create(self, summary: str, description: str, labels: list[str]) -> TaskLink:
        notes = description + (f"\n\nLabels: {', '.join(labels)}" if labels else "")
        data: dict[str, object] = {"name": summary, "notes": notes}
        if self.workspace:
            data["workspace"] = self.gid
        else:
            data["projects"] = [self.gid]
        answer = await self._call("POST", "/api/1.0/tasks", json={"data": data})
        task = (answer.body or {}).get("data") or {}
        gid = task.get("gid")
        if not gid:
            raise IntegrationError(self.tool, f"created a task but answered no gid: {answer.body!r:.200}",
                                   answer.status)
        url = str(task.get("permalink_url") or f"https://app.asana.com/0/{self.gid}/{gid}")
        return TaskLink(self.tool, str(gid), str(gid), url)

    async def status(self, link: TaskLink) -> TaskStatus:
        answer = await self._call("GET", f"/api/1.0/tasks/{link.id}", params={"opt_fields": "completed,name"})
        task = (answer.body or {}).get("data") or {}
        if not isinstance(task.get("completed"), bool):
            raise IntegrationError(self.tool, f"task {link.id} answered no completed flag")
        return TaskStatus("done", "completed") if task["completed"] else TaskStatus("open", "incomplete")
