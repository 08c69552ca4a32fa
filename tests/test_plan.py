"""Read plans: tasks any worker reads, equal to get_frames_table and to a DataView pass; stats, compaction."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dist_workers import job_frames

import hds_s3
from hds_s3 import (
    Client,
    ConflictError,
    Dataset,
    DatasetVersion,
    DataView,
    InvalidStateError,
    IterationOrder,
    ValidationError,
)
from hds_s3.format import layout
from hds_s3.index import segments
from hds_s3.index.plan import (
    STATS_COLUMNS,
    PlanStats,
    ReadPlan,
    ReadTask,
    combine_stats,
    compact_task,
    compaction_groups,
    read_task,
    task_stats,
)
from hds_s3.store import MemoryStore

EVERY = [f.name for f in segments.FRAME_SCHEMA]


def ids(first: int, count: int) -> list[str]:
    return [f"job-{i:05d}" for i in range(first, first + count)]


def chain(client: Client) -> list[DatasetVersion]:
    """v1 (published, several segments) -> v2 (adds, updates, deletes; published) -> v3 (a draft, more)."""
    Dataset.create("chain", client=client)
    v1 = DatasetVersion.get_current(dataset_name="chain", client=client)
    v1.add_frames(job_frames(0, 300), segment_rows=80)
    v1.publish_version()
    v2 = DatasetVersion.create_version(
        dataset_name="chain", parent_version_names=[v1.name], version_name="v2", client=client
    )
    v2.add_frames(job_frames(300, 40), segment_rows=15)
    updated = job_frames(10, 30)
    for f in updated:
        f["meta"] = {"updated": True}
        f["rois"] = [{"labels": ["truck"], "type": "box2d", "poly": [1, 1, 4, 1, 4, 4, 1, 4]}]
    v2.update_frames(updated)
    v2.delete_frames(ids(100, 25) + ids(310, 5))
    v2.publish_version()
    v3 = DatasetVersion.create_version(
        dataset_name="chain", parent_version_names=["v2"], version_name="v3", client=client
    )
    v3.add_frames(job_frames(12, 3) + job_frames(500, 10))  # re-adds over updated frames, and new ones
    v3.delete_frames(ids(0, 8) + ids(320, 2))
    v3.add_frames(job_frames(0, 2))  # deleted, then added again
    return [v1, v2, v3]


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return hds_s3.connect(str(tmp_path / "store"))


@pytest.fixture
def versions(client: Client) -> list[DatasetVersion]:
    return chain(client)


# ---------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "columns", [None, ["meta", "rois"], ["labels", "roi_count"], ["rois.list.element.labels"], EVERY]
)
def test_a_plan_read_task_by_task_is_get_frames_table(versions: list[DatasetVersion], columns: Any) -> None:
    for version in versions:
        plan = version.read_plan(columns)
        want = version.get_frames_table(columns)
        assert plan.schema == want.schema
        got = pa.concat_tables([read_task(t) for t in plan.tasks])
        assert got.equals(want), version.name
        assert ReadPlan.from_json(plan.to_json()).read().equals(want)
        assert pickle.loads(pickle.dumps(plan)).read().equals(want)


def test_dead_ids_carried_inline_or_as_later_segments_give_the_same_rows(
    versions: list[DatasetVersion],
) -> None:
    v3 = versions[2]
    inline = v3.read_plan()
    referenced = v3.read_plan(inline_drop_ids=0)
    assert any(t.drop_ids is not None for t in inline.tasks)
    assert all(t.drop_ids is None for t in referenced.tasks)
    assert any(t.drop_segments for t in referenced.tasks)
    assert referenced.read().equals(v3.get_frames_table())
    again = ReadTask.from_json(referenced.tasks[0].to_json())
    assert read_task(again).equals(read_task(referenced.tasks[0]))


def test_a_filter_runs_in_the_tasks_and_keeps_what_it_keeps_on_the_whole_table(
    versions: list[DatasetVersion],
) -> None:
    v3 = versions[2]
    whole = v3.get_frames_table(EVERY)
    filters = [
        pc.field("timestamp") >= 250,
        (pc.field("roi_count") > 0) & pc.field("context_id").isin(["ctx-1", "ctx-3"]),
        pc.list_value_length(pc.field("labels")) > 0,
    ]
    for expression in filters:
        plan = v3.read_plan(["meta"], expression)
        want = whole.filter(expression).select(["id", "meta"])
        assert plan.read().equals(want), str(expression)
    serialisable = v3.read_plan(["meta"], filters[1])
    assert ReadPlan.from_json(serialisable.to_json()).read().equals(serialisable.read())
    with pytest.raises(ValidationError, match="Substrait"):
        v3.read_plan(["meta"], filters[2]).to_json()  # pickled instead, as Ray and Dask send it


def test_a_segment_of_many_row_groups_splits_into_tasks_of_row_group_ranges(client: Client) -> None:
    Dataset.create("big", client=client)
    version = DatasetVersion.get_current(dataset_name="big", client=client)
    rows = 40_000  # three row groups of 16,384 rows
    table = pa.table(
        {
            "id": [f"{i:06d}" for i in range(rows)],
            "sources": [[{"id": "cam", "uri": f"s3://b/{i}.jpg"}] for i in range(rows)],
        }
    )
    version.add_frames(table)
    version.delete_frames([f"{i:06d}" for i in range(0, rows, 1000)])
    plan = version.read_plan(["sources"], rows_per_task=20_000)
    assert [t.row_groups for t in plan.tasks] == [(0, 1), (1, 2), (2, 3)]
    assert plan.read().equals(version.get_frames_table(["sources"]))
    with pytest.raises(ValidationError):
        version.read_plan(rows_per_task=0)


class RecordingStore(MemoryStore):
    """A memory store that records the keys it is asked to read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reads: list[str] = []

    def get(self, key: str) -> tuple[bytes, str]:
        self.reads.append(key)
        return super().get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.reads.append(key)
        return super().get_range(key, start, length)


