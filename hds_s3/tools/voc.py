"""Pascal VOC annotation files in and out of hds_s3 versions: one XML file per image, boxes only.

A VOC file is ``<annotation>`` with ``<filename>``, ``<size>`` (``width``, ``height``, ``depth``)
and one ``<object>`` per box: ``<name>`` (the class), ``<bndbox>`` (``xmin``, ``ymin``, ``xmax``,
``ymax`` in pixels) and optionally ``<pose>``, ``<truncated>``, ``<difficult>``, ``<occluded>``.
The files are parsed with ``defusedxml``, which refuses what hostile XML uses (entity expansion,
external entities and DTDs), so a VOC folder from anywhere is safe to read.

Import (:func:`import_voc`) makes one frame per file: its source URI is ``image_root`` joined with
the ``<filename>``, its size the ``<size>``; the frame id comes from the URI, so importing twice
updates the frames. Each object becomes a ``box2d`` ROI labelled with its name, its id its place in
the file (``1``, ``2``, ...); the box corners are kept as written (VOC's pixel coordinates, no
shift), and ``pose``, ``truncated``, ``difficult`` and ``occluded`` go to the ROI's ``meta["voc"]``,
the file's ``folder`` and ``segmented`` to the frame's ``meta["voc"]``. Everything is checked before
anything is written.

Export (:func:`export_voc`) writes, for a version or a DataView, ``Annotations/<name>.xml`` per image
(see :mod:`hds_s3.tools.exchange` for which ROIs have a box, and the names images get), giving
back what an import kept.
"""

from __future__ import annotations

import math
import os
import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hds_s3.errors import ValidationError
from hds_s3.tools import exchange
from hds_s3.tools.coco import FrameSource, join_uri

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion

VOC_KEY = "voc"
_OBJECT_FIELDS = ("pose", "truncated", "difficult", "occluded")
_FLAGS = ("truncated", "difficult", "occluded")


@dataclass(frozen=True)
class VocImport:
    """What :func:`import_voc` wrote."""

    images: int
    boxes: int
    classes: int


@dataclass(frozen=True)
class VocExport:
    """What :func:`export_voc` wrote; ``skipped_rois`` have no box form."""

    images: int
    boxes: int
    skipped_rois: int


