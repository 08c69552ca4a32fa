"""Hugging Face ``datasets.Dataset`` out of (and back into) hds_s3 versions and DataViews.

:func:`to_hf_dataset` makes one row per image (each source of each frame; see
:mod:`hds_s3.tools.exchange`), with the image's bytes fetched from its URI through
:class:`~hds_s3.io.sources.SourceFetcher` as an ``Image`` feature, in the layout of the hub's object
detection datasets::

    frame_id, source_id, uri: string      width, height: int32       image: Image
    objects: list of {id: string, bbox: [x, y, w, h] (float64, pixels), category: ClassLabel,
                      confidence: float64}
    meta: string (the frame's metadata as JSON)

A ROI with a box (a ``box2d``, or a ``poly2d``'s bounding box) is an object, its first label its
category; the others have no form there and are counted as skipped. The category names come from
``names`` when given, then the labels seen, sorted. :func:`export_hf` saves such a dataset to a
folder (``Dataset.save_to_disk``; ``datasets.load_from_disk`` reads it).

:func:`from_hf_dataset` adds the rows of such a dataset to a draft version: one frame per
``frame_id`` (its rows its sources), one ``box2d`` ROI per object, so a version exported and imported
again holds the same frames (its boxes as ``box2d``).

``datasets`` is imported only when used: ``pip install 'hds_s3[hf]'``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hds_s3.errors import ValidationError
from hds_s3.model.limits import parse_json
from hds_s3.tools import exchange
from hds_s3.tools.coco import FrameSource

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion
    from hds_s3.io.sources import SourceFetcher

_COLUMNS = ("frame_id", "source_id", "uri", "width", "height", "objects")


@dataclass(frozen=True)
class HfExport:
    """What :func:`export_hf` saved; ``skipped_rois`` have no box form."""

    images: int
    objects: int
    names: list[str]
    skipped_rois: int


@dataclass(frozen=True)
class HfImport:
    """What :func:`from_hf_dataset` added."""

    frames: int
    images: int
    objects: int


def load_dataset_folder(path: str | os.PathLike[str]) -> Any:
    """Load a dataset saved with ``save_to_disk`` (as :func:`export_hf` does).

    Raises:
        ImportError: ``datasets`` is not installed.
        NotFoundError: no dataset is saved there.
    """
    from hds_s3.errors import NotFoundError

    try:
        return _datasets().load_from_disk(os.fspath(path))
    except FileNotFoundError as exc:
        raise NotFoundError(f"{os.fspath(path)}: no dataset saved there ({exc})") from None


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            f"Hugging Face exports need the datasets package ({exc}); pip install 'hds_s3[hf]'"
        ) from exc
    return datasets


def _features(names: Sequence[str], images: bool) -> Any:
    ds = _datasets()
    columns: dict[str, Any] = {
        "frame_id": ds.Value("string"),
        "source_id": ds.Value("string"),
        "uri": ds.Value("string"),
        "width": ds.Value("int32"),
        "height": ds.Value("int32"),
    }
    if images:
        columns["image"] = ds.Image()
    columns["objects"] = [
        {
            "id": ds.Value("string"),
            "bbox": ds.Sequence(ds.Value("float64"), length=4),
            "category": ds.ClassLabel(names=list(names)),
            "confidence": ds.Value("float64"),
        }
    ]
    columns["meta"] = ds.Value("string")
    return ds.Features(columns)


def _rows(
    items: Sequence[exchange.ImageItem], index: Mapping[str, int], fetcher: SourceFetcher | None
) -> tuple[list[dict[str, Any]], int, int]:
    rows, objects, skipped = [], 0, 0
    uris = [str(item.source["uri"]) for item in items]
    data = fetcher.fetch_many(uris) if fetcher is not None else [None] * len(items)
    for item, blob in zip(items, data, strict=True):
        found = []
        for roi in item.rois:
            box = exchange.box_of(roi)
            if box is None:
                skipped += 1
                continue
            x0, y0, x1, y1 = box
            found.append(
                {
                    "id": str(roi.get("id")),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "category": index[roi["labels"][0]],
                    "confidence": roi.get("confidence"),
                }
            )
        objects += len(found)
        row: dict[str, Any] = {
            "frame_id": item.frame_id,
            "source_id": item.source.get("id"),
            "uri": item.source["uri"],
            "width": item.width,
            "height": item.height,
            "objects": found,
            "meta": json.dumps(dict(item.frame_meta), ensure_ascii=False, sort_keys=True),
        }
        if fetcher is not None:
            row["image"] = {"bytes": blob, "path": item.name}
        rows.append(row)
    return rows, objects, skipped


def _build(
    source: DatasetVersion | FrameSource,
    image_root: str | None,
    names: Sequence[str] | None,
    images: bool,
    fetcher: SourceFetcher | None,
) -> tuple[Any, HfExport]:
    from hds_s3.io.sources import SourceFetcher

    ds = _datasets()
    items = list(exchange.images_of(exchange.frames_of(source), image_root))
    labels = [r["labels"][0] for item in items for r in item.rois if exchange.box_of(r) is not None]
    all_names = exchange.class_names(labels, names)
    index = {name: i for i, name in enumerate(all_names)}
    fetch = (fetcher or SourceFetcher(cache_bytes=0)) if images else None
    rows, objects, skipped = _rows(items, index, fetch)
    dataset = ds.Dataset.from_list(rows, features=_features(all_names, images))
    return dataset, HfExport(images=len(rows), objects=objects, names=all_names, skipped_rois=skipped)


def to_hf_dataset(
    source: DatasetVersion | FrameSource,
    *,
    image_root: str | None = None,
    names: Sequence[str] | None = None,
    images: bool = True,
    fetcher: SourceFetcher | None = None,
) -> Any:
    """A ``datasets.Dataset`` of a version's or a DataView's images (see the module docstring).

    ``images=False`` leaves the ``image`` column out (nothing is fetched); ``fetcher`` reads the
    sources (default: a :class:`~hds_s3.io.sources.SourceFetcher` without options, for local files
    and public URLs; give one with ``storage_options`` for a private bucket).

    Raises:
        ImportError: ``datasets`` is not installed.
        CorruptObjectError: a segment is missing or damaged.
        NotFoundError: a source does not exist (the message names the URI).
        StorageError: a source cannot be read.
    """
    dataset, _ = _build(source, image_root, names, images, fetcher)
    return dataset


def export_hf(
    source: DatasetVersion | FrameSource,
    output: str | os.PathLike[str],
    *,
    image_root: str | None = None,
    names: Sequence[str] | None = None,
    images: bool = True,
    fetcher: SourceFetcher | None = None,
) -> HfExport:
    """Save :func:`to_hf_dataset`'s dataset to the folder ``output`` (``Dataset.save_to_disk``).

    Raises:
        ImportError: ``datasets`` is not installed.
        CorruptObjectError: a segment is missing or damaged.
        NotFoundError: a source does not exist.
        StorageError: a source cannot be read or ``output`` written.
    """
    from hds_s3.errors import StorageError

    dataset, result = _build(source, image_root, names, images, fetcher)
    try:
        dataset.save_to_disk(os.fspath(output))
    except OSError as exc:
        raise StorageError(f"cannot save the dataset to {os.fspath(output)!r}: {exc}") from exc
    return result


def _category_names(dataset: Any) -> list[str] | None:
    """The names of the ``objects`` column's ClassLabel (a list feature in any datasets version)."""
    objects = dataset.features.get("objects")
    inner = objects[0] if isinstance(objects, list) and objects else getattr(objects, "feature", None)
    feature = inner.get("category") if isinstance(inner, Mapping) else None
    names = getattr(feature, "names", None)
    return list(names) if names is not None else None


