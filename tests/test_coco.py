"""COCO import and export: the round trip of tests/data/coco_small.json, and what is refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hds_s3 import Client, Dataset, DatasetVersion, InvalidStateError, SingleFrame, ValidationError, connect
from hds_s3.model.annotations import POLY_SEPARATOR
from hds_s3.tools.coco import (
    coco_to_frames,
    export_coco,
    frames_to_coco,
    import_coco,
    load_coco,
    stored_coco_meta,
)

COCO_FILE = Path(__file__).parent / "data" / "coco_small.json"
ROOT = "s3://images/coco"


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return connect(str(tmp_path / "store"))


@pytest.fixture
def coco() -> dict[str, Any]:
    return json.loads(COCO_FILE.read_text(encoding="utf-8"))


def draft(client: Client, name: str = "coco") -> DatasetVersion:
    return DatasetVersion.create_new_dataset(dataset_name=name, client=client)


def assert_same_coco(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same images, categories and annotations; geometry and areas within float tolerance."""
    assert actual.get("info") == expected.get("info")
    assert actual.get("licenses") == expected.get("licenses")
    assert sorted(actual["images"], key=lambda i: i["id"]) == sorted(
        expected["images"], key=lambda i: i["id"]
    )
    assert sorted(actual["categories"], key=lambda c: c["id"]) == sorted(
        expected["categories"], key=lambda c: c["id"]
    )
    got = {a["id"]: a for a in actual["annotations"]}
    want = {a["id"]: a for a in expected["annotations"]}
    assert sorted(got) == sorted(want)
    for ann_id, exp in want.items():
        ann = dict(got[ann_id])
        exp = dict(exp)
        exp.setdefault("segmentation", [])  # a box-only annotation is exported with an empty list
        for key in ("bbox", "area"):
            assert ann.pop(key) == pytest.approx(exp.pop(key), abs=1e-6), (ann_id, key)
        seg, exp_seg = ann.pop("segmentation"), exp.pop("segmentation")
        if isinstance(exp_seg, dict):
            assert seg == exp_seg, ann_id  # RLE restored verbatim
        else:
            assert len(seg) == len(exp_seg), ann_id
            for part, exp_part in zip(seg, exp_seg, strict=True):
                assert part == pytest.approx(exp_part, abs=1e-9), ann_id
        assert ann == exp, ann_id


# ------------------------------------------------------------------ the round trip


def test_import_then_export_gives_back_the_same_coco(client: Client, coco: dict[str, Any]) -> None:
    version = draft(client)
    result = import_coco(version, COCO_FILE, ROOT)
    assert (result.images, result.annotations, result.categories) == (5, 6, 3)
    assert version.get_frame_count() == 5

    exported = export_coco(version)
    assert exported.skipped_rois == 0
    assert_same_coco(exported.coco, coco)


def test_import_maps_images_and_annotations_onto_frames_and_rois(client: Client) -> None:
    version = draft(client)
    import_coco(version, COCO_FILE, ROOT + "/")  # a trailing slash on the root is fine
    frames = {f.source: f for f in version.iter_frames()}
    assert sorted(frames) == sorted(
        f"{ROOT}/{name}"
        for name in (
            "street/000011.jpg",
            "street/000012.jpg",
            "park/000015.jpg",
            "park/000016.jpg",
            "night/000020.png",
        )
    )
    street = frames[f"{ROOT}/street/000011.jpg"]
    assert isinstance(street, SingleFrame)
    assert (street.width, street.height) == (640, 480)
    assert street.metadata["coco"]["id"] == 11
    assert street.metadata["coco"]["file_name"] == "street/000011.jpg"
    rois = {r.id: r for r in street.annotations}
    assert rois["101"].type == "poly2d" and rois["101"].labels == ["person"]
    # a two-polygon segmentation is ONE complex polygon ROI, its parts split by the separator
    assert rois["102"].type == "poly2d" and rois["102"].poly.count(POLY_SEPARATOR) == 1
    assert len(rois["102"].parts) == 2
    assert rois["102"].metadata == {"area": pytest.approx(10297.25), "iscrowd": 0}

    box_only = frames[f"{ROOT}/street/000012.jpg"].annotations
    assert [(r.type, r.labels, r.poly) for r in box_only] == [
        ("box2d", ["dog"], [33.0, 120.5, 173.0, 120.5, 173.0, 216.75, 33.0, 216.75])
    ]
    crowd = next(r for r in frames[f"{ROOT}/park/000015.jpg"].annotations if r.id == "104")
    assert crowd.type == "box2d" and crowd.metadata["iscrowd"] == 1
    assert crowd.metadata["rle"]["size"] == [375, 500]
    assert frames[f"{ROOT}/park/000016.jpg"].annotations == []  # the image without annotations
    extra = next(r for r in frames[f"{ROOT}/night/000020.png"].annotations if r.id == "107")
    assert extra.metadata["attributes"] == {"occluded": True, "pose": "sitting"}

    stats = version.get_stats()
    assert {e["name"]: e["count"] for e in stats["labels"]} == {"person": 2, "car": 2, "dog": 2}
    assert stats["unannotated"] == 1
    assert version.get_metadata()["coco"]["categories"][1] == {
        "id": 3,
        "name": "car",
        "supercategory": "vehicle",
    }


