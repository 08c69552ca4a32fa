"""Frames as Arrow and Parquet: the segment schema, conversions, and the merge of a version's segments.

A segment is an immutable Parquet object holding either frames (one row per frame, sorted by id,
ids unique within it) or deletions (one ``id`` column: tombstones). A version's effective frames are
its manifest's segments applied in order: a later row with the same id replaces an earlier one, a
later tombstone removes it (DESIGN.md invariant 2).

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

import gc
import io
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from hds_s3.errors import CorruptObjectError

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

#: Rows per Parquet row group: small enough that a point look-up reads one small group.
ROW_GROUP_ROWS = 16384

_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# orjson writes the same compact UTF-8 JSON (keys in order) several times faster. Subclasses of the
# JSON types, dates and dataclasses are passed to the fallback: Python's encoder, which also takes
# integers beyond 64 bits and text orjson refuses. orjson writes NaN as null: callers refuse NaN first.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _json_text(value)


def _json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _flatten(meta: Mapping[str, Any], prefix: str, strs: dict[str, str], nums: dict[str, float]) -> None:
    for key, value in meta.items():
        path = prefix + key
        if isinstance(value, bool):
            nums[path] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)):
            nums[path] = float(value)
        elif isinstance(value, str):
            strs[path] = value
        elif isinstance(value, Mapping):
            _flatten(value, path + ".", strs, nums)


def _source_row(src: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(src)
    row["meta"] = _json(src.get("meta") or None)
    return row


def _roi_row(roi: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(roi)
    row["meta"] = _json(roi.get("meta") or None)
    return row


def frame_row(frame: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one canonical frame dict (see :mod:`hds_s3.frames`) into one Arrow row of the segment schema."""
    meta = frame.get("meta") or {}
    strs: dict[str, str] = {}
    nums: dict[str, float] = {}
    _flatten(meta, "", strs, nums)
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
    if table.num_rows == 0:
        return table
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        order = pa.array(positions if positions is not None else range(table.num_rows), pa.int64())
        index = pa.array(range(table.num_rows), pa.int64())
        ranked = pa.table({"id": ids, "_pos": order, "_row": index}).sort_by([("_pos", "ascending")])
        last = ranked.group_by("id", use_threads=False).aggregate([("_row", "last")])
        table = table.take(last.column("_row_last"))
    ids = table.column("id")
    if table.num_rows > 1 and pc.all(pc.less(ids.slice(0, table.num_rows - 1), ids.slice(1))).as_py():
        return table  # already in id order: no copy
    return table.take(pc.sort_indices(ids))


def deletes_table(ids: Iterable[str]) -> pa.Table:
    """Build a tombstone segment table from frame ids (unique, sorted)."""
    unique = sorted(set(ids))
    return pa.table({"id": pa.array(unique, pa.string())}, schema=DELETES_SCHEMA)


