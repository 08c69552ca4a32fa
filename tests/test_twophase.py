"""Two-phase writes in the open: write_segments anywhere, commit_segments once, leases that gc honours."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dist_workers import job_frames, run_job

import hds_s3
from hds_s3 import (
    Client,
    ConflictError,
    Dataset,
    DatasetVersion,
    InvalidStateError,
    ValidationError,
)
from hds_s3.format import layout
from hds_s3.index.twophase import PendingSegment, WrittenSegments
from hds_s3.store import LocalStore
from hds_s3.tools.fsck import fsck
from hds_s3.tools.gc import gc

CONTENT = ["id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob"]


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return hds_s3.connect(str(tmp_path / "store"))


def draft(client: Client, name: str = "cars") -> DatasetVersion:
    Dataset.create(name, client=client)
    return DatasetVersion.get_current(dataset_name=name, client=client)


def commits_of(version: DatasetVersion, txn_id: str) -> int:
    history = Dataset.get(dataset_id=version.dataset_id, client=version.client).get_history(limit=1000)
    return sum(1 for e in history if f"({txn_id})" in e["what"])


def segment_keys(version: DatasetVersion) -> set[str]:
    prefix = layout.version_prefixes(version.dataset_id, version.id)[1]
    return {info.key for info in version.client.store.list(prefix)}


def content(version: DatasetVersion) -> list[dict[str, Any]]:
    return version.get_frames_table(columns=CONTENT).sort_by("id").to_pylist()


# ---------------------------------------------------------------------------- the two phases


def test_segments_written_by_workers_are_seen_only_after_the_one_commit_listing_them(client: Client) -> None:
    version = draft(client)
    shares = [version.write_segments(job_frames(p * 30, 30), part=p, segment_rows=8) for p in range(4)]
    assert all(not w.failed for w in shares)
    assert sum(len(w.segments) for w in shares) == 16
    assert version.get_frame_count() == 0  # written, not committed: invisible
    done = version.commit_segments(shares, txn_id="ingest-1")
    assert (done.committed, done.segments, done.rows) == (True, 16, 120)
    assert version.get_frame_count() == 120
    assert commits_of(version, "ingest-1") == 1
    single = draft(client, "single")
    single.add_frames(job_frames(0, 120))
    assert content(version) == content(single)


def test_references_travel_as_json_and_commit_the_same(client: Client) -> None:
    version = draft(client)
    written = version.write_segments(job_frames(0, 25), segment_rows=10)
    text = written.to_json()
    back = WrittenSegments.from_json(text)
    assert back.segments == written.segments
    one = written.segments[0]
    assert PendingSegment.from_json(one.to_json()) == one
    version.commit_segments(
        [json.loads(text)["segments"][0], *[s.to_json() for s in back.segments[1:]]], txn_id="j"
    )
    assert version.get_frame_count() == 25


def test_an_id_written_by_two_workers_resolves_by_part_whatever_order_the_references_come_in(
    client: Client,
) -> None:
    results = []
    for name, order in (("forward", [0, 1, 2]), ("backward", [2, 1, 0]), ("mixed", [1, 2, 0])):
        version = draft(client, name)
        shares = {}
        for part in (0, 1, 2):
            frames = job_frames(0, 10)
            for f in frames:
                f["meta"] = {"part": part}
            shares[part] = version.write_segments(frames, part=part, segment_rows=4)
        version.commit_segments([shares[p] for p in order], txn_id="dup")
        table = version.get_frames_table(columns=["meta"])
        results.append(sorted(table.to_pylist(), key=lambda r: r["id"]))
    assert results[0] == results[1] == results[2]
    assert {json.loads(r["meta"])["part"] for r in results[0]} == {
        2
    }  # the highest part wins, as in add_frames


def test_arrow_input_is_written_as_add_frames_writes_it(client: Client) -> None:
    version = draft(client)
    table = pa.Table.from_pylist(job_frames(0, 40))
    written = version.write_segments(table, part=3)
    version.commit_segments(written, txn_id="arrow")
    single = draft(client, "single")
    single.add_frames(table)
    assert content(version) == content(single)


def test_invalid_frames_are_reported_and_the_others_written(client: Client) -> None:
    version = draft(client)
    frames = job_frames(0, 5)
    frames[2]["sources"][0]["width"] = -3
    written = version.write_segments(frames)
    assert len(written.failed) == 1 and "width" in written.failed[0].reason
    assert WrittenSegments.from_json(written.to_json()).failed[0].reason == written.failed[0].reason
    version.commit_segments(written, txn_id="x")
    assert version.get_frame_count() == 4


# ---------------------------------------------------------------------------- landing once


def test_a_commit_repeated_with_its_txn_id_lands_once(client: Client) -> None:
    version = draft(client)
    written = version.write_segments(job_frames(0, 30), segment_rows=10)
    first = version.commit_segments(written, txn_id="job-7")
    again = version.commit_segments(written, txn_id="job-7")  # a retry after a lost response
    assert first.committed and not again.committed
    assert (again.segments, again.rows) == (3, 30)
    rerun = version.write_segments(job_frames(0, 30), segment_rows=10)  # the whole job run again
    assert not version.commit_segments(rerun, txn_id="job-7").committed
    assert version.get_frame_count() == 30
    assert commits_of(version, "job-7") == 1
    report = fsck(version.client)
    unreferenced = {f.key for f in report.garbage if f.code == "unreferenced-segment"}
    assert unreferenced == {s.key for s in rerun.segments}  # the rerun's segments: garbage, never data
    # another job may commit more; the first one's id still says landed
    version.commit_segments(version.write_segments(job_frames(100, 5)), txn_id="job-8")
    assert not version.commit_segments(written, txn_id="job-7").committed
    assert version.get_frame_count() == 35


def test_a_landed_commit_is_found_after_the_version_is_published(client: Client) -> None:
    version = draft(client)
    written = version.write_segments(job_frames(0, 12))
    version.commit_segments(written, txn_id="before-publish")
    version.publish_version()
    assert not version.commit_segments(written, txn_id="before-publish").committed
    with pytest.raises(InvalidStateError):
        version.commit_segments(written, txn_id="another")


@pytest.mark.parametrize("stop", ["before-commit", "after-commit"])
def test_a_driver_killed_mid_job_then_run_again_with_the_same_txn_id_lands_once(
    tmp_path: Path, stop: str
) -> None:
    url = str(tmp_path / "store")
    version = draft(hds_s3.connect(url))
    marker = tmp_path / "marker"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=run_job, args=(url, version.dataset_id, version.id, "nightly", str(marker), stop)
    )
    proc.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.is_alive():
        time.sleep(0.05)
    assert marker.exists(), "the driver never got there"
    os.kill(proc.pid, signal.SIGKILL)  # the driver dies: its response is never seen
    proc.join(30)
    assert version.reload().get_frame_count() == (200 if stop == "after-commit" else 0)
    # the restarted driver runs the whole job again, with the same transaction id
    again = [version.write_segments(job_frames(p * 50, 50), part=p, segment_rows=20) for p in range(4)]
    result = version.commit_segments(again, txn_id="nightly")
    assert result.committed is (stop == "before-commit")
    assert version.get_frame_count() == 200
    assert commits_of(version, "nightly") == 1
    assert not fsck(version.client).damage


# ---------------------------------------------------------------------------- bad input changes nothing


def test_references_that_do_not_hold_are_refused_and_nothing_is_committed(client: Client) -> None:
    version = draft(client)
    other = draft(client, "other")
    mine, fine = version.write_segments(job_frames(0, 10), segment_rows=5).segments
    theirs = other.write_segments(job_frames(0, 10)).segments[0]
    gone = version.write_segments(job_frames(20, 10)).segments[0]
    client.store.delete(gone.key)
    forged: list[tuple[Any, str]] = [
        (theirs, "not for this one"),
        (gone, "does not exist"),
        (dataclasses.replace(mine, size=mine.size + 1), "bytes"),
        (dataclasses.replace(mine, rows=mine.rows + 1), "rows"),
        (dataclasses.replace(mine, kind="deletes"), "frames"),
        ({"kind": "hds_s3.pending-segment", "key": mine.key}, "pending segment reference"),
        ("{not json", "not valid JSON"),
        (42, "give pending segments"),
        (
            dataclasses.replace(mine, key=layout.segment_key(version.dataset_id, other.id, layout.new_id())),
            "lies",
        ),
    ]
    before = version.client.store.get(layout.dataset_doc_key(version.dataset_id))
    for bad, words in forged:
        with pytest.raises(ValidationError, match=words):
            version.commit_segments([fine, bad], txn_id="bad")
    for txn in ("", " ", "a\x00b", 7, None, "x" * 300):
        with pytest.raises(ValidationError):
            version.commit_segments([mine], txn_id=txn)  # type: ignore[arg-type]
    assert version.client.store.get(layout.dataset_doc_key(version.dataset_id)) == before
    assert version.reload().get_frame_count() == 0
    version.commit_segments([mine], txn_id="good")
    with pytest.raises(ValidationError, match="committed already"):
        version.commit_segments([mine], txn_id="another")
    assert version.get_frame_count() == 5


def test_write_segments_refuses_bad_arguments_and_published_versions_writing_nothing(client: Client) -> None:
    version = draft(client)
    for kwargs in ({"part": -1}, {"part": "a"}, {"segment_rows": 0}, {"part": True}):
        with pytest.raises(ValidationError):
            version.write_segments(job_frames(0, 3), **kwargs)
    for frames in (7, {"id": "x"}, "frames"):
        with pytest.raises(ValidationError):
            version.write_segments(frames)
    version.add_frames(job_frames(0, 2))
    version.publish_version()
    with pytest.raises(InvalidStateError):
        version.write_segments(job_frames(0, 3))
    assert not segment_keys(version) - {r.key for r in version.client.frames.refs(version._entry)}


# ---------------------------------------------------------------------------- leases and gc


def test_gc_during_a_leased_job_removes_nothing_of_it(client: Client) -> None:
    version = draft(client)
    with version.acquire_lease(60) as lease:
        written = [version.write_segments(job_frames(p * 20, 20), part=p, segment_rows=7) for p in range(3)]
        report = gc(client, grace_seconds=0, dry_run=False)
        assert not report.removed
        assert {i.reason for i in report.kept} == {"a live write lease holds its version"}
        assert lease.key in {info.key for info in client.store.list("")}  # a live lease is no garbage
        version.commit_segments(written, txn_id="leased")
    assert version.get_frame_count() == 60


def test_without_a_lease_gc_with_no_grace_takes_uncommitted_segments(client: Client) -> None:
    version = draft(client)
    written = version.write_segments(job_frames(0, 20), segment_rows=7)
    report = gc(client, grace_seconds=0, dry_run=False)
    assert {i.key for i in report.removed} == {s.key for s in written.segments}
    with pytest.raises(ValidationError, match="does not exist"):
        version.commit_segments(written, txn_id="late")
    assert version.get_frame_count() == 0


def test_a_lease_is_renewed_released_and_once_expired_it_protects_nothing(tmp_path: Path) -> None:
    client = hds_s3.connect(str(tmp_path / "store"))
    version = draft(client)
    lease = version.acquire_lease(1, renew_every=0)
    first = lease.expires
    time.sleep(0.01)
    lease.renew()
    assert lease.expires > first
    written = version.write_segments(job_frames(0, 5))
    assert not gc(client, grace_seconds=0, dry_run=True).removed
    time.sleep(max(0.0, lease.expires / 1000 - time.time()) + 0.05)  # not renewed: it expires
    report = gc(client, grace_seconds=0, dry_run=True)
    assert {s.key for s in written.segments} <= {i.key for i in report.removed}
    assert lease.key in {i.key for i in report.removed}  # an expired lease is garbage itself
    lease.release()
    lease.release()  # idempotent
    assert lease.key not in {info.key for info in client.store.list("")}
    with pytest.raises(ConflictError):
        lease.renew()


def test_a_renewing_lease_keeps_a_long_job_alive(client: Client) -> None:
    version = draft(client)
    with version.acquire_lease(1.0, renew_every=0.2) as lease:
        start = lease.expires
        time.sleep(1.5)  # longer than the lease lasts: only the renewals keep it
        assert lease.expires > start and lease.error is None
        written = version.write_segments(job_frames(0, 5))
        assert not gc(client, grace_seconds=0, dry_run=False).removed
        version.commit_segments(written, txn_id="long")


def test_a_damaged_lease_is_damage_and_gc_keeps_what_it_may_protect(tmp_path: Path) -> None:
    client = hds_s3.connect(str(tmp_path / "store"))
    version = draft(client)
    lease = version.acquire_lease(60, renew_every=0)
    written = version.write_segments(job_frames(0, 5))
    store = client.store
    assert isinstance(store, LocalStore)
    data = json.loads(store.get(lease.key)[0])
    data["expires"] = 1  # changed by hand: its digest no longer matches
    store.put(lease.key, json.dumps(data).encode(), if_match=store.get(lease.key)[1])
    assert "lease-corrupt" in fsck(client).codes("damage")
    report = gc(client, grace_seconds=0, dry_run=False)
    assert not {s.key for s in written.segments} & {i.key for i in report.removed}


def test_lease_arguments_are_checked(client: Client) -> None:
    version = draft(client)
    for ttl in (0, -1, float("nan"), 10**9, "1h", True):
        with pytest.raises(ValidationError):
            version.acquire_lease(ttl)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        version.acquire_lease(60, holder="")
    assert not [i for i in client.store.list("") if layout.parse_key(i.key) and "leases" in i.key]