def test_planning_reads_the_manifest_and_the_deltas_ids_never_the_parents_frames() -> None:
    store = RecordingStore("plan-reads")
    client = Client(store)
    v1, v2, v3 = chain(client)
    segment_reads = [k for k in store.reads if "/segments/" in k]
    store.reads.clear()
    v2 = DatasetVersion.get_version(dataset_id=v2.dataset_id, version_id=v2.id, client=Client(store))
    v2.read_plan()  # published and compacted on publish, or with its deltas after disjoint segments
    own = layout.version_prefixes(v2.dataset_id, v1.id)[1]
    assert not [k for k in store.reads if k.startswith(own)]  # the parent's segments: not a byte
    store.reads.clear()
    fresh = Client(store)
    root = DatasetVersion.get_version(dataset_id=v1.dataset_id, version_id=v1.id, client=fresh)
    root.read_plan(EVERY)
    assert not [k for k in store.reads if "/segments/" in k]  # all disjoint: nothing but the manifest
    assert segment_reads  # (building the chain did read segments: the recording works)


def test_plan_arguments_and_tasks_are_checked(versions: list[DatasetVersion]) -> None:
    v3 = versions[2]
    for columns in ("meta", ["nope"], [1]):
        with pytest.raises(ValidationError):
            v3.read_plan(columns)  # type: ignore[arg-type]
    for expression in ("timestamp > 3", pc.field("nope") > 1, pc.field("id") > 3):
        with pytest.raises(ValidationError):
            v3.read_plan(None, expression)
    for bad in ("{", "[]", json.dumps({"kind": "hds_s3.read-task"})):
        with pytest.raises(ValidationError):
            ReadTask.from_json(bad)
        with pytest.raises(ValidationError):
            ReadPlan.from_json(bad)
    task = v3.read_plan().tasks[0].to_dict()
    escaped = dict(task, segment=dict(task["segment"], key="_hds/store.json"))
    with pytest.raises(ValidationError, match="not a segment key"):
        ReadTask.from_dict(escaped)
    with pytest.raises(ValidationError, match="row groups"):
        read_task(ReadTask.from_dict(dict(task, row_groups=[0, 99])))
    with pytest.raises(ValidationError):
        read_task("task")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- DataViews


