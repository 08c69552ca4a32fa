"""DataViews: rule semantics, mapping and enumeration, the version pool, iteration (order, seed,
weights, clips, limits, sharding, resume), projection, and storing, loading and publishing."""

from __future__ import annotations

import gc
import math
import pickle
import sys
import types
import uuid
import weakref
from collections import Counter
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest

import hds_s3
from hds_s3 import Client, DatasetVersion, InvalidStateError, NotFoundError, SingleFrame, ValidationError
from hds_s3.errors import ConflictError, StorageError
from hds_s3.query.dataview import DataView, DataViewNotFoundError, IterationOrder, RoiQuery, detect_shards
from hds_s3.store import ReadOnlyStore


@pytest.fixture
def client() -> Client:
    return hds_s3.connect(f"memory://dataview-{uuid.uuid4().hex}")


def make_frame(
    fid: str, ctx: str, ts: int, *rois: tuple[str, ...], city: str = "bremen", conf: float = 0.5
) -> SingleFrame:
    f = SingleFrame(
        source=f"s3://bucket/{fid}.jpg",
        width=64,
        height=48,
        metadata={"city": city},
        id=fid,
        context_id=ctx,
        timestamp=ts,
    )
    for labels in rois:
        f.add_annotation(box2d_xywh=(1, 1, 4, 4), labels=list(labels), confidence=conf)
    return f


@pytest.fixture
def zoo(client: Client) -> DatasetVersion:
    """Dataset "zoo", version "Current": frames whose id says what they hold."""
    ver = DatasetVersion.create_new_dataset(dataset_name="zoo", client=client)
    ver.add_frames(
        [
            make_frame("cat-bremen", "v1", 3, ("cat",)),
            make_frame("cat-hamburg", "v1", 1, ("cat",), city="hamburg"),
            make_frame("dog", "v2", 0, ("dog",)),
            make_frame("cat+dog", "v2", 2, ("cat",), ("dog",)),
            make_frame("cat-small", "v0", 9, ("cat", "small")),
            make_frame("cat,small", "v0", 8, ("cat",), ("small",)),
            make_frame("cat-cat", "v3", 5, ("cat",), ("cat",), conf=0.95),
            make_frame("empty", "v3", 4),
        ]
    )
    return ver


def view(client: Client, **kw: Any) -> DataView:
    return DataView(client=client, **kw)


def ids_of(dv: DataView) -> list[str]:
    return [d["id"] for d in dv.to_dict(projection="id")]


def count_ids(dv: DataView) -> set[str]:
    return set(ids_of(dv))


# ---------------------------------------------------------------------------- rules


def test_rules_are_ored_and_conditions_within_a_rule_anded(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="cat", frame_query="meta.city:bremen")
    assert count_ids(dv) == {"cat-bremen", "cat+dog", "cat-small", "cat,small", "cat-cat"}
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="dog")
    assert count_ids(dv) == {"cat-bremen", "cat+dog", "cat-small", "cat,small", "cat-cat", "dog"}
    assert dv.get_count() == 6
    assert dv.get_count(per_rule=True) == {
        "total": 6,
        "rules": [{"rule_index": 0, "count": 5}, {"rule_index": 1, "count": 2}],
    }
    assert len(dv) == 6


def test_roi_queries_label_lists_lucene_and_multi_queries(client: Client, zoo: DatasetVersion) -> None:
    def run(**kw: Any) -> set[str]:
        dv = view(client)
        if "roi_queries" in kw:
            dv.add_multi_query(dataset_name="zoo", version_name="Current", **kw)
        else:
            dv.add_query(dataset_name="zoo", version_name="Current", **kw)
        return count_ids(dv)

    assert run(roi_query=["cat", "small"]) == {"cat-small"}  # all labels on the same ROI
    assert run(roi_query="cat AND small") == {"cat-small"}
    assert run(roi_query='label.keyword:"cat" AND NOT label.keyword:"small"') == {
        "cat-bremen",
        "cat-hamburg",
        "cat+dog",
        "cat,small",
        "cat-cat",
    }
    assert run(roi_queries=[RoiQuery("cat"), RoiQuery("small")]) == {"cat-small", "cat,small"}
    assert run(roi_queries=[DataView.RoiQuery("cat"), DataView.RoiQuery("dog", must_not=True)]) == {
        "cat-bremen",
        "cat-hamburg",
        "cat-small",
        "cat,small",
        "cat-cat",
    }
    assert run(roi_queries=[RoiQuery("cat", count_range=(2, None))]) == {"cat-cat"}
    assert run(roi_queries=[RoiQuery("cat", conf_range=(0.9, 1))]) == {"cat-cat"}
    assert run(roi_queries=[RoiQuery("*", must_not=True)]) == {"empty"}
    assert run(roi_query="*") == run() == set(run(filter_by_roi="disabled"))
    assert len(run()) == 8
    assert run(filter_by_roi="no_rois") == {"empty"}
    assert run(source_query="uri:*dog*") == {"dog", "cat+dog"}


