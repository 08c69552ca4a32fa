"""Statistics of the frames a DataView matches: labels after its mapping, ROIs, property distributions.

Everything is computed over Arrow and numpy arrays of all matched frames at once: ROIs and their
labels are flattened with their parent indices, and each mapping rule is applied to the ROIs that
carry all of its ``from_labels`` and that no earlier rule mapped (as the iterator does: the
``from_labels`` are replaced by one ``to_label``, the ROI's other labels stay).

A property is named as in queries: ``meta.<path>`` (a frame metadata value, string, number or
boolean; lists and objects are not projected and count as missing), ``sources.<field>`` and
``rois.<field>`` (a scalar field of each source or ROI: counted per source or ROI), or a frame
column (``context_id``, ``timestamp``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.errors import ValidationError
from hds_s3.model.names import preview

_SOURCE_FIELDS = ("id", "uri", "content_type", "width", "height", "timestamp")
_ROI_FIELDS = ("id", "type", "confidence")
_FRAME_FIELDS = ("context_id", "timestamp")


@dataclass(frozen=True)
class Selected:
    """The matched rows of one (dataset, version) pair and the mapping rules that apply to it.

    ``frames`` holds each row's index among all matched frames (as ``rows`` orders them).
    """

    table: pa.Table
    rows: np.ndarray
    frames: np.ndarray
    mapping: Sequence[tuple[tuple[str, ...], str]]


def property_names(properties: object) -> list[str]:
    """The property names ``get_stats`` was given: one name, a sequence of names, or None.

    Raises:
        ValidationError: anything else.
    """
    if properties is None:
        return []
    if isinstance(properties, str):
        return [properties]
    if isinstance(properties, (list, tuple)) and all(isinstance(p, str) for p in properties):
        return list(properties)
    raise ValidationError(
        "properties must be a property name or a list of them "
        f"(such as ['meta.city']), got {preview(properties)}"
    )


def columns_for(properties: Sequence[str]) -> set[str]:
    """The frame-index columns the statistics of ``properties`` read (besides ``rois``).

    Raises:
        ValidationError: a property that is not ``meta.<path>``, ``sources.<field>``,
            ``rois.<field>`` or a frame column.
    """
    out: set[str] = set()
    for name in properties:
        column = _column_of(name)
        out |= {"meta_str", "meta_num"} if column == "meta_str" else {column}
    return out


def _column_of(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a property is a non-empty string such as 'meta.city', got {preview(name)}")
    head, _, rest = name.partition(".")
    if head == "meta" and rest:
        return "meta_str"
    if head == "sources" and rest in _SOURCE_FIELDS:
        return "sources"
    if head == "rois" and rest in _ROI_FIELDS:
        return "rois"
    if name in _FRAME_FIELDS:
        return name
    raise ValidationError(
        f"property {preview(name)} is not one get_stats() counts; use meta.<path>, "
        f"sources.<{'|'.join(_SOURCE_FIELDS)}>, rois.<{'|'.join(_ROI_FIELDS)}> or "
        f"{' or '.join(_FRAME_FIELDS)}"
    )


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column


def _bool_mask(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _mapped_labels(part: Selected) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(labels after mapping, the matched-frame index of each, the matched-frame index of each ROI)."""
    rois = _array(part.table.column("rois"))
    roi_frame = part.frames[np.asarray(pc.list_parent_indices(rois).to_numpy(), dtype=np.int64)]
    flat = pc.list_flatten(rois)
    if len(flat) == 0:
        return pa.array([], pa.string()), np.zeros(0, np.int64), roi_frame
    label_lists = pc.struct_field(flat, "labels")
    label_roi = np.asarray(pc.list_parent_indices(label_lists).to_numpy(), dtype=np.int64)
    labels = pc.list_flatten(label_lists)
    keep = np.ones(len(labels), dtype=bool)
    done = np.zeros(len(flat), dtype=bool)
    added_rois: list[np.ndarray] = []
    added_labels: list[str] = []
    for from_labels, to_label in part.mapping:
        carries = np.ones(len(flat), dtype=bool)
        for label in set(from_labels):
            has = np.zeros(len(flat), dtype=bool)
            has[label_roi[_bool_mask(pc.equal(labels, label))]] = True
            carries &= has
        hit = carries & ~done
        if not hit.any():
            continue
        in_from = _bool_mask(pc.is_in(labels, value_set=pa.array(list(from_labels), pa.string())))
        keep &= ~(hit[label_roi] & in_from)
        mapped = np.flatnonzero(hit)
        added_rois.append(mapped)
        added_labels.extend([to_label] * len(mapped))
        done |= hit
    kept = labels.filter(pa.array(keep))
    kept_roi = label_roi[keep]
    out_labels = pa.concat_arrays([kept, pa.array(added_labels, pa.string())])
    out_roi = np.concatenate([kept_roi, *added_rois]) if added_rois else kept_roi
    return out_labels, roi_frame[out_roi], roi_frame


