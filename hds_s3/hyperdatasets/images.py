"""``DataEntryImage`` / ``DataSubEntryImage``: entries of image sources (size, timestamp, masks, ROIs).

See :mod:`hds_s3.hyperdatasets.entries` for how they map onto frames.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hds_s3.errors import ValidationError
from hds_s3.hyperdatasets.entries import DataEntry, DataSubEntry, _drop, _local, _pop, _select
from hds_s3.model.annotations import make_annotations, roi_to_dict
from hds_s3.model.names import preview

Values = Sequence[Any]


class DataSubEntryImage(DataSubEntry):
    """An image source: URI, preview, size, timestamp (ms, video), context id, masks and its ROIs."""

    def __init__(
        self,
        name: str = "image_entry_0",
        source: str | None = None,
        preview_source: str | None = None,
        width: int | None = None,
        height: int | None = None,
        timestamp: int | None = None,
        context_id: str | None = None,
        masks_source: Sequence[str] | Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Describe the image (checked when its entry is registered).

        Raises:
            ValidationError: ``masks_source`` is neither a list of URIs nor a dict of them.
        """
        super().__init__(name=name, source=source, preview_source=preview_source, metadata=metadata)
        self.width = width
        self.height = height
        self.timestamp = timestamp
        self.context_id = context_id
        self._masks_source: dict[str, str] = {}
        self._annotations: list[dict[str, Any]] = []
        if masks_source:
            self.set_masks_source(masks_source)

    # -- masks

    def set_mask_source(self, uri: str | None) -> str | None:
        """Add one mask with the next free id (``"00"``, ``"01"``, ...); return the id (None for no URI)."""
        if not uri:
            return None
        i = 0
        while f"{i:02d}" in self._masks_source:
            i += 1
        self._masks_source[f"{i:02d}"] = str(uri)
        return f"{i:02d}"

    def set_masks_source(self, masks_source: Sequence[str] | Mapping[str, str] | None = None) -> None:
        """Replace the masks: a dict keeps its ids (the reference renumbers them), a list gets ``"00"``...

        Raises:
            ValidationError: neither a list of URIs, a dict of them nor None.
        """
        if masks_source is None:
            self._masks_source = {}
        elif isinstance(masks_source, Mapping):
            self._masks_source = {str(k): str(v) for k, v in masks_source.items()}
        elif isinstance(masks_source, (list, tuple)):
            self._masks_source = {f"{i:02d}": str(u) for i, u in enumerate(masks_source)}
        else:
            raise ValidationError(
                f"sub-entry {self.name!r}: masks_source is a list of URIs or a dict {{id: URI}}, "
                f"got {preview(masks_source)}"
            )

    def get_masks_source_dict(self) -> dict[str, str]:
        """``{mask id: URI}`` (a copy)."""
        return dict(self._masks_source)

    def get_mask_source(self, mask_id: str | None = None) -> str | None:
        """The URI of mask ``mask_id`` (default: the first id in sorted order), or None."""
        if not self._masks_source:
            return None
        return self._masks_source.get(mask_id if mask_id is not None else sorted(self._masks_source)[0])

    def get_local_mask_source(
        self, raise_on_error: bool = False, mask_id: str | None = None, force_download: bool = False
    ) -> str | None:
        """A local path to a mask (see :meth:`get_mask_source`), or None.

        Raises:
            ValidationError: the download failed and ``raise_on_error`` is set.
        """
        return _local(
            self.get_mask_source(mask_id), f"sub-entry {self.name!r} mask", raise_on_error, force_download
        )

    def get_local_masks_source(
        self, raise_on_error: bool = False, force_download: bool = False
    ) -> dict[str, str | None]:
        """``{mask id: local path or None}`` for every mask.

        Raises:
            ValidationError: a download failed and ``raise_on_error`` is set.
        """
        return {
            mid: _local(uri, f"sub-entry {self.name!r} mask {mid!r}", raise_on_error, force_download)
            for mid, uri in sorted(self._masks_source.items())
        }

    # -- annotations

    def add_annotation(
        self,
        poly2d_xy: Values | None = None,
        poly3d_xyz: Values | None = None,
        points2d_xy: Values | None = None,
        points3d_xyz: Values | None = None,
        box2d_xywh: Values | None = None,
        box3d_xyzwhxyzwh: Values | None = None,
        ellipse2d_xyrrt: Values | None = None,
        mask_rgb: Values | None = None,
        frame_class: Iterable[str] | str | None = None,
        id: str | None = None,
        labels: Iterable[str] | str | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Add one ROI per shape (all sharing ``id``) bound to this source; return their indexes.

        Shapes as ``SingleFrame.add_annotation``; ``mask_rgb`` binds to the first mask.

        Raises:
            ValidationError: a malformed shape (the reference skips it silently), bad labels,
                confidence or metadata, or nothing to add.
        """
        return self._add(
            [self.name],
            {
                "poly2d_xy": poly2d_xy,
                "poly3d_xyz": poly3d_xyz,
                "points2d_xy": points2d_xy,
                "points3d_xyz": points3d_xyz,
                "box2d_xywh": box2d_xywh,
                "box3d_xyzwhxyzwh": box3d_xyzwhxyzwh,
                "ellipse2d_xyrrt": ellipse2d_xyrrt,
                "mask_rgb": mask_rgb,
                "frame_class": frame_class,
                "id": id,
                "labels": labels,
                "confidence": confidence,
                "metadata": metadata,
            },
            self._annotations,
            self.get_mask_source() and sorted(self._masks_source)[0],
        )

    def _add(
        self, sources: list[str], args: dict[str, Any], into: list[dict[str, Any]], mask_id: str | None
    ) -> list[int]:
        where = f"sub-entry {self.name!r}: add_annotation"
        rois = make_annotations(where, **args, mask_id=mask_id or None, sources=sources)
        start = len(into)
        into.extend(roi_to_dict(r, where) for r in rois)
        return list(range(start, len(into)))

    def get_all_annotations(self) -> list[dict[str, Any]]:
        """The ROI dicts of this source."""
        return list(self._annotations)

    def get_annotations(self, id: str | None = None, index: int | None = None) -> list[dict[str, Any]]:
        """The ROIs of this source at ``index`` or with ``id`` (all when neither)."""
        return _select(self._annotations, id, index)

    def remove_annotation(self, index: int | None = None, **kwargs: Any) -> dict[str, Any] | None:
        """Remove this source's ROI at ``index`` (or the first with ``id=``); return it, or None.

        Raises:
            ValidationError: neither ``index`` nor ``id`` given.
        """
        return _pop(self._annotations, index, kwargs.get("id"), f"sub-entry {self.name!r}")

    def remove_annotations(
        self, id: str | None = None, label: str | None = None, labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Remove this source's ROIs with ``id`` carrying any of ``label`` / ``labels``; return them."""
        return _drop(self._annotations, id, label, labels)

    # -- the source dict

    def _source_dict(self) -> dict[str, Any]:
        out = super()._source_dict()
        for key in ("width", "height", "timestamp"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self._masks_source:
            out["masks"] = [{"id": k, "uri": v} for k, v in sorted(self._masks_source.items())]
        return out

    def _read(self, src: Mapping[str, Any]) -> None:
        super()._read(src)
        self.width, self.height, self.timestamp = src.get("width"), src.get("height"), src.get("timestamp")
        self.context_id = None
        masks = src.get("masks") or []
        self._masks_source = {
            str(m["id"]): m["uri"] for m in masks if isinstance(m, Mapping) and m.get("uri")
        }
        self._annotations = []

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, source={self.source!r}, "
            f"preview={self.preview_source!r}, "
            f"size=({self.width},{self.height}), masks={len(self._masks_source)}, "
            f"metadata_keys={sorted(self.metadata)})"
        )


class DataEntryImage(DataEntry):
    """An entry of image sub-entries, with global annotations over all of them."""

    def __init__(self, data_entry_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        """A new image entry."""
        super().__init__(data_entry_id=data_entry_id, metadata=metadata)
        self._global_annotations: list[dict[str, Any]] = []

    def _images(self) -> list[DataSubEntryImage]:
        return [s for s in self.sub_data_entries if isinstance(s, DataSubEntryImage)]

    def add_global_annotation(
        self,
        poly2d_xy: Values | None = None,
        poly3d_xyz: Values | None = None,
        points2d_xy: Values | None = None,
        points3d_xyz: Values | None = None,
        box2d_xywh: Values | None = None,
        box3d_xyzwhxyzwh: Values | None = None,
        ellipse2d_xyrrt: Values | None = None,
        mask_rgb: Values | None = None,
        frame_class: Iterable[str] | str | None = None,
        id: str | None = None,
        labels: Iterable[str] | str | None = None,
        confidence: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Add one ROI per shape over every sub-entry (one multi-source ROI, not a copy per source).

        Returns their indexes among :meth:`get_all_global_annotations`' own ones.

        Raises:
            ValidationError: no sub-entry yet, or an argument as ``DataSubEntryImage.add_annotation``.
        """
        names = [s.name for s in self.sub_data_entries]
        if not names:
            raise ValidationError(f"entry {self.id!r}: add_global_annotation needs its sub-entries first")
        first_mask = next((sorted(s._masks_source)[0] for s in self._images() if s._masks_source), None)
        helper = DataSubEntryImage(name=f"entry {self.id!r}")
        return helper._add(
            names,
            {
                "poly2d_xy": poly2d_xy,
                "poly3d_xyz": poly3d_xyz,
                "points2d_xy": points2d_xy,
                "points3d_xyz": points3d_xyz,
                "box2d_xywh": box2d_xywh,
                "box3d_xyzwhxyzwh": box3d_xyzwhxyzwh,
                "ellipse2d_xyrrt": ellipse2d_xyrrt,
                "mask_rgb": mask_rgb,
                "frame_class": frame_class,
                "id": id,
                "labels": labels,
                "confidence": confidence,
                "metadata": metadata,
            },
            self._global_annotations,
            first_mask,
        )

    def get_all_global_annotations(self) -> list[dict[str, Any]]:
        """Every ROI: the global ones, then each sub-entry's."""
        return list(self._global_annotations) + [r for s in self._images() for r in s.get_all_annotations()]

    def get_global_annotations(self, id: str | None = None, index: int | None = None) -> list[dict[str, Any]]:
        """The ROIs (as :meth:`get_all_global_annotations`) at ``index`` or with ``id``."""
        return _select(self.get_all_global_annotations(), id, index)

    def remove_global_annotation(self, index: int | None = None, **kwargs: Any) -> dict[str, Any] | None:
        """Remove a global ROI at ``index`` (or the first ROI anywhere with ``id=``); return it.

        Raises:
            ValidationError: neither ``index`` nor ``id`` given.
        """
        found = _pop(self._global_annotations, index, kwargs.get("id"), f"entry {self.id!r}")
        if found is None and kwargs.get("id") is not None:
            for sub in self._images():
                found = sub.remove_annotation(id=kwargs["id"])
                if found is not None:
                    break
        return found

    def remove_global_annotations(
        self, id: str | None = None, label: str | None = None, labels: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Remove the ROIs anywhere in the entry with ``id`` carrying any of ``label`` / ``labels``."""
        out = _drop(self._global_annotations, id, label, labels)
        for sub in self._images():
            out.extend(sub.remove_annotations(id=id, label=label, labels=labels))
        return out

    def to_api_object(self) -> dict[str, Any]:
        """The frame dict (see :mod:`hds_s3.hyperdatasets.entries`)."""
        out = super().to_api_object()
        images = self._images()
        rois = [copy.deepcopy(r) for s in images for r in s.get_all_annotations()]
        out["rois"] = rois + copy.deepcopy(self._global_annotations) + out["rois"]
        context = next((s.context_id for s in images if s.context_id), None)
        if context is not None:
            out["context_id"] = context
        return out

    to_frame_dict = to_api_object

    def _read(self, data: Mapping[str, Any], classes: Mapping[str, Any]) -> None:
        from hds_s3.hyperdatasets.entries import _find_subclass

        self._global_annotations = []
        for src in data.get("sources") or ():
            if not isinstance(src, Mapping):
                continue
            name = str(src.get("id"))
            sub_cls = _find_subclass(classes.get(name), DataSubEntry) or DataSubEntryImage
            sub = sub_cls.__new__(sub_cls)
            DataSubEntryImage.__init__(sub, name, src.get("uri"))  # type: ignore[arg-type]
            sub._read(src)
            self._sub_entries[name] = sub
        context = data.get("context_id")
        images = self._images()
        for sub in images:
            sub.context_id = context
        by_name = {s.name: s for s in images}
        self._annotations = []
        for roi in data.get("rois") or ():
            if not isinstance(roi, Mapping):
                continue
            bound = list(roi.get("sources") or ())
            item = copy.deepcopy(dict(roi))
            if len(bound) == 1 and bound[0] in by_name:
                by_name[bound[0]]._annotations.append(item)
            elif bound:
                self._global_annotations.append(item)
            else:
                self._annotations.append(item)


__all__ = ["DataEntryImage", "DataSubEntryImage"]
