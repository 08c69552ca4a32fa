"""What a child's commit asks the store for: no read repeated, no read waiting on another.

On S3 every request is a round trip, so a commit's time is its requests in sequence. A frame
operation reads the dataset once when it begins and commits on that reading (a stale one costs one
refused conditional write, then a fresh read); publishing reads the parent's counted columns of
every segment at once. Both are checked here with a store that records what it is asked.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pyarrow as pa
import pytest
from gating import Gated

from hds_s3 import Client, DatasetVersion
from hds_s3.errors import AlreadyExistsError
from hds_s3.format import layout
from hds_s3.index import frameindex
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectStore


class Watching(Gated):
    """Passes everything through; counts GETs per key, runs a hook before a segment is stored, and
    holds reads as :class:`gating.Gated` does."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.gets: dict[str, int] = {}
        self.on_put: Any = None  # called (once) before a segment is stored

    def get(self, key: str) -> tuple[bytes, str]:
        with self.lock:
            self.gets[key] = self.gets.get(key, 0) + 1
        return super().get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with self.lock:
            self.gets[key] = self.gets.get(key, 0) + 1
        return super().get_range(key, start, length)

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        hook, self.on_put = (self.on_put, None) if key.endswith(".parquet") else (None, self.on_put)
        if hook is not None:
            hook()
        return self.inner.put(key, data, **kwargs)


BOX = [0, 0, 4, 0, 4, 4, 0, 4]


def frames(indices: range | list[int], variant: int = 0) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "id": f"f{i:05d}",
                "sources": [{"id": "cam", "uri": f"s3://bucket/{i}.jpg", "width": 8, "height": 8}],
                "rois": [
                    {"labels": [f"l{(i + variant) % 5}"], "type": "box2d", "poly": [0, 0, 4, 0, 4, 4, 0, 4]}
                ],
                "meta": {"n": i, "variant": variant},
            }
            for i in indices
        ]
    )


def parent_and_child(store: Watching) -> tuple[Client, DatasetVersion, DatasetVersion]:
    """A published root of three segments, and a draft child on a client that did not write them."""
    root = DatasetVersion.create_new_dataset(dataset_name="requests", client=Client(store))
    assert root.add_frames(frames(range(600)), segment_rows=200) == []
    root.publish_version()
    client = Client(store)  # a writer keeps the small segments it wrote: this one reads the store
    child = DatasetVersion.create_version(
        dataset_name="requests", parent_version_names=[root.name], version_name="child", client=client
    )
    return client, root, child


def head_reads(store: Watching) -> int:
    return sum(n for key, n in store.gets.items() if key.endswith("/dataset.json"))


def test_a_frame_operation_reads_the_dataset_once() -> None:
    store = Watching(MemoryStore("requests"))
    _, _, child = parent_and_child(store)
    for step in (
        lambda: child.add_frames(frames(range(600, 610))),
        lambda: child.update_frames(frames(range(10, 20), variant=1)),
        lambda: child.delete_frames([f"f{i:05d}" for i in range(30, 40)]),
    ):
        store.gets.clear()
        assert not step()
        assert head_reads(store) == 1  # when it began; the commit builds on that reading
    ids = set(child.get_frames_table(columns=["id"]).column("id").to_pylist())
    assert ids == {f"f{i:05d}" for i in range(610)} - {f"f{i:05d}" for i in range(30, 40)}


def test_creating_a_version_reads_the_dataset_once() -> None:
    store = Watching(MemoryStore("requests"))
    _, root, _ = parent_and_child(store)
    store.gets.clear()
    second = DatasetVersion.create_version(
        dataset_name="requests", parent_version_names=[root.name], version_name="second", client=Client(store)
    )
    assert head_reads(store) == 1
    parent = second.get_parent()
    assert parent is not None and parent.id == root.id
    assert second.get_frames_table(columns=["id"]).num_rows == 600


def test_a_commit_on_a_reading_another_writer_overtook_lands_after_theirs() -> None:
    store = Watching(MemoryStore("requests"))
    _, _, child = parent_and_child(store)
    other = DatasetVersion.get_version(
        dataset_id=child.dataset_id, version_id=child.id, client=Client(store.inner)
    )
    # the other writer commits while this one stores its segment, after this one read the dataset
    store.on_put = lambda: other.add_frames(frames(range(700, 705)))
    store.gets.clear()
    assert child.add_frames(frames(range(600, 605))) == []
    assert head_reads(store) >= 2  # its first commit was refused: it read the dataset anew
    ids = set(child.get_frames_table(columns=["id"]).column("id").to_pylist())
    assert {f"f{i:05d}" for i in [*range(600, 605), *range(700, 705)]} <= ids
    assert len(ids) == 610
    fresh = DatasetVersion.get_version(dataset_id=child.dataset_id, version_id=child.id, client=Client(store))
    assert set(fresh.get_frames_table(columns=["id"]).column("id").to_pylist()) == ids


