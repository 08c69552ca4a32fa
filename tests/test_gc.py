"""gc: removes only unreferenced objects, only old ones, only from quiet datasets, re-reading first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hds_s3 import Client, CorruptObjectError, Dataset, DatasetVersion, SingleFrame, ValidationError
from hds_s3.format import layout, tree
from hds_s3.format.docs import DatasetDoc, ManifestDoc, dump_dataset_doc, dump_manifest, now_ms
from hds_s3.store import FaultyStore, LocalStore, MemoryStore, ObjectStore
from hds_s3.store.base import ObjectInfo
from hds_s3.tools.fsck import fsck
from hds_s3.tools.gc import DEFAULT_GRACE_SECONDS, GcReport, gc

HOUR = 3600.0
DAY = 24 * HOUR


def frame(i: int) -> SingleFrame:
    return SingleFrame(source=f"s3://b/{i}.jpg", width=4, height=4, metadata={"i": i}, id=f"f{i}")


class UntimedStore(MemoryStore):
    """A memory store that does not report last-modified times (as some S3 servers may not)."""

    def head(self, key: str) -> ObjectInfo:
        return replace(super().head(key), last_modified=None)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for info in super().list(prefix):
            yield replace(info, last_modified=None)


class TimedStore:
    """A memory store with a (settable) write time per object, reported in list/head."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.clock = now_ms() / 1000  # documents carry real times; objects get this settable one
        self.times: dict[str, float] = {}
        self.url = "memory://timed"

    def get(self, key: str) -> tuple[bytes, str]:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        info = self.inner.head(key)
        return replace(info, last_modified=self.times[key])

    def list(self, prefix: str) -> Any:
        for info in self.inner.list(prefix):
            yield replace(info, last_modified=self.times[info.key])

    def put(self, key: str, data: bytes, **kw: Any) -> str:
        etag = self.inner.put(key, data, **kw)
        self.times[key] = self.clock
        return etag

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self.times.pop(key, None)


def keys(store: ObjectStore) -> set[str]:
    return {i.key for i in store.list("")}


def frames_of(c: Client, name: str) -> dict[str, list[str]]:
    ds = Dataset.get(name, client=c)
    return {
        v.name: sorted(v.get_frames_table(columns=["id"]).column("id").to_pylist()) for v in ds.get_versions()
    }


def busy_dataset(c: Client) -> DatasetVersion:
    """``cars``: published ``v1`` -> draft ``Current``; several commits, so superseded manifests."""
    draft = DatasetVersion.create_new_dataset("cars", client=c)
    draft.add_frames([frame(1), frame(2)])
    draft.add_frames([frame(3)])
    child = DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v1", client=c)
    child.add_frames([frame(4)])
    child.delete_frames(["f1"])
    return child


def old_manifest(dataset_id: str, key: str) -> bytes:
    """An empty manifest written at the epoch (as the age it carries tells)."""
    version_id = key.split("/")[3]
    return dump_manifest(ManifestDoc(dataset_id=dataset_id, version_id=version_id, segments=(), created=0))


def uncommitted_segment(c: Client, version: DatasetVersion) -> str:
    from hds_s3.index import segments

    return c.frames.write_segment(
        version.dataset_id, version.id, segments.deletes_table(["f2"]), "deletes"
    ).key


# ---------------------------------------------------------------------------- what goes and what stays


def test_a_dry_run_removes_nothing_and_says_what_would_go() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    before = keys(c.store)
    report = gc(c, now=now_ms() / 1000 + 2 * DAY)
    assert report.dry_run and report.removed and keys(c.store) == before
    assert {i.code for i in report.removed} == {"unreferenced-manifest"}
    assert "would remove" in report.summary() and "dry_run=False" in report.summary()


