"""The benchmark's Faust pass-through: the ceiling `events_per_s_ranked` is judged against."""

from streamrec import serde
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.worker import passthrough


def test_the_faust_passthrough_moves_every_event_of_a_backlog(kafka_settings):
    shop = SyntheticShop(users=50, items=100, seed=4)
    events = shop.events(400, start_ts=1_800_000_000_000, step_ms=1)
    messages = [(e.user_id.encode(), serde.dumps(e.to_dict())) for e in events]
    rate = passthrough.measure(kafka_settings, messages, timeout_s=120)
    assert rate > 0  # measure() raises if the agent dies; it returns once all 400 came out


def test_middle_rate_leaves_out_start_up_and_tail():
    # 10 slow at the start, 80 at 1 ms apart, 10 slow at the end: ~1,000/s in the middle.
    times = [i * 100 for i in range(10)] + [1_000 + i for i in range(80)]
    times += [2_000 + i * 100 for i in range(10)]
    assert 900 < passthrough.middle_rate(times) < 1_100
