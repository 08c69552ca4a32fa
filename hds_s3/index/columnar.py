"""Frame dicts to a segment table column by column: the fast path of ``add_frames``.

``add_frames`` given plain frame dicts of the common shape (sources without masks or previews;
box, polygon, point and label ROIs; metadata of plain JSON values) converts them here instead of
validating and normalising each frame on its own. For every frame it takes, the row is exactly the
one the per-frame path (:func:`hds_s3.index.ingest.normalize` then
:func:`hds_s3.index.segments.frame_row`) would build; every other frame, and every frame that
fails a check, is left to the per-frame path, which normalises it or says what is wrong.

One Python pass over the frames checks their shape and writes each metadata dict as JSON; what
can be checked on whole columns is checked after the conversion to Arrow (names, sizes, times,
polygons, labels, confidences, the sources ROIs name, and NaN or infinity in metadata, which
orjson writes as null). Metadata keys are checked against the set of keys already found good, so
each distinct key is looked at once.

The single-source shorthand (a top-level ``uri``, or one source without an ``id``) is spelled out
with :func:`hds_s3.model.frames.expand_shorthand` first, so such frames take the fast path too.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.errors import ValidationError
from hds_s3.index.arrowjson import text_bytes
from hds_s3.index.segments import (
    FRAME_SCHEMA,
    JSON_OPTIONS,
    MASK,
    PREVIEW,
    ROI,
    ROI_MASK,
    SOURCE,
    flatten_meta,
)
from hds_s3.model.frames import expand_shorthand
from hds_s3.model.limits import MAX_FRAME_BYTES, MAX_ROIS, MAX_SOURCES
from hds_s3.model.names import MAX_METADATA_DEPTH, MAX_STRING_BYTES

_TOP_KEYS = frozenset({"id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob"})
_SOURCE_KEYS = frozenset(
    {"id", "uri", "content_type", "width", "height", "timestamp", "meta", "preview", "masks"}
)
_ROI_KEYS = frozenset({"id", "labels", "type", "poly", "confidence", "sources", "meta", "mask"})
_FAST_TYPES = frozenset({"box2d", "poly2d", "points2d", "label"})
_PLAIN = frozenset({str, int, float, bool, type(None)})
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
_ROI_IN = pa.struct([(f.name, f.type) for f in ROI if f.name != "meta"])
_FLOAT_MAX = sys.float_info.max
_SEPARATOR = -999999999.0

HashId = Callable[[list[tuple[str, str]], int], str]
GuessType = Callable[[Any], str | None]


class _Slow(Exception):
    """Internal: this frame needs the per-frame path (to be normalised, or to be told what is wrong)."""


def fast_frames_table(
    frames: Sequence[Any], *, version_id: str, now: int, hash_id: HashId, guess_type: GuessType
) -> tuple[pa.Table, list[int], list[int]]:
    """Convert frame dicts to a segment table column by column.

    Returns the table (in input order, not yet sorted by id), the input index of each of its rows,
    and the indices left out (ascending). Frames whose shape is common and whose checks are
    vectorisable are converted here; every other one, and every one failing a check, is left for
    the per-frame path, which normalises it or says what is wrong. For the frames it takes, the
    rows are exactly those the per-frame path would build.

    The cyclic garbage collector is paused meanwhile: the pass allocates only acyclic objects, and
    with millions of input objects alive its full collections would cost more than the work.
    """
    with gc_paused():
        return _convert(frames, version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_type)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block (as it was before, after it).

    For work that allocates many acyclic objects and keeps them alive for a while (frame dicts,
    their conversion): every full collection would walk all of them, and none would be freed.
    Memory is still freed by reference counting; cycles made meanwhile wait for the next
    collection after the block.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Metas:
    """Writes metadata dicts as JSON, checking keys once per distinct key."""

    def __init__(self) -> None:
        self.good: set[str] = set()
        self.spent = 0  # bytes of metadata JSON written for the current frame

    def charge(self, raw: bytes) -> None:
        """Count a metadata text of the current frame; raise _Slow past a string's or a frame's limit."""
        self.spent += len(raw)
        if len(raw) > MAX_STRING_BYTES or self.spent > MAX_FRAME_BYTES:
            raise _Slow

    def text(self, value: object) -> str | None:
        """The JSON of a metadata value (None for None and {}); raises _Slow for what is not plain.

        NaN and infinity are not looked for here: orjson writes them as null, and
        :func:`_non_finite` looks closer at the texts holding a null.
        """
        if value is None:
            return None
        if type(value) is not dict:
            raise _Slow
        if not value:
            return None
        if _too_big(value):
            raise _Slow
        if not self.good.issuperset(value):
            for key in value:
                if type(key) is not str or not key or "." in key or "$" in key:
                    raise _Slow
                self.good.add(key)
        if not _PLAIN.issuperset(map(type, value.values())):
            _check_keys(value, 1)  # nested dicts and lists (or values of other types): walk them
        try:
            raw = orjson.dumps(value, option=JSON_OPTIONS)
        except TypeError:  # an integer beyond 64 bits, text UTF-8 cannot encode
            raise _Slow from None
        self.charge(raw)  # a text past the limit may be in it; the frame may be too large
        return raw.decode()


_is_str = str.__instancecheck__
#: The most entries a metadata dict on the fast path may have: more cannot fit in a text of
#: MAX_STRING_BYTES (each takes at least 6 bytes of JSON: ``"k":0,``).
_MAX_ENTRIES = MAX_STRING_BYTES // 6


def _too_big(value: dict[Any, Any]) -> bool:
    """True when a metadata dict may write more than MAX_STRING_BYTES of JSON.

    Such a dict is left to the per-frame path, which refuses it after a bounded walk. This is
    checked before the dict is written: orjson reserves several times a text's size for its
    escapes, so one huge text would cost hundreds of megabytes. Nested containers are measured by
    :func:`_check_keys`.
    """
    return len(value) > _MAX_ENTRIES or sum(map(len, filter(_is_str, value.values()))) > MAX_STRING_BYTES


def _check_keys(value: object, depth: int, room: int = MAX_STRING_BYTES) -> int:
    """Raise _Slow unless every key is a plain name and every value plain JSON (finite floats).

    Returns ``room`` less the characters of the keys and texts seen (a lower bound of the JSON's
    size); raises _Slow when that passes ``MAX_STRING_BYTES`` too. Nesting deeper than
    ``MAX_METADATA_DEPTH`` is left to the per-frame path (which refuses it), so the recursion here
    stays shallow.
    """
    if depth > MAX_METADATA_DEPTH:
        raise _Slow
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not key or "." in key or "$" in key:
                raise _Slow
            room = _check_value(item, depth, room - len(key) - 4)
    else:
        for item in value:  # type: ignore[attr-defined]
            room = _check_value(item, depth, room - 1)
    return room


def _check_value(item: object, depth: int, room: int) -> int:
    kind = type(item)
    if kind is dict or kind is list:
        room = _check_keys(item, depth + 1, room)
    elif kind is float:
        if not -_FLOAT_MAX <= item <= _FLOAT_MAX:  # type: ignore[operator]  # NaN compares false
            raise _Slow
    elif kind is str:
        room -= len(item)  # type: ignore[arg-type]
    elif kind is not int and kind is not bool and item is not None:
        raise _Slow
    if room < 0:
        raise _Slow
    return room


class _Pairs:
    """The entries of one map column, gathered frame by frame as flat lists."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[Any] = []
        self.offsets: list[int] = [0]

    def add(self, items: dict[str, Any]) -> None:
        """Append one frame's entries."""
        self.keys.extend(items)
        self.values.extend(items.values())
        self.offsets.append(len(self.keys))

    def array(self, value_type: pa.DataType) -> pa.MapArray:
        """The map column (string keys)."""
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, value_type),
        )


