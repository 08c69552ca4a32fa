"""Annotations (ROIs) of a frame: the :class:`Annotation` record, shape parsing and ROI validation.

Pure Python, no I/O. :mod:`hds_s3.model.frames` builds on it; users normally reach it through
``SingleFrame.add_annotation`` and ``FrameGroup.add_global_annotation``.

Every ROI keeps its geometry flat in ``poly`` and its kind in ``type`` (never in ``meta``, unlike the
reference's new API, which writes ``_type``/``_id`` into the ROI metadata). How each shape is stored:

========== ===================================== =============================================
type       ``add_annotation`` argument           ``poly``
========== ===================================== =============================================
poly2d     ``poly2d_xy``                         ``x0,y0,x1,y1,...``; a complex (multi-part)
                                                 polygon puts :data:`POLY_SEPARATOR` between
                                                 its parts: ``x,y,...,-999999999,x,y,...``
box2d      ``box2d_xywh`` = (x, y, w, h)         the 4 corners ``x,y, x+w,y, x+w,y+h, x,y+h``
points2d   ``points2d_xy``                       ``x0,y0,x1,y1,...`` (key points)
ellipse2d  ``ellipse2d_xyrrt`` = (cx,cy,rx,ry,t) ``cx,cy,rx,ry,theta`` (theta in radians)
poly3d     ``poly3d_xyz``                        ``x0,y0,z0,x1,y1,z1,...``
points3d   ``points3d_xyz``                      ``x0,y0,z0,...``
box3d      ``box3d_xyzwhxyzwh``                  10 numbers, as the argument is spelled: the
                                                 front face ``x,y,z,w,h`` then the back face
                                                 ``x,y,z,w,h`` (w, h >= 0)
mask       ``mask_rgb`` = (r, g, b)              empty; ``mask = {"id": mask id, "value": [r,g,b]}``
label      ``labels`` only, or ``frame_class``   empty (a frame label)
========== ===================================== =============================================

The separator value ``-999999999`` is the one the reference's documentation shows inside a ``poly``;
it is reserved: it may only appear between two non-empty parts of a ``poly2d``, and
:attr:`Annotation.parts` splits such a polygon back into its parts.
"""

from __future__ import annotations

import difflib
import math
import numbers
import uuid
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeGuard

from hds_s3.errors import ValidationError
from hds_s3.model.names import SizeBudget, check_metadata, check_name, copy_json, preview

POLY_SEPARATOR = -999999999.0
"""Separator between the parts of a complex ``poly2d`` (the value the reference uses)."""

ANNOTATION_TYPES = (
    "poly2d",
    "box2d",
    "points2d",
    "ellipse2d",
    "poly3d",
    "points3d",
    "box3d",
    "mask",
    "label",
)
"""Every value :attr:`Annotation.type` may take."""

_NO_GEOMETRY = ("mask", "label")

ROI_KEYS = ("id", "labels", "type", "poly", "confidence", "sources", "meta", "mask")
"""The fields of a ROI dict (see :meth:`Annotation.from_dict` for the aliases it also takes)."""
ROI_ALIASES = {"label": "labels", "metadata": "meta"}
"""Other spellings of ROI fields: the reference's ``label`` and the ``metadata`` of ``add_annotation``."""
ROI_READ_ONLY = ("label_num",)
"""Fields a DataView adds to the ROIs it returns; ignored when a ROI dict is read."""

#: The shape arguments of ``add_annotation``, which a ROI dict spells as ``type`` and ``poly``.
_SHAPE_ARGUMENTS = {
    "poly2d_xy": "poly2d",
    "poly3d_xyz": "poly3d",
    "points2d_xy": "points2d",
    "points3d_xyz": "points3d",
    "box2d_xywh": "box2d",
    "box3d_xyzwhxyzwh": "box3d",
    "ellipse2d_xyrrt": "ellipse2d",
    "mask_rgb": "mask",
    "frame_class": "label",
}


