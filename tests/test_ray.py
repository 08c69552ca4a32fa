"""hds_s3 on a local Ray (2 CPUs, no cluster address): reads, views, ingest, crashes, leases, compaction.

Slow tier: a local Ray takes seconds to start and each job starts worker processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dist_workers import KillOnce, WaitForGc, job_frames
from test_plan import EVERY, chain, dict_rows, views
from test_twophase import commits_of, segment_keys

import hds_s3
from hds_s3 import Client, Dataset, DatasetVersion, InvalidStateError, ValidationError
from hds_s3.tools.fsck import fsck
from hds_s3.tools.gc import gc

#: Slow tier. Run with ``-n 0`` (as .ci/run does): one local Ray serves every test; spread over
#: xdist workers, each worker starts a Ray of its own.
pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
hds_ray = pytest.importorskip("hds_s3.ray")

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ["id", "context_id", "timestamp", "sources", "rois", "meta"]


@pytest.fixture
def client(tmp_path: Path, local_ray: str) -> Client:
    """A local folder's store; the session's local Ray (conftest's ``local_ray``) is running."""
    return hds_s3.connect(str(tmp_path / "store"))


def arrow_rows(ds: Any) -> pa.Table:
    return pa.concat_tables([ray.get(ref) for ref in ds.to_arrow_refs()])


def draft(client: Client, name: str) -> DatasetVersion:
    Dataset.create(name, client=client)
    return DatasetVersion.get_current(dataset_name=name, client=client)


def test_a_version_read_by_ray_workers_equals_get_frames_table(client: Client) -> None:
    for version in chain(client):
        ds = hds_ray.read_version(version, EVERY, preserve_order=True)
        materialised = ds.materialize()
        assert materialised.num_blocks() == len(version.read_plan(EVERY))  # a block per task
        assert arrow_rows(materialised).equals(version.get_frames_table(EVERY)), version.name
    with pytest.raises(ValidationError):
        hds_ray.read_version("v1")


def test_a_dataview_on_ray_is_its_pass_in_order(client: Client) -> None:
    versions = chain(client)
    # a random view of two rules (weights, mapping, labels) and one of clips by time: a Ray sort each
    # (seconds); test_plan runs every view's plan in this process
    for view in [views(client, versions)[i] for i in (1, 3)]:
        rows = view.to_ray().take_all()
        assert [r["id"] for r in rows] == [d["id"] for d in view.to_dict()]
        got = [{**r, "_pick": i} for i, r in enumerate(rows)]
        from test_plan import view_rows

        assert view_rows(pa.Table.from_pylist(got)) == dict_rows(view.to_dict())
    unordered = views(client, versions)[1].to_ray(ordered=False).take_all()
    assert sorted(r["id"] for r in unordered) == sorted(d["id"] for d in views(client, versions)[1].to_dict())


def test_input_that_is_not_frames_is_refused_and_nothing_is_written(client: Client) -> None:
    version = draft(client, "refused")
    known = ray.data.from_arrow(pa.table({"path": ["s3://b/1.jpg"]}))  # its schema is known up front
    found_late = known.map_batches(lambda b: b, batch_format="pyarrow")  # known once a worker ran it
    for data in (known, found_late):
        with pytest.raises(ValidationError, match="frame columns"):
            hds_ray.write_frames(data, version, txn_id="refused")
    with pytest.raises(ValidationError):
        hds_ray.write_frames(pa.table({"id": ["a"]}), version)
    assert version.get_frame_count() == 0 and not segment_keys(version)


def frames_with_repeats() -> pa.Table:
    frames = job_frames(0, 300) + job_frames(40, 30)  # ids 40..69 again, in a later block
    for f in frames[300:]:
        f["meta"] = {"again": True}
    return pa.Table.from_pylist(frames)


def test_four_ray_workers_ingest_what_one_process_does(client: Client) -> None:
    table = frames_with_repeats()
    spread = draft(client, "spread")
    summary = hds_ray.write_frames(
        ray.data.from_arrow(table).repartition(4), spread, txn_id="four", segment_rows=40
    )
    assert summary.commit.committed and not summary.failed and summary.segments >= 4
    single = draft(client, "single")
    single.add_frames(table)
    assert (
        spread.get_frames_table(CONTENT).sort_by("id").equals(single.get_frames_table(CONTENT).sort_by("id"))
    )
    assert commits_of(spread, "four") == 1


def test_a_worker_killed_mid_job_then_the_job_repeated_with_its_txn_id_lands_once(
    client: Client, tmp_path: Path
) -> None:
    table = pa.Table.from_pylist(job_frames(0, 400))
    marker = tmp_path / "killed"
    version = draft(client, "crashy")

    def job() -> Any:
        data = ray.data.from_arrow(table).repartition(4)
        data = data.map_batches(KillOnce(str(marker), "job-00250"), batch_format="pyarrow", batch_size=25)
        return hds_ray.write_frames(data, version, txn_id="crashy-job", segment_rows=25)

    first = job()
    assert marker.exists()  # a worker was killed; Ray ran its task again
    assert first.commit.committed
    assert version.get_frame_count() == 400
    again = job()  # the driver runs the job again (it could not tell it had landed)
    assert not again.commit.committed
    assert version.get_frame_count() == 400
    assert commits_of(version, "crashy-job") == 1
    assert not fsck(client).damage
    committed = {r.key for r in client.frames.refs(version.reload()._entry)}
    assert committed <= segment_keys(version)


def test_gc_during_a_leased_ray_job_removes_nothing_of_it(client: Client, tmp_path: Path) -> None:
    table = pa.Table.from_pylist(job_frames(0, 300))
    version = draft(client, "leased")
    done = tmp_path / "gc-done"
    reports = []

    def collector() -> None:
        deadline = time.monotonic() + 120
        while not segment_keys(version) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first block's segments are written, nothing is committed
        reports.append((set(segment_keys(version)), gc(client, grace_seconds=0, dry_run=False)))
        done.write_text("ok")

    thread = threading.Thread(target=collector)
    thread.start()
    data = ray.data.from_arrow(table).repartition(3).map_batches(WaitForGc(str(done)), batch_format="pyarrow")
    summary = hds_ray.write_frames(data, version, txn_id="leased", segment_rows=30)
    thread.join()
    written_before_gc, report = reports[0]
    assert written_before_gc and version.get_frame_count() == 300
    assert not written_before_gc & {i.key for i in report.removed}
    assert summary.commit.committed


def test_statistics_publication_and_compaction_run_on_ray_workers(client: Client) -> None:
    versions = chain(client)
    v3 = versions[2]
    counted = hds_ray.count_stats(v3)
    assert counted.stats == v3.get_stats()
    hds_ray.publish(v3)
    assert v3.reload().get_stats() == counted.stats
    v2 = versions[1]
    before = v2.get_frames_table(EVERY).sort_by("id")
    hds_ray.compact(v2, segment_rows=100)
    manifest = client.frames.manifest(v2.reload()._entry)
    assert manifest is not None and manifest.disjoint == len(manifest.segments)
    assert v2.get_frames_table(EVERY).sort_by("id").equals(before)
    assert v3.get_frames_table().num_rows == counted.stats["frames"]  # the child still reads its own
    draft_version = DatasetVersion.create_version(
        dataset_name="chain", parent_version_names=["v3"], version_name="v4", client=client
    )
    with pytest.raises(InvalidStateError):
        hds_ray.compact(draft_version)


def test_the_ray_pipeline_example_runs(tmp_path: Path, local_ray: str) -> None:
    pytest.importorskip("torch", reason="the example streams into a torch loop: pip install torch")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDS_", "AWS_"))}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the default store (HOME stays: Ray's token is there)
    env["RAY_ADDRESS"] = local_ray  # the example joins the session's Ray instead of starting its own
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_pipeline.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "data" / "hds_s3").is_dir()