def view_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The fields a DataView's dict and a plan's row share, in the dict's form."""
    out = []
    for row in table.sort_by("_pick").to_pylist():
        out.append(
            {
                "id": row["id"],
                "meta": json.loads(row["meta"]) if row["meta"] else {},
                "dataset": row["dataset"],
                "rois": [(r["labels"], r["label_num"]) for r in row["rois"]],
                "uris": [s["uri"] for s in row["sources"]],
            }
        )
    return out


def dict_rows(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": d["id"],
            "meta": d["meta"],
            "dataset": d["dataset"],
            "rois": [(r["labels"], r["label_num"]) for r in d["rois"]],
            "uris": [s["uri"] for s in d["sources"]],
        }
        for d in dicts
    ]


def views(client: Client, versions: list[DatasetVersion]) -> list[DataView]:
    v2, v3 = versions[1], versions[2]
    plain = DataView(client=client)
    plain.add_query(dataset_name="chain", version_name="v3", roi_query="car")
    weighted = DataView(iteration_order=IterationOrder.random, client=client)
    weighted.add_query(dataset_name="chain", version_name="v3", roi_query="car", weight=1)
    weighted.add_query(dataset_name="chain", version_name="v2", frame_query='meta.city:"paris"', weight=3)
    weighted.add_mapping_rule(dataset_name="chain", version_name="v3", from_labels=["car"], to_label="auto")
    weighted.set_labels({"auto": 1, "bus": 2, "truck": 3})
    weighted.set_iteration_parameters(random_seed=11, maximum_number_of_frames=500)
    clips = DataView(client=client)
    clips.add_query(dataset_name="chain", version_name="v2")
    clips.set_iteration_parameters(clip_length=3, maximum_number_of_frames=200)
    timed = DataView(iteration_order=IterationOrder.random, client=client)  # clips by time, drawn at random
    timed.add_query(dataset_name="chain", version_name="v3", roi_query="car")
    timed.set_iteration_parameters(random_seed=5, min_sequence=20, jump_time=10)
    assert v2 and v3
    return [plain, weighted, clips, timed]


def test_a_view_plan_is_one_pass_of_the_view_in_its_order(
    client: Client, versions: list[DatasetVersion]
) -> None:
    for view in views(client, versions):
        plan = view.read_plan()
        assert plan.ordered
        got = view_rows(plan.read())
        assert got == dict_rows(view.to_dict())
        assert view_rows(ReadPlan.from_json(plan.to_json()).read()) == got


def test_view_shards_are_the_iterators_shards(client: Client, versions: list[DatasetVersion]) -> None:
    view = views(client, versions)[1]
    everything = view_rows(view.read_plan().read())
    picked = []
    for k in range(3):
        shard = view_rows(view.read_plan(num_workers=3, worker_index=k).read())
        mine = view.get_iterator(num_workers=3, worker_index=k, as_dict=True, epoch=0)
        assert shard == dict_rows(list(mine))
        picked.extend(shard)
    assert sorted(r["id"] for r in picked) == sorted(r["id"] for r in everything)


def test_a_view_plan_draws_the_random_order_of_an_epoch(
    client: Client, versions: list[DatasetVersion]
) -> None:
    view = views(client, versions)[3]
    first = view_rows(view.read_plan().read())
    assert first == dict_rows(view.to_dict()) == dict_rows(list(view.get_iterator(as_dict=True)))
    assert view.epoch == 1  # the iterator advanced it; a plan does not
    second = view_rows(view.read_plan().read())
    assert second == dict_rows(view.to_dict()) == dict_rows(list(view.get_iterator(as_dict=True, epoch=1)))
    assert [r["id"] for r in second] != [r["id"] for r in first]  # another permutation of the clips
    assert sorted(r["id"] for r in second) == sorted(r["id"] for r in first)
    assert view_rows(view.read_plan(epoch=0).read()) == first
    assert view.epoch == 1
    with pytest.raises(ValidationError, match="epoch"):
        view.read_plan(epoch=-1)