def strict_keys(
    where: str,
    data: Mapping[Any, Any],
    what: str,
    known: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
) -> dict[str, Any]:
    """Return ``data`` as a dict of its known keys, aliases spelled out, ignored keys left out.

    Args:
        where: Names the frame and the field in messages (``"frame 'f1': rois[2]"``).
        data: The dict as given.
        what: What the dict is, for the message (``"a ROI"``).
        known: Its fields.
        aliases: Other spellings of fields (``{"metadata": "meta"}``).
        ignored: Fields taken and dropped (read-only fields of the form hds_s3 writes).

    Raises:
        ValidationError: naming ``where``: a key that is none of those (with the field it may have
            meant), or a field given under two spellings.
    """
    aliases = aliases or {}
    if type(data) is dict and _plain_keys(data, known, aliases, ignored):
        return dict(data)  # the common case: every key a field, none aliased or ignored
    out: dict[str, Any] = {}
    unknown: list[object] = []
    for key, value in data.items():
        if isinstance(key, str) and key in ignored:
            continue
        name = aliases.get(key, key) if isinstance(key, str) else key
        if not isinstance(name, str) or name not in known:
            unknown.append(key)
            continue
        if name in out:
            other = next(k for k in data if k != key and aliases.get(k, k) == name)
            _fail(where, name, f"given twice, as {other!r} and {key!r}; give one")
        out[name] = value
    if unknown:
        problems = "; ".join(_unknown(key, data[key], known, aliases) for key in unknown[:3])
        more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
        spelled = ", ".join(known)
        raise ValidationError(f"{where}: {problems}{more}; {what} has the fields {spelled}")
    return out


def _plain_keys(
    data: dict[Any, Any], known: Sequence[str], aliases: Mapping[str, str], ignored: Sequence[str]
) -> bool:
    """Whether every key of ``data`` is a field under its own name (nothing aliased or ignored)."""
    for key in data:
        if key not in known or key in aliases or key in ignored:
            return False
    return True


def _unknown(key: object, value: object, known: Sequence[str], aliases: Mapping[str, str]) -> str:
    """``unknown key 'widht' (did you mean 'width'?)``, or how to spell an ``add_annotation`` shape."""
    text = f"unknown key {preview(key, 40)}"
    if not isinstance(key, str):
        return text
    kind = _SHAPE_ARGUMENTS.get(key)
    if kind is not None and "type" in known:
        example = ""
        if key == "box2d_xywh":
            items = _as_list(value)
            if items is not None and len(items) == 4 and all(_is_real(v) for v in items):
                try:
                    x, y, w, h = (float(v) for v in items)
                except OverflowError:
                    pass
                else:
                    corners = [x, y, x + w, y, x + w, y + h, x, y + h]
                    example = f"; this one is {{'type': 'box2d', 'poly': {corners}}}"
        return (
            f"{text}: that is an argument of add_annotation, not a ROI field; a ROI dict gives its "
            f"shape as type {kind!r} and poly (the stored form, see hds frames schema){example}"
        )
    close = difflib.get_close_matches(key, [*known, *aliases], n=1)
    return f"{text} (did you mean {close[0]!r}?)" if close else text


