"""Privacy probe: which topics hold a raw user id after a replay with bad input?

    python scripts/privacy_probe.py [--events 20000] [--malformed 2000]

Starts its own broker and worker, replays MovieLens-100k events and malformed
events that name ml users (keyed by the user, the id inside the body), then
reads every topic of the stack to its end and counts the records whose key is a
raw user id or whose value holds one where an id sits (`ml-<user>-...`,
`"user_id": "<user>"`). Only `storefront.events` should. ml item ids are
numbers too: a catalog key equal to a user number is counted, not a leak.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from pathlib import Path

from streamrec.client import EventProducer, RecommendationReader
from streamrec.datasets import movielens
from streamrec.datasets.malformed import malformed_events
from streamrec.settings import Settings
from streamrec.tools.admin import scan_deployment
from streamrec.tools.replay import replay
from streamrec.tools.stack import LocalStack

ID_IN_VALUE = re.compile(rb'ml-(\d+)-|"user_id": ?"(\d+)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--malformed", type=int, default=2_000)
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    root = Path(f"/tmp/streamrec-probe-{tag}")
    s = Settings.from_env(
        topic_prefix=f"p-{tag}.", app_id=f"probe-{tag}", data_dir=root, store="memory"
    )
    with LocalStack(s, workers=1, scorers=0, log_dir=root / "logs", start_broker=True) as st:
        st.wait_ready(timeout_s=120)
        s = st.settings
        ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=args.events)
        bad = []
        for i, (_key, value, _reason) in enumerate(
            malformed_events(args.malformed, int(time.time() * 1000))
        ):
            user = ml.events[i % len(ml.events)].user_id.encode()
            named = (
                value.replace(b'"user_id": "', b'"user_id": "' + user + b"-") if value else value
            )
            bad.append((user, named, 0))
        reader = RecommendationReader(s, from_beginning=False)
        with EventProducer(s) as producer:
            replay(producer, ml.events, items=ml.items, progress=False)
            replay(producer, bad, progress=False)
        want = {reader.event_ref(e.event_id) for e in ml.events}
        got: set[str] = set()
        deadline = time.monotonic() + 300
        while not want <= got and time.monotonic() < deadline:
            got |= {r.event_id for r in reader.poll(0.5)}
        reader.close()
        print(f"lists: {len(got & want):,} of {len(want):,}")
        print(count_raw_ids(s, {e.user_id.encode() for e in ml.events}))


def count_raw_ids(s: Settings, raw_users: set[bytes]) -> str:
    names, records = scan_deployment(s, timeout_s=300)
    counts = {t: [0, 0] for t in names}
    for r in records:
        counts[r.topic][0] += 1
        counts[r.topic][1] += r.key in raw_users or bool(ID_IN_VALUE.search(r.value or b""))
    line = "{:<50} records {:>8,}  holding a raw user id {:>8,}"
    return "\n".join(line.format(t, n, hits) for t, (n, hits) in counts.items())


if __name__ == "__main__":
    main()
