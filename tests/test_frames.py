"""The frame model: shapes, annotations, masks, groups, the canonical dict, identity, validation and
local copies of sources. No storage needed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3.errors import NotFoundError, StorageError, ValidationError
from hds_s3.model.annotations import POLY_SEPARATOR, Annotation
from hds_s3.model.frames import (
    FrameGroup,
    Mask,
    Preview,
    SingleFrame,
    frame_from_dict,
    frame_id,
    from_frame_dict,
    to_frame_dict,
    validate,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _frame(**kwargs: Any) -> SingleFrame:
    return SingleFrame("s3://bucket/img/a.jpg", 640, 480, **kwargs)


def _roundtrip(frame: SingleFrame | FrameGroup) -> dict[str, Any]:
    d = to_frame_dict(frame)
    again = frame_from_dict(json.loads(json.dumps(d)))
    assert to_frame_dict(again) == d
    return d


# ---------------------------------------------------------------------------- shapes


def test_a_box_is_stored_as_its_four_corners() -> None:
    frame = _frame()
    (roi,) = frame.add_annotation(box2d_xywh=(10, 10, 30, 20), labels=["car"])
    assert roi.type == "box2d"
    assert roi.poly == [10, 10, 40, 10, 40, 30, 10, 30]
    assert roi.metadata == {}  # the type lives in its own field, never in meta
    (stored,) = _roundtrip(frame)["rois"]
    assert stored["type"] == "box2d" and stored["poly"] == [10, 10, 40, 10, 40, 30, 10, 30]
    assert stored["labels"] == ["car"] and stored["meta"] == {}


def test_pairs_and_flat_coordinates_give_the_same_polygon() -> None:
    frame = _frame()
    (flat,) = frame.add_annotation(poly2d_xy=[0, 0, 10, 0, 10, 10])
    (pairs,) = frame.add_annotation(poly2d_xy=[(0, 0), (10, 0), (10, 10)])
    (lists,) = frame.add_annotation(poly2d_xy=[[0, 0], [10, 0], [10, 10]])
    assert flat.poly == pairs.poly == lists.poly == [0, 0, 10, 0, 10, 10]
    assert flat.type == pairs.type == "poly2d"
    assert flat.parts == [[0, 0, 10, 0, 10, 10]]


def test_a_complex_polygon_keeps_its_parts_through_a_round_trip() -> None:
    frame = _frame()
    (roi,) = frame.add_annotation(
        poly2d_xy=[[0, 0, 10, 0, 10, 10], [(20, 20), (30, 20), (30, 30)], [1, 2, 3, 4]], labels=["road"]
    )
    sep = POLY_SEPARATOR
    assert roi.poly == [0, 0, 10, 0, 10, 10, sep, 20, 20, 30, 20, 30, 30, sep, 1, 2, 3, 4]
    assert POLY_SEPARATOR == -999999999
    assert roi.parts == [[0, 0, 10, 0, 10, 10], [20, 20, 30, 20, 30, 30], [1, 2, 3, 4]]
    d = _roundtrip(frame)
    back = frame_from_dict(d)
    assert isinstance(back, SingleFrame)
    assert back.annotations[0].parts == roi.parts


def test_every_other_shape_and_its_stored_form() -> None:
    frame = _frame()
    rois = frame.add_annotation(
        points2d_xy=[(1, 2), (3, 4)],
        points3d_xyz=[(1, 2, 3), (4, 5, 6)],
        poly3d_xyz=[0, 0, 0, 1, 0, 0, 1, 1, 0],
        ellipse2d_xyrrt=(50, 60, 10, 5, 0.5),
        box3d_xyzwhxyzwh=[0, 0, 0, 2, 3, 1, 1, 5, 2, 3],
        labels=["thing"],
    )
    by_type = {r.type: r.poly for r in rois}
    assert by_type == {
        "points2d": [1, 2, 3, 4],
        "ellipse2d": [50, 60, 10, 5, 0.5],
        "poly3d": [0, 0, 0, 1, 0, 0, 1, 1, 0],
        "points3d": [1, 2, 3, 4, 5, 6],
        "box3d": [0, 0, 0, 2, 3, 1, 1, 5, 2, 3],
    }
    assert [r["type"] for r in _roundtrip(frame)["rois"]] == [r.type for r in rois]
    (flat,) = _frame().add_annotation(points3d_xyz=[1, 2, 3, 4, 5, 6])
    assert flat.poly == [1, 2, 3, 4, 5, 6]
    (gen,) = _frame().add_annotation(points2d_xy=(v for v in (1.5, 2.5)))
    assert gen.poly == [1.5, 2.5]
    (parts,) = _frame().add_annotation(poly2d_xy=(iter(p) for p in ([0, 0, 1, 1], [(2, 2), (3, 3)])))
    assert parts.parts == [[0, 0, 1, 1], [2, 2, 3, 3]]
    (pairs,) = _frame().add_annotation(poly2d_xy=iter([iter((0, 1)), iter((2, 3))]))
    assert pairs.poly == [0, 1, 2, 3]


def test_labels_only_make_a_frame_label_and_frame_class_keeps_its_values() -> None:
    frame = _frame()
    (label,) = frame.add_annotation(labels=["day", "sunny"])
    assert (label.type, label.poly, label.labels) == ("label", [], ["day", "sunny"])
    (cls,) = frame.add_annotation(frame_class=["outdoor"])
    assert (cls.type, cls.labels) == ("label", ["outdoor"])
    box, klass = frame.add_annotation(box2d_xywh=(0, 0, 1, 1), labels=["car"], frame_class="city")
    assert (box.type, box.labels) == ("box2d", ["car"])
    assert (klass.type, klass.labels) == ("label", ["city"])
    assert box.id == klass.id
    rois = _roundtrip(frame)["rois"]
    assert [(r["type"], r["labels"]) for r in rois] == [
        ("label", ["day", "sunny"]),
        ("label", ["outdoor"]),
        ("box2d", ["car"]),
        ("label", ["city"]),
    ]


def test_labels_confidence_and_metadata_are_kept_on_every_roi_of_a_call() -> None:
    frame = _frame()
    rois = frame.add_annotation(
        box2d_xywh=(1, 2, 3, 4),
        poly2d_xy=[0, 0, 1, 1, 1, 0],
        labels=["car", "partly_occluded"],
        confidence=0.75,
        metadata={"annotator": "ann", "score": {"iou": 0.5}},
    )
    assert len(rois) == 2
    assert all(r.labels == ["car", "partly_occluded"] for r in rois)
    assert all(r.confidence == 0.75 for r in rois)
    assert all(r.metadata == {"annotator": "ann", "score": {"iou": 0.5}} for r in rois)
    assert rois[0].metadata is not rois[1].metadata
    stored = _roundtrip(frame)["rois"]
    assert [r["meta"] for r in stored] == [{"annotator": "ann", "score": {"iou": 0.5}}] * 2
    assert [r["confidence"] for r in stored] == [0.75, 0.75]
    (single,) = frame.add_annotation(labels="truck")
    assert single.labels == ["truck"]


def test_every_roi_of_a_call_shares_one_id() -> None:
    frame = _frame()
    rois = frame.add_annotation(box2d_xywh=(0, 0, 1, 1), points2d_xy=[1, 1], labels=["a"])
    assert rois[0].id == rois[1].id and HEX32.match(rois[0].id or "")
    other = frame.add_annotation(labels=["b"])
    assert other[0].id != rois[0].id
    named = frame.add_annotation(box2d_xywh=(0, 0, 1, 1), ellipse2d_xyrrt=(1, 1, 1, 1, 0), id="obj-7")
    assert [r.id for r in named] == ["obj-7", "obj-7"]
    assert [r["id"] for r in _roundtrip(frame)["rois"]] == [rois[0].id] * 2 + [other[0].id] + ["obj-7"] * 2


def test_adding_nothing_is_refused() -> None:
    with pytest.raises(ValidationError, match="nothing to add"):
        _frame().add_annotation()


# ---------------------------------------------------------------------------- get / remove


def _annotated() -> tuple[SingleFrame, list[Annotation]]:
    frame = _frame()
    rois = [
        *frame.add_annotation(box2d_xywh=(0, 0, 1, 1), points2d_xy=[1, 1], labels=["car"], id="a"),
        *frame.add_annotation(labels=["day"], id="b"),
        *frame.add_annotation(box2d_xywh=(5, 5, 1, 1), labels=["car", "red"], id="c"),
    ]
    return frame, rois


def test_get_annotations_by_id_index_and_label() -> None:
    frame, rois = _annotated()
    assert frame.get_all_annotations() == rois
    assert frame.get_all_annotations() is not frame.annotations
    assert frame.get_annotations() == rois
    assert frame.get_annotations(id="a") == rois[:2]
    assert frame.get_annotations(index=2) == [rois[2]]
    assert frame.get_annotations(index=-1) == [rois[3]]
    assert frame.get_annotations(index=10) == []
    assert frame.get_annotations(label="car") == [rois[0], rois[1], rois[3]]
    assert frame.get_annotations(label="red") == [rois[3]]
    assert frame.get_annotations(id="a", label="red") == []
    assert frame.get_annotations(id="missing") == []


def test_remove_annotation_by_index_or_id() -> None:
    frame, rois = _annotated()
    assert frame.remove_annotation(index=2) is rois[2]
    assert frame.remove_annotation(id="a") is rois[0]
    assert frame.remove_annotation(id="a") is rois[1]
    assert frame.remove_annotation(id="a") is None
    assert frame.remove_annotation(index=5) is None
    assert frame.remove_annotation(index=0, id="b") is None  # they disagree: nothing removed
    assert frame.get_all_annotations() == [rois[3]]
    with pytest.raises(ValidationError, match="give index or id"):
        frame.remove_annotation()


def test_remove_annotations_by_id_and_labels() -> None:
    frame, rois = _annotated()
    assert frame.remove_annotations(labels=["red", "day"]) == [rois[2], rois[3]]
    assert frame.get_all_annotations() == rois[:2]
    frame, rois = _annotated()
    assert frame.remove_annotations(id="a", labels="car") == rois[:2]
    assert frame.remove_annotations(id="c", labels=["blue"]) == []
    assert frame.remove_annotations() == rois[2:]  # no filter: every ROI, as in the reference
    assert frame.annotations == []


# ---------------------------------------------------------------------------- masks, defaults


def test_masks_source_dict_keeps_its_ids_and_a_list_is_numbered() -> None:
    named = _frame(masks_source={"semantic": "s3://b/sem.png", "alpha": "s3://b/alpha.png"})
    assert named.masks_source == {"semantic": "s3://b/sem.png", "alpha": "s3://b/alpha.png"}
    listed = _frame(masks_source=["s3://b/m0.png", "s3://b/m1.png"])
    assert listed.masks_source == {"00": "s3://b/m0.png", "01": "s3://b/m1.png"}
    listed.masks_source = {"x": "s3://b/x.png"}
    assert listed.masks_source == {"x": "s3://b/x.png"}
    masks = _roundtrip(named)["sources"][0]["masks"]
    assert [(m["id"], m["uri"], m["content_type"]) for m in masks] == [
        ("semantic", "s3://b/sem.png", "image/png"),
        ("alpha", "s3://b/alpha.png", "image/png"),
    ]
    back = frame_from_dict(to_frame_dict(named))
    assert isinstance(back, SingleFrame) and back.masks_source == named.masks_source


def test_mask_source_is_mask_00() -> None:
    frame = _frame(mask_source="s3://b/m.png")
    assert frame.masks_source == {"00": "s3://b/m.png"}
    assert frame.mask_source == "s3://b/m.png"
    frame.mask_source = None
    assert frame.masks == [] and frame.mask_source is None
    frame.masks_source = "s3://b/n.png"
    assert frame.masks_source == {"00": "s3://b/n.png"}
    with pytest.raises(ValidationError, match="not both"):
        _frame(mask_source="s3://b/m.png", masks_source=["s3://b/n.png"])


def test_mask_rgb_binds_to_the_first_mask_id() -> None:
    frame = _frame(masks_source={"semantic": "s3://b/sem.png", "alpha": "s3://b/alpha.png"})
    assert frame.mask_source == "s3://b/alpha.png"  # first id in sorted order, as the reference
    (roi,) = frame.add_annotation(mask_rgb=(255, 0, 0), labels=["person"])
    assert (roi.type, roi.poly, roi.labels) == ("mask", [], ["person"])
    assert roi.mask == {"id": "alpha", "value": [255, 0, 0]}
    assert _roundtrip(frame)["rois"][0]["mask"] == {"id": "alpha", "value": [255, 0, 0]}
    with pytest.raises(ValidationError, match=r"frame 's3://bucket/img/a.jpg'.*mask_rgb.*no mask"):
        _frame().add_annotation(mask_rgb=(1, 2, 3), labels=["x"])
    with pytest.raises(ValidationError, match="mask_rgb"):
        frame.add_annotation(mask_rgb=(1, 2, 300))


def test_context_id_timestamp_and_content_type_defaults() -> None:
    frame = SingleFrame("s3://b/video.mp4")
    assert frame.context_id == "s3://b/video.mp4"
    assert frame.timestamp == 0
    assert frame.content_type == "video/mp4"
    frame.source_timestamp = 1500
    assert frame.timestamp == 1500
    d = to_frame_dict(frame)
    assert (d["context_id"], d["timestamp"], d["sources"][0]["timestamp"]) == ("s3://b/video.mp4", 1500, 1500)
    assert d["sources"][0]["content_type"] == "video/mp4"
    explicit = SingleFrame(
        "s3://b/v.bin?sig=1",
        context_id="clip-1",
        timestamp=40,
        content_type="video/x-raw",
        source_timestamp=7,
    )
    d = to_frame_dict(explicit)
    assert (d["context_id"], d["timestamp"], d["sources"][0]["timestamp"]) == ("clip-1", 40, 7)
    assert d["sources"][0]["content_type"] == "video/x-raw"
    assert SingleFrame("s3://b/a.PNG?x=1").content_type == "image/png"
    assert SingleFrame("s3://b/noext").content_type is None
    assert SingleFrame("s3://b/a.webp").content_type == "image/webp"


def test_meta_is_an_alias_of_metadata_and_previews_are_kept() -> None:
    frame = _frame(metadata={"a": 1}, meta_blob={"raw": [1, 2]}, source_meta={"angle": 45})
    assert frame.meta is frame.metadata
    frame.meta = {"b": 2}
    assert frame.metadata == {"b": 2}
    frame.preview = Preview("s3://b/p.jpg", width=64, height=48)
    d = _roundtrip(frame)
    assert d["meta"] == {"b": 2} and d["meta_blob"] == {"raw": [1, 2]}
    assert d["sources"][0]["meta"] == {"angle": 45}
    assert d["sources"][0]["preview"] == {
        "uri": "s3://b/p.jpg",
        "content_type": "image/jpeg",
        "width": 64,
        "height": 48,
        "timestamp": 0,
    }
    frame.preview_uri = None
    assert to_frame_dict(frame)["sources"][0]["preview"] is None


# ---------------------------------------------------------------------------- FrameGroup


def _group() -> FrameGroup:
    group = FrameGroup(metadata={"drive": 3})
    group["front"] = SingleFrame("s3://b/front.jpg", 800, 600, masks_source=["s3://b/front-mask.png"])
    group["rear"] = SingleFrame("s3://b/rear.jpg", 800, 600, source_meta={"fov": 120})
    return group


def test_a_global_annotation_is_one_roi_over_every_source() -> None:
    group = _group()
    rois = group.add_global_annotation(box2d_xywh=(1, 1, 2, 2), labels=["car"], frame_class=["night"])
    assert [r.sources for r in rois] == [["front", "rear"], ["front", "rear"]]
    assert group["front"].annotations == [] and group["rear"].annotations == []
    d = _roundtrip(group)
    assert [(r["type"], r["sources"]) for r in d["rois"]] == [
        ("box2d", ["front", "rear"]),
        ("label", ["front", "rear"]),
    ]
    (mask_roi,) = group.add_global_annotation(mask_rgb=(0, 0, 0), labels=["background"])
    assert mask_roi.mask == {"id": "00", "value": [0, 0, 0]}
    _roundtrip(group)
    assert group.get_global_annotations(label="night") == [rois[1]]
    assert group.remove_global_annotation(id=mask_roi.id) is mask_roi
    assert group.remove_global_annotations(labels="car") == [rois[0]]
    assert group.get_all_global_annotations() == [rois[1]]


def test_member_annotations_are_bound_to_their_source() -> None:
    group = _group()
    (front_box,) = group["front"].add_annotation(box2d_xywh=(0, 0, 10, 10), labels=["car"])
    (rear_label,) = group["rear"].add_annotation(labels=["blurry"])
    (both,) = group.add_global_annotation(labels=["rain"])
    assert front_box.sources == []
    d = _roundtrip(group)
    assert [(r["labels"], r["sources"]) for r in d["rois"]] == [
        (["car"], ["front"]),
        (["blurry"], ["rear"]),
        (["rain"], ["front", "rear"]),
    ]
    back = frame_from_dict(d)
    assert isinstance(back, FrameGroup)
    assert back["front"].annotations == [front_box]
    assert back["rear"].annotations == [rear_label]
    assert back.annotations == [both]
    assert back.get_all_annotations() == [both, front_box, rear_label]
    assert (back["rear"].source_meta, back.metadata) == ({"fov": 120}, {"drive": 3})


def test_group_defaults_come_from_the_first_member() -> None:
    group = FrameGroup()
    assert (group.context_id, group.timestamp) == (None, 0)
    group["cam1"] = SingleFrame("s3://b/cam1.mp4", source_timestamp=33)
    group["cam0"] = SingleFrame("s3://b/cam0.mp4", source_timestamp=34)
    assert (group.context_id, group.timestamp) == ("s3://b/cam1.mp4", 33)
    group.context_id, group.timestamp = "drive-7", 1000
    d = to_frame_dict(group)
    assert (d["context_id"], d["timestamp"]) == ("drive-7", 1000)
    assert [s["id"] for s in d["sources"]] == ["cam1", "cam0"]
    kw = FrameGroup({"a": SingleFrame("s3://b/a.jpg")}, id="g1", meta_blob={"x": 1})
    assert (kw.id, kw.meta_blob, kw.meta) == ("g1", {"x": 1}, {})


def test_the_roi_order_survives_reading_back_a_group() -> None:
    group = _group()
    group.annotations.append(Annotation(labels=["only-front"], sources=["front"]))
    group.add_global_annotation(labels=["both"])
    group["rear"].annotations.append(Annotation(labels=["rear-too"], sources=["rear", "front"]))
    group["rear"].add_annotation(labels=["rear"])
    group.annotations.append(Annotation(labels=["whole frame"]))
    d = _roundtrip(group)
    assert [r["labels"][0] for r in d["rois"]] == ["only-front", "rear", "rear-too", "both", "whole frame"]


def test_one_default_source_reads_as_a_single_frame_and_anything_else_as_a_group() -> None:
    single = to_frame_dict(_frame())
    assert isinstance(frame_from_dict(single), SingleFrame)
    named = SingleFrame("s3://b/a.jpg", source_id="cam")
    d = to_frame_dict(named)
    back = frame_from_dict(d)
    assert isinstance(back, FrameGroup) and list(back) == ["cam"]
    assert to_frame_dict(back) == d
    assert SingleFrame.from_dict(d).source_id == "cam"
    assert FrameGroup.from_dict(single).to_dict() == single
    with pytest.raises(ValidationError, match="2 sources"):
        SingleFrame.from_dict(to_frame_dict(_group()))
    assert from_frame_dict is frame_from_dict


def test_group_member_metadata_is_its_sources_metadata() -> None:
    group = _group()
    group["rear"].source_meta = {}
    group["rear"].metadata = {"weather": "rain"}
    assert to_frame_dict(group)["sources"][1]["meta"] == {"weather": "rain"}
    back = frame_from_dict(to_frame_dict(group))
    assert back["rear"].metadata == back["rear"].source_meta == {"weather": "rain"}
    back["rear"].metadata["lens"] = "wide"  # the reference's "Updating FrameGroups"
    assert to_frame_dict(back)["sources"][1]["meta"] == {"weather": "rain", "lens": "wide"}
    group["rear"].source_meta = {"weather": "sun"}
    with pytest.raises(ValidationError, match=r"members\['rear'\]\.metadata\.weather.*differs"):
        to_frame_dict(group)


def test_group_member_with_frame_level_fields_is_refused() -> None:
    group = _group()
    group["rear"].meta_blob = {"weather": "rain"}
    with pytest.raises(ValidationError, match=r"members\['rear'\]\.meta_blob.*set it on the group"):
        to_frame_dict(group)
    group = _group()
    group["front"].timestamp = 5
    with pytest.raises(ValidationError, match=r"members\['front'\]\.timestamp"):
        validate(group)
    with pytest.raises(ValidationError, match="no member"):
        to_frame_dict(FrameGroup())
    with pytest.raises(ValidationError, match="no member"):
        FrameGroup().add_global_annotation(labels=["x"])
    bad = FrameGroup()
    bad["x"] = "s3://b/a.jpg"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="expected a SingleFrame"):
        validate(bad)


# ---------------------------------------------------------------------------- dict form


def test_the_dict_form_has_every_field_and_round_trips_exactly() -> None:
    frame = _frame(
        id="f1",
        metadata={"city": "bremen", "n": 2},
        meta_blob={"emb": [0.1, 0.2]},
        masks_source={"m": "s3://b/m.png"},
        preview_uri="s3://b/p.jpg",
        source_meta={"k": True},
    )
    frame.masks[0] = Mask("m", "s3://b/m.png", width=640, height=480, timestamp=3)
    frame.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["car"], confidence=0.9, metadata={"t": 1}, id="r1")
    frame.add_annotation(mask_rgb=[1, 1, 1], labels=["person"], id="r2")
    d = _roundtrip(frame)
    assert d == {
        "id": "f1",
        "context_id": "s3://bucket/img/a.jpg",
        "timestamp": 0,
        "sources": [
            {
                "id": "default",
                "uri": "s3://bucket/img/a.jpg",
                "content_type": "image/jpeg",
                "width": 640,
                "height": 480,
                "timestamp": 0,
                "meta": {"k": True},
                "preview": {
                    "uri": "s3://b/p.jpg",
                    "content_type": "image/jpeg",
                    "width": None,
                    "height": None,
                    "timestamp": 0,
                },
                "masks": [
                    {
                        "id": "m",
                        "uri": "s3://b/m.png",
                        "content_type": "image/png",
                        "width": 640,
                        "height": 480,
                        "timestamp": 3,
                    }
                ],
            }
        ],
        "rois": [
            {
                "id": "r1",
                "labels": ["car"],
                "type": "box2d",
                "poly": [1, 2, 4, 2, 4, 6, 1, 6],
                "confidence": 0.9,
                "sources": ["default"],  # a SingleFrame's ROIs are of its source, as the reference shows
                "meta": {"t": 1},
                "mask": None,
            },
            {
                "id": "r2",
                "labels": ["person"],
                "type": "mask",
                "poly": [],
                "confidence": None,
                "sources": ["default"],
                "meta": {},
                "mask": {"id": "m", "value": [1, 1, 1]},
            },
        ],
        "meta": {"city": "bremen", "n": 2},
        "meta_blob": {"emb": [0.1, 0.2]},
    }
    assert frame.to_dict() == d
    back = SingleFrame.from_dict(d)
    assert back.to_dict() == d


def test_provenance_is_read_only_and_kept_by_the_dict_form() -> None:
    frame = _frame()
    assert (frame.saved, frame.saved_in_version, frame.updated_in_version) == (None, None, None)
    d = to_frame_dict(frame)
    assert not {"saved", "saved_in_version", "updated_in_version"} & set(d)
    with pytest.raises(AttributeError):
        frame.saved = 5  # type: ignore[misc]
    d.update(saved=1598982880693, saved_in_version="a" * 32, updated_in_version="b" * 32)
    back = frame_from_dict(d)
    assert (back.saved, back.saved_in_version, back.updated_in_version) == (1598982880693, "a" * 32, "b" * 32)
    assert to_frame_dict(back) == d
    group = to_frame_dict(_group())
    group.update(saved=1, saved_in_version="v1", updated_in_version="v2")
    assert to_frame_dict(frame_from_dict(group)) == group


def test_the_dict_and_the_frame_share_nothing() -> None:
    frame = _frame(metadata={"nested": {"a": [1]}})
    frame.add_annotation(box2d_xywh=(0, 0, 1, 1), labels=["x"], metadata={"m": {"k": 1}})
    d = to_frame_dict(frame)
    d["meta"]["nested"]["a"].append(2)
    d["rois"][0]["meta"]["m"]["k"] = 9
    d["rois"][0]["labels"].append("y")
    assert frame.metadata == {"nested": {"a": [1]}}
    assert frame.annotations[0].metadata == {"m": {"k": 1}} and frame.annotations[0].labels == ["x"]
    fresh = to_frame_dict(frame)
    back = frame_from_dict(fresh)
    fresh["meta"]["nested"]["a"].append(3)
    fresh["rois"][0]["poly"].append(5)
    assert back.metadata == {"nested": {"a": [1]}} and len(back.annotations[0].poly) == 8


def test_partial_dicts_read_with_defaults_and_broken_ones_are_refused() -> None:
    d = {
        "sources": [{"id": "default", "uri": "s3://b/a.jpg"}],
        "rois": [{"label": ["car"], "poly": [0, 0, 1, 0, 1, 1]}],
    }
    frame = frame_from_dict(d)
    assert isinstance(frame, SingleFrame)
    full = to_frame_dict(frame)
    assert full["rois"][0]["type"] == "poly2d" and full["rois"][0]["labels"] == ["car"]
    assert full["timestamp"] == 0 and full["context_id"] == "s3://b/a.jpg"
    broken: Any
    for broken, message in [
        ({}, "no sources"),
        ({"sources": []}, "no sources"),
        ({"sources": [{"id": "a"}]}, r"sources\[0\] has no uri"),
        ({"sources": [{"uri": "x"}, {"id": "b", "uri": "y"}]}, r"sources\[0\] has no id"),
        ({"sources": [{"id": "b", "uri": "y"}, 3]}, r"sources\[1\] must be a dict"),
        ({"uri": "x", "sources": [{"id": "a", "uri": "x"}]}, "not both"),
        ({"sources": [{"id": "a", "uri": "x"}, {"id": "a", "uri": "y"}]}, "two sources"),
        ({"sources": [{"id": "default", "uri": "x"}], "rois": {}}, "rois must be a list"),
        ({"sources": [{"id": "default", "uri": "x", "preview": {}}]}, "preview needs a uri"),
        ({"sources": [{"id": "default", "uri": "x", "masks": [{"id": "0"}]}]}, "masks must be"),
    ]:
        with pytest.raises(ValidationError, match=message):
            frame_from_dict(broken)
    with pytest.raises(ValidationError, match="must be a dict"):
        frame_from_dict([])  # type: ignore[arg-type]


def test_a_frame_of_one_source_may_be_written_in_shorthand() -> None:
    """A top-level uri, or a lone source without id, is the SingleFrame's source "default"."""
    full = {
        "id": "f1",
        "sources": [
            {
                "id": "default",
                "uri": "s3://b/clip.mp4",
                "width": 64,
                "height": 48,
                "timestamp": 40,
                "masks": [],
            }
        ],
        "meta": {"city": "bremen"},
        "rois": [{"labels": ["car"], "type": "box2d", "poly": [0, 0, 4, 0, 4, 3, 0, 3]}],
    }
    top = {k: v for k, v in full.items() if k != "sources"}
    top.update(uri="s3://b/clip.mp4", width=64, height=48, timestamp=40, masks=[])
    lone = {**full, "sources": [{k: v for k, v in full["sources"][0].items() if k != "id"}]}
    expected = to_frame_dict(frame_from_dict(full))
    for short in (top, lone):
        frame = frame_from_dict(short)
        assert isinstance(frame, SingleFrame) and frame.source_id == "default"
        assert to_frame_dict(frame) == expected
        assert to_frame_dict(SingleFrame.from_dict(short)) == expected
        assert to_frame_dict(FrameGroup.from_dict(short)) == expected
    assert expected["timestamp"] == 40 and expected["sources"][0]["timestamp"] == 40
    assert top == {k: v for k, v in full.items() if k != "sources"} | {
        "uri": "s3://b/clip.mp4",
        "width": 64,
        "height": 48,
        "timestamp": 40,
        "masks": [],
    }  # the input is not changed
    # without an explicit id, the id is the one of the full form: re-ingesting either updates the frame
    assert (
        to_frame_dict(frame_from_dict({"uri": "s3://b/a.jpg"}))["id"]
        == to_frame_dict(SingleFrame(source="s3://b/a.jpg"))["id"]
    )


