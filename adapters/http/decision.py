"""An external decision service (OfferFit-like): it picks the action (an offer, a message, a send time) for a customer
and learns from the rewards Contrail reports. This module is Contrail's own contract for such services; a vendor
is plugged in by answering these shapes, or by a small proxy that translates to them.

Every call carries `Authorization: Bearer <api key>` and `Content-Type: application/json`.

  POST {base}/v1/recommendations
       {"user_id": "u-42", "context": {"route": "LIS-FNC", "channel": "email", ...}, "arms": ["a", "b", "c"]}
    -> 200 {"action": "b"}            one of the arms
    -> 200 {"action": null}           the service has no opinion: the caller uses its local policy
       An action that is not one of the arms is a broken contract and raises IntegrationError.
  POST {base}/v1/rewards   (Idempotency-Key: <uuid>, the same on every retry of one reward)
       {"user_id": "u-42", "action": "b", "reward": 1.0}
    -> 200/202/204, any body
  PUT  {base}/v1/catalog
       {"items": [{"id": "offer-1", ...}, ...]}   the whole catalog of arms; replaces the previous one
    -> 200/204, any body
  Errors: any non-2xx; a JSON body's "error"/"message"/"detail" is quoted in the IntegrationError.

Each call has its own deadline (`recommendation_deadline_s`, small: a page is waiting; rewards and catalog get
`policy.deadline_s`). A recommendation is tried once by default, since a retry rarely fits its deadline; rewards and
the catalog are retried on connection errors, timeouts, 429 and 5xx. Every failure, timeout included, raises
IntegrationError, so the caller can wrap each call in the shared CircuitBreaker (app/runtime/breaker.py): `allow()`
before, `succeeded()` after a return, `failed()` on IntegrationError, and its local policy when not allowed or failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from adapters.http.retry import IntegrationError, OnAttempt, RetryPolicy, Sleep, ToolClient


class DecisionClient(ToolClient):
    tool = "decision"

    def __init__(self, base_url: str, api_key: str, *, recommendation_deadline_s: float = 0.25,
                 recommendation_attempts: int = 1, policy: RetryPolicy | None = None,
                 on_attempt: OnAttempt | None = None, sleep: Sleep | None = None,
                 idempotency_key: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        super().__init__(base_url, policy=policy or RetryPolicy(attempts=3, deadline_s=5.0), on_attempt=on_attempt,
                         sleep=sleep)
        self._api_key = api_key
        self._new_key = idempotency_key
        self.recommendation_policy = replace(self.policy, attempts=recommendation_attempts,
                                             deadline_s=recommendation_deadline_s, base_delay_s=0.01)

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {self._api_key}"}

    async def get_recommendation(self, user_id: str, context: dict[str, Any], arms: list[str]) -> str | None:
        """The service's pick among `arms` for this customer, or None when it has no opinion."""
        answer = await self._call("POST", "/v1/recommendations",
                                  json={"user_id": user_id, "context": context, "arms": arms},
                                  policy=self.recommendation_policy)
        if not isinstance(answer.body, dict) or "action" not in answer.body:
            raise IntegrationError(self.tool, f"recommendation answered no action: {answer.body!r:.200}",
                                   answer.status)
        action = answer.body["action"]
        if action is None:
            return None
        if action not in arms:
            raise IntegrationError(self.tool, f"recommended {action!r}, which is not one of the arms", answer.status)
        return str(action)

    async def send_reward(self, user_id: str, action: str, reward: float) -> None:
        await self._call("POST", "/v1/rewards", json={"user_id": user_id, "action": action, "reward": reward},
                         headers={"Idempotency-Key": self._new_key()})

    async def sync_catalog(self, items: list[dict[str, Any]]) -> None:
        await self._call("PUT", "/v1/catalog", json={"items": items})