def _convert(
    frames: Sequence[Any], *, version_id: str, now: int, hash_id: HashId, guess_type: GuessType
) -> tuple[pa.Table, list[int], list[int]]:
    ok: list[int] = []
    slow: list[int] = []
    ids: list[Any] = []
    metas: list[str | None] = []
    blobs: list[str | None] = []
    strs = _Pairs()  # the frame meta's strings and numbers, by dotted key path (meta_str, meta_num)
    nums = _Pairs()
    src_meta: list[str | None] = []  # of every source of the frames taken, in order
    roi_meta: list[str | None] = []  # of every ROI of the frames taken, in order
    metas_ = _Metas()
    text, good = metas_.text, metas_.good
    dumps, plain = orjson.dumps, _PLAIN.issuperset
    top_ok, source_ok, roi_ok = _TOP_KEYS.issuperset, _SOURCE_KEYS.issuperset, _ROI_KEYS.issuperset
    add_src, add_roi = src_meta.append, roi_meta.append
    expanded: list[Any] | None = None  # a copy of frames with the shorthand spelled out, when needed
    for i, d in enumerate(frames):
        n_src, n_roi = len(src_meta), len(roi_meta)
        metas_.spent = 0
        try:
            if type(d) is not dict:
                raise _Slow
            sources = d.get("sources")
            if not top_ok(d) or (type(sources) is list and len(sources) == 1 and "id" not in sources[0]):
                full = expand_shorthand(d)
                if full is d or not top_ok(full):
                    raise _Slow
                if expanded is None:
                    expanded = list(frames)
                expanded[i] = d = full
                sources = d["sources"]
            if type(sources) is not list or not sources:
                raise _Slow
            if len(sources) > MAX_SOURCES:
                raise _Slow
            sids = set()
            for s in sources:
                if type(s) is not dict or not source_ok(s) or s.get("masks") or s.get("preview") is not None:
                    raise _Slow
                w, h = s.get("width"), s.get("height")
                if (w is not None and type(w) is not int) or (h is not None and type(h) is not int):
                    raise _Slow
                sids.add(s.get("id"))
                m = s.get("meta")
                add_src(None if m is None else text(m))
            if len(sids) != len(sources):  # two sources share an id
                raise _Slow
            for r in d.get("rois") or ():
                # ROI types and masks are checked on the converted columns (_invalid_rows)
                if type(r) is not dict or not roi_ok(r):
                    raise _Slow
                rs = r.get("sources")
                if rs and not sids.issuperset(rs):
                    raise _Slow
                m = r.get("meta")
                if m is None:
                    add_roi(None)
                elif (
                    type(m) is dict
                    and m
                    and good.issuperset(m)
                    and plain(map(type, m.values()))
                    and not _too_big(m)
                ):
                    raw = dumps(m, option=JSON_OPTIONS)  # the common case, inline
                    metas_.charge(raw)
                    add_roi(raw.decode())
                else:
                    add_roi(text(m))
            meta = d.get("meta")
            meta_text = text(meta)
            blob_text = text(d.get("meta_blob"))
            fid = d.get("id")
            if fid is None:
                ts = d.get("timestamp")
                if ts is None:
                    ts = sources[0].get("timestamp") or 0
                if type(ts) is not int:
                    raise _Slow
                fid = hash_id([(s["id"], s["uri"]) for s in sources], ts)
            elif type(fid) is not str:
                raise _Slow
        except (_Slow, ValidationError, TypeError, ValueError, KeyError):
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
            flatten_meta(meta, "", s_items, n_items)
        strs.add(s_items)
        nums.add(n_items)
    if not ok:
        return FRAME_SCHEMA.empty_table(), [], slow
    if expanded is not None:
        frames = expanded
    chosen = [frames[i] for i in ok]
    try:
        # converted in input order: the objects lie in memory in that order
        table = _columns(
            chosen,
            ids,
            pa.array(metas, pa.string()),
            pa.array(blobs, pa.string()),
            strs,
            nums,
            pa.array(src_meta, pa.string()),
            pa.array(roi_meta, pa.string()),
            version_id,
            now,
            guess_type,
        )
    except _ARROW_REFUSED:
        # Arrow refused a value the loop let through. Only now look for the rows that hold one
        # (text UTF-8 cannot encode, integers beyond 64 bits), leave them to the per-frame path
        # and convert the others; if Arrow still refuses, everything takes the per-frame path.
        refused = {i for i in ok if _arrow_may_refuse(frames[i])}
        if not refused:
            return FRAME_SCHEMA.empty_table(), [], sorted(slow + ok)
        keep = [i for i in ok if i not in refused]
        table, rows, left = _convert(
            [frames[i] for i in keep], version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_type
        )
        return table, [keep[r] for r in rows], sorted(slow + sorted(refused) + [keep[r] for r in left])
    taken = ok
    bad = _invalid_rows(table) | _non_finite(table, chosen) | _may_be_too_large(table)
    if bad.any():
        slow = slow + [taken[j] for j in np.flatnonzero(bad)]
        taken = [i for i, b in zip(taken, bad.tolist(), strict=True) if not b]
        table = table.filter(pa.array(~bad))
    return table, taken, sorted(slow)