# ---------------------------------------------------------------------------- identity


def test_the_same_sources_and_timestamp_give_the_same_id() -> None:
    a = SingleFrame("s3://b/a.jpg", metadata={"x": 1})
    b = SingleFrame("s3://b/a.jpg", 10, 10)
    b.add_annotation(labels=["other"])
    assert frame_id(a) == frame_id(b) and HEX32.match(frame_id(a))
    assert to_frame_dict(a)["id"] == frame_id(a)
    assert frame_id(SingleFrame("s3://b/a.jpg", timestamp=40)) != frame_id(a)
    assert frame_id(SingleFrame("s3://b/a.jpg", source_timestamp=40)) != frame_id(a)
    assert frame_id(SingleFrame("s3://b/b.jpg")) != frame_id(a)
    assert frame_id(SingleFrame("s3://b/a.jpg", id="mine")) == "mine"
    assert to_frame_dict(SingleFrame("s3://b/a.jpg", id="mine"))["id"] == "mine"
    canonical = json.dumps([[["default", "s3://b/a.jpg"]], 0], separators=(",", ":"), ensure_ascii=False)
    assert frame_id(a) == hashlib.sha256(canonical.encode()).hexdigest()[:32]


def test_a_group_id_does_not_depend_on_member_order() -> None:
    one = FrameGroup({"front": SingleFrame("s3://b/f.jpg"), "rear": SingleFrame("s3://b/r.jpg")})
    two = FrameGroup({"rear": SingleFrame("s3://b/r.jpg"), "front": SingleFrame("s3://b/f.jpg")})
    assert frame_id(one) == frame_id(two)
    swapped = FrameGroup({"front": SingleFrame("s3://b/r.jpg"), "rear": SingleFrame("s3://b/f.jpg")})
    assert frame_id(swapped) != frame_id(one)
    one.id = "explicit"
    assert frame_id(one) == "explicit"
    with pytest.raises(ValidationError, match="source"):
        frame_id(SingleFrame())