def test_bad_input_raises_and_changes_nothing(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="cat")
    before = dv.get_queries()
    with pytest.raises(ValidationError) as info:
        dv.add_query(dataset_name="zoo", version_name="Current", frame_query="meta.city:bremen AND")
    assert "frame_query 'meta.city:bremen AND'" in str(info.value) and "^" in str(info.value)
    with pytest.raises(ValidationError, match="weight"):
        dv.add_query(dataset_name="zoo", version_name="Current", weight=0)
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        dv.add_query(dataset_name="nope", roi_query="cat")
    with pytest.raises(NotFoundError, match="no version named 'v9'"):
        dv.add_query(dataset_name="zoo", version_name="v9")
    with pytest.raises(ValidationError, match="needs its dataset"):
        dv.add_query(version_name="Current")
    with pytest.raises(ValidationError, match="not both"):
        dv.add_query(dataset_name="zoo", dataset_id=zoo.dataset_id)
    with pytest.raises(ValidationError, match="DataViewQuery"):
        dv.add_query("zoo")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="RoiQuery"):
        dv.add_multi_query(dataset_name="zoo", roi_queries=["cat"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="count_range"):
        dv.add_multi_query(dataset_name="zoo", roi_queries=[RoiQuery("cat", count_range=(3, 1))])
    with pytest.raises(ValidationError, match="set_labels"):
        dv.set_labels({"cat": True})
    with pytest.raises(ValidationError, match="maximum_number_of_frames"):
        dv.set_iteration_parameters(order="random", maximum_number_of_frames=0)
    assert dv.get_queries() == before
    assert dv.get_iteration_parameters()["order"] == "sequential"
    assert dv.get_labels() == {}


def test_a_dataset_without_a_version_means_its_current_version_and_queries_can_be_copied(
    client: Client, zoo: DatasetVersion
) -> None:
    dv = view(client)
    rule = dv.add_query(dataset_name="zoo", roi_query="dog")
    assert (rule.dataset_id, rule.version_id, rule.version_name) == (zoo.dataset_id, zoo.id, "Current")
    other = view(client)
    other.add_query(rule)
    other.set_queries(dv.get_queries() + [rule])
    assert count_ids(other) == {"dog", "cat+dog"}


def test_the_wildcard_pool(client: Client, zoo: DatasetVersion) -> None:
    zoo.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="zoo", version_name="child", parent_version_names="Current", client=client
    )
    child.add_frames([make_frame("cat-child", "v9", 0, ("cat",))])
    farm = DatasetVersion.create_new_dataset(dataset_name="farm", client=client)
    farm.add_frames([make_frame("cat-farm", "f", 0, ("cat",)), make_frame("cow", "f", 1, ("cow",))])

    only_wild = view(client)
    only_wild.add_query(dataset_name="*", version_name="*", roi_query="cat")
    with pytest.raises(ValidationError, match="no concrete"):
        only_wild.get_count()
    with pytest.raises(ValidationError, match="no concrete"):
        only_wild.store()

    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="child", roi_query="dog")
    dv.add_query(dataset_name="farm", version_name="Current", roi_query="cow")
    dv.add_query(dataset_name="*", version_name="*", roi_query="cat", frame_query="meta.city:hamburg")
    assert count_ids(dv) == {"dog", "cat+dog", "cow", "cat-hamburg"}
    dv.add_query(dataset_name="farm", version_name="*", roi_query="cat")  # the pool's farm pairs only
    assert count_ids(dv) == {"dog", "cat+dog", "cow", "cat-hamburg", "cat-farm"}
    frames = {d["id"]: d["dataset"] for d in dv.to_dict(projection=["id", "dataset"])}
    assert frames["cow"] == {
        "id": farm.dataset_id,
        "name": "farm",
        "version": farm.id,
        "version_name": "Current",
    }
    assert frames["dog"]["version_name"] == "child"


