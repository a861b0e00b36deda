"""What a catalog re-embedding says about its progress."""

from streamrec.scorer.progress import EmbedProgress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_long_re_embedding_says_done_waiting_rate_and_time_left_then_that_it_finished():
    clock = Clock()
    p = EmbedProgress(clock=clock, every_s=10.0)
    assert p.record("m@2", 256, 9_744) is None  # just begun: nothing to say yet
    clock.t += 12
    line = p.record("m@2", 256, 9_488)
    assert line == (
        "catalog embedding for m@2: 512 done, 9,488 waiting, 43 items/s, about 3 min 42 s left"
    )
    assert round(p.rate("m@2") or 0, 1) == 42.7
    assert round(p.seconds_left("m@2", 9_488) or 0) == 222
    clock.t += 1
    assert p.record("m@2", 256, 9_232) is None  # at most one line per 10 s
    clock.t += 220
    assert p.record("m@2", 9_232, 0) == "catalog embedded for m@2: 10,000 items in 233 s (43/s)"
    assert p.rate("m@2") is None  # the next run starts afresh


def test_a_few_new_items_are_embedded_without_a_word():
    clock = Clock()
    p = EmbedProgress(clock=clock)
    assert p.record("m@1", 3, 0) is None
    clock.t += 60
    assert p.record("m@1", 1, 0) is None
