"""Frame dicts are strict: a key that is no field is an error naming the frame, the field and the key.

Nothing a user writes is dropped silently: a typo (``widht``), a field at the wrong level, or a shape
written as ``add_annotation`` spells it (``box2d_xywh``) makes the frame fail with the reason, and the
other frames of the batch still land. The reference's own spellings are taken where they mean the
same thing (``metadata`` for ``meta``, a ROI's ``label`` for ``labels``), and what a DataView adds to
the frames it returns (``dataset``, a ROI's ``label_num``) is ignored, so its output goes back in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hds_s3 import Client, DatasetVersion, DataView, SingleFrame, ValidationError, connect
from hds_s3.cli.app import cli
from hds_s3.index import columnar
from hds_s3.model.frames import frame_from_dict, guess_content_type, hash_id
from hds_s3.store import MemoryStore

CAM = {"id": "cam", "uri": "s3://b/cam.jpg"}


def frame(fid: str, **fields: Any) -> dict[str, Any]:
    return {"id": fid, "sources": [dict(CAM, uri=f"s3://b/{fid}.jpg")], **fields}


def draft() -> DatasetVersion:
    return DatasetVersion.create_new_dataset("strict", client=Client(MemoryStore()))


# (the frame dict, the start of the reason: frame, field and key)
UNKNOWN = {
    "frame": (frame("f", junk=1), "frame 'f': unknown key 'junk'; a frame has the fields id, context_id"),
    "frame, a typo": (
        {"id": "f", "uri": "s3://b/f.jpg", "widht": 640},
        "frame 'f': unknown key 'widht' (did you mean 'width'?)",
    ),
    "source": (
        {"id": "f", "sources": [dict(CAM, widht=640)]},
        "frame 'f': sources[0]: unknown key 'widht' (did you mean 'width'?); a source has the fields",
    ),
    "source, the frame's metadata spelling": (
        {"id": "f", "sources": [dict(CAM, metadata={"a": 1})]},
        "frame 'f': sources[0]: unknown key 'metadata' (did you mean 'meta'?)",
    ),
    "preview": (
        {"id": "f", "sources": [dict(CAM, preview={"uri": "s3://b/p.jpg", "size": 3})]},
        "frame 'f': sources[0].preview: unknown key 'size'; a preview has the fields",
    ),
    "mask": (
        {"id": "f", "sources": [dict(CAM, masks=[{"id": "00", "uri": "s3://b/m.png", "alpha": True}])]},
        "frame 'f': sources[0].masks[0]: unknown key 'alpha'; a mask has the fields",
    ),
    "ROI": (
        frame("f", rois=[{"lables": ["car"], "type": "label"}]),
        "frame 'f': rois[0]: unknown key 'lables' (did you mean 'labels'?); a ROI has the fields",
    ),
    "ROI, a field of the reference's that is not ours": (
        frame("f", rois=[{"labels": ["car"], "area": 12}]),
        "frame 'f': rois[0]: unknown key 'area'",
    ),
    "ROI mask binding": (
        {
            "id": "f",
            "sources": [dict(CAM, masks=[{"id": "00", "uri": "s3://b/m.png"}])],
            "rois": [
                {"labels": ["road"], "type": "mask", "mask": {"id": "00", "value": [1, 2, 3], "alpha": 1}}
            ],
        },
        "frame 'f': rois[0]: mask:",
    ),
}


@pytest.mark.parametrize(("bad", "says"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_unknown_key_fails_the_frame_naming_it_and_the_others_land(bad: dict[str, Any], says: str) -> None:
    version = draft()
    good = frame("good", meta={"city": "bremen"})
    failed = version.add_frames([good, bad, frame("also-good")])
    assert [f.frame for f in failed] == [bad]
    assert failed[0].reason.startswith(says), failed[0].reason
    assert sorted(f.id for f in version.iter_frames()) == ["also-good", "good"]


@pytest.mark.parametrize(("bad", "says"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_update_frames_refuses_an_unknown_key_and_keeps_the_stored_frame(
    bad: dict[str, Any], says: str
) -> None:
    version = draft()
    assert version.add_frames([frame("f", meta={"v": 1}), frame("g", meta={"v": 1})]) == []
    failed = version.update_frames([bad, frame("g", meta={"v": 2})])
    assert [f.frame for f in failed] == [bad]
    assert failed[0].reason.startswith(says), failed[0].reason
    assert version.get_single_frame("f").metadata == {"v": 1}
    assert version.get_single_frame("g").metadata == {"v": 2}


def test_a_roi_dict_with_an_unknown_key_is_refused_by_the_frame_constructor() -> None:
    with pytest.raises(ValidationError, match=r"ROI: unknown key 'lables' \(did you mean 'labels'\?\)"):
        SingleFrame(source="s3://b/1.jpg", annotations=[{"lables": ["car"]}])


def test_a_box_written_as_add_annotation_spells_it_is_refused_with_its_stored_form() -> None:
    """``box2d_xywh`` once became a frame label with no polygon; the message gives the stored form."""
    version = draft()
    bad = frame("b", rois=[{"labels": ["car"], "box2d_xywh": [10, 20, 30, 40]}])
    (failed,) = version.add_frames([bad])
    assert failed.reason.startswith(
        "frame 'b': rois[0]: unknown key 'box2d_xywh': that is an argument of add_annotation, not a ROI "
        "field; a ROI dict gives its shape as type 'box2d' and poly"
    )
    corners = "[10.0, 20.0, 40.0, 20.0, 40.0, 60.0, 10.0, 60.0]"
    assert f"this one is {{'type': 'box2d', 'poly': {corners}}}" in failed.reason
    assert version.get_frame_count() == 0
    fixed = frame("b", rois=[{"labels": ["car"], "type": "box2d", "poly": json.loads(corners)}])
    assert version.add_frames([fixed]) == []
    (roi,) = version.get_single_frame("b").to_dict()["rois"]
    assert (roi["type"], roi["poly"], roi["labels"]) == ("box2d", json.loads(corners), ["car"])


def test_metadata_is_the_same_field_as_meta_on_frames_and_rois() -> None:
    """``SingleFrame(metadata=)`` and ``add_annotation(metadata=)`` name it so: a dict may too."""
    version = draft()
    given = {
        "id": "m",
        "uri": "s3://b/m.jpg",
        "metadata": {"city": "bremen"},
        "rois": [{"label": "car", "metadata": {"area": 12}}],
    }
    assert version.add_frames([given]) == []
    stored = version.get_single_frame("m")
    assert stored.metadata == {"city": "bremen"}
    assert [(a.labels, a.metadata) for a in stored.annotations] == [(["car"], {"area": 12})]
    view = DataView(client=version.client)
    view.add_query(dataset_name="strict", version_name=version.name, frame_query="meta.city:bremen")
    assert view.get_count() == 1


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (
            frame("t", meta={"a": 1}, metadata={"b": 2}),
            "frame 't': meta: given twice, as 'meta' and 'metadata'",
        ),
        (
            frame("t", rois=[{"labels": ["car"], "label": ["bus"]}]),
            "frame 't': rois[0]: labels: given twice, as 'labels' and 'label'",
        ),
    ],
)
def test_a_field_given_under_both_spellings_is_refused(bad: dict[str, Any], says: str) -> None:
    (failed,) = draft().add_frames([bad])
    assert failed.reason.startswith(says), failed.reason


def test_what_a_dataview_returns_goes_back_in_unchanged() -> None:
    """Its frames carry ``dataset`` and each ROI a ``label_num``: read-only fields, ignored on input."""
    source = draft()
    source.add_frames(
        [frame(f"f{i}", rois=[{"labels": ["car"], "type": "label"}], meta={"n": i}) for i in range(3)]
    )
    view = DataView(client=source.client)
    view.add_query(dataset_name="strict", version_name=source.name)
    view.set_labels({"car": 1})
    returned = list(view.get_iterator(as_dict=True))
    assert all("dataset" in f and f["rois"][0]["label_num"] == 1 for f in returned)
    copy = DatasetVersion.create_new_dataset("copy", client=source.client)
    assert copy.add_frames(returned) == []

    def content(version: DatasetVersion) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in f.to_dict().items() if "saved" not in k and "updated" not in k}
            for f in version.iter_frames()
        ]

    assert content(copy) == content(source)


# ---------------------------------------------------------------------------- two sources with one id


def test_a_frame_whose_sources_share_an_id_is_refused_and_the_version_stays_readable() -> None:
    """The column-wise path once stored it, and every read of the version failed after."""
    twice = {"id": "dup", "sources": [dict(CAM, uri="s3://b/1.jpg"), dict(CAM, uri="s3://b/2.jpg")]}
    _, taken, left = columnar.fast_frames_table(
        [twice], version_id="0" * 32, now=0, hash_id=hash_id, guess_type=guess_content_type
    )
    assert (taken, left) == ([], [0])
    version = draft()
    (failed,) = version.add_frames([frame("before"), twice, frame("after")])
    assert failed.frame is twice
    assert (
        failed.reason
        == "frame 'dup': sources[1].id: two sources have the id 'cam'; source ids are unique in a frame"
    )
    assert sorted(f.id for f in version.iter_frames()) == ["after", "before"]
    view = DataView(client=version.client)
    view.add_query(dataset_name="strict", version_name=version.name)
    assert sorted(f.id for f in view.to_list()) == ["after", "before"]
    with pytest.raises(ValidationError, match="two sources have the id 'cam'"):
        frame_from_dict(twice)


# ---------------------------------------------------------------------------- hds frames add


def test_hds_frames_add_names_the_line_the_frame_and_the_unknown_key(tmp_path: Path) -> None:
    store = f"memory://strict-{tmp_path.name}"
    lines = [
        {"id": "a", "uri": "s3://b/a.jpg"},
        {"id": "b", "uri": "s3://b/b.jpg", "widht": 640},
        {"id": "c", "uri": "s3://b/c.jpg", "rois": [{"labels": ["car"], "box2d_xywh": [1, 2, 3, 4]}]},
    ]
    path = tmp_path / "frames.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store, "datasets", "create", "-d", "strict"]).exit_code == 0
    refused = runner.invoke(cli, ["--store", store, "frames", "add", "-d", "strict", str(path)])
    assert refused.exit_code == 1
    assert re.search(
        r"hds: error: frames\.jsonl line 2: frame 'b': unknown key 'widht' \(did you mean 'width'\?\).*"
        r"\(and 1 more invalid record\); nothing was added to dataset 'strict', version 'Current'",
        refused.stderr,
    ), refused.stderr
    skipped = runner.invoke(
        cli, ["--store", store, "frames", "add", "-d", "strict", "--skip-invalid", str(path)]
    )
    assert skipped.exit_code == 0, skipped.output
    assert "hds: skipped frames.jsonl line 3: frame 'c': rois[0]: unknown key 'box2d_xywh'" in skipped.stderr
    version = DatasetVersion.get_current(dataset_name="strict", client=connect(store))
    assert [f.id for f in version.iter_frames()] == ["a"]


@pytest.mark.parametrize("bound", [[["cam"]], [b"cam"], "np"])
def test_an_roi_bound_to_sources_that_are_not_texts_is_refused_naming_the_field(bound: Any) -> None:
    # found by the structure fuzzer: ``[array([1.0, 2.0])]`` as an ROI's sources escaped as the
    # ValueError numpy raises when an array is compared to a list
    if bound == "np":
        import numpy as np

        bound = [np.array([1.0, 2.0])]
    roi = {"labels": ["car"], "type": "box2d", "poly": [0, 0, 2, 0, 2, 2, 0, 2], "sources": bound}
    given = {"id": "f1", "sources": [{"id": "cam", "uri": "s3://b/1.jpg"}], "rois": [roi]}
    obj = frame_from_dict(given)  # read as given: validation names it when it is stored
    version = DatasetVersion.create_new_dataset(dataset_name="bound", client=Client(MemoryStore()))
    for frame in (given, obj):
        (failed,) = version.add_frames([frame])
        assert re.search(r"rois\[0\].*sources", failed.reason), failed.reason
    assert version.get_frame_count() == 0