def test_mapping_then_enumeration(client: Client, zoo: DatasetVersion) -> None:
    farm = DatasetVersion.create_new_dataset(dataset_name="farm", client=client)
    farm.add_frames([make_frame("farm-cat", "f", 0, ("cat", "small"))])
    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query=["cat", "small"])
    dv.add_query(dataset_name="farm", roi_query="cat")
    dv.add_mapping_rule(["cat", "small"], "kitten", dataset_name="farm")  # scoped to farm
    dv.add_mapping_rule("small", "tiny")
    dv.add_mapping_rule("cat", "feline")
    dv.set_labels({"kitten": 3, "feline": 1})
    frames = {d["id"]: d["rois"] for d in dv.to_dict(projection=["id", "rois.labels", "rois.label_num"])}
    assert frames["farm-cat"] == [{"labels": ["kitten"], "label_num": 3}]
    # zoo: the farm rule does not apply; the first applicable rule wins ("small" -> "tiny")
    assert frames["cat-small"] == [{"labels": ["cat", "tiny"], "label_num": -1}]
    assert [r.to_label for r in dv.get_mapping_rules()] == ["kitten", "tiny", "feline"]
    assert dv.get_labels() == {"kitten": 3, "feline": 1}
    frame = next(f for f in dv.to_list() if f.id == "farm-cat")
    assert isinstance(frame, SingleFrame)
    assert [(a.labels, getattr(a, "label_num")) for a in frame.annotations] == [(["kitten"], 3)]  # noqa: B009
    with pytest.raises(ValidationError, match="from_labels"):
        dv.add_mapping_rule([], "x")
    assert len(dv.get_mapping_rules()) == 3


def test_frame_groups_come_back_with_mapped_labels_and_label_numbers(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="groups", client=client)
    group = hds_s3.FrameGroup(id="g")
    group["front"] = SingleFrame(source="s3://b/front.jpg", width=10, height=10)
    group["rear"] = SingleFrame(source="s3://b/rear.jpg", width=10, height=10)
    group["rear"].add_annotation(box2d_xywh=(1, 1, 2, 2), labels=["dog"])
    group.add_global_annotation(labels=["crossing"])
    group["front"].add_annotation(box2d_xywh=(1, 1, 2, 2), labels=["cat"])
    ver.add_frames([group])
    dv = view(client)
    dv.add_query(dataset_name="groups", roi_query="dog")
    dv.add_mapping_rule("cat", "feline")
    dv.set_labels({"feline": 0, "dog": 1})
    (frame,) = dv.to_list()
    assert isinstance(frame, hds_s3.FrameGroup)
    numbered = {a.labels[0]: getattr(a, "label_num") for a in frame.get_all_annotations()}  # noqa: B009
    assert numbered == {"feline": 0, "dog": 1, "crossing": -1}


def test_projection_keeps_dot_paths(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="dog", frame_query="id:dog")
    full = dv.to_dict()[0]
    assert set(full) == {
        "id",
        "context_id",
        "timestamp",
        "sources",
        "rois",
        "meta",
        "meta_blob",
        "saved",
        "saved_in_version",
        "updated_in_version",
        "dataset",
    }
    assert full["meta"] == {"city": "bremen"} and full["rois"][0]["label_num"] == -1
    assert dv.to_dict(["id", "dataset.id"]) == [{"id": "dog", "dataset": {"id": zoo.dataset_id}}]
    assert dv.to_dict(["sources.uri", "sources.width"]) == [
        {"sources": [{"uri": "s3://bucket/dog.jpg", "width": 64}]}
    ]
    assert dv.to_dict(["sources.0.uri"]) == [{"sources": [{"uri": "s3://bucket/dog.jpg"}]}]
    assert dv.to_dict(["sources", "sources.uri"])[0]["sources"] == full["sources"]
    assert dv.to_dict("*") == [full]
    with pytest.raises(ValidationError, match="names no frame field"):
        dv.to_dict(["labels"])
    with pytest.raises(ValidationError, match="dot paths"):
        dv.to_dict(["id."])


# ---------------------------------------------------------------------------- iteration