@dataclass
class Annotation:
    """One ROI of a frame: an object (with geometry), a mask binding or a frame label.

    Attributes:
        id: ROI id; every ROI made by one ``add_annotation`` call shares it (32 hex digits when
            generated). ``None`` is allowed (the reference server allows it too).
        labels: Labels of the ROI; one ROI may carry several (``["car", "occluded"]``).
        poly: Flat coordinates (see the module docstring for each type); empty for masks and frame
            labels.
        type: One of :data:`ANNOTATION_TYPES`.
        confidence: ``None`` or a number in 0..1.
        sources: Source ids the ROI belongs to; empty means the whole frame. A ROI added to a
            ``FrameGroup`` member with no sources is bound to that member when the frame is serialised.
        metadata: Per-ROI custom metadata (JSON; no ``$`` or ``.`` in keys).
        mask: ``{"id": mask id, "value": [r, g, b]}`` binding the ROI to a pixel value of a mask.
    """

    id: str | None = None
    labels: list[str] = field(default_factory=list)
    poly: list[float] = field(default_factory=list)
    type: str = "label"
    confidence: float | None = None
    sources: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    mask: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """Alias of :attr:`metadata` (the stored field is called ``meta``)."""
        return self.metadata

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self.metadata = value

    @property
    def parts(self) -> list[list[float]]:
        """The parts of a complex ``poly2d`` (split on :data:`POLY_SEPARATOR`); ``[poly]`` otherwise.

        An empty ``poly`` has no parts (``[]``).
        """
        if not self.poly:
            return []
        if self.type != "poly2d":
            return [list(self.poly)]
        parts: list[list[float]] = [[]]
        for value in self.poly:
            if value == POLY_SEPARATOR:
                parts.append([])
            else:
                parts[-1].append(value)
        return parts

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form of the ROI (see :func:`roi_to_dict`).

        Only what can be checked without the frame is checked here (not that the sources or the
        mask exist); ``to_frame_dict`` checks the rest.

        Raises:
            ValidationError: the ROI is malformed (see :func:`roi_to_dict`).
        """
        return roi_to_dict(self, "annotation")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "ROI") -> Annotation:
        """Build an annotation from its stored form (:data:`ROI_KEYS`).

        The dict is strict: a key that is not a ROI field is refused, naming it. Two other spellings
        are taken (:data:`ROI_ALIASES`): the reference's ``label`` for ``labels`` and ``metadata``
        (``add_annotation``'s name) for ``meta``; ``label_num``, which a DataView adds to the ROIs it
        returns, is ignored. The shape arguments of ``add_annotation`` (``box2d_xywh``, ...) are not
        ROI fields: a ROI dict gives its ``type`` and ``poly`` (a box as its 4 corners), and the
        message says so. Nothing else is validated; the dict is copied (without recursion).

        Args:
            data: The ROI dict.
            where: Names the frame and the ROI in messages (``"frame 'f1': rois[2]"``).

        Raises:
            ValidationError: ``data`` is not a mapping, has an unknown key, or gives a field twice
                (``labels`` and ``label``).
        """
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"{where}: a ROI must be a dict, got {type(data).__name__}: {preview(data)}"
            )
        data = strict_keys(where, data, "a ROI", ROI_KEYS, ROI_ALIASES, ROI_READ_ONLY)
        labels = data.get("labels")
        items = _copy_list(data.get("poly"))
        kind = data.get("type")
        if kind is None or (isinstance(kind, str) and not kind):
            kind = "poly2d" if isinstance(items, list) and items else "label"
        sources = data.get("sources")
        meta: Any = data.get("meta")
        return cls(
            id=data.get("id"),
            labels=[labels] if isinstance(labels, str) else _copy_list(labels),
            poly=[_as_float(v) for v in items] if isinstance(items, list) else items,  # type: ignore[misc]
            type=kind,
            confidence=data.get("confidence"),
            sources=[sources] if isinstance(sources, str) else _copy_list(sources),
            metadata=copy_json(meta) if meta is not None else {},
            mask=copy_json(data["mask"]) if data.get("mask") is not None else None,
        )


# ---------------------------------------------------------------------------- helpers


def _copy_list(value: Any) -> Any:
    """A list copy of a list-like value; ``None`` gives ``[]``; anything else is kept for validation."""
    if value is None:
        return []
    items = _as_list(value)
    return items if items is not None else value


def _fail(where: str, what: str, problem: str) -> NoReturn:
    raise ValidationError(f"{where}: {what}: {problem}")


def _is_real(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_float(value: object) -> object:
    """A real number as a float; anything else (and a number too large for a float) as it is."""
    if type(value) is float:
        return value
    if not _is_real(value):
        return value
    try:
        return float(value)
    except OverflowError:
        return value


def _is_int(value: object) -> TypeGuard[numbers.Integral]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_list(value: object) -> list[Any] | None:
    """``value`` as a list when it is a sequence-like iterable (not a string, bytes or mapping)."""
    if type(value) is list:
        return list(value)
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        return None
    return list(value)


def _nested(value: object) -> list[Any] | None:
    """``value`` as a list whose list-like items are lists too (iterators are read once, here)."""
    items = _as_list(value)
    if items is None:
        return None
    out: list[Any] = []
    for item in items:
        inner = _as_list(item)
        out.append(item if inner is None else inner)
    return out


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (not a real number, infinite, NaN, or too large)."""
    if not _is_real(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(where: str, what: str, value: object) -> float:
    number = _finite(value)
    if number is None:
        problem = "is not a finite number" if _is_real(value) else "is not a number"
        _fail(where, what, f"{preview(value)} {problem}")
    if number == POLY_SEPARATOR:
        _fail(where, what, f"{preview(value)} is the reserved complex-polygon separator")
    return number


def _numbers(where: str, what: str, values: object, count: int | None = None) -> list[float]:
    items = _as_list(values)
    if items is None:
        _fail(where, what, f"expected a list of numbers, got {type(values).__name__}: {preview(values)}")
    if count is not None and len(items) != count:
        _fail(where, what, f"expected exactly {count} numbers, got {len(items)}: {preview(items)}")
    return [_number(where, f"{what}[{i}]", v) for i, v in enumerate(items)]


def _points(where: str, what: str, values: object, dim: int) -> list[float]:
    """Flat coordinates from a flat list or a list of ``dim``-tuples; non-empty, length % dim == 0."""
    items = _nested(values)
    if items is None:
        _fail(where, what, f"expected a list of coordinates, got {type(values).__name__}: {preview(values)}")
    if not items:
        _fail(where, what, "is empty")
    flat: list[float] = []
    if all(isinstance(item, list) for item in items):
        for i, item in enumerate(items):
            flat.extend(_numbers(where, f"{what}[{i}]", item, dim))
    else:
        flat = _numbers(where, what, items)
    if len(flat) % dim:
        unit = "(x, y) pairs" if dim == 2 else "(x, y, z) triples"
        _fail(where, what, f"{len(flat)} numbers do not make {unit}")
    return flat


def _is_pair(item: object) -> bool:
    return isinstance(item, list) and len(item) == 2 and all(_is_real(v) for v in item)


def _poly2d(where: str, values: object) -> list[float]:
    """A flat list, a list of (x, y) pairs, or a list of parts (each flat or pairs)."""
    items = _nested(values)
    if items is None:
        _fail(where, "poly2d_xy", f"expected a list of coordinates, got {type(values).__name__}")
    if not items or all(_is_real(v) for v in items) or all(_is_pair(v) for v in items):
        return _points(where, "poly2d_xy", items, 2)
    out: list[float] = []
    for i, part in enumerate(items):
        if i:
            out.append(POLY_SEPARATOR)
        out.extend(_points(where, f"poly2d_xy[{i}]", part, 2))
    return out


def _labels(where: str, what: str, labels: object) -> list[str]:
    if labels is None:
        return []
    items = [labels] if isinstance(labels, str) else _as_list(labels)
    if items is None:
        _fail(where, what, f"expected a list of strings, got {type(labels).__name__}: {preview(labels)}")
    return [_name(where, f"{what}[{i}]", "label", label) for i, label in enumerate(items)]


def _name(where: str, what: str, kind: str, value: object) -> str:
    try:
        return check_name(kind, value)
    except ValidationError as exc:
        _fail(where, what, str(exc))
    except UnicodeError:  # a lone surrogate: not encodable as UTF-8
        _fail(where, what, f"{kind} name {preview(value)} is not valid Unicode text")


def _confidence(where: str, what: str, value: object) -> float | None:
    if value is None:
        return None
    number = _finite(value)
    if number is None:
        _fail(where, what, f"{preview(value)} is not a finite number")
    if not 0.0 <= number <= 1.0:
        _fail(where, what, f"{preview(value)} is outside 0..1")
    return number


def _rgb(where: str, what: str, value: object) -> list[int]:
    items = _as_list(value)
    if items is None or len(items) != 3 or not all(_is_int(v) and 0 <= int(v) <= 255 for v in items):
        _fail(where, what, f"expected [r, g, b] with integers in 0..255, got {preview(value)}")
    return [int(v) for v in items]


# ---------------------------------------------------------------------------- building


def make_annotations(
    where: str,
    *,
    poly2d_xy: object = None,
    poly3d_xyz: object = None,
    points2d_xy: object = None,
    points3d_xyz: object = None,
    box2d_xywh: object = None,
    box3d_xyzwhxyzwh: object = None,
    ellipse2d_xyrrt: object = None,
    mask_rgb: object = None,
    frame_class: object = None,
    id: str | None = None,
    labels: object = None,
    confidence: object = None,
    metadata: object = None,
    mask_id: str | None = None,
    sources: Sequence[str] = (),
) -> list[Annotation]:
    """Parse the arguments of ``add_annotation`` into ROIs (one per shape, all sharing one id).

    ``labels`` with no shape and no ``mask_rgb`` make a frame-label ROI; ``frame_class`` always makes
    a frame-label ROI of its own whose labels are the ``frame_class`` values. ``mask_rgb`` makes a
    ``mask`` ROI bound to ``mask_id`` (the caller's first mask).

    Args:
        where: Names the frame in error messages (e.g. ``"frame 'a.jpg': add_annotation"``).
        poly2d_xy: As ``SingleFrame.add_annotation``, like every argument up to ``metadata``.
        poly3d_xyz: See ``poly2d_xy``.
        points2d_xy: See ``poly2d_xy``.
        points3d_xyz: See ``poly2d_xy``.
        box2d_xywh: See ``poly2d_xy``.
        box3d_xyzwhxyzwh: See ``poly2d_xy``.
        ellipse2d_xyrrt: See ``poly2d_xy``.
        mask_rgb: See ``poly2d_xy``.
        frame_class: See ``poly2d_xy``.
        id: See ``poly2d_xy``.
        labels: See ``poly2d_xy``.
        confidence: See ``poly2d_xy``.
        metadata: See ``poly2d_xy``.
        mask_id: The mask ``mask_rgb`` refers to; ``None`` when the frame has no mask.
        sources: Source ids every ROI made is bound to.

    Raises:
        ValidationError: naming ``where`` and the argument: a malformed shape (odd or empty
            coordinates, non-numeric or non-finite numbers, negative box or ellipse sizes), labels
            that are not strings, a confidence outside 0..1, metadata that is not JSON or has ``$`` or
            ``.`` in a key, a ``mask_rgb`` on a frame without a mask, or nothing to add.
    """
    roi_labels = _labels(where, "labels", labels)
    conf = _confidence(where, "confidence", confidence)
    meta = check_metadata(f"{where}: metadata", metadata)
    if id is None:
        id = uuid.uuid4().hex
    else:
        _name(where, "id", "annotation id", id)
    shapes: list[tuple[str, list[float]]] = []
    if poly2d_xy is not None:
        shapes.append(("poly2d", _poly2d(where, poly2d_xy)))
    if box2d_xywh is not None:
        x, y, w, h = _numbers(where, "box2d_xywh", box2d_xywh, 4)
        if w < 0 or h < 0:
            _fail(where, "box2d_xywh", f"width and height must be >= 0, got w={w}, h={h}")
        shapes.append(("box2d", [x, y, x + w, y, x + w, y + h, x, y + h]))
    if points2d_xy is not None:
        shapes.append(("points2d", _points(where, "points2d_xy", points2d_xy, 2)))
    if ellipse2d_xyrrt is not None:
        ellipse = _numbers(where, "ellipse2d_xyrrt", ellipse2d_xyrrt, 5)
        if ellipse[2] < 0 or ellipse[3] < 0:
            _fail(where, "ellipse2d_xyrrt", f"radii must be >= 0, got rx={ellipse[2]}, ry={ellipse[3]}")
        shapes.append(("ellipse2d", ellipse))
    if poly3d_xyz is not None:
        shapes.append(("poly3d", _points(where, "poly3d_xyz", poly3d_xyz, 3)))
    if points3d_xyz is not None:
        shapes.append(("points3d", _points(where, "points3d_xyz", points3d_xyz, 3)))
    if box3d_xyzwhxyzwh is not None:
        box3d = _numbers(where, "box3d_xyzwhxyzwh", box3d_xyzwhxyzwh, 10)
        if min(box3d[3], box3d[4], box3d[8], box3d[9]) < 0:
            _fail(where, "box3d_xyzwhxyzwh", f"widths and heights must be >= 0, got {preview(box3d)}")
        shapes.append(("box3d", box3d))
    mask: dict[str, Any] | None = None
    if mask_rgb is not None:
        value = _rgb(where, "mask_rgb", mask_rgb)
        if mask_id is None:
            _fail(where, "mask_rgb", "the frame has no mask; set mask_source or masks_source first")
        mask = {"id": mask_id, "value": value}
    class_labels = None if frame_class is None else _labels(where, "frame_class", frame_class)
    if class_labels is not None and not class_labels:
        _fail(where, "frame_class", "is empty; give at least one label")

    def roi(
        kind: str, poly: list[float], names: list[str], roi_mask: dict[str, Any] | None = None
    ) -> Annotation:
        return Annotation(
            id=id,
            labels=list(names),
            poly=poly,
            type=kind,
            confidence=conf,
            sources=list(sources),
            metadata=deepcopy(meta),
            mask=roi_mask,
        )

    out = [roi(kind, poly, roi_labels) for kind, poly in shapes]
    if mask is not None:
        out.append(roi("mask", [], roi_labels, mask))
    if not shapes and mask is None and roi_labels:
        out.append(roi("label", [], roi_labels))
    if class_labels:
        out.append(roi("label", [], class_labels))
    if not out:
        _fail(where, "add_annotation", "nothing to add: give a shape, mask_rgb, labels or frame_class")
    return out


# ---------------------------------------------------------------------------- validation


def _check_poly(where: str, kind: str, poly: list[float]) -> None:
    if kind in _NO_GEOMETRY:
        if poly:
            _fail(where, "poly", f"a {kind} ROI has no geometry, got {len(poly)} numbers")
        return
    if not poly:
        _fail(where, "poly", f"a {kind} ROI needs coordinates")
    if kind == "poly2d":
        parts = Annotation(poly=poly, type=kind).parts
        for i, part in enumerate(parts):
            label = f"part {i} of the complex polygon" if len(parts) > 1 else "the polygon"
            if not part:
                _fail(where, "poly", f"{label} is empty (misplaced separator {POLY_SEPARATOR:.0f})")
            if len(part) % 2:
                _fail(where, "poly", f"{label} has an odd number of coordinates ({len(part)})")
        return
    if POLY_SEPARATOR in poly:
        _fail(where, "poly", f"the separator {POLY_SEPARATOR:.0f} is only allowed in a poly2d")
    if kind == "points2d" and len(poly) % 2:
        _fail(where, "poly", f"2-D points need an even number of coordinates, got {len(poly)}")
    elif kind in ("poly3d", "points3d") and len(poly) % 3:
        _fail(where, "poly", f"3-D {kind} needs a multiple of 3 coordinates, got {len(poly)}")
    elif kind == "box2d":
        if len(poly) != 8:
            _fail(where, "poly", f"a box2d is stored as 4 corners (8 numbers), got {len(poly)}")
        x0, y0, x1, _, _, y2, _, _ = poly
        if x1 < x0 or y2 < y0:
            _fail(where, "poly", f"box has a negative width or height: {poly}")
        if poly != [x0, y0, x1, y0, x1, y2, x0, y2]:
            _fail(where, "poly", f"a box2d must be the corners x,y,x+w,y,x+w,y+h,x,y+h, got {poly}")
    elif kind == "ellipse2d":
        if len(poly) != 5:
            _fail(where, "poly", f"an ellipse2d is cx,cy,rx,ry,theta (5 numbers), got {len(poly)}")
        if poly[2] < 0 or poly[3] < 0:
            _fail(where, "poly", f"ellipse radii must be >= 0, got rx={poly[2]}, ry={poly[3]}")
    elif kind == "box3d":
        if len(poly) != 10:
            _fail(where, "poly", f"a box3d is x,y,z,w,h of two faces (10 numbers), got {len(poly)}")
        if min(poly[3], poly[4], poly[8], poly[9]) < 0:
            _fail(where, "poly", f"box has a negative width or height: {poly}")


def roi_to_dict(roi: Annotation, where: str, *, budget: SizeBudget | None = None) -> dict[str, Any]:
    """Validate one ROI on its own and return its stored form (a fresh, JSON-clean dict).

    Args:
        roi: The annotation.
        where: Names the frame and the ROI in error messages (e.g. ``"frame 'a.jpg': rois[2]"``).
        budget: The frame's size budget, charged with the ROI's metadata (see
            :func:`~hds_s3.model.names.check_metadata`).

    Raises:
        ValidationError: naming ``where`` and the field: an unknown type, labels that are not
            non-empty strings, malformed coordinates for the type, a confidence outside 0..1, metadata
            that is not JSON or has ``$``/``.`` in a key, sources that are not strings, a malformed
            ``mask`` binding or a ``mask`` ROI without one.
    """
    if not isinstance(roi, Annotation):
        _fail(where, "roi", f"expected an Annotation, got {type(roi).__name__}")
    if not isinstance(roi.type, str) or roi.type not in ANNOTATION_TYPES:
        _fail(where, "type", f"{preview(roi.type)} is not one of {', '.join(ANNOTATION_TYPES)}")
    if roi.id is not None:
        _name(where, "id", "annotation id", roi.id)
    if not isinstance(roi.labels, list):
        _fail(where, "labels", f"expected a list of strings, got {type(roi.labels).__name__}")
    labels = _labels(where, "labels", roi.labels)
    if roi.type == "label" and not labels:
        _fail(where, "labels", "a frame label ROI needs at least one label")
    items = _as_list(roi.poly)
    if items is None:
        _fail(where, "poly", f"expected a list of numbers, got {type(roi.poly).__name__}")
    poly: list[float] = []
    for i, value in enumerate(items):
        if _is_real(value) and value == POLY_SEPARATOR:
            poly.append(POLY_SEPARATOR)
        else:
            poly.append(_number(where, f"poly[{i}]", value))
    _check_poly(where, roi.type, poly)
    confidence = _confidence(where, "confidence", roi.confidence)
    sources = _as_list(roi.sources)
    if sources is None or not all(isinstance(s, str) for s in sources):
        _fail(where, "sources", f"expected a list of source ids (strings), got {preview(roi.sources)}")
    meta = check_metadata(f"{where}: meta", roi.metadata, budget=budget)
    mask: dict[str, Any] | None = None
    if roi.mask is not None:
        if not isinstance(roi.mask, Mapping) or set(roi.mask) != {"id", "value"}:
            _fail(where, "mask", f'expected {{"id": mask id, "value": [r, g, b]}}, got {preview(roi.mask)}')
        mask = {
            "id": _name(where, "mask.id", "mask id", roi.mask["id"]),
            "value": _rgb(where, "mask.value", roi.mask["value"]),
        }
    elif roi.type == "mask":
        _fail(where, "mask", 'a mask ROI needs a binding {"id": mask id, "value": [r, g, b]}')
    return {
        "id": roi.id,
        "labels": labels,
        "type": roi.type,
        "poly": poly,
        "confidence": confidence,
        "sources": list(sources),
        "meta": meta,
        "mask": mask,
    }


# ---------------------------------------------------------------------------- lists of ROIs


def find_annotations(
    rois: Sequence[Annotation], id: str | None = None, index: int | None = None, label: str | None = None
) -> list[Annotation]:
    """The ROIs matching every filter given (``index`` in the list, ``id``, having ``label``)."""
    if index is not None:
        candidates = [rois[index]] if -len(rois) <= index < len(rois) else []
    else:
        candidates = list(rois)
    return [
        roi for roi in candidates if (id is None or roi.id == id) and (label is None or label in roi.labels)
    ]


def pop_annotation(
    rois: list[Annotation], where: str, index: int | None = None, id: str | None = None
) -> Annotation | None:
    """Remove and return the ROI at ``index`` and/or the first with ``id``; ``None`` if none matches.

    With both, the ROI at ``index`` is removed only if its id is ``id``.

    Raises:
        ValidationError: neither ``index`` nor ``id`` given.
    """
    if index is None and id is None:
        _fail(where, "remove_annotation", "give index or id")
    if index is not None:
        if not -len(rois) <= index < len(rois) or (id is not None and rois[index].id != id):
            return None
        return rois.pop(index)
    for i, roi in enumerate(rois):
        if roi.id == id:
            return rois.pop(i)
    return None


def drop_annotations(
    rois: list[Annotation], id: str | None = None, labels: object = None
) -> list[Annotation]:
    """Remove (in place) and return the ROIs with ``id`` (if given) having any of ``labels`` (if given).

    With neither filter every ROI is removed, as in the reference.
    """
    wanted = None if labels is None else set([labels] if isinstance(labels, str) else _as_list(labels) or [])
    removed: list[Annotation] = []
    kept: list[Annotation] = []
    for roi in rois:
        match = (id is None or roi.id == id) and (wanted is None or wanted.intersection(roi.labels))
        (removed if match else kept).append(roi)
    rois[:] = kept
    return removed


__all__ = [
    "ANNOTATION_TYPES",
    "POLY_SEPARATOR",
    "Annotation",
    "ImageAnnotation",
    "drop_annotations",
    "find_annotations",
    "make_annotations",
    "pop_annotation",
    "roi_to_dict",
]


class ImageAnnotation(Annotation):
    """One ROI built from the arguments of ``add_annotation`` (the reference's ``ImageAnnotation``).

    ``ImageAnnotation(labels=["cityscape"], confidence=1.0)`` is a frame label;
    ``ImageAnnotation(box2d_xywh=(10, 10, 30, 20), labels=["car"])`` a box. Pass it to
    ``FrameGroup.add_global_annotation(annotation=...)`` or ``SingleFrame.add_annotation(annotation=...)``.
    It is an :class:`Annotation`, so it also goes wherever one does.
    """

    def __init__(
        self,
        poly2d_xy: object = None,
        poly3d_xyz: object = None,
        points2d_xy: object = None,
        points3d_xyz: object = None,
        box2d_xywh: object = None,
        box3d_xyzwhxyzwh: object = None,
        ellipse2d_xyrrt: object = None,
        frame_class: object = None,
        id: str | None = None,
        labels: object = None,
        confidence: object = None,
        metadata: object = None,
        sources: Sequence[str] = (),
    ) -> None:
        """Build the ROI now (its arguments are checked here).

        Raises:
            ValidationError: a malformed argument, nothing to add, or more than one shape (an
                ``ImageAnnotation`` is one ROI; ``add_annotation`` makes one per shape).
        """
        made = make_annotations(
            "ImageAnnotation",
            poly2d_xy=poly2d_xy,
            poly3d_xyz=poly3d_xyz,
            points2d_xy=points2d_xy,
            points3d_xyz=points3d_xyz,
            box2d_xywh=box2d_xywh,
            box3d_xyzwhxyzwh=box3d_xyzwhxyzwh,
            ellipse2d_xyrrt=ellipse2d_xyrrt,
            frame_class=frame_class,
            id=id,
            labels=labels,
            confidence=confidence,
            metadata=metadata,
            sources=sources,
        )
        if len(made) != 1:
            _fail(
                "ImageAnnotation",
                "arguments",
                f"make {len(made)} ROIs; an ImageAnnotation is one ROI: give one shape (or only labels)",
            )
        one = made[0]
        super().__init__(
            id=one.id,
            labels=one.labels,
            poly=one.poly,
            type=one.type,
            confidence=one.confidence,
            sources=one.sources,
            metadata=one.metadata,
            mask=one.mask,
        )

    def copy_for(self, sources: Sequence[str]) -> Annotation:
        """A plain :class:`Annotation` with this ROI's fields, bound to ``sources``."""
        return Annotation(
            id=self.id,
            labels=list(self.labels),
            poly=list(self.poly),
            type=self.type,
            confidence=self.confidence,
            sources=list(sources),
            metadata=deepcopy(self.metadata),
            mask=deepcopy(self.mask),
        )
