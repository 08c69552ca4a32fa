"""Frames as Arrow and Parquet: the segment schema, conversions, and the merge of a version's segments.

A segment is an immutable Parquet object holding either frames (one row per frame, ids unique
within it: sorted by id, or as given with an id index, see :data:`INDEXED_SCHEMA`) or deletions
(one ``id`` column: tombstones). A version's effective frames are
its manifest's segments applied in order: a later row with the same id replaces an earlier one, a
later tombstone removes it (docs/design.md invariant 2).

Free-form metadata stays lossless as JSON text (``meta``, ``meta_blob`` and the ``meta`` of sources
and ROIs) and is also projected into typed maps for vectorised queries: ``meta_str`` (strings,
including ISO dates, which sort as text), ``meta_num`` (numbers and booleans as 0/1) with nested keys
flattened to dotted paths (``csv_data.x``). The ``meta`` of sources and ROIs is JSON text only (it is
rarely queried and projecting it would tax every ingest); :func:`parse_meta` turns such a column into
typed columns in one vectorised pass when a query needs it. ``labels`` lists every ROI label of the
frame, in ROI order, and ``roi_count`` counts ROIs, so label filters and statistics never unpack the ROI
structs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from hds_s3.errors import CorruptObjectError, ValidationError
from hds_s3.index import arrowjson

SEGMENT_FORMAT = "hds_s3.frames.v1"
DELETES_FORMAT = "hds_s3.deletes.v1"

_MEDIA = [
    ("uri", pa.string()),
    ("content_type", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("timestamp", pa.int64()),
]
PREVIEW = pa.struct(_MEDIA)
MASK = pa.struct([("id", pa.string()), *_MEDIA])
SOURCE = pa.struct(
    [
        ("id", pa.string()),
        *_MEDIA,
        ("meta", pa.string()),
        ("preview", PREVIEW),
        ("masks", pa.list_(MASK)),
    ]
)
ROI_MASK = pa.struct([("id", pa.string()), ("value", pa.list_(pa.int32()))])
ROI = pa.struct(
    [
        ("id", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("type", pa.string()),
        ("poly", pa.list_(pa.float64())),
        ("confidence", pa.float64()),
        ("sources", pa.list_(pa.string())),
        ("meta", pa.string()),
        ("mask", ROI_MASK),
    ]
)
FRAME_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("context_id", pa.string()),
        ("timestamp", pa.int64()),
        ("sources", pa.list_(SOURCE)),
        ("rois", pa.list_(ROI)),
        ("meta", pa.string()),
        ("meta_blob", pa.string()),
        ("saved", pa.int64()),
        ("saved_in_version", pa.string()),
        ("updated_in_version", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("roi_count", pa.int32()),
        ("meta_str", pa.map_(pa.string(), pa.string())),
        ("meta_num", pa.map_(pa.string(), pa.float64())),
    ],
    metadata={b"hds_s3": SEGMENT_FORMAT.encode()},
)
#: The frame's own columns (what ``get_frames_table()`` returns by default); the rest are derived for queries.
FRAME_COLUMNS = (
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
)
DELETES_SCHEMA = pa.schema([("id", pa.string())], metadata={b"hds_s3": DELETES_FORMAT.encode()})

#: A frames segment whose rows are in the order they were given (an Arrow ingest stores its input
#: without reordering it: reordering nested rows is most of what sorting a segment costs). Its ids
#: are unique, as in every frames segment, and two more columns index them: ``sorted_id``, the
#: segment's ids sorted, and ``sorted_row``, the row holding each. They are columns of the same file
#: (Parquet does not mind that they do not describe the row beside them), so the row groups of
#: ``sorted_id`` cover ascending id ranges as those of ``id`` do in a sorted segment: a look-up
#: reads one chunk of them, then the one row group holding the row.
INDEXED_FORMAT = "hds_s3.frames.indexed.v1"
SORTED_ID = "sorted_id"
SORTED_ROW = "sorted_row"
INDEXED_SCHEMA = pa.schema(
    [*FRAME_SCHEMA, pa.field(SORTED_ID, pa.string()), pa.field(SORTED_ROW, pa.int32())],
    metadata={b"hds_s3": INDEXED_FORMAT.encode()},
)

#: Rows per Parquet row group: small enough that a point look-up reads one small group.
ROW_GROUP_ROWS = 16384

_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# orjson writes the same compact UTF-8 JSON (keys in order) several times faster. Subclasses of the
# JSON types, dates and dataclasses are passed to the fallback: Python's encoder, which also takes
# integers beyond 64 bits and text orjson refuses. orjson writes NaN as null: callers refuse NaN first.
JSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_text(value: Any) -> str:
    """Compact UTF-8 JSON of a metadata value (keys in order); the caller has refused NaN and infinity."""
    try:
        return orjson.dumps(value, option=JSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _json_text(value)


def _json(value: Any) -> str | None:
    return None if value is None else json_text(value)


def flatten_meta(meta: Mapping[str, Any], prefix: str, strs: dict[str, str], nums: dict[str, float]) -> None:
    """Add the searchable values of ``meta`` to ``strs`` and ``nums`` under dotted key paths.

    Strings go to ``strs``; numbers and booleans (as 0/1) to ``nums``; nested mappings are walked;
    anything else (lists, None) is not projected.
    """
    for key, value in meta.items():
        path = prefix + key
        if isinstance(value, bool):
            nums[path] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)):
            nums[path] = float(value)
        elif isinstance(value, str):
            strs[path] = value
        elif isinstance(value, Mapping):
            flatten_meta(value, path + ".", strs, nums)


def _source_row(src: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(src)
    row["meta"] = _json(src.get("meta") or None)
    return row


def _roi_row(roi: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(roi)
    row["meta"] = _json(roi.get("meta") or None)
    return row


def frame_row(frame: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one canonical frame dict (:mod:`hds_s3.model.frames`) into one Arrow row of the segment schema."""
    meta = frame.get("meta") or {}
    strs: dict[str, str] = {}
    nums: dict[str, float] = {}
    flatten_meta(meta, "", strs, nums)
    rois = frame.get("rois") or []
    labels = [label for roi in rois for label in roi.get("labels") or ()]
    return {
        "id": frame["id"],
        "context_id": frame.get("context_id"),
        "timestamp": frame.get("timestamp") or 0,
        "sources": [_source_row(s) for s in frame.get("sources") or ()],
        "rois": [_roi_row(r) for r in rois],
        "meta": _json(meta or None),
        "meta_blob": _json(frame.get("meta_blob") or None),
        "saved": frame.get("saved"),
        "saved_in_version": frame.get("saved_in_version"),
        "updated_in_version": frame.get("updated_in_version"),
        "labels": labels,
        "roi_count": len(rois),
        "meta_str": list(strs.items()),
        "meta_num": list(nums.items()),
    }