@pytest.fixture
def videos(client: Client) -> DatasetVersion:
    """Dataset "videos": 3 contexts (clips) of cat and dog frames, shuffled on ingest."""
    ver = DatasetVersion.create_new_dataset(dataset_name="videos", client=client)
    frames = []
    for c, n in (("b", 7), ("a", 5), ("c", 9)):
        for t in range(n):
            label = "cat" if c != "c" else "dog"
            frames.append(make_frame(f"{c}{t:02d}", f"ctx-{c}", 100 - t * 10, (label,)))
    frames.reverse()
    ver.add_frames(frames[:10])
    ver.add_frames(frames[10:])
    return ver


def videos_view(client: Client, **kw: Any) -> DataView:
    dv = view(client, **kw)
    dv.add_query(dataset_name="videos", version_name="Current", roi_query="cat")
    dv.add_query(dataset_name="videos", version_name="Current", roi_query="dog")
    return dv


def test_sequential_order_is_context_timestamp_id_and_each_frame_comes_once(
    client: Client, videos: DatasetVersion
) -> None:
    dv = videos_view(client)
    got = [
        (d["context_id"], d["timestamp"], d["id"]) for d in dv.get_iterator(["id", "context_id", "timestamp"])
    ]
    assert got == sorted(got) and len(got) == 21 == len(set(got))
    assert [f.id for f in dv.to_list()] == [g[2] for g in got]
    assert [f.id for f in dv] == [g[2] for g in got]


def test_random_order_is_reproducible_and_depends_on_the_seed(client: Client, videos: DatasetVersion) -> None:
    dv = videos_view(client, iteration_order="random", iteration_random_seed=7)
    first = ids_of(dv)
    assert ids_of(dv) == first
    again = videos_view(client, iteration_order=IterationOrder.random, iteration_random_seed=7)
    assert ids_of(again) == first
    dv.set_iteration_parameters(random_seed=8)
    assert ids_of(dv) != first
    assert len(first) == 21
    single = view(client, iteration_order="random", iteration_random_seed=3)
    single.add_query(dataset_name="videos", version_name="Current")
    shuffled = ids_of(single)
    assert sorted(shuffled) == sorted(ids_of(videos_view(client))) and shuffled != sorted(shuffled)
    assert videos_view(client, iteration_order="random").get_iteration_parameters()["random_seed"] is None
    assert ids_of(videos_view(client, iteration_order="random")) == ids_of(
        videos_view(client, iteration_order="random", iteration_random_seed=1337)
    )


def test_weights_are_each_rules_share_of_the_output(client: Client, videos: DatasetVersion) -> None:
    dv = view(client, iteration_order="random", iteration_infinite=True, iteration_random_seed=11)
    dv.add_query(dataset_name="videos", version_name="Current", roi_query="cat", weight=1)  # 12 frames
    dv.add_query(dataset_name="videos", version_name="Current", roi_query="dog", weight=3)  # 9 frames
    dv.set_iteration_parameters(maximum_number_of_frames=8000)
    labels = Counter(d["rois"][0]["labels"][0] for d in dv.get_iterator(["rois.labels"]))
    assert sum(labels.values()) == 8000
    assert labels["dog"] / 8000 == pytest.approx(0.75, abs=0.02)
    dv.set_iteration_parameters(infinite=False, maximum_number_of_frames=5)
    assert len(dv.to_dict("id")) == 5 == len(dv)


def test_infinite_sequential_restarts_and_the_limit_cuts(client: Client, videos: DatasetVersion) -> None:
    dv = videos_view(client, iteration_infinite=True)
    with pytest.raises(ValidationError, match="forever"):
        dv.to_list()
    one_pass = ids_of(videos_view(client))
    dv.set_iteration_parameters(maximum_number_of_frames=50)
    assert ids_of(dv) == (one_pass * 3)[:50]
    endless = videos_view(client, iteration_infinite=True).get_iterator("id")
    assert [next(endless)["id"] for _ in range(45)] == (one_pass * 3)[:45]
    dv.set_iteration_parameters(infinite=False)
    assert ids_of(dv) == one_pass
    dv.set_iteration_parameters(maximum_number_of_frames=4)
    assert ids_of(dv) == one_pass[:4]
    dv.clear_iteration_limit()
    assert len(dv) == 21