def _counted(values: pa.Array, key: str = "name") -> list[dict[str, Any]]:
    if len(values) == 0:
        return []
    rows = [
        (c["values"], c["counts"]) for c in pc.value_counts(values).to_pylist() if c["values"] is not None
    ]
    rows.sort(key=lambda r: (-r[1], str(r[0])))
    return [{key: _plain(v), "count": n} for v, n in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _property_values(part: Selected, name: str) -> list[pa.Array]:
    """The values of a property in one pair's matched rows (nulls where missing), one array per type."""
    head, _, rest = name.partition(".")
    table = part.table
    if head == "meta" and rest:
        strs = pc.map_lookup(_array(table.column("meta_str")), rest, "first")
        nums = pc.map_lookup(_array(table.column("meta_num")), rest, "first")
        return [strs, pc.if_else(pc.is_null(strs), nums, pa.scalar(None, pa.float64()))]
    if head in ("sources", "rois"):
        flat = pc.list_flatten(_array(table.column(head)))
        if len(flat) == 0:
            return []
        return [pc.struct_field(flat, rest)]
    return [_array(table.column(name))]


def _distribution(parts: Sequence[Selected], name: str) -> dict[str, Any]:
    counts: Counter[Any] = Counter()
    present = total = 0
    for part in parts:
        arrays = _property_values(part, name)
        if not arrays:
            continue
        total += len(arrays[0])
        for values in arrays:
            present += len(values) - values.null_count
            for row in _counted(values, "value"):
                counts[row["value"]] += row["count"]
    ordered = sorted(counts.items(), key=lambda r: (-r[1], str(r[0])))
    return {"values": [{"value": v, "count": n} for v, n in ordered], "missing": total - present}


def compute(
    parts: Sequence[Selected], frames: int, rules: Sequence[np.ndarray], properties: Sequence[str]
) -> dict[str, Any]:
    """The statistics of the matched frames (``rules[i]``: the matched-frame indices rule i matches).

    Returns ``{"frames", "rois", "labels": [{name, count}], "rules": [{"rule_index", "frames",
    "rois", "labels"}], "properties": {name: {"values": [{value, count}], "missing"}}}``. Label
    counts count the labels of ROIs after mapping (a ROI carrying a label once counts once);
    ``missing`` counts frames (or sources, ROIs) without a value for the property.
    """
    labels: list[pa.Array] = []
    label_frames: list[np.ndarray] = []
    roi_frames: list[np.ndarray] = []
    for part in parts:
        values, where, rois = _mapped_labels(part)
        labels.append(values)
        label_frames.append(where)
        roi_frames.append(rois)
    all_labels = pa.concat_arrays(labels) if labels else pa.array([], pa.string())
    all_label_frames = np.concatenate(label_frames) if label_frames else np.zeros(0, np.int64)
    all_roi_frames = np.concatenate(roi_frames) if roi_frames else np.zeros(0, np.int64)
    per_rule = []
    for i, members in enumerate(rules):
        in_rule = np.isin(all_label_frames, members)
        per_rule.append(
            {
                "rule_index": i,
                "frames": len(members),
                "rois": int(np.isin(all_roi_frames, members).sum()),
                "labels": _counted(all_labels.filter(pa.array(in_rule))),
            }
        )
    return {
        "frames": frames,
        "rois": len(all_roi_frames),
        "labels": _counted(all_labels),
        "rules": per_rule,
        "properties": {name: _distribution(parts, name) for name in properties},
    }


__all__ = ["Selected", "columns_for", "compute", "property_names"]