def to_parquet(table: pa.Table) -> bytes:
    """Serialise a segment table as Parquet bytes (lz4: cheapest to decode; small row groups; statistics)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="lz4",
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
    )
    return sink.getvalue()


def from_parquet(data: bytes, key: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a segment written by :func:`to_parquet`.

    The file's schema (from its footer) must be exactly that of its format, whatever ``columns``
    are read, so a damaged or foreign file is reported by every read, not only by those that
    happen to touch a missing column.

    Raises:
        CorruptObjectError: naming ``key``, when the bytes are not a segment of a known format.
    """
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        schema = file.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptObjectError(f"{key}: not a readable Parquet segment ({exc})") from exc
    fmt = (schema.metadata or {}).get(b"hds_s3", b"").decode()
    if fmt not in (SEGMENT_FORMAT, DELETES_FORMAT):
        raise CorruptObjectError(f"{key}: not an hds_s3 segment (format {fmt!r})")
    expected = FRAME_SCHEMA if fmt == SEGMENT_FORMAT else DELETES_SCHEMA
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in expected]:
        raise CorruptObjectError(
            f"{key}: its columns ({', '.join(schema.names)}) are not those of a {fmt} segment"
        )
    try:
        return file.read(columns=list(columns) if columns is not None else None, use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptObjectError(f"{key}: not a readable Parquet segment ({exc})") from exc


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
        empty = FRAME_SCHEMA.empty_table()
        return empty.select(schema.names) if schema is not None else empty
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
        table = pajson.read_json(
            pa.BufferReader(joined[0].as_buffer()), read_options=pajson.ReadOptions(use_threads=False)
        )
    except pa.ArrowInvalid:
        return _parse_meta_slowly(filled.to_pylist())
    while any(pa.types.is_struct(field.type) for field in table.schema):
        table = table.flatten()
    return table


def _parse_meta_slowly(texts: list[str]) -> pa.Table:
    columns: dict[str, list[Any]] = {}
    for row, text in enumerate(texts):
        strs: dict[str, str] = {}
        nums: dict[str, float] = {}
        _flatten(json.loads(text), "", strs, nums)
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


# ---------------------------------------------------------------------------- the columnar fast path

_TOP_KEYS = frozenset({"id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob"})
_SOURCE_KEYS = frozenset(
    {"id", "uri", "content_type", "width", "height", "timestamp", "meta", "preview", "masks"}
)
_ROI_KEYS = frozenset({"id", "labels", "type", "poly", "confidence", "sources", "meta", "mask"})
_FAST_TYPES = frozenset({"box2d", "poly2d", "points2d", "label"})
# Sizes are read as int64 and range-checked before they become int32 (see _columns).
_SOURCE_IN = pa.struct(
    [
        (f.name, pa.int64() if f.name in ("width", "height") else f.type)
        for f in SOURCE
        if f.name not in ("meta", "preview", "masks")
    ]
)
_INT32_MAX = 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ARROW_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
_ROI_IN = pa.struct([(f.name, f.type) for f in ROI if f.name not in ("meta", "mask")])
_FLOAT_MAX = sys.float_info.max
_CONTROL = "[\\x00-\\x1f\\x7f-\\x9f]"
_SEPARATOR = -999999999.0


class _Slow(Exception):
    """Internal: this frame needs the per-frame path (to be normalised, or to be told what is wrong)."""


def _meta_json(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Slow
    if not value:
        return None
    _check_keys(value)
    return _dumps(value)


def _check_keys(value: object) -> None:
    """Raise _Slow unless every key is a plain name and every value plain JSON (finite floats)."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not key or "." in key or "$" in key:
                raise _Slow
            _check_value(item)
    else:
        for item in value:  # type: ignore[attr-defined]
            _check_value(item)


def _check_value(item: object) -> None:
    kind = type(item)
    if kind is dict or kind is list:
        _check_keys(item)
    elif kind is float:
        if not -_FLOAT_MAX <= item <= _FLOAT_MAX:  # type: ignore[operator]  # NaN compares false
            raise _Slow
    elif kind is not str and kind is not int and kind is not bool and item is not None:
        raise _Slow


def _bad_names(names: pa.Array) -> np.ndarray:
    """True where a non-null name is empty, blank, over 255 bytes or unprintable (checked per value).

    Unprintable is wider than the per-frame rule (control characters): such rows only take the
    per-frame path, which then decides exactly.
    """
    if len(names) == 0:
        return np.zeros(0, dtype=bool)
    encoded = pc.dictionary_encode(names)
    values = encoded.dictionary
    bad = pc.or_(
        pc.or_(
            pc.greater(pc.binary_length(values), 255),
            pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0),
        ),
        pc.invert(pc.utf8_is_printable(values)),
    )
    per_value = bad.to_numpy(zero_copy_only=False)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    out = np.zeros(len(names), dtype=bool)
    valid = ~np.asarray(encoded.indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out[valid] = per_value[indices[valid].astype(np.int64)]
    return out


def fast_frames_table(
    frames: Sequence[Any], *, version_id: str, now: int, hash_id: Any, guess_type: Any
) -> tuple[pa.Table, list[int], list[int]]:
    """Convert frame dicts to a segment table column by column.

    Returns the table (unsorted), the input index of each of its rows, and the indices left out.

    Frames whose shape is common and whose checks are vectorisable (sources without masks or
    previews; box, polygon, point and label ROIs) are converted here; every other one, and every one
    failing a check, is left for the per-frame path, which normalises it or says what is wrong. For
    the frames it takes, the rows are exactly those the per-frame path would build.

    The cyclic garbage collector is paused meanwhile: the pass allocates only acyclic objects, and
    with millions of input objects alive its full collections would cost more than the work.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _fast_frames_table(
            frames, version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_type
        )
    finally:
        if enabled:
            gc.enable()


def _fast_frames_table(
    frames: Sequence[Any], *, version_id: str, now: int, hash_id: Any, guess_type: Any
) -> tuple[pa.Table, list[int], list[int]]:
    ok: list[int] = []
    slow: list[int] = []
    ids: list[str | None] = []
    metas: list[str | None] = []
    blobs: list[str | None] = []
    strs: list[list[tuple[str, str]]] = []
    nums: list[list[tuple[str, float]]] = []
    src_meta: list[str | None] = []
    roi_meta: list[str | None] = []
    for i, d in enumerate(frames):
        n_src, n_roi = len(src_meta), len(roi_meta)
        try:
            if type(d) is not dict or not d.keys() <= _TOP_KEYS:
                raise _Slow
            sources = d.get("sources")
            if type(sources) is not list or not sources:
                raise _Slow
            sids = set()
            for s in sources:
                if (
                    type(s) is not dict
                    or not s.keys() <= _SOURCE_KEYS
                    or s.get("masks")
                    or s.get("preview") is not None
                ):
                    raise _Slow
                w, h = s.get("width"), s.get("height")
                if (w is not None and type(w) is not int) or (h is not None and type(h) is not int):
                    raise _Slow
                sids.add(s.get("id"))
                src_meta.append(_meta_json(s.get("meta")))
            for r in d.get("rois") or ():
                if type(r) is not dict or not r.keys() <= _ROI_KEYS or r.get("type") not in _FAST_TYPES:
                    raise _Slow
                if r.get("mask") is not None or (r.get("sources") and not sids.issuperset(r["sources"])):
                    raise _Slow
                roi_meta.append(_meta_json(r.get("meta")))
            meta = d.get("meta")
            meta_text = _meta_json(meta)
            blob_text = _meta_json(d.get("meta_blob"))
            fid = d.get("id")
            if fid is None:
                ts = d.get("timestamp")
                if ts is None:
                    ts = sources[0].get("timestamp") or 0
                if type(ts) is not int:
                    raise _Slow
                fid = hash_id([(s["id"], s["uri"]) for s in sources], ts)
        except (_Slow, TypeError, ValueError, KeyError):
            del src_meta[n_src:], roi_meta[n_roi:]
            slow.append(i)
            continue
        ok.append(i)
        ids.append(fid)
        metas.append(meta_text)
        blobs.append(blob_text)
        s_items: dict[str, str] = {}
        n_items: dict[str, float] = {}
        if meta:
            _flatten(meta, "", s_items, n_items)
        strs.append(list(s_items.items()))
        nums.append(list(n_items.items()))
    if not ok:
        return FRAME_SCHEMA.empty_table(), [], slow
    chosen = [frames[i] for i in ok]
    try:
        table = _columns(
            chosen, ids, metas, blobs, strs, nums, src_meta, roi_meta, version_id, now, guess_type
        )
    except _ARROW_REFUSED:
        # Arrow refused a value the loop let through. Only now look for the rows that hold one
        # (text UTF-8 cannot encode, integers beyond 64 bits), leave them to the per-frame path
        # and convert the others; if Arrow still refuses, everything takes the per-frame path.
        refused = [j for j, d in enumerate(chosen) if _arrow_may_refuse(d)]
        if not refused:
            return FRAME_SCHEMA.empty_table(), [], sorted(slow + ok)
        return _without(
            frames, ok, slow, refused, version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_type
        )
    bad = _invalid_rows(table)
    if pc.any(bad).as_py():
        flagged = set(pc.indices_nonzero(bad).to_pylist())
        slow.extend(ok[j] for j in sorted(flagged))
        ok = [i for j, i in enumerate(ok) if j not in flagged]
        table = table.filter(pc.invert(bad))
    return table, ok, sorted(slow)


def _arrow_may_refuse(d: dict[str, Any]) -> bool:
    """True when a frame dict holds text UTF-8 cannot encode or an integer size or time out of range.

    Only called after Arrow refused a batch, to find the rows to leave to the per-frame path.
    """
    try:
        json.dumps(d, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return True
    values = [d.get("timestamp")]
    for src in d["sources"]:
        values += (src.get("width"), src.get("height"), src.get("timestamp"))
    return any(v is not None and (type(v) is not int or not _INT64_MIN <= v <= _INT64_MAX) for v in values)


def _without(
    frames: Sequence[Any],
    ok: list[int],
    slow: list[int],
    refused: list[int],
    *,
    version_id: str,
    now: int,
    hash_id: Any,
    guess_type: Any,
) -> tuple[pa.Table, list[int], list[int]]:
    """Run the fast path again on the frames it took (``ok``) except ``refused`` (positions in ``ok``).

    Returns what :func:`fast_frames_table` returns, in positions of ``frames``.
    """
    gone = set(refused)
    keep = [j for j in range(len(ok)) if j not in gone]
    retry = [frames[ok[j]] for j in keep]
    table, taken, left = _fast_frames_table(
        retry, version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_type
    )
    return (
        table,
        [ok[keep[t]] for t in taken],
        sorted(slow + [ok[j] for j in refused] + [ok[keep[t]] for t in left]),
    )


def _columns(
    chosen: list[dict[str, Any]],
    ids: list[str | None],
    metas: list[str | None],
    blobs: list[str | None],
    strs: list[list[tuple[str, str]]],
    nums: list[list[tuple[str, float]]],
    src_meta: list[str | None],
    roi_meta: list[str | None],
    version_id: str,
    now: int,
    guess_type: Any,
) -> pa.Table:
    n = len(chosen)
    src_in = pa.array([d["sources"] for d in chosen], type=pa.list_(_SOURCE_IN))
    roi_in = pa.array([d.get("rois") or [] for d in chosen], type=pa.list_(_ROI_IN))
    s_flat: pa.StructArray = src_in.values
    types = s_flat.field("content_type")
    if types.null_count:
        uris = s_flat.field("uri").to_pylist()
        filled = [t if t is not None else guess_type(u) for t, u in zip(types.to_pylist(), uris, strict=True)]
        types = pa.array(filled, pa.string())
    n_src = len(s_flat)
    sources_struct = pa.StructArray.from_arrays(
        [
            s_flat.field("id"),
            s_flat.field("uri"),
            types,
            _size(s_flat.field("width")),
            _size(s_flat.field("height")),
            pc.fill_null(s_flat.field("timestamp"), 0),
            pa.array(src_meta, pa.string()),
            pa.nulls(n_src, PREVIEW),
            pa.ListArray.from_arrays(pa.array([0] * (n_src + 1), pa.int32()), pa.array([], MASK)),
        ],
        fields=list(SOURCE),
    )
    sources = pa.ListArray.from_arrays(src_in.offsets, sources_struct)
    r_flat: pa.StructArray = roi_in.values
    rois_struct = pa.StructArray.from_arrays(
        [
            r_flat.field("id"),
            r_flat.field("labels"),
            r_flat.field("type"),
            r_flat.field("poly"),
            r_flat.field("confidence"),
            pc.fill_null(r_flat.field("sources"), pa.scalar([], pa.list_(pa.string()))),
            pa.array(roi_meta, pa.string()),
            pa.nulls(len(r_flat), ROI_MASK),
        ],
        fields=list(ROI),
    )
    rois = pa.ListArray.from_arrays(roi_in.offsets, rois_struct)
    first = pc.list_element(sources, 0)
    context = pa.array([d.get("context_id") for d in chosen], pa.string())
    stamp = pa.array([d.get("timestamp") for d in chosen], pa.int64())
    label_offsets = pc.take(r_flat.field("labels").offsets, roi_in.offsets)
    labels = pa.ListArray.from_arrays(label_offsets, r_flat.field("labels").flatten())
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pc.coalesce(context, pc.struct_field(first, "uri")),
            pc.coalesce(stamp, pc.struct_field(first, "timestamp")),
            sources,
            rois,
            pa.array(metas, pa.string()),
            pa.array(blobs, pa.string()),
            pa.array([now] * n, pa.int64()),
            pa.array([version_id] * n, pa.string()),
            pa.array([version_id] * n, pa.string()),
            labels,
            pc.cast(pc.list_value_length(rois), pa.int32()),
            pa.array(strs, pa.map_(pa.string(), pa.string())),
            pa.array(nums, pa.map_(pa.string(), pa.float64())),
        ],
        schema=FRAME_SCHEMA,
    )


def _size(values: pa.Array) -> pa.Array:
    """An int64 width or height column as int32; a value outside 1..2**31-1 becomes 0.

    0 is what :func:`_invalid_rows` refuses, so such a frame goes to the per-frame path, which names
    the field and its value; nulls (no size) stay null.
    """
    fits = pc.and_(pc.greater(values, 0), pc.less_equal(values, _INT32_MAX))
    return pc.cast(pc.if_else(fits, values, pa.scalar(0, pa.int64())), pa.int32())


def _np(values: pa.Array | pa.ChunkedArray, fill: Any) -> np.ndarray:
    out: np.ndarray = pc.fill_null(values, fill).to_numpy(zero_copy_only=False)
    return out


def _spread(rows: np.ndarray, lists: pa.ListArray, child_bad: np.ndarray) -> None:
    """Set ``rows[i]`` where any element of list ``i`` is flagged in ``child_bad`` (in place)."""
    if child_bad.any():
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        rows[parents[child_bad]] = True


def _invalid_rows(table: pa.Table) -> pa.Array:
    """True for each row that breaks a rule of the per-frame path (it then explains which)."""
    bad = _bad_names(table.column("id").combine_chunks())
    bad |= _np(table.column("timestamp"), 0) < 0
    bad |= _np(pc.utf8_length(table.column("context_id")), 1) == 0
    sources = table.column("sources").combine_chunks()
    src = sources.values
    src_bad = _np(pc.utf8_length(src.field("uri")), 0) == 0
    src_bad |= np.asarray(src.field("id").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    src_bad |= _bad_names(src.field("id"))
    src_bad |= _np(src.field("width"), 1) <= 0
    src_bad |= _np(src.field("height"), 1) <= 0
    src_bad |= _np(src.field("timestamp"), 0) < 0
    _spread(bad, sources, src_bad)
    rois = table.column("rois").combine_chunks()
    roi = rois.values
    if len(roi):
        kind = roi.field("type")
        is_box = _np(pc.equal(kind, "box2d"), False)
        is_label = _np(pc.equal(kind, "label"), False)
        poly = roi.field("poly")
        size = _np(pc.list_value_length(poly), -1)
        coords = pc.list_flatten(poly).to_numpy(zero_copy_only=False)
        roi_bad = size < 0
        coord_bad = ~np.isfinite(coords) | (coords == _SEPARATOR)
        _spread(roi_bad, poly, coord_bad)
        roi_bad |= is_box & (size != 8)
        roi_bad |= ~is_box & (size % 2 != 0)
        roi_bad |= np.where(is_label, size != 0, size == 0)
        boxes = np.flatnonzero(is_box & (size == 8))
        if len(boxes):
            starts = poly.offsets.to_numpy(zero_copy_only=False)[boxes]
            v = coords[starts[:, None] + np.arange(8)[None, :]] if len(coords) else np.zeros((0, 8))
            shape_bad = (
                (v[:, 2] != v[:, 4]) | (v[:, 1] != v[:, 3]) | (v[:, 0] != v[:, 6]) | (v[:, 5] != v[:, 7])
            )
            shape_bad |= (v[:, 2] < v[:, 0]) | (v[:, 5] < v[:, 1])
            roi_bad[boxes[shape_bad]] = True
        labels = roi.field("labels")
        n_labels = _np(pc.list_value_length(labels), -1)
        roi_bad |= n_labels < 0
        roi_bad |= is_label & (n_labels == 0)
        flat_labels = pc.list_flatten(labels)
        label_bad = _bad_names(flat_labels) | np.asarray(
            flat_labels.is_null().to_numpy(zero_copy_only=False), dtype=bool
        )
        _spread(roi_bad, labels, label_bad)
        conf = _np(roi.field("confidence"), 0.5)
        roi_bad |= ~np.isfinite(conf) | (conf < 0) | (conf > 1)
        roi_bad |= _bad_names(roi.field("id"))
        _spread(bad, rois, roi_bad)
    return pa.array(bad)
