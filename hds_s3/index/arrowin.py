"""Frames given as Arrow: tables, record batches, pandas frames and Parquet files, ingested column by column.

``add_frames`` and ``update_frames`` take, besides frame objects and dicts, a ``pyarrow.Table``, a
``RecordBatch``, a ``RecordBatchReader`` (or anything with ``__arrow_c_stream__``, such as a polars
frame), an iterable of record batches, a pandas ``DataFrame``, or the path or URL (any fsspec URL) of
a Parquet file, which is read in batches. The columns are those of :data:`INPUT_SCHEMA`, the frame
dict of :mod:`hds_s3.model.frames` as Arrow:

======================  ==========================================================================
``id``                  text; optional (null: derived from the sources and the timestamp)
``context_id``          text; optional (null: the first source's URI)
``timestamp``           integer (ms); optional (null: the first source's timestamp, else 0)
``sources``             list of structs: ``id``, ``uri``, ``content_type`` (null: guessed from
                        the URI), ``width``, ``height``, ``timestamp``, ``meta``, ``preview``, ``masks``
``rois``                list of structs: ``id``, ``labels`` (list of text), ``type`` (null:
                        ``poly2d`` with a polygon, else ``label``), ``poly`` (flat list of numbers),
                        ``confidence``, ``sources`` (list of source ids), ``meta``, ``mask``
``meta``, ``meta_blob`` JSON text, or a struct or map column (a null field of a struct is a key the
                        frame does not have)
======================  ==========================================================================

Only ``sources`` is required; a struct may leave out any field. The columns ``get_frames_table()``
returns beyond these (provenance: ``saved``, ``saved_in_version``, ``updated_in_version``; derived:
``labels``, ``roi_count``, ``meta_str``, ``meta_num``) are accepted and written anew, so a table read
from one version can be added to another. Any other column or field is refused with
:class:`~hds_s3.errors.ValidationError` before anything is written, as is a column of a type that
cannot be converted (text where numbers belong, say).

Every batch is converted and checked with Arrow compute and numpy, with no Python work per frame:
the rules are those of the frame dicts (:func:`hds_s3.index.columnar._invalid_rows`) plus the
metadata rules. A row that breaks one, or that holds what the columnar rules do not cover (masks,
previews, other ROI types, unusual metadata), is turned into a frame dict and handed to the
per-frame path, which stores it or reports it among the failures with its id and the field, while
the other rows are written. :func:`frames_from_columns` maps a table of flat columns (a URI column,
metadata columns, an ROI column) onto this schema.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hds_s3.errors import ValidationError
from hds_s3.format.docs import SegmentRef, VersionEntry
from hds_s3.index import columnar, ingest, segments
from hds_s3.index.arrowjson import bad_keys as meta_bad_keys
from hds_s3.index.arrowjson import empty_map, list_parts, parse_objects, plain, project, rows_of, to_json
from hds_s3.index.frameindex import ID_CACHE_BYTES, FrameIndex
from hds_s3.index.ingest import FailedFrame
from hds_s3.model.frames import guess_content_type, hash_id

#: Rows converted at a time (a batch larger than this is sliced).
BATCH_ROWS = 32768
#: Batches converted at once.
CONVERT_THREADS = 2

_META = "meta (JSON text, struct or map)"
_SOURCE_IN = pa.struct(
    [
        ("id", pa.string()),
        ("uri", pa.string()),
        ("content_type", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("timestamp", pa.int64()),
        ("meta", pa.string()),
        ("preview", segments.PREVIEW),
        ("masks", pa.list_(segments.MASK)),
    ]
)
_ROI_IN = pa.struct(
    [
        ("id", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("type", pa.string()),
        ("poly", pa.list_(pa.float64())),
        ("confidence", pa.float64()),
        ("sources", pa.list_(pa.string())),
        ("meta", pa.string()),
        ("mask", segments.ROI_MASK),
    ]
)
#: The canonical Arrow input of ``add_frames`` (metadata shown as JSON text; structs and maps work too).
INPUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("context_id", pa.string()),
        ("timestamp", pa.int64()),
        ("sources", pa.list_(_SOURCE_IN)),
        ("rois", pa.list_(_ROI_IN)),
        ("meta", pa.string()),
        ("meta_blob", pa.string()),
    ]
)
#: Columns of ``get_frames_table()`` that are written anew (provenance) or derived again when given.
REWRITTEN = frozenset(
    {"saved", "saved_in_version", "updated_in_version", "labels", "roi_count", "meta_str", "meta_num"}
)
_TOP = {f.name: f for f in INPUT_SCHEMA}
_SOURCE_FIELDS = {f.name for f in _SOURCE_IN}
_ROI_FIELDS = {f.name for f in _ROI_IN}
_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------- what counts as Arrow


def arrow_batches(frames: object) -> Iterator[pa.RecordBatch] | None:
    """The record batches of ``frames`` when it is Arrow input (see the module docstring), else None.

    An iterable whose first item is a ``RecordBatch`` (or a ``Table``) is Arrow input; one whose first
    item is anything else is not (it is then returned to the caller unconsumed: see :func:`peek`).
    A ``str`` or path is the path or URL of a Parquet file.

    Raises:
        ValidationError: a path or URL that cannot be opened as Parquet.
    """
    if isinstance(frames, pa.Table):
        return iter(frames.to_batches())  # type: ignore[no-any-return]
    if isinstance(frames, pa.RecordBatch):
        return iter([frames])
    if isinstance(frames, pa.RecordBatchReader):
        return iter(frames)  # type: ignore[no-any-return]
    if isinstance(frames, (str, os.PathLike)):
        return _parquet_batches(frames)
    module = type(frames).__module__
    if module.startswith("pandas") and type(frames).__name__ == "DataFrame":
        table = pa.Table.from_pandas(frames, preserve_index=False)
        return iter(table.to_batches())  # type: ignore[no-any-return]
    if hasattr(frames, "__arrow_c_stream__") and not isinstance(frames, Mapping):
        return iter(pa.RecordBatchReader.from_stream(frames))  # type: ignore[no-any-return]
    return None


def peek(frames: Iterable[object]) -> tuple[Iterator[pa.RecordBatch] | None, Iterable[object]]:
    """Tell Arrow input from frames: ``(batches, frames)``; exactly one of them is what to ingest.

    An iterator is advanced by one item to look at it; the item is put back in front of the rest.

    Raises:
        ValidationError: as :func:`arrow_batches`.
    """
    batches = arrow_batches(frames)
    if batches is not None:
        return batches, ()
    ingest.check_frames_argument(frames)
    if isinstance(frames, (list, tuple)):
        if frames and isinstance(frames[0], (pa.RecordBatch, pa.Table)):
            return _flatten(frames), ()
        return None, frames
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        return None, ()
    rest = itertools.chain([first], iterator)
    if isinstance(first, (pa.RecordBatch, pa.Table)):
        return _flatten(rest), ()
    return None, rest


def _flatten(items: Iterable[object]) -> Iterator[pa.RecordBatch]:
    for item in items:
        if isinstance(item, pa.Table):
            yield from item.to_batches(max_chunksize=BATCH_ROWS)
        elif isinstance(item, pa.RecordBatch):
            yield item
        else:
            raise ValidationError(
                f"an iterable of record batches also holds a {type(item).__name__}; give batches only"
            )


def _parquet_batches(path: str | os.PathLike[str]) -> Iterator[pa.RecordBatch]:
    text = os.fspath(path)
    try:
        if "://" in text:
            import fsspec

            handle = fsspec.open(text, "rb").open()
            file = pq.ParquetFile(handle)
        else:
            handle = None
            file = pq.ParquetFile(text)
    except (OSError, pa.ArrowException, ValueError, ImportError) as exc:
        raise ValidationError(f"cannot read {text!r} as a Parquet file of frames: {exc}") from exc

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            # a Python file (fsspec's) is decoded on this thread (``Scan.read`` says why)
            yield from file.iter_batches(batch_size=BATCH_ROWS, use_threads=handle is None)
        except (OSError, pa.ArrowException) as exc:
            raise ValidationError(f"cannot read {text!r} as a Parquet file of frames: {exc}") from exc
        finally:
            file.close()
            if handle is not None:
                handle.close()

    return batches()


# ---------------------------------------------------------------------------- schema


def _struct_child(array: pa.StructArray, name: str) -> pa.Array | None:
    kind = array.type
    index = kind.get_field_index(name)
    return None if index < 0 else plain(pc.struct_field(array, [index]))


def _check_fields(kind: pa.DataType, known: set[str] | frozenset[str], path: str) -> None:
    if not pa.types.is_struct(kind):
        raise ValidationError(f"column {path} must hold structs, not {kind}")
    extra = sorted({kind.field(i).name for i in range(kind.num_fields)} - set(known))
    if extra:
        raise ValidationError(
            f"column {path} has fields {extra} that a frame does not have; its fields are "
            f"{sorted(known)} (see hds_s3.index.arrowin.INPUT_SCHEMA)"
        )


def check_schema(schema: pa.Schema) -> None:
    """Refuse a schema that is not the frame input schema (see the module docstring).

    Raises:
        ValidationError: naming the column or field: an unknown one, ``sources`` missing, or a list
            or struct column that is not one.
    """
    names = set(schema.names)
    extra = sorted(names - set(_TOP) - REWRITTEN)
    if extra:
        raise ValidationError(
            f"columns {extra} are not frame columns; the columns are {sorted(_TOP)} "
            "(hds_s3.index.arrowin.INPUT_SCHEMA; frames_from_columns() maps other columns onto them)"
        )
    if "sources" not in names:
        raise ValidationError(
            "a table of frames needs a 'sources' column (a list of {id, uri, ...} structs); "
            "frames_from_columns() builds it from a URI column"
        )
    for name, fields in (("sources", _SOURCE_FIELDS), ("rois", _ROI_FIELDS)):
        if name not in names:
            continue
        kind = schema.field(name).type
        if pa.types.is_null(kind):
            continue
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
            raise ValidationError(f"column {name} must be a list of structs, not {kind}")
        if pa.types.is_null(kind.value_type):
            continue  # every list empty (what Arrow infers from [] in every row)
        _check_fields(kind.value_type, fields, name)


def _text(array: pa.Array | None, n: int, path: str) -> pa.Array:
    if array is None:
        return pa.nulls(n, pa.string())
    array = plain(array)
    if pa.types.is_null(array.type):
        return pa.nulls(n, pa.string())
    if not pa.types.is_string(array.type):
        raise ValidationError(f"column {path} must hold text, not {array.type}")
    return array


def _integer(array: pa.Array | None, n: int, path: str, bad_value: int) -> pa.Array:
    """An int64 column; values that are not whole numbers within int64 become ``bad_value``."""
    if array is None:
        return pa.nulls(n, pa.int64())
    array = plain(array)
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(n, pa.int64())
    if pa.types.is_unsigned_integer(kind) and kind.bit_width == 64:
        fits = pc.less_equal(array, _INT64_MAX)
        return pc.if_else(fits, pc.cast(array, pa.int64(), safe=False), bad_value)
    if pa.types.is_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):  # pandas gives floats for integer columns with gaps
        doubles = array.cast(pa.float64())
        whole = pc.and_(pc.is_finite(doubles), pc.equal(pc.floor(doubles), doubles))
        whole = pc.and_(whole, pc.and_(pc.greater_equal(doubles, -(2.0**63)), pc.less(doubles, 2.0**63)))
        safe = pc.if_else(whole, doubles, 0.0)
        return pc.if_else(whole, pc.cast(safe, pa.int64(), safe=False), bad_value)
    raise ValidationError(f"column {path} must hold integers, not {kind}")


def _floats(array: pa.Array | None, n: int, path: str) -> pa.Array:
    if array is None:
        return pa.nulls(n, pa.float64())
    array = plain(array)
    if pa.types.is_null(array.type):
        return pa.nulls(n, pa.float64())
    if not (
        pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type)
    ):
        raise ValidationError(f"column {path} must hold numbers, not {array.type}")
    return array.cast(pa.float64())


def _list_of(array: pa.Array | None, n: int, path: str, convert: Any) -> tuple[pa.Array, pa.Array]:
    """A list column converted element-wise, a null list as an empty one: ``(lists, flat values)``.

    The lists are built on the offsets of the values (null lists hold none), not filled afterwards:
    filling nulls of a list column copies all of its values.
    """
    if array is None or pa.types.is_null(array.type):
        values = convert(None, 0, path)
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), values), values
    array = plain(array)
    if not (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or pa.types.is_fixed_size_list(array.type)
    ):
        raise ValidationError(f"column {path} must hold lists, not {array.type}")
    offsets, values = list_parts(array)
    converted = convert(values, len(values), path + "[]")
    return pa.ListArray.from_arrays(offsets, converted), converted


# ---------------------------------------------------------------------------- one batch


@dataclass
class _Meta:
    """A metadata column as JSON texts, and the rows left to the per-frame path."""

    texts: pa.Array
    bad: np.ndarray
    strs: pa.MapArray | None = None
    nums: pa.MapArray | None = None


def _meta(array: pa.Array | None, n: int, path: str, projected: bool) -> _Meta:
    """JSON texts of a metadata column ({} and null: none) and, for frame metadata, its projection."""
    empty, empty_num = empty_map(n, pa.string()), empty_map(n, pa.float64())
    if array is None:
        return _Meta(pa.nulls(n, pa.string()), np.zeros(n, bool), empty, empty_num)
    array = plain(array)
    kind = array.type
    if pa.types.is_null(kind):
        return _Meta(pa.nulls(n, pa.string()), np.zeros(n, bool), empty, empty_num)
    if pa.types.is_string(kind):
        texts = pc.utf8_trim_whitespace(array)
        texts = pc.if_else(pc.equal(texts, "{}"), pa.scalar(None, pa.string()), texts)
        bad = np.zeros(n, bool)
        strs: list[pa.Array] = []
        nums: list[pa.Array] = []
        for start, stop, structs in parse_objects(texts):
            if structs is None:
                bad[start:stop] = True
                strs.append(empty.slice(start, stop - start))
                nums.append(empty_num.slice(start, stop - start))
                continue
            bad[start:stop] |= meta_bad_keys(structs)
            if projected:
                s, m, _ = project(structs)
                strs.append(s)
                nums.append(m)
        out = _Meta(texts, bad)
        if projected:
            out.strs = pa.concat_arrays(strs) if strs else empty
            out.nums = pa.concat_arrays(nums) if nums else empty_num
        return out
    if not (pa.types.is_struct(kind) or pa.types.is_map(kind)):
        raise ValidationError(f"column {path} must hold {_META}, not {kind}")
    texts, bad = to_json(array, path)
    texts = pc.if_else(pc.equal(texts, "{}"), pa.scalar(None, pa.string()), texts)
    if pa.types.is_struct(kind):
        bad |= meta_bad_keys(array)
    out = _Meta(texts, bad)
    if projected:
        out.strs, out.nums, more = project(array)
        out.bad |= more
    return out


#: Extensions whose guess depends on more than the last suffix (encodings, compound suffixes).
_EXT = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^?#]*$|^[^:?#]*$")


def _content_types(types: pa.Array, uris: pa.Array) -> pa.Array:
    """Fill null content types with the guess from the URI, computed once per distinct extension."""
    missing = pc.and_(pc.is_null(types), pc.is_valid(uris))
    if not pc.any(missing).as_py():
        return types
    where = pc.indices_nonzero(missing)
    some = uris.take(where)
    simple = pc.match_substring_regex(some, _EXT.pattern)
    ext = pc.struct_field(pc.extract_regex(some, r"(?P<e>\.[^./]*)$"), [0])
    ext = pc.if_else(pc.is_null(ext), "", ext)
    lowered = pc.utf8_lower(ext)
    compound = pc.is_in(
        lowered, pa.array([".gz", ".bz2", ".xz", ".br", ".z", ".tgz", ".taz", ".tz", ".tbz2", ".txz"])
    )
    exact = pc.or_(pc.invert(simple), compound)
    keys = pc.if_else(exact, some, pc.binary_join_element_wise("x", ext, ""))
    encoded = pc.dictionary_encode(keys)
    guesses = pa.array([guess_content_type(k) for k in encoded.dictionary.to_pylist()], pa.string())
    filled = guesses.take(encoded.indices)
    full = pc.replace_with_mask(types, missing, filled)
    return full


def _bad_structure(sources: pa.ListArray, rois: pa.ListArray, n: int) -> np.ndarray:
    """Rows the columnar rules leave to the per-frame path.

    Those are frames without a source, with two sources of one id, with an ROI naming a source the
    frame does not have, or with a preview or masks.
    """
    count = pc.fill_null(pc.list_value_length(sources), 0).to_numpy(zero_copy_only=False)
    bad: np.ndarray = np.asarray(count == 0, dtype=bool)  # no source (nor then an ROI's binding)
    src = sources.values
    if not len(src):
        return bad
    named = rois.values.field("sources") if len(rois.values) else None
    flat = pc.list_flatten(named) if named is not None else pa.array([], pa.string())
    # each (frame, source id) as one integer: the frame's number times the number of distinct ids
    # plus the id's code in one dictionary of the sources' ids and the ids ROIs name
    encoded = pc.dictionary_encode(pc.fill_null(pa.concat_arrays([plain(src.field("id")), plain(flat)]), ""))
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    width = max(1, len(encoded.dictionary))
    frame_of = pc.list_parent_indices(sources).to_numpy(zero_copy_only=False).astype(np.int64)
    keys = frame_of * width + codes[: len(src)]
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    repeated = np.zeros(len(keys), dtype=bool)  # a frame with two sources of one id
    twice = ranked[1:] == ranked[:-1]
    repeated[order[1:][twice]] = True
    repeated[order[:-1][twice]] = True
    extras = np.asarray(pc.is_valid(src.field("preview")).to_numpy(zero_copy_only=False), dtype=bool)
    extras |= pc.fill_null(pc.list_value_length(src.field("masks")), 0).to_numpy(zero_copy_only=False) > 0
    bad |= rows_of(repeated | extras, sources)
    if named is not None and len(flat):  # an ROI naming a source its frame does not have
        roi_of = pc.list_parent_indices(named)
        frame_of_roi = pc.list_parent_indices(rois).take(roi_of).to_numpy(zero_copy_only=False)
        frame_of_roi = frame_of_roi.astype(np.int64)
        wanted = frame_of_roi * width + codes[len(src) :]
        at = np.minimum(np.searchsorted(ranked, wanted), len(ranked) - 1)
        missing = ranked[at] != wanted
        if missing.any():
            bad[frame_of_roi[missing]] = True
    return bad


def convert(batch: pa.RecordBatch, *, version_id: str, now: int) -> tuple[pa.Table, np.ndarray]:
    """Convert one batch of frame rows to a segment table (input order, not yet sorted by id).

    Returns the table of the rows taken and a mask of the rows left to the per-frame path.

    Raises:
        ValidationError: the batch's schema is not the frame input schema (see :func:`check_schema`).
    """
    check_schema(batch.schema)
    n = batch.num_rows
    col = {name: plain(batch.column(name)) for name in batch.schema.names}
    bad = np.zeros(n, dtype=bool)

    # sources
    src_list = col["sources"]
    if pa.types.is_null(src_list.type):
        src_list = pa.nulls(n, pa.list_(_SOURCE_IN))
    s_offsets, s_flat = list_parts(src_list)
    m = len(s_flat)
    s_meta = _meta(_struct_child(s_flat, "meta") if m else None, m, "sources.meta", False)
    uris = _text(_struct_child(s_flat, "uri") if m else None, m, "sources.uri")
    sources_struct = pa.StructArray.from_arrays(
        [
            _text(_struct_child(s_flat, "id") if m else None, m, "sources.id"),
            uris,
            _content_types(
                _text(_struct_child(s_flat, "content_type") if m else None, m, "sources.content_type"), uris
            ),
            columnar._size(_integer(_struct_child(s_flat, "width") if m else None, m, "sources.width", 0)),
            columnar._size(_integer(_struct_child(s_flat, "height") if m else None, m, "sources.height", 0)),
            pc.fill_null(
                _integer(_struct_child(s_flat, "timestamp") if m else None, m, "sources.timestamp", -1), 0
            ),
            s_meta.texts,
            pa.nulls(m, segments.PREVIEW),
            pa.ListArray.from_arrays(pa.array(np.zeros(m + 1, np.int32)), pa.array([], segments.MASK)),
        ],
        fields=list(segments.SOURCE),
    )
    sources = pa.ListArray.from_arrays(s_offsets, sources_struct)
    # what only decides whether the row takes the per-frame path
    extras = np.zeros(m, dtype=bool)
    preview = _struct_child(s_flat, "preview") if m else None
    if preview is not None:
        extras |= np.asarray(pc.is_valid(preview).to_numpy(zero_copy_only=False), dtype=bool)
    masks = _struct_child(s_flat, "masks") if m else None
    if masks is not None and not pa.types.is_null(masks.type):
        extras |= pc.fill_null(pc.list_value_length(masks), 0).to_numpy(zero_copy_only=False) > 0
    bad |= rows_of(extras | s_meta.bad, sources)

    # rois
    roi_list = col.get("rois")
    if roi_list is None or pa.types.is_null(roi_list.type):
        roi_list = pa.nulls(n, pa.list_(_ROI_IN))
    r_offsets, r_flat = list_parts(roi_list)
    k = len(r_flat)
    r_meta = _meta(_struct_child(r_flat, "meta") if k else None, k, "rois.meta", False)
    labels, _ = _list_of(_struct_child(r_flat, "labels") if k else None, k, "rois.labels", _text)
    poly, _ = _list_of(_struct_child(r_flat, "poly") if k else None, k, "rois.poly", _floats)
    kind = _text(_struct_child(r_flat, "type") if k else None, k, "rois.type")
    default_kind = pc.if_else(pc.greater(pc.list_value_length(poly), 0), "poly2d", "label")
    kind = pc.coalesce(kind, default_kind) if k else kind
    roi_sources, _ = _list_of(_struct_child(r_flat, "sources") if k else None, k, "rois.sources", _text)
    mask = _struct_child(r_flat, "mask") if k else None
    roi_extras = np.zeros(k, dtype=bool)
    if mask is not None and not pa.types.is_null(mask.type):
        roi_extras |= np.asarray(pc.is_valid(mask).to_numpy(zero_copy_only=False), dtype=bool)
    rois_struct = pa.StructArray.from_arrays(
        [
            _text(_struct_child(r_flat, "id") if k else None, k, "rois.id"),
            labels,
            kind,
            poly,
            _floats(_struct_child(r_flat, "confidence") if k else None, k, "rois.confidence"),
            columnar.bind_lone_source(roi_sources, r_offsets, sources),
            r_meta.texts,
            pa.nulls(k, segments.ROI_MASK),
        ],
        fields=list(segments.ROI),
    )
    rois = pa.ListArray.from_arrays(r_offsets, rois_struct)
    bad |= rows_of(roi_extras | r_meta.bad, rois)
    bad |= _bad_structure(sources, rois, n)

    # the frame's own columns
    meta = _meta(col.get("meta"), n, "meta", True)
    blob = _meta(col.get("meta_blob"), n, "meta_blob", False)
    bad |= meta.bad | blob.bad
    starts = s_offsets.to_numpy()
    empty = starts[1:] == starts[:-1]
    first = sources_struct.take(pa.array(np.where(empty, 0, starts[:-1]), mask=empty)) if m else None
    context = _text(col.get("context_id"), n, "context_id")
    stamp = _integer(col.get("timestamp"), n, "timestamp", -1)
    if first is not None:
        context = pc.coalesce(context, pc.struct_field(first, "uri"))
        stamp = pc.coalesce(stamp, pc.struct_field(first, "timestamp"))
    stamp = pc.fill_null(stamp, 0)
    ids = _ids(_text(col.get("id"), n, "id"), sources, stamp, bad)
    label_values = rois_struct.field("labels")
    label_offsets = pc.take(label_values.offsets, r_offsets) if k else pa.array(np.zeros(n + 1, np.int32))
    all_labels = pa.ListArray.from_arrays(
        label_offsets, label_values.flatten() if k else pa.array([], pa.string())
    )
    assert meta.strs is not None and meta.nums is not None
    table = pa.Table.from_arrays(
        [
            ids,
            context,
            stamp,
            sources,
            rois,
            meta.texts,
            blob.texts,
            pa.repeat(pa.scalar(now, pa.int64()), n),
            pa.repeat(pa.scalar(version_id, pa.string()), n),
            pa.repeat(pa.scalar(version_id, pa.string()), n),
            all_labels,
            pc.cast(pc.list_value_length(rois), pa.int32()),
            meta.strs,
            meta.nums,
        ],
        schema=segments.FRAME_SCHEMA,
    )
    bad |= columnar._invalid_rows(table)
    bad |= ~np.asarray(pc.is_valid(ids).to_numpy(zero_copy_only=False), dtype=bool)
    if bad.any():
        table = table.filter(pa.array(~bad))
    return table, bad


def _ids(given: pa.Array, sources: pa.ListArray, stamp: pa.Array, bad: np.ndarray) -> pa.Array:
    """The ids given, and for rows without one the id derived from the sources and timestamp.

    Deriving takes a hash per frame (in Python): give ids to avoid it.
    """
    missing = np.flatnonzero(
        ~np.asarray(pc.is_valid(given).to_numpy(zero_copy_only=False), dtype=bool) & ~bad
    )
    if len(missing) == 0:
        return given
    picked = sources.take(pa.array(missing)).to_pylist()
    stamps = stamp.take(pa.array(missing)).to_pylist()
    derived: list[str | None] = []
    for row, ts in zip(picked, stamps, strict=True):
        pairs = [(s["id"], s["uri"]) for s in row or ()]
        texts = all(isinstance(a, str) and isinstance(b, str) for a, b in pairs)
        derived.append(hash_id(pairs, ts) if pairs and texts and ts is not None and ts >= 0 else None)
    return pc.replace_with_mask(
        given, pa.array(np.isin(np.arange(len(given)), missing)), pa.array(derived, pa.string())
    )


# ---------------------------------------------------------------------------- rows for the per-frame path


def row_dicts(batch: pa.RecordBatch, rows: np.ndarray) -> list[dict[str, Any]]:
    """The given rows of an input batch as frame dicts (metadata as dicts) for the per-frame path.

    A JSON text that does not parse stays text: the per-frame path reports it as metadata that is
    not a dict. Struct fields that are null are left out (a key the frame does not have).
    """
    keep = [name for name in batch.schema.names if name in _TOP]
    dicts = batch.select(keep).take(pa.array(rows, pa.int64())).to_pylist()
    struct_meta = {
        name: pa.types.is_struct(plain(batch.column(name)).type)
        for name in ("meta", "meta_blob")
        if name in keep
    }
    out = []
    for d in dicts:
        frame: dict[str, Any] = {k: v for k, v in d.items() if v is not None}
        for name in ("meta", "meta_blob"):
            if name in frame:
                frame[name] = _meta_value(frame[name], struct_meta.get(name, False))
        for group in ("sources", "rois"):
            items = frame.get(group)
            if items is None:
                continue
            frame[group] = [
                {
                    k: (_meta_value(v, isinstance(v, dict)) if k == "meta" else v)
                    for k, v in item.items()
                    if v is not None and not (group == "sources" and k == "masks" and v == [])
                }
                if isinstance(item, dict)
                else item
                for item in items
            ]
        out.append(frame)
    return out


def _meta_value(value: Any, from_struct: bool) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return dict(value)  # a map column
    if from_struct and isinstance(value, dict):
        return _drop_nulls(value)
    return value


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


# ---------------------------------------------------------------------------- writing


def convert_batch(
    batch: pa.RecordBatch,
    failed: list[FailedFrame],
    *,
    version_id: str,
    now: int,
    failed_rows: list[int] | None = None,
) -> tuple[pa.Table, list[int]]:
    """Convert one batch; its left-over rows go through the per-frame path (failures to ``failed``).

    Returns the table and the batch index of each of its rows. ``failed_rows``, when given, receives
    the batch index of each failure appended to ``failed``, in the same order.

    Raises:
        ValidationError: the batch's schema is not the frame input schema.
    """
    table, bad = convert(batch, version_id=version_id, now=now)
    positions = np.flatnonzero(~bad).tolist()
    if not bad.any():
        return table, positions
    left = np.flatnonzero(bad)
    dicts = []
    rows = []
    row_of: dict[int, int] = {}  # id() of each frame dict handed on: the failures name them
    mine: list[FailedFrame] = []
    for row, frame in zip(left.tolist(), row_dicts(batch, left), strict=True):
        row_of[id(frame)] = row
        text = next((k for k in ("meta", "meta_blob") if isinstance(frame.get(k), str)), None)
        if text is not None:
            reason = f"frame {frame.get('id')!r}: {text}: the text is not a JSON object"
            mine.append(FailedFrame(frame, reason))
            continue
        dicts.append(frame)
        rows.append(row)
    slow, where = ingest._batch_table(list(dicts), mine, version_id, now)
    failed.extend(mine)
    if failed_rows is not None:
        failed_rows.extend(row_of[id(f.frame)] for f in mine)
    return pa.concat_tables([table, slow]), positions + [rows[i] for i in where]


def write_segments(
    index: FrameIndex,
    dataset_id: str,
    version_id: str,
    batches: Iterator[pa.RecordBatch],
    failed: list[FailedFrame],
    *,
    now: int,
    segment_rows: int,
    progress: Any | None = None,
    keep: Any | None = None,
) -> Iterator[SegmentRef]:
    """Convert Arrow batches and write them as segments of ``version_id``; yield each segment written.

    As :func:`hds_s3.index.ingest.write_segments`: rows failing validation go to ``failed``; one
    segment is sorted, encoded and stored by a writer thread while the next one is converted.
    ``keep(table) -> (table, failures)``, when given, filters each converted table before it is
    written (``update_frames`` drops the ids the version does not hold).

    Raises:
        ValidationError: a batch's schema is not the frame input schema; nothing of this call was
            committed (segments already written are garbage for gc).
        StorageError: the store failed.
    """
    yield from ingest.write_pipelined(
        index,
        dataset_id,
        version_id,
        _tables(batches, failed, version_id, now, segment_rows, progress, keep),
        as_given=keep is None,
    )


def _tables(
    batches: Iterator[pa.RecordBatch],
    failed: list[FailedFrame],
    version_id: str,
    now: int,
    segment_rows: int,
    progress: Any | None,
    keep: Any | None,
) -> Iterator[tuple[pa.Table, list[int]]]:
    """Each segment's rows converted (with each row's position in the input), in input order.

    Without ``keep`` (``add_frames``), the rows are written in this order (indexed segments: see
    :func:`hds_s3.index.segments.input_order`); with it (``update_frames``), the writer sorts them.
    """
    # Two slices are converted at a time: Arrow compute releases the GIL, so they share the cores.
    with ThreadPoolExecutor(max_workers=CONVERT_THREADS, thread_name_prefix="hds-convert") as pool:
        seen = 0  # input rows before the current segment
        for pieces in _segment_inputs(batches, segment_rows):
            rows = sum(p.num_rows for p in pieces)
            tables: list[pa.Table] = []
            positions: list[int] = []
            done = 0  # rows of ``pieces`` converted so far
            for batch, (table, where, mine) in _converted_slices(pool, pieces, version_id, now):
                failed.extend(f for _, f in mine)
                if keep is not None:
                    table, where = keep(table, where, batch)
                if progress is not None:
                    progress.update(batch.num_rows)
                tables.append(table)
                positions.extend((seen + done + np.asarray(where, dtype=np.int64)).tolist())
                done += batch.num_rows
            seen += rows
            if tables:
                yield pa.concat_tables(tables), positions


def _segment_inputs(batches: Iterator[pa.RecordBatch], segment_rows: int) -> Iterator[list[pa.RecordBatch]]:
    """The input cut into the stretches that make one segment each (the last may be shorter)."""
    held: list[pa.RecordBatch] = []
    count = 0
    for big in batches:
        start = 0
        while start < big.num_rows:
            stretch = min(big.num_rows - start, segment_rows - count)
            held.append(big.slice(start, stretch))
            count += stretch
            start += stretch
            if count >= segment_rows:
                yield held
                held, count = [], 0
    if count:
        yield held


#: A slice converted: its rows, the slice index of each, and each failure with its slice index.
_Converted = tuple[pa.Table, list[int], list[tuple[int, FailedFrame]]]


def _converted_slices(
    pool: ThreadPoolExecutor, pieces: list[pa.RecordBatch], version_id: str, now: int
) -> Iterator[tuple[pa.RecordBatch, _Converted]]:
    """Each slice of ``pieces`` with its conversion (rows, their slice index, failures by slice row).

    Each piece is cut into even slices of at most ``BATCH_ROWS`` rows, as many as a multiple of
    ``CONVERT_THREADS`` when more than one: every converting thread gets an equal share (slices of
    32k, 32k, 32k and 2k rows left one thread idle while the third was converted).
    """

    def slices() -> Iterator[pa.RecordBatch]:
        for piece in pieces:
            n = piece.num_rows
            count = -(-n // BATCH_ROWS)
            if count > 1:
                count += -count % CONVERT_THREADS
            for i in range(count):
                batch = piece.slice(n * i // count, n * (i + 1) // count - n * i // count)
                if batch.num_rows:
                    yield batch

    def work(batch: pa.RecordBatch) -> _Converted:
        mine: list[FailedFrame] = []
        rows: list[int] = []
        table, where = convert_batch(batch, mine, version_id=version_id, now=now, failed_rows=rows)
        return table, where, list(zip(rows, mine, strict=True))

    inflight: list[tuple[pa.RecordBatch, Future[_Converted]]] = []
    source = slices()
    while True:
        while len(inflight) < CONVERT_THREADS:
            batch = next(source, None)
            if batch is None:
                break
            inflight.append((batch, pool.submit(work, batch)))
        if not inflight:
            return
        batch, future = inflight.pop(0)
        yield batch, future.result()


def write_updates(
    index: FrameIndex,
    dataset_id: str,
    entry: VersionEntry,
    batches: Iterator[pa.RecordBatch],
    *,
    now: int,
    segment_rows: int,
) -> tuple[list[FailedFrame], list[SegmentRef], dict[str, object]]:
    """Write the segments of ``update_frames`` given Arrow input; nothing is committed.

    Rows whose id the version does not hold fail (each converted batch's ids are looked up with
    :meth:`FrameIndex.holding`: only the row groups whose id range covers one of them are read;
    when a batch holds as many ids as the version has row groups and the version's ids are more
    than the frame index keeps, they are read once for all batches instead).
    Returns the failures, the segments written and ``{id: frame}`` of the rows written.

    Raises:
        ValidationError: a batch's schema is not the frame input schema.
        CorruptObjectError: a segment of the version is missing or damaged.
        StorageError: the store failed.
    """
    failed: list[FailedFrame] = []
    written_ids: list[pa.Array] = []
    refs = [r for r in index.refs(entry) if r.kind == "frames"]
    groups = sum(-(-r.rows // segments.ROW_GROUP_ROWS) for r in refs)
    id_bytes = sum(r.rows * (len(r.min_id or "") + 4) for r in refs)  # decoded, estimated
    everything: list[pa.ChunkedArray] = []

    def present_of(ids: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        # A few ids: the row groups that can hold them (their id chunks are kept for the publish's
        # statistics). As many ids as row groups, of a version whose ids the cache cannot keep:
        # every batch would read every id chunk again, so the version's ids are read once instead.
        if not everything and len(ids) >= groups and id_bytes > ID_CACHE_BYTES // 2:
            everything.append(index.effective(entry, ["id"]).column("id"))
        return everything[0] if everything else index.holding(entry, ids, kept=True)

    def keep(table: pa.Table, where: list[int], batch: pa.RecordBatch) -> tuple[pa.Table, list[int]]:
        present = present_of(table.column("id"))
        known = np.asarray(
            pc.is_in(table.column("id"), value_set=present).to_numpy(zero_copy_only=False), bool
        )
        if not known.all():
            rows = np.asarray(where, dtype=np.int64)[~known]
            for frame in row_dicts(batch, rows):
                reason = f"frame {frame.get('id')} is not in version {entry.name!r}; use add_frames"
                failed.append(FailedFrame(frame, reason))
            table = table.filter(pa.array(known))
            where = [w for w, k in zip(where, known.tolist(), strict=True) if k]
        written_ids.append(table.column("id").combine_chunks())
        return table, where

    refs = list(
        write_segments(
            index, dataset_id, entry.id, batches, failed, now=now, segment_rows=segment_rows, keep=keep
        )
    )
    ids = pa.chunked_array(written_ids, pa.string()).to_pylist() if written_ids else []
    return failed, refs, {i: {"id": i} for i in ids}


# ---------------------------------------------------------------------------- flat columns


def frames_from_columns(
    table: pa.Table | pa.RecordBatch,
    *,
    uri: str,
    id: str | None = None,  # noqa: A002 - the frame field's name
    source_id: str = "default",
    context_id: str | None = None,
    timestamp: str | None = None,
    width: str | None = None,
    height: str | None = None,
    content_type: str | None = None,
    meta: Sequence[str] = (),
    rois: str | None = None,
    meta_blob: Sequence[str] = (),
) -> pa.Table:
    """Map a table of flat columns onto the frame input schema, with Arrow compute (one source per frame).

    ``uri`` names the column of each frame's source URI (the source gets the id ``source_id``);
    ``id``, ``context_id``, ``timestamp``, ``width``, ``height`` and ``content_type`` name optional
    columns; ``meta`` and ``meta_blob`` name columns that become keys (named as the columns) of the
    frame's metadata and of its ``meta_blob``. ``rois`` names a list column whose items are structs
    with ``label`` (text) or ``labels`` (list of text), and ``poly`` (flat polygon) or
    ``box2d_xywh`` / ``bbox`` (x, y, width, height: stored as a box's four corners), and optionally
    ``confidence``, ``id`` and ``meta``.

    Returns a table :meth:`DatasetVersion.add_frames` takes.

    Raises:
        ValidationError: a named column is missing, or an ROI struct has none of the fields above or
            fields of other types.
    """
    names = set(table.schema.names)

    def column(name: str | None) -> pa.Array | None:
        if name is None:
            return None
        if name not in names:
            raise ValidationError(
                f"frames_from_columns: no column {name!r} (the columns are {sorted(names)})"
            )
        return plain(table.column(name))

    n = table.num_rows
    uris = column(uri)
    assert uris is not None
    source_fields: list[tuple[str, pa.Array]] = [
        ("id", pa.array([source_id] * n, pa.string())),
        ("uri", uris),
    ]
    for name, given in (("content_type", content_type), ("width", width), ("height", height)):
        values = column(given)
        if values is not None:
            source_fields.append((name, values))
    source = pa.StructArray.from_arrays([v for _, v in source_fields], names=[k for k, _ in source_fields])
    offsets = pa.array(np.arange(n + 1, dtype=np.int32))
    out: dict[str, pa.Array] = {"sources": pa.ListArray.from_arrays(offsets, source)}
    for name, given in (("id", id), ("context_id", context_id), ("timestamp", timestamp)):
        values = column(given)
        if values is not None:
            out[name] = values
    for name, keys in (("meta", meta), ("meta_blob", meta_blob)):
        if keys:
            out[name] = pa.StructArray.from_arrays([column(k) for k in keys], names=list(keys))
    if rois is not None:
        out["rois"] = _rois_from(column(rois), rois)
    return pa.table(out)


def _rois_from(array: pa.Array | None, name: str) -> pa.Array:
    assert array is not None
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) or not pa.types.is_struct(
        array.type.value_type
    ):
        raise ValidationError(
            f"frames_from_columns: column {name!r} must be a list of structs, not {array.type}"
        )
    offsets, flat = list_parts(array)
    k = len(flat)
    fields: dict[str, pa.Array] = {}
    label = _struct_child(flat, "label")
    labels = _struct_child(flat, "labels")
    if labels is not None:
        fields["labels"] = labels
    elif label is not None:
        text = _text(label, k, f"{name}.label")
        lists = pa.ListArray.from_arrays(pa.array(np.arange(k + 1, dtype=np.int32)), text)
        fields["labels"] = pc.if_else(pc.is_valid(text), lists, pa.scalar(None, lists.type))
    box = _struct_child(flat, "box2d_xywh")
    if box is None:
        box = _struct_child(flat, "bbox")
    poly = _struct_child(flat, "poly")
    if poly is not None:
        fields["poly"] = poly
    elif box is not None:
        fields["poly"] = _corners(box, f"{name}.box2d_xywh")
        fields["type"] = pc.if_else(pc.is_valid(box), "box2d", pa.scalar(None, pa.string()))
    for extra in ("confidence", "id", "meta", "type"):
        values = _struct_child(flat, extra)
        if values is not None and extra not in fields:
            fields[extra] = values
    if not fields:
        raise ValidationError(
            f"frames_from_columns: the structs of column {name!r} need label or labels, and poly, "
            "box2d_xywh or bbox"
        )
    struct = pa.StructArray.from_arrays(list(fields.values()), names=list(fields))
    return pa.ListArray.from_arrays(offsets, struct, mask=pc.is_null(array))


def _corners(box: pa.Array, path: str) -> pa.Array:
    """Boxes (x, y, width, height) as a box's polygon: the four corners clockwise from the top left."""
    offsets, values = list_parts(box)
    lengths = np.diff(offsets.to_numpy())
    valid = np.asarray(pc.is_valid(box).to_numpy(zero_copy_only=False), dtype=bool)
    if np.any(lengths[valid] != 4):
        raise ValidationError(
            f"frames_from_columns: {path} holds boxes that are not 4 numbers (x, y, width, height)"
        )
    numbers = _floats(values, len(values), path).to_numpy(zero_copy_only=False)
    starts = offsets.to_numpy()[:-1][valid]
    xywh = numbers[starts[:, None] + np.arange(4)[None, :]] if len(starts) else np.zeros((0, 4))
    x, y, w, h = xywh[:, 0], xywh[:, 1], xywh[:, 2], xywh[:, 3]
    corners = np.stack([x, y, x + w, y, x + w, y + h, x, y + h], axis=1).reshape(-1)
    out_offsets = np.zeros(len(box) + 1, dtype=np.int32)
    np.cumsum(np.where(valid, 8, 0), out=out_offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(out_offsets), pa.array(corners, pa.float64()), mask=pa.array(~valid)
    )


__all__ = [
    "BATCH_ROWS",
    "INPUT_SCHEMA",
    "REWRITTEN",
    "arrow_batches",
    "check_schema",
    "convert",
    "frames_from_columns",
    "peek",
    "write_segments",
]