def frames_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Build a segment table from rows made by :func:`frame_row`: ids made unique (last wins), sorted."""
    return unique_sorted(pa.Table.from_pylist(list(rows), schema=FRAME_SCHEMA))


def unique_sorted(table: pa.Table, positions: Sequence[int] | None = None) -> pa.Table:
    """Keep one row per id, the one with the highest position (default: the last), sorted by id.

    ``positions`` gives each row's place in the caller's input, when rows were gathered out of order.
    """
    order = unique_order(table, positions)
    return table if order is None else take_columns(table, order)


def unique_order(table: pa.Table, positions: Sequence[int] | None = None) -> pa.Array | None:
    """The rows :func:`unique_sorted` keeps, in id order; None when that is all rows as they are."""
    if table.num_rows == 0:
        return None
    ids = table.column("id")
    if ids_rise(ids):  # sorted and unique already (a compaction's rows): no hashing
        return None
    rows = last_rows(table, positions)
    if rows is not None:
        ids = ids.take(rows)
        if ids_rise(ids):
            return rows  # the rows kept are in id order already
    by_id = pc.sort_indices(ids)
    return by_id if rows is None else rows.take(by_id)


def last_rows(table: pa.Table, positions: Sequence[int] | None = None) -> pa.Array | None:
    """The rows holding the last of each id (the highest position), in no order; None when no id is twice.

    ``positions`` gives each row's place in the caller's input, when rows were gathered out of order.
    """
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return None
    order = pa.array(positions if positions is not None else range(table.num_rows), pa.int64())
    index = pa.array(range(table.num_rows), pa.int64())
    ranked = pa.table({"id": ids, "_pos": order, "_row": index}).sort_by([("_pos", "ascending")])
    last = ranked.group_by("id", use_threads=False).aggregate([("_row", "last")])
    rows: pa.Array = last.column("_row_last").combine_chunks()
    return rows


def input_order(table: pa.Table) -> pa.Table:
    """The rows of ``table`` (ids unique) as given, with the id index: an indexed segment table.

    The result (:data:`INDEXED_SCHEMA`) holds the rows in their order, then ``sorted_id`` and
    ``sorted_row``. No row is moved: only the ids are sorted.
    """
    ids = table.column("id")
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    by_id = pc.sort_indices(ids)
    arrays = [*table.select(FRAME_SCHEMA.names).columns, ids.take(by_id), pc.cast(by_id, pa.int32())]
    return pa.Table.from_arrays(arrays, schema=INDEXED_SCHEMA)


def schema_of(kind: str, schema: pa.Schema) -> pa.Schema:
    """The segment schema a table of ``kind`` (``frames`` or ``deletes``) with these columns is written as."""
    if kind == "deletes":
        return DELETES_SCHEMA
    return INDEXED_SCHEMA if is_indexed(schema) else FRAME_SCHEMA


def is_indexed(schema: pa.Schema) -> bool:
    """Whether a frames segment with this (Arrow) schema keeps its rows as given, with the id index."""
    return SORTED_ID in schema.names


def group_starts(meta: pq.FileMetaData) -> np.ndarray:
    """The first row of each row group of a segment, and its row count at the end."""
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def key_column(meta: pq.FileMetaData) -> int:
    """The leaf column whose row-group statistics bound a segment's ids: ``id``, or ``sorted_id``."""
    at = int(meta.num_columns) - 2
    return at if at > 0 and meta.schema.column(at).path == SORTED_ID else 0


