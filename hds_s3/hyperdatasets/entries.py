"""``DataEntry`` / ``DataSubEntry`` and their image variants: the new API's frames, as hds_s3 frames.

An entry is a frame, a sub-entry one of its sources, so a dataset written with these classes reads
with ``SingleFrame`` / ``FrameGroup`` and the other way round:

* the entry's id is the frame's ``id`` (a new uuid4 hex when not given), its metadata the frame's
  ``meta``; a sub-entry's name is its source's ``id``, its ``source`` / ``preview_source`` the
  source's ``uri`` / ``preview.uri``, its metadata the source's ``meta`` (where a FrameGroup
  member's ``metadata`` is too; the key ``hash`` there holds the SHA-256 of uploaded files);
* an image sub-entry's width, height, timestamp and masks are the source's; the first non-empty
  ``context_id`` of its image sub-entries is the frame's;
* ROIs: an image sub-entry's are bound to its source, a global annotation to every source, an
  entry's own (``DataEntry.add_annotation``) to none;
* the classes (for subclasses such as a ``QADataEntry``) are kept in ``meta_blob["hyperdataset"]``,
  not in the searchable metadata; reading finds a loaded subclass of that name (never importing a
  module named by stored data), else the base class.

Where the reference's client is buggy, these are not: ``add_annotation`` has defaults, a malformed
shape is refused (:class:`~hds_s3.errors.ValidationError`) instead of skipped, ``frame_class`` labels
are kept, ``set_masks_source(dict)`` keeps the ids, and a global annotation is one ROI over every
source, read back once (the reference duplicates it per sub-entry, and again on each save).
"""

from __future__ import annotations

import copy
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from hds_s3.errors import HdsError, ValidationError
from hds_s3.model.annotations import make_annotations, roi_to_dict
from hds_s3.model.frames import SingleFrame, expand_shorthand
from hds_s3.model.names import preview

CLASS_KEY = "hyperdataset"
"""The ``meta_blob`` key naming an entry's class and its sub-entries' classes."""
HASH_KEY = "hash"
"""The key of a source's metadata holding the SHA-256 of its uploaded files."""

_T = TypeVar("_T")


def _find_subclass(name: object, base: type[_T]) -> type[_T] | None:
    if not isinstance(name, str) or not name:
        return None
    if base.__name__ == name:
        return base
    seen: set[type] = set()
    todo: deque[type] = deque(base.__subclasses__())
    while todo:
        cls = todo.popleft()
        if cls in seen:
            continue
        seen.add(cls)
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None


def _local(uri: str | None, what: str, raise_on_error: bool, force_download: bool) -> str | None:
    if not uri:
        return None
    try:
        return SingleFrame(source=uri).get_local_source(force_download=force_download)
    except HdsError as exc:
        if raise_on_error:
            raise ValidationError(f"Failed downloading file: {uri} ({what}: {exc})") from exc
        return None


class DataSubEntry:
    """One source of an entry: a name (the source id), a URI, a preview URI and metadata."""

    def __init__(
        self,
        name: str,
        source: str | None,
        preview_source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Describe the source (checked when its entry is registered)."""
        self._name = name
        self._source = source
        self._preview_source = preview_source
        self._metadata: dict[str, Any] = dict(metadata or {})
        self._local_sources_upload_destination: str | None = None

    @property
    def name(self) -> str:
        """The sub-entry's name: its source's id, unique in its entry."""
        return self._name

    @property
    def source(self) -> str | None:
        """The source URI."""
        return self._source

    @property
    def preview_source(self) -> str | None:
        """The preview URI, if any."""
        return self._preview_source

    @property
    def metadata(self) -> dict[str, Any]:
        """The source's metadata (the key ``hash`` holds uploaded files' SHA-256)."""
        return self._metadata

    def get_source(self, source_field: str = "source") -> str | None:
        """The URI of ``source`` or ``preview_source`` (None for any other field)."""
        if source_field == "source":
            return self._source
        if source_field == "preview_source":
            return self._preview_source
        return None

    def set_source(self, source_field: str, uri: str | None) -> None:
        """Set the URI of ``source`` or ``preview_source``.

        Raises:
            ValidationError: another field.
        """
        if source_field == "source":
            self._source = uri
        elif source_field == "preview_source":
            self._preview_source = uri
        else:
            raise ValidationError(
                f"set_source: source_field is 'source' or 'preview_source', got {source_field!r}"
            )

    def get_hash(self, source_field: str = "source") -> str | None:
        """The SHA-256 of the file uploaded for ``source_field`` (set by ``hash_sources``), if known."""
        hashes = self._metadata.get(HASH_KEY)
        value = hashes.get(source_field) if isinstance(hashes, dict) else None
        return value if isinstance(value, str) else None

    def set_local_sources_upload_destination(self, local_sources_upload_destination: str | None) -> None:
        """Upload this sub-entry's local files there (when ``add_data_entries`` is given no destination)."""
        self._local_sources_upload_destination = local_sources_upload_destination

    def get_local_source(self, raise_on_error: bool = False, force_download: bool = False) -> str | None:
        """A local path to the source (downloaded once into the cache), or None.

        Raises:
            ValidationError: the download failed and ``raise_on_error`` is set.
        """
        return _local(self._source, f"sub-entry {self._name!r}", raise_on_error, force_download)

    def get_local_preview_source(
        self, raise_on_error: bool = False, force_download: bool = False
    ) -> str | None:
        """A local path to the preview, or None.

        Raises:
            ValidationError: the download failed and ``raise_on_error`` is set.
        """
        return _local(
            self._preview_source, f"sub-entry {self._name!r} preview", raise_on_error, force_download
        )

    # -- the source dict

    def _source_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self._name, "uri": self._source}
        if self._metadata:
            out["meta"] = copy.deepcopy(self._metadata)
        if self._preview_source:
            out["preview"] = {"uri": self._preview_source}
        return out

    def _read(self, src: Mapping[str, Any]) -> None:
        meta = src.get("meta")
        self._metadata = copy.deepcopy(dict(meta)) if isinstance(meta, Mapping) else {}
        prev = src.get("preview")
        self._preview_source = prev.get("uri") if isinstance(prev, Mapping) else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, source={self._source!r}, "
            f"preview={self._preview_source!r}, metadata_keys={sorted(self._metadata)})"
        )


