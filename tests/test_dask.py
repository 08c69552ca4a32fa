"""hds_s3 on Dask (threads and processes): reads equal get_frames_table and a DataView, stats, ingest."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dist_workers import job_frames
from test_plan import EVERY, chain, dict_rows, view_rows, views
from test_twophase import segment_keys

import hds_s3
from hds_s3 import Client, Dataset, DatasetVersion, ValidationError

dd = pytest.importorskip("dask.dataframe", reason="the dask extra is not installed: pip install -e '.[dask]'")
pd = pytest.importorskip("pandas")
hds_dask = pytest.importorskip("hds_s3.dask")

#: Reading in processes starts a pool of spawned interpreters per compute: slow tier.
SCHEDULERS = ["threads", pytest.param("processes", marks=pytest.mark.slow)]


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return hds_s3.connect(str(tmp_path / "store"))


def arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_version_read_by_dask_equals_get_frames_table(client: Client, scheduler: str) -> None:
    versions = chain(client)
    for version in versions:
        ddf = hds_dask.read_version(version, EVERY)
        assert ddf.npartitions == len(version.read_plan(EVERY))  # one partition per segment
        got = arrow(ddf.compute(scheduler=scheduler))
        assert got.equals(version.get_frames_table(EVERY)), version.name


def test_nested_columns_keep_their_arrow_types(client: Client) -> None:
    v3 = chain(client)[2]
    ddf = hds_dask.read_version(v3, ["sources", "rois", "meta_str"])
    assert isinstance(ddf.dtypes["rois"], pd.ArrowDtype)
    assert pa.types.is_list(ddf.dtypes["rois"].pyarrow_dtype)
    frame = ddf.compute(scheduler="threads")
    want = v3.get_frames_table(["sources", "rois", "meta_str"]).to_pylist()
    assert arrow(frame).to_pylist() == want


def test_a_filter_and_a_projection_run_in_the_partitions(client: Client) -> None:
    v3 = chain(client)[2]
    expression = (pc.field("roi_count") > 0) & (pc.field("timestamp") < 200)
    got = arrow(hds_dask.read_version(v3, ["meta"], expression).compute(scheduler="threads"))
    assert got.equals(v3.get_frames_table(EVERY).filter(expression).select(["id", "meta"]))
    with pytest.raises(ValidationError):
        hds_dask.read_version("v3", ["meta"])  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_dataview_read_by_dask_is_its_pass_once_sorted_by_pick(client: Client, scheduler: str) -> None:
    versions = chain(client)
    for view in [views(client, versions)[i] for i in (0, 1, 3)]:  # sequential, weighted random, timed clips
        frame = hds_dask.read_view(view).compute(scheduler=scheduler)
        assert view_rows(arrow(frame)) == dict_rows(view.to_dict())


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_statistics_counted_by_dask_tasks_equal_get_stats(client: Client, scheduler: str) -> None:
    v3 = chain(client)[2]
    counted = hds_dask.count_stats(v3, scheduler=scheduler)
    assert counted.stats == v3.get_stats()
    v3.publish_version(stats=counted)
    assert v3.reload().get_stats() == counted.stats


def test_four_dask_partitions_ingest_what_one_process_does_and_a_repeat_lands_once(client: Client) -> None:
    frames = job_frames(0, 200) + job_frames(50, 20)  # ids 50..69 twice: the later partition wins
    for f in frames[200:]:
        f["meta"] = {"again": True}
    table = pa.Table.from_pylist(frames)
    source = dd.from_pandas(table.to_pandas(types_mapper=pd.ArrowDtype), npartitions=4)
    Dataset.create("spread", client=client)
    spread = DatasetVersion.get_current(dataset_name="spread", client=client)
    summary = hds_dask.write_frames(source, spread, txn_id="dask-job", segment_rows=30, scheduler="processes")
    assert summary.commit.committed and not summary.failed
    Dataset.create("single", client=client)
    single = DatasetVersion.get_current(dataset_name="single", client=client)
    single.add_frames(table)
    columns = ["id", "context_id", "timestamp", "sources", "rois", "meta"]
    assert (
        spread.get_frames_table(columns).sort_by("id").equals(single.get_frames_table(columns).sort_by("id"))
    )
    again = hds_dask.write_frames(source, spread, txn_id="dask-job", scheduler="threads")
    assert not again.commit.committed and again.segments == 0
    assert spread.get_frame_count() == 200


def test_input_that_is_not_frames_is_refused_and_nothing_is_written(client: Client) -> None:
    Dataset.create("refused", client=client)
    version = DatasetVersion.get_current(dataset_name="refused", client=client)
    table = pa.table({"path": ["s3://b/1.jpg", "s3://b/2.jpg"]})
    known = dd.from_pandas(table.to_pandas(types_mapper=pd.ArrowDtype), npartitions=2)
    meta = pd.DataFrame({"sources": pd.Series([], dtype=object)})  # what Dask is told: a frame column
    hidden = known.map_partitions(lambda f: f, meta=meta, enforce_metadata=False)
    for data in (known, hidden):  # its columns in Dask's meta; or only in what the tasks compute
        with pytest.raises(ValidationError, match="frame columns"):
            hds_dask.write_frames(data, version, txn_id="refused", scheduler="threads")
    with pytest.raises(ValidationError, match="dask DataFrame"):
        hds_dask.write_frames(table, version)
    assert version.get_frame_count() == 0
    assert not segment_keys(version)
