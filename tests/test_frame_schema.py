"""The shipped JSON Schemas of the frame formats agree with what the library writes and refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_fast_path import NOW, VID, frame_dict, tame_frame
from test_frames import _frames

from hds_s3.errors import HdsError
from hds_s3.index import segments
from hds_s3.index.ingest import normalize
from hds_s3.model.frames import FrameGroup, SingleFrame, to_frame_dict
from hds_s3.model.schema import frame_row_schema, frame_schema

FRAME = jsonschema.Draft202012Validator(frame_schema())
ROW = jsonschema.Draft202012Validator(frame_row_schema())


def errors(validator: jsonschema.Draft202012Validator, instance: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(instance)]


def written(frame: SingleFrame | FrameGroup) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What the library writes for a frame: its canonical dict, its Arrow row, and the exported dict."""
    canonical = to_frame_dict(frame)
    canonical.update(saved=NOW, saved_in_version=VID, updated_in_version=VID)
    (row,) = pa.Table.from_pylist([segments.frame_row(canonical)], schema=segments.FRAME_SCHEMA).to_pylist()
    return canonical, json.loads(json.dumps(row)), segments.row_to_frame(row)


def test_both_schemas_are_valid_draft_2020_12_schemas() -> None:
    for schema in (frame_schema(), frame_row_schema()):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    first = frame_schema()
    first["title"] = "changed"
    assert frame_schema()["title"] != "changed"  # a fresh copy each time


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_every_frame_the_library_writes_validates(frame: SingleFrame | FrameGroup) -> None:
    canonical, row, exported = written(frame)
    assert errors(FRAME, canonical) == []
    assert errors(FRAME, exported) == []
    assert errors(ROW, row) == []


def _as_json(d: Any) -> Any:
    try:
        return json.loads(json.dumps(d, allow_nan=False))
    except (TypeError, ValueError):
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(frame_dict(), tame_frame()))
def test_the_schema_accepts_what_the_library_accepts(d: dict[str, Any]) -> None:
    """For JSON input: a frame the library takes is valid (so one the schema refuses, the library refuses).

    The converse holds only where a JSON Schema can state the rule: see the examples below.
    """
    d = _as_json(d)
    assume(d is not None)
    try:
        normalize(d)
        accepted = True
    except (HdsError, TypeError, ValueError):
        accepted = False
    if accepted:
        assert errors(FRAME, d) == [], d


ONE = {"sources": [{"id": "default", "uri": "s3://b/1.jpg"}]}


def _frame(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(ONE))
    source = changes.pop("source", None)
    if source is not None:
        out["sources"][0].update(source)
    out.update(changes)
    return out


def _roi(**fields: Any) -> dict[str, Any]:
    return _frame(rois=[{"labels": ["car"], "type": "box2d", "poly": [0, 0, 4, 0, 4, 3, 0, 3], **fields}])


REFUSED = {
    "no sources": {"meta": {"city": "x"}},
    "empty sources": {"sources": []},
    "a source without uri": {"sources": [{"id": "front"}]},
    "a blank uri": _frame(source={"uri": "  "}),
    "several sources, one without id": {"sources": [{"uri": "a.jpg"}, {"id": "rear", "uri": "b.jpg"}]},
    "uri and sources": {"uri": "a.jpg", **ONE},
    "a blank frame id": _frame(id=" "),
    "a control character in a source id": _frame(source={"id": "front\u0007"}),
    "a width of 0": _frame(source={"width": 0}),
    "a fractional height": _frame(source={"height": 3.5}),
    "a width over 32 bits": _frame(source={"width": 2**31}),
    "a negative timestamp": _frame(timestamp=-1),
    "a negative source timestamp": {"uri": "a.jpg", "timestamp": -5},
    "an empty content type": _frame(source={"content_type": ""}),
    "a dotted metadata key": _frame(meta={"a.b": 1}),
    "a nested $ key": _frame(meta={"a": [{"$x": 1}]}),
    "source meta that is a list": _frame(source={"meta": [1]}),
    "an empty context id": _frame(context_id=""),
    "a preview without uri": _frame(source={"preview": {"width": 3}}),
    "a mask without id": _frame(source={"masks": [{"uri": "m.png"}]}),
    "an unknown ROI type": _roi(type="cuboid"),
    "a box of 6 numbers": _roi(poly=[0, 0, 1, 0, 1, 1]),
    "an ellipse of 4 numbers": _roi(type="ellipse2d", poly=[1, 2, 3, 4]),
    "a confidence above 1": _roi(confidence=1.5),
    "a label that is not text": _roi(labels=[3]),
    "an empty label": _roi(labels=[""]),
    "a frame label without labels": _roi(type="label", poly=[], labels=[]),
    "a frame label with coordinates": _roi(type="label", poly=[1, 2]),
    "a polygon without coordinates": _roi(type="poly2d", poly=[]),
    "a mask ROI without binding": _roi(type="mask", poly=[]),
    "a mask binding with another key": _roi(mask={"id": "00", "value": [1, 2, 3], "alpha": 1}),
    "a mask value out of range": _roi(mask={"id": "00", "value": [1, 2, 300]}),
    "non-numeric coordinates": _roi(poly=["0", 0, 4, 0, 4, 3, 0, 3]),
    "an unknown frame key": _frame(widht=3),
    "an unknown source key": _frame(source={"widht": 3}),
    "an unknown preview key": _frame(source={"preview": {"uri": "p.jpg", "size": 3}}),
    "an unknown mask key": _frame(source={"masks": [{"id": "00", "uri": "m.png", "alpha": True}]}),
    "a ROI in add_annotation's words": _frame(rois=[{"labels": ["car"], "box2d_xywh": [0, 0, 4, 3]}]),
    "an unknown ROI key": _roi(area=12),
    "meta under two spellings": _frame(meta={"a": 1}, metadata={"b": 2}),
    "labels under two spellings": _roi(label=["bus"]),
    "more ROIs than a frame may have": _frame(rois=[{"labels": ["car"]}] * 10_001),
}


