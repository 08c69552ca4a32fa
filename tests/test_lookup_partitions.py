"""A point look-up touches one segment, and one row group of it, whatever the version's size.

A version written as 1,000 segments (whose id ranges all overlap) is merged when published;
``compact()`` cuts a version into segments of disjoint id ranges.
Requests are counted at the store.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from hds_s3 import Client, DatasetVersion, SingleFrame, ValidationError
from hds_s3.store import FaultyStore, MemoryStore


def _fid(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # spread over the whole id space


def _frames(start: int, n: int) -> list[SingleFrame]:
    return [
        SingleFrame(source=f"s3://b/{i}.jpg", width=4, height=4, id=_fid(i)) for i in range(start, start + n)
    ]


def _requests_of_lookups(inner: MemoryStore, version_id: str, ids: list[str]) -> list[list[tuple[str, str]]]:
    """The requests of each look-up on a fresh client that has opened the version (and its manifest)."""
    counter = FaultyStore(inner, fail_at=None)
    version = DatasetVersion.get_version("big", version_id=version_id, client=Client(counter))  # type: ignore[arg-type]
    version._frames.refs(version._entry)  # the manifest, read once per client
    out = []
    for frame_id in ids:
        start = counter.count
        assert version.get_single_frame(frame_id).id == frame_id
        out.append(counter.log[start:])
    return out


@pytest.mark.slow  # 1,000 segments take a while to write
def test_a_version_written_in_1000_pieces_is_looked_up_in_one_segment_once_published() -> None:
    inner = MemoryStore()
    draft = DatasetVersion.create_new_dataset("big", client=Client(inner))
    draft.add_frames(_frames(0, 3_000), segment_rows=3, commit_every=1_000)  # 1,000 segments
    assert len(draft._frames.refs(draft._entry)) == 1_000
    draft.publish_version()
    picks = [_fid(i) for i in random.Random(7).sample(range(3_000), 10)]
    for requests in _requests_of_lookups(inner, draft.id, picks):
        segments = {key for op, key in requests if key.endswith(".parquet")}
        assert len(segments) == 1, requests
        assert len(requests) <= 3  # the footer (then cached), the id column of one row group, its row


def test_compact_cuts_a_version_into_segments_of_disjoint_id_ranges() -> None:
    inner = MemoryStore()
    draft = DatasetVersion.create_new_dataset("big", client=Client(inner))
    draft.add_frames(_frames(0, 2_000), segment_rows=250)  # eight segments, each over the whole id space
    draft.publish_version()
    published = DatasetVersion.get_version("big", version_id=draft.id, client=Client(inner))
    published.compact(segment_rows=500)
    refs = published._frames.refs(published._entry)
    assert len(refs) == 4
    ranges = sorted((r.min_id, r.max_id) for r in refs)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # disjoint, in order
    picks = [_fid(i) for i in random.Random(3).sample(range(2_000), 20)]
    for frame_id, requests in zip(picks, _requests_of_lookups(inner, draft.id, picks), strict=True):
        touched = {key for op, key in requests if key.endswith(".parquet")}
        holder = next(r.key for r in refs if r.min_id <= frame_id <= r.max_id)
        assert touched == {holder}, requests
    assert published.get_frame_count() == 2_000
    with pytest.raises(ValidationError, match="segment_rows"):
        published.compact(segment_rows=0)


def test_a_look_up_in_frames_ingested_from_arrow_reads_one_chunk_of_the_id_index_and_one_row_group() -> None:
    # an Arrow table is stored as given (not in id order), each segment with its ids indexed:
    # the look-up reads the index chunk covering the id, then the row group holding its row
    import pyarrow as pa

    from hds_s3.index import segments

    inner = MemoryStore()
    draft = DatasetVersion.create_new_dataset("big", client=Client(inner))
    rows = [f.to_dict() for f in _frames(0, 40_000)]
    for i, row in enumerate(rows):
        row["meta"] = {"n": i}
    assert draft.add_frames(pa.Table.from_pylist(rows)) == []
    draft.publish_version()
    (ref,) = draft._frames.refs(draft._entry)
    meta = draft._frames._footer(ref)
    assert segments.key_column(meta) != 0 and meta.num_row_groups == 3  # indexed, three row groups
    picks = [_fid(i) for i in random.Random(5).sample(range(40_000), 8)]
    number = {_fid(i): i for i in range(40_000)}
    counter = FaultyStore(inner, fail_at=None)
    version = DatasetVersion.get_version("big", version_id=draft.id, client=Client(counter))  # type: ignore[arg-type]
    version._frames.refs(version._entry)
    version._frames._footer(ref)  # read once per client
    for frame_id in picks:
        start = counter.count
        frame = version.get_single_frame(frame_id)
        assert frame.id == frame_id and frame.metadata == {"n": number[frame_id]}
        requests = counter.log[start:]
        assert {key for _, key in requests} == {ref.key}
        assert len(requests) <= 2, requests  # the index chunk (sorted ids and their rows), the row group