def ids_rise(ids: pa.Array | pa.ChunkedArray) -> bool:
    """Whether these ids strictly rise from one row to the next (sorted, none twice); False if one is null."""
    if ids.null_count:
        return False
    if len(ids) < 2:
        return True
    flat = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return bool(pc.all(pc.less(flat.slice(0, len(flat) - 1), flat.slice(1))).as_py())


def take_columns(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)`` with the columns taken in parallel threads (Arrow releases the GIL)."""
    if table.num_rows < _PARALLEL_ROWS // 4 or table.num_columns < 2:
        return table.take(indices)
    with ThreadPoolExecutor(max_workers=_MERGE_THREADS) as pool:
        columns = list(pool.map(lambda c: c.take(indices), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


def deletes_table(ids: Iterable[str]) -> pa.Table:
    """Build a tombstone segment table from frame ids (unique, sorted)."""
    unique = sorted(set(ids))
    return pa.table({"id": pa.array(unique, pa.string())}, schema=DELETES_SCHEMA)


def to_parquet(table: pa.Table) -> bytes:
    """Serialise a segment table as Parquet bytes (small row groups; id statistics; see :func:`_codecs`).

    The sink is Arrow's own buffer, not a Python file object: the writer then never needs the GIL,
    so it runs at full speed beside a thread busy in Python (``add_frames`` converts the next batch
    meanwhile; through a Python sink every one of its many small writes waited for the GIL).
    """
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=_codecs(table.schema),
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=list(_dictionary_columns(table.schema)),
        # what look-ups use (id ranges); the other columns' cost writes
        write_statistics=[SORTED_ID if is_indexed(table.schema) else "id"],
        write_page_checksum=True,  # a page damaged in the bucket is refused when read, never served
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data


#: Leaf columns whose values are mostly distinct (ids, URIs, JSON text): written plain, as a dictionary
#: of them would be as large as the values and costs a hash per value to write and a gather to read.
#: Measured on COCO-like frames: plain is smaller and 20-40 % cheaper to decode for each of these,
#: while a dictionary keeps labels, types, sizes and coordinates several times smaller.
PLAIN_COLUMNS = frozenset(
    {
        "id",
        SORTED_ID,
        SORTED_ROW,
        "context_id",
        "sources.list.element.uri",
        "rois.list.element.id",
        "meta",
        "meta_blob",
        "meta_str.key_value.value",
        "meta_num.key_value.value",
    }
)


def _leaf_paths(name: str, kind: pa.DataType) -> Iterable[str]:
    """The Parquet paths of the leaf columns of an Arrow field (``rois.list.element.labels.list.element``)."""
    if pa.types.is_map(kind):
        yield from _leaf_paths(f"{name}.key_value.key", kind.key_type)
        yield from _leaf_paths(f"{name}.key_value.value", kind.item_type)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        yield from _leaf_paths(f"{name}.list.element", kind.value_type)
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            yield from _leaf_paths(f"{name}.{kind.field(i).name}", kind.field(i).type)
    else:
        yield name


@functools.lru_cache(maxsize=16)
def _schema_leaves(schema: pa.Schema) -> tuple[str, ...]:
    """The Parquet paths of every leaf column of ``schema``, in order."""
    return tuple(path for field in schema for path in _leaf_paths(field.name, field.type))


def _dictionary_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The leaf columns of ``schema`` written with a dictionary: all but :data:`PLAIN_COLUMNS`."""
    return tuple(path for path in _schema_leaves(schema) if path not in PLAIN_COLUMNS)


