"""fsck: every kind of finding, made on purpose; repair completes roll-forwards; reading never writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame
from hds_s3.errors import StorageError
from hds_s3.format import layout, tree
from hds_s3.format.commit import create_dataset, write_checkpoint
from hds_s3.format.docs import (
    DatasetClaim,
    DatasetDoc,
    VersionEntry,
    dump_claim,
    dump_manifest,
    dumps_with_digest,
    now_ms,
    parse_manifest,
)
from hds_s3.format.log import LazyTree
from hds_s3.format.records import Checkpoint, dump_checkpoint, dump_head
from hds_s3.index import segments
from hds_s3.store import FaultyStore, LocalStore, MemoryStore, ObjectStore
from hds_s3.store.base import ObjectInfo
from hds_s3.tools.fsck import FsckReport, fsck
from hds_s3.tools.gc import gc


@pytest.fixture
def client() -> Client:
    return Client(MemoryStore())


def frame(i: int) -> SingleFrame:
    return SingleFrame(source=f"s3://b/{i}.jpg", width=4, height=4, metadata={"i": i}, id=f"f{i}")


def build(c: Client) -> DatasetVersion:
    """``cars``: published ``v1`` (2 frames) -> draft ``Current`` (+1); ``other``: a draft with a frame."""
    draft = DatasetVersion.create_new_dataset("cars", client=c)
    draft.add_frames([frame(1), frame(2)])
    child = DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v1", client=c)
    child.add_frames([frame(3)])
    DatasetVersion.create_new_dataset("other", client=c).add_frames([frame(9)])
    return child


def doc_of(c: Client, name: str) -> DatasetDoc:
    return c.catalog.get(name).whole()


def put_doc(c: Client, doc: DatasetDoc) -> None:
    """Make ``doc`` the dataset's tree as a damaged store would hold it: a checkpoint the head uses."""
    view = c.catalog.get(dataset_id=doc.id)
    assert isinstance(view, LazyTree)
    head = view.head_doc
    c.store.put(layout.checkpoint_key(doc.id, head.seq), dump_checkpoint(Checkpoint(head, doc.versions)))
    c.store.put(layout.dataset_doc_key(doc.id), dump_head(replace(head, checkpoint=head.seq)))


def keys(store: ObjectStore, suffix: str = "", contains: str = "") -> list[str]:
    return [i.key for i in store.list("") if i.key.endswith(suffix) and contains in i.key]


def snapshot(store: ObjectStore) -> dict[str, str]:
    return {i.key: i.etag for i in store.list("")}


class UntimedStore(MemoryStore):
    """A memory store that does not report last-modified times (as some S3 servers may not)."""

    def head(self, key: str) -> ObjectInfo:
        return replace(super().head(key), last_modified=None)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in super().list(prefix):
            yield replace(info, last_modified=None)


def only(report: FsckReport, kind: str) -> list[str]:
    return report.codes(kind)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- healthy stores


def test_an_empty_store_is_clean(client: Client) -> None:
    report = fsck(client)
    assert report.clean and report.objects == 0
    assert "result: clean" in report.summary()


def test_a_store_written_through_the_api_has_no_damage_and_nothing_pending(client: Client) -> None:
    child = build(client)
    child.set_metadata({"x": 1})
    DatasetVersion.create_version(dataset_name="cars", version_name="root2", client=client)
    report = fsck(client, deep=True)
    assert report.ok and not report.pending
    assert report.datasets == 2 and report.versions == 4 and report.segments == 3
    # the only garbage: manifests that later commits replaced
    assert set(only(report, "garbage")) <= {"unreferenced-manifest"}


def test_reading_never_writes_even_with_pending_work(client: Client) -> None:
    build(client)
    doc = doc_of(client, "cars")
    client.catalog.commit(
        doc.id, lambda t: tree.mark_deleted(t, delete_all_versions=True, force=True), what="t"
    )
    client.store.put("notes/readme.txt", b"hello")
    before = snapshot(client.store)
    report = fsck(client, deep=True)
    assert snapshot(client.store) == before
    assert "deleted-dataset" in only(report, "pending") and "unknown-object" in only(report, "note")


