"""Which frames a version holds is answered from the row groups that can hold them, not every id.

``update_frames`` (frames and Arrow), ``frames_present`` and ``hds frames delete``'s count look the
given ids up with the segments' id ranges and their row groups' id statistics, so the cost follows
the ids asked about, not the version's size. Bytes are counted at the store.
"""

from __future__ import annotations

import hashlib
import random
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hds_s3 import Client, DatasetVersion, ValidationError
from hds_s3.index import segments
from hds_s3.store import MemoryStore

GROUP_ROWS = 100


def _fid(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # spread over the whole id space


def _frame(i: int, label: str = "cat") -> dict[str, object]:
    return {
        "id": _fid(i),
        "sources": [{"id": "default", "uri": f"s3://b/{i}.jpg", "width": 4, "height": 4}],
        "rois": [{"labels": [label], "poly": [0, 0, 1, 0, 1, 1]}],
    }


class Reads(MemoryStore):
    """A memory store that adds up the bytes read of each key."""

    def __init__(self) -> None:
        super().__init__("update-reads")
        self.read: dict[str, int] = {}
        self._inner = threading.local()  # a ranged read is served by get(): counted once
        self._counting = threading.Lock()
        self.ranges: list[tuple[str, int, int]] = []  # (key, start, stop) of each ranged read

    def _count(self, key: str, size: int) -> None:
        with self._counting:
            self.read[key] = self.read.get(key, 0) + size

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = super().get(key)
        if not getattr(self._inner, "ranged", False):
            self._count(key, len(data))
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._inner.ranged = True
        try:
            data = super().get_range(key, start, length)
        finally:
            self._inner.ranged = False
        self._count(key, len(data))
        with self._counting:
            self.ranges.append((key, start, start + len(data)))
        return data


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch) -> tuple[Reads, DatasetVersion]:
    """A published version of 3,000 frames in one segment of 30 row groups."""
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", GROUP_ROWS)
    store = Reads()
    root = DatasetVersion.create_new_dataset(dataset_name="big", client=Client(store))
    assert not root.add_frames([_frame(i) for i in range(3_000)])
    root.publish_version()
    return store, root


def _child(store: Reads, root: DatasetVersion) -> tuple[DatasetVersion, str]:
    """A draft child of ``root`` (on its own client) and the key of the one segment it shares."""
    child = DatasetVersion.create_version(
        dataset_id=root.dataset_id, version_name="child", parent_version_ids=[root.id], client=Client(store)
    )
    (segment,) = [r.key for r in child._frames.refs(child._entry)]
    return child, segment


def _relabelled(version: DatasetVersion) -> list[str]:
    """The ids of the frames whose labels are ["dog"] (what the tests' updates write), sorted."""
    labels = version.get_frames_table(columns=["id", "labels"]).to_pylist()
    return sorted(r["id"] for r in labels if r["labels"] == ["dog"])


def _id_chunks(store: Reads, version: DatasetVersion, key: str) -> list[tuple[str, str, int]]:
    """Per row group of the segment, (min id, max id, bytes of its id column chunk).

    The version's client has read the segment's footer (cached for the client), and the byte
    counts start from zero.
    """
    version.frames_present([_fid(0)])  # reads the footer (cached) and one id chunk
    meta = pq.read_metadata(pa.BufferReader(store.get(key)[0]))
    store.read.clear()
    groups = []
    for g in range(meta.num_row_groups):
        column = meta.row_group(g).column(0)
        groups.append((column.statistics.min, column.statistics.max, column.total_compressed_size))
    return groups


def test_updating_a_few_frames_reads_the_id_chunks_of_their_row_groups_only(
    parent: tuple[Reads, DatasetVersion],
) -> None:
    store, root = parent
    child, segment = _child(store, root)
    groups = _id_chunks(store, child, segment)
    assert len(groups) == 3_000 // GROUP_ROWS
    picked = [_fid(i) for i in random.Random(5).sample(range(3_000), 3)]
    failed = child.update_frames([_frame(3_000 + i, "dog") | {"id": f} for i, f in enumerate(picked)])
    assert not failed
    touched = [size for low, high, size in groups if any(low <= f <= high for f in picked)]
    assert len(touched) <= 3
    assert 0 < store.read.get(segment, 0) <= sum(touched)  # 3 id chunks, not 30
    # the answer is the one a whole read gives
    assert _relabelled(child) == sorted(picked)