def test_young_garbage_is_kept_and_old_garbage_goes() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    garbage = {f.key for f in fsck(c).garbage}
    assert garbage
    young = gc(c, dry_run=False)
    assert not young.removed and {i.key for i in young.kept} == garbage
    assert {i.reason for i in young.kept} == {"younger than the grace period"}
    content = frames_of(c, "cars")
    old = gc(c, dry_run=False, now=now_ms() / 1000 + DAY + 60)
    assert {i.key for i in old.removed} == garbage and not old.failed
    assert not keys(c.store) & garbage
    assert frames_of(c, "cars") == content
    assert fsck(c).clean


def test_a_dataset_that_changed_within_the_grace_period_is_left_alone() -> None:
    store = TimedStore()
    c = Client(store)  # type: ignore[arg-type]
    child = busy_dataset(c)
    store.clock += 2 * DAY
    child.set_metadata({"touched": True})  # the dataset document changes "now"
    report = gc(c, now=store.clock + 60)
    assert not report.removed
    assert {i.reason for i in report.kept} == {"its dataset changed within the grace period"}


def test_an_object_of_unknown_age_is_kept_unless_the_grace_period_is_zero() -> None:
    c = Client(UntimedStore())
    child = busy_dataset(c)
    key = uncommitted_segment(c, child)
    report = gc(c, now=now_ms() / 1000 + 30 * DAY)
    kept = {i.key: i.reason for i in report.kept}
    assert kept[key].startswith("age unknown")
    assert key in {i.key for i in gc(c, grace_seconds=0).removed}


def test_a_store_that_reports_write_times_lets_gc_age_uncommitted_segments() -> None:
    store = TimedStore()
    c = Client(store)  # type: ignore[arg-type]
    child = busy_dataset(c)
    store.clock += 2 * DAY
    fresh = uncommitted_segment(c, child)  # a writer that has not committed yet
    store.clock += HOUR
    old = uncommitted_segment(c, child)
    store.times[old] -= 3 * DAY  # written long ago and never committed
    report = gc(c, now=store.clock, dry_run=False)
    removed = {i.key for i in report.removed}
    assert old in removed and fresh not in removed
    assert {i.reason for i in report.kept if i.key == fresh} == {"younger than the grace period"}
    assert fresh in keys(store)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_the_memory_and_local_stores_report_write_times_so_gc_ages_uncommitted_segments(
    kind: str, tmp_path: Path
) -> None:
    store: ObjectStore = MemoryStore() if kind == "memory" else LocalStore(str(tmp_path))
    c = Client(store)
    child = busy_dataset(c)
    key = uncommitted_segment(c, child)
    written = store.head(key).last_modified
    assert written is not None and abs(written - now_ms() / 1000) < HOUR
    assert {i.last_modified for i in store.list(key)} == {written}
    young = gc(c, now=written + HOUR, dry_run=False)
    assert {i.reason for i in young.kept if i.key == key} == {"younger than the grace period"}
    old = gc(c, now=written + 2 * DAY, dry_run=False)
    assert key in {i.key for i in old.removed} and key not in keys(store)


def test_segments_a_child_still_lists_survive_the_parents_compaction() -> None:
    c = Client(MemoryStore())
    child = busy_dataset(c)
    parent = child.get_parent()
    assert parent is not None
    parent.compact()
    content = frames_of(c, "cars")
    report = gc(c, grace_seconds=0, dry_run=False)
    assert report.removed and not report.failed
    assert frames_of(c, "cars") == content
    assert fsck(c, deep=True).clean


def test_an_orphan_dataset_document_goes_with_its_objects_and_claims_stay() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    Dataset.create("gone", client=c)
    Dataset.delete("gone", client=c)
    orphan = DatasetDoc(id=layout.new_id(), name="half-made", created=0, updated=0)
    c.store.put(layout.dataset_doc_key(orphan.id), dump_dataset_doc(orphan))
    stray = layout.manifest_key(orphan.id, layout.new_id(), layout.new_id())
    c.store.put(stray, old_manifest(orphan.id, stray))
    claims = {k for k in keys(c.store) if k.startswith(layout.DATASET_CLAIMS_PREFIX)}
    report = gc(c, dry_run=False, now=now_ms() / 1000 + 2 * DAY)
    removed = [i.key for i in report.removed if i.code == "orphan-dataset"]
    assert sorted(removed) == sorted([layout.dataset_doc_key(orphan.id), stray])
    assert {k for k in keys(c.store) if k.startswith(layout.DATASET_CLAIMS_PREFIX)} == claims


