"""What every record module shares: the event types and two value helpers."""

from __future__ import annotations

import math
from typing import Any

EVENT_TYPES = ("view", "click", "search", "add_to_cart", "purchase", "impression", "forget")
#: Events that are behaviour (all but `forget`, an erasure request).
BEHAVIOUR_TYPES = EVENT_TYPES[:-1]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _finite(x: float | None, digits: int) -> float:
    """`x` rounded, or 0.0 when it is not a finite number (JSON would turn it into null).

    >>> _finite(float("nan"), 2), _finite(None, 2), _finite(1.23456, 2)
    (0.0, 0.0, 1.23)
    """
    return round(x, digits) if x is not None and math.isfinite(x) else 0.0
