"""YOLO label folders in and out of hds_s3 versions (boxes, as Ultralytics and Darknet write them).

A YOLO folder holds ``data.yaml`` (``names``: the class names, a list or a mapping from index to
name), the images (``images/`` unless told otherwise) and ``labels/``: for the image
``images/a/b.jpg`` the file ``labels/a/b.txt``, one object a line, ``class cx cy w h`` with the
box centre and size divided by the image's width and height. An image without a label file has no
objects.

Import (:func:`import_yolo`) makes one frame per image (its source URI is ``image_root`` joined with
the image's name; the frame id comes from the URI, so importing twice updates the frames) and one
``box2d`` ROI per line, labelled with the class name, its id the line number. A sixth number (a
detection's score) becomes the ROI's confidence; a line with a polygon (``class x1 y1 x2 y2 ...``,
segmentation labels) becomes the polygon's bounding box. Image sizes are read from the image files
(their headers, with Pillow: ``pip install 'hds_s3[yolo]'``). The class names are stored in the
version's metadata under ``"yolo"``, so an export gives every class its index back. Everything is
checked before anything is written.

Export (:func:`export_yolo`) writes, for a version or a DataView, ``data.yaml`` and one label file
per image (see :mod:`hds_s3.tools.exchange` for which ROIs have a box, and the names images get),
and with ``copy_images`` the images themselves under ``images/``, fetched from their sources.
"""

from __future__ import annotations

import io
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hds_s3.errors import ValidationError
from hds_s3.tools import exchange
from hds_s3.tools.coco import FrameSource, join_uri

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion
    from hds_s3.io.sources import SourceFetcher

#: Key of the version metadata where the class names of an import are kept.
YOLO_KEY = "yolo"


@dataclass(frozen=True)
class YoloImport:
    """What :func:`import_yolo` wrote."""

    images: int
    boxes: int
    classes: int


@dataclass(frozen=True)
class YoloExport:
    """What :func:`export_yolo` wrote; ``skipped_rois`` have no box form."""

    images: int
    boxes: int
    names: list[str]
    skipped_rois: int

    @property
    def classes(self) -> int:
        """Number of class names in ``data.yaml``."""
        return len(self.names)