# ---------------------------------------------------------------------------- validation


def _error(frame: SingleFrame | FrameGroup) -> str:
    with pytest.raises(ValidationError) as info:
        validate(frame)
    return str(info.value)


def _with_roi(**fields: Any) -> SingleFrame:
    frame = _frame()
    frame.annotations.append(Annotation(**{"labels": ["x"], "type": "poly2d", **fields}))
    return frame


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (lambda: SingleFrame(), "frame <no source>: source: needs a non-empty URI"),
        (lambda: SingleFrame(""), "source: needs a non-empty URI"),
        (lambda: SingleFrame("  ", id="f9"), "frame 'f9': source: needs a non-empty URI"),
        (lambda: SingleFrame("s3://b/a.jpg", width=0), "width: must be a positive int, got 0"),
        (lambda: SingleFrame("s3://b/a.jpg", height=-3), "height: must be a positive int, got -3"),
        (lambda: SingleFrame("s3://b/a.jpg", width=1.5), "width: must be a positive int"),  # type: ignore[arg-type]
        (lambda: SingleFrame("s3://b/a.jpg", height="480"), "height: must be a positive int"),  # type: ignore[arg-type]
        (lambda: SingleFrame("s3://b/a.jpg", width=True), "width: must be a positive int"),
        (
            lambda: SingleFrame("s3://b/a.jpg", width=2**31),
            "width: must be a positive int, at most 2147483647",
        ),
        (lambda: SingleFrame("s3://b/a.jpg", height=2**70), "height: must be a positive int, at most"),
        (lambda: _frame(timestamp=2**63), "timestamp: must be an int >= 0, at most 9223372036854775807"),
        (lambda: _frame(source_timestamp=2**64), "source_timestamp: must be an int >= 0, at most"),
        (
            lambda: SingleFrame("s3://b/\ud800.jpg", id="f"),
            "source 's3://b/\\ud800.jpg' is not valid Unicode",
        ),
        (lambda: _frame(context_id="c\udfff"), "context_id 'c\\udfff' is not valid Unicode"),
        (lambda: _frame(content_type="image/\ud800"), "content_type 'image/\\ud800' is not valid Unicode"),
        (lambda: _frame(metadata={"k": ["\ud800"]}), "metadata value at 'k.[0]' '\\ud800' is not valid"),
        (lambda: _frame(metadata={"\ud800": 1}), "metadata key at top level '\\ud800' is not valid"),
        (lambda: _frame(timestamp=-1), "timestamp: must be an int >= 0"),
        (lambda: _frame(timestamp=2.5), "timestamp: must be an int >= 0"),
        (lambda: _frame(source_timestamp=-5), "source_timestamp: must be an int >= 0"),
        (lambda: _frame(context_id=""), "context_id: must be a non-empty string"),
        (lambda: _frame(metadata={"a.b": 1}), "metadata: metadata key 'a.b'"),
        (lambda: _frame(metadata={"x": {"$set": 1}}), "metadata: metadata key 'x.$set'"),
        (lambda: _frame(metadata={"x": object()}), "metadata: metadata value at 'x'"),
        (lambda: _frame(metadata={"x": float("nan")}), "metadata: metadata value at 'x' is nan"),
        (lambda: _frame(meta_blob={"a.b": 1}), "meta_blob: metadata key 'a.b'"),
        (lambda: _frame(source_meta={"$x": 1}), "source_meta: metadata key '$x'"),
        (lambda: _frame(metadata=[1]), "metadata: metadata must be a dict"),
        (lambda: _frame(id=""), "id: frame id name is empty"),
        (lambda: _frame(id="a\udc80"), "id: frame id name 'a\\udc80' is not valid Unicode"),
        (lambda: _frame(content_type=""), "content_type: must be a non-empty string"),
        (lambda: _with_roi(poly=[0, 0, 1]), "rois[0]: poly: the polygon has an odd number of coordinates"),
        (lambda: _with_roi(poly=[0, 0, POLY_SEPARATOR, 1]), "part 1 of the complex polygon has an odd"),
        (lambda: _with_roi(poly=[POLY_SEPARATOR, 0, 1]), "part 0 of the complex polygon is empty"),
        (lambda: _with_roi(poly=[0, "1"]), "rois[0]: poly[1]: '1' is not a number"),
        (lambda: _with_roi(poly=[0, float("inf")]), "poly[1]: inf is not a finite number"),
        (lambda: _with_roi(poly=[0, True]), "poly[1]: True is not a number"),
        (lambda: _with_roi(poly=[], type="poly2d"), "a poly2d ROI needs coordinates"),
        (lambda: _with_roi(poly=[1, 2, 3], type="points2d"), "2-D points need an even number"),
        (lambda: _with_roi(poly=[1, 2, 3, 4], type="points3d"), "3-D points3d needs a multiple of 3"),
        (lambda: _with_roi(poly=[1, 2, 3, 4], type="poly3d"), "3-D poly3d needs a multiple of 3"),
        (lambda: _with_roi(poly=[1, 2, POLY_SEPARATOR, 3], type="poly3d"), "only allowed in a poly2d"),
        (lambda: _with_roi(poly=[10, 0, 5, 0, 5, 5, 10, 5], type="box2d"), "negative width or height"),
        (lambda: _with_roi(poly=[0, 0, 5, 0, 5, 5], type="box2d"), "4 corners"),
        (lambda: _with_roi(poly=[0, 0, 5, 1, 5, 5, 0, 5], type="box2d"), "must be the corners"),
        (lambda: _with_roi(poly=[0, 0, -1, 1, 0], type="ellipse2d"), "radii must be >= 0"),
        (lambda: _with_roi(poly=[0, 0, 1, 1], type="ellipse2d"), "5 numbers"),
        (lambda: _with_roi(poly=[0] * 9, type="box3d"), "10 numbers"),
        (lambda: _with_roi(poly=[0, 0, 0, 1, -1, 0, 0, 0, 1, 1], type="box3d"), "negative width"),
        (lambda: _with_roi(poly=[1, 2], type="label"), "a label ROI has no geometry"),
        (lambda: _with_roi(poly=[], type="label", labels=[]), "a frame label ROI needs at least one label"),
        (lambda: _with_roi(poly=[0, 0], type="circle"), "type: 'circle' is not one of"),
        (lambda: _with_roi(poly=[0, 0], confidence=1.5), "rois[0]: confidence: 1.5 is outside 0..1"),
        (lambda: _with_roi(poly=[0, 0], confidence=-0.1), "confidence: -0.1 is outside 0..1"),
        (lambda: _with_roi(poly=[0, 0], confidence="high"), "confidence: 'high' is not a finite number"),
        (lambda: _with_roi(poly=[0, 0], labels=[1]), "rois[0]: labels[0]: label name must be a string"),
        (lambda: _with_roi(poly=[0, 0], labels=[""]), "labels[0]: label name is empty"),
        (lambda: _with_roi(poly=[0, 0], labels="car"), "labels: expected a list of strings"),
        (lambda: _with_roi(poly=[0, 0], metadata={"a.b": 1}), "rois[0]: meta: metadata key 'a.b'"),
        (lambda: _with_roi(poly=[0, 0], sources=["rear"]), "rois[0].sources: no source 'rear' in the frame"),
        (lambda: _with_roi(poly=[0, 0], sources=[1]), "sources: expected a list of source ids"),
        (lambda: _with_roi(poly=[0, 0], sources=["default", "default"]), "lists a source twice"),
        (lambda: _with_roi(type="mask", poly=[]), "a mask ROI needs a binding"),
        (
            lambda: _with_roi(type="mask", poly=[], mask={"id": "00", "value": [1, 2, 3]}),
            "rois[0].mask: binds a mask value but the frame has no mask",
        ),
        (
            lambda: _with_roi(type="mask", poly=[], mask={"id": "00", "value": [1, 2]}),
            "mask.value: expected [r, g, b]",
        ),
        (lambda: _with_roi(type="mask", poly=[], mask={"id": "00"}), "mask: expected"),
    ],
)
def test_every_validation_error_names_the_frame_and_the_field(frame: Any, expected: str) -> None:
    message = _error(frame())
    assert message.startswith("frame ")
    assert expected in message


