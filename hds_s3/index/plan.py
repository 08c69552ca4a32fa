"""Read plans: a version's (or a DataView's) frames as independent tasks that any worker can read.

A :class:`ReadPlan` is a list of :class:`ReadTask`, one per segment of the manifest (or per range
of its row groups), in manifest order; :func:`read_task` reads one and returns an Arrow table, and
the tables of all tasks, in order, are exactly what ``get_frames_table`` returns (same rows, same
order, same schema). A task carries everything a worker needs and nothing it must share: the store
(its URL and options, so the worker builds its own client with its own credentials), the segment's
key, size and row groups, the columns to read, which of its rows are dead (the ids a later segment
replaces or deletes, inline, or, when there are many, the later segments whose ids they are), and the
frame filter (a :class:`pyarrow.compute.Expression` over the frame-index columns). Tasks are
picklable (what Ray and Dask send) and JSON-serialisable (:meth:`ReadTask.to_json`).

Building a plan reads the manifest and, for a manifest with deltas, the ``id`` columns of the
segments after its leading disjoint ones (what :class:`hds_s3.index.scan.Scan` reads to know which
rows are dead); for a version whose segments are all disjoint (a published root, a compacted
version) it reads nothing but the manifest.

DataView tasks (:mod:`hds_s3.query.viewplan`) name their rows instead: the driver matches the view
and orders its picks, each task reads its segment's picked rows and adds what a DataView adds
(``dataset``, mapped labels, ``label_num``) and each row's place in the view's sequence (``_pick``).

Statistics (:func:`task_stats`, :func:`combine_stats`) and compaction (:func:`compact_task`) run on
the same tasks.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hds_s3.errors import CorruptObjectError, ValidationError
from hds_s3.format import layout
from hds_s3.format.catalog import Catalog
from hds_s3.format.docs import SegmentRef, VersionEntry
from hds_s3.index import segments
from hds_s3.index.frameindex import SEGMENT_ROWS, FrameIndex, sorted_counts
from hds_s3.index.frameindex import STATS_COLUMNS as STATS_COLUMNS  # the columns statistics read
from hds_s3.index.frameindex import stats_of_table as stats_of_table
from hds_s3.index.ranged import FETCH_THREADS, PartsFile, chunk_ranges, fetch_ranges
from hds_s3.index.scan import WHOLE_SHARE
from hds_s3.index.twophase import PendingSegment, loads_text
from hds_s3.model.names import preview
from hds_s3.store.base import ObjectStore

PLAN_KIND = "hds_s3.read-plan"
TASK_KIND = "hds_s3.read-task"
#: A task carries the ids that are dead in its segment inline up to this many; beyond, the keys of
#: the later segments holding them (the worker reads their ``id`` columns).
INLINE_DROP_IDS = 100_000
#: The column of a DataView task's output that gives each row's place in the view's sequence.
PICK_COLUMN = "_pick"
#: Frame-index clients a worker process keeps (per store), so footers stay cached between tasks.
_CLIENTS = 8


# ---------------------------------------------------------------------------- the store, for a worker


@dataclass(frozen=True)
class StoreSpec:
    """Where a worker finds the store: its URL and the options that are not secrets.

    Credentials never travel in a plan: an S3 worker takes them from its own environment (the
    standard AWS chain), as it takes the endpoint when none is given here.
    """

    url: str
    endpoint_url: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None

    @classmethod
    def of(cls, store: ObjectStore) -> StoreSpec:
        """The spec of a store (wrappers such as a read-only store are seen through)."""
        inner: Any = store
        while hasattr(inner, "inner"):
            inner = inner.inner
        if hasattr(inner, "bucket") and hasattr(inner, "endpoint_url"):
            return cls(inner.url, inner.endpoint_url, inner.sse, inner.sse_kms_key_id)
        return cls(store.url)

    def open(self) -> ObjectStore:
        """Open the store in this process.

        Raises:
            ValidationError: the URL has an unsupported form.
        """
        from hds_s3.store import open_store

        if self.url.startswith(("s3://", "s3a://")):
            from hds_s3.store import S3Store

            store: ObjectStore = S3Store.from_url(
                self.url, endpoint_url=self.endpoint_url, sse=self.sse, sse_kms_key_id=self.sse_kms_key_id
            )
            return store
        return open_store(self.url)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {k: v for k, v in vars(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: object) -> StoreSpec:
        """Read :meth:`to_dict`'s data back.

        Raises:
            ValidationError: not such data.
        """
        names = ("url", "endpoint_url", "sse", "sse_kms_key_id")
        if (
            not isinstance(data, Mapping)
            or not isinstance(data.get("url"), str)
            or set(data) - set(names)
            or not all(data.get(n) is None or isinstance(data.get(n), str) for n in names)
        ):
            raise ValidationError(f"not a store spec: {preview(data)}")
        return cls(data["url"], data.get("endpoint_url"), data.get("sse"), data.get("sse_kms_key_id"))


_indexes: dict[StoreSpec, FrameIndex] = {}
_indexes_lock = threading.Lock()


def frame_index(spec: StoreSpec) -> FrameIndex:
    """The frame index of a store in this process (one per store, kept: its footers serve later tasks).

    Raises:
        ValidationError: the store's URL has an unsupported form.
    """
    with _indexes_lock:
        found = _indexes.get(spec)
        if found is None:
            found = FrameIndex(Catalog(spec.open()))
            _indexes[spec] = found
            while len(_indexes) > _CLIENTS:
                _indexes.pop(next(iter(_indexes)))
        return found


# ---------------------------------------------------------------------------- filters


_COLUMN_WORDS = re.compile(
    r"\b(" + "|".join(sorted(segments.FRAME_SCHEMA.names, key=len, reverse=True)) + r")\b"
)


def filter_columns(expression: pc.Expression) -> tuple[str, ...]:
    """The frame-index columns an expression may read (each column its text names), in schema order."""
    named = set(_COLUMN_WORDS.findall(str(expression)))
    return tuple(n for n in segments.FRAME_SCHEMA.names if n in named)


def check_filter(expression: object) -> tuple[pc.Expression | None, tuple[str, ...]]:
    """Check a frame filter: None, or an Arrow expression over the frame-index columns.

    Returns the expression and the columns it reads.

    Raises:
        ValidationError: not an expression, naming no column, or not valid over those columns (an
            unknown field, a function applied to the wrong type).
    """
    if expression is None:
        return None, ()
    if not isinstance(expression, pc.Expression):
        raise ValidationError(
            "frame_filter is a pyarrow.compute expression over the frame-index columns, such as "
            f"pc.field('roi_count') > 0; got {preview(expression)}"
        )
    columns = filter_columns(expression)
    if not columns:
        raise ValidationError(f"frame_filter {expression} names no column of the frame index")
    empty = segments.projected_schema(columns).empty_table()
    try:
        _filter_rows(empty, expression, columns)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"frame_filter {expression} cannot be evaluated on the frame index: {exc}"
        ) from None
    return expression, columns


def _filter_rows(table: pa.Table, expression: pc.Expression, columns: Sequence[str]) -> np.ndarray:
    """The rows of ``table`` the expression keeps (it reads ``columns``, by name or by position)."""
    probe = table.select(list(columns)).append_column("__row", pa.array(np.arange(table.num_rows)))
    kept = probe.filter(expression).column("__row")
    return np.asarray(kept.to_numpy(), dtype=np.int64)


def _filter_to_json(expression: pc.Expression, columns: Sequence[str]) -> dict[str, Any]:
    try:
        data = expression.to_substrait(segments.projected_schema(tuple(columns)))
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"frame_filter {expression} cannot be written as JSON (Substrait does not express it: {exc}); "
            "pickle the plan instead (Ray and Dask do)"
        ) from None
    return {"substrait": base64.b64encode(bytes(data)).decode("ascii"), "columns": list(columns)}


def _filter_from_json(data: object) -> tuple[pc.Expression, tuple[str, ...]]:
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("substrait"), str)
        or not isinstance(data.get("columns"), list)
        or not all(isinstance(c, str) for c in data["columns"])
    ):
        raise ValidationError(f"read task: not a frame filter: {preview(data)}")
    try:
        expression = pc.Expression.from_substrait(base64.b64decode(data["substrait"], validate=True))
        segments.projected_schema(tuple(data["columns"]))
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValidationError(f"read task: the frame filter cannot be read back: {exc}") from None
    return expression, tuple(data["columns"])


# ---------------------------------------------------------------------------- DataView output


@dataclass(frozen=True)
class ViewOutput:
    """What a DataView adds to the rows it returns: the pair's ``dataset`` info, mapped labels, ``label_num``.

    ``mapping`` lists ``(from_labels, to_label)`` in the order the rules were added (the first whose
    labels a ROI all carries applies); ``labels`` is the enumeration (a ROI's first enumerated label
    gives its ``label_num``, else -1).
    """

    dataset: Mapping[str, str]
    mapping: tuple[tuple[tuple[str, ...], str], ...] = ()
    labels: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "dataset": dict(self.dataset),
            "mapping": [[list(f), t] for f, t in self.mapping],
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: object) -> ViewOutput:
        """Read :meth:`to_dict`'s data back.

        Raises:
            ValidationError: not such data.
        """
        try:
            assert isinstance(data, Mapping)
            dataset = {str(k): str(v) for k, v in data["dataset"].items()}
            mapping = tuple((tuple(str(x) for x in f), str(t)) for f, t in data.get("mapping", []))
            labels = {str(k): int(v) for k, v in data.get("labels", {}).items()}
        except (AssertionError, AttributeError, KeyError, TypeError, ValueError):
            raise ValidationError(f"read task: not a DataView output: {preview(data)}") from None
        return cls(dataset, mapping, labels)


DATASET_TYPE = pa.struct(
    [("id", pa.string()), ("name", pa.string()), ("version", pa.string()), ("version_name", pa.string())]
)


def view_schema(columns: Sequence[str]) -> pa.Schema:
    """The schema of a DataView task's output for these frame-index columns (``id`` first)."""
    base = segments.projected_schema(tuple(columns))
    fields = []
    for f in base:
        if f.name == "rois" and pa.types.is_list(f.type):
            element = f.type.value_type
            fields.append(
                pa.field("rois", pa.list_(pa.struct([*element, pa.field("label_num", pa.int64())])))
            )
        else:
            fields.append(f)
    return pa.schema([*fields, pa.field("dataset", DATASET_TYPE), pa.field(PICK_COLUMN, pa.int64())])


