"""Customer value: an online estimate of each user's long-term value (LTV).

A river regressor learns, from every purchase, the order value to expect from
a user with a given history (orders so far, average order value, tenure,
time since the last order). For a user with orders it is shrunk towards their
own average (`prior_orders` pseudo-orders of the model's guess), so a few
purchases already count and the model carries new users. A user's value is
that expected order value times their purchase rate, over `horizon_days`:

    value = E[order value | history] * orders / max(tenure, min_tenure) * horizon

The expected order value also feeds ranking (the price a user is likely to
pay, before they have paid anything themselves).

>>> m = ValueModel()
>>> p = Profile.new("u")
>>> for n in range(20):
...     _ = m.observe_purchase(p, amount=40.0, ts=n * 86_400_000)
...     p.orders += 1; p.spend += 40.0; p.last_seen = n * 86_400_000
>>> 20 < m.expected_order_value(p) < 60, m.estimate(p, now=20 * 86_400_000) > 1000
(True, True)
"""

from __future__ import annotations

import math

from streamrec.core.profile import Profile

DAY_MS = 86_400_000
#: Orders above ~1M are clipped (log space): one absurd price must not blow up the model.
MAX_LOG_ORDER_VALUE = math.log1p(1e6)
#: The model's features, in the order shared examples carry them.
FEATURES = ("log_orders", "log_aov", "tenure_days", "days_since_order")


class ValueModel:
    def __init__(
        self, horizon_days: float = 365.0, min_tenure_days: float = 30.0, prior_orders: float = 3.0
    ) -> None:
        from river import linear_model, optim, preprocessing

        self.prior_orders = prior_orders
        self.horizon_days = horizon_days
        self.min_tenure_days = min_tenure_days
        # Targets in log space (order values are skewed); features scaled online.
        self.model = preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(0.01), intercept_lr=0.1
        )
        self.purchases = 0
        #: Largest log order value learned: predictions never go past it.
        self.max_target = 0.0
        self.version = "river-linreg-value-1"

    @staticmethod
    def _features(p: Profile, now: int) -> dict[str, float]:
        aov = p.spend / p.orders if p.orders else 0.0
        return {
            "log_orders": math.log1p(p.orders),
            "log_aov": math.log1p(aov),
            "tenure_days": max(0.0, (now - p.first_seen) / DAY_MS) if p.first_seen else 0.0,
            "days_since_order": (now - p.last_seen) / DAY_MS if p.orders and p.last_seen else 0.0,
        }

    def example(self, p: Profile, amount: float, ts: int) -> tuple[list[float], float] | None:
        """What one purchase teaches, learned nowhere yet: (features in `FEATURES` order,
        log order value), from `p`, the profile *before* it; None for nothing. It is
        learned through the item log (`core/item_log.py`), here and at every worker."""
        if not amount > 0 or not math.isfinite(amount):
            return None
        x = self._features(p, ts)
        return [x[name] for name in FEATURES], min(math.log1p(amount), MAX_LOG_ORDER_VALUE)

    def observe_purchase(
        self, p: Profile, amount: float, ts: int
    ) -> tuple[list[float], float] | None:
        """Learn from one purchase (`example`, then `learn_example`); what was learned."""
        example = self.example(p, amount, ts)
        if example is not None:
            self.learn_example(dict(zip(FEATURES, example[0], strict=True)), example[1])
        return example

    def learn_example(self, x: dict[str, float], target: float) -> None:
        """One (features, log order value) example: a purchase here or at another worker."""
        if not math.isfinite(target) or not all(math.isfinite(v) for v in x.values()):
            return  # a shared example is checked like a local one: state stays finite
        target = min(max(target, 0.0), MAX_LOG_ORDER_VALUE)
        self.max_target = max(self.max_target, target)
        self.model.learn_one(x, target)
        self.purchases += 1

    def expected_order_value(self, p: Profile, now: int | None = None) -> float:
        own = p.spend / p.orders if p.orders else 0.0
        if self.purchases == 0:
            return own
        now = p.last_seen if now is None else now
        log_guess = self.model.predict_one(self._features(p, now))
        if not math.isfinite(log_guess):  # an SGD step too far: fall back, never raise
            log_guess = math.log1p(own)
        # A linear model extrapolates: never beyond the largest order value seen.
        guess = math.expm1(min(max(log_guess, 0.0), self.max_target))
        k = self.prior_orders
        return (k * guess + p.orders * own) / (k + p.orders)

    def estimate(self, p: Profile, now: int) -> float:
        """Expected spend over the horizon; 0 for users who never bought."""
        if not p.orders:
            return 0.0
        tenure = max(self.min_tenure_days, (now - p.first_seen) / DAY_MS if p.first_seen else 0.0)
        rate = p.orders / tenure
        return self.expected_order_value(p, now) * rate * self.horizon_days

    def user_value(self, p: Profile, now: int) -> float:
        """The estimate a list carries (`Recommendation.user_value`): made when the list
        is, from the user's profile and the model as it has learned by then. Not kept in
        the profile: a stored estimate would depend on when the model learned other
        users' purchases, and so on timing, where a profile depends on the user's own
        events only."""
        value = self.estimate(p, now)
        return value if math.isfinite(value) else 0.0
