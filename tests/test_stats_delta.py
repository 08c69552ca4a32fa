"""A child's statistics are its parent's plus what the child changed, equal to counting it whole.

Counting them that way reads the child's own segments and only the parent's row groups that hold an
id the child touched (their ids, often kept from ``update_frames``' check, then the counted columns);
a delta of more than half the parent's rows is counted whole instead.
"""

from __future__ import annotations

from typing import Any

from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, DatasetVersion, SingleFrame
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore

LABELS = ["car", "bus", "person"]


def frame(i: int, labels: list[str], video: bool = False) -> SingleFrame:
    source = f"s3://b/{i}.{'mp4' if video else 'jpg'}"
    f = SingleFrame(source=source, width=4, height=4, id=f"f{i:04d}")
    for label in labels:
        f.add_annotation(box2d_xywh=(1, 1, 2, 2), labels=[label])
    return f


class Bytes:
    """Counts the segment bytes read."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.url, self.read = inner, inner.url, 0

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get(key)
        self.read += len(data) if key.endswith(".parquet") else 0
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self.read += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "update", "delete"]),
            st.lists(st.integers(0, 299), min_size=1, max_size=6),
            st.lists(st.sampled_from(LABELS), max_size=3),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_childs_statistics_counted_from_its_delta_equal_counting_it_whole(ops: list[Any]) -> None:
    c = Client(MemoryStore())
    root = DatasetVersion.create_new_dataset("s", client=c)
    root.add_frames(
        [frame(i, [LABELS[i % 3]] * (i % 4), video=i % 7 == 0) for i in range(200)], segment_rows=50
    )
    root.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="s", version_name="c", parent_version_ids=root.id, client=c
    )
    for op, ids, labels in ops:
        if op == "add":
            child.add_frames([frame(i, labels) for i in ids])
        elif op == "update":
            child.update_frames([frame(i, labels) for i in ids if i < 200])
        else:
            child.delete_frames([f"f{i:04d}" for i in ids])
    whole = c.frames.stats(child._entry)
    assert child.get_stats() == whole  # a draft's statistics, counted from the delta when it is small
    child.publish_version()
    assert child.stored_stats == whole


def test_a_small_child_reads_a_small_share_of_its_parent() -> None:
    """One frame relabelled in a child of 34,000 frames (three row groups): one row group is read."""
    inner = MemoryStore()
    c = Client(inner)
    root = DatasetVersion.create_new_dataset("s", client=c)
    box = {"type": "box2d", "poly": [0, 0, 1, 0, 1, 1, 0, 1]}
    root.add_frames(
        [
            {"id": f"f{i:05d}", "uri": f"s3://b/{i}.jpg", "rois": [{"labels": ["car"], **box}]}
            for i in range(34_000)
        ]
    )
    root.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="s", version_name="c", parent_version_ids=root.id, client=c
    )
    child.update_frames([{"id": "f00005", "uri": "s3://b/5.jpg", "rois": [{"labels": ["bus"], **box}]}])
    counting = Bytes(inner)
    reader = DatasetVersion.get_version("s", version_name="c", client=Client(counting))  # type: ignore[arg-type]
    counting.read = 0
    stats = reader.get_stats()
    delta = counting.read
    counting.read = 0
    assert reader._frames.stats(reader._entry) == stats
    whole = counting.read
    assert stats["labels"] == [{"name": "car", "count": 33_999}, {"name": "bus", "count": 1}]
    assert delta * 2 < whole, (delta, whole)