def map_labels(labels: list[str], mapping: Sequence[tuple[Sequence[str], str]]) -> list[str]:
    """A ROI's labels after the first mapping rule whose labels it all carries (``add_mapping_rule``)."""
    for wanted_labels, to_label in mapping:
        wanted = set(wanted_labels)
        if wanted.issubset(labels):
            out: list[str] = []
            placed = False
            for label in labels:
                if label in wanted:
                    if not placed:
                        out.append(to_label)
                        placed = True
                else:
                    out.append(label)
            return out
    return labels


def _view_rows(table: pa.Table, view: ViewOutput, picks: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Add what a DataView adds to rows just read."""
    columns = []
    for f in schema:
        if f.name == "dataset":
            columns.append(pa.repeat(pa.scalar(dict(view.dataset), DATASET_TYPE), table.num_rows))
        elif f.name == PICK_COLUMN:
            columns.append(pa.array(picks, pa.int64()))
        elif f.name == "rois":
            columns.append(_view_rois(table.column("rois"), view, f.type))
        else:
            columns.append(table.column(f.name))
    return pa.Table.from_arrays(columns, schema=schema)


def _view_rois(rois: pa.ChunkedArray, view: ViewOutput, out_type: pa.DataType) -> pa.Array:
    array = rois.combine_chunks()
    flat = array.flatten()
    labels = pc.struct_field(flat, "labels").to_pylist() if len(flat) else []
    mapped = [map_labels(list(ls or []), view.mapping) for ls in labels]
    nums = [next((view.labels[x] for x in ls if x in view.labels), -1) for ls in mapped]
    element = out_type.value_type
    children = []
    for f in element:
        if f.name == "labels":
            children.append(pa.array(mapped, f.type))
        elif f.name == "label_num":
            children.append(pa.array(nums, pa.int64()))
        else:
            children.append(pc.struct_field(flat, f.name) if len(flat) else pa.array([], f.type))
    mask = flat.is_null() if flat.null_count else None
    structs = pa.StructArray.from_arrays(children, fields=list(element), mask=mask)
    offsets = pc.subtract(array.offsets, array.offsets[0])
    return pa.ListArray.from_arrays(
        offsets, structs, type=out_type, mask=array.is_null() if array.null_count else None
    )


# ---------------------------------------------------------------------------- tasks


@dataclass(frozen=True, eq=False)
class ReadTask:
    """One worker's share of a plan: one segment (or a range of its row groups) and what to do with it.

    Attributes:
        store: where the segment lives.
        dataset_id, version_id: the version read (for a DataView task: the pair).
        number: the segment's place in the version's manifest.
        segment: the segment (key, size, kind, rows, id range).
        columns: the frame-index columns to return (``id`` first).
        row_groups: ``(first, stop)`` of the segment's row groups to read; None for all.
        drop_ids: ids whose rows are dead here (a later segment replaces or deletes them), or None.
        drop_segments: later segments whose ids are dead here (when too many to carry inline).
        frame_filter, filter_columns: rows to keep after that (an Arrow expression and what it reads).
        rows, picks: a DataView's picked rows of the segment (repeats allowed) and their places in
            the view's sequence; the task returns those rows instead of the live ones.
        view: what a DataView adds to each row.
        rows_hint: at most this many rows come out (before the filter).
    """

    store: StoreSpec
    dataset_id: str
    version_id: str
    number: int
    segment: SegmentRef
    columns: tuple[str, ...]
    row_groups: tuple[int, int] | None = None
    drop_ids: pa.Array | None = None
    drop_segments: tuple[SegmentRef, ...] = ()
    frame_filter: pc.Expression | None = None
    filter_columns: tuple[str, ...] = ()
    rows: np.ndarray | None = None
    picks: np.ndarray | None = None
    view: ViewOutput | None = None
    rows_hint: int = 0

    @property
    def schema(self) -> pa.Schema:
        """The schema of the table :func:`read_task` returns."""
        if self.view is not None:
            return view_schema(self.columns)
        return segments.projected_schema(self.columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the filter as Substrait).

        Raises:
            ValidationError: the filter is one Substrait cannot express (pickle the task instead).
        """
        out: dict[str, Any] = {
            "kind": TASK_KIND,
            "store": self.store.to_dict(),
            "dataset_id": self.dataset_id,
            "version_id": self.version_id,
            "number": self.number,
            "segment": _ref_dict(self.segment),
            "columns": list(self.columns),
            "row_groups": list(self.row_groups) if self.row_groups is not None else None,
            "drop_ids": self.drop_ids.to_pylist() if self.drop_ids is not None else None,
            "drop_segments": [_ref_dict(r) for r in self.drop_segments],
            "rows_hint": self.rows_hint,
        }
        if self.frame_filter is not None:
            out["filter"] = _filter_to_json(self.frame_filter, self.filter_columns)
        if self.rows is not None and self.picks is not None:
            out["rows"] = self.rows.tolist()
            out["picks"] = self.picks.tolist()
        if self.view is not None:
            out["view"] = self.view.to_dict()
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON text.

        Raises:
            ValidationError: as :meth:`to_dict`.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: object) -> ReadTask:
        """Read :meth:`to_dict`'s data back.

        Raises:
            ValidationError: not such data (a missing or mistyped field, a segment key outside the
                dataset named, an unknown column).
        """
        if not isinstance(data, Mapping) or data.get("kind") != TASK_KIND:
            raise ValidationError(f"not a read task: {preview(data)}")
        try:
            store = StoreSpec.from_dict(data["store"])
            dataset_id, version_id = str(data["dataset_id"]), str(data["version_id"])
            number = _count(data["number"])
            segment = _ref_of(data["segment"], dataset_id)
            drop_segments = tuple(_ref_of(r, dataset_id) for r in data.get("drop_segments") or ())
            columns = tuple(data["columns"])
            if not columns or not all(isinstance(c, str) for c in columns) or columns[0] != "id":
                raise ValidationError(f"read task: columns {preview(columns)} do not start with 'id'")
            segments.projected_schema(columns)
            groups = data.get("row_groups")
            row_groups = None if groups is None else (_count(groups[0]), _count(groups[1]))
            drops = data.get("drop_ids")
            if drops is not None and not (isinstance(drops, list) and all(isinstance(i, str) for i in drops)):
                raise ValidationError("read task: drop_ids is not a list of ids")
            frame_filter, filter_cols = (
                _filter_from_json(data["filter"]) if data.get("filter") is not None else (None, ())
            )
            rows = picks = None
            if data.get("rows") is not None:
                rows = np.array([_count(r) for r in data["rows"]], dtype=np.int64)
                picks = np.array([_count(p) for p in data["picks"]], dtype=np.int64)
                if len(rows) != len(picks):
                    raise ValidationError("read task: rows and picks differ in length")
            view = ViewOutput.from_dict(data["view"]) if data.get("view") is not None else None
            hint = _count(data.get("rows_hint", 0))
        except (KeyError, TypeError, IndexError):
            raise ValidationError(
                f"read task: a field is missing or of the wrong type: {preview(data)}"
            ) from None
        return cls(
            store=store,
            dataset_id=dataset_id,
            version_id=version_id,
            number=number,
            segment=segment,
            columns=columns,
            row_groups=row_groups,
            drop_ids=pa.array(drops, pa.string()) if drops is not None else None,
            drop_segments=drop_segments,
            frame_filter=frame_filter,
            filter_columns=filter_cols,
            rows=rows,
            picks=picks,
            view=view,
            rows_hint=hint,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReadTask:
        """Read :meth:`to_json`'s text back.

        Raises:
            ValidationError: not JSON, or not a task.
        """
        return cls.from_dict(loads_text(text))


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(f"read task: {preview(value)} is not a count")
    return value


def _ref_dict(ref: SegmentRef) -> dict[str, Any]:
    return {
        "key": ref.key,
        "kind": ref.kind,
        "rows": ref.rows,
        "size": ref.size,
        "version": ref.version,
        "min_id": ref.min_id,
        "max_id": ref.max_id,
    }


def _ref_of(data: object, dataset_id: str) -> SegmentRef:
    if not isinstance(data, Mapping):
        raise ValidationError(f"read task: not a segment: {preview(data)}")
    key = data.get("key")
    parts = layout.parse_key(key) if isinstance(key, str) else None
    if parts is None or parts.kind != "segment" or parts.dataset_id != dataset_id:
        raise ValidationError(f"read task: {preview(key)} is not a segment key of dataset {dataset_id}")
    kind = data.get("kind")
    if kind not in ("frames", "deletes"):
        raise ValidationError(f"read task: segment kind {preview(kind)}")
    bounds = [data.get("min_id"), data.get("max_id")]
    if not all(b is None or isinstance(b, str) for b in bounds):
        raise ValidationError("read task: a segment's id bounds are not strings")
    return SegmentRef(
        key=str(key),
        kind=kind,
        rows=_count(data.get("rows")),
        size=_count(data.get("size")),
        version=str(parts.version_id),
        min_id=bounds[0],
        max_id=bounds[1],
    )


@dataclass(frozen=True, eq=False)
class ReadPlan:
    """The tasks that read a version's effective frames (or a DataView's picks), in order.

    Attributes:
        tasks: in manifest order (a DataView's: pair by pair, each in manifest order).
        schema: the schema every task's table has.
        manifest: the manifest key the plan was built from (None for a DataView, or a version
            without frames): statistics counted over the plan are those of that manifest.
        ordered: a DataView plan whose rows carry their place in the view's sequence (``_pick``).
    """

    tasks: tuple[ReadTask, ...]
    schema: pa.Schema
    manifest: str | None = None
    ordered: bool = False

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[ReadTask]:
        return iter(self.tasks)

    @property
    def rows_hint(self) -> int:
        """At most this many rows come out (dead and filtered rows are counted in)."""
        return sum(t.rows_hint for t in self.tasks)

    def read(self, threads: int = FETCH_THREADS) -> pa.Table:
        """Run every task here (in threads) and concatenate their tables in order.

        Raises:
            CorruptObjectError: a segment is missing or damaged.
            StorageError: the store failed.
        """
        if not self.tasks:
            return self.schema.empty_table()
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(self.tasks)))) as pool:
            tables = list(pool.map(read_task, self.tasks))
        return pa.concat_tables(tables)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data.

        Raises:
            ValidationError: a filter Substrait cannot express.
        """
        return {
            "kind": PLAN_KIND,
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii"),
            "manifest": self.manifest,
            "ordered": self.ordered,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON text.

        Raises:
            ValidationError: as :meth:`to_dict`.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: object) -> ReadPlan:
        """Read :meth:`to_dict`'s data back.

        Raises:
            ValidationError: not such data.
        """
        if (
            not isinstance(data, Mapping)
            or data.get("kind") != PLAN_KIND
            or not isinstance(data.get("tasks"), list)
        ):
            raise ValidationError(f"not a read plan: {preview(data)}")
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(str(data["schema"]), validate=True)))
        except (pa.ArrowException, ValueError, KeyError) as exc:
            raise ValidationError(f"read plan: its schema cannot be read back: {exc}") from None
        manifest = data.get("manifest")
        if manifest is not None and not isinstance(manifest, str):
            raise ValidationError(f"read plan: manifest is {preview(manifest)}")
        return cls(
            tuple(ReadTask.from_dict(t) for t in data["tasks"]), schema, manifest, bool(data.get("ordered"))
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ReadPlan:
        """Read :meth:`to_json`'s text back.

        Raises:
            ValidationError: not JSON, or not a plan.
        """
        return cls.from_dict(loads_text(text))


# ---------------------------------------------------------------------------- planning a version


def output_columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    """The columns a read returns for ``columns`` (``id`` first, as ``get_frames_table``).

    Raises:
        ValidationError: not a list of column names, or a name that is no frame-index column.
    """
    if columns is None:
        return tuple(segments.FRAME_COLUMNS)
    if (
        isinstance(columns, str)
        or not isinstance(columns, Sequence)
        or not all(isinstance(c, str) for c in columns)
    ):
        raise ValidationError(f"columns must be a list of column names, got {preview(columns)}")
    cols = tuple(columns) if "id" in columns else ("id", *columns)
    segments.projected_schema(cols)
    return cols


def plan_version(
    frames: FrameIndex,
    entry: VersionEntry,
    dataset_id: str,
    *,
    columns: Sequence[str] | None = None,
    frame_filter: pc.Expression | None = None,
    rows_per_task: int | None = None,
    inline_drop_ids: int = INLINE_DROP_IDS,
) -> ReadPlan:
    """Plan the read of a version's effective frames (see the module docstring).

    ``rows_per_task`` splits segments of more rows than that into ranges of row groups (reading
    their footers); by default each segment is one task. A task carries the ids dead in its
    segment inline up to ``inline_drop_ids`` of them, else the keys of the later segments that
    hold them.

    Raises:
        ValidationError: a bad column, filter or ``rows_per_task``.
        CorruptObjectError: the manifest or a delta segment is missing or damaged.
        StorageError: the store failed.
    """
    cols = output_columns(columns)
    expression, filter_cols = check_filter(frame_filter)
    for name, value in (("rows_per_task", rows_per_task), ("inline_drop_ids", inline_drop_ids)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValidationError(f"{name} must be a whole number, got {preview(value)}")
    if rows_per_task == 0:
        raise ValidationError("rows_per_task must be at least 1")
    manifest = frames.manifest(entry)
    schema = segments.projected_schema(cols)
    if manifest is None:
        return ReadPlan((), schema, None)
    spec = StoreSpec.of(frames.store)
    refs = manifest.segments
    scan = frames.scan(entry)
    probe, last = scan._probe()  # the ids of the segments that can kill rows: nothing when all are disjoint
    first_delta = max(1, manifest.disjoint)
    tasks: list[ReadTask] = []
    for number, ref in enumerate(refs):
        if ref.kind != "frames" or not ref.rows:
            continue
        drop_ids: pa.Array | None = None
        drop_segments: tuple[SegmentRef, ...] = ()
        if len(probe):
            mask = last > number
            if ref.min_id is not None and ref.max_id is not None:
                inside = pc.and_(pc.greater_equal(probe, ref.min_id), pc.less_equal(probe, ref.max_id))
                mask &= np.asarray(inside.to_numpy(zero_copy_only=False), dtype=bool)
            count = int(mask.sum())
            if count > inline_drop_ids:
                drop_segments = tuple(
                    r for j, r in enumerate(refs) if j > number and j >= first_delta and _overlap(ref, r)
                )
            elif count:
                drop_ids = probe.filter(pa.array(mask))
        base = ReadTask(
            store=spec,
            dataset_id=dataset_id,
            version_id=entry.id,
            number=number,
            segment=ref,
            columns=cols,
            drop_ids=drop_ids,
            drop_segments=drop_segments,
            frame_filter=expression,
            filter_columns=filter_cols,
            rows_hint=ref.rows,
        )
        if rows_per_task is None or ref.rows <= rows_per_task:
            tasks.append(base)
            continue
        meta = _footer(frames, ref)
        start, rows = 0, 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if rows and rows + n > rows_per_task:
                tasks.append(replace(base, row_groups=(start, g), rows_hint=rows))
                start, rows = g, 0
            rows += n
        tasks.append(replace(base, row_groups=(start, meta.num_row_groups), rows_hint=rows))
    return ReadPlan(tuple(tasks), schema, manifest_key(entry))


def manifest_key(entry: VersionEntry) -> str | None:
    """The key of the manifest a version points at (None without frames)."""
    key = entry.frames.get("manifest")
    return str(key) if key else None


def _overlap(a: SegmentRef, b: SegmentRef) -> bool:
    if None in (a.min_id, a.max_id, b.min_id, b.max_id):
        return True
    return not (str(b.max_id) < str(a.min_id) or str(b.min_id) > str(a.max_id))


# ---------------------------------------------------------------------------- reading a task


def _groups_of(meta: pq.FileMetaData, row_groups: tuple[int, int] | None) -> list[int]:
    if row_groups is None:
        return list(range(meta.num_row_groups))
    first, stop = row_groups
    if not 0 <= first <= stop <= meta.num_row_groups:
        raise ValidationError(f"read task: row groups {first}..{stop} are not those of the segment")
    return list(range(first, stop))


def read_groups(
    index: FrameIndex, ref: SegmentRef, meta: pq.FileMetaData, groups: Sequence[int], columns: Sequence[str]
) -> pa.Table:
    """Read row groups of a segment, only ``columns``: their column chunks, coalesced, fetched in parallel.

    Raises:
        CorruptObjectError: the segment is missing or damaged.
        StorageError: the store failed.
    """
    cols = ["id"] if ref.kind == "deletes" else list(columns)

    def run() -> pa.Table:
        ranges = chunk_ranges(meta, groups, cols)
        if ranges and sum(b - a for a, b in ranges) >= WHOLE_SHARE * ref.size:
            data = index.store.get_range(ref.key, 0, ref.size)
            if len(data) != ref.size:
                raise CorruptObjectError(
                    f"{ref.key}: {len(data)} bytes stored, the manifest recorded {ref.size}"
                )
            parts = {0: data}
        else:
            parts = fetch_ranges(index.store, ref.key, ranges)
        file = pq.ParquetFile(PartsFile(index.store, ref.key, ref.size, parts), metadata=meta)
        # decoded on this thread, as a scan's are (``Scan.read`` says why); a plan's tasks run at once
        return file.read_row_groups(list(groups), columns=cols, use_threads=False)

    table: pa.Table = index._guarded(ref, run)
    return table


def _footer(index: FrameIndex, ref: SegmentRef) -> pq.FileMetaData:
    meta: pq.FileMetaData = index._guarded(ref, lambda: index._footer(ref))  # checked: columns and all
    return meta


def _dead_ids(index: FrameIndex, task: ReadTask) -> pa.Array | None:
    """The ids whose rows are dead in the task's segment (None: none are)."""
    pieces = [task.drop_ids] if task.drop_ids is not None and len(task.drop_ids) else []
    for ref in task.drop_segments:
        meta = _footer(index, ref)
        ids = read_groups(index, ref, meta, range(meta.num_row_groups), ["id"]).column("id")
        pieces.extend(ids.chunks)
    if not pieces:
        return None
    return pa.chunked_array(pieces, pa.string()).combine_chunks()