@pytest.mark.parametrize("order", ["sequential", "random"])
def test_clips_are_consecutive_frames_of_one_context(
    client: Client, videos: DatasetVersion, order: str
) -> None:
    dv = videos_view(client, iteration_order=order, iteration_random_seed=2, clip_length=3)
    dv.set_iteration_parameters(infinite=True, maximum_number_of_frames=300)
    one_pass = [(d["context_id"], d["id"]) for d in videos_view(client).to_dict(["id", "context_id"])]
    # contexts of 5, 7 and 9 frames (in sequence order) cut into clips of 3: the last may be shorter
    clips: dict[str, list[str]] = {}
    for ctx in ("ctx-a", "ctx-b", "ctx-c"):
        frames = [fid for c, fid in one_pass if c == ctx]
        for i in range(0, len(frames), 3):
            clips[frames[i]] = frames[i : i + 3]
    got = [d["id"] for d in dv.to_dict("id")]
    assert len(got) == 300
    i, seen = 0, []
    while i < len(got):  # every pick is one whole clip (the limit may cut the last one)
        clip = clips[got[i]]
        assert got[i : i + len(clip)] == clip[: len(got) - i]
        seen.append(got[i])
        i += len(clip)
    assert set(seen) == set(clips)
    if order == "random":
        assert seen[: len(clips)] != list(clips)


def shard_ids(dv: DataView, shards: int, **kw: Any) -> list[list[str]]:
    return [
        [d["id"] for d in dv.get_iterator("id", num_workers=shards, worker_index=k, **{"epoch": 0, **kw})]
        for k in range(shards)
    ]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"iteration_order": "random", "iteration_random_seed": 4},
        {"iteration_order": "random", "iteration_infinite": True, "iteration_limit": 100},
        {"iteration_order": "random", "clip_length": 2},
        {"clip_length": 3},
        {"iteration_infinite": True, "iteration_limit": 50},
    ],
)
def test_shards_are_disjoint_and_their_union_is_the_whole(
    client: Client, videos: DatasetVersion, params: dict[str, Any]
) -> None:
    dv = videos_view(client, **params)
    # the shards of one epoch (each would be another process, iterating epoch 0 first)
    whole = [d["id"] for d in dv.get_iterator("id", num_workers=1, worker_index=0, epoch=0)]
    for count in (2, 3):
        parts = shard_ids(dv, count)
        assert sorted(sum(parts, [])) == sorted(whole)
        # positions: shard k holds exactly the picks k, k + n, ...: together they interleave back to whole
        assert Counter(sum(parts, [])) == Counter(whole)
        assert all(parts)
        if "clip_length" not in params:  # one frame per pick: shard k holds picks k, k + n, ...
            assert parts == [whole[k::count] for k in range(count)]
    if not params.get("iteration_infinite"):
        assert len(whole) == 21


