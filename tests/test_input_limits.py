"""Hostile metadata: depth and integer size are refused cleanly on every write path, and what is
accepted reads back (the same limit holds for writing and reading)."""

from __future__ import annotations

from typing import Any

import pytest

from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame
from hds_s3.errors import ValidationError
from hds_s3.model.names import MAX_METADATA_DEPTH, MAX_METADATA_INT, MIN_METADATA_INT, check_metadata
from hds_s3.store import MemoryStore


def nested(depth: int) -> dict[str, Any]:
    """A dict nesting ``depth`` levels (the outer dict is level 1), built without recursion."""
    inner: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        inner = {"k": inner}
    return inner


def test_metadata_at_the_depth_limit_is_accepted_and_one_deeper_is_refused() -> None:
    assert check_metadata("m", nested(MAX_METADATA_DEPTH)) == nested(MAX_METADATA_DEPTH)
    with pytest.raises(ValidationError, match=f"nests deeper than {MAX_METADATA_DEPTH} levels"):
        check_metadata("m", nested(MAX_METADATA_DEPTH + 1))
    lists: dict[str, Any] = {"l": []}
    cursor = lists["l"]
    for _ in range(MAX_METADATA_DEPTH):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(ValidationError, match="nests deeper"):
        check_metadata("m", lists)


@pytest.mark.parametrize("depth", [600, 100_000])
def test_very_deep_metadata_is_a_validation_error_everywhere(depth: int) -> None:
    client = Client(MemoryStore())
    deep = nested(depth)
    with pytest.raises(ValidationError, match="nests deeper"):
        Dataset.create(dataset_name="d", metadata=deep, client=client)
    draft = DatasetVersion.create_new_dataset(dataset_name="ok", client=client)
    with pytest.raises(ValidationError, match="nests deeper"):
        draft.set_metadata(deep)
    good = SingleFrame(source="s3://b/good.jpg", id="good")
    bad = SingleFrame(source="s3://b/bad.jpg", id="bad", metadata=deep)
    failed = draft.add_frames(
        [good, bad, {"id": "bad-dict", "sources": [{"id": "default", "uri": "s3://b/x"}], "meta": deep}]
    )
    assert sorted(f.frame.id if isinstance(f.frame, SingleFrame) else f.frame["id"] for f in failed) == [
        "bad",
        "bad-dict",
    ]
    assert all("nests deeper" in f.reason for f in failed)
    assert draft.get_frames_table(columns=["id"]).column("id").to_pylist() == ["good"]


def test_accepted_depth_reads_back_through_every_path() -> None:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="r", client=client)
    deep = nested(MAX_METADATA_DEPTH)
    frames: list[Any] = [
        SingleFrame(source="s3://b/1.jpg", id="obj", metadata=deep),
        {"id": "dict", "sources": [{"id": "default", "uri": "s3://b/2.jpg"}], "meta": deep},
    ]
    assert draft.add_frames(frames) == []
    assert draft.get_single_frame("obj").metadata == deep
    assert {f.id: f.metadata for f in draft.iter_frames()} == {"obj": deep, "dict": deep}


@pytest.mark.parametrize(
    "value", [MAX_METADATA_INT + 1, MIN_METADATA_INT - 1, 10**5000], ids=["u64+1", "i64-1", "5001-digits"]
)
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="must fit in 64 bits"):
        check_metadata("m", {"n": value})
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="i", client=client)
    failed = draft.add_frames(
        [{"id": "big", "sources": [{"id": "default", "uri": "s3://b/1.jpg"}], "meta": {"n": value}}]
    )
    assert len(failed) == 1 and "64 bits" in failed[0].reason


@pytest.mark.parametrize("value", [MAX_METADATA_INT, MIN_METADATA_INT, 2**53 + 1])
def test_integers_within_64_bits_round_trip(value: int) -> None:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="i", client=client)
    assert draft.add_frames([SingleFrame(source="s3://b/1.jpg", id="n", metadata={"n": value})]) == []
    assert draft.get_single_frame("n").metadata == {"n": value}


def _coco(**overrides: object) -> dict[str, Any]:
    data: dict[str, Any] = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
            {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
        "categories": [{"id": 1, "name": "car"}],
    }
    for path, value in overrides.items():
        kind, index, field = path.split("__")
        data[kind][int(index)][field] = value
    return data


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"images__0__width": 2**31}, "width must be a positive integer of at most"),
        ({"annotations__1__category_id": [1]}, "category_id \\[1\\] is not a category"),
        ({"annotations__1__image_id": {"a": 1}}, "image_id \\{'a': 1\\} is not an image"),
    ],
)
def test_a_coco_file_the_frames_cannot_hold_is_refused_whole(
    overrides: dict[str, object], message: str
) -> None:
    from hds_s3.tools.coco import import_coco

    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="c", client=client)
    with pytest.raises(ValidationError, match=message):
        import_coco(draft, _coco(**overrides), "s3://b/")
    assert draft.get_frame_count() == 0 and draft.get_metadata() == {}, "something was imported"
    import_coco(draft, _coco(), "s3://b/")
    assert draft.get_frame_count() == 2
