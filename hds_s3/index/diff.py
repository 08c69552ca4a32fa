"""The difference between two versions' frame indexes, read from their manifests and delta segments.

Two manifests usually share a run of leading segments: a child lists its parent's segments and then
its own deltas, and two siblings share their parent's. The frames those shared segments decide are
the same on both sides unless a later segment of either side holds their id, so only the segments
after the shared run are read in full; of the shared segments, only the row groups whose id range
covers an id those later segments touch are read, and only to tell a changed frame from an added
one (and for the label counts). Versions whose manifests share nothing (another dataset, or a
version compacted since its child was made) are compared by reading both.

"Changed" means the frame's stored content differs: its id, context, timestamp, sources, ROIs and
metadata. Provenance (``saved``, ``saved_in_version``, ``updated_in_version``) is not content, so a
frame written again unchanged is not reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.format.docs import SegmentRef
from hds_s3.index import segments
from hds_s3.index.frameindex import FrameIndex

#: The columns compared to tell a changed frame (everything stored except provenance and derived columns).
CONTENT_COLUMNS = ("id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob")
_PROVENANCE = ("saved", "saved_in_version", "updated_in_version")
_THREADS = 8


@dataclass(frozen=True)
class FrameDiff:
    """What turns the frames of one version (the base) into those of another (the other).

    ``added``: ids only in the other; ``deleted``: ids only in the base; ``changed``: ids in both
    whose content differs (all three sorted string arrays). ``label_deltas`` maps each label whose
    ROI count differs to the other's count minus the base's (ROIs carrying the label, as in the
    version statistics). ``segments_read`` counts the segments whose bytes were read, in whole or in
    part, to find this out.
    """

    added: pa.Array
    changed: pa.Array
    deleted: pa.Array
    label_deltas: dict[str, int] = field(default_factory=dict)
    segments_read: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """``{"added", "changed", "deleted", "frames_delta"}`` (frames_delta = added - deleted)."""
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
            "frames_delta": len(self.added) - len(self.deleted),
        }

    @property
    def is_empty(self) -> bool:
        """True when both versions hold the same frames with the same content."""
        return not (len(self.added) or len(self.changed) or len(self.deleted))

    def to_dict(self, ids: bool = True) -> dict[str, Any]:
        """The difference as JSON-ready data: counts, label deltas and (unless ``ids=False``) the ids."""
        out: dict[str, Any] = {
            "counts": self.counts,
            "label_deltas": dict(self.label_deltas),
            "segments_read": self.segments_read,
        }
        if ids:
            out.update(
                added=self.added.to_pylist(),
                changed=self.changed.to_pylist(),
                deleted=self.deleted.to_pylist(),
            )
        return out


def shared_prefix(a: Sequence[SegmentRef], b: Sequence[SegmentRef]) -> int:
    """How many leading segments two manifests' segment lists have in common (compared by key)."""
    count = 0
    for mine, theirs in zip(a, b, strict=False):
        if mine.key != theirs.key:
            break
        count += 1
    return count


def _ids(table: pa.Table) -> pa.Array:
    column = table.column("id")
    return column.combine_chunks() if column.num_chunks else pa.array([], pa.string())


def _unique_ids(tables: Sequence[pa.Table]) -> pa.Array:
    ids = [_ids(t) for t in tables if t.num_rows]
    if not ids:
        return pa.array([], pa.string())
    return pc.unique(pa.concat_arrays(ids))