def read_task(task: ReadTask) -> pa.Table:
    """Read one task's rows as an Arrow table (pure: it reads the store and changes nothing).

    A version task returns the segment's live rows (those no later segment replaces or deletes)
    that pass the filter, in segment order, with the task's columns; a DataView task returns its
    picked rows, in the order of their picks, with what a DataView adds (``dataset``, mapped labels
    and ``label_num`` on each ROI, ``_pick``).

    Raises:
        ValidationError: a task that does not fit its segment (row groups or rows beyond it).
        CorruptObjectError: a segment is missing or damaged.
        StorageError: the store failed.
    """
    if not isinstance(task, ReadTask):
        raise ValidationError(f"read_task needs a ReadTask, got {preview(task)}")
    index = frame_index(task.store)
    meta = _footer(index, task.segment)
    groups = _groups_of(meta, task.row_groups)
    if task.rows is not None:
        return _read_picked(index, task, meta)
    wanted = list(dict.fromkeys([*task.columns, *task.filter_columns]))
    table = read_groups(index, task.segment, meta, groups, wanted)
    dead = _dead_ids(index, task)
    if dead is not None and table.num_rows:
        keep = pc.invert(pc.is_in(table.column("id"), value_set=dead))
        if not pc.all(keep).as_py():
            table = table.filter(keep)
    if task.frame_filter is not None and table.num_rows:
        try:
            rows = _filter_rows(table, task.frame_filter, task.filter_columns)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ValidationError(
                f"frame_filter {task.frame_filter} failed on {task.segment.key}: {exc}"
            ) from None
        if len(rows) != table.num_rows:
            table = table.take(pa.array(rows))
    schema = task.schema
    return table.select(schema.names).cast(schema)