def test_publishing_reads_the_parents_segments_at_once() -> None:
    store = Watching(MemoryStore("requests"))
    client, root, child = parent_and_child(store)
    parents = [r.key for r in client.frames.refs(root._entry)]
    assert len(parents) == 3
    assert child.update_frames(frames([5, 250, 450], variant=2)) == []  # one id in each segment
    child.delete_frames(["f00100", "f00300"])
    store.arm(set(parents), set(parents))
    child.publish_version()
    assert store.waited_out == []  # no read of a parent segment waited for another to finish
    assert store.asked >= set(parents)
    assert child.get_stats() == client.frames.stats(child.reload()._entry)  # as counted whole


def test_opening_a_version_by_id_reads_its_record_beside_the_look_past_the_head() -> None:
    store = Watching(MemoryStore("requests"))
    _, _, child = parent_and_child(store)
    dataset_id = child.dataset_id
    look_past = layout.log_key(dataset_id, Client(store).catalog.get(dataset_id=dataset_id).seq + 1)
    record = layout.record_key(dataset_id, child.id)
    store.arm({look_past}, {record})  # the look past the head waits until the record is asked for
    opened = DatasetVersion.get_version(dataset_id=dataset_id, version_id=child.id, client=Client(store))
    assert store.waited_out == []  # one round trip for both, not two
    assert store.asked >= {look_past, record}
    assert (opened.id, opened.name, opened.is_draft) == (child.id, "child", True)
    store.arm({look_past}, {record})
    child.reload()  # a frame operation's fresh look at its version: the same
    assert store.waited_out == []


def test_a_new_dataset_knows_the_record_it_wrote() -> None:
    store = Watching(MemoryStore("requests"))
    current = DatasetVersion.create_new_dataset(dataset_name="fresh", client=Client(store))
    record = layout.record_key(current.dataset_id, current.id)
    assert store.gets.get(record, 0) == 0  # written, not read back
    assert store.gets[layout.dataset_claim_key("fresh")] == 1  # its name looked up once, then claimed
    assert (current.name, current.is_draft) == ("Current", True)
    assert current.add_frames(frames(range(3))) == []
    assert store.gets.get(record, 0) == 1  # the frame operation's fresh look at the version
    again = DatasetVersion.get_version(dataset_name="fresh", version_id=current.id, client=Client(store))
    assert again.reload().get_frames_table(columns=["id"]).num_rows == 3


