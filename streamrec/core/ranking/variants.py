"""A/B variants: named recommender configurations, assigned by a stable hash of the user.

A user's variant depends only on the experiment name and their pseudonym, so
every worker, every restart and every replay puts them in the same arm. The
hash is blake2b (not Python's `hash`, which is salted per process).

Each variant changes *serving* only: which model ranks (the online ranker or
the fixed blend), the blend weights, how many candidates are ranked, the list
length, the per-category cap and the co-visitation anchors. What is learned
(trending, co-visitation, the ranker from every variant's impressions) is
shared, so an arm never starves for data.

>>> exp = Experiment.parse('{"control": {}, "no_ranker": {"ranker": false}}')
>>> [v.name for v in exp.variants], exp.assign("u_1").name == exp.assign("u_1").name
(['control', 'no_ranker'], True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from streamrec.core.ranking.models import FEATURES, FixedBlend
from streamrec.errors import ConfigError
from streamrec.serde import json_setting

DEFAULT_VARIANT = "default"
_KNOWN_KEYS = {"weight", "ranker", "weights", "rank_pool", "top_k", "max_per_category", "anchors"}


@dataclass(frozen=True)
class Variant:
    """One arm. `None` fields keep the recommender's own setting."""

    name: str
    weight: float = 1.0
    #: False: always rank with the fixed blend, even when the online ranker is ready.
    ranker: bool | None = None
    #: Fixed-blend weights by feature (the others keep their defaults).
    weights: dict[str, float] | None = None
    rank_pool: int | None = None
    top_k: int | None = None
    max_per_category: int | None = None
    anchors: int | None = None
    blend: FixedBlend | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> Variant:
        unknown = set(d) - _KNOWN_KEYS
        if unknown:
            raise ConfigError(
                f"variant {name!r}: unknown key(s) {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}"
            )
        weights = d.get("weights")
        blend = None
        if weights is not None:
            bad = set(weights) - set(FEATURES)
            if bad:
                raise ConfigError(
                    f"variant {name!r}: unknown blend feature(s) {sorted(bad)}; "
                    f"features: {', '.join(FEATURES)}"
                )
            blend = FixedBlend({k: float(v) for k, v in weights.items()})
            blend.version = f"{FixedBlend.version}+{name}"
        weight = float(d.get("weight", 1.0))
        if weight < 0:
            raise ConfigError(f"variant {name!r}: weight must be >= 0, not {weight}")
        ints = {}
        for key in ("rank_pool", "top_k", "max_per_category", "anchors"):
            if d.get(key) is not None:
                ints[key] = int(d[key])
                if ints[key] < (1 if key == "top_k" else 0):
                    raise ConfigError(f"variant {name!r}: {key} must be positive")
        ranker = d.get("ranker")
        return cls(
            name=name,
            weight=weight,
            ranker=None if ranker is None else bool(ranker),
            weights=weights,
            blend=blend,
            **ints,
        )


class Experiment:
    """Variants with weights; `assign(user)` is stable across processes and restarts."""

    def __init__(self, variants: list[Variant], name: str = "exp") -> None:
        if not variants:
            variants = [Variant(DEFAULT_VARIANT)]
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must be unique: {names}")
        total = sum(v.weight for v in variants)
        if total <= 0:
            raise ConfigError("variant weights must add up to more than 0")
        self.name = name
        self.variants = variants
        #: Upper bucket bound of each variant, in 2^64 hash space.
        self._bounds: list[int] = []
        acc = 0.0
        for v in variants:
            acc += v.weight / total
            self._bounds.append(min(2**64, round(acc * 2**64)))
        self._bounds[-1] = 2**64
        self._salt = f"{name}/".encode()
        self._single = variants[0] if len(variants) == 1 else None

    @classmethod
    def parse(cls, spec: str, name: str = "exp") -> Experiment:
        """From JSON (an object name -> options) or `@path/to/file.json`; "" -> one variant."""
        spec = spec.strip()
        if not spec:
            return cls([], name)
        raw = json_setting(
            "STREAMREC_VARIANTS",
            spec,
            'a JSON object, e.g. \'{"control": {"weight": 0.9}, '
            '"no_ranker": {"weight": 0.1, "ranker": false}}\'',
        )
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise ConfigError("STREAMREC_VARIANTS must map variant names to objects of options")
        return cls([Variant.from_dict(str(k), v) for k, v in raw.items()], name)

    @property
    def control(self) -> Variant:
        """The first variant: what the others are tested against."""
        return self.variants[0]

    @property
    def max_rank_pool(self) -> int | None:
        pools = [v.rank_pool for v in self.variants if v.rank_pool is not None]
        return max(pools) if pools else None

    def bucket(self, user: str) -> int:
        digest = hashlib.blake2b(self._salt + user.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def assign(self, user: str) -> Variant:
        if self._single is not None:
            return self._single
        b = self.bucket(user)
        for variant, bound in zip(self.variants, self._bounds, strict=True):
            if b < bound:
                return variant
        return self.variants[-1]