def _read_picked(index: FrameIndex, task: ReadTask, meta: pq.FileMetaData) -> pa.Table:
    assert task.rows is not None and task.picks is not None
    rows, picks = task.rows, task.picks
    schema = task.schema
    if len(rows) == 0:
        return schema.empty_table()
    starts = segments.group_starts(meta)
    if int(rows.max()) >= int(starts[-1]):
        raise ValidationError(f"read task: row {int(rows.max())} is beyond segment {task.segment.key}")
    order = np.argsort(picks, kind="stable")
    rows, picks = rows[order], picks[order]
    group_of = np.searchsorted(starts, rows, side="right") - 1
    needed = sorted({int(g) for g in np.unique(group_of)})
    table = read_groups(index, task.segment, meta, needed, list(task.columns))
    # row r of group g sits at (starts[g] - starts of the groups read before it) + (r - starts[g])
    base = np.zeros(meta.num_row_groups, dtype=np.int64)
    at = 0
    for g in needed:
        base[g] = at
        at += int(starts[g + 1] - starts[g])
    local = base[group_of] + (rows - starts[group_of])
    names = segments.projected_schema(task.columns).names
    taken = table.take(pa.array(local, pa.int64())).select(names)
    assert task.view is not None
    return _view_rows(taken, task.view, picks, schema)