def _parse(text: str, where: str) -> ET.Element:
    """Parse untrusted XML text with defusedxml.

    Raises:
        ValidationError: not well-formed XML, or XML using entities, DTDs or external references.
    """
    import defusedxml
    import defusedxml.ElementTree as DET

    try:
        root: ET.Element = DET.fromstring(text, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise ValidationError(
            f"{where}: refused, the XML uses {type(exc).__name__.removesuffix('Forbidden')} "
            f"({exc}); a VOC file needs none"
        ) from None
    except ET.ParseError as exc:
        raise ValidationError(f"{where}: not well-formed XML ({exc})") from None
    return root


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _number(element: ET.Element, path: str, what: str, problems: exchange.Problems) -> float | None:
    text = _text(element, path)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        problems.add(what, f"<{path}> must be a number, got {text!r}")
        return None
    return value


def _int_or_text(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def voc_to_frame(
    text: str, image_root: str, where: str, problems: exchange.Problems
) -> dict[str, Any] | None:
    """The frame dict of one VOC file's text (problems are noted in ``problems``; then None)."""
    try:
        root = _parse(text, where)
    except ValidationError as exc:
        problems.add(where, str(exc).removeprefix(f"{where}: "))
        return None
    if root.tag != "annotation":
        problems.add(where, f"the root element is <{root.tag}>, a VOC file has <annotation>")
        return None
    filename = _text(root, "filename")
    if not filename:
        problems.add(where, "needs a non-empty <filename>")
        return None
    width = _number(root, "size/width", where, problems)
    height = _number(root, "size/height", where, problems)
    if width is None or height is None:
        return None
    if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
        problems.add(where, f"<size> must be positive whole numbers, got {width} x {height}")
        return None
    rois = []
    for n, obj in enumerate(root.findall("object"), start=1):
        what = f"{where} object {n}"
        name = _text(obj, "name")
        if not name:
            problems.add(what, "needs a <name> (the class)")
            continue
        corners = [_number(obj, f"bndbox/{k}", what, problems) for k in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in corners):
            continue
        x0, y0, x1, y1 = (float(c) for c in corners if c is not None)
        if x1 < x0 or y1 < y0:
            problems.add(what, f"xmax/ymax must be >= xmin/ymin, got ({x0}, {y0}, {x1}, {y1})")
            continue
        extra = {k: _int_or_text(v) for k in _OBJECT_FIELDS if (v := _text(obj, k)) is not None}
        rois.append(exchange.box_roi(str(n), name, x0, y0, x1, y1, meta={VOC_KEY: extra} if extra else None))
    meta = {k: _int_or_text(v) for k in ("folder", "segmented") if (v := _text(root, k)) is not None}
    return {
        "sources": [
            {
                "id": "default",
                "uri": join_uri(image_root, filename),
                "width": int(width),
                "height": int(height),
            }
        ],
        "rois": rois,
        "meta": {VOC_KEY: meta} if meta else {},
    }


def voc_to_frames(root: str, image_root: str | None = None) -> list[dict[str, Any]]:
    """Read a VOC folder: the ``*.xml`` files of ``root/Annotations`` (or of ``root`` when it has none).

    ``image_root`` defaults to ``root/JPEGImages``.

    Raises:
        NotFoundError: ``root`` is not a folder.
        ValidationError: a file is malformed or hostile (all problems named); nothing is returned.
        StorageError: a file cannot be read.
    """
    from hds_s3.errors import NotFoundError

    folder = join_uri(root, "Annotations")
    try:
        files = exchange.list_files(folder, (".xml",))
    except NotFoundError:
        folder, files = root, exchange.list_files(root, (".xml",))
    images = image_root or join_uri(root, "JPEGImages")
    problems = exchange.Problems(root)
    frames = []
    uris: dict[str, str] = {}
    for name, uri in files:
        text = exchange.read_text(uri) or ""
        frame = voc_to_frame(text, images, name, problems)
        if frame is None:
            continue
        source = frame["sources"][0]["uri"]
        if source in uris:
            problems.add(name, f"its image {source!r} is also {uris[source]}'s; one file per image")
            continue
        uris[source] = name
        frames.append(frame)
    problems.raise_if_any()
    return frames


def import_voc(
    version: DatasetVersion,
    root: str | os.PathLike[str],
    *,
    image_root: str | None = None,
    show_progress: bool = False,
) -> VocImport:
    """Import a VOC folder (a path or fsspec URL) into a draft version (see the module docstring).

    Raises:
        InvalidStateError: the version is published (nothing is written).
        NotFoundError: ``root`` is not a folder.
        ValidationError: anything malformed or hostile; nothing is written.
        StorageError: the store or a file failed; frames committed before stay.
    """
    where = os.fspath(root)
    exchange.require_draft(version, "import VOC files into")
    frames = voc_to_frames(where, image_root)
    exchange.add_all(version, frames, where, show_progress)
    classes = {r["labels"][0] for f in frames for r in f["rois"]}
    return VocImport(images=len(frames), boxes=sum(len(f["rois"]) for f in frames), classes=len(classes))


def _sub(parent: ET.Element, tag: str, text: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = _plain(text)
    return child


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def image_xml(item: exchange.ImageItem, folder: str | None = None) -> tuple[ET.Element, int, int]:
    """The ``<annotation>`` element of one image, with the number of boxes written and skipped."""
    root = ET.Element("annotation")
    voc = item.frame_meta.get(VOC_KEY)
    voc = voc if isinstance(voc, Mapping) else {}
    if "folder" in voc or folder:
        _sub(root, "folder", voc.get("folder", folder))
    _sub(root, "filename", item.name)
    size = ET.SubElement(root, "size")
    _sub(size, "width", item.width or 0)
    _sub(size, "height", item.height or 0)
    _sub(size, "depth", 3)
    if "segmented" in voc:
        _sub(root, "segmented", voc["segmented"])
    boxes = skipped = 0
    for roi in item.rois:
        box = exchange.box_of(roi)
        if box is None:
            skipped += 1
            continue
        obj = ET.SubElement(root, "object")
        _sub(obj, "name", roi["labels"][0])
        extra = (roi.get("meta") or {}).get(VOC_KEY) or {}
        for key in _OBJECT_FIELDS:
            if key in extra:
                _sub(obj, key, extra[key])
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            _sub(bndbox, key, round(value, 6))
        boxes += 1
    return root, boxes, skipped


def export_voc(
    source: DatasetVersion | FrameSource,
    output: str | os.PathLike[str],
    *,
    image_root: str | None = None,
) -> VocExport:
    """Write a version's or a DataView's frames as VOC files under ``output/Annotations``.

    Raises:
        CorruptObjectError: a segment is missing or damaged.
        StorageError: a file cannot be written.
    """
    out = os.fspath(output)
    images = boxes = skipped = 0
    for item in exchange.images_of(exchange.frames_of(source), image_root):
        root, written, left = image_xml(item)
        ET.indent(root)
        data = ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
        stem = posixpath.splitext(item.name)[0]
        exchange.write_file(join_uri(join_uri(out, "Annotations"), stem + ".xml"), data)
        images, boxes, skipped = images + 1, boxes + written, skipped + left
    return VocExport(images=images, boxes=boxes, skipped_rois=skipped)


__all__ = ["VOC_KEY", "VocExport", "VocImport", "export_voc", "image_xml", "import_voc", "voc_to_frames"]
