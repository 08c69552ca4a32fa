"""Frames in versions, on every store: writes, reads, inheritance by reference, statistics, compaction."""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hds_s3 import (
    Client,
    CorruptObjectError,
    Dataset,
    DatasetVersion,
    InvalidStateError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.model.frames import FrameGroup, SingleFrame, frame_id
from hds_s3.store import FaultyStore, MemoryStore
from hds_s3.store.base import ObjectStore


@pytest.fixture
def client(store: ObjectStore) -> Client:
    return Client(store)


def frame(i: int, *labels: str, city: str = "bremen", fid: str | None = None) -> SingleFrame:
    f = SingleFrame(
        source=f"s3://bucket/images/{i:05d}.jpg",
        width=640,
        height=480,
        metadata={"city": city, "index": i},
        id=fid,
    )
    for label in labels:
        f.add_annotation(box2d_xywh=(i, 2, 30, 40), labels=[label], confidence=0.5)
    return f


def contents(store: ObjectStore) -> dict[str, bytes]:
    return {info.key: store.get(info.key)[0] for info in store.list("")}


def ids_of(version: DatasetVersion) -> list[str]:
    return sorted(version.get_frames_table(columns=["id"]).column("id").to_pylist())


def test_frames_round_trip_through_a_version(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="f", client=client)
    group = FrameGroup(id="group-1")
    group["front"] = SingleFrame(source="s3://b/front.jpg", width=10, height=10)
    group["rear"] = SingleFrame(source="s3://b/rear.jpg", width=10, height=10)
    group.add_global_annotation(labels=["crossing"])
    assert ver.add_frames([frame(1, "car", "person", fid="one"), frame(2), group]) == []
    assert ver.get_frame_count() == 3
    back = ver.get_single_frame("one")
    assert isinstance(back, SingleFrame)
    assert back.source == "s3://bucket/images/00001.jpg" and back.metadata == {"city": "bremen", "index": 1}
    assert [a.labels for a in back.get_all_annotations()] == [["car"], ["person"]]
    assert back.get_all_annotations()[0].poly == [1, 2, 31, 2, 31, 42, 1, 42]
    g = DatasetVersion.get_single_frame("group-1", dataset_name="f", version_name="Current", client=client)
    assert isinstance(g, FrameGroup) and sorted(g) == ["front", "rear"]
    assert [a.sources for a in g.get_all_global_annotations()] == [["front", "rear"]]
    assert sorted(type(f).__name__ for f in ver.iter_frames()) == ["FrameGroup", "SingleFrame", "SingleFrame"]


def test_adding_an_existing_id_updates_it_and_an_ingest_run_twice_does_not_duplicate(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="u", client=client)
    ver.add_frames([frame(i, "car") for i in range(5)])
    ver.add_frames([frame(i, "car") for i in range(5)])  # same sources: same derived ids
    assert ver.get_frame_count() == 5
    ver.add_frames([frame(0, "bus", fid="x"), frame(0, "truck", fid="x")])
    assert ver.get_frame_count() == 6
    assert [a.labels for a in ver.get_single_frame("x").get_all_annotations()] == [["truck"]]


def test_bad_frames_are_returned_with_the_reason_and_the_rest_land(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="bad", client=client)
    group = FrameGroup(id="half-bad")
    group["ok"] = SingleFrame(source="s3://b/ok.jpg")
    group["bad"] = SingleFrame(source="s3://b/bad.jpg", source_meta={"a.b": 1})
    failed = ver.add_frames([frame(1), {"id": "x", "sources": []}, group, "not a frame", frame(2)])
    assert [type(f.frame).__name__ for f in failed] == ["dict", "FrameGroup", "str"]
    assert "a.b" in failed[1].reason and "source" in failed[0].reason
    assert ver.get_frame_count() == 2


def test_a_batch_arrow_refuses_is_converted_frame_by_frame_and_only_the_refused_frame_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hds_s3.index import segments

    real = segments.frame_row

    def row(canonical: dict[str, Any]) -> dict[str, Any]:
        out = real(canonical)
        if canonical["id"] == "odd":
            out["roi_count"] = 2**40  # validation passed, yet Arrow refuses the row (int32 column)
        return out

    monkeypatch.setattr(segments, "frame_row", row)
    ver = DatasetVersion.create_new_dataset(dataset_name="arrow", client=client)
    failed = ver.add_frames([frame(1, fid="a"), frame(2, fid="odd"), frame(3, fid="b")])
    assert [f.frame.id for f in failed] == ["odd"]
    assert "frame 'odd' cannot be stored" in failed[0].reason
    assert ids_of(ver) == ["a", "b"]


def test_update_frames_replaces_existing_and_reports_unknown_ids(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="upd", client=client)
    ver.add_frames([frame(1, "car", fid="a")])
    failed = ver.update_frames([frame(1, city="paris", fid="a"), frame(9, fid="nope")])
    assert [f.frame.id for f in failed] == ["nope"] and "add_frames" in failed[0].reason
    back = ver.get_single_frame("a")
    assert back.metadata["city"] == "paris" and back.get_all_annotations() == []
    assert ver.get_frame_count() == 1


def test_update_frames_given_dicts_checks_each_frame_and_its_id(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="upd-dicts", client=client)
    ver.add_frames([frame(1, "car", fid="a"), frame(2, "car", fid="b"), frame(3)])  # frame 3: derived id
    derived = frame(3).to_dict()
    derived.pop("id", None)
    derived["meta"] = {"city": "oslo"}
    given = [
        {"id": "a", "sources": [{"id": "default", "uri": "s3://b/1.jpg"}], "meta": {"city": "paris"}},
        {"id": "b", "sources": [{"id": "default", "uri": "s3://b/2.jpg"}], "meta": {"bad.key": 1}},
        {"id": "nope", "sources": [{"id": "default", "uri": "s3://b/9.jpg"}]},
        derived,
    ]
    failed = ver.update_frames(given)
    assert sorted(f.frame["id"] for f in failed) == ["b", "nope"]
    assert any("bad.key" in f.reason for f in failed) and any("add_frames" in f.reason for f in failed)
    assert ver.get_single_frame("a").metadata == {"city": "paris"}
    assert ver.get_single_frame("b").metadata == {"city": "bremen", "index": 2}  # left as it was
    assert ver.get_single_frame(frame_id(frame(3))).metadata == {"city": "oslo"}
    assert ver.get_frame_count() == 3


def test_provenance_is_recorded(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="prov", client=client)
    ver.add_frames([frame(1, fid="a")])
    back = ver.get_single_frame("a")
    assert back.saved_in_version == ver.id and back.updated_in_version == ver.id
    assert isinstance(back.saved, int) and back.saved > 0


def test_published_versions_refuse_frame_writes_and_change_nothing(
    client: Client, store: ObjectStore
) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="ro", client=client)
    ver.add_frames([frame(1, fid="a")])
    ver.publish_version()
    before = contents(store)
    for write in (
        lambda: ver.add_frames([frame(2)]),
        lambda: ver.update_frames([frame(1, fid="a")]),
        lambda: ver.delete_frames(["a"]),
    ):
        with pytest.raises(InvalidStateError, match="published"):
            write()
    assert contents(store) == before


