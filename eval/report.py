"""What the evaluations' `--json` share: one cleaning of the report for JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def json_ready(value: Any) -> Any:
    """The report with floats rounded to 6 places and NaN or infinity as null (JSON has neither)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(json_ready(report), indent=2)
