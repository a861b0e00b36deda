"""The shared checkpoint: the whole shared state in chunks, for a worker with no snapshot."""

import asyncio
import itertools

import numpy as np
import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.compaction import latest_per_key
from streamrec.contracts import load_contract
from streamrec.core import snapshot
from streamrec.core.engine import DictProfileStore
from streamrec.core.sharing import decode
from streamrec.errors import CheckpointError
from streamrec.settings import Settings
from streamrec.worker.checkpoint import (
    CHUNK_BYTES,
    MANIFEST,
    CheckpointWriter,
    assemble,
    checkpoint_records,
    next_slot,
)
from streamrec.worker.snapshots import Snapshots

from .test_sharing import NOW, assert_same_items, shop_messages


def compacted(*generations) -> dict[bytes, bytes]:
    """The topic as compaction leaves it: the newest value per key, tombstones gone."""
    return latest_per_key(itertools.chain.from_iterable(generations))


def test_a_snapshot_goes_out_in_chunks_and_comes_back_whole():
    blob = np.random.default_rng(1).bytes(2 * CHUNK_BYTES + 1_000)
    records = checkpoint_records(blob, 0, "w1-1", "w1", NOW)
    assert len(records) == 4 and records[-1][0] == MANIFEST  # three chunks, then the manifest
    validate = load_contract("shared.checkpoint").validator
    for _key, value in records:
        validate(serde.loads(value))
    back, manifest = assemble(compacted(records))
    assert back == blob and manifest["chunks"] == 3 and manifest["by"] == "w1"


def test_generations_take_turns_in_two_slots_so_the_topic_stays_bounded():
    topic: dict[bytes, bytes] = {}
    for n in range(6):
        blob = bytes([n]) * (CHUNK_BYTES * (3 if n % 2 else 2))
        slot = next_slot(topic)
        topic = compacted(list(topic.items()), checkpoint_records(blob, slot, f"g{n}", "w", NOW))
        assert assemble(topic)[0] == blob
    assert len(topic) <= 2 * 3 + 1  # two slots of at most three chunks, one manifest
    assert next_slot({}) == 0 and next_slot({MANIFEST: b"garbage"}) == 0


def test_a_half_written_generation_leaves_the_last_whole_one_and_a_broken_one_is_refused():
    first = checkpoint_records(b"a" * 10, 0, "w1-1", "w1", NOW)
    second = checkpoint_records(b"b" * 10, next_slot(compacted(first)), "w2-2", "w2", NOW + 1)
    assert assemble(compacted(first, second))[0] == b"b" * 10
    assert assemble({}) is None  # nothing published yet
    # A writer that died between its chunks and its manifest left the older one whole.
    assert assemble(compacted(first, second[:-1]))[0] == b"a" * 10
    topic = compacted(first, second)
    del topic[second[0][0]]
    with pytest.raises(CheckpointError, match="lacks chunk 0"):
        assemble(topic)
    # Two writers at once in one slot: the chunk of the other generation is seen.
    clash = checkpoint_records(b"c" * 10, 1, "w3-3", "w3", NOW + 2)
    with pytest.raises(CheckpointError, match="overwritten by w3-3"):
        assemble(compacted(first, second, clash[:-1]))
    forged = serde.loads(second[-1][1]) | {"sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="checksum"):
        assemble(compacted(second, [(MANIFEST, serde.dumps(forged))]))
    with pytest.raises(CheckpointError, match="format 9"):
        assemble(compacted(second, [(MANIFEST, serde.dumps(forged | {"v": 9}))]))


def test_a_new_worker_starts_from_the_checkpoint_and_folds_on_from_its_offsets(tmp_path):
    """Retention dropped the deltas older than the checkpoint: the new worker misses
    nothing, and counts nothing twice."""
    msgs = shop_messages(1_200)
    s = Settings.from_env({}, data_dir=str(tmp_path), covisit_max_neighbours=100_000,
                          monitoring=False)  # fmt: skip
    one = build_engine(s)
    one.process_batch(msgs, DictProfileStore(), NOW)
    writer, profiles, log = build_engine(s), DictProfileStore(), []  # log: shared.state
    share = writer.share("writer", "sum")
    snaps = Snapshots(s)
    cut = None
    for start in range(0, len(msgs), 100):
        deltas = writer.process_batch(msgs[start : start + 100], profiles, NOW).deltas
        log += deltas
        for d in deltas:
            share.fold(decode(d.to_bytes()))  # its own coming back
        snaps.shared_offsets[0] = len(log)
        if start == 600:
            blob, cut = snaps.encode(writer, users=False), len(log)
    assert cut is not None
    newcomer = build_engine(s)
    share_new = newcomer.share("newcomer", "sum")
    restored = Snapshots(s)
    restored.restore(newcomer, blob)
    assert restored.shared_offsets == {0: cut}
    for d in log[cut:]:  # what retention kept
        share_new.fold(decode(d.to_bytes()))
    assert_same_items(newcomer, one)
    np.testing.assert_allclose(newcomer.recommender.ranker.weights(),
                               writer.recommender.ranker.weights())  # fmt: skip
    assert newcomer.recommender.value.purchases == one.recommender.value.purchases
    # Without it, the same tail alone is not the shop.
    bare = build_engine(s)
    share_bare = bare.share("bare", "sum")
    for d in log[cut:]:
        share_bare.fold(decode(d.to_bytes()))
    with pytest.raises(AssertionError):
        assert_same_items(bare, one)


def test_the_checkpoint_holds_no_user(tmp_path):
    s = Settings.from_env({}, data_dir=str(tmp_path), monitoring=True)
    e = build_engine(s)
    e.share("w", "sum")
    e.process_batch(shop_messages(600), DictProfileStore(), NOW)
    header, arrays = snapshot.from_bytes(Snapshots(s).encode(e))
    pending = snapshot.unpack_ids(arrays["ranker.offers.users"], arrays["ranker.offers.users.ends"])
    assert pending and "monitor" in header  # a worker's own snapshot: users, by pseudonym
    header, arrays = snapshot.from_bytes(Snapshots(s).encode(e, users=False))
    assert "monitor" not in header
    assert not [k for k in arrays if k.startswith(("ranker.offers", "ranker.expiry"))]
    restored = build_engine(s)
    restored.share("new", "sum")
    Snapshots(s).restore(restored, Snapshots(s).encode(e, users=False))
    assert restored.recommender.ranker.open_offers() == []
    assert restored.recommender.ranker.weights().tolist() == e.recommender.ranker.weights().tolist()


def test_a_writer_takes_the_free_slot_and_reads_it_again_after_a_rebalance():
    topic: dict[bytes, bytes] = {}

    async def send(key, value):
        topic[key] = value
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    reads = []
    writer = CheckpointWriter("w1", send, lambda: reads.append(1) or dict(topic))
    other = CheckpointWriter("w2", send, lambda: dict(topic))

    async def run():
        await writer.write(b"one")  # slot 0
        await writer.write(b"two")  # slot 1
        await other.write(b"three")  # another owner for a while: slot 0
        writer.slot = None  # what the worker does at every assignment
        await writer.write(b"four")  # slot 1 again, not over the live slot 0

    asyncio.run(run())
    assert assemble(topic)[0] == b"four" and len(reads) == 2
    assert serde.loads(topic[MANIFEST])["slot"] == 1