def test_importing_twice_updates_instead_of_duplicating(client: Client, coco: dict[str, Any]) -> None:
    version = draft(client)
    import_coco(version, COCO_FILE, ROOT)
    import_coco(version, coco, ROOT)  # an already-loaded dict works too
    assert version.get_frame_count() == 5
    assert_same_coco(export_coco(version).coco, coco)


def test_a_child_version_exports_with_the_categories_its_ancestor_imported(
    client: Client, coco: dict[str, Any]
) -> None:
    import_coco(draft(client), COCO_FILE, ROOT)
    child = DatasetVersion.create_snapshot(dataset_name="coco", publish_name="v1", client=client)
    assert child.get_metadata() == {}
    assert stored_coco_meta(child) is not None
    child.delete_frames([f for f in child.iter_frames() if f.source.endswith("000016.jpg")])
    out = export_coco(child).coco
    expected = copy.deepcopy(coco)
    expected["images"] = [i for i in expected["images"] if i["id"] != 16]
    assert_same_coco(out, expected)


def test_export_writes_the_file(client: Client, coco: dict[str, Any], tmp_path: Path) -> None:
    version = draft(client)
    import_coco(version, COCO_FILE, ROOT)
    target = tmp_path / "out.json"
    export_coco(version, target)
    assert_same_coco(load_coco(target), coco)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


# ------------------------------------------------------------------ bad input changes nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["annotations"][2].update(category_id=99),
            r"annotations\[2\] \(id 103\): category_id 99",
        ),
        (lambda c: c["annotations"][0].update(image_id=404), r"annotations\[0\] \(id 101\): image_id 404"),
        (
            lambda c: c["annotations"][1]["segmentation"][0].append(1.0),
            r"annotations\[1\] \(id 102\): segmentation\[0\] has an odd number",
        ),
        (lambda c: c["annotations"][2].update(bbox=[0, 0, -1, 5]), r"annotations\[2\] \(id 103\): bbox"),
        (lambda c: c["annotations"][2].pop("bbox"), r"neither a polygon segmentation nor a bbox"),
        (lambda c: c["annotations"][3].pop("bbox"), r"RLE segmentation but no bbox"),
        (lambda c: c["annotations"][4].update(id=101), r"annotations\[4\] \(id 101\): the id is used"),
        (lambda c: c["images"][1].update(file_name="street/000011.jpg"), r"images\[1\] \(id 12\): file_name"),
        (lambda c: c["images"][0].update(width=0), r"images\[0\] \(id 11\): width must be a positive"),
        (lambda c: c["categories"][2].update(name="car"), r"categories\[2\] \(id 7\): the name 'car'"),
        (lambda c: c["annotations"][5]["attributes"].update({"a.b": 1}), r"contains '\$' or '\.'"),
        (lambda c: c["annotations"][0].update(score=3), r"score must be a number in 0\.\.1"),
    ],
)
def test_a_malformed_file_is_refused_whole(
    client: Client, coco: dict[str, Any], change: Any, message: str
) -> None:
    version = draft(client)
    change(coco)
    with pytest.raises(ValidationError, match=message) as info:
        import_coco(version, coco, ROOT)
    assert "nothing was imported" in str(info.value)
    assert version.get_frame_count() == 0
    assert version.get_metadata() == {}


