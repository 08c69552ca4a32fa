"""DatasetVersion.diff and get_frame_history: checked against whole-table comparisons, and what they read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, DatasetVersion, ValidationError
from hds_s3.model.frames import SingleFrame
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore

PROVENANCE = {"saved", "saved_in_version", "updated_in_version"}
LABELS = [["car"], ["bus"], ["car", "person"], []]


class ReadRecorder:
    """Forwards every call to a store and records the keys whose bytes were read."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.read: set[str] = set()

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        self.read.add(key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.read.add(key)
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def frame(fid: str, variant: int) -> SingleFrame:
    f = SingleFrame(source=f"s3://bucket/{fid}.jpg", width=64, height=48, metadata={"v": variant % 3}, id=fid)
    for n, labels in enumerate((LABELS[variant % len(LABELS)], LABELS[(variant // 2) % len(LABELS)])):
        if labels:  # fixed ROI ids: the same variant written again is the same content
            f.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=list(labels), id=f"roi{n}")
    return f


def content(version: DatasetVersion) -> dict[str, dict[str, Any]]:
    rows = version.get_frames_table().to_pylist()
    return {r["id"]: {k: v for k, v in r.items() if k not in PROVENANCE} for r in rows}


def label_counts(rows: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(label for r in rows.values() for roi in r["rois"] for label in roi["labels"])


def brute_diff(a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    ca, cb = content(a), content(b)
    deltas = label_counts(cb)
    deltas.subtract(label_counts(ca))
    return {
        "added": sorted(set(cb) - set(ca)),
        "deleted": sorted(set(ca) - set(cb)),
        "changed": sorted(i for i in set(ca) & set(cb) if ca[i] != cb[i]),
        "label_deltas": {k: v for k, v in deltas.items() if v},
    }


IDS = [f"f{i:02d}" for i in range(10)]
batch = st.one_of(
    st.tuples(
        st.just("add"), st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 7)), min_size=1, max_size=6)
    ),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(IDS), min_size=1, max_size=4)),
)
version_plan = st.tuples(st.integers(0, 10), st.lists(batch, max_size=4))  # (which parent, batches)


def apply(version: DatasetVersion, batches: list[tuple[str, Any]]) -> None:
    for kind, items in batches:
        if kind == "add":
            assert version.add_frames([frame(fid, v) for fid, v in items]) == []
        else:
            version.delete_frames(items)


def build(plans: list[tuple[int, list[tuple[str, Any]]]]) -> list[DatasetVersion]:
    client = Client(MemoryStore())
    root = DatasetVersion.create_new_dataset(dataset_name="d", client=client)
    versions = [root]
    apply(root, plans[0][1])
    for n, (parent, batches) in enumerate(plans[1:], start=1):
        published = [v for v in versions if v.reload().is_published]
        if not published:
            versions[-1].publish_version()
            published = [versions[-1]]
        base = published[parent % len(published)]
        child = DatasetVersion.create_version(
            dataset_name="d", version_name=f"v{n}", parent_version_ids=[base.id], client=client
        )
        apply(child, batches)
        if n < len(plans) - 1 or parent % 2:
            child.publish_version()
        versions.append(child)
    return [v.reload() for v in versions]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(version_plan, min_size=1, max_size=5))
def test_diff_matches_a_comparison_of_the_whole_tables(
    plans: list[tuple[int, list[tuple[str, Any]]]],
) -> None:
    versions = build(plans)
    for a in versions:
        for b in versions:
            result = a.diff(b)
            expected = brute_diff(a, b)
            got = result.to_dict()
            assert {k: got[k] for k in expected} == expected, (a.name, b.name)
            assert result.counts["frames_delta"] == b.get_frame_count() - a.get_frame_count()
            assert result.is_empty == (not (expected["added"] or expected["changed"] or expected["deleted"]))


def brute_history(version: DatasetVersion, fid: str) -> list[tuple[str, str]]:
    chain = [version]
    while chain[-1].get_parent() is not None:
        parent = chain[-1].get_parent()
        assert parent is not None
        chain.append(parent)
    out, state = [], None
    for v in reversed(chain):
        now = content(v).get(fid)
        if now != state:
            out.append((v.name, "added" if state is None else "deleted" if now is None else "changed"))
        state = now
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(version_plan, min_size=1, max_size=5), fid=st.sampled_from(IDS))
def test_frame_history_matches_the_states_of_every_ancestor(
    plans: list[tuple[int, list[tuple[str, Any]]]], fid: str
) -> None:
    for version in build(plans):
        got = [(c.version_name, c.change) for c in version.get_frame_history(fid)]
        assert got == brute_history(version, fid)


