"""COCO "instances" files in and out of hds_s3 versions.

Import (:func:`import_coco`) turns a COCO file into frames of a **draft** version:

- each image becomes a :class:`~hds_s3.model.frames.SingleFrame` whose source URI is ``image_root`` joined
  with the image's ``file_name`` (``"s3://bucket/coco/train2017" + "/" + "000001.jpg"``), with the
  image's ``width`` and ``height``; every other field of the image (``id``, ``file_name``,
  ``license``, ``coco_url``, ...) is kept in the frame's ``meta["coco"]``. The frame id is derived
  from the source URI, so importing the same file twice updates the frames instead of duplicating
  them;
- each annotation becomes one ROI labelled with its category name, whose id is the annotation id
  (as a string):

  * a polygon ``segmentation`` (a list of polygons) becomes **one** ``poly2d`` ROI; when the
    annotation has several polygons they are the parts of one complex polygon (separated by
    :data:`~hds_s3.model.annotations.POLY_SEPARATOR`). One ROI per annotation keeps the annotation whole:
    its id, ``area`` and ``iscrowd`` describe all its parts together, and the export gives back the
    same annotation instead of one per part;
  * an RLE ``segmentation`` (``{"counts", "size"}``, compressed or not) is kept verbatim in the ROI's
    ``meta["rle"]``, and the ROI's geometry is the annotation's ``bbox`` as a ``box2d``;
  * an annotation without a polygon (no ``segmentation``, or an empty list) becomes a ``box2d`` ROI
    from its ``bbox`` (``[x, y, width, height]``);
  * ``area`` and ``iscrowd`` go to the ROI's ``meta``; ``score`` (detection results) becomes the ROI
    confidence; any other field of the annotation is kept in the ROI's ``meta`` under its own name;
  * the polygon's ``bbox`` is not stored: the export computes it from the polygon.
- the categories (``id``, ``name``, ``supercategory``), ``info`` and ``licenses`` are kept in the
  version's metadata under ``"coco"`` (merged with what an earlier import stored; the new file wins
  for a category name it lists), so that an export gives the categories their ids back.

The whole file is checked before anything is written: a problem (an annotation naming an unknown
image or category, an odd number of polygon coordinates, two categories with one name, ...) raises
:class:`~hds_s3.errors.ValidationError` naming the file and the item, and the version is unchanged.

Export (:func:`export_coco`, :func:`frames_to_coco`) works on a version or on anything with a
``get_iterator()`` yielding frame dicts (a :class:`~hds_s3.query.dataview.DataView`):

- every source of a frame is an image (one per frame for a SingleFrame); its ``id`` and
  ``file_name`` (and the other stored image fields) come from ``meta["coco"]`` when the frame has
  them, else the id is the next free one and the file name is the URI with ``image_root`` removed (the
  whole URI when it does not start with it);
- every ``poly2d`` and ``box2d`` ROI with a label is an annotation (other shapes, masks and frame
  labels have no COCO form and are counted in ``skipped_rois``); the category is the ROI's first
  label; ``bbox`` is computed from the geometry, ``segmentation`` is the polygon's parts, the RLE
  kept in ``meta["rle"]``, or ``[]`` for a plain box; ``area`` is the stored one, else computed
  (shoelace for polygons, width x height for boxes); ``iscrowd`` the stored one, else 0;
- ids are stable: stored image, category and annotation ids are kept; anything without one gets the
  next ids after the largest in use, in a deterministic order (frames by id, labels by name).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from hds_s3.errors import InvalidStateError, StorageError, ValidationError
from hds_s3.index.ingest import normalize
from hds_s3.model.annotations import POLY_SEPARATOR
from hds_s3.model.frames import MAX_DIMENSION
from hds_s3.model.names import check_metadata, check_name
from hds_s3.tools.outfiles import replacing

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion

#: Key of the version metadata (and of the frame metadata) where COCO-only fields are kept.
COCO_KEY = "coco"

_ANNOTATION_CORE = frozenset(
    {"id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd", "score"}
)
_IMAGE_CORE = frozenset({"width", "height"})
_ROI_META_CORE = ("area", "iscrowd", "rle")
_MAX_PROBLEMS = 20


class FrameSource(Protocol):
    """Anything whose ``get_iterator(as_dict=True)`` yields frame dicts (a DataView)."""

    def get_iterator(self, *, as_dict: bool = ...) -> Iterator[Mapping[str, Any]]:
        """Yield the frames as canonical frame dicts (with ``as_dict=True``)."""
        ...


@dataclass(frozen=True)
class CocoImport:
    """What :func:`import_coco` wrote."""

    images: int
    annotations: int
    categories: int


@dataclass(frozen=True)
class CocoExport:
    """What :func:`export_coco` produced: the COCO dict and the ROIs that have no COCO form."""

    coco: dict[str, Any]
    skipped_rois: int

    @property
    def images(self) -> int:
        """Number of images."""
        return len(self.coco["images"])

    @property
    def annotations(self) -> int:
        """Number of annotations."""
        return len(self.coco["annotations"])

    @property
    def categories(self) -> int:
        """Number of categories."""
        return len(self.coco["categories"])


# ---------------------------------------------------------------------------- reading a file


def load_coco(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO JSON file (a local path or any fsspec URL).

    Raises:
        NotFoundError: there is no such file (also a ``FileNotFoundError``).
        ValidationError: it is not JSON, or not a JSON object (the message names the file, line and
            column), or it is JSON Python's parser cannot read (nested too deep, an integer of
            thousands of digits).
        StorageError: it cannot be read.
    """
    from hds_s3.errors import NotFoundError

    name = os.fspath(path)
    try:
        import fsspec

        with fsspec.open(name, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise NotFoundError(f"COCO file {name!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{name}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg}); fix the file"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{name}: not UTF-8 text ({exc}); a COCO file is JSON") from None
    except RecursionError:
        raise ValidationError(f"{name}: the JSON nests too deep to read; fix the file") from None
    except ValueError:  # an integer of 4,300+ digits, which Python refuses to convert
        raise ValidationError(
            f"{name}: holds an integer of more than 4,300 digits, which no COCO field is; fix the file"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot read COCO file {name!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"{name}: a COCO file is a JSON object, got a {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------- COCO -> frames


class _Problems:
    """Collects what is wrong with a COCO file, to report it all at once."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, what: str, problem: str) -> None:
        self.items.append(f"{what}: {problem}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_PROBLEMS]
        more = len(self.items) - len(shown)
        tail = f"; and {more} more" if more else ""
        count = f"{len(self.items)} problems: " if len(self.items) > 1 else ""
        raise ValidationError(f"{self.where}: {count}{'; '.join(shown)}{tail}; nothing was imported")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _is_int(value: object) -> TypeGuard[numbers.Integral]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def join_uri(root: str, file_name: str) -> str:
    """``root`` and ``file_name`` joined by one ``/`` (``file_name`` alone when ``root`` is empty)."""
    if not root:
        return file_name
    return root.rstrip("/") + "/" + file_name.lstrip("/")


def _polygons(value: object, what: str, problems: _Problems) -> list[float] | None:
    """A COCO polygon list as one flat ``poly2d`` (parts separated), or None after reporting."""
    assert isinstance(value, list)
    flat: list[float] = []
    for i, part in enumerate(value):
        if not isinstance(part, list) or not part or not all(_is_number(v) for v in part):
            problems.add(what, f"segmentation[{i}] is not a non-empty list of finite numbers")
            return None
        if len(part) % 2:
            problems.add(what, f"segmentation[{i}] has an odd number of coordinates ({len(part)})")
            return None
        if any(float(v) == POLY_SEPARATOR for v in part):
            problems.add(what, f"segmentation[{i}] contains the reserved value {POLY_SEPARATOR:.0f}")
            return None
        if i:
            flat.append(POLY_SEPARATOR)
        flat.extend(float(v) for v in part)
    return flat


def _bbox(value: object, what: str, problems: _Problems) -> list[float] | None:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(_is_number(v) for v in value)
        or float(value[2]) < 0
        or float(value[3]) < 0
    ):
        problems.add(what, f"bbox must be [x, y, width, height] with width, height >= 0, got {value!r}")
        return None
    x, y, w, h = (float(v) for v in value)
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _is_rle(value: object) -> bool:
    return isinstance(value, dict) and "counts" in value and "size" in value


def _annotation_roi(
    ann: Mapping[str, Any], what: str, label: str, problems: _Problems
) -> dict[str, Any] | None:
    seg = ann.get("segmentation")
    meta: dict[str, Any] = {}
    for key in ("area", "iscrowd"):
        if key in ann and ann[key] is not None:
            if not _is_number(ann[key]):
                problems.add(what, f"{key} must be a number, got {ann[key]!r}")
                return None
            meta[key] = ann[key]
    if seg is not None and isinstance(seg, list) and seg:
        kind = "poly2d"
        poly = _polygons(seg, what, problems)
    elif seg is None or seg == []:
        if "bbox" not in ann:
            problems.add(what, "has neither a polygon segmentation nor a bbox; give one of them")
            return None
        kind, poly = "box2d", _bbox(ann["bbox"], what, problems)
    elif _is_rle(seg):
        if "bbox" not in ann:
            problems.add(what, "has an RLE segmentation but no bbox; add its bbox")
            return None
        kind, poly = "box2d", _bbox(ann["bbox"], what, problems)
        meta["rle"] = seg
    else:
        problems.add(
            what, f"segmentation must be a list of polygons or an RLE dict, got {type(seg).__name__}"
        )
        return None
    if poly is None:
        return None
    confidence = ann.get("score")
    if confidence is not None and not (_is_number(confidence) and 0.0 <= float(confidence) <= 1.0):
        problems.add(what, f"score must be a number in 0..1, got {confidence!r}")
        return None
    for key, value in ann.items():
        if key not in _ANNOTATION_CORE:
            if key in _ROI_META_CORE:
                problems.add(what, f"field {key!r} clashes with the ROI metadata hds_s3 writes; rename it")
                return None
            meta[key] = value
    try:
        meta = check_metadata(what, meta)
    except ValidationError as exc:
        problems.add(what, str(exc))
        return None
    return {
        "id": str(ann["id"]),
        "labels": [label],
        "type": kind,
        "poly": poly,
        "confidence": None if confidence is None else float(confidence),
        "sources": [],
        "meta": meta,
        "mask": None,
    }


def _categories(coco: Mapping[str, Any], problems: _Problems) -> dict[Any, dict[str, Any]]:
    raw = coco.get("categories", [])
    if not isinstance(raw, list):
        problems.add("categories", f"must be a list, got {type(raw).__name__}")
        return {}
    out: dict[Any, dict[str, Any]] = {}
    names: dict[str, Any] = {}
    for i, cat in enumerate(raw):
        what = f"categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or "name" not in cat:
            problems.add(what, "needs an integer id and a name")
            continue
        what = f"{what} (id {cat['id']})"
        try:
            name = check_name("label", cat["name"])
        except ValidationError as exc:
            problems.add(what, str(exc))
            continue
        if cat["id"] in out:
            problems.add(what, "the id is used by another category; ids must be unique")
            continue
        if name in names:
            problems.add(
                what, f"the name {name!r} is also category {names[name]}'s; labels are names: rename one"
            )
            continue
        names[name] = cat["id"]
        out[cat["id"]] = dict(cat)
    return out


def coco_to_frames(
    coco: Mapping[str, Any], image_root: str, *, where: str = "COCO data"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Convert a COCO dict to frame dicts and the ``"coco"`` version metadata (see the module docs).

    Pure: nothing is read or written. ``where`` names the data in error messages (the file name).

    Returns:
        The frame dicts (one per image, in the file's order) and ``{"categories", "info"?,
        "licenses"?}``.

    Raises:
        ValidationError: naming ``where`` and every offending item (up to 20): missing or duplicate
            image, annotation or category ids, annotations naming an unknown image or category,
            malformed polygons, boxes, RLE or scores, duplicate file names, bad category names,
            fields that are not JSON metadata.
    """
    problems = _Problems(where)
    if not isinstance(coco, Mapping):
        raise ValidationError(f"{where}: a COCO file is a JSON object, got {type(coco).__name__}")
    if not isinstance(image_root, str):
        raise ValidationError(f"image_root must be a string (a folder or URL prefix), got {image_root!r}")
    categories = _categories(coco, problems)
    images = coco.get("images")
    if not isinstance(images, list):
        raise ValidationError(f"{where}: 'images' must be a list of images, got {type(images).__name__}")
    annotations = coco.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValidationError(f"{where}: 'annotations' must be a list, got {type(annotations).__name__}")

    frames: dict[Any, dict[str, Any]] = {}
    uris: dict[str, Any] = {}
    for i, img in enumerate(images):
        what = f"images[{i}]"
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            problems.add(what, "needs an integer id")
            continue
        what = f"{what} (id {img['id']})"
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            problems.add(what, f"needs a non-empty file_name, got {file_name!r}")
            continue
        size_ok = True
        for key in ("width", "height"):
            value = img.get(key)
            if value is not None and not (_is_int(value) and 0 < int(value) <= MAX_DIMENSION):
                problems.add(
                    what, f"{key} must be a positive integer of at most {MAX_DIMENSION}, got {value!r}"
                )
                size_ok = False
        if not size_ok:
            continue
        if img["id"] in frames:
            problems.add(what, "the id is used by another image; image ids must be unique")
            continue
        uri = join_uri(image_root, file_name)
        if uri in uris:
            problems.add(
                what, f"file_name {file_name!r} is also image {uris[uri]}'s; file names must be unique"
            )
            continue
        uris[uri] = img["id"]
        extra = {k: v for k, v in img.items() if k not in _IMAGE_CORE}
        try:
            extra = check_metadata(what, extra)
        except ValidationError as exc:
            problems.add(what, str(exc))
            continue
        frames[img["id"]] = {
            "sources": [
                {"id": "default", "uri": uri, "width": img.get("width"), "height": img.get("height")}
            ],
            "rois": [],
            "meta": {COCO_KEY: extra},
        }

    seen_ann: set[Any] = set()
    for i, ann in enumerate(annotations):
        what = f"annotations[{i}]"
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            problems.add(what, "needs an integer id")
            continue
        what = f"{what} (id {ann['id']})"
        if ann["id"] in seen_ann:
            problems.add(what, "the id is used by another annotation; annotation ids must be unique")
            continue
        seen_ann.add(ann["id"])
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        frame = frames.get(image_id) if _is_int(image_id) else None  # a list or dict is no image id
        if frame is None:
            problems.add(what, f"image_id {image_id!r} is not an image of the file")
            continue
        category = categories.get(category_id) if _is_int(category_id) else None
        if category is None:
            problems.add(what, f"category_id {ann.get('category_id')!r} is not a category of the file")
            continue
        roi = _annotation_roi(ann, what, category["name"], problems)
        if roi is not None:
            frame["rois"].append(roi)
    problems.raise_if_any()

    meta: dict[str, Any] = {"categories": [categories[k] for k in sorted(categories)]}
    for key in ("info", "licenses"):
        if key in coco:
            meta[key] = coco[key]
    try:
        meta = check_metadata(f"{where}: categories, info and licenses", meta)
    except ValidationError as exc:
        raise ValidationError(f"{exc}; nothing was imported") from None
    return list(frames.values()), meta


def _merged_meta(old: object, new: Mapping[str, Any]) -> dict[str, Any]:
    """The version's ``"coco"`` metadata after an import: categories merged by name (new wins)."""
    merged: dict[str, Any] = dict(old) if isinstance(old, Mapping) else {}
    kept = [
        c
        for c in merged.get("categories", [])
        if isinstance(c, Mapping) and c.get("name") not in {n["name"] for n in new["categories"]}
    ]
    taken = {c["id"] for c in new["categories"]}
    kept = [c for c in kept if c.get("id") not in taken]
    merged["categories"] = sorted([*kept, *new["categories"]], key=lambda c: c["id"])
    for key in ("info", "licenses"):
        if key in new:
            merged[key] = new[key]
    return merged


def import_coco(
    version: DatasetVersion,
    coco: str | os.PathLike[str] | Mapping[str, Any],
    image_root: str,
    *,
    show_progress: bool = False,
) -> CocoImport:
    """Import a COCO instances file (a path, URL or already-loaded dict) into a draft version.

    Everything is checked first; then the categories, ``info`` and ``licenses`` are merged into the
    version's metadata under ``"coco"``, and the frames are added with ``add_frames`` (so an
    interrupted import keeps the frames it committed; running it again completes it, since frame ids
    come from the source URIs).

    Raises:
        InvalidStateError: the version is published (nothing is written).
        ValidationError: the file is malformed (see :func:`coco_to_frames`); nothing is written.
        NotFoundError: the file does not exist.
        StorageError: the store or the file failed; frames committed before stay.
    """
    where = os.fspath(coco) if isinstance(coco, (str, os.PathLike)) else "COCO data"
    data = load_coco(coco) if isinstance(coco, (str, os.PathLike)) else coco
    frames, meta = coco_to_frames(data, image_root, where=where)
    version.reload()
    if not version.is_draft:
        raise InvalidStateError(
            f"version {version.name!r} of dataset {version.dataset_name!r} is published; "
            "import into a draft (create a child version or take a snapshot)"
        )
    # every frame is checked as add_frames will check it before anything is written, so a file
    # the COCO checks pass but the frame model refuses is refused whole, not imported half-way
    refused = []
    for frame in frames:
        try:
            normalize(frame)
        except ValidationError as exc:
            refused.append(str(exc))
    if refused:
        raise ValidationError(
            f"{where}: {len(refused)} image(s) cannot be frames ({'; '.join(refused[:3])}); "
            "nothing was imported"
        )
    # merged inside the commit: a concurrent change of the version's metadata is kept
    version.update_metadata(
        lambda metadata: {**metadata, COCO_KEY: _merged_meta(metadata.get(COCO_KEY), meta)}
    )
    failed = version.add_frames(frames, show_progress=show_progress)
    if failed:
        raise StorageError(
            f"{where}: {len(failed)} frames were refused ({failed[0].reason}); the others were added. "
            "This is a bug in the COCO import: please report it"
        )
    return CocoImport(
        images=len(frames),
        annotations=sum(len(f["rois"]) for f in frames),
        categories=len(meta["categories"]),
    )


# ---------------------------------------------------------------------------- frames -> COCO


def _parts(poly: Sequence[float]) -> list[list[float]]:
    parts: list[list[float]] = [[]]
    for value in poly:
        if value == POLY_SEPARATOR:
            parts.append([])
        else:
            parts[-1].append(value)
    return [p for p in parts if p]


def _bbox_of(points: Iterable[float]) -> list[float]:
    values = list(points)
    xs, ys = values[0::2], values[1::2]
    x0, y0 = min(xs), min(ys)
    return [x0, y0, max(xs) - x0, max(ys) - y0]


def _shoelace(part: Sequence[float]) -> float:
    xs, ys = part[0::2], part[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


def _decimal_id(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class _Ids:
    """Stable ids: keep the wanted ones (when free), then hand out the next ones after the largest."""

    def __init__(self) -> None:
        self.used: set[int] = set()
        self.waiting: list[Any] = []

    def claim(self, wanted: int | None) -> int | None:
        if wanted is not None and wanted not in self.used:
            self.used.add(wanted)
            return wanted
        return None

    def fill(self, items: list[dict[str, Any]]) -> None:
        """Give every item whose ``id`` is None the next free id, in list order."""
        nxt = max(self.used, default=0) + 1
        for item in items:
            if item["id"] is None:
                item["id"] = nxt
                self.used.add(nxt)
                nxt += 1


def frames_to_coco(
    frames: Iterable[Mapping[str, Any]],
    *,
    coco_meta: Mapping[str, Any] | None = None,
    image_root: str | None = None,
) -> CocoExport:
    """Build a COCO dict from canonical frame dicts (see the module docs for the mapping).

    ``coco_meta`` is what an import stored in the version metadata under ``"coco"`` (categories,
    info, licenses); without it the categories get ids 1, 2, ... by label name.

    Raises:
        ValidationError: a frame dict without sources.
    """
    stored = [
        c for c in (coco_meta or {}).get("categories", []) if isinstance(c, Mapping) and _is_int(c.get("id"))
    ]
    by_name: dict[str, dict[str, Any]] = {}
    cat_ids = _Ids()
    for cat in stored:
        if cat.get("name") not in by_name and cat_ids.claim(int(cat["id"])) is not None:
            by_name[cat["name"]] = dict(cat)

    image_ids, ann_ids = _Ids(), _Ids()
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    skipped = 0
    ordered = sorted(frames, key=lambda f: str(f.get("id")))
    for frame in ordered:
        sources = frame.get("sources") or []
        if not sources:
            raise ValidationError(f"frame {frame.get('id')!r} has no sources; it cannot be a COCO image")
        stored_img = (frame.get("meta") or {}).get(COCO_KEY)
        stored_img = stored_img if isinstance(stored_img, Mapping) and len(sources) == 1 else {}
        index_of: dict[str, int] = {}
        for src in sources:
            uri = str(src.get("uri"))
            file_name = stored_img.get("file_name")
            if not isinstance(file_name, str):
                file_name = uri
                if image_root and uri.startswith(image_root.rstrip("/") + "/"):
                    file_name = uri[len(image_root.rstrip("/")) + 1 :]
            wanted = stored_img.get("id")
            image: dict[str, Any] = {
                "id": image_ids.claim(int(wanted) if _is_int(wanted) else None),
                "file_name": file_name,
                "width": src.get("width"),
                "height": src.get("height"),
            }
            image.update({k: v for k, v in stored_img.items() if k not in image})
            index_of[str(src.get("id"))] = len(images)
            images.append(image)
        first = next(iter(index_of.values()))
        for roi in frame.get("rois") or []:
            labels = roi.get("labels") or []
            kind = roi.get("type")
            poly = [float(v) for v in roi.get("poly") or []]
            if kind not in ("poly2d", "box2d") or not labels or not poly:
                skipped += 1
                continue
            bound = roi.get("sources") or []
            image_index = index_of.get(str(bound[0]), first) if bound else first
            meta = dict(roi.get("meta") or {})
            label = labels[0]
            if label not in by_name:
                by_name[label] = {"id": None, "name": label}
            if kind == "poly2d":
                parts = _parts(poly)
                segmentation: Any = parts
                bbox = _bbox_of(v for part in parts for v in part)
                area = sum(_shoelace(part) for part in parts)
            else:
                bbox = _bbox_of(poly)
                segmentation = []
                area = bbox[2] * bbox[3]
            if "rle" in meta:
                segmentation = meta["rle"]
            ann: dict[str, Any] = {
                "id": ann_ids.claim(_decimal_id(roi.get("id"))),
                "image_id": image_index,  # an index for now: image ids are final only at the end
                "category_id": label,  # a name for now, likewise
                "segmentation": segmentation,
                "area": meta.get("area", area),
                "bbox": bbox,
                "iscrowd": meta.get("iscrowd", 0),
            }
            if roi.get("confidence") is not None:
                ann["score"] = roi["confidence"]
            ann.update({k: v for k, v in meta.items() if k not in _ROI_META_CORE and k not in ann})
            anns.append(ann)

    image_ids.fill(images)
    ann_ids.fill(anns)
    new_cats = sorted((c for c in by_name.values() if c["id"] is None), key=lambda c: c["name"])
    cat_ids.fill(new_cats)
    for ann in anns:
        ann["image_id"] = images[ann["image_id"]]["id"]
        ann["category_id"] = by_name[ann["category_id"]]["id"]
    out: dict[str, Any] = {}
    for key in ("info", "licenses"):
        if coco_meta and key in coco_meta:
            out[key] = coco_meta[key]
    out["images"] = sorted(images, key=lambda i: i["id"])
    out["annotations"] = sorted(anns, key=lambda a: a["id"])
    out["categories"] = sorted(by_name.values(), key=lambda c: c["id"])
    return CocoExport(coco=out, skipped_rois=skipped)


def stored_coco_meta(version: DatasetVersion) -> dict[str, Any] | None:
    """The ``"coco"`` metadata of the version, else of its nearest ancestor that has it, else None.

    Children and snapshot drafts start with empty metadata, so the categories an import stored on a
    parent still name the ids of the child's export.

    Raises:
        NotFoundError: the version was deleted.
    """
    current: DatasetVersion | None = version
    while current is not None:
        meta = current.get_metadata().get(COCO_KEY)
        if isinstance(meta, Mapping):
            return dict(meta)
        current = current.get_parent()
    return None


def version_frames(version: DatasetVersion, batch_size: int = 4096) -> Iterator[dict[str, Any]]:
    """Yield a version's frames as canonical frame dicts, converting ``batch_size`` rows at a time.

    Raises:
        CorruptObjectError: a segment is missing or damaged.
    """
    from hds_s3.index import segments

    table = version.get_frames_table(columns=list(segments.FRAME_COLUMNS))
    for batch in table.to_batches(max_chunksize=batch_size):
        for row in batch.to_pylist():
            yield segments.row_to_frame(row)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON to a local path through a temporary file and a rename, or to an fsspec URL.

    Raises:
        StorageError: the file cannot be written (the message names it).
    """
    name = os.fspath(path)
    try:
        if "://" in name and not name.startswith("file://"):
            import fsspec

            with fsspec.open(name, "wt", encoding="utf-8") as handle:
                json.dump(data, handle, ensure_ascii=False)
            return
        target = Path(name[len("file://") :] if name.startswith("file://") else name)
        with replacing(target) as handle:  # the user's umask, unlike tempfile's 0600
            json.dump(data, handle, ensure_ascii=False)
    except OSError as exc:
        raise StorageError(f"cannot write {name!r}: {exc}") from exc


def export_coco(
    source: DatasetVersion | FrameSource,
    output: str | os.PathLike[str] | None = None,
    *,
    image_root: str | None = None,
    coco_meta: Mapping[str, Any] | None = None,
) -> CocoExport:
    """Export a version, or a DataView's frames, as COCO (and write it to ``output`` when given).

    For a version, the categories stored by an import (on it or an ancestor) keep their ids; for a
    DataView pass ``coco_meta`` to get the same (else categories are numbered by label name).

    Raises:
        CorruptObjectError: a segment is missing or damaged.
        StorageError: ``output`` cannot be written (nothing is left at ``output`` then).
    """
    from hds_s3.api import DatasetVersion

    if isinstance(source, DatasetVersion):
        frames: Iterable[Mapping[str, Any]] = version_frames(source)
        if coco_meta is None:
            coco_meta = stored_coco_meta(source)
    else:
        frames = source.get_iterator(as_dict=True)
    result = frames_to_coco(frames, coco_meta=coco_meta, image_root=image_root)
    if output is not None:
        write_json_atomic(output, result.coco)
    return result


__all__ = [
    "COCO_KEY",
    "CocoExport",
    "CocoImport",
    "FrameSource",
    "coco_to_frames",
    "export_coco",
    "frames_to_coco",
    "import_coco",
    "join_uri",
    "load_coco",
    "stored_coco_meta",
    "version_frames",
    "write_json_atomic",
]