def test_checking_ids_spread_over_every_row_group_reads_fewer_bytes_than_the_ids_hold(
    parent: tuple[Reads, DatasetVersion],
) -> None:
    # 1 % of the frames at random touch every row group, so every id chunk is read; ids are stored
    # compressed (random hex digits carry 4 bits per character), so the whole check reads fewer
    # bytes than the version's 32-character ids take as text
    store, root = parent
    child, segment = _child(store, root)
    _id_chunks(store, child, segment)  # the footer is read (kept for the client)
    picked = [_fid(i) for i in random.Random(9).sample(range(3_000), 30)]
    assert child.frames_present(picked) == sorted(picked)
    assert 0 < store.read.get(segment, 0) < 32 * 3_000


def test_frames_present_follows_deletes_and_re_adds_as_a_whole_read_does(
    parent: tuple[Reads, DatasetVersion],
) -> None:
    store, root = parent
    child, _ = _child(store, root)
    rng = random.Random(11)
    for step in range(6):
        gone = rng.sample(range(3_200), 40)
        child.delete_frames([_fid(i) for i in gone])
        back = rng.sample(range(3_200), 40)  # some never existed (3,000 and up): added
        assert not child.add_frames([_frame(i) for i in back])
        asked = [_fid(i) for i in rng.sample(range(3_300), 300)] + ["not-a-frame", _fid(step)]
        whole = set(child.get_frames_table(columns=["id"]).column("id").to_pylist())
        assert child.frames_present(asked) == sorted(set(asked) & whole)
        failed = child.update_frames([_frame(0) | {"id": f} for f in asked])
        assert {f.frame["id"] for f in failed} == set(asked) - whole  # type: ignore[index]
        assert all("not in version" in f.reason for f in failed)
    assert child.frames_present([]) == []


def test_arrow_updates_look_ids_up_by_row_group_too(parent: tuple[Reads, DatasetVersion]) -> None:
    store, root = parent
    child, segment = _child(store, root)
    groups = _id_chunks(store, child, segment)
    picked = [_fid(7), _fid(8), "absent-id"]
    table = pa.Table.from_pylist([_frame(9, "dog") | {"id": f} for f in picked])
    failed = child.update_frames(table)
    assert [f.frame["id"] for f in failed] == ["absent-id"]  # type: ignore[index]
    touched = [size for low, high, size in groups if any(low <= f <= high for f in picked)]
    assert 0 < store.read.get(segment, 0) <= sum(touched)