def test_mask_errors_name_the_mask() -> None:
    frame = _frame(masks_source={"a": "s3://b/a.png"})
    frame.masks.append(Mask("a", "s3://b/other.png"))
    assert "masks: two masks have the id 'a'" in _error(frame)
    frame = _frame(masks_source={"a": "s3://b/a.png"})
    frame.annotations.append(Annotation(labels=["x"], type="mask", mask={"id": "zz", "value": [0, 0, 0]}))
    assert "rois[0].mask.id: 'zz' is not a mask" in _error(frame)
    frame = _frame(masks_source={"": "s3://b/a.png"})
    assert "masks[0].id: mask id name is empty" in _error(frame)
    frame = _frame(masks_source=[""])
    assert "masks[0].uri: needs a non-empty URI" in _error(frame)
    frame = _frame()
    frame.preview = Preview("s3://b/p.jpg", width=-1)
    assert "preview.width: must be a positive int" in _error(frame)


def test_group_errors_name_the_member() -> None:
    group = _group()
    group["rear"].width = 0
    assert _error(group).startswith("frame 's3://b/front.jpg': members['rear'].width")
    group = _group()
    group["rear"].annotations.append(Annotation(labels=["x"], type="points2d", poly=[1]))
    assert "members['rear'].rois[0]: poly: 2-D points need an even number" in _error(group)
    group = _group()
    group["rear"].annotations.append(
        Annotation(labels=["x"], type="mask", mask={"id": "00", "value": [1, 1, 1]})
    )
    assert "members['rear'].rois[0].mask.id: '00' is not a mask of ['rear']" in _error(group)
    group = _group()
    group.annotations.append(Annotation(labels=["x"], sources=["side"]))
    assert "rois[0].sources: no source 'side'" in _error(group)
    group = _group()
    group[""] = SingleFrame("s3://b/x.jpg")
    assert "members['']: source name is empty" in _error(group)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"poly2d_xy": [0, 0, 1]}, "poly2d_xy: 3 numbers do not make (x, y) pairs"),
        ({"poly2d_xy": []}, "poly2d_xy: is empty"),
        ({"poly2d_xy": [[0, 0, 1, 1], [2]]}, "poly2d_xy[1]: 1 numbers do not make (x, y) pairs"),
        ({"poly2d_xy": [(0, 0, 0), (1, 1, 1)]}, "poly2d_xy[0]: 3 numbers do not make"),
        ({"poly2d_xy": "0,0,1,1"}, "poly2d_xy: expected a list of coordinates"),
        ({"poly2d_xy": [0, POLY_SEPARATOR]}, "reserved complex-polygon separator"),
        ({"points2d_xy": [1, "a"]}, "points2d_xy[1]: 'a' is not a number"),
        ({"points2d_xy": [1, float("nan")]}, "points2d_xy[1]: nan is not a finite number"),
        ({"points3d_xyz": [1, 2, 3, 4]}, "points3d_xyz: 4 numbers do not make (x, y, z) triples"),
        ({"poly3d_xyz": [(1, 2), (3, 4)]}, "poly3d_xyz[0]: expected exactly 3 numbers"),
        ({"box2d_xywh": (0, 0, -1, 5)}, "box2d_xywh: width and height must be >= 0"),
        ({"box2d_xywh": (0, 0, 1)}, "box2d_xywh: expected exactly 4 numbers"),
        ({"ellipse2d_xyrrt": (0, 0, 1, -1, 0)}, "ellipse2d_xyrrt: radii must be >= 0"),
        ({"box3d_xyzwhxyzwh": [0] * 9}, "box3d_xyzwhxyzwh: expected exactly 10 numbers"),
        ({"box3d_xyzwhxyzwh": [0, 0, 0, -1, 1, 0, 0, 0, 1, 1]}, "widths and heights must be >= 0"),
        ({"labels": [1]}, "labels[0]: label name must be a string"),
        ({"labels": ["a"], "confidence": 2}, "confidence: 2 is outside 0..1"),
        ({"labels": ["a"], "metadata": {"a$": 1}}, "metadata: metadata key 'a$'"),
        ({"frame_class": []}, "frame_class: is empty"),
        ({"labels": ["a"], "id": ""}, "id: annotation id name is empty"),
    ],
)
def test_add_annotation_refuses_malformed_input_naming_frame_and_argument(
    kwargs: dict[str, Any], expected: str
) -> None:
    frame = _frame()
    with pytest.raises(ValidationError) as info:
        frame.add_annotation(**kwargs)
    assert str(info.value).startswith("frame 's3://bucket/img/a.jpg': add_annotation")
    assert expected in str(info.value)
    assert frame.annotations == []