def test_view_plan_arguments_are_checked(client: Client, versions: list[DatasetVersion]) -> None:
    view = views(client, versions)[0]
    with pytest.raises(ValidationError):
        view.read_plan(num_workers=2)
    with pytest.raises(ValidationError):
        view.read_plan(["nope"])
    view.set_iteration_parameters(infinite=True)
    with pytest.raises(ValidationError, match="forever"):
        view.read_plan()


# ---------------------------------------------------------------------------- statistics


def test_statistics_counted_per_task_add_up_to_get_stats(versions: list[DatasetVersion]) -> None:
    for version in versions:
        plan = version.read_plan(list(STATS_COLUMNS))
        assert combine_stats(task_stats(t) for t in plan.tasks) == version.get_stats(), version.name
    with pytest.raises(ValidationError):
        task_stats(versions[0].read_plan(["meta"]).tasks[0])
    with pytest.raises(ValidationError):
        combine_stats([{"frames": 1}])


def test_publish_uses_statistics_counted_by_workers_of_the_frames_it_freezes(
    versions: list[DatasetVersion],
) -> None:
    v3 = versions[2]
    plan = v3.read_plan(list(STATS_COLUMNS))
    counted = combine_stats(task_stats(t) for t in plan.tasks)
    marked = dict(counted, rois=counted["rois"] + 1000)  # what the workers said, told apart from a recount
    v3.publish_version(stats=PlanStats(plan.manifest, marked))
    assert v3.reload().get_stats()["rois"] == counted["rois"] + 1000
    child = DatasetVersion.create_version(
        dataset_name="chain", parent_version_names=["v3"], version_name="v4", client=v3.client
    )
    stale = child.read_plan(list(STATS_COLUMNS))
    old = combine_stats(task_stats(t) for t in stale.tasks)
    child.add_frames(job_frames(900, 7))  # frames land after the count: it no longer counts them
    child.publish_version(stats=PlanStats(stale.manifest, old))
    assert child.reload().get_stats()["frames"] == old["frames"] + 7
    with pytest.raises(ValidationError):
        DatasetVersion.get_current(dataset_name="chain", client=v3.client).publish_version(
            stats={"frames": 1}
        )  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- compaction


def test_compaction_as_a_job_of_tasks_keeps_every_frame_and_leaves_disjoint_segments(
    versions: list[DatasetVersion],
) -> None:
    v2 = versions[1]
    before = v2.get_frames_table(EVERY)
    plan = v2.read_plan(EVERY)
    groups = compaction_groups(plan, rows=120)
    assert len(groups) > 1
    written = [
        s for part, group in enumerate(groups) for s in compact_task(group, part=part, segment_rows=50)
    ]
    v2.commit_compaction(written, plan=plan)
    manifest = v2.client.frames.manifest(v2._entry)
    assert manifest is not None and manifest.disjoint == len(manifest.segments) == len(written)
    assert v2.get_frames_table(EVERY).sort_by("id").equals(before.sort_by("id"))
    assert versions[2].reload().get_frames_table().num_rows == versions[2].get_frame_count()
    with pytest.raises(ConflictError):
        v2.commit_compaction(written, plan=plan)  # planned on the manifest it no longer points at
    with pytest.raises(InvalidStateError):
        versions[2].commit_compaction([], plan=versions[2].read_plan(EVERY))
    again = v2.read_plan(EVERY)
    short = compact_task(list(again.tasks)[:1], part=0)
    with pytest.raises(ValidationError, match="rows"):
        v2.commit_compaction(short, plan=again)
    with pytest.raises(ValidationError):
        compact_task(list(v2.read_plan(["meta"]).tasks), part=0)
