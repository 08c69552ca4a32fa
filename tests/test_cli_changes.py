"""The ``hds`` commands of version differences, frame history, query statistics and stored DataViews."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hds_s3 import DatasetVersion, SingleFrame, connect
from hds_s3.cli.app import cli
from hds_s3.query.dataview import DataView


class Hds:
    def __init__(self, store: Path) -> None:
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Result:
        result = self.runner.invoke(cli, ["--store", str(self.store), *args], input=input)
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("--json", *args).stdout)


def frame(fid: str, label: str, city: str = "bremen") -> SingleFrame:
    f = SingleFrame(source=f"s3://b/{fid}.jpg", width=64, height=48, metadata={"city": city}, id=fid)
    f.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=[label], id="r")
    return f


@pytest.fixture
def hds(tmp_path: Path) -> Hds:
    client = connect(str(tmp_path / "store"))
    draft = DatasetVersion.create_new_dataset(dataset_name="cars", client=client)
    draft.add_frames([frame("a", "car"), frame("b", "car"), frame("c", "bus")])
    draft = DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v1", client=client)
    draft.add_frames([frame("b", "truck"), frame("d", "car", city="hamburg")])
    draft.delete_frames(["c"])
    return Hds(tmp_path / "store")


def test_versions_diff(hds: Hds) -> None:
    out = hds("versions", "diff", "--dataset", "cars", "v1", "Current", "--ids").stdout
    assert out.splitlines() == [
        "'v1' -> 'Current': 1 added, 1 changed, 1 deleted (frames 0)",
        "labels: bus -1, truck +1",
        "+ d",
        "~ b",
        "- c",
    ]
    data = hds.json("versions", "diff", "--dataset", "cars", "v1")  # OTHER: the current version
    assert (data["added"], data["changed"], data["deleted"]) == (["d"], ["b"], ["c"])
    assert data["label_deltas"] == {"bus": -1, "truck": 1} and data["counts"]["frames_delta"] == 0
    v1 = hds.json("versions", "list", "--dataset", "cars")[0]["id"]
    assert hds.json("versions", "diff", "--dataset", "cars", "--by-id", v1, v1)["counts"]["added"] == 0
    err = hds("versions", "diff", "--dataset", "cars", "nope", code=1).stderr
    assert "no version named 'nope'" in err


def test_frames_history(hds: Hds) -> None:
    out = hds("frames", "history", "--dataset", "cars", "b").stdout
    assert [line.split() for line in out.splitlines()] == [
        ["VERSION", "STATUS", "CHANGE"],
        ["v1", "published", "added"],
        ["Current", "draft", "changed"],
    ]
    data = hds.json("frames", "history", "--dataset", "cars", "c")
    assert [(c["version_name"], c["change"]) for c in data["history"]] == [
        ("v1", "added"),
        ("Current", "deleted"),
    ]
    assert "never in" in hds("frames", "history", "--dataset", "cars", "--version", "v1", "d").stdout


def test_query_stats(hds: Hds) -> None:
    stats = hds.json(
        "query",
        "stats",
        "--dataset",
        "cars",
        "--version",
        "Current",
        "--property",
        "meta.city",
        "--property",
        "rois.type",
    )
    assert stats["frames"] == 3 and stats["rois"] == 3
    assert {r["name"]: r["count"] for r in stats["labels"]} == {"car": 2, "truck": 1}
    assert stats["properties"]["meta.city"]["values"] == [
        {"value": "bremen", "count": 2},
        {"value": "hamburg", "count": 1},
    ]
    text = hds("query", "stats", "--dataset", "cars", "--property", "meta.city").stdout
    assert "frames: 3" in text and "hamburg" in text
    assert (
        "property 'bogus'" in hds("query", "stats", "--dataset", "cars", "--property", "bogus", code=1).stderr
    )


def test_dataviews_list_show_rename_stats_delete(hds: Hds) -> None:
    client = connect(str(hds.store))
    view = DataView(name="train", client=client)
    view.add_query(dataset_name="cars", version_name="Current")
    view.add_mapping_rule("truck", "car")
    view.store()
    listed = hds.json("dataviews", "list")
    assert [(v["name"], v["id"]) for v in listed] == [("train", view.id)]
    assert "train" in hds("dataviews", "list", "--pattern", "^tr").stdout
    assert hds.json("dataviews", "list", "--tag", "nope") == []
    shown = hds.json("dataviews", "show", "--dataview", "train")
    assert shown["queries"][0]["dataset_name"] == "cars" and shown["mapping_rules"][0]["to_label"] == "car"
    stats = hds.json("dataviews", "stats", "--dataview", "train")
    assert stats["labels"] == [{"name": "car", "count": 3}]  # the stored mapping applies
    hds("dataviews", "rename", "--dataview", "train", "training")
    assert hds.json("dataviews", "show", "--dataview-id", str(view.id))["name"] == "training"
    assert "no DataView named 'train'" in hds("dataviews", "show", "--dataview", "train", code=1).stderr
    hds("dataviews", "delete", "--dataview", "training", input="n\n", code=1)  # declined: kept
    assert len(hds.json("dataviews", "list")) == 1
    out = hds("dataviews", "delete", "--dataview", "training", input="y\n").stdout
    assert "deleted DataView 'training'" in out
    assert hds.json("dataviews", "list") == []
    again = DataView(name="again", client=client)
    again.add_query(dataset_name="cars")
    again.store()
    hds("dataviews", "delete", "--dataview-id", str(again.id), "--yes")
    assert hds.json("dataviews", "list") == []
    assert "--dataview NAME" in hds("dataviews", "show", code=2).stderr


EXCHANGE = Path(__file__).parent / "data" / "exchange"


def test_yolo_and_voc_import_and_export(tmp_path: Path) -> None:
    hds = Hds(tmp_path / "store")
    images = str(EXCHANGE / "images")
    out = hds.json(
        "yolo", "import", "--dataset", "y", "--create", str(EXCHANGE / "yolo"), "--image-root", images
    )
    assert (out["images"], out["boxes"], out["classes"]) == (3, 4, 3)
    text = hds("yolo", "export", "--dataset", "y", str(tmp_path / "yolo"), "--image-root", images).stdout
    assert "wrote 3 images, 4 boxes, 3 classes of 'y' / 'Current'" in text
    assert (tmp_path / "yolo" / "labels" / "street.txt").read_text().splitlines()[0] == "0 0.25 0.5 0.25 0.5"
    view = hds.json(
        "yolo",
        "export",
        "--dataset",
        "y",
        "--roi-query",
        "person",
        str(tmp_path / "v"),
        "--image-root",
        images,
    )
    assert view["images"] == 2
    hds("voc", "import", "--dataset", "v", "--create", str(EXCHANGE / "voc"), "--image-root", images)
    assert (
        "wrote 3 files, 3 boxes"
        in hds("voc", "export", "--dataset", "v", str(tmp_path / "voc"), "--image-root", images).stdout
    )
    assert (tmp_path / "voc" / "Annotations" / "park.xml").exists()
    hds("versions", "snapshot", "--dataset", "v", "--publish-name", "v1")
    err = hds("voc", "import", "--dataset", "v", "--version", "v1", str(EXCHANGE / "voc"), code=1).stderr
    assert "published" in err
    assert (
        "--create needs --dataset NAME"
        in hds("yolo", "import", "--create", str(EXCHANGE / "yolo"), code=2).stderr
    )


def test_hf_export_and_import(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    hds = Hds(tmp_path / "store")
    images = str(EXCHANGE / "images")
    hds("yolo", "import", "--dataset", "y", "--create", str(EXCHANGE / "yolo"), "--image-root", images)
    saved = hds.json("hf", "export", "--dataset", "y", str(tmp_path / "ds"), "--image-root", images)
    assert (saved["images"], saved["objects"], saved["names"]) == (3, 4, ["car", "person"])
    back = hds.json("hf", "import", "--dataset", "back", "--create", str(tmp_path / "ds"))
    assert (back["frames"], back["objects"]) == (3, 4)
    assert hds.json("frames", "count", "--dataset", "back")["frames"] == 3
    assert (
        "no dataset saved there"
        in hds("hf", "import", "--dataset", "back", str(tmp_path / "nope"), code=1).stderr
    )