def test_publish_after_updates_everywhere_reads_the_counted_columns_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Updates spread over every row group: publish counts them out of the parent by the ids kept.

    Row groups of 1,000 frames: the column chunks are far enough apart that Arrow fetches each alone.
    """
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 1_000)
    store = Reads()
    root = DatasetVersion.create_new_dataset(dataset_name="big", client=Client(store))
    assert not root.add_frames([_frame(i) for i in range(20_000)])
    root.publish_version()
    child, segment = _child(store, root)
    groups = _id_chunks(store, child, segment)
    picked = [_fid(i) for i in random.Random(2).sample(range(20_000), 150)]
    assert not child.update_frames([_frame(9, "dog") | {"id": f} for f in picked])
    child.delete_frames(picked[:20])
    assert all(any(low <= f <= high for f in picked) for low, high, _ in groups)  # every row group
    store.ranges.clear()
    child.publish_version()
    meta = pq.read_metadata(pa.BufferReader(store.get(segment)[0]))
    not_counted = []  # the ids (kept from the check) and the ROI counts (the ROI lists' lengths say them)
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            if column.path_in_schema in ("id", "roi_count"):
                first = column.dictionary_page_offset if column.has_dictionary_page else None
                start = first if first is not None else column.data_page_offset
                not_counted.append((start, start + column.total_compressed_size))
    read = [(a, b) for key, a, b in store.ranges if key == segment]
    assert read  # the counted columns of the row groups holding an updated frame
    assert not [(a, b) for a, b in read for lo, hi in not_counted if a < hi and lo < b]
    stats = child.get_stats()
    assert stats == child._frames.stats(child._entry)  # as counted whole
    assert {"name": "dog", "count": 130} in stats["labels"]


def test_publish_reads_none_of_the_segments_its_writer_wrote(parent: tuple[Reads, DatasetVersion]) -> None:
    # the child's deltas were written by this client: publishing counts them from the bytes it
    # kept; a second client that did not write them reads them from the store
    store, root = parent
    child, segment = _child(store, root)
    assert not child.add_frames([_frame(i, "dog") for i in range(3_000, 3_010)])
    assert not child.update_frames([_frame(3_100, "dog") | {"id": _fid(7)}])
    child.delete_frames([_fid(8)])
    own = {r.key for r in child._frames.refs(child._entry)} - {segment}
    assert len(own) == 3
    store.read.clear()
    child.publish_version()
    assert not own & set(store.read)
    stats = child.get_stats()
    assert {"name": "dog", "count": 11} in stats["labels"] and stats["frames"] == 3_009
    assert stats == child._frames.stats(child._entry)  # as counted whole

    other = Client(store)
    store.read.clear()
    assert other.frames.read_segment(next(r for r in child._frames.refs(child._entry) if r.key in own))
    assert own & set(store.read)


def test_an_update_checks_the_frames_its_writer_just_added_without_reading_them_back(
    parent: tuple[Reads, DatasetVersion],
) -> None:
    # add, then update some of the frames added and some of the parent's: the check reads the
    # parent's id chunks, but the segment the add stored comes from the bytes this client kept
    store, root = parent
    child, _ = _child(store, root)
    assert not child.add_frames([_frame(i) for i in range(3_000, 3_020)])
    (added,) = [r.key for r in child._frames.refs(child._entry) if r.version == child.id]
    store.read.clear()
    assert not child.update_frames([_frame(i, "dog") for i in (3_001, 3_002, 5)])
    assert added not in store.read and store.read  # the parent's ids were read, the add's were not
    failed = child.update_frames([_frame(3_100, "dog")])  # a frame neither added nor in the parent
    assert [f.reason for f in failed] == [
        f"frame {_fid(3_100)} is not in version {child.name!r}; use add_frames"
    ]

    other = DatasetVersion.get_version(dataset_id=child.dataset_id, version_id=child.id, client=Client(store))
    store.read.clear()
    assert not other.update_frames([_frame(3_003, "cat")])  # another client reads the add's ids
    assert added in store.read
    assert child.get_single_frame(_fid(3_001)) is not None


@pytest.mark.parametrize("bad", ["one-id", 5, [1, 2], [None]])
def test_frames_present_refuses_what_is_not_a_list_of_ids(
    parent: tuple[Reads, DatasetVersion], bad: object
) -> None:
    _, root = parent
    with pytest.raises(ValidationError, match="frame_ids"):
        root.frames_present(bad)  # type: ignore[arg-type]


def test_a_large_arrow_update_reads_the_versions_ids_once_when_they_do_not_stay_in_memory(
    parent: tuple[Reads, DatasetVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of as many ids as the version has row groups, and no room to keep decoded ids."""
    from hds_s3.index import arrowin, frameindex

    monkeypatch.setattr(frameindex, "ID_CACHE_BYTES", 0)
    monkeypatch.setattr(arrowin, "ID_CACHE_BYTES", 0)
    monkeypatch.setattr(arrowin, "BATCH_ROWS", 50)  # 8 batches of 50 ids, 30 row groups
    store, root = parent
    child, segment = _child(store, root)
    picked = [_fid(i) for i in random.Random(4).sample(range(3_000), 400)]
    table = pa.Table.from_pylist([_frame(9, "dog") | {"id": f} for f in picked] + [_frame(5_000)])
    store.ranges.clear()
    failed = child.update_frames(table)
    assert [f.frame["id"] for f in failed] == [_fid(5_000)]  # type: ignore[index]
    requests = [r for r in store.ranges if r[0] == segment]
    assert 0 < len(requests) <= 4, requests  # one pass over the ids, not one per batch
    assert _relabelled(child) == sorted(picked)
