"""Every code block of the reference's Hyper-Datasets pages runs with only the import changed.

The blocks ship in ``tests/data/reference_doc_blocks.txt`` (pages single_frames, frame_groups,
annotations, masks, previews, custom_metadata and dataviews, in their order). Each page's blocks run
in order in one namespace, as a reader's session would, on the default client (a fresh local folder),
after a set-up that gives them the state the page's prose presumes (a dataset ``MyDataset`` with the
frame ids the page names, a version in ``myDatasetVersion``, ...). Two placeholders the dataviews page
asks the reader to fill (``<field_name>``, ``<dataview_id>``) are filled in.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import hds_s3
from hds_s3 import DatasetVersion, DataView, FrameGroup, ImageAnnotation, SingleFrame, set_default_client

BLOCKS = Path(__file__).resolve().parent / "data" / "reference_doc_blocks.txt"
SINGLE = "dcd81d094ab44e37875c13f2014530ae"
GROUP = "f3ed0e09bf23fc947f426a0d254c652c"


def blocks(page: str) -> list[str]:
    text = BLOCKS.read_text(encoding="utf-8")
    found = re.findall(r"=== (\w+) (\d+)\n```python\n(.*?)```", text, re.S)
    return [textwrap.dedent(code) for name, _, code in found if name == page]


def run(code: str, namespace: dict[str, Any]) -> str:
    code = code.replace("from allegroai import", "from hds_s3 import")
    assert "allegroai" not in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "reference-page", "exec"), namespace)  # noqa: S102 - the page is the test
    return out.getvalue()


@pytest.fixture(autouse=True)
def default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "store"))
    set_default_client(None)
    yield
    set_default_client(None)


def my_dataset() -> tuple[DatasetVersion, DatasetVersion]:
    """MyDataset with the versions 'SingleFrame' and 'FrameGroup' holding the frames the pages name."""
    DatasetVersion.create_new_dataset(dataset_name="MyDataset")
    single = DatasetVersion.create_version(dataset_name="MyDataset", version_name="SingleFrame")
    single.add_frames([SingleFrame(source="s3://my/bucket/a.jpg", id=SINGLE, metadata={"alive": "yes"})])
    group_version = DatasetVersion.create_version(dataset_name="MyDataset", version_name="FrameGroup")
    group = FrameGroup(id=GROUP)
    group["FrameOne"] = SingleFrame(source="https://allegro-datasets.s3.amazonaws.com/tutorials/000012.jpg")
    group_version.add_frames([group])
    return single, group_version


def test_single_frames_page() -> None:
    single, group_version = my_dataset()
    code = blocks("single_frames")
    assert len(code) == 5
    ns: dict[str, Any] = {"myDatasetversion": single, "myDatasetVersion": single}
    for block in code:
        run(block, ns)
    frame = single.reload().get_single_frame(SINGLE)
    assert frame.metadata == {"alive": "yes", "road_hazard": "yes"}
    assert [(a.labels, a.confidence, a.metadata) for a in frame.annotations] == [
        (["tire"], 0.5, {"alive": "no"})
    ]
    assert (
        single.get_frame_count() == 2
    )  # the page's frame was added; deleting the FrameGroup's id here is a no-op


def test_frame_groups_page() -> None:
    _, group_version = my_dataset()
    code = blocks("frame_groups")
    assert len(code) == 5
    ns: dict[str, Any] = {"myVersion": group_version, "DatasetVersion": DatasetVersion}
    for i, block in enumerate(code):
        run(block, ns)
        if i == 3:  # "Updating FrameGroups": a member's metadata, then update_frames
            updated = group_version.reload().get_single_frame(GROUP)
            assert isinstance(updated, FrameGroup) and updated["FrameOne"].metadata == {
                "new_key": "new_value"
            }
    ids = group_version.reload().get_frames_table(columns=["id"]).column("id").to_pylist()
    assert GROUP not in ids and len(ids) == 1  # deleted; the page's new group stays


def test_annotations_page() -> None:
    frame = SingleFrame(source="s3://b/a.jpg")
    frame_group = FrameGroup()
    frame_group["left"] = SingleFrame(source="s3://b/l.jpg")
    frame_group["right"] = SingleFrame(source="s3://b/r.jpg")
    ns: dict[str, Any] = {"frame": frame, "frame_group": frame_group, "ImageAnnotation": ImageAnnotation}
    for block in blocks("annotations"):
        run(block, ns)
    assert [(a.type, a.labels) for a in frame.annotations] == [
        ("box2d", ["test"]),
        ("label", ["frame level label one", "frame level label two"]),
    ]
    (roi,) = frame_group.annotations
    assert roi.labels == ["cityscape"] and roi.confidence == 1.0
    assert frame_group.to_dict()["rois"][0]["sources"] == ["left", "right"]


def test_masks_and_previews_pages() -> None:
    DatasetVersion.create_new_dataset(dataset_name="Example")
    ns: dict[str, Any] = {"DatasetVersion": DatasetVersion, "SingleFrame": SingleFrame}
    for block in blocks("masks"):
        run(block, ns)
    version = DatasetVersion.get_version(dataset_name="Example", version_name="Registering frame with mask")
    (stored,) = version.iter_frames()
    assert isinstance(stored, SingleFrame) and stored.mask_source.endswith("gtFine_labelIds.png")
    assert version.get_masks_labels()[(1, 1, 1)] == ["person", "sitting"]
    assert ns["frame"].masks_source == {"00": "<mask_URI_1>", "01": "<mask_URI_2>"}
    for block in blocks("previews"):
        run(block, ns)
    version = DatasetVersion.get_version(
        dataset_name="Example", version_name="Registering frame with preview"
    )
    (stored,) = version.iter_frames()
    assert stored.preview_uri == "https://acme-datasets.s3.amazonaws.com/images/000012.jpg"


def test_custom_metadata_page() -> None:
    ns: dict[str, Any] = {}
    for block in blocks("custom_metadata"):
        run(block, ns)
    frame = ns["frame"]
    assert frame.metadata == {"alive": "yes", "dangerous": "no"}
    assert frame.annotations[0].metadata == {"dangerous": "yes"}


def labelled(fid: str, *labels: list[str], **meta: Any) -> SingleFrame:
    f = SingleFrame(source=f"s3://b/{fid}.jpg", id=fid, metadata=meta)
    for roi in labels:
        f.add_annotation(box2d_xywh=(0, 0, 5, 5), labels=roi)
    return f


def test_dataviews_page() -> None:
    def make(dataset: str, version: str, frames: list[SingleFrame]) -> DatasetVersion:
        if not hds_s3.Dataset.exists(dataset):
            DatasetVersion.create_new_dataset(dataset_name=dataset)
        v = DatasetVersion.create_version(dataset_name=dataset, version_name=version)
        v.add_frames(frames)
        return v

    my_version = make(
        "myDataset",
        "myVersion",
        [
            labelled("cat1", ["cat"]),
            labelled("dog1", ["dog"]),
            labelled("bird1", ["bird"]),
            labelled("cow1", ["cow"], ["sheep"]),
            labelled("none1"),
            labelled("ca1", ["car"]),
            labelled("cp1", ["car"], ["person"]),
        ],
    )
    make(
        "myDataset",
        "training",
        [
            labelled("car1", ["Car"]),
            labelled("occ1", ["Car", "partly_occluded"]),
            labelled("lo1", ["Car", "largely_occluded"]),
        ],
    )
    make(
        "myDataset",
        "version",
        [
            labelled("b1", city="bremen", updated="2024-10-20"),
            labelled("p1", city="paris", updated="2024-10-25T08:30:00"),
            labelled("o1", city="oslo", updated="2024-11-02"),
        ],
    )
    make("dataset_1", "version_1", [labelled("t1", ["truck"]), labelled("x1", ["boat"])])
    make("dataset_1", "version_2", [labelled("bc1", ["bicycle"])])
    make("dataset_2", "some_version", [labelled("c2", ["car"])])
    make("dataset_2", "aVersion", [labelled("c3", ["car"], ["person"])])
    make("dataset_3", "training", [labelled("C4", ["Car"])])

    class Self:  # the page's add_multi_query blocks run inside a method, with ids at hand
        _dataset_id = my_version.dataset_id
        _version_id = my_version.id

    code = blocks("dataviews")
    assert len(code) == 20
    stored = DataView(name="page view")
    stored.add_query(dataset_name="myDataset", version_name="myVersion", roi_query="cat")
    ns: dict[str, Any] = {"self": Self()}
    counts: dict[Any, Any] = {}
    for i, block in enumerate(code):
        block = block.replace("meta.<field_name>", "meta.updated").replace("<dataview_id>", stored.store())
        run(block, ns)
        if "list_of_frames" in ns:
            view = ns[re.findall(r"list_of_frames = (\w+)\.to_list", block)[0]]  # as the page names it
            every = DataView()  # the frames the view's rules match: its rules, in sequential order
            for rule in view.get_queries():
                every.add_query(rule)
            matched = {f.id for f in every.to_list()}
            listed = {f.id for f in ns.pop("list_of_frames")}  # random order draws by weight: a sample
            assert listed <= matched and view.get_count() == len(matched)
            counts[i] = sorted(matched)
        if i in (5, 6):
            counts[(i, "myDataview")] = sorted(f.id for f in ns["myDataview"].to_list())
        if i == 16:
            counts["labels"] = ns["myDataView"].get_labels()
    assert counts[1] == ["cat1"]  # a single label
    assert counts[2] == ["cat1", "dog1"]  # cat OR dog (block 1's view, one more rule)
    assert counts[3] == ["cat1", "dog1", "occ1"]  # + Car and partly_occluded on one ROI
    assert counts[4] == ["car1", "cat1", "dog1", "lo1", "occ1"]  # + Car AND NOT partly_occluded on one ROI
    # blocks 5 and 6 build myDataview (a car ROI and a person ROI; car without person) and then list the
    # page's myDataView, as written
    assert counts[(5, "myDataview")] == ["cp1"]  # a car ROI and a person ROI
    assert counts[(6, "myDataview")] == ["ca1"]  # a car ROI and no person ROI
    assert {"t1", "bc1", "c2"} <= set(counts[7]) and "x1" not in counts[7]  # three versions of two datasets
    assert "b1" in counts[8] and "p1" not in counts[8]  # meta.city:"bremen"
    assert "b1" in counts[9] and "p1" not in counts[9]  # one date
    assert {"b1", "p1"} <= set(counts[10]) and "o1" not in counts[10]  # a date range
    assert counts["labels"] == {"cat": 1, "dog": 2, "bird": 3, "sheep": 4, "cow": 5, "ignore": -1}
    (rule,) = ns["myDataView"].get_mapping_rules()
    assert (rule.from_labels, rule.to_label, rule.dataset_name) == (("Car",), "car", "dataset_3")
    assert ns["my_dataview"].name == "page view"