def test_children_reference_parents_and_hold_only_their_delta(client: Client, store: ObjectStore) -> None:
    base = DatasetVersion.create_new_dataset(dataset_name="tree", client=client)
    base.add_frames([frame(i, "car", fid=f"f{i}") for i in range(10)])
    base.publish_version()
    parquet_before = {k for k in contents(store) if k.endswith(".parquet")}
    child = DatasetVersion.create_version(
        dataset_name="tree", parent_version_ids=[base.id], version_name="child", client=client
    )
    snap_child = DatasetVersion.create_version(
        dataset_name="tree", parent_version_ids=[base.id], version_name="other child", client=client
    )
    assert {k for k in contents(store) if k.endswith(".parquet")} == parquet_before  # no Parquet written
    assert ids_of(child) == ids_of(base)

    parent_objects = {k: v for k, v in contents(store).items() if base.id in k}
    child.add_frames([frame(100, fid="new"), frame(1, "bus", fid="f1")])
    child.delete_frames(["f2", "f3"])
    assert {k: v for k, v in contents(store).items() if base.id in k} == parent_objects
    own = [k for k in contents(store) if k.endswith(".parquet") and f"/segments/{child.id}/" in k]
    own_rows = sum(
        child._frames.read_segment(r).num_rows
        for r in child._frames.refs(child._entry)
        if r.version == child.id
    )
    assert len(own) == 2 and own_rows == 4  # 2 frames written + 2 tombstones
    assert ids_of(child) == sorted([f"f{i}" for i in range(10) if i not in (2, 3)] + ["new"])
    assert ids_of(base) == sorted(f"f{i}" for i in range(10))
    assert ids_of(snap_child) == ids_of(base)
    assert [a.labels for a in child.get_single_frame("f1").get_all_annotations()] == [["bus"]]
    assert [a.labels for a in base.get_single_frame("f1").get_all_annotations()] == [["car"]]
    with pytest.raises(NotFoundError, match="'f2'.*'child'"):
        child.get_single_frame("f2")
    assert base.get_single_frame("f2").id == "f2"


