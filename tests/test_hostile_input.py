"""Hostile input never ends in a builtin exception: each case once escaped as RecursionError, ValueError,
OverflowError, TypeError or AssertionError (or, in ``hds``, as "unexpected RecursionError" without
the line), and now is a ValidationError, or a failure of ``add_frames`` naming the frame and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from hds_s3 import (
    Client,
    CorruptObjectError,
    Dataset,
    DatasetVersion,
    DataView,
    RoiQuery,
    ValidationError,
    connect,
)
from hds_s3.cli.app import cli
from hds_s3.format import layout
from hds_s3.store import MemoryStore


def nest(depth: int, kind: str = "list") -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def draft() -> DatasetVersion:
    return DatasetVersion.create_new_dataset("hostile", client=Client(MemoryStore()))


def frame(fid: str, **fields: Any) -> dict[str, Any]:
    return {"id": fid, "uri": f"s3://b/{fid}.jpg", **fields}


# ---------------------------------------------------------------------------- add_frames


FRAMES = {
    "coordinates of 400 digits": (
        frame("f", rois=[{"labels": ["car"], "poly": [10**400, 1]}]),
        "frame 'f': rois[0]: poly[0]: <an integer of about 400 digits> is not a finite number",
    ),
    "a confidence of 400 digits": (
        frame("f", rois=[{"labels": ["car"], "confidence": 10**400}]),
        "frame 'f': rois[0]: confidence: <an integer of about 400 digits> is not a finite number",
    ),
    "a timestamp of 5,000 digits": (
        {"id": "f", "sources": [{"id": "a", "uri": "s3://b/1.jpg"}], "timestamp": 10**5000},
        "frame 'f': timestamp: must be an int >= 0, at most 9223372036854775807 (64 bits of ms), "
        "got <an integer of about 5,000 digits>",
    ),
    "a mask value of 400 digits": (
        {
            "id": "f",
            "sources": [{"id": "a", "uri": "s3://b/1.jpg", "masks": [{"id": "m", "uri": "s3://b/m.png"}]}],
            "rois": [{"labels": ["road"], "type": "mask", "mask": {"id": "m", "value": [10**400, 1, 1]}}],
        },
        "frame 'f': rois[0]: mask.value: expected [r, g, b] with integers in 0..255, got [<an integer",
    ),
    "ROI metadata 100,000 deep": (
        frame("f", rois=[{"labels": ["car"], "meta": nest(100_000, "dict")}]),
        "frame 'f': rois[0].meta.k.k.k",
    ),
    "a ROI mask binding 100,000 deep": (
        frame("f", rois=[{"labels": ["car"], "mask": nest(100_000, "dict")}]),
        "frame 'f': rois[0].mask.k.k.k",
    ),
    "coordinates 100,000 deep": (
        frame("f", rois=[{"labels": ["car"], "poly": nest(100_000)}]),
        "frame 'f': rois[0].poly[0][0][0]",
    ),
    "labels 100,000 deep": (frame("f", rois=[{"labels": nest(100_000)}]), "frame 'f': rois[0].labels[0][0]"),
    "a context id 100,000 deep": (frame("f", context_id=nest(100_000)), "frame 'f': context_id[0][0]"),
    "a frame id 100,000 deep": (
        {"id": nest(100_000), "uri": "s3://b/1.jpg"},
        "frame 's3://b/1.jpg': id[0][0]",
    ),
    "a preview 100,000 deep": (frame("f", preview={"uri": nest(100_000)}), "frame 'f': preview.uri[0][0]"),
    "a ROI type that is an array": (
        frame("f", rois=[{"labels": ["car"], "type": np.array([1.0, 2.0])}]),
        "frame 'f': rois[0]: type: array([1., 2.]) is not one of",
    ),
}


@pytest.mark.parametrize(("bad", "says"), FRAMES.values(), ids=FRAMES.keys())
def test_a_hostile_frame_is_a_failure_naming_its_field_and_the_batch_lands(
    bad: dict[str, Any], says: str
) -> None:
    version = draft()
    failed = version.add_frames([frame("before"), bad, frame("after")])
    assert [f.frame for f in failed] == [bad]
    assert failed[0].reason.startswith(says), failed[0].reason
    assert sorted(f.id for f in version.iter_frames()) == ["after", "before"]
    assert repr(failed[0]).startswith("FailedFrame(frame={")  # printable, however deep or large the frame
    version.add_frames([frame("f")])
    assert version.update_frames([bad])[0].reason.startswith(says)


def test_a_frame_id_utf8_cannot_encode_is_a_failure_of_update_frames() -> None:
    version = draft()
    version.add_frames([frame("a")])
    bad = {"id": "a\ud800", "uri": "s3://b/x.jpg"}
    (failed,) = version.update_frames([bad, frame("a", meta={"v": 2})])
    assert failed.frame is bad
    assert failed.reason.startswith("frame 'a\\ud800': id: frame id name 'a\\ud800' is not valid Unicode")
    assert version.get_single_frame("a").metadata == {"v": 2}


def test_tags_of_5000_digits_are_a_validation_error() -> None:
    with pytest.raises(
        ValidationError, match="tags must be a string or a list of strings, got int: <an integer"
    ):
        Dataset.create("t", tags=10**5000, client=Client(MemoryStore()))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- DataViews


@pytest.fixture(scope="module")
def client() -> Client:
    c = Client(MemoryStore())
    DatasetVersion.create_new_dataset("v", client=c).add_frames(
        [frame("f1", meta={"city": "bremen"}, rois=[{"labels": ["car"], "type": "label"}])]
    )
    return c


def view_of(c: Client) -> DataView:
    view = DataView(client=c)
    view.add_query(dataset_name="v", version_name="Current")
    return view


CALLS: dict[str, tuple[Callable[[Client], object], str]] = {
    "a query holding a lone surrogate": (
        lambda c: DataView(client=c).add_query(dataset_name="v", frame_query='meta.city:"\ud800"'),
        "lone surrogate",
    ),
    "a label list holding a lone surrogate": (
        lambda c: DataView(client=c).add_query(dataset_name="v", roi_query=["\ud800"]),
        "lone surrogate",
    ),
    "a ROI count range that is a number": (lambda c: RoiQuery("car", count_range=5), "must be a pair"),  # type: ignore[arg-type]
    "a weight of 400 digits": (
        lambda c: DataView(client=c).add_query(dataset_name="v", weight=10**400),
        "weight must be a positive finite number",
    ),
    "a version name that is a list": (
        lambda c: DataView(client=c).add_query(dataset_name="v", version_name=["Current"]),  # type: ignore[arg-type]
        "version_name must be a string, got list",
    ),
    "a frame query that is a number": (
        lambda c: DataView(client=c).add_query(dataset_name="v", frame_query=True),  # type: ignore[arg-type]
        "frame_query must be a query string, got bool",
    ),
    "filter_by_roi that is an array": (
        lambda c: DataView(client=c).add_query(dataset_name="v", filter_by_roi=np.array([1, 2])),  # type: ignore[arg-type]
        "filter_by_roi must be a string",
    ),
    "an iteration order 5,000 deep": (
        lambda c: DataView(client=c, iteration_order=nest(5_000)),  # type: ignore[arg-type]
        "iteration order must be IterationOrder.sequential or 'random', got [[...]]",
    ),
    "a clip length of 400 digits": (
        lambda c: view_of(c).set_iteration_parameters(clip_length=10**400),
        "clip_length must be a whole number from 1 to 2**63 - 1",
    ),
    "an initial iteration of None": (
        lambda c: view_of(c).set_initial_iteration(None),  # type: ignore[arg-type]
        "initial iteration must be a whole number >= 0, got None",
    ),
    "a projection that is a number": (
        lambda c: list(view_of(c).get_iterator(projection=5)),  # type: ignore[arg-type]
        "projection is a dot path or a list of them",
    ),
    "a label map whose value is 5,000 deep": (
        lambda c: view_of(c).set_labels({"car": nest(5_000)}),  # type: ignore[dict-item]
        "set_labels takes {label: int}; got 'car': [[...]]",
    ),
}


@pytest.mark.parametrize(("call", "says"), CALLS.values(), ids=CALLS.keys())
def test_a_hostile_dataview_argument_is_a_validation_error(
    client: Client, call: Callable[[Client], object], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        call(client)
    assert says in str(caught.value)
    assert view_of(client).get_count() == 1  # and the view still works


def test_a_query_error_shows_the_query_around_the_caret_on_one_line() -> None:
    from hds_s3.query.lucene import parse

    with pytest.raises(ValidationError) as caught:
        parse("(" * 1_000 + 'meta.city:"a\nb"' + ")" * 1_000)
    *_, text, caret = str(caught.value).splitlines()
    assert len(text) < 140 and text.startswith("    ...(") and caret.strip() == "^"
    assert text[len(caret) - 1] == "("  # the caret is under the group past the depth limit


def test_a_stored_dataview_document_nested_10000_deep_is_damage_not_a_crash() -> None:
    c = Client(MemoryStore())
    DatasetVersion.create_new_dataset("v", client=c).add_frames([frame("f1")])
    view = view_of(c)
    view.store()
    assert view.id is not None
    key = layout.dataview_doc_key(view.id)
    c.store.put(key, deep_text(10_000).encode())
    with pytest.raises(CorruptObjectError, match=re.escape(key)):
        DataView.get(dataview_id=view.id, client=c)


def test_a_coco_file_nested_too_deep_or_with_huge_numbers_is_a_validation_error(tmp_path: Path) -> None:
    from hds_s3.tools.coco import load_coco

    deep = tmp_path / "deep.json"
    deep.write_text('{"images": ' + deep_text(100_000) + "}", encoding="utf-8")
    with pytest.raises(ValidationError, match="deep.json: the JSON nests too deep to read"):
        load_coco(deep)
    huge = tmp_path / "huge.json"
    huge.write_text('{"images": [{"id": ' + "9" * 5_000 + "}]}", encoding="utf-8")
    with pytest.raises(ValidationError, match="huge.json: holds an integer of more than 4,300 digits"):
        load_coco(huge)


# ---------------------------------------------------------------------------- hds


def run(store: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--store", store, *args])
    assert "unexpected" not in result.output.lower() and "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"memory://hostile-{tmp_path.name}"
    assert run(url, "datasets", "create", "-d", "d").exit_code == 0
    return url


LINES = {
    "nested 100,000 deep": (deep_text(100_000), "the JSON nests too deep to read"),
    "meta 600 deep": (
        json.dumps({"id": "m", "uri": "s3://b/m.jpg"})[:-1] + ', "meta": ' + '{"k": ' * 600 + "1" + "}" * 601,
        "frame 'm': meta.k.k.k",
    ),
    "an integer of 5,000 digits": (
        '{"id": "n", "uri": "s3://b/n.jpg", "meta": {"n": ' + "9" * 5_000 + "}}",
        "it holds an integer of more than 4,300 digits",
    ),
    "longer than 8 MiB": (
        '{"id": "l", "uri": "s3://b/l.jpg", "meta": {"t": "' + "x" * (9 << 20) + '"}}',
        "longer than 8,388,608 bytes, so not read",
    ),
}


@pytest.mark.parametrize(("line", "says"), LINES.values(), ids=LINES.keys())
def test_hds_frames_add_names_the_hostile_line_and_skip_invalid_skips_it(
    store: str, tmp_path: Path, line: str, says: str
) -> None:
    path = tmp_path / "frames.jsonl"
    good = [json.dumps(frame(f"g{i}")) for i in range(2)]
    path.write_text("\n".join([good[0], line, good[1]]) + "\n", encoding="utf-8")
    refused = run(store, "frames", "add", "-d", "d", str(path))
    assert refused.exit_code == 1
    assert f"hds: error: frames.jsonl line 2: {says}" in refused.stderr, refused.stderr
    assert "nothing was added to dataset 'd', version 'Current'" in refused.stderr
    skipped = run(store, "frames", "add", "-d", "d", "--skip-invalid", str(path))
    assert skipped.exit_code == 0, skipped.output
    assert f"hds: skipped frames.jsonl line 2: {says}" in skipped.stderr
    version = DatasetVersion.get_current(dataset_name="d", client=connect(store))
    assert sorted(f.id for f in version.iter_frames()) == ["g0", "g1"]


def test_a_line_that_is_not_utf8_is_one_bad_record(store: str, tmp_path: Path) -> None:
    """It was reported as the first line of its read buffer, and ended the file."""
    path = tmp_path / "frames.jsonl"
    lines = [json.dumps(frame("a")).encode(), b'{"id": "\xff"}', json.dumps(frame("b")).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    skipped = run(store, "frames", "add", "-d", "d", "--skip-invalid", str(path))
    assert "hds: skipped frames.jsonl line 2: not UTF-8 (byte 9: invalid start byte)" in skipped.stderr
    version = DatasetVersion.get_current(dataset_name="d", client=connect(store))
    assert sorted(f.id for f in version.iter_frames()) == ["a", "b"]


def test_a_parquet_row_whose_meta_text_nests_too_deep_is_named_by_its_row(store: str, tmp_path: Path) -> None:
    path = tmp_path / "frames.parquet"
    rows = [
        {"id": "a", "sources": [{"id": "c", "uri": "s3://b/a.jpg"}], "meta": '{"n": 1}'},
        {"id": "b", "sources": [{"id": "c", "uri": "s3://b/b.jpg"}], "meta": deep_text(100_000)},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    skipped = run(store, "frames", "add", "-d", "d", "--skip-invalid", str(path))
    assert "hds: skipped frames.parquet row 2: a meta column is not JSON text (the JSON nests too deep" in (
        skipped.stderr
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"n": ' + "9" * 5_000 + "}", "holds an integer of more than 4,300 digits"),
        ('{"k": ' + deep_text(100_000) + "}", "the JSON nests too deep to read"),
    ],
    ids=["5000 digits", "100000 deep"],
)
def test_hds_versions_metadata_set_refuses_hostile_json_with_the_reason(
    store: str, value: str, says: str
) -> None:
    result = run(store, "versions", "metadata", "set", "-d", "d", value)
    assert result.exit_code == 2 and says in result.stderr, result.stderr


def test_a_view_file_nested_too_deep_is_a_usage_error(store: str, tmp_path: Path) -> None:
    view = tmp_path / "view.json"
    view.write_text(deep_text(100_000), encoding="utf-8")
    result = run(store, "query", "count", "--view", str(view))
    assert result.exit_code == 2 and "the JSON nests too deep to read" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["count", "--frame-query", "(" * 1_000 + "meta.city:x" + ")" * 1_000], "more than 64 levels deep"),
        (["count", "--frame-query", "NOT " * 2_000 + "meta.city:x"], "more than 64 levels deep"),
        (["count", "--roi-query", "+" * 3_000 + "car"], "more than 64 levels deep"),
        (["count", "--frame-query", 'meta.city:"\ud800"'], "lone surrogate"),
        (["head", "--projection", "sources.²"], "is not a list position"),
    ],
    ids=["1000 groups", "2000 NOTs", "3000 +", "a lone surrogate", "a superscript position"],
)
def test_hds_query_reports_a_hostile_query_in_one_line_with_the_caret(
    store: str, args: list[str], says: str
) -> None:
    result = run(store, "query", *args[:1], "-d", "d", *args[1:])
    assert result.exit_code in (1, 2) and says in result.stderr, result.stderr
    assert all(len(line) < 400 for line in result.stderr.splitlines()), (
        "the query is not cut around the caret"
    )


# ---------------------------------------------------------------------------- the version API


def published_and_draft() -> tuple[Client, DatasetVersion]:
    c = Client(MemoryStore())
    DatasetVersion.create_new_dataset("p", client=c).add_frames([frame("a")])
    DatasetVersion.create_snapshot(dataset_name="p", publish_name="v1", client=c)
    return c, DatasetVersion.get_current(dataset_name="p", client=c)


VERSION_CALLS: dict[str, tuple[Callable[[Client, DatasetVersion], object], str]] = {
    "get_single_frame(a list 5,000 deep)": (
        lambda c, d: d.get_single_frame(frame_id=nest(5_000)),
        "get_single_frame needs a frame id (a non-empty string), got [[...]]",
    ),
    "get_frame_history(5,000 digits)": (
        lambda c, d: d.get_frame_history(10**5000),  # type: ignore[arg-type]
        "got <an integer of about 5,000 digits>",
    ),
    "delete_frames(an id holding a lone surrogate)": (
        lambda c, d: d.delete_frames(["a\ud800"]),
        "frame id 'a\\ud800' is not valid Unicode",
    ),
    "get_frames_table(columns=5)": (
        lambda c, d: d.get_frames_table(columns=5),  # type: ignore[arg-type]
        "columns must be a list of column names, got 5",
    ),
    "set_masks_labels(labels that are a number)": (
        lambda c, d: d.set_masks_labels({(1, 2, 3): 5}),  # type: ignore[dict-item]
        "mask value (1, 2, 3): labels must be strings, got 5",
    ),
    "set_masks_labels(a label holding a lone surrogate)": (
        lambda c, d: d.set_masks_labels({(1, 2, 3): ["\ud800"]}),
        "mask value (1, 2, 3): label '\\ud800' is not valid Unicode",
    ),
    "set_masks_labels(a value of 5,000 digits)": (
        lambda c, d: d.set_masks_labels({10**5000: ["x"]}),  # type: ignore[dict-item]
        "mask value <an integer of about 5,000 digits> is not an (r, g, b) tuple",
    ),
    "get_version(a version name that is a list)": (
        lambda c, d: DatasetVersion.get_version(dataset_name="p", version_name=["v1"], client=c),  # type: ignore[arg-type]
        "a version name is a string, got list",
    ),
    "create_version(a parent that is a number)": (
        lambda c, d: DatasetVersion.create_version(
            dataset_name="p",
            version_name="x",
            parent_version_names=5,
            client=c,  # type: ignore[arg-type]
        ),
        "parent version names are strings, got 5",
    ),
    "set_comment(a list 5,000 deep)": (
        lambda c, d: d.set_comment(nest(5_000)),  # type: ignore[arg-type]
        "comment must be a string, got list: [[...]]",
    ),
    "add_frames(a number)": (
        lambda c, d: d.add_frames(5),  # type: ignore[arg-type]
        "frames are given as a list (or any iterable) of frames, got a int",
    ),
    "add_frames(one frame dict)": (
        lambda c, d: d.add_frames(frame("one")),
        "give [frame] for one frame",
    ),
    "list_datasets(a pattern nested 5,000 deep)": (
        lambda c, d: Dataset.list_datasets(name_pattern="(" * 5_000 + ")" * 5_000, client=c),
        "is not a valid regex: it nests too deep or is too large to compile",
    ),
    "list_datasets(tags that are a number)": (
        lambda c, d: Dataset.list_datasets(tags=5, client=c),  # type: ignore[arg-type]
        "tags to filter on are a tag or a list of tags, got 5",
    ),
    "list_dataviews(a pattern that is a list)": (
        lambda c, d: DataView.list_dataviews(name_pattern=["x"], client=c),  # type: ignore[arg-type]
        "a name pattern is a regular expression (a string), got list",
    ),
    "list_dataviews(tags that are a list of lists)": (
        lambda c, d: DataView.list_dataviews(tags=[["x"]], client=c),  # type: ignore[list-item]
        "tags to filter on are a tag or a list of tags",
    ),
    "get_versions(an array)": (
        lambda c, d: Dataset.get("p", client=c).get_versions(only_published=np.array([1, 2])),  # type: ignore[arg-type]
        "only_published and only_draft are True or False",
    ),
}


@pytest.mark.parametrize(("call", "says"), VERSION_CALLS.values(), ids=VERSION_CALLS.keys())
def test_a_hostile_version_argument_is_a_validation_error_and_nothing_is_written(
    call: Callable[[Client, DatasetVersion], object], says: str
) -> None:
    c, d = published_and_draft()
    before = {i.key: i.etag for i in c.store.list("")}
    with pytest.raises(ValidationError) as caught:
        call(c, d)
    assert says in str(caught.value), str(caught.value)
    assert {i.key: i.etag for i in c.store.list("")} == before