def _arrow_may_refuse(d: dict[str, Any]) -> bool:
    """True when a frame dict holds a value Arrow refuses (or may refuse).

    That is text UTF-8 cannot encode, an integer size or time out of range, a ROI type that is not
    text or a ROI mask that is not a dict. Only called after Arrow refused a batch, to find the
    rows to leave to the per-frame path.
    """
    try:
        json.dumps(d, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return True
    for roi in d.get("rois") or ():
        mask = roi.get("mask")
        if type(roi.get("type")) is not str or (mask is not None and type(mask) is not dict):
            return True
    values = [d.get("timestamp")]
    for src in d["sources"]:
        values += (src.get("width"), src.get("height"), src.get("timestamp"))
    return any(v is not None and (type(v) is not int or not _INT64_MIN <= v <= _INT64_MAX) for v in values)


def _non_finite(table: pa.Table, chosen: list[dict[str, Any]]) -> np.ndarray:
    """True for each row whose metadata (frame, blob, sources, ROIs) holds NaN or infinity.

    orjson writes those as null; only the texts holding a null are looked at again, in the dicts.
    """
    bad = np.zeros(table.num_rows, dtype=bool)

    def suspects(texts: pa.Array | pa.ChunkedArray) -> list[int]:
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        found = pc.match_substring(texts, "null")
        return pc.indices_nonzero(found).to_pylist() if found.true_count else []

    def finite(value: object) -> bool:
        try:
            _check_keys(value, 1)
        except _Slow:
            return False
        return True

    for column, key in (("meta", "meta"), ("meta_blob", "meta_blob")):
        for row in suspects(table.column(column)):
            if not finite(chosen[row][key]):
                bad[row] = True
    for column in ("sources", "rois"):
        lists = table.column(column).combine_chunks()
        rows = suspects(lists.values.field("meta"))
        if not rows:
            continue
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        starts = lists.offsets.to_numpy(zero_copy_only=False)
        for at in rows:
            row = int(parents[at])
            item = chosen[row][column][at - int(starts[row])]
            if not finite(item["meta"]):
                bad[row] = True
    return bad


# ---------------------------------------------------------------------------- columns and checks


def _columns(
    chosen: list[dict[str, Any]],
    ids: list[str],
    metas: pa.Array,
    blobs: pa.Array,
    strs: _Pairs,
    nums: _Pairs,
    src_meta: pa.Array,
    roi_meta: pa.Array,
    version_id: str,
    now: int,
    guess_type: GuessType,
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
            src_meta,
            pa.nulls(n_src, PREVIEW),
            pa.ListArray.from_arrays(pa.array(np.zeros(n_src + 1, np.int32)), pa.array([], MASK)),
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
            bind_lone_source(
                pc.fill_null(r_flat.field("sources"), pa.scalar([], pa.list_(pa.string()))),
                roi_in.offsets,
                pa.ListArray.from_arrays(src_in.offsets, s_flat),
            ),
            roi_meta,
            pa.nulls(len(r_flat), ROI_MASK),
        ],
        fields=list(ROI),
    )
    rois = pa.ListArray.from_arrays(roi_in.offsets, rois_struct)
    first = pc.list_element(sources, 0)
    context = pa.array(list(map(dict.get, chosen, repeat("context_id"))), pa.string())
    stamp = pa.array(list(map(dict.get, chosen, repeat("timestamp"))), pa.int64())
    label_offsets = pc.take(r_flat.field("labels").offsets, roi_in.offsets)
    labels = pa.ListArray.from_arrays(label_offsets, r_flat.field("labels").flatten())
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pc.coalesce(context, pc.struct_field(first, "uri")),
            pc.coalesce(stamp, pc.struct_field(first, "timestamp")),
            sources,
            rois,
            metas,
            blobs,
            pa.array(np.full(n, now, np.int64)),
            pa.array([version_id] * n, pa.string()),
            pa.array([version_id] * n, pa.string()),
            labels,
            pc.cast(pc.list_value_length(rois), pa.int32()),
            strs.array(pa.string()),
            nums.array(pa.float64()),
        ],
        schema=FRAME_SCHEMA,
    )


