"""What the pages show, computed with the library's public API and vectorised Arrow work.

The grid of a version with a million frames stays fast because nothing here walks frames in
Python: a version's frame table (the columns the grid draws, plus those a query or a sort needs) is
read once per state of the dataset and kept in a small cache; a query is one vectorised mask over
it (:func:`hds_s3.query.lucene.make_filter`), a sort one ``sort_indices``, and a page one ``take``
of the rows it shows. A published version never changes; a draft's cache key moves with the
dataset's last update, so a page after a write sees the write.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.api import Dataset, DatasetVersion
from hds_s3.errors import ValidationError
from hds_s3.query import lucene

#: Columns the grid draws.
GRID_COLUMNS = ("id", "context_id", "timestamp", "sources", "rois", "roi_count", "labels")
#: Sort keys besides ``meta.<path>``.
SORTS = ("id", "context", "timestamp")
#: Most frames one page request returns.
MAX_PAGE = 500

_POSITION = re.compile(r"\(at position (\d+)\)")


def query_error(exc: ValidationError) -> dict[str, Any]:
    """The JSON body of a refused query: the library's message and, when it says one, the caret position."""
    text = str(exc)
    found = _POSITION.search(text)
    return {
        "error": text,
        "type": type(exc).__name__,
        "position": int(found.group(1)) if found else None,
    }


def state_key(version: DatasetVersion) -> tuple[str, str, int]:
    """A key that changes whenever the version's frames may have changed."""
    changed = 0 if version.is_published else version.dataset.last_update
    return (version.dataset_id, version.id, changed)