def test_leftovers_of_a_removed_dataset_go() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    ghost = layout.manifest_key(layout.new_id(), layout.new_id(), layout.new_id())
    c.store.put(ghost, old_manifest(ghost.split("/")[1], ghost))
    report = gc(c, dry_run=False, now=now_ms() / 1000 + 2 * DAY)
    assert [i.key for i in report.removed if i.code == "leftover"] == [ghost]


def test_keys_hds_s3_does_not_write_are_never_removed() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    c.store.put("views/my-view.json", b"{}")
    c.store.put("datasets/readme.txt", b"hi")
    gc(c, grace_seconds=0, dry_run=False)
    assert {"views/my-view.json", "datasets/readme.txt"} <= keys(c.store)


# ---------------------------------------------------------------------------- the safety rules


class ChangeOnReread:
    """Runs ``change`` just before the second read of ``key`` (gc's re-read, after its scan)."""

    def __init__(self, inner: ObjectStore, key: str, change: Any) -> None:
        self.inner, self.key, self.change, self.reads = inner, key, change, 0
        self.url = inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        if key == self.key:
            self.reads += 1
            if self.reads == 2:
                self.change()
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_what_became_referenced_after_the_scan_is_kept() -> None:
    c = Client(MemoryStore())
    child = busy_dataset(c)
    doc = c.catalog.get("cars")
    entry = doc.version(child.id)
    assert entry is not None
    superseded = {f.key for f in fsck(c).garbage if f.code == "unreferenced-manifest" and child.id in f.key}
    assert superseded
    back = sorted(superseded)[0]

    def point_back() -> None:  # a writer points the version back at an old manifest
        c.catalog.commit(
            doc.id, lambda t: tree.set_frames(t, entry.id, {**entry.frames, "manifest": back}), what="t"
        )

    store = ChangeOnReread(c.store, layout.dataset_doc_key(doc.id), point_back)
    report = gc(Client(store), grace_seconds=0, dry_run=False)  # type: ignore[arg-type]
    assert back in {i.key for i in report.kept if i.reason == "referenced again"}
    assert back in keys(c.store)
    assert fsck(c).ok


def test_an_orphan_claimed_after_the_scan_is_kept() -> None:
    c = Client(MemoryStore())
    orphan = DatasetDoc(id=layout.new_id(), name="late", created=0, updated=0)
    doc_key = layout.dataset_doc_key(orphan.id)
    c.store.put(doc_key, dump_dataset_doc(orphan))
    claim_key = layout.dataset_claim_key("late")

    def claim() -> None:  # the slow creator finally claims its name
        from hds_s3.format.docs import DatasetClaim, dump_claim

        c.store.put(claim_key, dump_claim(DatasetClaim(name="late", dataset_id=orphan.id)))

    store = ChangeOnReread(c.store, doc_key, claim)
    report = gc(Client(store), grace_seconds=0, dry_run=False)  # type: ignore[arg-type]
    assert not report.removed and doc_key in keys(c.store)
    assert Dataset.get("late", client=c).id == orphan.id


def test_a_dataset_with_an_unreadable_manifest_is_not_collected() -> None:
    c = Client(MemoryStore())
    child = busy_dataset(c)
    stray = uncommitted_segment(c, child)
    entry = c.catalog.get("cars").version(child.id)
    assert entry is not None
    c.store.put(entry.frames["manifest"], b"{broken")
    report = gc(c, grace_seconds=0, dry_run=False)
    assert stray in keys(c.store) and not any(i.dataset_id == child.dataset_id for i in report.removed)
    assert report.damage >= 1