# ---------------------------------------------------------------------------- statistics


def task_stats(task: ReadTask) -> dict[str, Any]:
    """Count one task's frames: partial statistics that :func:`combine_stats` adds up.

    Returns ``{"frames", "annotated", "rois", "labels": {name: count}, "content_types": {name: count}}``.
    Plan the read with ``columns=STATS_COLUMNS``.

    Raises:
        ValidationError: the task does not read the statistics' columns.
        CorruptObjectError: a segment is missing or damaged.
    """
    missing = [c for c in STATS_COLUMNS if c not in task.columns]
    if missing:
        raise ValidationError(f"task_stats needs a plan of columns {list(STATS_COLUMNS)}; missing {missing}")
    return stats_of_table(read_task(task))


def combine_stats(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up partial statistics into what ``DatasetVersion.get_stats`` returns.

    Raises:
        ValidationError: a part is not what :func:`task_stats` returns.
    """
    frames = annotated = rois = 0
    labels: dict[str, int] = {}
    types: dict[str, int] = {}
    for part in parts:
        try:
            frames += int(part["frames"])
            annotated += int(part["annotated"])
            rois += int(part["rois"])
            for name, count in part["labels"].items():
                labels[name] = labels.get(name, 0) + int(count)
            for name, count in part["content_types"].items():
                types[name] = types.get(name, 0) + int(count)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValidationError(f"not partial statistics (from task_stats): {preview(part)}") from None
    return {
        "frames": frames,
        "annotated": annotated,
        "unannotated": frames - annotated,
        "rois": rois,
        "labels": sorted_counts(labels),
        "content_types": sorted_counts(types),
    }


@dataclass(frozen=True)
class PlanStats:
    """Statistics counted over a plan's tasks, and the manifest they count (``publish_version(stats=)``)."""

    manifest: str | None
    stats: dict[str, Any]


# ---------------------------------------------------------------------------- compaction


def compact_task(
    tasks: Sequence[ReadTask], *, part: int, segment_rows: int = SEGMENT_ROWS
) -> list[PendingSegment]:
    """Rewrite the live rows of some tasks (of one plan of all columns) as new segments of their version.

    The rows keep everything they hold (provenance included); each new segment is sorted by id.
    Nothing is committed: the driver commits every job's segments at once
    (``DatasetVersion.commit_compaction``).

    Raises:
        ValidationError: the tasks are not of one version, or do not read every frame column.
        CorruptObjectError: a segment is missing or damaged.
        StorageError: the store failed; what was written is garbage for gc.
    """
    if not tasks:
        return []
    first = tasks[0]
    everything = tuple(f.name for f in segments.FRAME_SCHEMA)
    for t in tasks:
        if (t.store, t.dataset_id, t.version_id) != (first.store, first.dataset_id, first.version_id):
            raise ValidationError("compact_task: the tasks are of more than one version")
        if t.columns != everything or t.frame_filter is not None or t.rows is not None:
            raise ValidationError("compact_task: plan the version with every column and no filter")
    index = frame_index(first.store)
    tables = [read_task(t) for t in tasks]
    table = pa.concat_tables(tables) if tables else segments.FRAME_SCHEMA.empty_table()
    if table.num_rows == 0:
        return []
    table = segments.unique_sorted(table.cast(segments.FRAME_SCHEMA))
    out = []
    for seq, start in enumerate(range(0, table.num_rows, segment_rows)):
        ref = index.write_segment(
            first.dataset_id, first.version_id, table.slice(start, segment_rows), "frames"
        )
        out.append(PendingSegment.of(ref, first.dataset_id, part=part, seq=seq))
    return out


def compaction_groups(plan: ReadPlan, rows: int = SEGMENT_ROWS) -> list[list[ReadTask]]:
    """Split a plan's tasks into consecutive groups of about ``rows`` rows (one compaction task each)."""
    groups: list[list[ReadTask]] = []
    held = 0
    for task in plan.tasks:
        if not groups or (held and held + task.rows_hint > rows):
            groups.append([])
            held = 0
        groups[-1].append(task)
        held += task.rows_hint
    return groups


__all__ = [
    "INLINE_DROP_IDS",
    "PICK_COLUMN",
    "PlanStats",
    "STATS_COLUMNS",
    "ReadPlan",
    "ReadTask",
    "StoreSpec",
    "ViewOutput",
    "combine_stats",
    "compact_task",
    "compaction_groups",
    "plan_version",
    "read_task",
    "task_stats",
]