class FrameTables:
    """A small LRU cache of versions' frame tables, each holding at least the columns asked for.

    Thread-safe; the table of one version state is read again only to add columns.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._tables: OrderedDict[tuple[str, str, int], pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: DatasetVersion, columns: Sequence[str]) -> pa.Table:
        """The version's effective frames with at least ``columns``.

        Raises:
            ValidationError: a column is not in the frame index.
            CorruptObjectError: a segment is missing or damaged.
        """
        key = state_key(version)
        with self._lock:
            cached = self._tables.get(key)
            if cached is not None:
                self._tables.move_to_end(key)
        if cached is not None and set(columns) <= set(cached.column_names):
            return cached
        wanted = sorted(set(columns) | set(cached.column_names if cached is not None else ()))
        table = version.get_frames_table(columns=wanted)
        with self._lock:
            self._tables[key] = table
            self._tables.move_to_end(key)
            while len(self._tables) > self._size:
                self._tables.popitem(last=False)
        return table


@dataclass(frozen=True)
class Selection:
    """The frames a grid shows: ``order`` holds row numbers of ``table`` in display order."""

    table: pa.Table
    order: np.ndarray
    total: int

    def ids(self, start: int, stop: int) -> list[str]:
        """Frame ids at display positions ``start`` to ``stop`` (exclusive)."""
        rows = self.order[max(0, start) : max(0, stop)]
        return [str(x) for x in self.table.column("id").take(pa.array(rows, pa.int64())).to_pylist()]


def _meta_path(sort: str) -> str | None:
    if sort.startswith("meta."):
        path = sort[len("meta.") :]
        if not path:
            raise ValidationError("sort by meta.<field>: the field name is missing, e.g. meta.city")
        return path
    if sort not in SORTS:
        raise ValidationError(f"cannot sort by {sort!r}: use one of {', '.join(SORTS)} or meta.<field>")
    return None


_META_CACHE: OrderedDict[tuple[int, str], tuple[weakref.ref[pa.Table], pa.ChunkedArray | pa.Array, bool]] = (
    OrderedDict()
)
_META_LOCK = threading.Lock()


def meta_values(table: pa.Table, path: str) -> tuple[pa.ChunkedArray | pa.Array, bool]:
    """The values of ``meta.<path>`` per row, and whether they are numbers (when any row has one there).

    The last few results are kept while their table lives (in the table cache), so paging through
    a grid sorted by a meta field, or charting it, looks the values up once.
    """
    key = (id(table), path)
    with _META_LOCK:
        hit = _META_CACHE.get(key)
        if hit is not None and hit[0]() is table:
            _META_CACHE.move_to_end(key)
            return hit[1], hit[2]
    nums = pc.map_lookup(table.column("meta_num"), path, "first")
    if pc.count(nums).as_py() > 0:
        values, numeric = nums, True
    else:
        values, numeric = pc.map_lookup(table.column("meta_str"), path, "first"), False
    with _META_LOCK:
        _META_CACHE[key] = (weakref.ref(table), values, numeric)
        while len(_META_CACHE) > 8:
            _META_CACHE.popitem(last=False)
    return values, numeric


class Selections:
    """Builds and caches :class:`Selection` objects (by version state, query and sort)."""

    def __init__(self, tables: FrameTables, size: int = 16) -> None:
        self._tables = tables
        self._size = size
        self._cache: OrderedDict[tuple[Any, ...], Selection] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        version: DatasetVersion,
        *,
        frame_query: str = "",
        roi_query: str = "",
        sort: str = "id",
        descending: bool = False,
        group: bool = False,
    ) -> Selection:
        """The version's frames passing both queries, in the asked order.

        Raises:
            ValidationError: a malformed query (with its caret) or an unknown sort key.
            CorruptObjectError: a segment is missing or damaged.
        """
        key = (state_key(version), frame_query, roi_query, sort, descending, group)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        path = _meta_path(sort)
        flt = lucene.make_filter(frame_query=frame_query or None, roi_query=roi_query or None)
        columns = set(GRID_COLUMNS) | set(flt.columns)
        if path is not None:
            columns |= {"meta_num", "meta_str"}
        table = self._tables.get(version, sorted(columns))
        mask = lucene.frame_mask(table, flt) if (frame_query or roi_query) else None
        keys: list[tuple[str, str]] = []
        direction = "descending" if descending else "ascending"
        work = pa.table({"_row": pa.array(np.arange(table.num_rows, dtype=np.int64))})
        if group:
            work = work.append_column("_ctx", table.column("context_id"))
            keys.append(("_ctx", "ascending"))
        if path is not None:
            values, _ = meta_values(table, path)
            work = work.append_column("_meta", values)
            keys.append(("_meta", direction))
        elif sort == "context":
            work = work.append_column("_c", table.column("context_id")).append_column(
                "_t", table.column("timestamp")
            )
            keys += [("_c", direction), ("_t", direction)]
        elif sort == "timestamp":
            work = work.append_column("_t", table.column("timestamp"))
            keys.append(("_t", direction))
        work = work.append_column("_id", table.column("id"))
        keys.append(("_id", direction if path is None or sort == "id" else "ascending"))
        if mask is not None:
            work = work.filter(pa.array(mask, pa.bool_()))
        order = pc.sort_indices(work, sort_keys=keys)  # nulls (no such meta field) last
        rows = np.asarray(work.column("_row").take(order).to_numpy(), dtype=np.int64)
        selection = Selection(table=table, order=rows, total=len(rows))
        with self._lock:
            self._cache[key] = selection
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return selection


def grid_rows(selection: Selection, start: int, stop: int) -> list[dict[str, Any]]:
    """The frames at display positions ``start``..``stop`` as the grid draws them (no metadata)."""
    rows = selection.order[max(0, start) : max(0, stop)]
    part = selection.table.select(["id", "context_id", "timestamp", "sources", "rois"]).take(
        pa.array(rows, pa.int64())
    )
    out = []
    for offset, row in enumerate(part.to_pylist()):
        sources = [
            {
                "id": s["id"],
                "width": s["width"],
                "height": s["height"],
                "has_preview": s.get("preview") is not None,
                "masks": [m["id"] for m in s.get("masks") or ()],
            }
            for s in row["sources"] or ()
        ]
        rois = [
            {
                "labels": r["labels"] or [],
                "type": r["type"],
                "poly": r["poly"] or [],
                "confidence": r["confidence"],
                "sources": r["sources"] or [],
            }
            for r in row["rois"] or ()
        ]
        out.append(
            {
                "position": start + offset,
                "id": row["id"],
                "context_id": row["context_id"],
                "timestamp": row["timestamp"],
                "sources": sources,
                "rois": rois,
            }
        )
    return out


def position_of(selection: Selection, frame_id: str) -> int | None:
    """The display position of a frame in the selection, or None when the selection leaves it out."""
    ids = selection.table.column("id")
    row = pc.index(ids, frame_id).as_py()
    if row < 0:
        return None
    hits = np.flatnonzero(selection.order == row)
    return int(hits[0]) if len(hits) else None


def next_annotated(selection: Selection, position: int, step: int) -> int | None:
    """The nearest display position after ``position`` (``step`` +1 or -1) of a frame with ROIs."""
    counts = np.asarray(
        selection.table.column("roi_count")
        .take(pa.array(selection.order, pa.int64()))
        .fill_null(0)
        .to_numpy(),
        dtype=np.int64,
    )
    if step > 0:
        later = np.flatnonzero(counts[position + 1 :] > 0)
        return int(position + 1 + later[0]) if len(later) else None
    earlier = np.flatnonzero(counts[: max(0, position)] > 0)
    return int(earlier[-1]) if len(earlier) else None


def frame_row(table: pa.Table, frame_id: str) -> dict[str, Any] | None:
    """One frame's row of a cached table (the columns it holds), or None."""
    row = pc.index(table.column("id"), frame_id).as_py()
    if row < 0:
        return None
    found: dict[str, Any] = table.slice(row, 1).to_pylist()[0]
    return found