def test_every_problem_is_listed(coco: dict[str, Any]) -> None:
    coco["annotations"][0]["category_id"] = 50
    coco["annotations"][1]["image_id"] = 51
    with pytest.raises(ValidationError, match=r"^x\.json: 2 problems: annotations\[0\].*; annotations\[1\]"):
        coco_to_frames(coco, ROOT, where="x.json")


def test_unreadable_files_name_the_file(tmp_path: Path, client: Client) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,}\n]}', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"broken\.json: line 2 column 12: not valid JSON"):
        load_coco(broken)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        import_coco(draft(client), tmp_path / "missing.json", ROOT)


def test_importing_into_a_published_version_is_refused_before_writing(client: Client) -> None:
    version = draft(client)
    version.publish_version()
    with pytest.raises(InvalidStateError, match="is published"):
        import_coco(version, COCO_FILE, ROOT)
    assert version.get_frame_count() == 0


# ------------------------------------------------------------------ export of frames that were not imported


def test_export_of_native_frames_numbers_everything_stably(client: Client) -> None:
    version = draft(client, "native")
    a = SingleFrame(source="s3://b/x/a.jpg", width=100, height=50, id="a")
    a.add_annotation(box2d_xywh=(10, 10, 20, 5), labels=["zebra"], confidence=0.5)
    a.add_annotation(poly2d_xy=[[0, 0, 4, 0, 4, 3], [10, 10, 12, 10, 12, 12]], labels=["ant", "small"])
    a.add_annotation(ellipse2d_xyrrt=(5, 5, 2, 1, 0), labels=["egg"])  # no COCO form
    a.add_annotation(labels=["daytime"])  # a frame label: no COCO form either
    b = SingleFrame(source="s3://b/y/b.jpg", id="b")
    b.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["ant"])
    assert version.add_frames([b, a]) == []

    first = export_coco(version, image_root="s3://b")
    again = export_coco(version, image_root="s3://b")
    assert first.coco == again.coco
    assert first.skipped_rois == 2
    coco = first.coco
    assert coco["categories"] == [{"id": 1, "name": "ant"}, {"id": 2, "name": "zebra"}]
    assert [(i["id"], i["file_name"], i["width"]) for i in coco["images"]] == [
        (1, "x/a.jpg", 100),
        (2, "y/b.jpg", None),
    ]
    anns = {a["id"]: a for a in coco["annotations"]}
    assert len(anns) == 3
    poly = next(a for a in anns.values() if len(a["segmentation"]) == 2)
    assert poly["bbox"] == [0.0, 0.0, 12.0, 12.0]
    assert poly["area"] == pytest.approx(6.0 + 2.0)  # shoelace of both parts
    assert poly["category_id"] == 1 and poly["iscrowd"] == 0
    box = next(a for a in anns.values() if a.get("score") == 0.5)
    assert box["bbox"] == [10.0, 10.0, 20.0, 5.0] and box["area"] == 100.0 and box["segmentation"] == []


def test_frames_to_coco_keeps_stored_ids_and_gives_clashing_ones_new_ids() -> None:
    def frame(fid: str, image_id: int, roi_id: str) -> dict[str, Any]:
        return {
            "id": fid,
            "sources": [{"id": "default", "uri": f"{fid}.jpg", "width": 10, "height": 10}],
            "rois": [{"id": roi_id, "labels": ["cat"], "type": "box2d", "poly": [0, 0, 1, 0, 1, 1, 0, 1]}],
            "meta": {"coco": {"id": image_id, "file_name": f"{fid}.jpg"}},
        }

    out = frames_to_coco(
        [frame("b", 7, "5"), frame("a", 7, "5")],
        coco_meta={"categories": [{"id": 4, "name": "cat"}]},
    ).coco
    assert [(i["id"], i["file_name"]) for i in out["images"]] == [(7, "a.jpg"), (8, "b.jpg")]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in out["annotations"]] == [(5, 7, 4), (6, 8, 4)]


def test_dataset_is_not_touched_by_a_refused_import(client: Client, coco: dict[str, Any]) -> None:
    version = draft(client, "untouched")
    before = Dataset.get(dataset_name="untouched", client=client).last_update
    coco["annotations"][0]["category_id"] = 1234
    with pytest.raises(ValidationError):
        import_coco(version, coco, ROOT)
    assert Dataset.get(dataset_name="untouched", client=client).last_update == before