#: Leaf columns compressed with zstd rather than lz4. Ids are read alone far more often than any
#: other column (update and delete checks, point look-ups, which rows a later segment replaces):
#: zstd stores random hex ids in about half of lz4's bytes (which cannot shrink them), for a
#: decoding cost that does not show beside the other columns'. Everything else is lz4, the
#: cheapest to decode (zstd throughout is a third smaller but reads 10-20 % slower). The row numbers
#: of an id index, a permutation lz4 cannot shrink, take 60 % of lz4's bytes in zstd.
ZSTD_COLUMNS = frozenset({"id", SORTED_ID, SORTED_ROW})


def _codecs(schema: pa.Schema) -> dict[str, str]:
    """The compression of each leaf column of ``schema``: zstd for :data:`ZSTD_COLUMNS`, else lz4."""
    return {path: "zstd" if path in ZSTD_COLUMNS else "lz4" for path in _schema_leaves(schema)}


@functools.cache
def _empty_segment() -> bytes:
    """An empty frames segment, written on first use (not at import)."""
    return to_parquet(FRAME_SCHEMA.empty_table())


@functools.cache
def projected_schema(columns: tuple[str, ...]) -> pa.Schema:
    """The schema of a frames segment read with ``columns``, exactly as :func:`from_parquet` gives it.

    A column is a top-level name (``"rois"``) or a Parquet column path that keeps only part of a
    nested column (``"rois.list.element.labels"`` reads each ROI's labels and nothing else).

    Raises:
        ValidationError: a column is neither (Parquet itself would silently read nothing).
    """
    empty = pq.ParquetFile(pa.BufferReader(_empty_segment()))
    paths = [empty.schema.column(i).path for i in range(len(empty.schema))]
    for column in columns:
        if not any(path == column or path.startswith(column + ".") for path in paths):
            raise ValidationError(
                f"{column!r} is not a column of the frame index; its columns are "
                f"{', '.join(FRAME_SCHEMA.names)}, or a Parquet path inside one "
                "(such as 'rois.list.element.labels')"
            )
    return empty.read(columns=list(columns)).schema


def check_ids(ids: pa.Array | pa.ChunkedArray, key: str) -> None:
    """Refuse a segment whose ids (as read, in order) do not strictly rise: sorted, none twice, none null.

    Raises:
        CorruptObjectError: naming ``key``: a segment holding an id twice would serve its frame twice.
    """
    if not ids_rise(ids):
        raise CorruptObjectError(
            f"{key}: its frame ids are not sorted and unique (an id held twice, or out of order); "
            "the segment is damaged (hds fsck --deep tells what else is)"
        )


def check_index(table: pa.Table, key: str) -> None:
    """Refuse an indexed segment (read whole) whose id index is not its ids sorted, each with its row.

    Raises:
        CorruptObjectError: naming ``key`` and what disagrees.
    """
    check_ids(table.column(SORTED_ID), key)
    rows = table.column(SORTED_ROW).to_numpy().astype(np.int64)
    n = table.num_rows
    if rows.min(initial=0) < 0 or rows.max(initial=-1) >= n or len(np.unique(rows)) != n:
        raise CorruptObjectError(f"{key}: its id index does not name each of its rows once; it is damaged")
    if not table.column("id").take(pa.array(rows)).equals(table.column(SORTED_ID)):
        raise CorruptObjectError(f"{key}: its id index does not hold the ids of its rows; it is damaged")