def test_a_deleted_frame_can_be_added_again_later(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="again", client=client)
    ver.add_frames([frame(1, fid="a"), frame(2, fid="b")])
    ver.delete_frames([ver.get_single_frame("a")])
    assert ids_of(ver) == ["b"]
    ver.add_frames([frame(1, city="rome", fid="a")])
    assert ids_of(ver) == ["a", "b"] and ver.get_single_frame("a").metadata["city"] == "rome"


def test_snapshots_keep_frames_and_the_new_draft_inherits_them(client: Client, store: ObjectStore) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="snap", client=client)
    ver.add_frames([frame(i, fid=f"f{i}") for i in range(4)])
    parquet_before = {k for k in contents(store) if k.endswith(".parquet")}
    current = DatasetVersion.create_snapshot(dataset_name="snap", publish_name="v1", client=client)
    assert {k for k in contents(store) if k.endswith(".parquet")} == parquet_before
    current.add_frames([frame(9, fid="f9")])
    v1 = DatasetVersion.get_version(dataset_name="snap", version_name="v1", client=client)
    assert v1.get_frame_count() == 4 and current.get_frame_count() == 5


def test_statistics_are_computed_at_publish_and_stored(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="stats", client=client)
    video = SingleFrame(source="s3://b/clip.mp4", timestamp=40, id="v")
    ver.add_frames([frame(1, "car", "car", "person"), frame(2, "car"), frame(3), video])
    live = ver.get_stats()
    ver.publish_version()
    raw = Dataset.get(dataset_name="stats", client=client)._doc.stats_of(ver.id)  # as stored
    assert raw == live == ver.get_stats()
    assert raw["frames"] == 4 and raw["annotated"] == 2 and raw["unannotated"] == 2 and raw["rois"] == 4
    assert raw["labels"] == [{"name": "car", "count": 3}, {"name": "person", "count": 1}]
    assert raw["content_types"] == [{"name": "image/jpeg", "count": 3}, {"name": "video/mp4", "count": 1}]


def test_statistics_of_a_child_count_only_its_live_frames(client: Client) -> None:
    parent = DatasetVersion.create_new_dataset(dataset_name="stats-chain", client=client)
    parent.add_frames([frame(i, "car", fid=f"a{i}") for i in range(4)])
    parent.add_frames([frame(i, "cat", "dog", fid=f"b{i}") for i in range(3)])
    parent.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="stats-chain", parent_version_ids=[parent.id], version_name="kid", client=client
    )
    child.update_frames([frame(0, "bus", fid="a0"), frame(1, fid="b1")])
    child.delete_frames(["a3", "b2"])
    child.add_frames([SingleFrame(source="s3://b/clip.mp4", timestamp=40, id="v")])
    child.publish_version()
    rows = child.get_frames_table().to_pylist()
    labels = Counter(label for row in rows for roi in row["rois"] for label in roi["labels"])
    assert child.get_stats() == {
        "frames": 6,
        "annotated": sum(1 for row in rows if row["rois"]),
        "unannotated": sum(1 for row in rows if not row["rois"]),
        "rois": sum(len(row["rois"]) for row in rows),
        "labels": [{"name": n, "count": c} for n, c in sorted(labels.items(), key=lambda x: (-x[1], x[0]))],
        "content_types": [{"name": "image/jpeg", "count": 5}, {"name": "video/mp4", "count": 1}],
    }
    assert dict(labels) == {"bus": 1, "car": 2, "cat": 1, "dog": 1}