# ---------------------------------------------------------------------------- hypothesis round trip

_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8).filter(str.strip)
_key = _text.filter(lambda k: "." not in k and "$" not in k)
_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text
_json = st.recursive(
    _scalar | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_key, inner, max_size=3),
    max_leaves=8,
)
_meta = st.dictionaries(_key, _json, max_size=3)
_coord = st.floats(-1e6, 1e6, allow_nan=False)
_size = st.none() | st.integers(1, 10_000)
_uri = st.builds(lambda s, ext: f"s3://bucket/{s}{ext}", _text, st.sampled_from(["", ".jpg", ".png", ".mp4"]))
_pairs = st.lists(st.tuples(_coord, _coord), min_size=1, max_size=4)
_radius = st.floats(0, 99)
_triple = st.tuples(_coord, _coord, _coord)
_shape = st.one_of(
    st.fixed_dictionaries({"poly2d_xy": _pairs}),
    st.fixed_dictionaries({"poly2d_xy": st.lists(_pairs, min_size=2, max_size=3)}),
    st.fixed_dictionaries({"box2d_xywh": st.tuples(_coord, _coord, st.floats(0, 1e3), st.floats(0, 1e3))}),
    st.fixed_dictionaries({"points3d_xyz": st.lists(_triple, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"ellipse2d_xyrrt": st.tuples(_coord, _coord, _radius, _radius, _coord)}),
    st.fixed_dictionaries({"frame_class": st.lists(_text, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"mask_rgb": st.tuples(*[st.integers(0, 255)] * 3)}),
)
_annotation = st.tuples(
    _shape,
    st.lists(_text, max_size=2),
    st.none() | st.floats(0, 1),
    _meta,
    st.none() | _text,
)


@st.composite
def _members(draw: st.DrawFn) -> SingleFrame:
    member = SingleFrame(
        draw(_uri),
        draw(_size),
        draw(_size),
        preview_uri=draw(st.none() | _uri),
        source_meta=draw(_meta),
        source_timestamp=draw(st.integers(0, 10**12)),
        masks_source=draw(st.none() | st.lists(_uri, max_size=2) | st.dictionaries(_text, _uri, max_size=2)),
        content_type=draw(st.none() | st.sampled_from(["image/jpeg", "application/x-custom"])),
    )
    for shape, labels, confidence, meta, roi_id in draw(st.lists(_annotation, max_size=3)):
        if "mask_rgb" in shape and not member.masks:
            shape = {"frame_class": ["no mask"]}
        member.add_annotation(**shape, labels=labels, confidence=confidence, metadata=meta, id=roi_id)
    return member


@st.composite
def _frames(draw: st.DrawFn) -> SingleFrame | FrameGroup:
    frame_fields: dict[str, Any] = {
        "id": draw(st.none() | _text),
        "context_id": draw(st.none() | _text),
        "timestamp": draw(st.none() | st.integers(0, 10**12)),
        "metadata": draw(_meta),
        "meta_blob": draw(_meta),
    }
    if draw(st.booleans()):
        frame = draw(_members())
        for name, value in frame_fields.items():
            setattr(frame, name, value)
        return frame
    names = draw(st.lists(_text, min_size=1, max_size=3, unique=True))
    group = FrameGroup({name: draw(_members()) for name in names}, **frame_fields)
    for shape, labels, confidence, meta, roi_id in draw(st.lists(_annotation, max_size=2)):
        if "mask_rgb" in shape and not any(member.masks for member in group.values()):
            shape = {"frame_class": ["no mask"]}
        group.add_global_annotation(**shape, labels=labels, confidence=confidence, metadata=meta, id=roi_id)
    return group


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames(), st.none() | st.tuples(st.integers(0, 2**62), _text, _text))
def test_any_valid_frame_round_trips_exactly(frame: SingleFrame | FrameGroup, provenance: Any) -> None:
    d = to_frame_dict(frame)
    if provenance is not None:
        d.update(saved=provenance[0], saved_in_version=provenance[1], updated_in_version=provenance[2])
    back = frame_from_dict(d)
    assert to_frame_dict(back) == d
    assert to_frame_dict(frame_from_dict(json.loads(json.dumps(d)))) == d
    assert to_frame_dict(frame_from_dict(to_frame_dict(back))) == d
    assert isinstance(back, SingleFrame) == (len(d["sources"]) == 1 and d["sources"][0]["id"] == "default")
    assert frame_id(frame) == d["id"]


# ---------------------------------------------------------------------------- local copies


@pytest.fixture
def memory_files() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    root = f"/hds-test-{os.getpid()}-{threading.get_ident()}"
    fs.mkdir(root)
    yield fs, root
    fs.rm(root, recursive=True)


def test_a_local_path_and_a_file_uri_are_returned_as_they_are(tmp_path: Path) -> None:
    image = tmp_path / "dir with space" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg")
    assert SingleFrame(str(image)).get_local_source() == str(image)
    assert SingleFrame(image.as_uri()).get_local_source() == str(image)
    assert SingleFrame(f"file://{image}").get_local_source() == str(image)
    with pytest.raises(NotFoundError, match=r"frame '.*missing.jpg': source: '.*missing.jpg' does not exist"):
        SingleFrame(str(tmp_path / "missing.jpg")).get_local_source()
    with pytest.raises(ValidationError, match="source: needs a non-empty URI"):
        SingleFrame().get_local_source()


def test_a_remote_source_is_downloaded_once_into_the_cache(memory_files: Any, tmp_path: Path) -> None:
    fs, root = memory_files
    fs.pipe(f"{root}/img.jpg", b"first")
    frame = SingleFrame(f"memory://{root}/img.jpg")
    cache = tmp_path / "cache"
    local = frame.get_local_source(cache_dir=cache)
    assert Path(local).parent == cache and local.endswith(".jpg")
    assert Path(local).read_bytes() == b"first"
    fs.pipe(f"{root}/img.jpg", b"second")
    assert frame.get_local_source(cache_dir=cache) == local
    assert Path(local).read_bytes() == b"first"  # not downloaded again
    assert Path(frame.get_local_source(cache_dir=cache, force_download=True)).read_bytes() == b"second"
    assert sorted(p.name for p in cache.iterdir()) == [Path(local).name]  # no temp file left


def test_the_cache_defaults_to_hds_cache_dir(
    memory_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, root = memory_files
    fs.pipe(f"{root}/a.png", b"png")
    monkeypatch.setenv("HDS_CACHE_DIR", str(tmp_path / "hds-cache"))
    local = SingleFrame(f"memory://{root}/a.png").get_local_source()
    assert Path(local).is_relative_to(tmp_path / "hds-cache") and Path(local).read_bytes() == b"png"
    monkeypatch.delenv("HDS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        local = SingleFrame(f"memory://{root}/a.png").get_local_source()
        assert Path(local).is_relative_to(tmp_path / "xdg" / "hds_s3")


def test_previews_and_masks_have_local_copies(memory_files: Any, tmp_path: Path) -> None:
    fs, root = memory_files
    for name in ("img.jpg", "prev.jpg", "m0.png", "m1.png"):
        fs.pipe(f"{root}/{name}", name.encode())
    frame = SingleFrame(
        f"memory://{root}/img.jpg",
        preview_uri=f"memory://{root}/prev.jpg",
        masks_source=[f"memory://{root}/m0.png", f"memory://{root}/m1.png"],
    )
    assert Path(frame.get_local_preview_source(cache_dir=tmp_path) or "").read_bytes() == b"prev.jpg"
    assert Path(frame.get_local_mask_source(cache_dir=tmp_path) or "").read_bytes() == b"m0.png"
    assert Path(frame.get_local_mask_source("01", cache_dir=tmp_path) or "").read_bytes() == b"m1.png"
    masks = frame.get_local_masks_source(cache_dir=tmp_path)
    assert {k: Path(v).read_bytes() for k, v in masks.items()} == {"00": b"m0.png", "01": b"m1.png"}
    with pytest.raises(NotFoundError, match=r"no mask '07'; masks: \['00', '01'\]"):
        frame.get_local_mask_source("07", cache_dir=tmp_path)
    bare = SingleFrame(f"memory://{root}/img.jpg")
    assert bare.get_local_preview_source(cache_dir=tmp_path) is None
    assert bare.get_local_mask_source(cache_dir=tmp_path) is None


def test_download_errors_name_the_frame_and_the_uri(memory_files: Any, tmp_path: Path) -> None:
    _, root = memory_files
    missing = SingleFrame(f"memory://{root}/nope.jpg", id="f1")
    with pytest.raises(NotFoundError, match=rf"frame 'f1': source: 'memory://{root}/nope.jpg' not found"):
        missing.get_local_source(cache_dir=tmp_path)
    with pytest.raises(StorageError, match=r"frame 'f2': source: cannot download 'nosuchproto://b/a.jpg'"):
        SingleFrame("nosuchproto://b/a.jpg", id="f2").get_local_source(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_downloads_of_one_source_agree(memory_files: Any, tmp_path: Path) -> None:
    fs, root = memory_files
    fs.pipe(f"{root}/big.bin", os.urandom(1 << 20))
    frame = SingleFrame(f"memory://{root}/big.bin")
    results: list[str] = []

    def fetch() -> None:
        results.append(frame.get_local_source(cache_dir=tmp_path, force_download=True))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert Path(results[0]).read_bytes() == fs.cat(f"{root}/big.bin")
    assert [p.name for p in tmp_path.iterdir()] == [Path(results[0]).name]