def check_footer(meta: pq.FileMetaData, key: str, rows: int, min_id: str | None, max_id: str | None) -> None:
    """Check a segment's footer against its manifest reference: its row count and its id range.

    The row groups' statistics of the id column (when written) must rise from one group to the next
    and lie within ``[min_id, max_id]``, so a look-up that trusts the manifest's range finds every
    frame the segment holds.

    Raises:
        CorruptObjectError: naming ``key`` and what disagrees.
    """
    if meta.num_rows != rows:
        raise CorruptObjectError(
            f"{key}: the segment holds {meta.num_rows} rows, its manifest recorded {rows}; it is damaged"
        )
    last: str | None = None
    key_at = key_column(meta)
    for group in range(meta.num_row_groups):
        column = meta.row_group(group).column(key_at)
        stats = column.statistics if column.is_stats_set else None
        if stats is None or not stats.has_min_max:
            continue
        low, high = stats.min, stats.max
        if not isinstance(low, str) or not isinstance(high, str) or low > high:
            raise CorruptObjectError(f"{key}: row group {group} has no valid id range; it is damaged")
        if (
            (last is not None and low <= last)
            or (min_id is not None and low < min_id)
            or (max_id is not None and high > max_id)
        ):
            raise CorruptObjectError(
                f"{key}: its ids ({low}..{high} in row group {group}) lie outside the range its manifest "
                f"recorded ({min_id}..{max_id}) or out of order; it is damaged"
            )
        last = high


def from_parquet(data: bytes, key: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a segment written by :func:`to_parquet`.

    The file's schema (from its footer) must be exactly that of its format, whatever ``columns``
    are read, so a damaged or foreign file is reported by every read, not only by those that
    happen to touch a missing column.

    Raises:
        CorruptObjectError: naming ``key``, when the bytes are not a segment of a known format.
    """
    try:
        file = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        schema = file.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptObjectError(f"{key}: not a readable Parquet segment ({exc})") from exc
    fmt = (schema.metadata or {}).get(b"hds_s3", b"").decode()
    expected = SCHEMAS.get(fmt)
    if expected is None:
        raise CorruptObjectError(f"{key}: not an hds_s3 segment (format {fmt!r})")
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in expected]:
        raise CorruptObjectError(
            f"{key}: its columns ({', '.join(schema.names)}) are not those of a {fmt} segment"
        )
    if columns is None and fmt == INDEXED_FORMAT:
        columns = FRAME_SCHEMA.names  # the frames; the index is read by name
    try:
        return file.read(columns=list(columns) if columns is not None else None, use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptObjectError(f"{key}: not a readable Parquet segment ({exc})") from exc


#: The schema of each segment format, by the name its Parquet metadata gives.
SCHEMAS = {SEGMENT_FORMAT: FRAME_SCHEMA, INDEXED_FORMAT: INDEXED_SCHEMA, DELETES_FORMAT: DELETES_SCHEMA}


def merge(segments: Sequence[tuple[str, pa.Table]], schema: pa.Schema | None = None) -> pa.Table:
    """Apply segments in order (``("frames" | "deletes", table)``) and return the effective frames.

    A row survives when no later segment holds its id (a later frame replaces it, a later tombstone
    removes it). The ids of all segments are dictionary-encoded once; only the ids that occur more
    than once (the deltas of a chain, a small share) are then sorted out in numpy to find each one's
    last occurrence. When no id occurs twice nothing is removed at all. A segment that loses rows
    is filtered (segments in parallel, as Arrow releases the GIL), or cut into a few zero-copy slices
    when its dead rows form only a few runs; the result has one chunk per segment or slice.
    """
    frames = [(i, t) for i, (kind, t) in enumerate(segments) if kind == "frames" and t.num_rows]
    if not frames:
        return schema.empty_table() if schema is not None else FRAME_SCHEMA.empty_table()
    if len(segments) == 1:
        return frames[0][1]
    keep = _last_occurrences([t.column("id") for _, t in segments])
    if keep is None:
        return pa.concat_tables([t for _, t in frames])
    starts = np.concatenate(([0], np.cumsum([t.num_rows for _, t in segments])))
    masks = [keep[starts[i] : starts[i + 1]] for i, _ in frames]
    filtering = sum(1 for m in masks if not m.all())
    if filtering > 1 and len(keep) >= _PARALLEL_ROWS:
        with ThreadPoolExecutor(max_workers=min(filtering, _MERGE_THREADS)) as pool:
            kept = list(pool.map(_keep, [t for _, t in frames], masks))
    else:
        kept = [_keep(t, m) for (_, t), m in zip(frames, masks, strict=True)]
    return pa.concat_tables(kept)


#: Rows above which the segments losing rows are filtered in parallel threads.
_PARALLEL_ROWS = 200_000
_MERGE_THREADS = 4
#: A segment whose dead rows form at most this many runs is cut into slices instead of copied.
_MAX_SLICED_RUNS = 8


def _last_occurrences(columns: Sequence[pa.Array | pa.ChunkedArray]) -> np.ndarray | None:
    """For the ids of all segments, in order: True where no later position holds the same id.

    Returns ``None`` when every id occurs once (then every row is the last of its id).
    """
    chunks = [a for c in columns for a in (c.chunks if isinstance(c, pa.ChunkedArray) else [c]) if len(a)]
    ids = pa.chunked_array(chunks, pa.string()).combine_chunks()
    encoded = pc.dictionary_encode(ids, null_encoding="encode")
    if len(encoded.dictionary) == len(ids):
        return None
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    counts = np.bincount(codes, minlength=len(encoded.dictionary))
    repeated = np.flatnonzero(counts[codes] > 1)  # positions, ascending
    # The first position of each code in the reversed run is the last position in the forward one.
    _, first_reversed = np.unique(codes[repeated][::-1], return_index=True)
    keep = np.ones(len(ids), dtype=bool)
    keep[repeated] = False
    keep[repeated[len(repeated) - 1 - first_reversed]] = True
    return keep


def _keep(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows where ``keep`` is true: a few zero-copy slices if dead rows form few runs, else a filter."""
    if keep.all():
        return table
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
    if len(edges) // 2 > _MAX_SLICED_RUNS:
        return table.filter(pa.array(keep))
    return pa.concat_tables(
        [table.slice(int(a), int(b - a)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]
        or [table.slice(0, 0)]
    )


def parse_meta(texts: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Parse a column of JSON meta texts (null = no meta) into one typed column per key path.

    Nested keys become dotted column names (``hash.source``); the result has one row per input
    value, null where that value lacks the key. The parse runs in Arrow's JSON reader; when the
    values disagree on a key's type (which the reader refuses), that key becomes text (the JSON of
    each value, strings unquoted) after a per-value parse.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    if len(texts) == 0:
        return pa.table({})
    filled = pc.fill_null(texts.cast(pa.string()), "{}")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(filled)], pa.int32()), filled), "\n")
    try:
        table = arrowjson.read_objects(joined[0].as_buffer(), pajson.ParseOptions())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _parse_meta_slowly(filled.to_pylist())
    while any(pa.types.is_struct(field.type) for field in table.schema):
        table = table.flatten()
    return table


