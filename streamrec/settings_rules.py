"""The rules a `Settings` must keep, as data: allowed words and lower bounds.

A broken rule is a `ConfigError` that names the variable, what it may be and
what it was, so the operator knows what to change. Rules that need code (the
keys of production mode, JSON-valued settings) stay with the parsing of those
values (`keys.py`, `Settings.blend_weight_map` and its kind).

>>> words("ranker_feedback", ("auto", "lists", "impressions"), "clicks")
"STREAMREC_RANKER_FEEDBACK must be 'auto', 'lists' or 'impressions', not 'clicks'"
"""

from __future__ import annotations

from typing import Any

from streamrec.errors import ConfigError

#: Every setting is the environment variable PREFIX + its field name in upper case.
PREFIX = "STREAMREC_"

#: Settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("dev", "production"),
    "store": ("rocksdb", "memory"),
    "encoder_backend": ("auto", "torch", "onnx", "onnx-int8"),
    "ranker_offers": ("pool", "list"),
    "ranker_objective": ("pairwise", "pointwise"),
    "share_ranker": ("sum", "average", "off"),
    "ranker_feedback": ("auto", "lists", "impressions"),
}

#: Settings with a lower bound (inclusive).
AT_LEAST: dict[str, int] = {
    "top_k": 1,
    "batch_max": 1,
    "partitions": 0,
    "query_max_tokens": 1,
    "title_max_tokens": 1,
    "encoder_batch_size": 1,
    "scorer_timeout_ms": 1,
    "scorer_batch_max_texts": 1,
    "quality_k": 1,
    "drift_psi_chunk": 4,
    "factors_dim": 0,
    "factors_every": 1,
    "factors_history": 1,
    "regression_items": 0,
    "regression_every": 1,
    "regression_window": 1,
    "regression_history": 1,
}

#: Settings that must lie strictly between two bounds.
BETWEEN: dict[str, tuple[float, float]] = {"ab_alpha": (0.0, 1.0)}

#: Settings that must be above zero.
POSITIVE = ("regression_l2",)


def words(name: str, allowed: tuple[str, ...], value: Any) -> str:
    listed = ", ".join(repr(w) for w in allowed[:-1]) + f" or {allowed[-1]!r}"
    return f"{PREFIX}{name.upper()} must be {listed}, not {value!r}"


def check(settings: Any) -> None:
    """Raise `ConfigError` for the first rule `settings` breaks."""
    for name, allowed in CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise ConfigError(words(name, allowed, getattr(settings, name)))
    for name, low in AT_LEAST.items():
        if getattr(settings, name) < low:
            raise ConfigError(
                f"{PREFIX}{name.upper()} must be >= {low}, not {getattr(settings, name)!r}"
            )
    for name, (above, below) in BETWEEN.items():
        if not above < getattr(settings, name) < below:
            raise ConfigError(
                f"{PREFIX}{name.upper()} must lie in ({above:g}, {below:g}), "
                f"not {getattr(settings, name)!r}"
            )
    for name in POSITIVE:
        if getattr(settings, name) <= 0:
            raise ConfigError(
                f"{PREFIX}{name.upper()} must be > 0, not {getattr(settings, name)!r}"
            )
    if settings.session_timeout_s <= settings.heartbeat_interval_s:
        raise ConfigError(
            f"{PREFIX}SESSION_TIMEOUT_S must be larger than {PREFIX}HEARTBEAT_INTERVAL_S"
        )