def frame_dict(version: DatasetVersion, frame_id: str) -> dict[str, Any]:
    """A frame's canonical dict (the form ``update_frames`` takes back), provenance included.

    Raises:
        NotFoundError: no such frame in the version.
    """
    frame = version.get_single_frame(frame_id=frame_id)
    out: dict[str, Any] = frame.to_dict()
    for name in ("saved", "saved_in_version", "updated_in_version"):
        value = getattr(frame, name, None)
        if value is not None:
            out[name] = value
    return out


def canonical(frame: dict[str, Any]) -> dict[str, Any]:
    """A frame dict from the browser, as ``update_frames`` takes it (provenance fields dropped)."""
    return {k: v for k, v in frame.items() if k not in ("saved", "saved_in_version", "updated_in_version")}


# ---------------------------------------------------------------------------- statistics


def meta_fields(table: pa.Table) -> list[str]:
    """The dotted metadata paths present in the table (sorted)."""
    names: set[str] = set()
    for column in ("meta_str", "meta_num"):
        if column in table.column_names:
            for chunk in table.column(column).chunks:
                names.update(str(k) for k in pc.unique(chunk.keys).to_pylist() if k is not None)
    return sorted(names)


def distribution(
    table: pa.Table, path: str, rows: np.ndarray | None = None, bins: int = 12
) -> dict[str, Any]:
    """The distribution of ``meta.<path>`` over the table's rows (or ``rows`` of it).

    Numbers give a histogram of ``bins`` equal bins; text gives the 30 most common values.
    """
    values, numeric = meta_values(table, path)
    if rows is not None:  # only the one column is taken, not the table
        values = values.take(pa.array(rows, pa.int64()))
    present = int(pc.count(values).as_py())
    missing = len(values) - present
    if numeric:
        data = np.asarray(pc.drop_null(values).to_numpy(), dtype=np.float64)
        if not len(data):
            return {"field": f"meta.{path}", "kind": "number", "bins": [], "missing": missing}
        low, high = float(data.min()), float(data.max())
        if low == high:
            high = low + 1.0
        counts, edges = np.histogram(data, bins=bins, range=(low, high))
        return {
            "field": f"meta.{path}",
            "kind": "number",
            "bins": [
                {"low": float(edges[i]), "high": float(edges[i + 1]), "count": int(counts[i])}
                for i in range(len(counts))
            ],
            "missing": missing,
        }
    counted = pc.value_counts(pc.drop_null(values))
    pairs = sorted(
        ((str(v["values"]), int(v["counts"])) for v in counted.to_pylist()), key=lambda p: (-p[1], p[0])
    )
    return {
        "field": f"meta.{path}",
        "kind": "text",
        "values": [{"name": n, "count": c} for n, c in pairs[:30]],
        "other": sum(c for _, c in pairs[30:]),
        "missing": missing,
    }


