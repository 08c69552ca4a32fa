"""Frames: SingleFrame (one source), FrameGroup (several named sources) and their canonical dict.

The module also holds previews, masks, annotations (through :mod:`hds_s3.model.annotations`), validation
and frame identity.

Pure Python: nothing here does I/O except the ``get_local_*`` methods (through fsspec). The storage
layer turns the canonical dict of :func:`to_frame_dict` into Parquet and reads it back with
:func:`frame_from_dict`; ``to_frame_dict(frame_from_dict(d)) == d`` for every dict it produced::

    {"id", "context_id", "timestamp",
     "sources": [{"id", "uri", "content_type", "width", "height", "timestamp", "meta",
                  "preview": {"uri", "content_type", "width", "height", "timestamp"} | None,
                  "masks": [{"id", "uri", "content_type", "width", "height", "timestamp"}]}],
     "rois": [{"id", "labels", "type", "poly", "confidence", "sources", "meta", "mask"}],
     "meta": {...}, "meta_blob": {...}}
    (+ "saved", "saved_in_version", "updated_in_version" when known)

A frame with one source whose id is ``"default"`` reads back as a :class:`SingleFrame`, anything else
as a :class:`FrameGroup`. ROIs are described in :mod:`hds_s3.model.annotations`. The JSON Schema of
this dict ships with the package (:func:`hds_s3.model.schema.frame_schema`, ``hds frames schema``).

Single-source shorthand (:func:`expand_shorthand`, accepted wherever a frame dict is read): a dict
without ``sources`` that has a top-level ``uri`` is one source with id ``"default"``, taking the
top-level ``uri``, ``content_type``, ``width``, ``height``, ``timestamp`` (the position in the
source, which the frame's timestamp defaults to), ``preview`` and ``masks``; everything else (``id``,
``rois``, ``meta``, ...) stays with the frame. A list of one source without an ``id`` gives it the id
``"default"`` too. ``{"uri": "s3://b/1.jpg", "meta": {"city": "bremen"}}`` is thus the frame
``{"sources": [{"id": "default", "uri": "s3://b/1.jpg"}], "meta": {"city": "bremen"}}``.

Defaults: ``context_id`` is the first source's URI, ``timestamp`` (milliseconds) the first source's
timestamp (0 for images), ``content_type`` is guessed from the URI's extension (Python's built-in
table, the same on every machine), source/preview/mask timestamps are 0.

Frame identity (:func:`frame_id`): an explicit ``id`` wins. Otherwise the id is the first 32 hex digits
of ``sha256(json.dumps([[[source_id, uri], ...sorted by source id], timestamp],
separators=(",", ":"), ensure_ascii=False).encode("utf-8"))``, so ingesting the same sources at the
same timestamp twice updates the frame instead of duplicating it, while the frames of one video
(same URI, different timestamps) stay distinct.

ROIs of a :class:`FrameGroup`: a ROI added to a member with no ``sources`` is bound to that member's
source id (its key) when the frame is serialised; :meth:`FrameGroup.add_global_annotation` adds one ROI
listing every member. On reading, a ROI bound to exactly one member goes back to that member (with
``sources`` empty); the others stay on the group. Serialised ROIs are ordered so that this round trip
is exact: each member's ROIs in member order, then the others in their order.

Masks: ``masks_source = {id: uri}`` keeps the ids, a list gets ids ``"00"``, ``"01"``, ...;
``mask_source`` is a single mask with id ``"00"``. Mask ids are unique within a source; a ROI's
``mask["id"]`` must be a mask of one of its sources (of any source when the ROI has none). ``mask_rgb``
binds to the frame's first mask id in sorted order (the reference's ``get_mask_source()`` default).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import mimetypes
import os
import shutil
import sys
import uuid
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from hds_s3.errors import NotFoundError, StorageError, ValidationError
from hds_s3.model.annotations import (
    Annotation,
    ImageAnnotation,
    _fail,
    _is_int,
    _name,
    drop_annotations,
    find_annotations,
    make_annotations,
    pop_annotation,
    roi_to_dict,
    strict_keys,
)
from hds_s3.model.limits import MAX_FRAME_BYTES, MAX_ROIS, MAX_SOURCES, frame_budget, frame_label, too_big
from hds_s3.model.names import SizeBudget, check_metadata, check_text, check_utf8, copy_json, preview

DEFAULT_SOURCE_ID = "default"
"""Source id of a :class:`SingleFrame` (as in the reference's legacy SDK)."""

SHORTHAND_SOURCE_KEYS = ("uri", "content_type", "width", "height", "timestamp", "preview", "masks")
"""The source fields a one-source frame dict may give at its top level (see :func:`expand_shorthand`)."""

FRAME_KEYS = (
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
"""The fields of a frame dict (the last three are provenance: kept when read, replaced when written)."""
FRAME_ALIASES = {"metadata": "meta"}
"""Other spellings of frame fields: ``metadata``, as ``SingleFrame(metadata=)`` calls it, is ``meta``."""
FRAME_READ_ONLY = ("dataset",)
"""Fields a DataView adds to the frames it returns; ignored when a frame dict is read."""
SOURCE_KEYS = ("id", "uri", "content_type", "width", "height", "timestamp", "meta", "preview", "masks")
"""The fields of a source dict."""
PREVIEW_KEYS = ("uri", "content_type", "width", "height", "timestamp")
"""The fields of a source's preview dict."""
MASK_KEYS = ("id", "uri", "content_type", "width", "height", "timestamp")
"""The fields of a mask dict (in a source's ``masks``)."""

Coordinates = Iterable[Any]
"""Shape input: a flat list of numbers, a list of tuples, or (``poly2d_xy``) a list of parts."""


@dataclass
class Preview:
    """A thumbnail or alternative rendering of a source (the UI shows it instead of the source)."""

    uri: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    timestamp: int = 0


@dataclass
class Mask:
    """A segmentation or alpha mask of a source; ``id`` is unique within the source."""

    id: str
    uri: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    timestamp: int = 0


# ---------------------------------------------------------------------------- small helpers

_MIME: mimetypes.MimeTypes | None = None
_ENCODING_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def guess_content_type(uri: object) -> str | None:
    """The MIME type for a URI's extension (``"image/jpeg"`` for ``s3://b/a.jpg``), or ``None``."""
    global _MIME
    if not isinstance(uri, str) or not uri:
        return None
    if _MIME is None:
        _MIME = mimetypes.MimeTypes()  # built-in table only: the same guess on every machine
        for ext, mime in ((".webp", "image/webp"), (".avif", "image/avif")):
            _MIME.add_type(mime, ext)
    path = urlsplit(uri).path if "://" in uri else uri
    kind, encoding = _MIME.guess_type(path)
    return _ENCODING_TYPES.get(encoding) if encoding else kind


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A shallow copy of a metadata dict; anything else is kept for validation to report."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else value


#: The largest width or height a segment holds (a 32-bit signed int column).
MAX_DIMENSION = 2**31 - 1
#: The largest timestamp a segment holds (a 64-bit signed int column), in milliseconds.
MAX_TIMESTAMP = 2**63 - 1


def _dimension(where: str, what: str, value: object) -> int | None:
    if value is None:
        return None
    if _is_int(value) and int(value) > 0:
        if int(value) <= MAX_DIMENSION:
            return int(value)
        _fail(where, what, f"must be a positive int, at most {MAX_DIMENSION} (32 bits), got {preview(value)}")
    _fail(where, what, f"must be a positive int, got {preview(value)}")


def _timestamp(where: str, what: str, value: object) -> int:
    if _is_int(value) and int(value) >= 0:
        if int(value) <= MAX_TIMESTAMP:
            return int(value)
        _fail(
            where, what, f"must be an int >= 0, at most {MAX_TIMESTAMP} (64 bits of ms), got {preview(value)}"
        )
    _fail(where, what, f"must be an int >= 0 (milliseconds), got {preview(value)}")


def _uri(where: str, what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(where, what, f"needs a non-empty URI, got {preview(value)}")
    return check_text(f"{where}: {what}", value)


def _json_size(value: object) -> int:
    """The size of ``value`` as compact JSON in UTF-8 (its strings are known to encode)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _check_utf8_fields(where: str, value: object, what: str) -> None:
    """Find a string UTF-8 cannot encode in a canonical frame dict and raise naming its field.

    Metadata was checked whole when it was copied, so its fields are skipped.
    """
    stack: list[tuple[object, str]] = [(value, what)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            check_utf8(f"{where}: {path}", item)
        elif isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items() if k not in _META)
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))


_META = frozenset({"meta", "meta_blob"})


def _check_size(where: str, out: dict[str, Any]) -> None:
    """Check that every string of a canonical frame dict encodes as UTF-8 and the frame's size.

    Raises:
        ValidationError: naming the frame and the field holding a lone surrogate, or, for a frame
            over :data:`~hds_s3.model.limits.MAX_FRAME_BYTES`, its largest field.
    """
    try:
        size = _json_size(out)
    except UnicodeEncodeError:
        _check_utf8_fields(where, out, "")
        raise  # pragma: no cover - the walk above raises first
    if size > MAX_FRAME_BYTES:
        _fail(where, _largest_field(out), too_big(size))


def _largest_field(out: dict[str, Any]) -> str:
    """The path of the field that makes a frame large.

    That is its largest field, then that field's largest part while the part holds most of it
    (``rois[3].meta``).
    """
    path = ""
    node: Any = out
    for _ in range(4):
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if not items:
            break
        sizes = [(_json_size(value), key) for key, value in items]
        size, key = max(sizes, key=lambda pair: pair[0])
        if path and 2 * size <= sum(s for s, _ in sizes):
            break  # no part holds most of it: the field itself is the answer
        path = (f"{path}.{key}" if path else str(key)) if isinstance(node, dict) else f"{path}[{key}]"
        node = node[key]
        if not isinstance(node, (dict, list)):
            break
    return path


def _content_type(where: str, what: str, explicit: object, uri: str) -> str | None:
    if explicit is None:
        return guess_content_type(uri)
    if not isinstance(explicit, str) or not explicit:
        _fail(where, what, f"must be a non-empty string, got {preview(explicit)}")
    return check_text(f"{where}: {what}", explicit)


def hash_id(sources: list[tuple[str, str]], timestamp: int) -> str:
    """The stable id of a frame without an explicit one, from its (source id, URI) pairs and timestamp."""
    canonical = json.dumps(
        [[list(s) for s in sorted(sources)], timestamp], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _describe(frame: object) -> str:
    """``frame '<id>'`` or ``frame '<first source URI>'`` for error messages."""
    explicit = getattr(frame, "id", None)
    if isinstance(explicit, str) and explicit:
        return f"frame {preview(explicit, 256)}"
    first = frame
    if isinstance(frame, FrameGroup):
        first = next(iter(frame.values()), None)
    uri = getattr(first, "source", None)
    if isinstance(uri, str) and uri:
        return f"frame {preview(uri, 256)}"
    return "frame <no source>"


# ---------------------------------------------------------------------------- local copies


def default_cache_dir() -> Path:
    """Where downloaded sources go: ``$HDS_CACHE_DIR/sources``, else ``<user cache dir>/hds_s3/sources``."""
    env = os.environ.get("HDS_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    elif sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "hds_s3"
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "hds_s3"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hds_s3"
    return root / "sources"


def _local_path(uri: str) -> str | None:
    """The local path a URI names, or ``None`` for a remote (fsspec) URL."""
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc in ("", "localhost"):
            return url2pathname(parts.path)
        return unquote(uri[len("file://") :])
    if uri.startswith("local://"):
        return uri[len("local://") :]
    if "://" in uri or "::" in uri:
        return None
    return uri


local_path = _local_path
"""The local path a URI names (a plain path, ``file://`` or ``local://``), or ``None`` for a remote URL."""


def _cache_name(uri: str) -> str:
    suffix = Path(urlsplit(uri).path).suffix
    if not (1 < len(suffix) <= 16 and suffix[1:].isalnum()):
        suffix = ""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest() + suffix


def _local_copy(what: str, uri: str, cache_dir: str | os.PathLike[str] | None, force: bool) -> str:
    local = _local_path(uri)
    if local is not None:
        if not os.path.exists(local):
            raise NotFoundError(f"{what}: {uri!r} does not exist")
        return local
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / _cache_name(uri)
    if target.exists() and not force:
        return str(target)
    part = folder / f".part-{uuid.uuid4().hex}{target.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fsspec = importlib.import_module("fsspec")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out, fsspec.open(uri, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(part, target)
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what}: {uri!r} not found ({exc})") from exc
    except Exception as exc:
        raise StorageError(f"{what}: cannot download {uri!r} into {folder}: {exc}") from exc
    finally:
        with suppress(OSError):
            part.unlink(missing_ok=True)
    return str(target)


_SHAPE_ARGS = (
    "poly2d_xy",
    "poly3d_xyz",
    "points2d_xy",
    "points3d_xyz",
    "box2d_xywh",
    "box3d_xyzwhxyzwh",
    "ellipse2d_xyrrt",
    "mask_rgb",
    "frame_class",
    "id",
    "labels",
    "confidence",
    "metadata",
)


def _given_annotation(
    where: str, annotation: object, args: Mapping[str, Any], sources: list[str]
) -> Annotation:
    """A copy of ``annotation`` bound to ``sources``, refusing other arguments given with it.

    Raises:
        ValidationError: ``annotation`` is not an Annotation, or shape arguments came with it.
    """
    if not isinstance(annotation, Annotation):
        raise ValidationError(
            f"{where}: annotation must be an ImageAnnotation (or Annotation), got {preview(annotation)}"
        )
    extra = [name for name in _SHAPE_ARGS if args.get(name) is not None]
    if extra:
        raise ValidationError(f"{where}: give annotation or {', '.join(extra)}, not both")
    if isinstance(annotation, ImageAnnotation):
        return annotation.copy_for(sources)
    copied = Annotation.from_dict(annotation.to_dict(), where=where)
    copied.sources = list(sources) if sources else copied.sources
    return copied


# ---------------------------------------------------------------------------- SingleFrame


VIDEO_KEY = "video"
"""The ``meta_blob`` key holding a video frame's key-frame fields (:data:`VIDEO_FIELDS`)."""
VIDEO_FIELDS = ("is_key_frame", "key_frame", "video_gop")
"""A video frame's fields, as the reference's frames carry them: whether it is a key frame, the id of
its key frame, and the length of its group of pictures (frames or ms, as the video says)."""


class _Video:
    """A video frame's key-frame fields, kept in ``meta_blob["video"]`` (not searchable).

    ``None`` when not set; setting ``None`` removes the field.
    """

    meta_blob: dict[str, Any]

    def _video(self, name: str) -> Any:
        blob = self.meta_blob if isinstance(self.meta_blob, dict) else {}
        video = blob.get(VIDEO_KEY)
        return video.get(name) if isinstance(video, dict) else None

    def _set_video(self, name: str, value: object) -> None:
        video = self.meta_blob.get(VIDEO_KEY)
        if not isinstance(video, dict):
            video = {}
        if value is None:
            video.pop(name, None)
        else:
            video[name] = value
        if video:
            self.meta_blob[VIDEO_KEY] = video
        else:
            self.meta_blob.pop(VIDEO_KEY, None)

    @property
    def is_key_frame(self) -> bool | None:
        """Whether this video frame is a key frame (``None``: not said)."""
        value = self._video("is_key_frame")
        return value if isinstance(value, bool) else None

    @is_key_frame.setter
    def is_key_frame(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool):
            raise ValidationError(f"is_key_frame must be True, False or None, got {preview(value)}")
        self._set_video("is_key_frame", value)

    @property
    def key_frame(self) -> str | None:
        """The id of this video frame's key frame (``None``: not said)."""
        value = self._video("key_frame")
        return value if isinstance(value, str) else None

    @key_frame.setter
    def key_frame(self, value: str | None) -> None:
        if value is not None and (not isinstance(value, str) or not value):
            raise ValidationError(f"key_frame must be a frame id (text) or None, got {preview(value)}")
        self._set_video("key_frame", value)

    @property
    def video_gop(self) -> float | None:
        """The length of this frame's group of pictures (``None``: not said)."""
        value = self._video("video_gop")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @video_gop.setter
    def video_gop(self, value: float | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
        ):
            raise ValidationError(f"video_gop must be a number >= 0 or None, got {preview(value)}")
        self._set_video("video_gop", value)

    def _video_init(self, is_key_frame: object, key_frame: object, video_gop: object) -> None:
        for name, value in (
            ("is_key_frame", is_key_frame),
            ("key_frame", key_frame),
            ("video_gop", video_gop),
        ):
            if value is not None:
                setattr(self, name, value)


class _Provenance(_Video):
    """Where and when a stored frame was written (read-only; set when the frame is read back)."""

    metadata: dict[str, Any]

    def set_vector(self, vector: Iterable[float], metadata_field: str) -> None:
        """Keep an embedding in the frame's metadata: ``metadata[metadata_field] = list(vector)``.

        As the reference's ``DataEntry.set_vector``; ``vector_search`` of a version or a DataView
        finds it (see :mod:`hds_s3.index.vectors`). A dotted field nests (``"emb.clip"``).

        Raises:
            ValidationError: ``vector`` is not a non-empty list of finite numbers, or the field is
                not a non-empty name.
        """
        if isinstance(vector, (str, bytes, Mapping)) or not isinstance(vector, Iterable):
            raise ValidationError(
                f"{_describe(self)}: set_vector takes a list of numbers, got {preview(vector)}"
            )
        values = list(vector)
        if not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
            for v in values
        ):
            raise ValidationError(
                f"{_describe(self)}: set_vector takes a non-empty list of finite numbers, "
                f"got {preview(values)}"
            )
        if not isinstance(metadata_field, str) or not metadata_field or not all(metadata_field.split(".")):
            raise ValidationError(
                f"{_describe(self)}: set_vector needs a metadata field name, got {preview(metadata_field)}"
            )
        *parents, last = metadata_field.split(".")
        node = self.metadata
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[last] = [float(v) for v in values]

    _saved: int | None
    _saved_in_version: str | None
    _updated_in_version: str | None

    @property
    def saved(self) -> int | None:
        """When the frame was last saved (epoch ms); ``None`` until it is stored."""
        return self._saved

    @property
    def saved_in_version(self) -> str | None:
        """Id of the version where the frame was last saved; ``None`` until it is stored."""
        return self._saved_in_version

    @property
    def updated_in_version(self) -> str | None:
        """Id of the version where the frame was last updated; ``None`` until it is stored."""
        return self._updated_in_version


class SingleFrame(_Provenance):
    """A frame with one source (the reference's legacy ``allegroai.SingleFrame``).

    Attributes:
        id: Frame id; ``None`` = derived from the sources and timestamp (see :func:`frame_id`).
        source: URI of the raw data (any fsspec URL or a local path).
        width, height: Source size in pixels.
        preview: The :class:`Preview` (``preview_uri`` is its URI).
        masks: The source's :class:`Mask` list (``masks_source`` is the ``{id: uri}`` view).
        metadata: Searchable frame metadata (alias ``meta``).
        meta_blob: Non-searchable frame metadata.
        annotations: The frame's ROIs (:class:`~hds_s3.model.annotations.Annotation`).
        source_id: Id of the source (``"default"``; in a :class:`FrameGroup` the key is used).
        source_meta: Per-source metadata.
        source_timestamp: Position inside the source in ms (video); 0 for images.
    """

    def __init__(
        self,
        source: str | None = None,
        width: int | None = None,
        height: int | None = None,
        preview_uri: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        annotations: Iterable[Annotation | Mapping[str, Any]] | None = None,
        mask_source: str | None = None,
        *,
        id: str | None = None,
        context_id: str | None = None,
        timestamp: int | None = None,
        masks_source: Mapping[str, str] | Iterable[str] | None = None,
        meta_blob: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        source_meta: Mapping[str, Any] | None = None,
        source_id: str = DEFAULT_SOURCE_ID,
        source_timestamp: int = 0,
        is_key_frame: bool | None = None,
        key_frame: str | None = None,
        video_gop: float | None = None,
    ) -> None:
        """Describe one source; nothing is checked until :func:`validate` / :meth:`to_dict`.

        ``is_key_frame``, ``key_frame`` and ``video_gop`` describe a video frame (see :class:`_Video`).

        Raises:
            ValidationError: both ``mask_source`` and ``masks_source`` given, a mask argument
                that is neither a URI, a list of URIs nor a dict of them, or a bad video field.
        """
        self.id = id
        self.source = source
        self.width = width
        self.height = height
        self.preview: Preview | None = None
        self.preview_uri = preview_uri
        self.metadata: dict[str, Any] = _mapping(metadata)
        self.meta_blob: dict[str, Any] = _mapping(meta_blob)
        self.annotations: list[Annotation] = [
            a if isinstance(a, Annotation) else Annotation.from_dict(a) for a in annotations or ()
        ]
        self.masks: list[Mask] = []
        if mask_source is not None and masks_source is not None:
            raise ValidationError(f"{_describe(self)}: give mask_source or masks_source, not both")
        self.masks_source = masks_source if masks_source is not None else mask_source
        self.source_id: str = source_id
        self.source_meta: dict[str, Any] = _mapping(source_meta)
        self.source_timestamp = source_timestamp
        self._content_type = content_type
        self._context_id = context_id
        self._timestamp = timestamp
        self._saved: int | None = None
        self._saved_in_version: str | None = None
        self._updated_in_version: str | None = None
        if isinstance(self.meta_blob, dict):
            self._video_init(is_key_frame, key_frame, video_gop)

    # -- derived and aliased attributes

    @property
    def meta(self) -> dict[str, Any]:
        """Alias of :attr:`metadata`."""
        return self.metadata

    @meta.setter
    def meta(self, value: Mapping[str, Any] | None) -> None:
        self.metadata = _mapping(value)

    @property
    def context_id(self) -> str | None:
        """Grouping key and primary sort key; defaults to the source URI."""
        return self._context_id if self._context_id is not None else self.source

    @context_id.setter
    def context_id(self, value: str | None) -> None:
        self._context_id = value

    @property
    def timestamp(self) -> int:
        """Frame timestamp in ms (secondary sort key); defaults to :attr:`source_timestamp`."""
        return self._timestamp if self._timestamp is not None else self.source_timestamp

    @timestamp.setter
    def timestamp(self, value: int | None) -> None:
        self._timestamp = value

    @property
    def content_type(self) -> str | None:
        """MIME type of the source; guessed from the URI's extension when not set."""
        return self._content_type if self._content_type is not None else guess_content_type(self.source)

    @content_type.setter
    def content_type(self, value: str | None) -> None:
        self._content_type = value

    @property
    def preview_uri(self) -> str | None:
        """URI of the preview; setting it replaces :attr:`preview` (``None`` removes it)."""
        return self.preview.uri if self.preview is not None else None

    @preview_uri.setter
    def preview_uri(self, value: str | None) -> None:
        self.preview = Preview(value) if value is not None else None

    @property
    def masks_source(self) -> dict[str, str]:
        """``{mask_id: uri}`` of every mask; setting it replaces every mask.

        Set a dict (ids kept), a list (ids ``"00"``, ``"01"``, ...), a single URI (id ``"00"``) or
        ``None`` (no masks).
        """
        return {m.id: m.uri for m in self.masks}

    @masks_source.setter
    def masks_source(self, value: Mapping[str, str] | Iterable[str] | str | None) -> None:
        """Replace every mask.

        Raises:
            ValidationError: ``value`` is not a string, a mapping, an iterable or None (the URIs
                and ids themselves are checked by :func:`validate`).
        """
        if value is None:
            self.masks = []
        elif isinstance(value, str):
            self.masks = [Mask("00", value)]
        elif isinstance(value, Mapping):
            self.masks = [Mask(mask_id, uri) for mask_id, uri in value.items()]
        elif isinstance(value, Iterable):
            self.masks = [Mask(f"{i:02d}", uri) for i, uri in enumerate(value)]
        else:
            raise ValidationError(
                f"{_describe(self)}: masks must be a URI, a list of URIs or a dict {{mask id: URI}}, "
                f"got {type(value).__name__}: {value!r}"
            )

    @property
    def mask_source(self) -> str | None:
        """URI of the first mask (sorted by id); setting a URI makes it the only mask, id ``"00"``."""
        first = self._first_mask_id()
        return None if first is None else self.masks_source[first]

    @mask_source.setter
    def mask_source(self, value: str | None) -> None:
        """Make ``value`` the only mask (None: no masks).

        Raises:
            ValidationError: as the :attr:`masks_source` setter.
        """
        self.masks_source = value

    def _first_mask_id(self) -> str | None:
        return min((m.id for m in self.masks), key=str, default=None)

    # -- annotations

    def add_annotation(
        self,
        poly2d_xy: Coordinates | None = None,
        poly3d_xyz: Coordinates | None = None,
        points2d_xy: Coordinates | None = None,
        points3d_xyz: Coordinates | None = None,
        box2d_xywh: Coordinates | None = None,
        box3d_xyzwhxyzwh: Coordinates | None = None,
        ellipse2d_xyrrt: Coordinates | None = None,
        mask_rgb: Coordinates | None = None,
        frame_class: Iterable[str] | str | None = None,
        id: str | None = None,
        labels: Iterable[str] | str | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        annotation: Annotation | None = None,
    ) -> list[Annotation]:
        """Add one ROI per shape given, all sharing ``id`` (32 hex digits generated when ``None``).

        Or add ``annotation`` (an :class:`~hds_s3.model.annotations.ImageAnnotation` or any
        :class:`~hds_s3.model.annotations.Annotation`), copied, instead of the other arguments.

        Args:
            poly2d_xy: Polygon: flat ``[x0, y0, ...]``, pairs ``[(x, y), ...]``, or a list of parts
                (each flat or pairs) for a complex polygon.
            poly3d_xyz: 3-D polygon: flat or ``(x, y, z)`` triples.
            points2d_xy: 2-D key points: flat or pairs.
            points3d_xyz: 3-D key points: flat or triples.
            box2d_xywh: ``(x, y, w, h)``, stored as its 4 corners.
            box3d_xyzwhxyzwh: 10 numbers: ``x, y, z, w, h`` of the front face then of the back face.
            ellipse2d_xyrrt: ``(cx, cy, rx, ry, theta)``.
            mask_rgb: ``(r, g, b)``: a ROI binding that pixel value of the first mask to ``labels``.
            frame_class: Labels of a frame-level label ROI of its own.
            id: ROI id shared by every ROI added.
            labels: Labels of every ROI added; with no shape they make a frame label.
            confidence: 0..1.
            metadata: Per-ROI metadata (JSON, no ``$`` or ``.`` in keys).
            annotation: A ready ROI (an ``ImageAnnotation``) to add instead of the arguments above.

        Returns:
            The ROIs added, in the order above.

        Raises:
            ValidationError: a malformed argument (named with the frame), a ``mask_rgb`` on a frame
                without a mask, or nothing to add; ``annotation`` given with other arguments or
                not an Annotation.
        """
        if annotation is not None:
            given = locals()
            rois = [_given_annotation(f"{_describe(self)}: add_annotation", annotation, given, [])]
            self.annotations.extend(rois)
            return rois
        rois = make_annotations(
            f"{_describe(self)}: add_annotation",
            poly2d_xy=poly2d_xy,
            poly3d_xyz=poly3d_xyz,
            points2d_xy=points2d_xy,
            points3d_xyz=points3d_xyz,
            box2d_xywh=box2d_xywh,
            box3d_xyzwhxyzwh=box3d_xyzwhxyzwh,
            ellipse2d_xyrrt=ellipse2d_xyrrt,
            mask_rgb=mask_rgb,
            frame_class=frame_class,
            id=id,
            labels=labels,
            confidence=confidence,
            metadata=metadata,
            mask_id=self._first_mask_id(),
        )
        self.annotations.extend(rois)
        return rois

    def get_annotations(
        self, id: str | None = None, index: int | None = None, label: str | None = None
    ) -> list[Annotation]:
        """The ROIs matching every filter given: position ``index``, ``id``, carrying ``label``."""
        return find_annotations(self.annotations, id=id, index=index, label=label)

    def get_all_annotations(self) -> list[Annotation]:
        """Every ROI of the frame (a new list)."""
        return list(self.annotations)

    def remove_annotation(self, index: int | None = None, id: str | None = None) -> Annotation | None:
        """Remove the ROI at ``index`` or the first with ``id`` (both: only if they agree).

        Returns:
            The removed ROI, or ``None`` if none matched.

        Raises:
            ValidationError: neither ``index`` nor ``id`` given.
        """
        return pop_annotation(self.annotations, _describe(self), index=index, id=id)

    def remove_annotations(
        self, id: str | None = None, labels: Iterable[str] | str | None = None
    ) -> list[Annotation]:
        """Remove the ROIs with ``id`` (if given) carrying any of ``labels`` (if given); neither = all.

        Returns:
            The removed ROIs.
        """
        return drop_annotations(self.annotations, id=id, labels=labels)

    # -- local copies

    def get_local_source(
        self, cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False
    ) -> str:
        """A local path to the source.

        Local paths and ``file://`` URIs are returned as they are; anything else is downloaded once
        (through fsspec) into ``cache_dir`` (default :func:`default_cache_dir`), named by a hash of
        the URI plus its extension, written atomically (safe across processes).

        Raises:
            ValidationError: the frame has no source URI.
            NotFoundError: the file does not exist.
            StorageError: the download failed.
        """
        uri = _uri(_describe(self), "source", self.source)
        return _local_copy(f"{_describe(self)}: source", uri, cache_dir, force_download)

    def get_local_preview_source(
        self, cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False
    ) -> str | None:
        """A local path to the preview (as :meth:`get_local_source`), or ``None`` without a preview.

        Raises:
            NotFoundError: the file does not exist.
            StorageError: the download failed.
        """
        if self.preview is None:
            return None
        uri = _uri(_describe(self), "preview_uri", self.preview.uri)
        return _local_copy(f"{_describe(self)}: preview", uri, cache_dir, force_download)

    def get_local_mask_source(
        self,
        mask_id: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        force_download: bool = False,
    ) -> str | None:
        """A local path to mask ``mask_id`` (default: the first id in sorted order).

        Returns ``None`` when the frame has no mask (see :meth:`get_local_source` for the cache).

        Raises:
            NotFoundError: no mask ``mask_id``, or the file does not exist.
            StorageError: the download failed.
        """
        masks = self.masks_source
        if mask_id is None:
            mask_id = self._first_mask_id()
            if mask_id is None:
                return None
        if mask_id not in masks:
            raise NotFoundError(f"{_describe(self)}: no mask {mask_id!r}; masks: {sorted(masks)}")
        uri = _uri(_describe(self), f"masks[{mask_id!r}]", masks[mask_id])
        return _local_copy(f"{_describe(self)}: mask {mask_id!r}", uri, cache_dir, force_download)

    def get_local_masks_source(
        self, cache_dir: str | os.PathLike[str] | None = None, force_download: bool = False
    ) -> dict[str, str]:
        """``{mask_id: local path}`` for every mask (see :meth:`get_local_mask_source`).

        Raises:
            NotFoundError: a file does not exist.
            StorageError: a download failed.
        """
        out: dict[str, str] = {}
        for mask_id in self.masks_source:
            path = self.get_local_mask_source(mask_id, cache_dir, force_download)
            assert path is not None
            out[mask_id] = path
        return out

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict (see :func:`to_frame_dict`).

        Raises:
            ValidationError: the frame is invalid (see :func:`validate`).
        """
        return to_frame_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SingleFrame:
        """Read a one-source frame dict (its source id is kept in :attr:`source_id`).

        The dict is as strict as for :func:`frame_from_dict`.

        Raises:
            ValidationError: ``data`` is not a frame dict (see :func:`frame_from_dict`) or has several
                sources (use :func:`frame_from_dict` or :meth:`FrameGroup.from_dict`).
        """
        fields, where = _frame_fields(data)
        return cls._read(fields, where)

    @classmethod
    def _read(cls, data: dict[str, Any], where: str) -> SingleFrame:
        sources = _sources_of(data, where)
        if len(sources) != 1:
            raise ValidationError(f"{where} has {len(sources)} sources; read it with frame_from_dict")
        frame = _member_from_dict(sources[0], where, "sources[0]")
        frame.annotations = _rois_of(data, where)
        for roi in frame.annotations:  # stored bound to the frame's one source, as the reference shows
            # (sources that are not a list of texts are left as given, for validation to name)
            bound = roi.sources
            if (
                isinstance(bound, list)
                and len(bound) == 1
                and isinstance(bound[0], str)
                and bound[0] == frame.source_id
            ):
                roi.sources = []
        _read_frame_fields(frame, data)
        return frame

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SingleFrame):
            return NotImplemented
        return vars(self) == vars(other)

    def __repr__(self) -> str:
        return (
            f"SingleFrame(id={self.id!r}, source={self.source!r}, "
            f"annotations={len(self.annotations)}, masks={len(self.masks)})"
        )


# ---------------------------------------------------------------------------- FrameGroup


class FrameGroup(dict[str, SingleFrame], _Provenance):
    """A frame with several sources: ``{source id: SingleFrame}`` (the reference's ``FrameGroup``).

    Each member describes one source (URI, size, preview, masks, ``source_meta``, ``source_timestamp``,
    ROIs); its key is the source id. Frame-level fields live on the group: ``id``, ``context_id``
    (default: the first member's URI), ``timestamp`` (default: the first member's source timestamp),
    ``metadata`` (alias ``meta``), ``meta_blob`` and ``annotations`` (ROIs not bound to exactly one
    member, e.g. from :meth:`add_global_annotation`).
    """

    def __init__(
        self,
        frames: Mapping[str, SingleFrame] | Iterable[tuple[str, SingleFrame]] | None = None,
        /,
        *,
        id: str | None = None,
        context_id: str | None = None,
        timestamp: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        meta_blob: Mapping[str, Any] | None = None,
        annotations: Iterable[Annotation | Mapping[str, Any]] | None = None,
        is_key_frame: bool | None = None,
        key_frame: str | None = None,
        video_gop: float | None = None,
    ) -> None:
        """Group ``frames`` (members may also be added later: ``group["rear"] = SingleFrame(...)``).

        Raises:
            ValidationError: a bad video field (see :class:`_Video`).
        """
        super().__init__(frames or ())
        self.id = id
        self.metadata: dict[str, Any] = _mapping(metadata)
        self.meta_blob: dict[str, Any] = _mapping(meta_blob)
        self.annotations: list[Annotation] = [
            a if isinstance(a, Annotation) else Annotation.from_dict(a) for a in annotations or ()
        ]
        self._context_id = context_id
        self._timestamp = timestamp
        self._saved: int | None = None
        self._saved_in_version: str | None = None
        self._updated_in_version: str | None = None
        if isinstance(self.meta_blob, dict):
            self._video_init(is_key_frame, key_frame, video_gop)

    def _first(self) -> SingleFrame | None:
        return next(iter(self.values()), None)

    @property
    def meta(self) -> dict[str, Any]:
        """Alias of :attr:`metadata`."""
        return self.metadata

    @meta.setter
    def meta(self, value: Mapping[str, Any] | None) -> None:
        self.metadata = _mapping(value)

    @property
    def context_id(self) -> str | None:
        """Grouping key; defaults to the first member's source URI."""
        first = self._first()
        return self._context_id if self._context_id is not None or first is None else first.source

    @context_id.setter
    def context_id(self, value: str | None) -> None:
        self._context_id = value

    @property
    def timestamp(self) -> int:
        """Frame timestamp in ms; defaults to the first member's source timestamp (0 if none)."""
        if self._timestamp is not None:
            return self._timestamp
        first = self._first()
        return 0 if first is None else first.source_timestamp

    @timestamp.setter
    def timestamp(self, value: int | None) -> None:
        self._timestamp = value

    def add_global_annotation(
        self,
        poly2d_xy: Coordinates | None = None,
        poly3d_xyz: Coordinates | None = None,
        points2d_xy: Coordinates | None = None,
        points3d_xyz: Coordinates | None = None,
        box2d_xywh: Coordinates | None = None,
        box3d_xyzwhxyzwh: Coordinates | None = None,
        ellipse2d_xyrrt: Coordinates | None = None,
        mask_rgb: Coordinates | None = None,
        frame_class: Iterable[str] | str | None = None,
        id: str | None = None,
        labels: Iterable[str] | str | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        annotation: Annotation | None = None,
    ) -> list[Annotation]:
        """Add one ROI per shape whose ``sources`` list every current member.

        One multi-source ROI, not a copy per member. Arguments as :meth:`SingleFrame.add_annotation`;
        ``mask_rgb`` binds to the first mask of the first member that has one. ``annotation`` (an
        :class:`~hds_s3.model.annotations.ImageAnnotation`, as the reference's
        ``add_global_annotation(annotation=...)``) is added, copied and bound to every member,
        instead of the other arguments.

        Returns:
            The ROIs added.

        Raises:
            ValidationError: the group has no member, or an argument is malformed.
        """
        where = f"{_describe(self)}: add_global_annotation"
        if not self:
            raise ValidationError(f"{where}: the group has no member yet; add its sources first")
        if annotation is not None:
            roi = _given_annotation(where, annotation, locals(), list(self))
            self.annotations.append(roi)
            return [roi]
        mask_id = next((m._first_mask_id() for m in self.values() if m.masks), None)
        rois = make_annotations(
            where,
            poly2d_xy=poly2d_xy,
            poly3d_xyz=poly3d_xyz,
            points2d_xy=points2d_xy,
            points3d_xyz=points3d_xyz,
            box2d_xywh=box2d_xywh,
            box3d_xyzwhxyzwh=box3d_xyzwhxyzwh,
            ellipse2d_xyrrt=ellipse2d_xyrrt,
            mask_rgb=mask_rgb,
            frame_class=frame_class,
            id=id,
            labels=labels,
            confidence=confidence,
            metadata=metadata,
            mask_id=mask_id,
            sources=list(self),
        )
        self.annotations.extend(rois)
        return rois

    def get_global_annotations(
        self, id: str | None = None, index: int | None = None, label: str | None = None
    ) -> list[Annotation]:
        """The group-level ROIs matching every filter given (as :meth:`SingleFrame.get_annotations`)."""
        return find_annotations(self.annotations, id=id, index=index, label=label)

    def get_all_global_annotations(self) -> list[Annotation]:
        """The group-level ROIs (a new list)."""
        return list(self.annotations)

    def get_all_annotations(self) -> list[Annotation]:
        """Every ROI: the group-level ones, then each member's."""
        return self.annotations + [roi for member in self.values() for roi in member.annotations]

    def remove_global_annotation(self, index: int | None = None, id: str | None = None) -> Annotation | None:
        """Remove a group-level ROI (as :meth:`SingleFrame.remove_annotation`).

        Raises:
            ValidationError: neither ``index`` nor ``id`` given.
        """
        return pop_annotation(self.annotations, _describe(self), index=index, id=id)

    def remove_global_annotations(
        self, id: str | None = None, labels: Iterable[str] | str | None = None
    ) -> list[Annotation]:
        """Remove group-level ROIs (as :meth:`SingleFrame.remove_annotations`)."""
        return drop_annotations(self.annotations, id=id, labels=labels)

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict (see :func:`to_frame_dict`).

        Raises:
            ValidationError: the frame is invalid (see :func:`validate`).
        """
        return to_frame_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameGroup:
        """Read a frame dict as a group (one member per source, even for a single source).

        The dict is as strict as for :func:`frame_from_dict`.

        Raises:
            ValidationError: ``data`` is not a frame dict (see :func:`frame_from_dict`), or two sources
                share an id.
        """
        fields, where = _frame_fields(data)
        return cls._read(fields, where)

    @classmethod
    def _read(cls, data: dict[str, Any], where: str) -> FrameGroup:
        group = cls()
        for i, src in enumerate(_sources_of(data, where)):
            if src["id"] in group:
                raise ValidationError(
                    f"{where}: sources[{i}].id: two sources have the id {preview(src['id'])}; "
                    "source ids are unique in a frame"
                )
            member = _member_from_dict(src, where, f"sources[{i}]")
            member.metadata = member.source_meta  # a member's metadata is its source's
            group[src["id"]] = member
        for roi in _rois_of(data, where):
            bound = roi.sources
            single = isinstance(bound, list) and len(bound) == 1 and isinstance(bound[0], str)
            if single and bound[0] in group:
                member = group[bound[0]]
                roi.sources = []
                member.annotations.append(roi)
            else:
                group.annotations.append(roi)
        _read_frame_fields(group, data)
        return group

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameGroup):
            return NotImplemented
        return dict.__eq__(self, other) and vars(self) == vars(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __repr__(self) -> str:
        return f"FrameGroup({dict.__repr__(self)}, id={self.id!r}, annotations={len(self.annotations)})"


Frame = SingleFrame | FrameGroup
"""A frame: one source (:class:`SingleFrame`) or several (:class:`FrameGroup`)."""


# ---------------------------------------------------------------------------- identity


def _members(frame: Frame, where: str) -> list[tuple[str, SingleFrame, str]]:
    """``(source id, member, field prefix)`` for every source, checking group members."""
    if isinstance(frame, SingleFrame):
        return [(_name(where, "source_id", "source", frame.source_id), frame, "")]
    if not isinstance(frame, FrameGroup):
        raise ValidationError(f"expected a SingleFrame or FrameGroup, got {type(frame).__name__}")
    if not frame:
        _fail(where, "sources", "the FrameGroup has no member; a frame needs at least one source")
    if len(frame) > MAX_SOURCES:
        _fail(where, "sources", f"{len(frame):,} members; a frame has at most {MAX_SOURCES} sources")
    out = []
    for key, member in frame.items():
        prefix = f"members[{preview(key, 40)}]"
        _name(where, prefix, "source", key)
        if not isinstance(member, SingleFrame):
            _fail(where, prefix, f"expected a SingleFrame, got {type(member).__name__}")
        for attr, value in (
            ("id", member.id),
            ("context_id", member._context_id),
            ("timestamp", member._timestamp),
            ("meta_blob", _given(member.meta_blob)),
        ):
            if value is not None:
                _fail(
                    where,
                    f"{prefix}.{attr}",
                    "is set on a member; a member is one source: set it on "
                    "the group (per-source metadata goes in metadata or source_meta, positions in "
                    "source_timestamp)",
                )
        out.append((key, member, prefix + "."))
    return out


def _given(metadata: object) -> object:
    """Metadata as set on a frame object, ``None`` when it is not (None or an empty dict)."""
    return None if metadata is None or (isinstance(metadata, Mapping) and not metadata) else metadata


def _frame_timestamp(frame: Frame, where: str) -> int:
    return _timestamp(where, "timestamp", frame.timestamp)


def frame_id(frame: Frame) -> str:
    """The frame's id: its explicit ``id``, else a stable 32-hex id from its sources and timestamp.

    See the module docstring for the exact formula: same sources (id and URI) and timestamp give the
    same id, so re-ingesting a frame updates it instead of duplicating it.

    Raises:
        ValidationError: the explicit id is not a valid name, or (no id) a source has no URI or the
            timestamp is not an int >= 0.
    """
    where = _describe(frame)
    if frame.id is not None:
        return _name(where, "id", "frame id", frame.id)
    sources = [
        (sid, _uri(where, f"{prefix}source", member.source)) for sid, member, prefix in _members(frame, where)
    ]
    return hash_id(sources, _frame_timestamp(frame, where))


# ---------------------------------------------------------------------------- to dict


def _preview_dict(where: str, what: str, preview: object) -> dict[str, Any] | None:
    if preview is None:
        return None
    if not isinstance(preview, Preview):
        _fail(where, what, f"expected a Preview, got {type(preview).__name__}")
    uri = _uri(where, f"{what}.uri", preview.uri)
    return {
        "uri": uri,
        "content_type": _content_type(where, f"{what}.content_type", preview.content_type, uri),
        "width": _dimension(where, f"{what}.width", preview.width),
        "height": _dimension(where, f"{what}.height", preview.height),
        "timestamp": _timestamp(where, f"{what}.timestamp", preview.timestamp),
    }


def _mask_dict(where: str, what: str, mask: object) -> dict[str, Any]:
    if not isinstance(mask, Mask):
        _fail(where, what, f"expected a Mask, got {type(mask).__name__}")
    uri = _uri(where, f"{what}.uri", mask.uri)
    return {
        "id": _name(where, f"{what}.id", "mask id", mask.id),
        "uri": uri,
        "content_type": _content_type(where, f"{what}.content_type", mask.content_type, uri),
        "width": _dimension(where, f"{what}.width", mask.width),
        "height": _dimension(where, f"{what}.height", mask.height),
        "timestamp": _timestamp(where, f"{what}.timestamp", mask.timestamp),
    }


def _source_dict(
    where: str, source_id: str, member: SingleFrame, prefix: str, budget: SizeBudget
) -> dict[str, Any]:
    uri = _uri(where, f"{prefix}source", member.source)
    masks = [_mask_dict(where, f"{prefix}masks[{i}]", m) for i, m in enumerate(member.masks)]
    seen: set[str] = set()
    for mask in masks:
        if mask["id"] in seen:
            _fail(
                where,
                f"{prefix}masks",
                f"two masks have the id {preview(mask['id'])}; mask ids must be unique",
            )
        seen.add(mask["id"])
    return {
        "id": source_id,
        "uri": uri,
        "content_type": _content_type(where, f"{prefix}content_type", member._content_type, uri),
        "width": _dimension(where, f"{prefix}width", member.width),
        "height": _dimension(where, f"{prefix}height", member.height),
        "timestamp": _timestamp(where, f"{prefix}source_timestamp", member.source_timestamp),
        "meta": _member_meta(where, prefix, member, budget)
        if prefix
        else check_metadata(f"{where}: source_meta", member.source_meta, budget=budget),
        "preview": _preview_dict(where, f"{prefix}preview", member.preview),
        "masks": masks,
    }


def _member_meta(where: str, prefix: str, member: SingleFrame, budget: SizeBudget) -> dict[str, Any]:
    """The ``meta`` of a group member's source: its ``source_meta`` and its ``metadata`` together.

    A member is one source, so what is set on its ``metadata`` (as the reference's "Updating
    FrameGroups" does) is that source's metadata. A member read back has both names on one dict.

    Raises:
        ValidationError: a key both hold with different values, or metadata that is not JSON.
    """
    meta = check_metadata(f"{where}: {prefix}source_meta", member.source_meta, budget=budget)
    if member.metadata is member.source_meta or not member.metadata:
        return meta
    extra = check_metadata(f"{where}: {prefix}metadata", member.metadata, budget=budget)
    for key, value in extra.items():
        if key in meta and meta[key] != value:
            _fail(
                where,
                f"{prefix}metadata.{key}",
                f"differs from source_meta[{key!r}]; a member's metadata is its source's metadata: "
                "set the key in one of them",
            )
        meta[key] = value
    return meta


def _roi_dicts(
    frame: Frame, where: str, members: list[tuple[str, SingleFrame, str]], budget: SizeBudget
) -> list[dict[str, Any]]:
    count = sum(len(member.annotations) for _, member, _ in members)
    if isinstance(frame, FrameGroup):
        count += len(frame.annotations)
    if count > MAX_ROIS:
        _fail(where, "rois", f"{count:,} ROIs; a frame has at most {MAX_ROIS:,}")
    entries: list[tuple[str, dict[str, Any]]] = []  # (field, roi dict with its final sources)
    for key, member, prefix in members:
        for i, roi in enumerate(member.annotations):
            field = f"{prefix}rois[{i}]"
            roi_dict = roi_to_dict(roi, f"{where}: {field}", budget=budget)
            if not roi_dict["sources"]:  # a ROI of a member (or of a SingleFrame) is of its source
                roi_dict["sources"] = [key]
            entries.append((field, roi_dict))
    if isinstance(frame, FrameGroup):
        entries += [
            (f"rois[{i}]", roi_to_dict(roi, f"{where}: rois[{i}]", budget=budget))
            for i, roi in enumerate(frame.annotations)
        ]
        if len(members) == 1:  # a frame of one source: its ROIs are of that source
            for _, roi_dict in entries:
                roi_dict["sources"] = roi_dict["sources"] or [members[0][0]]
        singles = [[key] for key, _, _ in members]
        entries = [e for key in singles for e in entries if e[1]["sources"] == key] + [
            e for e in entries if e[1]["sources"] not in singles
        ]
    masks = {key: {m.id for m in member.masks} for key, member, _ in members}
    for field, roi_dict in entries:
        bound = roi_dict["sources"]
        for source in bound:
            if source not in masks:
                known = list(masks)
                _fail(
                    where, f"{field}.sources", f"no source {preview(source)} in the frame; sources: {known}"
                )
        if len(set(bound)) != len(bound):
            _fail(where, f"{field}.sources", f"lists a source twice: {bound}")
        if roi_dict["mask"] is not None:
            available = set().union(*(masks[s] for s in (bound or masks)))
            if not any(masks.values()):
                _fail(
                    where,
                    f"{field}.mask",
                    "binds a mask value but the frame has no mask; set mask_source or masks_source",
                )
            if roi_dict["mask"]["id"] not in available:
                _fail(
                    where,
                    f"{field}.mask.id",
                    f"{preview(roi_dict['mask']['id'])} is not a mask of "
                    f"{bound or 'the frame'}; masks: {sorted(available)}",
                )
    return [roi_dict for _, roi_dict in entries]


def to_frame_dict(frame: Frame) -> dict[str, Any]:
    """The canonical, validated dict of a frame (see the module docstring).

    ``id`` is filled in by :func:`frame_id`. The dict shares nothing with the frame.

    Raises:
        ValidationError: as :func:`validate`.
    """
    where = _describe(frame)
    members = _members(frame, where)
    budget = frame_budget()  # metadata far over the frame's size is refused before it is all copied
    sources = [_source_dict(where, key, member, prefix, budget) for key, member, prefix in members]
    timestamp = _frame_timestamp(frame, where)
    context_id = frame.context_id
    if not isinstance(context_id, str) or not context_id:
        _fail(where, "context_id", f"must be a non-empty string, got {preview(context_id)}")
    out: dict[str, Any] = {
        "id": _name(where, "id", "frame id", frame.id)
        if frame.id is not None
        else hash_id([(s["id"], s["uri"]) for s in sources], timestamp),
        "context_id": check_text(f"{where}: context_id", context_id),
        "timestamp": timestamp,
        "sources": sources,
        "rois": _roi_dicts(frame, where, members, budget),
        "meta": check_metadata(f"{where}: metadata", frame.metadata, budget=budget),
        "meta_blob": check_metadata(f"{where}: meta_blob", frame.meta_blob, budget=budget),
    }
    _check_size(where, out)  # provenance does not count: a stored frame reads back within the limit
    if frame.saved is not None:
        out["saved"] = _timestamp(where, "saved", frame.saved)
    for attr in ("saved_in_version", "updated_in_version"):
        value = getattr(frame, attr)
        if value is not None:
            out[attr] = _name(where, attr, "version id", value)
    return out


def validate(frame: Frame) -> None:
    """Check everything :func:`to_frame_dict` needs.

    Raises:
        ValidationError: naming the frame (its id or first source URI) and the field: no source or an
            empty URI; a malformed ROI (odd 2-D coordinates, 3-D ones not in triples, non-numeric or
            non-finite numbers, negative box sizes, confidence outside 0..1, labels that are not
            strings); metadata that is not JSON or has ``$``/``.`` in a key (frame, source, ROI meta and
            meta_blob); width/height that are not positive ints; a timestamp that is not an int >= 0;
            duplicate mask ids; a ROI bound to a source or mask the frame does not have; a mask binding
            on a frame without masks; frame-level fields set on a group member; a frame past a limit
            of :mod:`hds_s3.model.limits` (more than 4 MiB of JSON, 256 sources, 10,000 ROIs, a
            string over 1 MiB, metadata nested deeper than 32 levels).
    """
    to_frame_dict(frame)


# ---------------------------------------------------------------------------- from dict


def expand_shorthand(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a frame dict with the single-source shorthand spelled out (see the module docstring).

    A dict without ``sources`` but with a top-level ``uri`` becomes one source with id ``"default"``
    made of the top-level :data:`SHORTHAND_SOURCE_KEYS`; a list of one source without an ``id`` gets
    the id ``"default"``. Anything else is returned as it is (the same object), to be checked by the
    reader. The result is a new dict that shares its values with ``data``.

    Raises:
        ValidationError: the dict has both ``uri`` and ``sources``.
    """
    if not isinstance(data, Mapping):
        return data
    sources = data.get("sources")
    if "uri" in data:
        if sources is not None:
            raise ValidationError(
                f"{frame_label(data)} has both a top-level uri and sources; give uri (one source, "
                'id "default") or sources (each with an id and a uri), not both'
            )
        source: dict[str, Any] = {"id": DEFAULT_SOURCE_ID}
        source.update((key, data[key]) for key in SHORTHAND_SOURCE_KEYS if key in data)
        frame: dict[str, Any] = {k: v for k, v in data.items() if k not in SHORTHAND_SOURCE_KEYS}
        frame["sources"] = [source]
        return frame
    if isinstance(sources, list) and len(sources) == 1:
        only = sources[0]
        if isinstance(only, Mapping) and "id" not in only:
            lone = dict(data)
            lone["sources"] = [{"id": DEFAULT_SOURCE_ID, **only}]
            return lone
    return data


def _frame_fields(data: object) -> tuple[dict[str, Any], str]:
    """A frame dict's fields, and ``frame '<id>'`` for messages.

    Aliases are spelled out, ignored fields left out and the shorthand expanded.

    Raises:
        ValidationError: ``data`` is not a dict, has a key that is no frame field, gives a field
            twice, or has both ``uri`` and ``sources``.
    """
    if not isinstance(data, Mapping):
        raise ValidationError(f"a frame dict must be a dict, got {type(data).__name__}: {preview(data)}")
    where = frame_label(data)
    known: tuple[str, ...] = (*FRAME_KEYS, *VIDEO_FIELDS)
    if "uri" in data:
        known = (*known, *(k for k in SHORTHAND_SOURCE_KEYS if k not in FRAME_KEYS))
    fields = strict_keys(where, data, "a frame", known, FRAME_ALIASES, FRAME_READ_ONLY)
    video = {k: fields.pop(k) for k in VIDEO_FIELDS if k in fields}
    if video:  # a video frame's fields at the top level (as a DataView returns them) live in meta_blob
        blob = fields.get("meta_blob")
        if blob is not None and not isinstance(blob, Mapping):
            raise ValidationError(f"{where}: meta_blob must be a dict, got {preview(blob)}")
        merged = dict(blob or {})
        held = merged.get(VIDEO_KEY)
        merged[VIDEO_KEY] = {**(held if isinstance(held, Mapping) else {}), **video}
        fields["meta_blob"] = merged
    return dict(expand_shorthand(fields)), where


def _sources_of(data: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ValidationError(
            f"{where} has no sources; give a uri (one source) or "
            'sources: [{"id": ..., "uri": ...}, ...] (see hds frames schema)'
        )
    for i, src in enumerate(sources):
        if not isinstance(src, Mapping):
            raise ValidationError(
                f"{where}: sources[{i}] must be a dict with an id and a uri, got {preview(src)}"
            )
        if "uri" not in src:
            raise ValidationError(f"{where}: sources[{i}] has no uri: {preview(src)}")
        if "id" not in src:
            raise ValidationError(
                f"{where}: sources[{i}] has no id; a frame of several sources names "
                f'each (e.g. "front", "rear"), only a lone source may leave it out: {preview(src)}'
            )
        if not isinstance(src["id"], str):
            raise ValidationError(
                f"{where}: sources[{i}].id: a source id is a name (text), got "
                f"{type(src['id']).__name__}: {preview(src['id'])}"
            )
    return sources


def _rois_of(data: Mapping[str, Any], where: str) -> list[Annotation]:
    rois = data.get("rois")
    if rois is None:
        return []
    if not isinstance(rois, list):
        raise ValidationError(f"{where}: rois must be a list, got {type(rois).__name__}")
    return [Annotation.from_dict(roi, where=f"{where}: rois[{i}]") for i, roi in enumerate(rois)]


def _or_zero(value: object) -> object:
    return 0 if value is None else value


def _member_from_dict(given: Mapping[str, Any], where: str, field: str) -> SingleFrame:
    src = strict_keys(f"{where}: {field}", given, "a source", SOURCE_KEYS)
    frame = SingleFrame(
        source=src["uri"],
        width=src.get("width"),
        height=src.get("height"),
        content_type=src.get("content_type"),
        source_meta=_copy_meta(src.get("meta")),
        source_id=src["id"],
        source_timestamp=_or_zero(src.get("timestamp")),  # type: ignore[arg-type]  # checked later
    )
    preview_ = src.get("preview")
    masks = src.get("masks")
    if preview_ is not None:
        if not (isinstance(preview_, Mapping) and "uri" in preview_):
            raise ValidationError(f"{where}: {field}.preview: a preview needs a uri, got {preview(preview_)}")
        preview_ = strict_keys(f"{where}: {field}.preview", preview_, "a preview", PREVIEW_KEYS)
    if masks is None:
        masks = []
    if not isinstance(masks, list) or not all(
        isinstance(m, Mapping) and "id" in m and "uri" in m for m in masks
    ):
        raise ValidationError(f"{where}: {field}.masks must be a list of {{id, uri}} dicts: {preview(masks)}")
    masks = [strict_keys(f"{where}: {field}.masks[{i}]", m, "a mask", MASK_KEYS) for i, m in enumerate(masks)]
    if preview_ is not None:
        frame.preview = Preview(
            uri=preview_["uri"],
            content_type=preview_.get("content_type"),
            width=preview_.get("width"),
            height=preview_.get("height"),
            timestamp=_or_zero(preview_.get("timestamp")),  # type: ignore[arg-type]
        )
    frame.masks = [
        Mask(
            id=m["id"],
            uri=m["uri"],
            content_type=m.get("content_type"),
            width=m.get("width"),
            height=m.get("height"),
            timestamp=_or_zero(m.get("timestamp")),  # type: ignore[arg-type]
        )
        for m in masks
    ]
    return frame


def _copy_meta(value: Any) -> Any:
    """A deep copy of a metadata dict (``None`` gives ``{}``); anything else is kept for validation."""
    return {} if value is None else copy_json(value)


def _read_frame_fields(frame: Frame, data: Mapping[str, Any]) -> None:
    frame.id = data.get("id")
    frame._context_id = data.get("context_id")
    frame._timestamp = data.get("timestamp")
    frame.metadata = _copy_meta(data.get("meta"))
    frame.meta_blob = _copy_meta(data.get("meta_blob"))
    frame._saved = data.get("saved")
    frame._saved_in_version = data.get("saved_in_version")
    frame._updated_in_version = data.get("updated_in_version")


def frame_from_dict(data: Mapping[str, Any]) -> Frame:
    """Read a frame dict into a frame object.

    One source with id ``"default"`` gives a :class:`SingleFrame`, anything else a
    :class:`FrameGroup`. The single-source shorthand is accepted (:func:`expand_shorthand`).
    Provenance (``saved``, ...) is kept. Nothing is shared with ``data``; only the structure is
    checked (:func:`validate` checks the rest).

    The dict is strict: a key that is not a field (:data:`FRAME_KEYS`, :data:`SOURCE_KEYS`,
    :data:`PREVIEW_KEYS`, :data:`MASK_KEYS`, :data:`~hds_s3.model.annotations.ROI_KEYS`) is refused,
    naming it and the field it may have meant. Other spellings the reference uses are taken
    (``metadata`` for a frame's or a ROI's ``meta``, ``label`` for ``labels``), and the fields a
    DataView adds to what it returns (``dataset``, a ROI's ``label_num``) are ignored.

    Raises:
        ValidationError: ``data`` is not a frame dict (not a dict, an unknown key, no sources, a
            source without uri, a source without id among several, both ``uri`` and ``sources``,
            two sources with one id). The limits are checked by :func:`to_frame_dict`, so a frame
            stored before a limit was set still reads.
    """
    fields, where = _frame_fields(data)
    sources = _sources_of(fields, where)
    if len(sources) == 1 and sources[0]["id"] == DEFAULT_SOURCE_ID:
        return SingleFrame._read(fields, where)
    return FrameGroup._read(fields, where)


from_frame_dict = frame_from_dict
"""Alias of :func:`frame_from_dict`."""


__all__ = [
    "DEFAULT_SOURCE_ID",
    "SHORTHAND_SOURCE_KEYS",
    "VIDEO_FIELDS",
    "Annotation",
    "ImageAnnotation",
    "Frame",
    "FrameGroup",
    "Mask",
    "Preview",
    "SingleFrame",
    "default_cache_dir",
    "expand_shorthand",
    "frame_from_dict",
    "frame_id",
    "from_frame_dict",
    "guess_content_type",
    "local_path",
    "to_frame_dict",
    "validate",
]