def _parse_meta_slowly(texts: list[str]) -> pa.Table:
    columns: dict[str, list[Any]] = {}
    for row, text in enumerate(texts):
        strs: dict[str, str] = {}
        nums: dict[str, float] = {}
        flatten_meta(json.loads(text), "", strs, nums)
        for path, value in (*strs.items(), *nums.items()):
            columns.setdefault(path, [None] * len(texts))[row] = value
    out: dict[str, pa.Array] = {}
    for path, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds == {str, float}:
            values = [_text(v) for v in values]
        out[path] = pa.array(values)
    return pa.table(out) if out else pa.table({"_": pa.nulls(len(texts))}).drop(["_"])


def _text(value: str | float | None) -> str | None:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


def row_to_frame(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one Arrow row (as ``to_pylist`` gives it) back into the canonical frame dict."""
    out = {
        "id": row["id"],
        "context_id": row["context_id"],
        "timestamp": row["timestamp"],
        "sources": [_unjson(s) for s in row["sources"] or ()],
        "rois": [_unjson(r) for r in row["rois"] or ()],
        "meta": json.loads(row["meta"]) if row["meta"] is not None else {},
        "meta_blob": json.loads(row["meta_blob"]) if row["meta_blob"] is not None else {},
    }
    for name in ("saved", "saved_in_version", "updated_in_version"):
        if row.get(name) is not None:
            out[name] = row[name]
    return out


def _unjson(item: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(item)
    out["meta"] = json.loads(item["meta"]) if item.get("meta") is not None else {}
    return out
