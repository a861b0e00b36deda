"""How long a worker takes to come up with a catalog of N items, and whether it waits for it.

For each catalog size: fresh topics on one embedded broker, a synthetic
shop's N items and a 384-d vector per item (as the scorer would publish
them), then one `streamrec worker`. The moment it is spawned, a view of the
catalog's *last* item is sent for a new user. Measured:

* `first_list_s`: spawn -> the list answering that view;
* `ready_s`: spawn -> the worker's "worker ready" log line (where it has one);
* `with_category`: whether the stored profile learned the item's category
  (False: the event was applied before the catalog was read back).

Then the worker is stopped (SIGTERM: it writes its snapshots) and started
again on the same data dir, and the same is measured for the restart.

    python scripts/startup_time.py --items 10000,100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from streamrec import serde
from streamrec.broker import EmbeddedBroker, free_port
from streamrec.client import EventProducer, RecommendationReader, read_table
from streamrec.core.privacy import Pseudonymizer
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.settings import Settings
from streamrec.tools.bench import publish_shop_vectors
from streamrec.tools.stack import LocalStack

READY = re.compile(r"worker ready after ([0-9.]+) s")


def one_start(stack: LocalStack, shop: SyntheticShop, user: str, log: Path) -> dict[str, Any]:
    s = stack.settings
    item = shop.catalog[-1]
    reader = RecommendationReader(s, from_beginning=False)
    t0 = time.monotonic()
    stack.start_worker()
    with EventProducer(s) as producer:
        ev = producer.track("view", user, item_id=item.item_id, event_id=uuid.uuid4().hex)
    rec = reader.wait_for(user, timeout_s=600, until=reader.answers(ev.event_id))
    first_list_s = time.monotonic() - t0
    reader.close()
    if rec is None:
        raise SystemExit(f"no list within 600 s; see {log}")
    ready = READY.findall(log.read_text()) if log.exists() else []
    key = Pseudonymizer(s.resolved_pseudonym_key())(user).encode()
    profile = serde.loads(read_table(s).get(key, b"{}"))
    return {
        "first_list_s": round(first_list_s, 2),
        "ready_s": float(ready[-1]) if ready else None,
        "with_category": item.category[0] in profile.get("affinity", {}),
    }


def measure(broker: EmbeddedBroker, n: int, work: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    s = Settings.from_env({}).with_overrides(
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=f"st-{tag}.",
        app_id=f"st-{tag}",
        data_dir=work / f"data-{n}",
        metrics_port=0,
    )
    stack = LocalStack(s, workers=0, broker=broker, log_dir=work / f"logs-{n}")
    stack.start()
    shop = SyntheticShop(users=100, items=n, seed=3)
    t0 = time.monotonic()
    publish_shop_vectors(stack.settings, shop)
    published_s = time.monotonic() - t0
    log = stack.log_dir / "worker-0.log"
    try:
        first = one_start(stack, shop, f"first-{tag}", log)
        stack.stop_worker(stack.workers.pop())  # SIGTERM: snapshots written
        again = one_start(stack, shop, f"again-{tag}", log)  # the same log, appended
    finally:
        stack.stop()
    return {"items": n, "published_s": round(published_s, 1), "first_start": first,
            "restart": again}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", default="10000,100000", help="catalog sizes, comma separated")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        work = Path(tmp)
        broker = EmbeddedBroker(free_port(), log_path=work / "broker.log").start()
        try:
            for n in (int(x) for x in args.items.split(",")):
                out.append(measure(broker, n, work))
                print(json.dumps(out[-1]), flush=True)
        finally:
            broker.stop()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
