"""YOLO and Pascal VOC: round trips of the shipped folders through a version, DataView exports, refusals."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from hds_s3 import Client, DatasetVersion, InvalidStateError, ValidationError
from hds_s3.query.dataview import DataView
from hds_s3.store import MemoryStore
from hds_s3.tools.voc import export_voc, import_voc
from hds_s3.tools.yolo import export_yolo, import_yolo

DATA = Path(__file__).parent / "data" / "exchange"
IMAGES = str(DATA / "images")


@pytest.fixture
def draft() -> DatasetVersion:
    return DatasetVersion.create_new_dataset(dataset_name="x", client=Client(MemoryStore()))


def yolo_lines(path: Path) -> list[list[float]]:
    if not path.exists():
        return []
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def assert_same_labels(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        got, want = yolo_lines(a / f"{name}.txt"), yolo_lines(b / f"{name}.txt")
        assert len(got) == len(want), name
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-6), name


def test_yolo_round_trip(draft: DatasetVersion, tmp_path: Path) -> None:
    result = import_yolo(draft, DATA / "yolo", image_root=IMAGES)
    assert (result.images, result.boxes, result.classes) == (3, 4, 3)
    assert draft.get_frame_count() == 3
    street = next(f for f in draft.iter_frames() if f.source.endswith("street.png"))
    assert (street.width, street.height) == (32, 24)  # read from the image
    boxes = {tuple(a.labels): a for a in street.get_all_annotations() if a.confidence is None}
    assert boxes[("car",)].poly == [4, 6, 12, 6, 12, 18, 4, 18]
    assert [a.confidence for a in street.get_all_annotations()] == [None, None, 0.875]

    out = tmp_path / "out"
    exported = export_yolo(draft, out, image_root=IMAGES)
    assert (exported.images, exported.boxes, exported.skipped_rois) == (3, 4, 0)
    spec = yaml.safe_load((out / "data.yaml").read_text())
    assert spec["names"] == {0: "car", 1: "person", 2: "bus"} and spec["nc"] == 3  # indexes kept
    assert_same_labels(out / "labels", DATA / "yolo" / "labels", ["street", "park", "empty"])
    # importing the export again gives the same frames, and importing twice does not duplicate
    again = DatasetVersion.create_new_dataset(dataset_name="y", client=draft.client)
    import_yolo(again, out, image_root=IMAGES)
    import_yolo(again, out, image_root=IMAGES)
    assert again.get_frame_count() == 3
    assert sorted(again.get_frames_table(["id"]).column("id").to_pylist()) == sorted(
        draft.get_frames_table(["id"]).column("id").to_pylist()
    )


def test_yolo_export_of_a_dataview_with_images(draft: DatasetVersion, tmp_path: Path) -> None:
    import_yolo(draft, DATA / "yolo", image_root=IMAGES)
    view = DataView(client=draft.client)
    view.add_query(dataset_name="x", version_name=draft.name, roi_query="person")
    out = tmp_path / "view"
    result = export_yolo(view, out, image_root=IMAGES, copy_images=True)
    assert result.images == 2 and result.names == ["car", "person"]  # no stored names: sorted labels
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["park.txt", "street.txt"]
    assert (out / "images" / "park.png").read_bytes() == (DATA / "images" / "park.png").read_bytes()
    assert yaml.safe_load((out / "data.yaml").read_text())["train"] == "images"
    assert [line[0] for line in yolo_lines(out / "labels" / "park.txt")] == [1.0]


def make_yolo(tmp_path: Path, label_text: str) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(DATA / "yolo", root)
    (root / "labels" / "park.txt").write_text(label_text)
    return root


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7 0.5 0.5 0.1 0.1\n", "class '7'"),
        ("0 0.5 zero 0.1 0.1\n", "finite numbers"),
        ("0 0.5 0.5 -0.1 0.1\n", "size must be >= 0"),
        ("0 0.5 0.5\n", "expected"),
        ("0 0.5 0.5 0.1 0.1 1.5\n", "score"),
    ],
)
def test_yolo_import_refuses_bad_lines_and_writes_nothing(
    draft: DatasetVersion, tmp_path: Path, text: str, message: str
) -> None:
    root = make_yolo(tmp_path, text)
    with pytest.raises(ValidationError, match=message) as info:
        import_yolo(draft, root, image_root=IMAGES)
    assert "park.txt line 1" in str(info.value) and "nothing was imported" in str(info.value)
    assert draft.get_frame_count() == 0 and "yolo" not in draft.get_metadata()


def test_yolo_import_refuses_bad_names_and_published_versions(draft: DatasetVersion, tmp_path: Path) -> None:
    root = make_yolo(tmp_path, "")
    (root / "data.yaml").write_text("names: [car, car]\n")
    with pytest.raises(ValidationError, match="twice"):
        import_yolo(draft, root, image_root=IMAGES)
    (root / "data.yaml").write_text("nc: 2\nnames: [car]\n")
    with pytest.raises(ValidationError, match="nc is 2"):
        import_yolo(draft, root, image_root=IMAGES)
    draft.publish_version()
    with pytest.raises(InvalidStateError, match="published"):
        import_yolo(draft, DATA / "yolo", image_root=IMAGES)


def voc_tree(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    size = root.find("size")
    assert size is not None

    def obj(o: ET.Element) -> dict[str, Any]:
        box = o.find("bndbox")
        assert box is not None
        return {
            **{c.tag: (c.text or "").strip() for c in o if c.tag != "bndbox"},
            "box": [float(box.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")],
        }

    return {
        "filename": root.findtext("filename"),
        "folder": root.findtext("folder"),
        "segmented": root.findtext("segmented"),
        "size": (int(size.findtext("width") or 0), int(size.findtext("height") or 0)),
        "objects": [obj(o) for o in root.findall("object")],
    }


def test_voc_round_trip(draft: DatasetVersion, tmp_path: Path) -> None:
    result = import_voc(draft, DATA / "voc", image_root=IMAGES)
    assert (result.images, result.boxes, result.classes) == (3, 3, 2)
    out = tmp_path / "voc"
    exported = export_voc(draft, out, image_root=IMAGES)
    assert (exported.images, exported.boxes) == (3, 3)
    for name in ("street", "park", "empty"):
        assert voc_tree(out / "Annotations" / f"{name}.xml") == voc_tree(
            DATA / "voc" / "Annotations" / f"{name}.xml"
        )


def test_yolo_boxes_export_as_the_same_voc_boxes(draft: DatasetVersion, tmp_path: Path) -> None:
    import_yolo(draft, DATA / "yolo", image_root=IMAGES)
    export_voc(draft, tmp_path, image_root=IMAGES)
    street = voc_tree(tmp_path / "Annotations" / "street.xml")
    shipped = voc_tree(DATA / "voc" / "Annotations" / "street.xml")
    assert street["objects"][0]["box"] == shipped["objects"][0]["box"]  # car: the same pixels


HOSTILE = {
    "entities": """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<annotation><filename>&lol2;</filename><size><width>1</width><height>1</height></size></annotation>""",
    "external": """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename><size><width>1</width><height>1</height></size></annotation>""",
    "malformed": "<annotation><filename>x.png</filename>",
    "not voc": "<html><body/></html>",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_voc_import_refuses_hostile_and_malformed_xml(
    draft: DatasetVersion, tmp_path: Path, kind: str
) -> None:
    root = tmp_path / "voc"
    shutil.copytree(DATA / "voc", root)
    (root / "Annotations" / "zzz.xml").write_text(HOSTILE[kind])
    with pytest.raises(ValidationError, match="zzz.xml") as info:
        import_voc(draft, root, image_root=IMAGES)
    assert "nothing was imported" in str(info.value) and "passwd" not in str(info.value).split("(")[0]
    assert draft.get_frame_count() == 0


def test_voc_import_checks_boxes_and_sizes(draft: DatasetVersion, tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>10</width><height>0</height></size></annotation>"
    )
    (tmp_path / "b.xml").write_text(
        "<annotation><filename>b.png</filename><size><width>10</width><height>10</height></size>"
        "<object><name>car</name><bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox>"
        "</object></annotation>"
    )
    with pytest.raises(ValidationError, match="2 problems") as info:
        import_voc(draft, tmp_path)  # no Annotations folder: the XML files of the folder itself
    assert "a.xml" in str(info.value) and "b.xml object 1" in str(info.value)
