"""The API outside the browser, for setting up and putting back what a journey needs."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.integration.console.conftest import DEMO_ADMIN


def call(base_url: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> Any:
    """One API call; the decoded JSON answer (raises urllib's HTTPError on an error status)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def admin_token(base_url: str) -> str:
    answer = call(base_url, "POST", "/v1/auth/token", {"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]})
    return answer["access_token"]
