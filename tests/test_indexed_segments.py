"""Frames added as Arrow (indexed segments: rows as given, their ids indexed) read as frames added as dicts.

An Arrow ingest keeps its rows in the order given and indexes their ids in two more columns of the
same segment; frames added as objects or dicts are sorted by id. Every reader that looks for ids
(look-ups, ``frames_present``, ``update_frames``' and ``delete_frames``' checks, publishing a child,
``diff``, a frame's history) must answer the same for both, on a client that wrote nothing of them.
"""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pytest

from hds_s3 import Client, DatasetVersion
from hds_s3.index import segments
from hds_s3.model.frames import SingleFrame
from hds_s3.store import MemoryStore
from hds_s3.tools.fsck import fsck

N = 3_000  # a few row groups' worth at the row-group size below


def frame(i: int, label: str = "car") -> SingleFrame:
    f = SingleFrame(
        source=f"s3://b/{i}.jpg", width=8, height=8, metadata={"i": i, "odd": i % 2 == 1}, id=f"f{i:05d}"
    )
    f.add_annotation(box2d_xywh=(1, 1, 2, 2), labels=[label])
    return f


def shuffled(n: int) -> list[int]:
    order = list(range(n))
    random.Random(11).shuffle(order)
    return order


def as_arrow(frames: list[SingleFrame]) -> pa.Table:
    return pa.Table.from_pylist([f.to_dict() for f in frames])


def content(version: DatasetVersion) -> dict[str, Any]:
    rows = version.get_frames_table(
        columns=["id", "sources", "rois", "meta", "labels", "meta_num"]
    ).to_pylist()
    return {r["id"]: {**r, "meta_num": sorted(r["meta_num"])} for r in rows}


def plain(frame: dict[str, Any]) -> dict[str, Any]:
    """A frame dict without when and by which version it was stored."""
    return {k: v for k, v in frame.items() if k not in ("saved", "saved_in_version", "updated_in_version")}


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> tuple[MemoryStore, str, str]:
    """One store with dataset ``arrow`` (indexed segments) and ``dicts`` (sorted), the same frames."""
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 512)  # several row groups per segment
    store = MemoryStore()
    client = Client(store)
    frames = [frame(i) for i in shuffled(N)]
    for name, given in (("arrow", as_arrow(frames)), ("dicts", frames)):
        root = DatasetVersion.create_new_dataset(dataset_name=name, client=client)
        assert root.add_frames(given) == []
        root.publish_version()
    refs = client.frames.refs(
        DatasetVersion.get_version("arrow", version_name=root.name, client=client)._entry
    )
    return store, root.name, refs[0].key


def test_an_arrow_ingest_writes_indexed_segments_that_read_as_sorted_ones(
    pair: tuple[MemoryStore, str, str],
) -> None:
    store, name, key = pair
    client = Client(store)  # wrote nothing: every answer comes from the store
    arrow = DatasetVersion.get_version("arrow", version_name=name, client=client)
    dicts = DatasetVersion.get_version("dicts", version_name=name, client=client)
    meta = client.frames._footer(client.frames.refs(arrow._entry)[0])
    assert segments.key_column(meta) != 0 and meta.num_row_groups > 2  # indexed, several row groups
    assert content(arrow) == content(dicts)
    picks = [f"f{i:05d}" for i in random.Random(3).sample(range(N), 25)]
    for fid in picks:
        assert plain(arrow.get_single_frame(fid).to_dict()) == plain(dicts.get_single_frame(fid).to_dict())
    asked = [*picks, "f99999", "e0", "f01000x"]
    assert arrow.frames_present(asked) == dicts.frames_present(asked) == sorted(picks)
    assert fsck(client, deep=True).ok


def test_a_child_of_indexed_segments_by_a_new_writer_commits_and_counts_as_one_of_sorted_ones(
    pair: tuple[MemoryStore, str, str],
) -> None:
    store, name, _ = pair
    stats = {}
    children = {}
    updated = [frame(i, "cat") for i in range(0, N, 7)]  # the same frames (their ROI ids too) for both
    for dataset in ("arrow", "dicts"):
        client = Client(store)
        child = DatasetVersion.create_version(
            dataset_name=dataset, parent_version_names=[name], version_name="child", client=client
        )
        given: Any = as_arrow(updated) if dataset == "arrow" else updated
        assert child.update_frames(given) == []
        missing = child.update_frames([frame(N + 5)])  # not in the parent: refused, named
        assert [f.frame.id for f in missing] == [f"f{N + 5:05d}"]
        child.delete_frames([f"f{i:05d}" for i in range(3, N, 11)])
        child.publish_version()
        stats[dataset] = child.get_stats()
        children[dataset] = child
    assert stats["arrow"] == stats["dicts"]
    assert content(children["arrow"]) == content(children["dicts"])
    parent = DatasetVersion.get_version("arrow", version_name=name, client=Client(store))
    diff = parent.diff(children["arrow"])
    assert (
        diff.counts
        == DatasetVersion.get_version("dicts", version_name=name, client=Client(store))
        .diff(children["dicts"])
        .counts
    )
    history = children["arrow"].get_frame_history("f00007")
    assert [h.change for h in history] == ["added", "changed"]
    assert history[-1].frame is not None and history[-1].frame["rois"][0]["labels"] == ["cat"]