def _sorted(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return array.take(pc.sort_indices(array)) if len(array) else pa.array([], pa.string())


def _label_counts(table: pa.Table) -> Counter[str]:
    rois = pc.list_flatten(table.column("rois"))
    if len(rois) == 0:
        return Counter()
    labels = pc.list_flatten(pc.struct_field(rois, "labels"))
    if len(labels) == 0:
        return Counter()
    return Counter(
        {c["values"]: c["counts"] for c in pc.value_counts(labels).to_pylist() if c["values"] is not None}
    )


def _content(row: dict[str, Any]) -> dict[str, Any]:
    frame = segments.row_to_frame({**dict.fromkeys(_PROVENANCE), **row})
    for name in _PROVENANCE:
        frame.pop(name, None)
    return frame


def diff_segments(frames: FrameIndex, base: Sequence[SegmentRef], other: Sequence[SegmentRef]) -> FrameDiff:
    """Compare the frames two segment lists hold (see the module docstring for what is read).

    Raises:
        CorruptObjectError: a segment is missing or damaged.
    """
    start = shared_prefix(base, other)
    prefix, tail_a, tail_b = base[:start], base[start:], other[start:]
    if not tail_a and not tail_b:
        empty = pa.array([], pa.string())
        return FrameDiff(empty, empty, empty)
    columns = list(CONTENT_COLUMNS)
    tails = [*tail_a, *tail_b]
    with ThreadPoolExecutor(max_workers=min(_THREADS, len(tails))) as pool:
        tables = list(pool.map(lambda r: frames.read_segment(r, columns), tails))
    tables_a, tables_b = tables[: len(tail_a)], tables[len(tail_a) :]
    ids_a, ids_b = _unique_ids(tables_a), _unique_ids(tables_b)
    touched = pc.unique(pa.concat_arrays([ids_a, ids_b]))
    # the ids that one side's tail does not decide: the shared segments decide them there
    undecided = pc.filter(touched, pc.invert(pc.and_(pc.is_in(touched, ids_a), pc.is_in(touched, ids_b))))
    wanted = _sorted(undecided)
    read = len(tails)
    shared: list[tuple[str, pa.Table]] = []
    if len(wanted) and prefix:
        candidates = [r for r in prefix if _covers(r, wanted)]
        if candidates:
            with ThreadPoolExecutor(max_workers=min(_THREADS, len(candidates))) as pool:
                parts = list(pool.map(lambda r: frames.rows_of(r, wanted, columns), candidates))
            read += sum(1 for part in parts if part is not None)
            shared = [(r.kind, p) for r, p in zip(candidates, parts, strict=True) if p is not None]
    schema = segments.projected_schema(tuple(columns))
    before = segments.merge(shared, schema) if shared else schema.empty_table()
    side_a = segments.merge([("frames", before), *_kinds(tail_a, tables_a)], schema)
    side_b = segments.merge([("frames", before), *_kinds(tail_b, tables_b)], schema)
    side_a = side_a.filter(pc.is_in(side_a.column("id"), value_set=touched))
    side_b = side_b.filter(pc.is_in(side_b.column("id"), value_set=touched))
    return _compare(side_a, side_b, read)


def _kinds(refs: Sequence[SegmentRef], tables: Sequence[pa.Table]) -> list[tuple[str, pa.Table]]:
    return [(r.kind, t) for r, t in zip(refs, tables, strict=True)]


def _covers(ref: SegmentRef, wanted: pa.Array) -> bool:
    """Whether a segment's id range may hold one of the sorted ``wanted`` ids."""
    if ref.rows == 0:
        return False
    if ref.min_id is None or ref.max_id is None:
        return True
    inside = pc.and_(pc.greater_equal(wanted, ref.min_id), pc.less_equal(wanted, ref.max_id))
    return bool(pc.any(inside).as_py())


def _compare(side_a: pa.Table, side_b: pa.Table, read: int) -> FrameDiff:
    """The difference between the rows of the touched ids on either side."""
    ids_a, ids_b = _ids(side_a), _ids(side_b)
    in_b = pc.is_in(ids_a, value_set=ids_b)
    in_a = pc.is_in(ids_b, value_set=ids_a)
    deleted = _sorted(ids_a.filter(pc.invert(in_b)))
    added = _sorted(ids_b.filter(pc.invert(in_a)))
    common_a = side_a.filter(in_b)
    common_b = side_b.filter(in_a)
    common_a = common_a.take(pc.sort_indices(common_a.column("id")))
    common_b = common_b.take(pc.sort_indices(common_b.column("id")))
    changed = [
        a["id"]
        for a, b in zip(common_a.to_pylist(), common_b.to_pylist(), strict=True)
        if _content(a) != _content(b)
    ]
    changed_ids = pa.array(changed, pa.string())
    # label counts: only the rows that differ can move them
    moved_a = side_a.filter(pc.is_in(ids_a, value_set=pa.concat_arrays([deleted, changed_ids])))
    moved_b = side_b.filter(pc.is_in(ids_b, value_set=pa.concat_arrays([added, changed_ids])))
    deltas = _label_counts(moved_b)
    deltas.subtract(_label_counts(moved_a))
    return FrameDiff(
        added=added,
        changed=changed_ids,
        deleted=deleted,
        label_deltas={k: v for k, v in sorted(deltas.items()) if v},
        segments_read=read,
    )