def bind_lone_source(roi_sources: pa.Array, roi_offsets: pa.Array, sources: pa.Array) -> pa.Array:
    """The ROIs' ``sources`` with an empty list bound to the frame's source when it has only one.

    A ROI of a frame of one source (a ``SingleFrame``) is of that source: it is stored as
    ``["default"]`` (the source's id), as the reference's frames show it, whichever way the frame
    came in. ``roi_offsets`` are the frames' list offsets into the ROIs; ``sources`` the frames'
    list of source structs. Vectorised: no Python work per ROI.
    """
    k = len(roi_sources)
    if k == 0:
        return roi_sources
    offsets = np.asarray(roi_offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    frame_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    n_src = np.asarray(pc.fill_null(pc.list_value_length(sources), 0).to_numpy(zero_copy_only=False))
    empty = np.asarray(
        pc.fill_null(pc.equal(pc.list_value_length(roi_sources), 0), True).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    need = empty & (n_src[frame_of] == 1)
    if not need.any():
        return roi_sources
    starts = np.cumsum(n_src) - n_src
    ids = pc.struct_field(pc.list_flatten(sources), "id")
    firsts = ids.take(pa.array(starts[frame_of[need]], pa.int64()))
    where = np.flatnonzero(need)
    slot = np.zeros(k, dtype=np.int64)
    slot[where] = np.arange(len(where))
    one = pa.ListArray.from_arrays(pa.array(np.arange(len(where) + 1, dtype=np.int32)), firsts)
    single = one.take(pa.array(slot, pa.int64()))
    out: pa.Array = pc.if_else(pa.array(need), single, roi_sources)
    return out


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


def _bad_names(names: pa.Array, *, distinct: bool = False) -> np.ndarray:
    """True where a non-null name is empty, blank, over 255 bytes or unprintable (checked per value).

    Unprintable is wider than the per-frame rule (control characters): such rows only take the
    per-frame path, which then decides exactly. Names repeat (labels, source ids), so they are
    checked once per distinct value, unless ``distinct`` says they are mostly different (frame and
    ROI ids), when a dictionary would cost more than it saves.
    """
    if len(names) == 0:
        return np.zeros(0, dtype=bool)
    encoded = None if distinct else pc.dictionary_encode(names)
    values = names if encoded is None else encoded.dictionary
    bad = pc.or_(pc.greater(pc.binary_length(values), 255), _all_space(values))
    per_value: np.ndarray = _np(bad, False).astype(bool) | _unprintable(values)
    if encoded is None:
        return per_value
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    out = np.zeros(len(names), dtype=bool)
    valid = ~np.asarray(encoded.indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out[valid] = per_value[indices[valid].astype(np.int64)]
    return out


def _blank(texts: pa.Array) -> np.ndarray:
    """True where a text may be blank to Python's ``str.strip`` (the per-frame rule for URIs).

    Arrow trims Unicode's White_Space; Python also strips four control characters (U+001C..U+001F),
    so any text holding a character that is not printable is flagged too (the per-frame path decides).
    """
    out: np.ndarray = _np(_all_space(texts), False).astype(bool) | _unprintable(texts)
    return out


def _all_space(texts: pa.Array) -> pa.Array:
    """True where a text is empty or Unicode White_Space alone: empty once trimmed (null stays null).

    The same as ``utf8_length(utf8_trim_whitespace(texts)) == 0`` without building trimmed texts.
    """
    out: pa.Array = pc.or_(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return out


def _unprintable(texts: pa.Array) -> np.ndarray:
    """True where a text holds a character Arrow's ``utf8_is_printable`` refuses (False for nulls).

    Texts of printable ASCII alone (ids, URIs, labels: nearly always) are known so by one pass over
    their bytes; Arrow classifies each character (some 30 times slower) only when a byte is not one.
    """
    raw = text_bytes(texts)
    if raw is not None and bool(((raw - np.uint8(0x20)) < np.uint8(0x5F)).all()):  # " " .. "~"
        return np.zeros(len(texts), dtype=bool)
    return _np(pc.invert(pc.utf8_is_printable(texts)), False).astype(bool)


#: Bytes of JSON a frame, a source and a ROI take beyond their texts and numbers (keys, punctuation,
#: null, and numbers of at most 20 digits): more than they ever take.
_FRAME_FIXED, _SOURCE_FIXED, _ROI_FIXED = 400, 200, 200
#: Bytes of JSON a coordinate may take (``-1.2345678901234567e-308,``).
_NUMBER_CHARS = 25


def _may_be_too_large(table: pa.Table) -> np.ndarray:
    """True for each row that may pass a limit of :mod:`hds_s3.model.limits` (the per-frame path decides).

    That is more sources or ROIs than a frame may have, a text longer than a string may be (a URI,
    a context id, a content type; a metadata text, which may hold one), or an upper bound of the
    frame's JSON size over the limit: every text counted six times (the most JSON escaping makes of
    a byte), metadata texts twice (Python's JSON writes a float at most two characters longer than
    orjson's, and no float in fewer than three), and every coordinate as 25 characters.
    """
    rows = table.num_rows
    bad = np.zeros(rows, dtype=bool)
    bound = np.full(rows, _FRAME_FIXED, dtype=np.float64)

    def sizes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return _np(pc.binary_length(texts), 0).astype(np.float64)

    def per_row(lists: pa.ListArray, values: np.ndarray) -> np.ndarray:
        return _sums(lists, values, rows)

    for column, factor in (("id", 6), ("context_id", 6), ("meta", 2), ("meta_blob", 2)):
        size = sizes(table.column(column))
        bad |= size > MAX_STRING_BYTES
        bound += factor * size
    sources = table.column("sources").combine_chunks()
    src = sources.values
    bad |= _np(pc.list_value_length(sources), 0) > MAX_SOURCES
    text = sizes(src.field("id")) + sizes(src.field("uri")) + sizes(src.field("content_type"))
    meta = sizes(src.field("meta"))
    bad |= per_row(sources, ((text > MAX_STRING_BYTES) | (meta > MAX_STRING_BYTES)).astype(np.float64)) > 0
    bound += per_row(sources, 6 * text + 2 * meta + _SOURCE_FIXED)
    rois = table.column("rois").combine_chunks()
    roi = rois.values
    bad |= _np(pc.list_value_length(rois), 0) > MAX_ROIS
    if len(roi):
        meta = sizes(roi.field("meta"))
        bad |= per_row(rois, (meta > MAX_STRING_BYTES).astype(np.float64)) > 0
        own = 6 * (sizes(roi.field("id")) + sizes(roi.field("type"))) + 2 * meta + _ROI_FIXED
        own += _NUMBER_CHARS * _np(pc.list_value_length(roi.field("poly")), 0)
        for names in (roi.field("labels"), roi.field("sources")):
            flat = pc.list_flatten(names)
            own += _sums(names, 6 * sizes(flat) + 3, len(roi))
        bound += per_row(rois, own)
    return bad | (bound > MAX_FRAME_BYTES)


def _sums(lists: pa.ListArray, values: np.ndarray, count: int) -> np.ndarray:
    """The sums of ``values`` (one per element of ``lists``) per list, for ``count`` lists."""
    if not len(values):
        return np.zeros(count)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=values, minlength=count)


def _invalid_rows(table: pa.Table) -> np.ndarray:
    """True for each row that breaks a rule of the per-frame path (it then explains which)."""
    bad = _bad_names(table.column("id").combine_chunks(), distinct=True)
    bad |= _np(table.column("timestamp"), 0) < 0
    bad |= _np(pc.utf8_length(table.column("context_id")), 1) == 0
    sources = table.column("sources").combine_chunks()
    src = sources.values
    src_bad = _blank(src.field("uri"))
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
        roi_bad = ~_np(pc.is_in(kind, pa.array(sorted(_FAST_TYPES))), False).astype(bool)
        roi_bad |= np.asarray(roi.field("mask").is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        is_box = _np(pc.equal(kind, "box2d"), False)
        is_label = _np(pc.equal(kind, "label"), False)
        poly = roi.field("poly")
        size = _np(pc.list_value_length(poly), -1)
        coords = pc.list_flatten(poly).to_numpy(zero_copy_only=False)
        roi_bad |= size < 0
        coord_bad = ~np.isfinite(coords) | (coords == _SEPARATOR)
        _spread(roi_bad, poly, coord_bad)
        roi_bad |= is_box & (size != 8)
        roi_bad |= ~is_box & (size % 2 != 0)
        roi_bad |= np.where(is_label, size != 0, size == 0)
        boxes = np.flatnonzero(is_box & (size == 8))
        if len(boxes):
            if len(boxes) * 8 == len(coords):  # the boxes hold every coordinate, in a row: no gather
                v = coords.reshape(-1, 8)
            else:
                starts = poly.offsets.to_numpy(zero_copy_only=False)[boxes]
                v = coords[starts[:, None] + np.arange(8)[None, :]]
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
        roi_bad |= _bad_names(roi.field("id"), distinct=True)  # mostly distinct: no dictionary
        _spread(bad, rois, roi_bad)
    return bad