def test_shards_detected_from_the_environment_and_torch_worker_info(
    client: Client, videos: DatasetVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    dv = videos_view(client)
    expected = shard_ids(dv, 4)
    assert detect_shards() == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    fake = types.ModuleType("torch.utils.data")
    info: dict[str, Any] = {"value": None}
    fake.get_worker_info = lambda: info["value"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.data", fake)
    got: list[list[str]] = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        for worker in range(2):
            info["value"] = types.SimpleNamespace(num_workers=2, id=worker)
            assert detect_shards() == (4, rank * 2 + worker)
            got.append([d["id"] for d in dv.get_iterator("id")])
    assert got == expected
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValidationError, match="RANK"):
        dv.get_iterator()
    with pytest.raises(ValidationError, match="both"):
        dv.get_iterator(num_workers=2)
    with pytest.raises(ValidationError, match="worker_index"):
        dv.get_iterator(num_workers=2, worker_index=-1)
    assert [d["id"] for d in dv.get_iterator("id", num_workers=4, worker_index=5)] == expected[1]


@pytest.mark.parametrize(
    "params",
    [{}, {"iteration_order": "random", "iteration_infinite": True, "iteration_limit": 60, "clip_length": 2}],
)
def test_resuming_at_n_yields_exactly_the_tail(
    client: Client, videos: DatasetVersion, params: dict[str, Any]
) -> None:
    dv = videos_view(client, **params)
    whole = [d["id"] for d in dv.get_iterator("id", epoch=0)]
    it = dv.get_iterator("id", epoch=0)
    head = [next(it)["id"] for _ in range(13)]
    assert head == whole[:13]
    assert dv.get_current_iteration() == 13 == it.position
    resumed = videos_view(client, **params)
    resumed.set_initial_iteration(dv.get_current_iteration())
    assert [d["id"] for d in resumed.get_iterator("id", epoch=0)] == whole[13:]
    assert resumed.get_current_iteration() == len(whole)
    # sharded and resumed: the union of the shards is the tail
    parts = [
        [d["id"] for d in resumed.get_iterator("id", num_workers=2, worker_index=k, epoch=0)] for k in (0, 1)
    ]
    assert Counter(parts[0] + parts[1]) == Counter(whole[13:])
    assert resumed.to_dict("id")[0]["id"] == whole[0]  # to_dict is always a whole pass
    with pytest.raises(ValidationError, match="initial iteration"):
        resumed.set_initial_iteration(-1)


def test_a_draft_version_changing_under_the_view_is_seen(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="dog")
    assert dv.get_count() == 2
    zoo.add_frames([make_frame("dog-2", "v2", 7, ("dog",))])
    zoo.delete_frames(["dog"])
    assert count_ids(dv) == {"cat+dog", "dog-2"}
    zoo_ds = hds_s3.Dataset.get("zoo", client=client)
    zoo_ds.delete_version(version_name="Current")
    with pytest.raises(NotFoundError, match="was deleted"):
        dv.get_count()


# ---------------------------------------------------------------------------- storing


def test_store_get_and_publish(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client, name="cats", description="all cats", iteration_order="random", iteration_random_seed=5)
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="cat", weight=2)
    dv.add_mapping_rule("cat", "feline")
    dv.set_labels({"feline": 1})
    dv.set_iteration_parameters(maximum_number_of_frames=4, clip_length=2)
    assert dv.id is None and dv.status == "draft"
    dvid = dv.store()
    loaded = DataView.get(dataview_id=dvid, client=client)
    assert loaded.name == "cats" and loaded.description == "all cats" and loaded.status == "draft"
    assert loaded.get_queries() == dv.get_queries()
    assert loaded.get_mapping_rules() == dv.get_mapping_rules()
    assert loaded.get_labels() == {"feline": 1}
    assert loaded.get_iteration_parameters() == dv.get_iteration_parameters()
    assert ids_of(loaded) == ids_of(dv)
    loaded.add_query(dataset_name="zoo", version_name="Current", roi_query="dog")
    assert loaded.store() == dvid
    assert len(DataView.get(dataview_name="cats", client=client).get_queries()) == 2
    with pytest.raises(ConflictError, match="changed by someone else"):
        dv.store()  # its etag is stale
    stale = DataView.get(dataview_id=dvid, client=client)  # loaded before the publish
    loaded.publish()
    assert loaded.status == "published"
    for mutate in (
        lambda v: v.add_query(dataset_name="zoo", roi_query="cat"),
        lambda v: v.add_multi_query(dataset_name="zoo", roi_queries=[RoiQuery("cat")]),
        lambda v: v.add_mapping_rule("a", "b"),
        lambda v: v.set_labels({}),
        lambda v: v.set_iteration_parameters(order="sequential"),
        lambda v: v.set_queries([]),
        lambda v: setattr(v, "name", "x"),
    ):
        with pytest.raises(InvalidStateError, match="published"):
            mutate(loaded)
    again = DataView.get(dataview_name="cats", client=client)
    assert again.status == "published" and len(again.get_queries()) == 2
    with pytest.raises(InvalidStateError, match="published"):
        again.add_query(dataset_name="zoo", roi_query="cat")
    with pytest.raises(InvalidStateError, match="published already"):
        again.publish()
    with pytest.raises(InvalidStateError, match="published meanwhile"):
        stale.publish()
    with pytest.raises(InvalidStateError, match="published meanwhile"):
        stale.store()
    assert DataView.get(dataview_id=dvid, client=client).status == "published"
    again.set_initial_iteration(2)  # iteration state is not part of the definition
    assert len(list(again.get_iterator("id"))) == 2


def test_get_by_name_picks_the_most_recent_and_warns(client: Client, zoo: DatasetVersion) -> None:
    first = view(client, name="same")
    first.add_query(dataset_name="zoo", version_name="Current", roi_query="cat")
    first.store()
    second = view(client, name="same")
    second.add_query(dataset_name="zoo", version_name="Current", roi_query="dog")
    second.store()
    with pytest.warns(UserWarning, match="2 DataViews are named 'same'"):
        got = DataView.get(dataview_name="same", client=client)
    assert got.id == second.id
    second.name = "renamed"
    second.store()
    assert DataView.get(dataview_name="same", client=client).id == first.id  # no warning: one left
    assert DataView.get(dataview_name="renamed", client=client).id == second.id