def test_frames_table_reads_part_of_a_nested_column_and_names_an_unknown_one(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="cols", client=client)
    ver.add_frames([frame(1, "car", fid="a"), frame(2, fid="b")])
    table = ver.get_frames_table(columns=["rois.list.element.labels"])
    assert table.column_names == ["id", "rois"]
    assert table.sort_by("id").column("rois").to_pylist() == [[{"labels": ["car"]}], []]
    for bad in ("colour", "rois.list.element.colour"):
        with pytest.raises(ValidationError, match=f"'{bad}' is not a column of the frame index"):
            ver.get_frames_table(columns=[bad])


def test_compaction_merges_segments_and_leaves_children_alone(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="c", client=client)
    for batch in range(6):
        ver.add_frames([frame(batch * 10 + i, "car", fid=f"f{batch}-{i}") for i in range(3)])
    ver.delete_frames(["f0-0", "f5-2"])
    ver.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="c", parent_version_ids=[ver.id], version_name="kid", client=client
    )
    before = ver.get_frames_table().sort_by("id")
    assert len(ver._frames.refs(ver._entry)) == 7
    ver.compact()
    assert len(ver._frames.refs(ver._entry)) == 1
    assert ver.get_frames_table().sort_by("id").equals(before)
    assert child.reload().get_frames_table().sort_by("id").equals(before)
    assert len(child._frames.refs(child._entry)) == 7
    with pytest.raises(InvalidStateError, match="draft"):
        child.compact()