def test_a_store_of_an_unknown_format_is_refused() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    c.store.put(layout.STORE_MARKER, b'{"format_version": 7}')
    before = keys(c.store)
    with pytest.raises(CorruptObjectError, match="format"):
        gc(c, grace_seconds=0, dry_run=False)
    assert keys(c.store) == before


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1h", True])
def test_a_bad_grace_period_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="grace_seconds"):
        gc(Client(MemoryStore()), grace_seconds=bad)


def test_segments_go_before_manifests_and_documents_last() -> None:
    c = Client(MemoryStore())
    child = busy_dataset(c)
    uncommitted_segment(c, child)
    orphan = DatasetDoc(id=layout.new_id(), name="half-made", created=0, updated=0)
    c.store.put(layout.dataset_doc_key(orphan.id), dump_dataset_doc(orphan))
    logged = FaultyStore(c.store)
    gc(Client(logged), grace_seconds=0, dry_run=False)
    deleted = [key for op, key in logged.log if op == "delete"]
    kinds = [(layout.parse_key(k) or layout.KeyParts("marker")).kind for k in deleted]
    order = {"segment": 0, "manifest": 1, "dataset": 2}
    assert kinds == sorted(kinds, key=order.__getitem__) and set(kinds) == set(order)


def test_a_failed_removal_is_reported_and_stays_garbage() -> None:
    c = Client(MemoryStore())
    child = busy_dataset(c)
    key = uncommitted_segment(c, child)

    class NoDelete(FaultyStore):
        def delete(self, k: str) -> None:
            raise __import__("hds_s3").StorageError(f"denied: {k}")

    report = gc(Client(NoDelete(c.store)), grace_seconds=0, dry_run=False)
    assert key in {i.key for i in report.failed} and not report.removed
    assert key in keys(c.store) and "failed" in report.summary()
    assert key in {f.key for f in fsck(c).garbage}


def test_the_report_is_json_ready_and_counts_pending_work() -> None:
    c = Client(MemoryStore())
    busy_dataset(c)
    from hds_s3.format import tree

    doc = c.catalog.get("cars")
    c.catalog.commit(doc.id, lambda t: tree.mark_deleted(t, delete_all_versions=True, force=True), what="t")
    report = gc(c)
    assert (
        isinstance(report, GcReport) and report.pending == 1 and report.grace_seconds == DEFAULT_GRACE_SECONDS
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dry_run"] is True and data["pending"] == 1
    assert "fsck(repair=True)" in report.summary()


def test_a_dataset_fsck_finds_damaged_is_left_whole_for_its_repair() -> None:
    """A record pointing at another dataset's manifest: nothing of the dataset goes, not even garbage."""
    c = Client(MemoryStore())
    child = busy_dataset(c)
    DatasetVersion.create_new_dataset("other", client=c).add_frames([frame(9)])
    other = c.catalog.get("other").head()
    assert other is not None
    stray = uncommitted_segment(c, child)  # garbage of the damaged dataset
    key = layout.record_key(child.dataset_id, child.id)
    raw = json.loads(c.store.get(key)[0])
    raw["frames"]["manifest"] = other.frames["manifest"]
    c.store.put(key, json.dumps(raw).encode())
    before = {k for k in keys(c.store) if child.dataset_id in k}
    report = gc(c, grace_seconds=0, dry_run=False)
    assert {k for k in keys(c.store) if child.dataset_id in k} == before and stray in before
    assert any(i.key == stray and "damaged" in i.reason for i in report.kept)
    assert report.damage >= 1 and "record-corrupt" in fsck(c).codes("damage")


def test_a_store_of_format_1_is_refused_until_it_is_upgraded() -> None:
    from hds_s3 import UpgradeRequiredError
    from hds_s3.format.catalog import marker_bytes

    c = Client(MemoryStore())
    busy_dataset(c)
    c.store.put(layout.STORE_MARKER, marker_bytes(layout.LEGACY_STORE_FORMAT))
    before = keys(c.store)
    with pytest.raises(UpgradeRequiredError, match="hds upgrade"):
        gc(c, grace_seconds=0, dry_run=False)
    assert keys(c.store) == before
