r"""Metadata columns as JSON text and as typed query maps, computed with Arrow compute.

Arrow input to ``add_frames`` may hold metadata (of frames, sources and ROIs) as JSON text, as a
struct column or as a map column. A segment keeps it as compact JSON text and projects the frame
metadata into ``meta_str`` and ``meta_num`` (dotted key paths, see :mod:`hds_s3.index.segments`).
This module does both for whole columns: struct and map columns are written as JSON with string
kernels (a field of a struct that is null is a key the row does not have), and JSON text is parsed
with Arrow's JSON reader into a struct column, which is then projected like any other.

Every function returns, beside its result, a boolean mask of the rows it could not vouch for
(a key holding ``.`` or ``$``, NaN or infinity, nesting deeper than the limit, a string holding a
control character JSON must escape as ``\u00XX``, JSON text Arrow cannot read). Such rows are
left to the per-frame path, which converts them exactly or says what is wrong with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from hds_s3.errors import ValidationError
from hds_s3.model.names import MAX_METADATA_DEPTH

#: Characters JSON escapes with a backslash, and their escapes.
_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
#: Control characters that JSON writes as ``\\u00XX`` (left to the per-frame path, which does that).
_OTHER_CONTROL = "[\\x00-\\x07\\x0b\\x0e-\\x1f]"


def plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, dictionaries decoded, large and view strings as plain strings."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_large_string(kind) or kind == pa.string_view():
        array = array.cast(pa.string())
    elif pa.types.is_large_binary(kind):
        array = array.cast(pa.binary())
    return array


def rows_of(valid_elements: np.ndarray, lists: pa.Array) -> np.ndarray:
    """Which list of ``lists`` holds each element flagged in ``valid_elements`` (a row mask)."""
    out = np.zeros(len(lists), dtype=bool)
    if valid_elements.any():
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        out[parents[valid_elements]] = True
    return out


def text_bytes(texts: pa.Array) -> np.ndarray | None:
    """The bytes of a string array's values (a view, no copy), or None when it is not a string array.

    Checks that hold for every byte (no escape needed, only printable ASCII) then take one numpy
    pass over a column instead of a regular expression or a Unicode class per value.
    """
    large = pa.types.is_large_string(texts.type)
    if not (large or pa.types.is_string(texts.type)):
        return None
    if not len(texts):
        return np.zeros(0, dtype=np.uint8)
    _, where, data = texts.buffers()
    offsets = np.frombuffer(where, dtype=np.int64 if large else np.int32)
    first, last = int(offsets[texts.offset]), int(offsets[texts.offset + len(texts)])
    if data is None or first == last:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8, count=last - first, offset=first)


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    out: np.ndarray = np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
    return out


def quote(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """JSON string literals of a string column (null stays null), and the rows left to Python."""
    out = texts
    data = text_bytes(texts)  # a backslash, a quote or a control character anywhere?
    if data is None or ((data < 0x20) | (data == 0x22) | (data == 0x5C)).any():
        for raw, escaped in _ESCAPES:
            out = pc.replace_substring(out, raw, escaped)
        bad = _mask(pc.match_substring_regex(texts, _OTHER_CONTROL))
    else:
        bad = np.zeros(len(texts), dtype=bool)
    return pc.binary_join_element_wise('"', out, '"', ""), bad


#: Magnitudes Arrow writes in another notation than orjson (the dict path): from 1e10 to 1e16 Arrow
#: writes an exponent ("1.5e+10"), orjson the digits; from 1e-6 to 1e-5 the reverse.
_ARROW_EXPONENT = (1e10, 1e16)
_ORJSON_EXPONENT = (1e-6, 1e-5)


def _float_text(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """JSON numbers of a float column, as the dict path writes them (``3.0`` keeps its ``.0``).

    Whole numbers below 1e16 are written as integers with ``.0`` (Python's and orjson's way). Other
    numbers take Arrow's shortest text, which is orjson's except in the two ranges where they choose
    another notation (:data:`_ARROW_EXPONENT`, :data:`_ORJSON_EXPONENT`): rows holding such a number
    are left to the per-frame path, as are rows holding NaN or an infinity.
    """
    doubles = values.cast(pa.float64())
    numbers = np.asarray(doubles.to_numpy(zero_copy_only=False), dtype=np.float64)  # null: NaN
    present = _mask(doubles.is_valid())
    bad = ~np.isfinite(numbers) & present
    size = np.abs(numbers)
    whole = (np.floor(numbers) == numbers) & (size < 1e16) & ~((numbers == 0) & np.signbit(numbers))
    other = present & ~bad & ~whole  # -0.0 is one: Arrow writes "-0", and ".0" is added below
    low, high = _ARROW_EXPONENT
    tiny_low, tiny_high = _ORJSON_EXPONENT
    bad |= other & (((size >= low) & (size < high)) | ((size >= tiny_low) & (size < tiny_high)))
    as_int = pa.array(np.where(whole, numbers, 0.0).astype(np.int64), mask=~whole)
    text = pc.binary_join_element_wise(as_int.cast(pa.string()), ".0", "")
    if other.any():
        written = doubles.cast(pa.string())
        zero = pa.array((numbers == 0) & present)
        written = pc.if_else(zero, pc.binary_join_element_wise(written, ".0", ""), written)
        text = pc.if_else(pa.array(whole), text, written)
    return text, bad


def to_json(array: pa.Array, path: str, depth: int = 1) -> tuple[pa.Array, np.ndarray]:
    """Write each value of a metadata column as compact JSON text (null stays null).

    Returns the texts and a mask of the rows left to the per-frame path (see the module docstring).

    Raises:
        ValidationError: naming ``path``, for a column type that is not JSON (binary, decimal, ...).
    """
    array = plain(array)
    kind = array.type
    n = len(array)
    no_bad = np.zeros(n, dtype=bool)
    if pa.types.is_null(kind):
        return pa.nulls(n, pa.string()), no_bad
    if depth > MAX_METADATA_DEPTH + 1:
        return pa.nulls(n, pa.string()), _mask(array.is_valid())
    if pa.types.is_string(kind):
        return quote(array)
    if pa.types.is_boolean(kind):
        return pc.if_else(array, "true", "false"), no_bad
    if pa.types.is_integer(kind):
        return array.cast(pa.string()), no_bad
    if pa.types.is_floating(kind):
        return _float_text(array)
    if pa.types.is_temporal(kind):
        return quote(array.cast(pa.string()))
    if pa.types.is_struct(kind):
        return _struct_json(array, path, depth)
    if pa.types.is_map(kind):
        return _map_json(array, path, depth)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        offsets, values = list_parts(array)
        texts, bad_values = to_json(values, path, depth + 1)
        items = pa.ListArray.from_arrays(offsets, pc.fill_null(texts, "null"))
        joined = pc.binary_join_element_wise("[", pc.binary_join(items, ","), "]", "")
        joined = pc.if_else(array.is_valid(), joined, pa.scalar(None, pa.string()))
        bad = rows_of(bad_values, pa.ListArray.from_arrays(offsets, values)) if len(values) else no_bad
        return joined, bad
    raise ValidationError(
        f"{path}: a column of type {kind} cannot be stored as JSON metadata; give text, numbers, "
        "booleans, lists, structs or maps with text keys (or the metadata as JSON text)"
    )


def list_parts(array: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Offsets (int32, from 0) and the flattened values of any list column (null lists hold nothing)."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(array) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > 2**31 - 1:
        raise ValidationError(
            "a list column holds more than 2**31 - 1 values in one batch; give smaller batches"
        )
    return pa.array(offsets.astype(np.int32)), pc.list_flatten(array)


def _bad_key(name: str) -> bool:
    return not name or "." in name or "$" in name


def _struct_json(array: pa.StructArray, path: str, depth: int) -> tuple[pa.Array, np.ndarray]:
    n = len(array)
    bad = np.zeros(n, dtype=bool)
    fields: list[tuple[str, pa.Array]] = []  # each field's key ('"key":') and its values' text
    for i in range(array.type.num_fields):
        name = array.type.field(i).name
        child = pc.struct_field(array, [i])
        if _bad_key(name):
            bad |= _mask(child.is_valid())
            continue
        text, child_bad = to_json(child, f"{path}.{name}", depth + 1)
        bad |= child_bad
        fields.append((orjson.dumps(name).decode() + ":", text))
    if not fields:
        body = pa.array(["{}"] * n, pa.string())
    elif all(text.null_count == 0 for _, text in fields):
        # every field in every row: '{"a":1,"b":2}' in one pass over the values
        parts: list[Any] = []
        for k, (key, text) in enumerate(fields):
            parts += [("{" if k == 0 else ",") + key, text]
        body = pc.binary_join_element_wise(*parts, "}", "")
    else:
        # each present field as '"key":value,' (absent: ''); the last comma is trimmed
        entries = [pc.fill_null(pc.binary_join_element_wise(key, text, ",", ""), "") for key, text in fields]
        body = pc.utf8_rtrim(pc.binary_join_element_wise("{", *entries, ""), characters=",")
        body = pc.binary_join_element_wise(body, "}", "")
    if array.null_count == 0:
        return body, bad
    return pc.if_else(array.is_valid(), body, pa.scalar(None, pa.string())), bad


def map_parts(array: pa.MapArray, path: str) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Offsets (int32, from 0), flat keys and flat values of a map column with text keys.

    Raises:
        ValidationError: naming ``path``, when the keys are not text.
    """
    if array.offset:  # a slice: its offsets and validity start inside the buffers, copy it
        array = pa.concat_arrays([array])
    entries = pa.StructArray.from_arrays([array.keys, array.items], names=["key", "value"])
    lists = pa.ListArray.from_arrays(array.offsets, entries, mask=array.is_null())
    offsets, flat = list_parts(lists)
    keys = plain(flat.field("key"))
    if not pa.types.is_string(keys.type):
        raise ValidationError(f"{path}: a map column of metadata needs text keys, not {keys.type}")
    return offsets, keys, plain(flat.field("value"))


