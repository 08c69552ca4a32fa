"""What the YOLO, Pascal VOC and Hugging Face exchanges share: images of frames, boxes, files.

An exported *image* is one source of one frame (a SingleFrame has one), with the ROIs that apply
to it: those bound to that source, and, when the frame has a single source, those bound to none.
Its *name* is the source URI relative to ``image_root`` (the whole URI without its ``scheme://``
when it does not start with ``image_root``).

A ROI has a box when it is a ``box2d`` or a ``poly2d`` with coordinates and at least one label;
its box is the bounding box of its points, and its class is its first label. ROIs without a box
(points, ellipses, 3-D shapes, masks, frame labels) have no form in these formats and are counted
as skipped.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hds_s3.errors import InvalidStateError, NotFoundError, StorageError, ValidationError
from hds_s3.model.annotations import POLY_SEPARATOR
from hds_s3.tools.coco import FrameSource, join_uri, version_frames

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion

#: File name extensions taken as images when a folder is imported.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_MAX_PROBLEMS = 20


@dataclass
class ImageItem:
    """One source of one frame, as exported: where it is, its size and the ROIs drawn on it."""

    frame_id: str
    source: Mapping[str, Any]
    name: str
    rois: list[Mapping[str, Any]] = field(default_factory=list)
    frame_meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int | None:
        """The source's width in pixels, if known."""
        value = self.source.get("width")
        return int(value) if isinstance(value, int) and value > 0 else None

    @property
    def height(self) -> int | None:
        """The source's height in pixels, if known."""
        value = self.source.get("height")
        return int(value) if isinstance(value, int) and value > 0 else None