class DataEntry:
    """A frame of the new API: an id, metadata, sub-entries (its sources) and frame-level annotations.

    Subclass it freely: the class is kept with the frame and found again when it is read (see the
    module docstring).
    """

    def __init__(self, data_entry_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """A new entry (id: a new uuid4 hex when not given)."""
        self._id = data_entry_id or uuid.uuid4().hex
        self._metadata: dict[str, Any] = dict(metadata or {})
        self._sub_entries: dict[str, DataSubEntry] = {}
        self._annotations: list[dict[str, Any]] = []

    @property
    def id(self) -> str:
        """The entry's id (the frame's)."""
        return self._id

    @property
    def metadata(self) -> dict[str, Any]:
        """The entry's (the frame's) searchable metadata."""
        return self._metadata

    @property
    def sub_data_entries(self) -> list[DataSubEntry]:
        """The sub-entries, in the order added."""
        return list(self._sub_entries.values())

    def __iter__(self) -> Iterator[DataSubEntry]:
        return iter(list(self._sub_entries.values()))

    def add_sub_entries(self, sub_entries: Iterable[DataSubEntry]) -> None:
        """Add sub-entries by name (a sub-entry of a name already there replaces it).

        Raises:
            ValidationError: an item is not a DataSubEntry.
        """
        items = list(sub_entries)
        for sub in items:
            if not isinstance(sub, DataSubEntry):
                raise ValidationError(
                    f"entry {self._id!r}: add_sub_entries takes DataSubEntry objects, got {preview(sub)}"
                )
        self._sub_entries.update((sub.name, sub) for sub in items)

    def set_vector(self, vector: Sequence[float], metadata_field: str) -> None:
        """Keep an embedding in the entry's metadata (``metadata[metadata_field] = list(vector)``).

        Raises:
            ValidationError: not a list of finite numbers, or not a field name.
        """
        probe = SingleFrame(source="-", metadata=self._metadata)
        probe.set_vector(vector, metadata_field)
        self._metadata = probe.metadata

    def add_annotation(
        self,
        id: str | None = None,
        labels: Iterable[str] | str | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Add a frame-level annotation (labels, no geometry); returns its index.

        Raises:
            ValidationError: bad labels, confidence or metadata, or no labels.
        """
        (roi,) = make_annotations(
            f"entry {self._id!r}: add_annotation",
            id=id,
            labels=labels,
            confidence=confidence,
            metadata=metadata,
        )
        self._annotations.append(roi_to_dict(roi, f"entry {self._id!r}"))
        return len(self._annotations) - 1

    def get_all_annotations(self) -> list[dict[str, Any]]:
        """The entry's own annotations (ROI dicts)."""
        return list(self._annotations)

    def get_annotations(self, id: str | None = None, index: int | None = None) -> list[dict[str, Any]]:
        """The entry's annotations at ``index`` or with ``id`` (all when neither)."""
        return _select(self._annotations, id, index)

    def remove_annotation(self, index: int | None = None, **kwargs: Any) -> dict[str, Any] | None:
        """Remove the annotation at ``index`` (or the first with ``id=``); return it, or None.

        Raises:
            ValidationError: neither ``index`` nor ``id`` given.
        """
        return _pop(self._annotations, index, kwargs.get("id"), f"entry {self._id!r}")

    def remove_annotations(
        self, id: str | None = None, label: str | None = None, labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Remove the annotations with ``id`` carrying any of ``label`` / ``labels``; return them."""
        return _drop(self._annotations, id, label, labels)

    # -- frames

    def to_api_object(self) -> dict[str, Any]:
        """The frame dict this entry is stored as (see the module docstring)."""
        classes = {"entry_class": type(self).__name__}
        subs = {s.name: type(s).__name__ for s in self._sub_entries.values()}
        if subs:
            classes["sub_entry_classes"] = subs  # type: ignore[assignment]
        return {
            "id": self._id,
            "meta": copy.deepcopy(self._metadata),
            "meta_blob": {CLASS_KEY: classes},
            "sources": [s._source_dict() for s in self._sub_entries.values()],
            "rois": copy.deepcopy(self._annotations),
        }

    to_frame_dict = to_api_object

    @classmethod
    def from_api_object(cls, frame: Mapping[str, Any]) -> DataEntry:
        """Read a frame dict (as a DataView or a version gives it) into an entry of its class.

        The class is the one kept with the frame when it is a loaded subclass of ``cls`` (else
        ``cls``); called on :class:`DataEntry`, a frame of image sources (a size, preview or mask)
        reads as a :class:`~hds_s3.hyperdatasets.entries.DataEntryImage`.

        Raises:
            ValidationError: ``frame`` is not a frame dict.
        """
        if not isinstance(frame, Mapping):
            raise ValidationError(f"from_api_object takes a frame dict, got {preview(frame)}")
        data = dict(expand_shorthand(frame))
        blob = data.get("meta_blob") if isinstance(data.get("meta_blob"), Mapping) else {}
        marker = blob.get(CLASS_KEY) if isinstance(blob, Mapping) else None
        marker = marker if isinstance(marker, Mapping) else {}
        target = _find_subclass(marker.get("entry_class"), cls) or cls
        if target is DataEntry and _looks_like_image(data):
            from hds_s3.hyperdatasets.images import DataEntryImage

            target = DataEntryImage
        entry = target.__new__(target)
        DataEntry.__init__(entry, str(data.get("id") or uuid.uuid4().hex), data.get("meta") or {})
        subs = marker.get("sub_entry_classes")
        entry._read(data, subs if isinstance(subs, Mapping) else {})
        return entry

    from_frame_dict = from_api_object

    def _read(self, data: Mapping[str, Any], classes: Mapping[str, Any]) -> None:
        for src in data.get("sources") or ():
            if not isinstance(src, Mapping):
                continue
            sub_cls = _find_subclass(classes.get(str(src.get("id"))), DataSubEntry) or DataSubEntry
            sub = sub_cls.__new__(sub_cls)
            DataSubEntry.__init__(sub, str(src.get("id")), src.get("uri"))
            sub._read(src)
            self._sub_entries[sub.name] = sub
        self._annotations = [copy.deepcopy(dict(r)) for r in data.get("rois") or () if isinstance(r, Mapping)]

    def _has_upload_destination(self) -> bool:
        return any(s._local_sources_upload_destination for s in self._sub_entries.values())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(id={self._id!r}, metadata_keys={sorted(self._metadata)}, "
            f"sub_entries={sorted(self._sub_entries)})"
        )


def _looks_like_image(data: Mapping[str, Any]) -> bool:
    for src in data.get("sources") or ():
        if isinstance(src, Mapping) and (
            src.get("width") is not None
            or src.get("height") is not None
            or src.get("preview")
            or src.get("masks")
        ):
            return True
    return False


def _roi_id(roi: Mapping[str, Any]) -> object:
    return roi.get("id")


def _select(rois: list[dict[str, Any]], id: str | None, index: int | None) -> list[dict[str, Any]]:
    if index is not None:
        return [rois[index]] if -len(rois) <= index < len(rois) else []
    if id is not None:
        return [r for r in rois if _roi_id(r) == id]
    return list(rois)


def _pop(rois: list[dict[str, Any]], index: int | None, id: str | None, where: str) -> dict[str, Any] | None:
    if index is None and id is None:
        raise ValidationError(f"{where}: remove_annotation needs index or id=")
    if index is not None:
        return rois.pop(index) if -len(rois) <= index < len(rois) else None
    for i, roi in enumerate(rois):
        if _roi_id(roi) == id:
            return rois.pop(i)
    return None


def _drop(
    rois: list[dict[str, Any]], id: str | None, label: str | None, labels: Sequence[str] | None
) -> list[dict[str, Any]]:
    wanted = set(labels or ()) | ({label} if label is not None else set())
    removed = [
        r
        for r in rois
        if (id is None or _roi_id(r) == id)
        and (not wanted or wanted & set(r.get("labels") or r.get("label") or ()))
    ]
    rois[:] = [r for r in rois if not any(r is x for x in removed)]
    return removed


__all__ = ["CLASS_KEY", "HASH_KEY", "DataEntry", "DataSubEntry"]