def _map_json(array: pa.MapArray, path: str, depth: int) -> tuple[pa.Array, np.ndarray]:
    offsets, flat_keys, flat_items = map_parts(array, path)
    lists = pa.ListArray.from_arrays(offsets, flat_keys)
    key_bad = _mask(
        pc.or_(
            pc.or_(pc.match_substring(flat_keys, "."), pc.match_substring(flat_keys, "$")),
            pc.equal(pc.utf8_length(flat_keys), 0),
        )
    )
    quoted, quote_bad = quote(flat_keys)
    values, value_bad = to_json(flat_items, f"{path}.<value>", depth + 1)
    items = pc.binary_join_element_wise(quoted, ":", pc.fill_null(values, "null"), "")
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")
    body = pc.binary_join_element_wise("{", joined, "}", "")
    bad = rows_of(key_bad | quote_bad | value_bad, lists) if len(flat_keys) else np.zeros(len(array), bool)
    return pc.if_else(array.is_valid(), body, pa.scalar(None, pa.string())), bad


# ---------------------------------------------------------------------------- JSON text to structs


def parse_objects(texts: pa.Array) -> list[tuple[int, int, pa.Array | None]]:
    """Parse JSON object texts (null: no metadata) into struct columns, piece by piece.

    Returns ``(start, stop, structs)`` pieces covering the rows in order. Arrow's JSON reader reads a
    whole column at once when it can; when it cannot (a text that is not a JSON object, values whose
    types disagree between rows), the rows are halved until each piece reads, and a single row that
    still does not read is returned with ``None`` (for the per-frame path to judge).
    """
    texts = plain(texts)
    filled = pc.fill_null(texts, "{}")
    multiline = bool(pc.any(pc.match_substring(filled, "\n")).as_py()) if len(filled) else False
    options = pajson.ParseOptions(newlines_in_values=multiline)
    out: list[tuple[int, int, pa.Array | None]] = []
    pending = [(0, len(filled))]
    while pending:
        start, stop = pending.pop()
        piece = filled.slice(start, stop - start)
        parsed = _read(piece, options)
        if parsed is not None or stop - start == 1:
            out.append((start, stop, parsed))
        else:
            middle = (start + stop) // 2
            pending += [(middle, stop), (start, middle)]
    out.sort(key=lambda p: p[0])
    return out