@pytest.mark.parametrize("bad", REFUSED.values(), ids=REFUSED.keys())
def test_what_the_library_refuses_the_schema_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises((HdsError, TypeError, ValueError)):
        normalize(bad)
    assert errors(FRAME, bad) != []


def test_the_shorthand_is_part_of_the_schema() -> None:
    assert errors(FRAME, {"uri": "s3://b/1.jpg", "width": 3, "meta": {"city": "x"}}) == []
    assert errors(FRAME, {"sources": [{"uri": "s3://b/1.jpg"}]}) == []
    unknown = {"uri": "s3://b/1.jpg", "source_meta": {"unknown": "keys are refused"}}
    assert errors(FRAME, unknown) != []
    with pytest.raises(HdsError, match="unknown key 'source_meta'"):
        normalize(unknown)


def test_the_other_spellings_are_part_of_the_schema() -> None:
    """``metadata`` for meta, ``label`` for labels, and what a DataView adds to what it returns."""
    spelled = {
        "uri": "s3://b/1.jpg",
        "metadata": {"city": "x"},
        "dataset": {"id": "0" * 32, "name": "d"},
        "rois": [{"label": ["car"], "metadata": {"k": 1}, "label_num": 3}],
    }
    assert errors(FRAME, spelled) == []
    assert normalize(spelled)["meta"] == {"city": "x"}


def _arrow_type(arrow: pa.DataType) -> str:
    if pa.types.is_map(arrow):
        return f"map<{arrow.key_type}, {arrow.item_type}>"
    if pa.types.is_list(arrow):
        return "list"
    if pa.types.is_struct(arrow):
        return "struct"
    return str(arrow)


def _same_shape(schema: dict[str, Any], arrow: pa.DataType, where: str) -> None:
    assert schema["x-arrow-type"] == _arrow_type(arrow), where
    if pa.types.is_list(arrow) and not pa.types.is_map(arrow):
        _same_shape(schema["items"], arrow.value_type, f"{where}[]")
    elif pa.types.is_struct(arrow):
        fields = [arrow.field(i) for i in range(arrow.num_fields)]
        assert list(schema["properties"]) == [f.name for f in fields], where
        for f in fields:
            _same_shape(schema["properties"][f.name], f.type, f"{where}.{f.name}")


def test_the_row_schema_names_every_column_of_the_arrow_schema_with_its_type() -> None:
    schema = frame_row_schema()
    assert list(schema["properties"]) == segments.FRAME_SCHEMA.names
    assert schema["required"] == list(segments.FRAME_COLUMNS)
    for f in segments.FRAME_SCHEMA:
        _same_shape(schema["properties"][f.name], f.type, f.name)


def test_a_row_with_a_wrong_type_is_refused_by_the_row_schema() -> None:
    frame = SingleFrame(source="s3://b/1.jpg", width=3, height=4)
    _, row, _ = written(frame)
    assert errors(ROW, row) == []
    assert errors(ROW, {**row, "timestamp": "0"}) != []
    assert errors(ROW, {**row, "meta": {"city": "x"}}) != []  # metadata is JSON text in a row
    bad_source = {**row["sources"][0], "width": math.pi}
    assert errors(ROW, {**row, "sources": [bad_source]}) != []


def test_the_fields_a_dataview_adds_validate_whatever_their_value() -> None:
    """``dataset`` and a ROI's ``label_num`` are ignored on input, so the schema takes any value too."""
    given = [
        _frame(dataset=None),
        _frame(dataset=5),
        _frame(rois=[{"labels": ["car"], "type": "label", "label_num": "one"}]),
    ]
    for d in given:
        normalize(d)  # the library takes it
        assert errors(FRAME, d) == [], d