def _names(data: object, where: str) -> list[str]:
    """The class names of a parsed ``data.yaml``, in index order."""
    if not isinstance(data, Mapping) or "names" not in data:
        raise ValidationError(f"{where}: needs 'names', the class names (a list, or a mapping index: name)")
    names = data["names"]
    if isinstance(names, Mapping):
        if sorted(names) != list(range(len(names))) or any(isinstance(k, bool) for k in names):
            raise ValidationError(f"{where}: the keys of 'names' must be the indexes 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValidationError(f"{where}: 'names' must list non-empty class names, got {names!r}")
    if len(set(names)) != len(names):
        raise ValidationError(f"{where}: 'names' lists a class twice: {names!r}")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise ValidationError(f"{where}: nc is {nc!r} but 'names' has {len(names)} classes")
    return list(names)


def read_names(root: str) -> list[str]:
    """The class names of the ``data.yaml`` in the folder ``root``.

    Raises:
        NotFoundError: there is no ``data.yaml``.
        ValidationError: it is not YAML, or has no valid ``names``.
    """
    import yaml

    from hds_s3.errors import NotFoundError

    where = join_uri(root, "data.yaml")
    text = exchange.read_text(where)
    if text is None:
        raise NotFoundError(f"{where} does not exist; a YOLO folder has a data.yaml naming its classes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{where}: not valid YAML ({exc})") from None
    return _names(data, where)


def _image_size(fetcher: SourceFetcher, uri: str) -> tuple[int, int]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise ImportError(
            f"importing YOLO labels reads image sizes with Pillow ({exc}); pip install 'hds_s3[yolo]'"
        ) from exc
    try:
        with Image.open(io.BytesIO(fetcher.fetch(uri))) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValidationError(f"{uri}: not an image Pillow can read ({exc})") from None
    return int(width), int(height)


def _finite(values: Sequence[str]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except ValueError:
        return None
    return out if all(math.isfinite(v) for v in out) else None


def parse_labels(
    text: str, names: Sequence[str], width: int, height: int, where: str, problems: exchange.Problems
) -> list[dict[str, Any]]:
    """The box ROIs of one label file's text (problems are noted in ``problems``)."""
    rois: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        what = f"{where} line {number}"
        if not fields[0].isdigit() or int(fields[0]) >= len(names):
            problems.add(what, f"class {fields[0]!r} is not an index of data.yaml's {len(names)} names")
            continue
        label = names[int(fields[0])]
        values = _finite(fields[1:])
        if values is None:
            problems.add(what, "the coordinates must be finite numbers")
            continue
        confidence = None
        if len(values) in (4, 5):
            cx, cy, w, h = values[:4]
            if w < 0 or h < 0:
                problems.add(what, f"the box size must be >= 0, got {w} x {h}")
                continue
            if len(values) == 5:
                confidence = values[4]
                if not 0.0 <= confidence <= 1.0:
                    problems.add(what, f"the score must be in 0..1, got {confidence}")
                    continue
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:
            x0, x1 = min(values[0::2]), max(values[0::2])
            y0, y1 = min(values[1::2]), max(values[1::2])
        else:
            problems.add(
                what, f"expected 'class cx cy w h [score]' or 'class x1 y1 x2 y2 x3 y3 ...', got {line!r}"
            )
            continue
        rois.append(
            exchange.box_roi(
                str(number), label, x0 * width, y0 * height, x1 * width, y1 * height, confidence=confidence
            )
        )
    return rois


def yolo_to_frames(
    root: str, image_root: str | None = None, *, fetcher: SourceFetcher | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a YOLO folder as frame dicts and class names, checking everything (see the module docstring).

    Raises:
        NotFoundError: no ``data.yaml``, or no images folder.
        ValidationError: a malformed ``data.yaml`` or label line, or an unreadable image (all named).
        StorageError: a file cannot be read.
    """
    from hds_s3.io.sources import SourceFetcher

    fetch = fetcher or SourceFetcher(cache_bytes=0)
    names = read_names(root)
    images_at = image_root or join_uri(root, "images")
    problems = exchange.Problems(root)
    frames = []
    for name, uri in exchange.list_files(images_at, exchange.IMAGE_EXTENSIONS):
        label_uri = join_uri(join_uri(root, "labels"), posixpath.splitext(name)[0] + ".txt")
        try:
            width, height = _image_size(fetch, uri)
        except ValidationError as exc:
            problems.add(name, str(exc))
            continue
        text = exchange.read_text(label_uri) or ""
        rois = parse_labels(text, names, width, height, label_uri, problems)
        frames.append(
            {
                "sources": [{"id": "default", "uri": uri, "width": width, "height": height}],
                "rois": rois,
                "meta": {},
            }
        )
    problems.raise_if_any()
    return frames, names


def import_yolo(
    version: DatasetVersion,
    root: str | os.PathLike[str],
    *,
    image_root: str | None = None,
    fetcher: SourceFetcher | None = None,
    show_progress: bool = False,
) -> YoloImport:
    """Import a YOLO folder (a path or fsspec URL) into a draft version (see the module docstring).

    Raises:
        InvalidStateError: the version is published (nothing is written).
        NotFoundError: no ``data.yaml`` or images folder.
        ValidationError: anything malformed; nothing is written.
        StorageError: the store or a file failed; frames committed before stay.
    """
    where = os.fspath(root)
    exchange.require_draft(version, "import YOLO labels into")
    frames, names = yolo_to_frames(where, image_root, fetcher=fetcher)
    metadata = version.get_metadata()
    metadata[YOLO_KEY] = {"names": exchange.class_names((), names)}
    version.set_metadata(metadata)
    exchange.add_all(version, frames, where, show_progress)
    return YoloImport(images=len(frames), boxes=sum(len(f["rois"]) for f in frames), classes=len(names))


def stored_names(version: DatasetVersion) -> list[str] | None:
    """The class names an import stored on the version or its nearest ancestor that has them.

    Raises:
        NotFoundError: the version was deleted.
    """
    current: DatasetVersion | None = version
    while current is not None:
        meta = current.get_metadata().get(YOLO_KEY)
        if isinstance(meta, Mapping) and isinstance(meta.get("names"), list):
            return [str(n) for n in meta["names"]]
        current = current.get_parent()
    return None


def _number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def export_yolo(
    source: DatasetVersion | FrameSource,
    output: str | os.PathLike[str],
    *,
    image_root: str | None = None,
    names: Sequence[str] | None = None,
    copy_images: bool = False,
    fetcher: SourceFetcher | None = None,
) -> YoloExport:
    """Write a version's or a DataView's frames as a YOLO folder at ``output`` (a path or fsspec URL).

    The class indexes follow ``names`` when given, else the names an import stored (for a
    version), then the other labels sorted by name. An image whose size is not known gets no boxes
    (they are counted as skipped).

    Raises:
        CorruptObjectError: a segment is missing or damaged.
        NotFoundError: ``copy_images`` and a source does not exist.
        StorageError: a file cannot be written or a source read.
    """
    import yaml

    from hds_s3.api import DatasetVersion
    from hds_s3.io.sources import SourceFetcher

    out = os.fspath(output)
    if names is None and isinstance(source, DatasetVersion):
        names = stored_names(source)
    items = list(exchange.images_of(exchange.frames_of(source), image_root))
    labels = [r["labels"][0] for item in items for r in item.rois if exchange.box_of(r) is not None]
    all_names = exchange.class_names(labels, names)
    index = {name: i for i, name in enumerate(all_names)}
    boxes = skipped = 0
    fetch = fetcher or SourceFetcher(cache_bytes=0)
    for item in items:
        lines = []
        for roi in item.rois:
            box = exchange.box_of(roi)
            if box is None or item.width is None or item.height is None:
                skipped += 1
                continue
            x0, y0, x1, y1 = box
            w, h = item.width, item.height
            fields = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
            if roi.get("confidence") is not None:
                fields.append(float(roi["confidence"]))
            lines.append(" ".join([str(index[roi["labels"][0]]), *(_number(v) for v in fields)]))
            boxes += 1
        stem = posixpath.splitext(item.name)[0]
        text = "".join(line + "\n" for line in lines)
        exchange.write_file(join_uri(join_uri(out, "labels"), stem + ".txt"), text.encode("utf-8"))
        if copy_images:
            data = fetch.fetch(str(item.source["uri"]))
            exchange.write_file(join_uri(join_uri(out, "images"), item.name), data)
    spec: dict[str, Any] = {}
    if copy_images:
        spec.update(path=".", train="images", val="images")
    elif image_root:
        spec.update(train=image_root, val=image_root)
    spec.update(nc=len(all_names), names=dict(enumerate(all_names)))
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    exchange.write_file(join_uri(out, "data.yaml"), text.encode("utf-8"))
    return YoloExport(images=len(items), boxes=boxes, names=all_names, skipped_rois=skipped)


__all__ = [
    "YOLO_KEY",
    "YoloExport",
    "YoloImport",
    "export_yolo",
    "import_yolo",
    "parse_labels",
    "read_names",
    "stored_names",
    "yolo_to_frames",
]