def test_publishing_compacts_automatically_past_the_threshold(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hds_s3.index.frameindex

    monkeypatch.setattr(hds_s3.index.frameindex, "COMPACT_SEGMENTS", 3)
    ver = DatasetVersion.create_new_dataset(dataset_name="auto", client=client)
    for batch in range(5):
        ver.add_frames([frame(batch, fid=f"f{batch}")])
    before = ver.get_frames_table().sort_by("id")
    ver.publish_version()
    assert len(ver._frames.refs(ver._entry)) == 1
    assert ver.get_frames_table().sort_by("id").equals(before)


def test_segments_are_split_by_rows_and_commits_are_batched(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="rows", client=client)
    ver.add_frames((frame(i, fid=f"f{i:03d}") for i in range(25)), segment_rows=10, commit_every=2)
    refs = ver._frames.refs(ver._entry)
    assert [r.rows for r in refs] == [10, 10, 5]
    assert ver.get_frame_count() == 25


def _parts_batch() -> list[SingleFrame]:
    """50 frames not in id order, then f07 again (the last one given stays): two parts at PART_ROWS 10."""
    frames = [frame(i, "car", fid=f"f{(i * 7) % 50:02d}") for i in range(50)]
    return [*frames, frame(99, "dog", fid="f07")]


def test_a_large_arrow_table_is_written_as_given_in_parts_each_with_its_id_index(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    import hds_s3.index.ingest
    from hds_s3.index import segments

    monkeypatch.setattr(hds_s3.index.ingest, "PART_ROWS", 10)
    ver = DatasetVersion.create_new_dataset(dataset_name="parts", client=client)
    assert ver.add_frames(pa.Table.from_pylist([f.to_dict() for f in _parts_batch()])) == []
    refs = ver._frames.refs(ver._entry)
    assert [r.rows for r in refs] == [25, 25]  # the rows given, cut in the middle, not moved
    given = [f"f{(i * 7) % 50:02d}" for i in range(50) if i != 1] + ["f07"]  # the first f07 dropped
    stored = []
    for ref in refs:
        data = client.store.get_range(ref.key, 0, ref.size)
        whole = segments.from_parquet(data, ref.key, segments.INDEXED_SCHEMA.names)
        segments.check_index(whole, ref.key)
        stored += whole.column("id").to_pylist()
    assert stored == given
    assert client.frames.manifest(ver._entry).disjoint == 1  # their id ranges overlap
    table = ver.get_frames_table(columns=["id", "labels"])
    assert sorted(table.column("id").to_pylist()) == [f"f{i:02d}" for i in range(50)]
    assert [a.labels for a in ver.get_single_frame("f07").get_all_annotations()] == [["dog"]]
    assert [a.labels for a in ver.get_single_frame("f48").get_all_annotations()] == [["car"]]
    with pytest.raises(NotFoundError):
        ver.get_single_frame("f07x")  # inside both parts' id ranges, held by neither
    ver.publish_version()  # finds no id twice: the manifest says so, and reads probe no part
    assert client.frames.manifest(ver._entry).disjoint == 2


def test_a_large_batch_is_written_as_parts_of_its_id_range_known_to_hold_no_id_twice(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hds_s3.index.ingest

    monkeypatch.setattr(hds_s3.index.ingest, "PART_ROWS", 10)
    ver = DatasetVersion.create_new_dataset(dataset_name="parts", client=client)
    assert ver.add_frames(_parts_batch()) == []
    refs = ver._frames.refs(ver._entry)
    assert [r.rows for r in refs] == [25, 25]  # two parts of one sorted batch
    assert refs[0].max_id is not None and refs[1].min_id is not None
    assert refs[0].max_id < refs[1].min_id  # id ranges apart: a look-up reads one
    assert client.frames.manifest(ver._entry).disjoint == 2  # known at once, in the draft
    table = ver.get_frames_table(columns=["id", "labels"])
    assert sorted(table.column("id").to_pylist()) == [f"f{i:02d}" for i in range(50)]
    assert [a.labels for a in ver.get_single_frame("f07").get_all_annotations()] == [["dog"]]

    # a later segment whose range overlaps ends the run known to hold no id twice
    assert ver.add_frames([frame(7, fid="f30b")]) == []
    assert client.frames.manifest(ver._entry).disjoint == 2
    assert ver.add_frames([frame(8, fid="z00")]) == []  # apart from every range, but after it
    assert client.frames.manifest(ver._entry).disjoint == 2


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_segment_is_reported_with_its_key(client: Client, store: ObjectStore, damage: str) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="dmg", client=client)
    ver.add_frames([frame(1, fid="a"), frame(2, fid="b")])
    other = DatasetVersion.create_new_dataset(dataset_name="fine", client=client)
    other.add_frames([frame(3, fid="c")])
    key = next(k for k in contents(store) if k.endswith(".parquet") and ver.id in k)
    if damage == "missing":
        store.delete(key)
    else:
        store.put(key, store.get(key)[0][:100])
    with pytest.raises(CorruptObjectError, match=key.split("/")[-1]):
        ver.get_frames_table()
    with pytest.raises(CorruptObjectError):
        ver.get_single_frame("a")
    assert other.get_frame_count() == 1


@pytest.mark.parametrize("arrow", [False, True])
def test_a_chain_that_piles_up_dead_rows_is_rewritten_at_publish_and_its_parent_is_not(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, arrow: bool
) -> None:
    import pyarrow as pa

    import hds_s3.index.frameindex
    from hds_s3.index import segments

    def given(frames: list[SingleFrame]) -> Any:  # as Arrow: indexed segments, rows as given
        return pa.Table.from_pylist([f.to_dict() for f in frames]) if arrow else frames

    monkeypatch.setattr(hds_s3.index.frameindex, "DEAD_ROWS_MIN", 4)
    root = DatasetVersion.create_new_dataset(dataset_name="dead", client=client)
    root.add_frames(given([frame(i, "car", fid=f"f{(i * 7) % 20:02d}") for i in range(20)]))
    root.publish_version()
    parent, expected = root, {f"f{i:02d}" for i in range(20)}
    rewritten = []
    for step in range(4):
        child = DatasetVersion.create_version(
            dataset_name="dead", parent_version_ids=[parent.id], version_name=f"c{step}", client=client
        )
        child.add_frames(given([frame(100 + step, "dog", fid=f"new{step}")]))  # 1 added
        child.update_frames(given([frame(step, "cat", fid=f"f{step:02d}")]))  # 1 replaced: 1 dead row
        child.delete_frames([f"f{10 + step:02d}"])  # 1 deleted: a dead row and a tombstone
        expected = (expected | {f"new{step}"}) - {f"f{10 + step:02d}"}
        parent_rows = parent.get_frames_table().sort_by("id")
        child.publish_version()
        refs = child._frames.refs(child._entry)
        rewritten.append(all(r.version == child.id for r in refs))
        assert ids_of(child) == sorted(expected)
        assert child.get_single_frame(f"f{step:02d}").get_all_annotations()[0].labels == ["cat"]
        assert parent.reload().get_frames_table().sort_by("id").equals(parent_rows)
        parent = child
    # dead rows: 3 per child (with the tombstone), past max(4, 20% of ~20) from the second child on
    assert rewritten == [False, True, False, True]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # each rewrite landed
    table = parent.get_frames_table()
    assert table.schema.metadata == segments.FRAME_SCHEMA.metadata  # frames, whatever they were read from


@pytest.mark.parametrize("bad", [None, "", 7])
def test_looking_up_something_that_is_not_a_frame_id_is_refused(client: Client, bad: object) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="lookup", client=client)
    with pytest.raises(ValidationError, match="frame id"):
        ver.get_single_frame(bad)  # type: ignore[arg-type]


class _DeletesOnFirstSegmentRead:
    """A store on which another writer deletes a version just before the first segment is read."""

    def __init__(self, inner: ObjectStore, delete: Callable[[], None]) -> None:
        self.inner, self.url, self._delete = inner, inner.url, delete

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if key.endswith(".parquet") and self._delete is not None:
            delete, self._delete = self._delete, None
            delete()
        return self.inner.get_range(key, start, length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("read", ["get_frames_table", "get_single_frame", "publish_version", "update_frames"])
def test_a_version_deleted_while_it_is_read_is_reported_as_gone_not_as_damage(read: str) -> None:
    inner = MemoryStore()
    writer = Client(inner)
    draft = DatasetVersion.create_new_dataset(dataset_name="gone", client=writer)
    draft.add_frames([frame(1, "car", fid="a"), frame(2, fid="b")])
    DatasetVersion.create_version(dataset_name="gone", version_name="other", client=writer)

    def delete() -> None:
        Dataset.get(dataset_name="gone", client=writer).delete_version(version_id=draft.id, force=True)

    reader = Client(_DeletesOnFirstSegmentRead(inner, delete))  # type: ignore[arg-type]
    version = DatasetVersion.get_version(dataset_name="gone", version_id=draft.id, client=reader)
    call = {
        "get_frames_table": lambda: version.get_frames_table(),
        "get_single_frame": lambda: version.get_single_frame("a"),
        "publish_version": lambda: version.publish_version(),
        "update_frames": lambda: version.update_frames([frame(1, "dog", fid="a")]),
    }[read]
    with pytest.raises(NotFoundError, match="deleted by another writer"):
        call()


def test_a_snapshot_chain_stays_short_to_read_the_new_draft_follows_the_compaction(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hds_s3.index.frameindex

    monkeypatch.setattr(hds_s3.index.frameindex, "DEAD_ROWS_MIN", 4)
    draft = DatasetVersion.create_new_dataset(dataset_name="chain", client=client)
    draft.add_frames([frame(i, "car", fid=f"f{i:02d}") for i in range(20)])
    expected = {f"f{i:02d}" for i in range(20)}
    lengths = []
    for step in range(6):
        draft.update_frames([frame(step, "cat", fid=f"f{step:02d}")])
        draft.delete_frames([f"f{10 + step:02d}"])
        expected.discard(f"f{10 + step:02d}")
        published_id = draft.id
        draft = DatasetVersion.create_snapshot(dataset_name="chain", publish_name=f"v{step}", client=client)
        published = DatasetVersion.get_version(dataset_name="chain", version_id=published_id, client=client)
        assert ids_of(published) == ids_of(draft) == sorted(expected)
        lengths.append(len(draft._frames.refs(draft._entry)))
        if all(r.version == published_id for r in published._frames.refs(published._entry)):
            # compacted at the snapshot: the new draft reads the compacted segments, not the old ones
            assert draft._frames.refs(draft._entry) == published._frames.refs(published._entry)
    assert max(lengths) < 6  # without following the compaction it grows by 2 per step: 3, 5, ..., 13
    assert draft.get_single_frame("f03").get_all_annotations()[0].labels == ["cat"]


@pytest.mark.parametrize("how", ["publish", "snapshot"])
def test_a_failed_compaction_never_fails_the_publication_that_landed(
    how: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Compaction runs after the publication: a store failure there is a warning, not an error.

    For every request k of a publish (or snapshot) that compacts, request k fails without reaching
    the store. The call raises exactly when the version is still a draft afterwards: a caller told
    "failed" never finds the version published, and one told "done" always does.
    """
    import hds_s3.index.frameindex

    monkeypatch.setattr(hds_s3.index.frameindex, "COMPACT_SEGMENTS", 3)
    template = MemoryStore()
    setup = Client(template)
    ver = DatasetVersion.create_new_dataset(dataset_name="c", client=setup)
    for batch in range(5):
        ver.add_frames([frame(batch, fid=f"f{batch}")])
    draft_id = ver.id
    expected = ids_of(ver)
    compacted_at_some_k = warned = 0
    for k in range(1, 200):
        inner = MemoryStore()
        for info in template.list(""):
            inner.put(info.key, template.get(info.key)[0])
        faulty = FaultyStore(inner, fail_at=k)
        caplog.clear()
        try:
            if how == "publish":
                DatasetVersion.get_version("c", version_id=draft_id, client=Client(faulty)).publish_version()
            else:
                DatasetVersion.create_snapshot(dataset_name="c", publish_name="v1", client=Client(faulty))
            raised = False
        except StorageError:
            raised = True
        after = DatasetVersion.get_version("c", version_id=draft_id, client=Client(inner))
        assert raised == after.is_draft, f"k={k}: raised={raised}, yet the version is_draft={after.is_draft}"
        assert ids_of(after) == expected, f"k={k}"
        if not after.is_draft:
            refs = after._frames.refs(after._entry)
            compacted_at_some_k += len(refs) == 1
            warned += any("compacting it failed" in r.getMessage() for r in caplog.records)
        if faulty.count < k:  # the call made fewer than k requests: every point was tried
            break
    else:
        pytest.fail("the call never finished without a fault")
    assert compacted_at_some_k >= 1  # compaction does happen when nothing fails
    assert warned >= 1  # and a failure inside it was reported as a warning


def _model_read(version: DatasetVersion) -> dict[str, tuple[str, int]]:
    """Each frame's (city, index) as the version reads it; every id once."""
    table = version.get_frames_table(columns=["id", "meta"])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an id was read twice"
    metas = [json.loads(m) for m in table.column("meta").to_pylist()]
    return {fid: (m["city"], m["index"]) for fid, m in zip(ids, metas, strict=True)}


def test_a_clean_publication_is_marked_disjoint_and_its_children_read_right_through_it(
    client: Client,
) -> None:
    """A published version with no id twice says so in its manifest; children then probe only their deltas."""
    root = DatasetVersion.create_new_dataset(dataset_name="disjoint", client=client)
    # ids interleaved, so the segments' id ranges overlap (ranges apart say "disjoint" at once)
    order = [i // 2 + 10 * (i % 2) for i in range(20)]
    root.add_frames([frame(i, "car", fid=f"f{i:02d}") for i in order], segment_rows=6)
    assert client.frames.manifest(root._entry).disjoint == 1  # a draft: no more known yet
    root.publish_version()
    manifest = client.frames.manifest(root._entry)
    assert len(manifest.segments) == 4 and manifest.disjoint == 4
    model = {f"f{i:02d}": ("bremen", i) for i in range(20)}
    assert _model_read(root) == model
    child = DatasetVersion.create_version(
        dataset_name="disjoint", parent_version_ids=[root.id], version_name="kid", client=client
    )
    assert client.frames.manifest(child._entry).disjoint == 4  # the parent's manifest, by reference
    child.update_frames([frame(1, "cat", fid="f01", city="ulm"), frame(7, fid="f07", city="ulm")])
    child.delete_frames(["f02", "f13"])
    child.add_frames([frame(50, fid="n50"), frame(2, fid="f02", city="back")])  # f02 comes back
    child.delete_frames(["n50"])
    model.update(f01=("ulm", 1), f07=("ulm", 7), f02=("back", 2))
    del model["f13"]
    assert _model_read(child) == model
    assert client.frames.manifest(child._entry).disjoint == 4  # its deltas follow the marked run
    child.publish_version()  # replaced and deleted rows: the run stays the parent's four
    assert client.frames.manifest(child._entry).disjoint == 4
    assert _model_read(child) == model
    grandchild = DatasetVersion.create_version(
        dataset_name="disjoint", parent_version_ids=[child.id], version_name="grandkid", client=client
    )
    grandchild.delete_frames(["f01"])
    grandchild.add_frames([frame(13, fid="f13", city="again")])
    del model["f01"]
    model["f13"] = ("again", 13)
    assert _model_read(grandchild) == model
    assert _model_read(root) == {f"f{i:02d}": ("bremen", i) for i in range(20)}  # the parent is untouched


def test_a_full_compaction_is_marked_disjoint(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import hds_s3.index.frameindex

    monkeypatch.setattr(hds_s3.index.frameindex, "DEAD_ROWS_MIN", 1)
    monkeypatch.setattr(hds_s3.index.frameindex, "SEGMENT_ROWS", 4)
    ver = DatasetVersion.create_new_dataset(dataset_name="full", client=client)
    ver.add_frames([frame(i, fid=f"f{i:02d}") for i in range(10)])
    ver.add_frames([frame(i, "dog", fid=f"f{i:02d}") for i in range(5)])  # 5 replaced rows
    expected = _model_read(ver)
    ver.publish_version()
    manifest = client.frames.manifest(ver._entry)
    assert [r.rows for r in manifest.segments] == [4, 4, 2] and manifest.disjoint == 3
    assert _model_read(ver) == expected


def test_frames_converted_a_few_at_a_time_still_make_whole_segments_where_the_last_write_wins(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hds_s3.index.ingest

    monkeypatch.setattr(hds_s3.index.ingest, "CONVERT_ROWS", 3)
    ver = DatasetVersion.create_new_dataset(dataset_name="steps", client=client)
    frames: list[Any] = [frame(i, fid=f"f{i:02d}") for i in range(12)]
    frames[4] = frame(1, fid="f01", city="later")  # f01 again, in the next step of the same segment
    frames[8] = {"sources": []}  # refused, in the third step
    frames.append(frame(11, fid="f11", city="last"))  # f11 again, in the next segment
    failed = ver.add_frames(frames, segment_rows=10)
    assert [f.frame for f in failed] == [frames[8]]
    refs = ver._frames.refs(ver._entry)
    assert [r.rows for r in refs] == [8, 2]  # 10 frames: one repeated, one refused; then f10, f11 twice
    got = _model_read(ver)
    assert got["f01"] == ("later", 1) and got["f11"] == ("last", 11)
    assert sorted(got) == sorted({f"f{i:02d}" for i in range(12)} - {"f04", "f08"})


@pytest.mark.parametrize("enabled", [True, False])
def test_add_frames_leaves_the_garbage_collector_as_it_found_it_even_when_the_input_fails(
    client: Client, enabled: bool
) -> None:
    def frames_then_failure() -> Any:
        for i in range(5):
            yield frame(i, "car")
        raise RuntimeError("the camera feed broke")

    ver = DatasetVersion.create_new_dataset(dataset_name="collector", client=client)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError, match="camera feed"):
            ver.add_frames(frames_then_failure())
        assert gc.isenabled() is enabled
        assert ver.add_frames([frame(i, "car") for i in range(5)]) == []
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert ver.get_frame_count() == 5