class Problems:
    """Collects what is wrong with an input, to report it all at once (nothing is imported then)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, what: str, problem: str) -> None:
        """Note one problem of one item."""
        self.items.append(f"{what}: {problem}")

    def raise_if_any(self) -> None:
        """Raise one error listing the first problems.

        Raises:
            ValidationError: there were problems.
        """
        if not self.items:
            return
        shown = self.items[:_MAX_PROBLEMS]
        more = len(self.items) - len(shown)
        tail = f"; and {more} more" if more else ""
        count = f"{len(self.items)} problems: " if len(self.items) > 1 else ""
        raise ValidationError(f"{self.where}: {count}{'; '.join(shown)}{tail}; nothing was imported")


def frames_of(source: DatasetVersion | FrameSource) -> Iterable[Mapping[str, Any]]:
    """The frame dicts of a version, or of anything with ``get_iterator(as_dict=True)`` (a DataView).

    Raises:
        CorruptObjectError: a segment is missing or damaged.
    """
    from hds_s3.api import DatasetVersion

    if isinstance(source, DatasetVersion):
        return version_frames(source)
    return source.get_iterator(as_dict=True)


def relative_name(uri: str, image_root: str | None) -> str:
    """The name an image gets in an export (see the module docstring)."""
    if image_root:
        root = image_root.rstrip("/") + "/"
        if uri.startswith(root):
            return uri[len(root) :]
    _, sep, rest = uri.partition("://")
    return (rest if sep else uri).lstrip("/")


def images_of(frames: Iterable[Mapping[str, Any]], image_root: str | None) -> Iterator[ImageItem]:
    """Every source of every frame, with its ROIs (see the module docstring)."""
    for frame in frames:
        sources = list(frame.get("sources") or ())
        rois = list(frame.get("rois") or ())
        for src in sources:
            uri = src.get("uri")
            if not isinstance(uri, str) or not uri:
                continue
            mine = [
                r
                for r in rois
                if src.get("id") in (r.get("sources") or ()) or (not r.get("sources") and len(sources) == 1)
            ]
            meta = frame.get("meta")
            yield ImageItem(
                str(frame.get("id")),
                src,
                relative_name(uri, image_root),
                mine,
                meta if isinstance(meta, Mapping) else {},
            )


def box_of(roi: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The ROI's box ``(x0, y0, x1, y1)`` in pixels, or None when it has no box form."""
    if roi.get("type") not in ("box2d", "poly2d") or not roi.get("labels"):
        return None
    points = [float(v) for v in roi.get("poly") or () if v != POLY_SEPARATOR]
    if len(points) < 2:
        return None
    xs, ys = points[0::2], points[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def box_roi(
    roi_id: str, label: str, x0: float, y0: float, x1: float, y1: float, **extra: Any
) -> dict[str, Any]:
    """A canonical ``box2d`` ROI dict from corner coordinates (``extra``: confidence, meta)."""
    return {
        "id": roi_id,
        "labels": [label],
        "type": "box2d",
        "poly": [x0, y0, x1, y0, x1, y1, x0, y1],
        "confidence": extra.get("confidence"),
        "sources": [],
        "meta": extra.get("meta") or {},
        "mask": None,
    }


def class_names(labels: Iterable[str], known: Sequence[str] | None = None) -> list[str]:
    """Class names in index order: ``known`` first (as given), then the other labels sorted."""
    names = list(known or ())
    seen = set(names)
    names.extend(sorted({label for label in labels if label not in seen}))
    return names


def _fs(root: str) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(root)
    return fs, path


def list_files(root: str, extensions: Sequence[str]) -> list[tuple[str, str]]:
    """The files below ``root`` (a folder or fsspec URL) ending in one of ``extensions``.

    Returns ``(name relative to root, URI)`` pairs sorted by name; the URI is ``root`` joined with the
    name.

    Raises:
        NotFoundError: ``root`` is not a folder.
        StorageError: it cannot be listed.
    """
    try:
        fs, base = _fs(root)
        if not fs.isdir(base):
            raise NotFoundError(f"{root!r} is not a folder")
        found = fs.find(base)
    except (OSError, ValueError) as exc:
        if isinstance(exc, NotFoundError):
            raise
        raise StorageError(f"cannot list {root!r}: {exc}") from exc
    base = base.rstrip("/")
    out = []
    for path in found:
        rel = posixpath.relpath(path, base) if path.startswith(base) else posixpath.basename(path)
        if rel.lower().endswith(tuple(extensions)):
            out.append((rel, join_uri(root, rel)))
    return sorted(out)


def read_text(uri: str) -> str | None:
    """The UTF-8 text of a file (a path or fsspec URL), or None when it does not exist.

    Raises:
        ValidationError: it is not UTF-8.
        StorageError: it cannot be read.
    """
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {uri!r}: {exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{uri}: not UTF-8 text ({exc})") from None


def write_file(path: str, data: bytes) -> None:
    """Write bytes to a local path (making its folders) or to an fsspec URL.

    Raises:
        StorageError: it cannot be written.
    """
    try:
        if "://" in path and not path.startswith("file://"):
            import fsspec

            with fsspec.open(path, "wb") as handle:
                handle.write(data)
            return
        local = path[len("file://") :] if path.startswith("file://") else path
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        with open(local, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise StorageError(f"cannot write {path!r}: {exc}") from exc


def require_draft(version: DatasetVersion, what: str) -> None:
    """Refuse to import into a published version.

    Raises:
        InvalidStateError: it is published.
    """
    version.reload()
    if not version.is_draft:
        raise InvalidStateError(
            f"cannot {what} version {version.name!r} of dataset {version.dataset_name!r}: it is published; "
            "import into a draft (create a child version or take a snapshot)"
        )


def add_all(version: DatasetVersion, frames: list[dict[str, Any]], where: str, show_progress: bool) -> None:
    """Add checked frames to a draft.

    Raises:
        StorageError: the store failed, or a frame was refused (a bug of the importer: it checks them).
    """
    failed = version.add_frames(frames, show_progress=show_progress)
    if failed:
        raise StorageError(
            f"{where}: {len(failed)} frames were refused ({failed[0].reason}); the others were added"
        )