def test_not_found_and_bad_selectors(client: Client) -> None:
    with pytest.raises(DataViewNotFoundError) as info:
        DataView.get(dataview_name="missing", client=client)
    assert isinstance(info.value, NotFoundError)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError):
        DataView.get(dataview_id=uuid.uuid4().hex, client=client)
    with pytest.raises(ValidationError, match="exactly one"):
        DataView.get(client=client)
    with pytest.raises(ValidationError, match="not an hds_s3 id"):
        DataView.get(dataview_id="../x", client=client)
    with pytest.raises(ValidationError, match="no queries"):
        view(client).get_count()


def test_reading_a_view_never_writes(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client, name="ro", iteration_order="random")
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="cat")
    dv.store()
    expected = ids_of(dv)
    reader = Client(ReadOnlyStore(client.store))
    loaded = DataView.get(dataview_name="ro", client=reader)
    assert ids_of(loaded) == expected
    assert loaded.get_count() == len(expected)
    assert len(loaded.to_list()) == len(expected)
    fresh = DataView(client=reader)
    fresh.add_query(dataset_name="zoo", roi_query="cat")
    assert fresh.get_count() == len(expected)
    with pytest.raises(StorageError):
        fresh.store()
    assert fresh.id is None


def test_a_view_survives_pickling(client: Client, zoo: DatasetVersion) -> None:
    dv = view(client, name="p")
    dv.add_query(dataset_name="zoo", version_name="Current", roi_query="dog")
    assert ids_of(dv) == ids_of(pickle.loads(pickle.dumps(dv)))


def test_the_random_streams_are_pinned() -> None:
    """Random order depends only on PCG64 seeded through SeedSequence: the same on every machine."""
    from hds_s3.query.dataview import _permutation, _rng

    assert _permutation(_rng(7, 1, 0), 10).tolist() == [1, 3, 2, 7, 8, 4, 5, 9, 0, 6]
    assert _rng(7, 0).random(3).tolist() == pytest.approx([0.625095466605, 0.89721380097, 0.775685690245])


def test_sequential_blocks_without_clips_are_ranges_whose_picks_go_on_across_passes() -> None:
    from hds_s3.query import dataview as dataview_module

    block = dataview_module._BLOCK_PICKS
    for size in (1, block - 1, block, 2 * block + 5):
        matched = cast(Any, types.SimpleNamespace(size=size))
        plain = dataview_module._Plan(
            order=IterationOrder.sequential, infinite=True, limit=None, seed=1, clip_length=1, weights=(1.0,)
        )
        blocks = plain.blocks(matched)
        got = [next(blocks) for _ in range(3 * math.ceil(size / block))]  # three passes
        frames = np.concatenate([f for f, _ in got])
        picks = np.concatenate([p for _, p in got])
        assert frames.tolist() == list(range(size)) * 3
        assert picks.tolist() == list(range(3 * size))


def test_a_pass_keeps_no_column_read_only_to_sort_by(client: Client, videos: DatasetVersion) -> None:
    dv = videos_view(client)
    first = ids_of(dv)
    (columns, table, _), *_ = dv._tables.values()
    assert "context_id" not in columns and "timestamp" not in table.column_names and "id" in columns
    assert ids_of(dv) == first  # read again to sort the next pass
    sorted_by = view(client)
    sorted_by.add_query(dataset_name="videos", version_name="Current", frame_query="context_id:ctx-a")
    assert len(ids_of(sorted_by)) == 5
    (columns, _, _), *_ = sorted_by._tables.values()
    assert "context_id" in columns  # the query needs it: kept


def test_a_prepared_frame_table_is_freed_with_its_last_reference() -> None:
    from hds_s3.query import lucene

    frames = lucene.Frames(pa.table({"id": ["a", "b"]}))
    assert frames.rows.values("id").to_pylist() == ["a", "b"]
    gone = weakref.ref(frames)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del frames
        assert gone() is None  # no reference cycle: not left for the garbage collector
    finally:
        if enabled:
            gc.enable()