def hf_to_frames(dataset: Any) -> list[dict[str, Any]]:
    """The frame dicts of a dataset laid out as :func:`to_hf_dataset` makes them (checked first).

    Raises:
        ValidationError: a column is missing, or a row is malformed (all problems named).
    """
    if not isinstance(getattr(dataset, "column_names", None), list) or not hasattr(dataset, "select_columns"):
        raise ValidationError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    missing = [c for c in _COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValidationError(
            f"the dataset lacks the columns {missing}; it needs {list(_COLUMNS)} (as to_hf_dataset makes)"
        )
    names = _category_names(dataset)
    problems = exchange.Problems("the dataset")
    frames: dict[str, dict[str, Any]] = {}
    columns = [c for c in dataset.column_names if c != "image"]
    for n, row in enumerate(dataset.select_columns(columns)):
        what = f"row {n}"
        fid, uri = row["frame_id"], row["uri"]
        if not isinstance(fid, str) or not fid or not isinstance(uri, str) or not uri:
            problems.add(what, "needs a frame_id and a uri")
            continue
        frame = frames.setdefault(fid, {"id": fid, "sources": [], "rois": [], "meta": {}})
        source_id = row["source_id"] or "default"
        frame["sources"].append({"id": source_id, "uri": uri, "width": row["width"], "height": row["height"]})
        try:
            meta = parse_json(row.get("meta") or "{}")
        except ValidationError as exc:
            problems.add(what, f"meta is not JSON text hds_s3 reads ({exc})")
            continue
        frame["meta"] = meta if isinstance(meta, dict) else {}
        for obj in row["objects"] or ():
            bbox, category = obj.get("bbox"), obj.get("category")
            if (
                not isinstance(bbox, list)
                or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
                or names is None
                or not isinstance(category, int)
                or not 0 <= category < len(names)
            ):
                problems.add(what, f"object {obj.get('id')!r} needs a bbox of 4 numbers and a known category")
                continue
            x, y, w, h = (float(v) for v in bbox)
            roi = exchange.box_roi(
                str(obj.get("id")), names[category], x, y, x + w, y + h, confidence=obj.get("confidence")
            )
            roi["sources"] = [source_id]
            frame["rois"].append(roi)
    problems.raise_if_any()
    for frame in frames.values():
        if len(frame["sources"]) == 1:  # a single source: its ROIs name none, as frames made by hand do
            for roi in frame["rois"]:
                roi["sources"] = []
    return list(frames.values())


def from_hf_dataset(version: DatasetVersion, dataset: Any, *, show_progress: bool = False) -> HfImport:
    """Add the frames of a dataset made by :func:`to_hf_dataset` to a draft version.

    Raises:
        InvalidStateError: the version is published (nothing is written).
        ValidationError: the dataset is not laid out so; nothing is written.
        StorageError: the store failed; frames committed before stay.
    """
    exchange.require_draft(version, "import a Hugging Face dataset into")
    frames = hf_to_frames(dataset)
    exchange.add_all(version, frames, "the dataset", show_progress)
    return HfImport(
        frames=len(frames),
        images=sum(len(f["sources"]) for f in frames),
        objects=sum(len(f["rois"]) for f in frames),
    )


def category_names(dataset: Any) -> list[str] | None:
    """The category names of a dataset made by :func:`to_hf_dataset` (None when it has none)."""
    return _category_names(dataset)


__all__ = [
    "HfExport",
    "category_names",
    "HfImport",
    "export_hf",
    "from_hf_dataset",
    "hf_to_frames",
    "to_hf_dataset",
]