class ReadOnly:
    """A store whose writes fail, as with read-only credentials."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str) -> Any:
        return self.inner.list(prefix)

    def put(self, key: str, data: bytes, **kw: Any) -> str:
        raise StorageError(f"read-only: put {key}")

    def delete(self, key: str) -> None:
        raise StorageError(f"read-only: delete {key}")


def test_fsck_works_with_read_only_credentials(client: Client) -> None:
    build(client)
    report = fsck(Client(ReadOnly(client.store)), deep=True)  # type: ignore[arg-type]
    assert report.ok and report.datasets == 2


def test_the_report_is_json_ready(client: Client) -> None:
    build(client)
    client.store.delete(keys(client.store, ".parquet")[0])
    data = json.loads(json.dumps(fsck(client).to_dict()))
    assert data["ok"] is False and data["counts"]["damage"] == 1
    assert data["findings"][0]["code"] == "segment-missing" and data["findings"][0]["kind"] == "damage"


# ---------------------------------------------------------------------------- damage, one case each


def _segment_of(c: Client, name: str) -> str:
    doc = doc_of(c, name)
    return keys(c.store, ".parquet", doc.id)[0]


def _current_manifest(c: Client, name: str, version: str = "Current") -> str:
    entry = doc_of(c, name).version_named(version)
    assert entry is not None
    return str(entry.frames["manifest"])


def _edit_doc(edit: Callable[[DatasetDoc], DatasetDoc]) -> Callable[[Client], None]:
    def run(c: Client) -> None:
        put_doc(c, edit(doc_of(c, "cars")))

    return run


def _cycle(doc: DatasetDoc) -> DatasetDoc:
    a, b = doc.versions
    return doc.with_version(replace(a, parent=b.id))


def _claim_elsewhere(c: Client) -> None:
    data, _ = c.store.get(layout.dataset_claim_key("cars"))
    c.store.put(layout.dataset_claim_key("trucks"), data)


def _claim_other_name(c: Client) -> None:
    doc = doc_of(c, "cars")
    c.store.put(layout.dataset_claim_key("autos"), dump_claim(DatasetClaim(name="autos", dataset_id=doc.id)))


def _draft_parent(c: Client) -> None:
    doc = doc_of(c, "cars")
    v1, cur = doc.versions
    put_doc(c, doc.with_version(replace(v1, status="draft", published=None)))


def _manifest_elsewhere(c: Client) -> None:
    other = _current_manifest(c, "other")
    put_doc(
        c,
        doc_of(c, "cars").with_version(
            replace(doc_of(c, "cars").versions[1], frames={"manifest": other, "segments": 1, "rows": 1})
        ),
    )


def _segment_elsewhere(c: Client) -> None:
    mkey = _current_manifest(c, "cars")
    manifest = parse_manifest(c.store.get(mkey)[0], mkey)
    foreign = replace(manifest.segments[0], key=_segment_of(c, "other"))
    c.store.put(mkey, dump_manifest(replace(manifest, segments=(foreign, *manifest.segments[1:]))))


def _same_size_garbage(c: Client) -> None:
    key = _segment_of(c, "cars")
    c.store.put(key, b"x" * c.store.head(key).size)


DAMAGE: list[tuple[str, Callable[[Client], None], bool]] = [
    ("marker-missing", lambda c: c.store.delete(layout.STORE_MARKER), False),
    ("marker-corrupt", lambda c: c.store.put(layout.STORE_MARKER, b'{"format_version": 7}'), False),
    ("claim-corrupt", lambda c: c.store.put(layout.dataset_claim_key("cars"), b'{"format_vers'), False),
    ("claim-key", _claim_elsewhere, False),
    ("name-mismatch", _claim_other_name, False),
    ("claimed-twice", _claim_other_name, False),
    (
        "document-corrupt",
        lambda c: c.store.put(layout.dataset_doc_key(doc_of(c, "cars").id), b"{}"),
        False,
    ),
    (
        "document-missing",
        lambda c: c.store.delete(layout.dataset_doc_key(doc_of(c, "cars").id)),
        False,
    ),
    ("document-corrupt", _edit_doc(lambda d: replace(d, versions=(*d.versions, d.versions[0]))), False),
    (
        "version-duplicate",
        _edit_doc(lambda d: d.with_version(replace(d.versions[1], name=d.versions[0].name))),
        False,
    ),
    ("parent-missing", _edit_doc(lambda d: d.with_version(replace(d.versions[1], parent="0" * 32))), False),
    ("cycle", _edit_doc(_cycle), False),
    ("draft-parent", _draft_parent, False),
    ("manifest-missing", lambda c: c.store.delete(_current_manifest(c, "cars")), False),
    ("manifest-corrupt", lambda c: c.store.put(_current_manifest(c, "cars"), b'{"segments": ['), False),
    ("document-corrupt", _manifest_elsewhere, False),  # a record may only name its dataset's manifests
    ("segment-missing", lambda c: c.store.delete(_segment_of(c, "cars")), False),
    (
        "segment-size",
        lambda c: c.store.put(_segment_of(c, "cars"), c.store.get(_segment_of(c, "cars"))[0][:-10]),
        False,
    ),
    ("segment-foreign", _segment_elsewhere, False),
    ("segment-corrupt", _same_size_garbage, True),
]


@pytest.mark.parametrize("code, damage, deep", DAMAGE, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)])
def test_each_damage_is_reported_with_its_code(
    client: Client, code: str, damage: Callable[[Client], None], deep: bool
) -> None:
    build(client)
    assert fsck(client, deep=deep).ok
    damage(client)
    report = fsck(client, deep=deep)
    assert not report.ok and code in only(report, "damage"), report.summary()
    assert "result: DAMAGED" in report.summary()
    found = next(f for f in report.damage if f.code == code)
    assert found.key and found.message
    # the healthy dataset is not blamed
    other = doc_of(client, "other").id if code not in ("claim-corrupt",) else None
    if other is not None and code not in ("marker-missing", "marker-corrupt", "manifest-foreign"):
        assert all(f.dataset_id != other for f in report.damage)


def test_a_deep_check_is_needed_to_see_same_size_garbage(client: Client) -> None:
    build(client)
    _same_size_garbage(client)
    assert fsck(client).ok
    assert only(fsck(client, deep=True), "damage") == ["segment-corrupt"]


def test_repair_rewrites_a_missing_marker_and_nothing_else_damaged(client: Client) -> None:
    build(client)
    client.store.delete(layout.STORE_MARKER)
    segment = _segment_of(client, "cars")
    client.store.delete(segment)
    report = fsck(Client(client.store), repair=True)
    marker = next(f for f in report.damage if f.code == "marker-missing")
    assert marker.repaired
    assert not next(f for f in report.damage if f.code == "segment-missing").repaired
    assert only(fsck(client), "damage") == ["segment-missing"]


# ---------------------------------------------------------------------------- pending roll-forwards


def _half_deleted_dataset(c: Client) -> str:
    doc = doc_of(c, "cars")
    c.catalog.commit(doc.id, lambda t: tree.mark_deleted(t, delete_all_versions=True, force=True), what="t")
    return doc.id


def test_a_deleted_dataset_whose_objects_remain_is_pending_and_repair_completes_it(client: Client) -> None:
    build(client)
    dataset_id = _half_deleted_dataset(client)
    assert not Dataset.exists("cars", client=client)
    report = fsck(client)
    assert report.ok and only(report, "pending") == ["deleted-dataset"]
    assert report.pending[0].dataset_id == dataset_id and not report.pending[0].repaired
    repaired = fsck(client, repair=True)
    assert [f.repaired for f in repaired.pending] == [True]
    assert keys(client.store, contains=dataset_id) == []
    after = fsck(client)
    assert after.ok and not after.pending
    claim = json.loads(client.store.get(layout.dataset_claim_key("cars"))[0])
    assert claim["dataset_id"] is None
    Dataset.create("cars", raise_if_exists=True, client=client)


def test_a_claim_left_pointing_at_a_removed_dataset_is_pending(client: Client) -> None:
    build(client)
    dataset_id = _half_deleted_dataset(client)
    client.catalog.remove_objects(layout.dataset_prefix(dataset_id), last=layout.dataset_doc_key(dataset_id))
    report = fsck(client)
    assert report.ok and only(report, "pending") == ["stale-claim"]
    assert [f.repaired for f in fsck(client, repair=True).pending] == [True]
    assert fsck(client).clean or not fsck(client).pending


def test_a_deleted_versions_objects_are_pending_and_repair_removes_them(client: Client) -> None:
    build(client)
    scratch = DatasetVersion.create_version(dataset_name="cars", version_name="scratch", client=client)
    scratch.add_frames([frame(7)])
    doc = doc_of(client, "cars")
    client.catalog.commit(doc.id, lambda t: tree.delete_version(t, scratch.id), what="t")
    report = fsck(client)
    assert report.ok and only(report, "pending") == ["deleted-version"]
    assert len(report.pending[0].objects) == 2  # its manifest and its segment
    fsck(client, repair=True)
    # what is left is the record saying it was removed: garbage gc takes after its grace period
    assert keys(client.store, contains=scratch.id) == [layout.record_key(doc.id, scratch.id)]
    assert not fsck(client).pending and sorted(only(fsck(client), "garbage")) == [
        "freed-name",
        "removed-record",
    ]


def test_a_failed_repair_is_reported_not_raised(client: Client) -> None:
    build(client)
    _half_deleted_dataset(client)
    report = fsck(Client(ReadOnly(client.store)), repair=True)  # type: ignore[arg-type]
    (pending,) = report.pending
    assert not pending.repaired and "repair" in pending.message


# ---------------------------------------------------------------------------- garbage and notes


def _unclaimed(c: Client, name: str) -> str:
    """A dataset written as a create writes one before it claims the name, never claimed."""
    dataset_id, now = layout.new_id(), now_ms()
    first = VersionEntry(id=layout.new_id(), name="Current", parent=None, status="draft", created=now)
    create_dataset(c.store, dataset_id=dataset_id, name=name, now=now, fields={}, first=first)
    return dataset_id


def test_an_unclaimed_dataset_document_is_an_orphan(client: Client) -> None:
    build(client)
    orphan = _unclaimed(client, "half-made")
    report = fsck(client)
    assert report.ok and "orphan-dataset" in only(report, "garbage")
    found = next(f for f in report.garbage if f.code == "orphan-dataset")
    assert set(found.objects) == set(keys(client.store, contains=orphan))
    assert layout.dataset_doc_key(orphan) in found.objects and len(found.objects) == 4
    written = max(client.store.head(k).last_modified or 0 for k in found.objects)
    assert found.written is not None and found.written >= written


def test_an_unreadable_claim_stops_orphan_verdicts(client: Client) -> None:
    build(client)
    _unclaimed(client, "half-made")
    client.store.put(layout.dataset_claim_key("zzz"), b"not json")
    report = fsck(client)
    assert "orphan-dataset" not in only(report, "garbage") and "claim-corrupt" in only(report, "damage")


def test_unreferenced_segments_and_manifests_are_garbage_with_a_write_time(client: Client) -> None:
    child = build(client)
    child.add_frames([frame(4)])  # supersedes the child's manifest
    ref = client.frames.write_segment(child.dataset_id, child.id, segments.deletes_table(["f1"]), "deletes")
    report = fsck(client)
    segment = next(f for f in report.garbage if f.key == ref.key)
    assert segment.code == "unreferenced-segment"
    assert segment.written == client.store.head(ref.key).last_modified  # the memory store tells
    manifests = [f for f in report.garbage if f.code == "unreferenced-manifest"]
    assert manifests and all(f.written is not None for f in manifests)


def test_without_store_times_manifests_tell_their_age_and_lone_segments_have_none() -> None:
    client = Client(UntimedStore())
    child = build(client)
    child.add_frames([frame(4)])  # supersedes the child's manifest
    ref = client.frames.write_segment(child.dataset_id, child.id, segments.deletes_table(["f1"]), "deletes")
    report = fsck(client)
    segment = next(f for f in report.garbage if f.key == ref.key)
    assert segment.code == "unreferenced-segment" and segment.written is None  # nothing tells its age
    manifests = [f for f in report.garbage if f.code == "unreferenced-manifest"]
    assert manifests and all(f.written is not None for f in manifests)


def test_objects_of_a_dataset_that_is_gone_are_leftovers(client: Client) -> None:
    build(client)
    ghost = layout.new_id()
    key = layout.segment_key(ghost, layout.new_id(), layout.new_id())
    client.store.put(key, b"PAR1")
    report = fsck(client)
    assert report.ok and [f.key for f in report.garbage if f.code == "leftover"] == [key]


def test_keys_hds_s3_does_not_write_are_notes(client: Client) -> None:
    build(client)
    for key in ("README", "_hds/other.json", "datasets/x/dataset.json", "datasets/" + "a" * 32 + "/what.bin"):
        client.store.put(key, b"?")
    report = fsck(client)
    assert report.ok and not report.garbage and sorted(only(report, "note")) == ["unknown-object"] * 4


def test_dataview_objects_are_neither_notes_nor_garbage(client: Client) -> None:
    build(client)
    view = layout.new_id()
    client.store.put(layout.dataview_doc_key(view), b"{}")
    client.store.put(layout.dataview_name_key("my view", view), b"{}")
    report = fsck(client)
    assert report.ok and not report.findings


def test_layout_parses_back_every_key_it_spells() -> None:
    d, v, o = layout.new_id(), layout.new_id(), layout.new_id()
    assert layout.parse_key(layout.STORE_MARKER) == layout.KeyParts("marker")
    assert layout.parse_key(layout.dataset_claim_key("a/b ..")) == layout.KeyParts("claim")
    assert layout.parse_key(layout.dataset_doc_key(d)) == layout.KeyParts("dataset", d)
    assert layout.parse_key(layout.manifest_key(d, v, o)) == layout.KeyParts("manifest", d, v, o)
    assert layout.parse_key(layout.segment_key(d, v, o)) == layout.KeyParts("segment", d, v, o)
    for bad in (
        "",
        "datasets/",
        f"datasets/{d}/x.json",
        f"datasets/{d}/versions/{v}/y.json",
        "_hds/datasets/a/b.json",
    ):
        assert layout.parse_key(bad) is None


def test_fsck_on_a_local_folder(tmp_path: Any) -> None:
    c = Client(LocalStore(tmp_path / "store", fsync=False))
    build(c)
    report = fsck(c, deep=True)
    assert report.ok and report.datasets == 2 and report.store.startswith("file://")


class WriterDuringScan:
    """Runs ``write`` right after the scan's first read of ``key`` (the bytes returned are the old ones)."""

    def __init__(self, inner: ObjectStore, key: str, write: Callable[[], object]) -> None:
        self.inner, self.key, self.write, self.done = inner, key, write, False
        self.url = inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        got = self.inner.get(key)
        if key == self.key and not self.done:
            self.done = True
            self.write()
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_version_deleted_during_the_scan_is_not_reported_as_damage(client: Client) -> None:
    build(client)
    scratch = DatasetVersion.create_version(dataset_name="cars", version_name="scratch", client=client)
    scratch.add_frames([frame(7)])
    doc_key = layout.dataset_doc_key(scratch.dataset_id)
    delete = lambda: Dataset.get("cars", client=Client(client.store)).delete_version(version_name="scratch")  # noqa: E731
    report = fsck(Client(WriterDuringScan(client.store, doc_key, delete)))  # type: ignore[arg-type]
    assert report.ok, report.summary()