def test_history_names_the_versions_and_the_frame_each_holds() -> None:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="h", client=client)
    draft.add_frames([frame("x", 0), frame("y", 0)])
    draft = DatasetVersion.create_snapshot(dataset_name="h", publish_name="v1", client=client)
    draft.add_frames([frame("x", 1)])
    draft = DatasetVersion.create_snapshot(dataset_name="h", publish_name="v2", client=client)
    draft.add_frames([frame("y", 1), frame("x", 1)])  # x written again unchanged: no change
    draft = DatasetVersion.create_snapshot(dataset_name="h", publish_name="v3", client=client)
    draft.delete_frames(["x"])
    history = draft.get_frame_history("x")
    assert [(c.version_name, c.change) for c in history] == [
        ("v1", "added"),
        ("v2", "changed"),
        ("Current", "deleted"),
    ]
    assert history[1].frame is not None and history[1].frame["meta"] == {"v": 1}
    assert history[2].frame is None and history[2].to_dict()["status"] == "draft"
    assert draft.get_frame_history("never-there") == []
    with pytest.raises(ValidationError):
        draft.get_frame_history("")


def test_diff_of_a_parent_and_its_child_reads_only_the_delta_and_the_row_groups_it_touches() -> None:
    store = ReadRecorder(MemoryStore())
    client = Client(store)
    root = DatasetVersion.create_new_dataset(dataset_name="big", client=client)
    for prefix in "abcd":  # four segments with disjoint id ranges
        root.add_frames([frame(f"{prefix}{i:03d}", 0) for i in range(50)])
    root = DatasetVersion.create_snapshot(dataset_name="big", publish_name="v1", client=client)
    v1 = DatasetVersion.get_version(dataset_name="big", version_name="v1", client=client)
    by_prefix = {r.min_id[0]: r.key for r in client.frames.refs(v1._entry) if r.min_id}
    assert sorted(by_prefix) == list("abcd")

    root.add_frames([frame("b010", 5), frame("z001", 0)])
    root.delete_frames(["c020"])
    child = root.reload()
    own = {r.key for r in client.frames.refs(child._entry)} - set(by_prefix.values())

    store.read.clear()
    result = v1.diff(child)
    assert result.to_dict()["added"] == ["z001"]
    assert result.to_dict()["changed"] == ["b010"]
    assert result.to_dict()["deleted"] == ["c020"]
    read_segments = {k for k in store.read if k in own or k in by_prefix.values()}
    assert read_segments == own | {by_prefix["b"], by_prefix["c"]}  # not a, not d
    assert result.segments_read == len(read_segments)

    # only new ids: none of the parent's segments is read
    only_new = DatasetVersion.create_version(
        dataset_name="big", version_name="adds", parent_version_names=["v1"], client=client
    )
    only_new.add_frames([frame("zz", 1)])
    store.read.clear()
    assert v1.diff(only_new).to_dict()["added"] == ["zz"]
    assert not store.read & set(by_prefix.values())
    # the same version: nothing read at all
    store.read.clear()
    assert v1.diff(v1).is_empty and not store.read


def test_diff_refuses_what_is_not_a_version() -> None:
    v = DatasetVersion.create_new_dataset(dataset_name="e", client=Client(MemoryStore("one")))
    with pytest.raises(ValidationError, match="DatasetVersion"):
        v.diff("Current")  # type: ignore[arg-type]
    other = DatasetVersion.create_new_dataset(dataset_name="e", client=Client(MemoryStore("two")))
    with pytest.raises(ValidationError, match="store"):
        v.diff(other)


def test_metadata_in_another_key_order_is_not_a_change_but_a_new_value_is() -> None:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="k", client=client)
    draft.add_frames([SingleFrame(source="s3://b/1.jpg", id="one", metadata={"a": 1, "b": 2})])
    draft.add_frames([SingleFrame(source="s3://b/2.jpg", id="two", metadata={"a": 1})])
    draft = DatasetVersion.create_snapshot(dataset_name="k", publish_name="v1", client=client)
    draft.add_frames([SingleFrame(source="s3://b/1.jpg", id="one", metadata={"b": 2, "a": 1})])
    draft.add_frames([SingleFrame(source="s3://b/2.jpg", id="two", metadata={"a": 2})])
    v1 = DatasetVersion.get_version(dataset_name="k", version_name="v1", client=client)
    assert v1.diff(draft).to_dict()["changed"] == ["two"]
    assert [c.version_name for c in draft.get_frame_history("one")] == ["v1"]