def read_objects(data: pa.Buffer, options: pajson.ParseOptions) -> pa.Table:
    """Read newline-separated JSON objects with Arrow's reader, text kept as text.

    The reader infers a timestamp for a string that looks like one (``"2024-10-01"``); metadata is
    what the user wrote, and queries compare such dates as text (ISO dates sort as text), so the
    objects are read again with those fields declared as strings.

    Raises:
        pa.ArrowInvalid, pa.ArrowNotImplementedError: the texts are not JSON objects Arrow reads.
    """
    read_options = pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * data.size))
    table = pajson.read_json(pa.BufferReader(data), read_options=read_options, parse_options=options)
    as_text = pa.schema([pa.field(f.name, _time_as_text(f.type)) for f in table.schema])
    if as_text.equals(table.schema):
        return table
    again = pajson.ParseOptions(
        explicit_schema=as_text,
        newlines_in_values=options.newlines_in_values,
        unexpected_field_behavior="infer",
    )
    return pajson.read_json(pa.BufferReader(data), read_options=read_options, parse_options=again)


def _time_as_text(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every temporal type inside it (struct fields, list items) made a string."""
    if pa.types.is_temporal(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _time_as_text(f.type)) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(_time_as_text(kind.value_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_time_as_text(kind.value_type))
    return kind


def _read(texts: pa.Array, options: pajson.ParseOptions) -> pa.Array | None:
    if len(texts) == 0:
        return pa.array([], pa.struct([]))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts), "\n")
    try:
        table = read_objects(joined[0].as_buffer(), options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(texts):
        return None
    if table.num_columns == 0:
        return pa.array([{}] * len(texts), pa.struct([]))
    return pa.StructArray.from_arrays([plain(c) for c in table.columns], names=table.column_names)


# ---------------------------------------------------------------------------- projection for queries


def project(array: pa.Array) -> tuple[pa.MapArray, pa.MapArray, np.ndarray]:
    """``meta_str`` and ``meta_num`` of a struct or map column of frame metadata, and rows to leave.

    Strings go to ``meta_str``, numbers and booleans (as 0/1) to ``meta_num``, under dotted key
    paths of nested structs; lists and nulls are not projected (as :func:`segments.flatten_meta`).
    """
    n = len(array)
    leaves: list[tuple[str, pa.Array]] = []
    bad = np.zeros(n, dtype=bool)
    if pa.types.is_struct(array.type):
        _leaves(array, "", leaves, 1)
    elif pa.types.is_map(array.type):
        return _project_map(array)
    strs = _build_map([(k, v) for k, v in leaves if pa.types.is_string(v.type)], n, pa.string())
    nums = _build_map(
        [(k, _number(v)) for k, v in leaves if _is_number(v.type)],
        n,
        pa.float64(),
    )
    return strs, nums, bad


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


def _number(values: pa.Array) -> pa.Array:
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, 1.0, 0.0)
    return values.cast(pa.float64())


def _leaves(array: pa.StructArray, prefix: str, out: list[tuple[str, pa.Array]], depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        return
    for i in range(array.type.num_fields):
        name = array.type.field(i).name
        child = plain(pc.struct_field(array, [i]))
        if pa.types.is_struct(child.type):
            _leaves(child, prefix + name + ".", out, depth + 1)
        else:
            out.append((prefix + name, child))


def _build_map(columns: Sequence[tuple[str, pa.Array]], n: int, value_type: pa.DataType) -> pa.MapArray:
    """A map column from K key columns: row i holds (key_j, value_j[i]) for each non-null value, key order."""
    rows: list[np.ndarray] = []
    which: list[np.ndarray] = []
    values: list[pa.Array] = []
    for j, (_, column) in enumerate(columns):
        valid = np.flatnonzero(_mask(column.is_valid()))
        if len(valid) == 0:
            continue
        rows.append(valid)
        which.append(np.full(len(valid), j, dtype=np.int32))
        values.append(column.take(pa.array(valid)).cast(value_type))
    if not rows:
        return empty_map(n, value_type)
    row = np.concatenate(rows)
    order = np.argsort(row, kind="stable")
    names = pa.array([k for k, _ in columns], pa.string())
    keys = names.take(pa.array(np.concatenate(which)[order]))
    items = pa.concat_arrays(values).take(pa.array(order))
    counts = np.bincount(row, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items)


def _project_map(array: pa.MapArray) -> tuple[pa.MapArray, pa.MapArray, np.ndarray]:
    n = len(array)
    offsets, keys, items = map_parts(array, "meta")
    parents = pc.list_parent_indices(pa.ListArray.from_arrays(offsets, keys)).to_numpy(zero_copy_only=False)
    empty_num, empty_str = empty_map(n, pa.float64()), empty_map(n, pa.string())
    if pa.types.is_string(items.type):
        take = np.flatnonzero(_mask(items.is_valid()))
        strs = _map_from(parents[take], keys.take(pa.array(take)), items.take(pa.array(take)), n)
        return strs, empty_num, np.zeros(n, bool)
    if _is_number(items.type):
        take = np.flatnonzero(_mask(items.is_valid()))
        nums = _number(items).take(pa.array(take))
        return empty_str, _map_from(parents[take], keys.take(pa.array(take)), nums, n), np.zeros(n, bool)
    return empty_str, empty_num, np.zeros(n, bool)


def empty_map(n: int, value_type: pa.DataType) -> pa.MapArray:
    """A map column of ``n`` empty maps with text keys."""
    return pa.MapArray.from_arrays(
        pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()), pa.array([], value_type)
    )


def _map_from(parents: np.ndarray, keys: pa.Array, values: pa.Array, n: int) -> pa.MapArray:
    counts = np.bincount(parents, minlength=n) if len(parents) else np.zeros(n, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values)


def bad_keys(array: pa.Array, depth: int = 1) -> np.ndarray:
    """Rows of a struct column (frame metadata parsed from JSON) that break a key or nesting rule.

    Keys holding ``.`` or ``$`` or empty, nesting deeper than the limit, and non-finite numbers
    (JSON text cannot hold them, but a struct column can).
    """
    n = len(array)
    bad = np.zeros(n, dtype=bool)
    kind = array.type
    if pa.types.is_struct(kind):
        if depth > MAX_METADATA_DEPTH:
            return _mask(array.is_valid())
        for i in range(kind.num_fields):
            child = pc.struct_field(array, [i])
            if _bad_key(kind.field(i).name):
                bad |= _mask(child.is_valid())
            else:
                bad |= bad_keys(child, depth + 1)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        if depth > MAX_METADATA_DEPTH:
            return _mask(array.is_valid())
        offsets, values = list_parts(array)
        inner = bad_keys(values, depth + 1)
        if inner.any():
            bad |= rows_of(inner, pa.ListArray.from_arrays(offsets, values))
    elif pa.types.is_floating(kind):
        bad |= ~_mask(pc.is_finite(array)) & _mask(array.is_valid())
    return bad