def test_a_dataset_deleted_during_the_scan_is_not_reported_as_damage(client: Client) -> None:
    build(client)
    doc_key = layout.dataset_doc_key(doc_of(client, "cars").id)
    claim_key = layout.dataset_claim_key("cars")
    delete = lambda: Dataset.delete("cars", delete_all_versions=True, force=True, client=Client(client.store))  # noqa: E731
    report = fsck(Client(WriterDuringScan(client.store, claim_key, delete)))  # type: ignore[arg-type]
    assert report.ok, report.summary()
    assert doc_key not in {i.key for i in client.store.list("")}


def test_a_deep_check_catches_a_manifest_that_claims_disjoint_segments_falsely(client: Client) -> None:
    """Reads trust ManifestDoc.disjoint; a deep fsck checks it, so a doctored manifest is damage."""
    ver = DatasetVersion.create_new_dataset(dataset_name="dj", client=client)
    ver.add_frames([SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i}") for i in range(6)], segment_rows=3)
    ver.publish_version()
    manifest = client.frames.manifest(ver._entry)
    assert manifest.disjoint == 2
    assert fsck(client, deep=True).ok
    # a second segment that repeats an id of the first, under a manifest that still claims disjoint
    first = manifest.segments[0]
    data = client.store.get(first.key)[0]
    twin = first.key.replace(first.key.rsplit("/", 1)[1], "0" * 32 + ".parquet")
    client.store.put(twin, data)
    doctored = replace(manifest, segments=(first, replace(first, key=twin)))
    client.store.put(ver._entry.frames["manifest"], dump_manifest(doctored))
    client.frames._manifests.clear()
    assert fsck(client).ok  # only reading the ids shows it
    report = fsck(client, deep=True)
    assert only(report, "damage") == ["manifest-disjoint"]
    assert "3 ids occur in more than one" in report.damage[0].message


# ---------------------------------------------------------------------------- format 2: log and records


def _cars(c: Client) -> LazyTree:
    view = c.catalog.get("cars")
    assert isinstance(view, LazyTree)
    return view


def test_entries_folded_into_a_newer_checkpoint_and_older_checkpoints_are_garbage_gc_removes(
    client: Client,
) -> None:
    child = build(client)
    dataset_id = child.dataset_id
    first = write_checkpoint(client.store, dataset_id)
    child.set_comment("after the first checkpoint")
    second = write_checkpoint(client.store, dataset_id)
    assert first is not None and second is not None and second > first
    report = fsck(client)
    assert report.ok and not report.pending
    folded = {f.key for f in report.garbage if f.code == "folded-entry"}
    assert folded == {layout.log_key(dataset_id, seq) for seq in range(second + 1)}
    assert [f.key for f in report.garbage if f.code == "superseded-checkpoint"] == [
        layout.checkpoint_key(dataset_id, first)
    ]
    gc(client, grace_seconds=0, dry_run=False)
    after = fsck(Client(client.store))
    assert after.ok and not {"folded-entry", "superseded-checkpoint"} & set(only(after, "garbage"))
    # the tree reads from the checkpoint alone, and commits go on after it
    assert [v.name for v in Dataset.get("cars", client=Client(client.store)).get_versions()] == [
        "v1",
        "Current",
    ]
    DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v2", client=Client(client.store))
    assert fsck(Client(client.store)).ok


def test_an_entry_left_unmaterialised_is_pending_reads_see_it_and_repair_completes_it(client: Client) -> None:
    build(client)
    dataset_id = _cars(client).id
    upto = _requests_until_entry(client)
    store = FaultyStore(client.store, fail_at=None, mode="before")
    target = DatasetVersion.get_current(dataset_name="cars", client=Client(store))  # type: ignore[arg-type]
    store.fail_at = store.count + upto + 1  # the first write after the entry's: the writer stops there
    target.set_comment("third")  # committed; materialising it failed, which is logged, not raised
    report = fsck(Client(client.store))
    assert report.ok and only(report, "pending") == ["unmaterialised-entry"], report.summary()
    assert DatasetVersion.get_current(dataset_name="cars", client=Client(client.store)).comment == "third"
    # opened by id, its (stale) record is fetched beside the look past the head: the entry wins
    fresh = Client(client.store)
    by_id = DatasetVersion.get_version(dataset_id=dataset_id, version_id=target.id, client=fresh)
    assert by_id.comment == "third"
    repaired = fsck(Client(client.store), repair=True)
    assert [f.repaired for f in repaired.pending] == [True]
    after = fsck(Client(client.store))
    assert after.ok and not after.pending
    assert json.loads(client.store.get(layout.dataset_doc_key(dataset_id))[0])["seq"] == _cars(client).seq


def _requests_until_entry(client: Client) -> int:
    """How many requests a set_comment of the current draft makes, up to the put of its log entry."""
    counter = FaultyStore(MemoryStore(), fail_at=None)
    for info in client.store.list(""):
        counter.inner.put(info.key, client.store.get(info.key)[0])
    ver = DatasetVersion.get_current(dataset_name="cars", client=Client(counter))  # type: ignore[arg-type]
    start = counter.count
    ver.set_comment("count")
    ops = counter.log[start:]
    return next(i + 1 for i, (op, key) in enumerate(ops) if op == "put" and "/log/" in key)


def _edit_head(c: Client, edit: Callable[[dict[str, Any]], None]) -> None:
    key = layout.dataset_doc_key(_cars(c).id)
    data, etag = c.store.get(key)
    raw = json.loads(data)
    edit(raw)
    c.store.put(key, dumps_with_digest(raw), if_match=etag)  # as a faulty writer would leave it


@pytest.mark.parametrize(
    "code, damage",
    [
        ("head-aggregates", lambda c: _edit_head(c, lambda raw: raw["agg"].update(roots=3))),
        ("head-aggregates", lambda c: _edit_head(c, lambda raw: raw["agg"].update(drafts={}))),
        (
            "record-missing",
            lambda c: c.store.delete(layout.record_key(_cars(c).id, _cars(c).draft_ids()[0])),
        ),
        (
            "name-index",
            lambda c: c.store.delete(layout.version_name_key(_cars(c).id, "v1")),
        ),
        (
            "record-corrupt",
            lambda c: c.store.put(layout.record_key(_cars(c).id, _cars(c).draft_ids()[0]), b"{]"),
        ),
    ],
)
def test_each_damage_of_the_materialised_tree_is_reported(
    client: Client, code: str, damage: Callable[[Client], None]
) -> None:
    build(client)
    damage(client)
    report = fsck(client)
    assert code in only(report, "damage"), report.summary()
    other = doc_of(client, "other").id
    assert all(f.dataset_id != other for f in report.damage)


def test_statistics_of_no_published_version_are_garbage(client: Client) -> None:
    child = build(client)
    stray = layout.stats_key(child.dataset_id, child.id)  # a draft's: none should exist
    client.store.put(stray, b'{"format_version": 2, "kind": "stats", "stats": {"frames": 1}}')
    report = fsck(client)
    assert report.ok and [f.key for f in report.garbage if f.code == "unreferenced-stats"] == [stray]