class Gathering(Watching):
    """Holds each of the next ``n`` PUTs until all ``n`` are under way; one that waits in vain (the
    PUTs came one after another) is listed in ``waited_out``."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.pending = self.arrived = 0
        self.within = ""
        self.all_in = threading.Event()

    def gather(self, n: int, within: str = "") -> None:
        """Hold the next ``n`` PUTs of keys holding ``within``."""
        with self.lock:
            self.pending, self.arrived, self.waited_out, self.within = n, 0, [], within
            self.all_in.clear()

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        with self.lock:
            held = self.arrived < self.pending and self.within in key
            if held:
                self.arrived += 1
                if self.arrived == self.pending:
                    self.all_in.set()
        if held and not self.all_in.wait(timeout=self.timeout):
            with self.lock:
                self.waited_out.append(key)
        return super().put(key, data, **kwargs)


def test_a_new_dataset_writes_its_first_entry_record_and_name_at_once() -> None:
    store = Gathering(MemoryStore("requests"))
    client = Client(store)
    DatasetVersion.create_new_dataset(dataset_name="first", client=client)  # the store's marker, checked
    store.gather(3)
    current = DatasetVersion.create_new_dataset(dataset_name="second", client=client)
    assert store.waited_out == []  # one round trip for the three, not three
    reopened = DatasetVersion.get_version(dataset_name="second", version_id=current.id, client=Client(store))
    assert (reopened.name, reopened.is_draft) == ("Current", True)
    assert current.add_frames(frames(range(2))) == [] and reopened.reload().get_frame_count() == 2


def test_creating_a_child_reads_what_its_rules_need_at_once() -> None:
    store = Gathering(MemoryStore("requests"))
    _, root, _ = parent_and_child(store)
    dataset_id = root.dataset_id
    name = layout.version_name_key(dataset_id, "second")
    parent = layout.record_key(dataset_id, root.id)
    store.gets.clear()
    store.arm({name}, {name, parent})  # the name's read waits until the parent's record is asked for
    store.gather(2, "/tree/")  # the new version's record and its parent's, written
    second = DatasetVersion.create_version(
        dataset_id=dataset_id, parent_version_ids=[root.id], version_name="second", client=Client(store)
    )
    assert store.waited_out == []  # one round trip for the reads, one for the two records
    assert store.gets[name] == 1  # asked by the rules, not again before it is written
    assert store.gets[parent] == 1
    store.arm(set(), set())
    parent_of_second = second.get_parent()
    assert parent_of_second is not None and parent_of_second.id == root.id
    assert second.get_frames_table(columns=["id"]).num_rows == 600
    again = DatasetVersion.create_version(
        dataset_name="requests", parent_version_names=[root.name], version_name="second", client=Client(store)
    )
    assert again.id == second.id  # the name is taken: the version holding it, as before
    with pytest.raises(AlreadyExistsError):
        DatasetVersion.create_version(
            dataset_id=dataset_id,
            parent_version_ids=[root.id],
            version_name="second",
            raise_if_exists=True,
            client=Client(store),
        )


def test_publishing_reads_the_parents_record_and_statistics_at_once() -> None:
    store = Watching(MemoryStore("requests"))
    client, root, child = parent_and_child(store)
    assert child.update_frames(frames([5, 250], variant=3)) == []
    dataset_id = child.dataset_id
    parent, parent_stats = layout.record_key(dataset_id, root.id), layout.stats_key(dataset_id, root.id)
    own_stats = layout.stats_key(dataset_id, child.id)
    store.gets.clear()
    store.arm({parent}, {parent, parent_stats})  # the record's read waits until the statistics are asked
    child.publish_version()
    assert store.waited_out == []
    assert store.gets[parent_stats] == 1
    assert store.gets.get(own_stats, 0) == 0  # counted by the publication: written, not looked for first
    store.arm(set(), set())
    reopened = DatasetVersion.get_version(dataset_id=dataset_id, version_id=child.id, client=Client(store))
    assert reopened.get_stats() == client.frames.stats(child.reload()._entry)  # as counted whole


def test_a_commit_on_segments_this_client_wrote_reads_none_of_their_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(frameindex, "WRITTEN_KEEP_BYTES", 0)  # no segment kept whole: only its ids
    store = Watching(MemoryStore("requests"))
    client = Client(store)
    root = DatasetVersion.create_new_dataset(dataset_name="mine", client=client)
    assert root.add_frames(frames(range(600)), segment_rows=200) == []
    root.publish_version()
    parents = {r.key for r in client.frames.refs(root.reload()._entry)}
    assert len(parents) == 3
    child = DatasetVersion.create_version(
        dataset_id=root.dataset_id, parent_version_ids=[root.id], version_name="child", client=client
    )
    store.gets.clear()
    assert child.update_frames(frames([5, 250, 450], variant=1)) == []  # one id in each segment
    inside = frames([250]).set_column(0, "id", pa.array(["f00250a"]))  # within a segment's id range
    (missing,) = child.update_frames(inside)  # the check is exact all the same
    assert "f00250a is not in version" in missing.reason
    assert not parents & set(store.gets)  # neither their footers nor their ids were read
    child.delete_frames(["f00100", "f00300", "f00700"])
    child.publish_version()
    # another client reads them, and sees what this one committed
    fresh = DatasetVersion.get_version(dataset_id=child.dataset_id, version_id=child.id, client=Client(store))
    table = fresh.get_frames_table(columns=["id", "meta"])
    assert table.num_rows == 598
    metas = dict(zip(table.column("id").to_pylist(), table.column("meta").to_pylist(), strict=True))
    assert metas["f00250"] == '{"n":250,"variant":1}' and metas["f00251"] == '{"n":251,"variant":0}'
    assert fresh.get_stats() == Client(store).frames.stats(fresh._entry)  # as counted whole


def test_publishing_a_child_of_segments_this_client_wrote_reads_none_of_them() -> None:
    # segments of over 1 MB (incompressible metadata): a writer keeps those it wrote too, so the
    # publish counts the parent rows its child replaced or deleted without asking the store
    store = Watching(MemoryStore("requests"))
    client = Client(store)
    root = DatasetVersion.create_new_dataset(dataset_name="large", client=client)
    noise = pa.array([{"noise": os.urandom(3000).hex()} for _ in range(600)])
    blob = frames(range(600)).append_column("meta_blob", noise)
    assert root.add_frames(blob, segment_rows=200) == []
    root.publish_version()
    parents = client.frames.refs(root.reload()._entry)
    assert len(parents) == 3 and min(r.size for r in parents) > 1024 * 1024
    child = DatasetVersion.create_version(
        dataset_id=root.dataset_id, parent_version_ids=[root.id], version_name="child", client=client
    )
    store.gets.clear()
    assert child.update_frames(frames([5, 250, 450], variant=1)) == []  # one frame in each segment
    child.delete_frames(["f00100", "f00300"])
    assert child.add_frames(frames([700, 701])) == []
    child.publish_version()
    assert [key for key in store.gets if key.endswith(".parquet")] == []  # no segment read back
    counted = Client(store).frames.stats(child.reload()._entry)  # another client counts it whole
    assert child.get_stats() == counted
    assert counted["frames"] == 600