def selection_stats(selection: Selection) -> dict[str, Any]:
    """Counts over the frames of a selection: frames, annotated, ROIs per label."""
    take = pa.array(selection.order, pa.int64())
    counts = selection.table.column("roi_count").take(take).fill_null(0)
    labels = pc.list_flatten(selection.table.column("labels").take(take))
    per_label = pc.value_counts(labels).to_pylist() if len(labels) else []
    return {
        "frames": selection.total,
        "annotated": int(pc.sum(pc.greater(counts, 0)).as_py() or 0),
        "labels": sorted(
            ({"name": str(v["values"]), "count": int(v["counts"])} for v in per_label),
            key=lambda item: (-item["count"], item["name"]),
        ),
    }


# ---------------------------------------------------------------------------- datasets and versions


def version_summary(version: DatasetVersion) -> dict[str, Any]:
    """What the version tree shows of one version."""
    return {
        "id": version.id,
        "name": version.name,
        "status": version.status,
        "parent": version.parent_id,
        "created": version.created,
        "published": version.published,
        "created_by": version.created_by or None,
        "published_by": version.published_by,
        "comment": version.comment,
        "tags": version.tags,
    }


def dataset_card(dataset: Dataset) -> dict[str, Any]:
    """A dataset card: tags, description, version count and its current version's statistics."""
    card: dict[str, Any] = {
        "id": dataset.id,
        "name": dataset.name,
        "description": dataset.description,
        "tags": dataset.tags,
        "versions": dataset.version_count,
        "last_update": dataset.last_update,
        "current": None,
        "frames": 0,
        "annotated": 0,
        "top_labels": [],
    }
    versions = dataset.get_versions()
    published = [v for v in versions if v.is_published]
    # the newest published version's statistics are stored with it: no frame is read
    shown = max(published, key=lambda v: v.published or 0) if published else None
    if shown is None and versions:
        shown = dataset.get_current()
    if shown is not None:
        stats = shown.get_stats()
        card.update(
            current={"id": shown.id, "name": shown.name, "status": shown.status},
            frames=stats["frames"],
            annotated=stats["annotated"],
            top_labels=stats["labels"][:5],
        )
    return card


def diff(old: DatasetVersion, new: DatasetVersion, limit: int = 200) -> dict[str, Any]:
    """What turns ``old`` into ``new`` (``DatasetVersion.diff``): frames and ROIs per label.

    Each label whose ROI count differs comes with both counts (``old`` from its statistics). At most
    ``limit`` ids of each kind are listed; the counts are complete.

    Raises:
        CorruptObjectError: a manifest or segment is missing or damaged.
    """
    found = old.diff(new)
    before = {item["name"]: int(item["count"]) for item in old.get_stats()["labels"]}
    labels = [
        {"name": name, "old": before.get(name, 0), "new": before.get(name, 0) + delta}
        for name, delta in sorted(found.label_deltas.items())
        if delta
    ]
    counts = found.counts
    return {
        "old": version_summary(old),
        "new": version_summary(new),
        "counts": {"added": counts["added"], "deleted": counts["deleted"], "changed": counts["changed"]},
        "added": found.added.slice(0, limit).to_pylist(),
        "deleted": found.deleted.slice(0, limit).to_pylist(),
        "changed": found.changed.slice(0, limit).to_pylist(),
        "labels": labels,
    }


__all__ = [
    "GRID_COLUMNS",
    "MAX_PAGE",
    "FrameTables",
    "Selection",
    "Selections",
    "canonical",
    "dataset_card",
    "diff",
    "distribution",
    "frame_dict",
    "frame_row",
    "grid_rows",
    "meta_fields",
    "next_annotated",
    "position_of",
    "query_error",
    "selection_stats",
    "version_summary",
]
