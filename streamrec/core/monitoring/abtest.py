"""Is a variant's CTR or hit rate really different from control's? A two-proportion z-test.

The test is two-sided with a pooled standard error. It says "significant" only
with at least `min_trials` trials in each arm, so a dashboard does not flag
the first handful of clicks. Looking at a running test again and again
inflates false positives (every look is another chance); readers who stop an
experiment on the first significant look should use a smaller `alpha`.

>>> r = two_proportion_test(120, 1000, 160, 1000)
>>> r.significant, round(r.p_value, 4), round(r.lift, 3)
(True, 0.0099, 0.333)
>>> two_proportion_test(120, 1000, 125, 1000).significant
False
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from streamrec.core.monitoring.quality import QualitySums


@dataclass(frozen=True)
class ABResult:
    metric: str
    control: str
    variant: str
    control_rate: float | None
    variant_rate: float | None
    lift: float | None  # variant / control - 1
    z: float | None
    p_value: float | None
    significant: bool
    control_trials: int
    variant_trials: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_proportion_test(
    s1: int,
    n1: int,
    s2: int,
    n2: int,
    *,
    alpha: float = 0.05,
    min_trials: int = 100,
    metric: str = "",
    control: str = "",
    variant: str = "",
) -> ABResult:
    """Arm 1 is control (s1 successes in n1 trials), arm 2 the variant."""
    p1 = s1 / n1 if n1 else None
    p2 = s2 / n2 if n2 else None
    z = p_value = lift = None
    if p1 is not None and p2 is not None:
        lift = p2 / p1 - 1.0 if p1 > 0 else None
        pooled = (s1 + s2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se > 0:
            z = (p2 - p1) / se
            p_value = math.erfc(abs(z) / math.sqrt(2))
    significant = p_value is not None and p_value < alpha and n1 >= min_trials and n2 >= min_trials
    return ABResult(metric, control, variant, p1, p2, lift, z, p_value, significant, n1, n2)


def compare_variants(
    quality: dict[str, QualitySums], control: str | None = None, alpha: float = 0.05
) -> list[ABResult]:
    """Every variant against control on hit rate and CTR."""
    if len(quality) < 2:
        return []
    names = sorted(quality)
    ctrl = control if control in quality else names[0]
    c = quality[ctrl]
    out = []
    for name in names:
        if name == ctrl:
            continue
        v = quality[name]
        out.append(
            two_proportion_test(
                c.hits, c.trials, v.hits, v.trials,
                alpha=alpha, metric="hit_rate", control=ctrl, variant=name,
            )
        )  # fmt: skip
        out.append(
            two_proportion_test(
                c.clicks, c.impressions, v.clicks, v.impressions,
                alpha=alpha, metric="ctr", control=ctrl, variant=name,
            )
        )  # fmt: skip
    return out
