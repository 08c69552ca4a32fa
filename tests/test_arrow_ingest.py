"""Arrow input to add_frames and update_frames: every input kind, the canonical schema, bad rows.

Frames given as Arrow (a table, record batches, a reader, a pandas or polars frame, a Parquet file)
are stored exactly as the same frames given as dicts, and a bad row is reported with its id and
field while the other rows land.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hds_s3 import Client, DatasetVersion, DataView, ValidationError
from hds_s3.index import arrowin, segments
from hds_s3.store.base import ObjectStore

ALL = [f.name for f in segments.FRAME_SCHEMA]
PROVENANCE = {"saved", "saved_in_version", "updated_in_version"}


@pytest.fixture
def client(store: ObjectStore) -> Client:
    return Client(store)


def frame_dict(i: int, *, variant: int = 0) -> dict[str, Any]:
    """A frame dict in canonical form: one source, 0-3 box ROIs, metadata of three types."""
    rois = [
        {
            "id": f"r{i}-{r}",
            "labels": [["car", "cat", "bus"][(i + r + variant) % 3]],
            "type": "box2d",
            "poly": [1.0, 2.0, 11.0, 2.0, 11.0, 22.0, 1.0, 22.0],
            "confidence": None if r % 2 else 0.5,
            "sources": ["default"],
            "meta": {"area": 200.0 + r, "iscrowd": r % 2},
        }
        for r in range(i % 4)
    ]
    return {
        "id": f"frame-{i:04d}",
        "context_id": f"video-{i % 3}",
        "timestamp": 1000 + i,
        "sources": [
            {
                "id": "default",
                "uri": f"s3://bucket/img/{i:04d}.jpg",
                "content_type": "image/jpeg",
                "width": 640,
                "height": 480,
                "timestamp": 0,
                "meta": {"license": i % 5},
            }
        ],
        "rois": rois,
        "meta": {"city": ["bremen", "paris"][i % 2], "score": i / 10 + variant, "night": i % 3 == 0},
        "meta_blob": {"coco_id": i},
    }


def as_json_text(frames: list[dict[str, Any]]) -> pa.Table:
    """The frames as a table whose metadata columns hold JSON text."""
    rows = []
    for f in frames:
        row = dict(f)
        row["meta"] = json.dumps(f["meta"])
        row["meta_blob"] = json.dumps(f["meta_blob"])
        row["sources"] = [{**s, "meta": json.dumps(s["meta"])} for s in f["sources"]]
        row["rois"] = [{**r, "meta": json.dumps(r["meta"])} for r in f["rois"]]
        rows.append(row)
    return pa.Table.from_pylist(rows)


def stored(version: DatasetVersion) -> list[dict[str, Any]]:
    """Every column of the version's frames but provenance, sorted by id; maps as sorted pairs."""
    table = version.get_frames_table(columns=ALL).sort_by("id")
    rows = table.drop_columns(sorted(PROVENANCE)).to_pylist()
    for row in rows:
        row["meta_str"] = sorted(row["meta_str"])
        row["meta_num"] = sorted(row["meta_num"])
        for key in ("meta", "meta_blob"):
            row[key] = json.loads(row[key]) if row[key] is not None else None
        for item in (*row["sources"], *row["rois"]):
            item["meta"] = json.loads(item["meta"]) if item["meta"] is not None else None
    return rows


def new_version(client: Client, name: str) -> DatasetVersion:
    return DatasetVersion.create_new_dataset(dataset_name=name, client=client)


FRAMES = [frame_dict(i) for i in range(40)]


@pytest.fixture
def expected(client: Client) -> list[dict[str, Any]]:
    """What the dict path stores for FRAMES."""
    ref = new_version(client, "reference")
    assert ref.add_frames(FRAMES) == []
    return stored(ref)


def batches_of(table: pa.Table) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=7)


@pytest.mark.parametrize(
    "kind",
    [
        "table",
        "record_batch",
        "reader",
        "list_of_batches",
        "generator_of_batches",
        "json_text",
        "map_meta",
        "map_meta_slices",
    ],
)
def test_arrow_input_is_stored_as_the_same_frames_as_dicts(
    client: Client, expected: list[dict[str, Any]], kind: str
) -> None:
    table = pa.Table.from_pylist(FRAMES)
    given: Any = {
        "table": table,
        "record_batch": table.combine_chunks().to_batches()[0],
        "reader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=9)),
        "list_of_batches": table.to_batches(max_chunksize=5),
        "generator_of_batches": batches_of(table),
        "json_text": as_json_text(FRAMES),
    }.get(kind)
    if kind.startswith("map_meta"):
        frames = [{**f, "meta": {"score": f["meta"]["score"]}} for f in FRAMES]
        given = pa.Table.from_pylist(frames).set_column(
            pa.Table.from_pylist(frames).schema.get_field_index("meta"),
            "meta",
            pa.array([[("score", f["meta"]["score"])] for f in FRAMES], pa.map_(pa.string(), pa.float64())),
        )
        if kind == "map_meta_slices":  # batches that are slices of one: their buffers start inside
            given = given.to_batches(max_chunksize=4)
        reference = new_version(client, "maps-by-dict")
        assert reference.add_frames(frames) == []
        expected = stored(reference)
    version = new_version(client, f"arrow-{kind.replace('_', '-')}")
    assert version.add_frames(given) == []
    assert stored(version) == expected


def test_struct_metadata_is_stored_as_the_very_text_the_dict_path_writes(client: Client) -> None:
    # every field present in every row (written in one pass), and rows where some are absent
    full = [
        {**f, "meta": {"city": f'b"r\\{i}', "score": float(i), "n": [i, i + 1], "deep": {"x": i / 3}}}
        for i, f in enumerate(frame_dict(i) for i in range(40))
    ]
    gaps = [
        {**f, "meta": {k: v for k, v in f["meta"].items() if i % 3 != 1 or k != "score"}}
        for i, f in enumerate(full)
    ]
    for name, frames in (("full", full), ("gaps", gaps)):
        by_dicts, by_arrow = new_version(client, f"{name}-dicts"), new_version(client, f"{name}-arrow")
        assert by_dicts.add_frames(frames) == []
        assert by_arrow.add_frames(pa.Table.from_pylist(frames)) == []
        columns = ["meta", "meta_blob", "rois", "sources"]
        want = by_dicts.get_frames_table(columns=columns).sort_by("id")
        got = by_arrow.get_frames_table(columns=columns).sort_by("id")
        assert got.column("meta").to_pylist() == want.column("meta").to_pylist(), name
        assert got.column("meta_blob").to_pylist() == want.column("meta_blob").to_pylist(), name
        assert got.column("rois").to_pylist() == want.column("rois").to_pylist(), name
        assert got.column("sources").to_pylist() == want.column("sources").to_pylist(), name
        assert '"score":0.0,' in got.column("meta")[0].as_py()  # a whole float keeps its point


def _meta_both_ways(client: Client, name: str, frames: list[dict[str, Any]]) -> list[str]:
    """The stored ``meta`` texts of ``frames`` added as dicts and as an Arrow table: the same, by id."""
    by_dicts, by_arrow = new_version(client, f"{name}-dicts"), new_version(client, f"{name}-arrow")
    assert by_dicts.add_frames(frames) == []
    assert by_arrow.add_frames(pa.Table.from_pylist(frames)) == []
    want = by_dicts.get_frames_table(columns=["meta"]).sort_by("id").column("meta").to_pylist()
    got: list[str] = by_arrow.get_frames_table(columns=["meta"]).sort_by("id").column("meta").to_pylist()
    assert got == want
    return got


@pytest.mark.parametrize("odd", ['"', "\\", "\n", "\t", "\x01", "\x1f", "é\u2028"])
def test_one_text_that_needs_escaping_among_plain_ones_is_written_as_the_dict_path_writes_it(
    client: Client, odd: str
) -> None:
    # whether a column needs any escaping is decided once for the whole column: the one row that
    # does must still be escaped, wherever it sits, and the plain ones stay as they are
    frames = [{**frame_dict(i), "meta": {"city": f"bremen{i}", "tags": [f"t{i}"]}} for i in range(60)]
    frames[37]["meta"]["city"] = f"bre{odd}men"
    frames[11]["meta"]["tags"] = ["x", f"y{odd}"]
    got = _meta_both_ways(client, "escapes", frames)
    assert {json.loads(text)["city"] for text in got} >= {f"bre{odd}men", "bremen3"}


def test_numbers_of_every_magnitude_are_stored_as_valid_json_the_dict_path_writes(client: Client) -> None:
    # Arrow writes 1e10..1e16 with an exponent and orjson (the dict path) with digits, and the
    # reverse from 1e-6 to 1e-5: whole ones must not become "1e+15.0", nor any text differ
    numbers = [1e15, 123456789012345.0, 1733580000000.0, 253836795719.82712, 3.116618288152468e-06]
    numbers += [9999999999.5, 1e16, 1.5e16, 1e-7, 0.1, -0.0, 0.0, -3.0, 5e-324, 1.7976931348623157e308]
    frames = [
        {**frame_dict(i), "meta": {"n": number, "all": [number, 2.0], "i": i}}
        for i, number in enumerate(numbers)
    ]
    got = _meta_both_ways(client, "numbers", frames)
    by_i = {json.loads(text)["i"]: json.loads(text) for text in got}  # valid JSON, the same numbers
    assert [by_i[i]["n"] for i in range(len(numbers))] == numbers
    assert any('"n":1000000000000000.0,' in text for text in got)


def test_pandas_polars_and_parquet_files(
    client: Client, expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    pytest.importorskip("pandas")
    polars = pytest.importorskip("polars")
    table = as_json_text(FRAMES)  # pandas keeps JSON text as it is; structs become dicts either way
    path = tmp_path / "frames.parquet"
    pq.write_table(table, path, row_group_size=11)
    for name, given in [
        ("pandas", table.to_pandas()),
        ("polars", polars.from_arrow(table)),
        ("path", path),
        ("path-text", str(path)),
        ("url", path.as_uri()),
    ]:
        version = new_version(client, f"input-{name}")
        assert version.add_frames(given) == [], name
        assert stored(version) == expected, name


def test_a_parquet_url_that_is_not_parquet_is_refused(client: Client, tmp_path: Path) -> None:
    version = new_version(client, "bad-file")
    (tmp_path / "x.parquet").write_text("not parquet")
    for given in (tmp_path / "x.parquet", str(tmp_path / "missing.parquet")):
        with pytest.raises(ValidationError, match="Parquet file of frames"):
            version.add_frames(given)
    assert version.get_frame_count() == 0


def test_a_table_read_from_a_version_can_be_added_to_another(client: Client) -> None:
    source = new_version(client, "source")
    assert source.add_frames(FRAMES) == []
    copy = new_version(client, "copy")
    assert copy.add_frames(source.get_frames_table(columns=ALL)) == []
    assert stored(copy) == stored(source)
    assert set(copy.get_frames_table(columns=["updated_in_version"]).column(1).to_pylist()) == {copy.id}


def test_missing_optional_columns_get_the_dict_paths_defaults(client: Client) -> None:
    minimal = [{"sources": [{"id": "cam", "uri": f"s3://b/{i}.png"}], "timestamp": i} for i in range(5)]
    by_dict = new_version(client, "minimal-dict")
    assert by_dict.add_frames(minimal) == []
    by_arrow = new_version(client, "minimal-arrow")
    assert by_arrow.add_frames(pa.Table.from_pylist(minimal)) == []
    assert stored(by_arrow) == stored(by_dict)
    row = stored(by_arrow)[0]
    assert row["sources"][0]["content_type"] == "image/png"
    assert row["context_id"] == row["sources"][0]["uri"]
    rois = pa.Table.from_pylist(
        [{"sources": [{"id": "c", "uri": "s3://b/x.jpg"}], "rois": [{"labels": ["a"]}]}]
    )
    labelled = new_version(client, "label-roi")
    assert labelled.add_frames(rois) == []
    assert stored(labelled)[0]["rois"][0]["type"] == "label"


def bad_rows() -> list[tuple[dict[str, Any], str, str]]:
    """(row, the field the failure names, what it says) for rows each breaking one rule."""
    ok = frame_dict(0)
    src = ok["sources"][0]
    return [
        ({**ok, "id": "neg-width", "sources": [{**src, "width": -5}]}, "width", "positive"),
        ({**ok, "id": "dotted", "meta": json.dumps({"a.b": 1})}, "metadata", "a.b"),
        ({**ok, "id": "not-json", "meta": "{city: bremen"}, "meta", "JSON"),
        ({**ok, "id": "nan", "meta": '{"v": NaN}'}, "metadata", "nan"),
        ({**ok, "id": "confidence", "rois": [{"labels": ["x"], "confidence": 3.0}]}, "confidence", "0..1"),
        ({**ok, "id": "roi-source", "rois": [{"labels": ["x"], "sources": ["nope"]}]}, "sources", "nope"),
        ({**ok, "id": "empty-uri", "sources": [{**src, "uri": "  "}]}, "uri", ""),
        ({**ok, "id": "box", "rois": [{"labels": ["x"], "type": "box2d", "poly": [1.0, 2.0]}]}, "poly", ""),
        ({**ok, "id": "no-source", "sources": []}, "source", ""),
        ({**ok, "id": "ts", "timestamp": -3}, "timestamp", ""),
    ]


def test_bad_rows_are_reported_with_id_and_field_and_the_others_land(client: Client) -> None:
    good = [frame_dict(i) for i in range(1, 6)]
    rows = []
    for frame in good:
        rows.append({**frame, "meta": json.dumps(frame["meta"]), "meta_blob": json.dumps(frame["meta_blob"])})
    cases = bad_rows()
    for row, _, _ in cases:
        row = dict(row)
        row["meta_blob"] = json.dumps(row["meta_blob"])
        if not isinstance(row["meta"], str):
            row["meta"] = json.dumps(row["meta"])
        rows.append(row)
    version = new_version(client, "bad-rows")
    failed = version.add_frames(pa.Table.from_pylist(rows))
    by_id = {f.frame["id"]: f.reason for f in failed}
    assert set(by_id) == {row["id"] for row, _, _ in cases}
    for row, field, says in cases:
        reason = by_id[row["id"]]
        assert row["id"] in reason and field in reason and says in reason, reason
    assert sorted(version.get_frames_table(columns=["id"]).column("id").to_pylist()) == [
        f["id"] for f in good
    ]


def test_struct_metadata_rules_hold_without_json(client: Client) -> None:
    table = pa.table(
        {
            "id": ["inf", "dollar", "fine"],
            "sources": [[{"id": "c", "uri": f"s3://b/{i}.jpg"}] for i in range(3)],
            "meta": pa.array(
                [{"x": float("inf"), "ok": None}, {"x": 1.0, "$bad": 1}, {"x": 2.0, "$bad": None}],
                pa.struct([("x", pa.float64()), ("$bad", pa.int64())]),
            ),
        }
    )
    version = new_version(client, "struct-rules")
    failed = {f.frame["id"]: f.reason for f in version.add_frames(table)}
    assert set(failed) == {"inf", "dollar"}
    assert "inf" in failed["inf"] and "$bad" in failed["dollar"]
    row = version.get_frames_table(columns=["meta", "meta_num"]).to_pylist()[0]
    assert json.loads(row["meta"]) == {"x": 2.0} and row["meta_num"] == [("x", 2.0)]


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (pa.table({"id": ["a"], "sources": [[{"id": "c", "uri": "s3://b/a.jpg"}]], "city": ["x"]}), "city"),
        (pa.table({"id": ["a"]}), "'sources' column"),
        (pa.table({"id": ["a"], "sources": [[{"id": "c", "uri": "u", "colour": "red"}]]}), "colour"),
        (pa.table({"id": ["a"], "sources": ["s3://b/a.jpg"]}), "list of structs"),
        (pa.table({"id": [1], "sources": [[{"id": "c", "uri": "s3://b/a.jpg"}]]}), "text"),
        (pa.table({"id": ["a"], "sources": [[{"id": "c", "uri": "u", "width": "wide"}]]}), "integers"),
        (pa.table({"id": ["a"], "sources": [[{"id": "c", "uri": "u"}]], "meta": [b"x"]}), "meta"),
    ],
)
def test_columns_that_are_not_frame_columns_are_refused_and_nothing_is_written(
    client: Client, store: ObjectStore, table: pa.Table, says: str
) -> None:
    version = new_version(client, "refused")
    before = sorted(info.key for info in store.list(""))
    with pytest.raises(ValidationError, match=says):
        version.add_frames(table)
    assert sorted(info.key for info in store.list("")) == before
    assert version.get_frame_count() == 0


def test_ids_are_derived_as_for_dicts(client: Client) -> None:
    frames = [{k: v for k, v in frame_dict(i).items() if k != "id"} for i in range(6)]
    by_dict = new_version(client, "derived-dict")
    assert by_dict.add_frames(frames) == []
    by_arrow = new_version(client, "derived-arrow")
    assert by_arrow.add_frames(pa.Table.from_pylist(frames)) == []
    assert stored(by_arrow) == stored(by_dict)


def test_update_frames_takes_arrow_and_reports_unknown_ids(client: Client) -> None:
    version = new_version(client, "updates")
    assert version.add_frames(FRAMES[:10]) == []
    changed = [frame_dict(i, variant=1) for i in range(3)] + [frame_dict(99, variant=1)]
    failed = version.update_frames(as_json_text(changed))
    assert [(f.frame["id"], "not in version" in f.reason) for f in failed] == [("frame-0099", True)]
    rows = {r["id"]: r for r in stored(version)}
    assert len(rows) == 10
    assert rows["frame-0001"]["meta"]["score"] == pytest.approx(1.1)
    assert rows["frame-0005"]["meta"]["score"] == pytest.approx(0.5)


def test_queries_see_arrow_metadata(client: Client) -> None:
    version = new_version(client, "queried")
    assert version.add_frames(as_json_text(FRAMES)) == []
    view = DataView(client=client)
    view.add_query(
        dataset_name="queried", version_name=version.name, roi_query="cat", frame_query="meta.city:bremen"
    )
    expected = [
        f["id"]
        for f in FRAMES
        if f["meta"]["city"] == "bremen" and any("cat" in r["labels"] for r in f["rois"])
    ]
    assert expected
    assert sorted(f["id"] for f in view.to_dict(projection=["id"])) == expected


def test_frames_from_columns_maps_flat_columns(client: Client) -> None:
    flat = pa.table(
        {
            "path": [f"s3://bucket/img/{i:04d}.jpg" for i in range(4)],
            "key": [f"k{i}" for i in range(4)],
            "city": ["bremen", "paris", "bremen", None],
            "score": [0.1, 0.2, 0.3, 0.4],
            "w": [640, 640, 320, 320],
            "objects": [
                [{"label": "car", "bbox": [1.0, 2.0, 10.0, 20.0], "confidence": 0.9}],
                [],
                [{"label": "cat", "bbox": [0, 0, 5, 5]}, {"label": "dog", "bbox": [1, 1, 2, 2]}],
                None,
            ],
        }
    )
    table = arrowin.frames_from_columns(
        flat, uri="path", id="key", width="w", meta=["city", "score"], rois="objects"
    )
    version = new_version(client, "flat")
    assert version.add_frames(table) == []
    rows = {r["id"]: r for r in stored(version)}
    assert rows["k0"]["rois"][0]["poly"] == [1.0, 2.0, 11.0, 2.0, 11.0, 22.0, 1.0, 22.0]
    assert rows["k0"]["rois"][0]["type"] == "box2d" and rows["k0"]["rois"][0]["labels"] == ["car"]
    assert rows["k2"]["labels"] == ["cat", "dog"] and rows["k3"]["rois"] == []
    assert rows["k0"]["meta"] == {"city": "bremen", "score": 0.1} and rows["k3"]["meta"] == {"score": 0.4}
    assert rows["k1"]["sources"][0]["width"] == 640 and rows["k1"]["sources"][0]["id"] == "default"
    single = version.get_single_frame("k0")
    assert single.metadata == {"city": "bremen", "score": 0.1}


def test_frames_from_columns_refuses_what_it_cannot_map() -> None:
    flat = pa.table({"path": ["s3://b/a.jpg"], "objects": [[{"bbox": [1.0, 2.0, 3.0]}]]})
    with pytest.raises(ValidationError, match="no column 'nope'"):
        arrowin.frames_from_columns(flat, uri="nope")
    with pytest.raises(ValidationError, match="4 numbers"):
        arrowin.frames_from_columns(flat, uri="path", rois="objects")
    with pytest.raises(ValidationError, match="list of structs"):
        arrowin.frames_from_columns(flat, uri="path", rois="path")


def test_a_large_table_lands_in_several_segments(client: Client) -> None:
    frames = [frame_dict(i) for i in range(300)]
    version = new_version(client, "segments")
    assert version.add_frames(pa.Table.from_pylist(frames), segment_rows=100) == []
    assert len(client.frames.refs(version._entry)) == 3
    assert version.get_frame_count() == 300
    ids = version.get_frames_table(columns=["id"]).column("id")
    assert pc.count_distinct(ids).as_py() == 300


def test_rows_land_as_given_indexed_and_failures_come_in_input_order(client: Client) -> None:
    # a segment keeps its rows in the order given, with its ids indexed: what lands, which
    # duplicate wins and the order failures are reported in are those of the input
    good = [frame_dict(i) for i in range(60)]
    later = {**frame_dict(7, variant=1)}  # frame-0007 again, later in the input: it wins
    cases = [row for row, _, _ in bad_rows()]
    rows: list[dict[str, Any]] = []
    order = [(i * 37) % 60 for i in range(60)]  # every frame once, out of id order
    for n, i in enumerate(order):
        rows.append(good[i])
        if n % 6 == 5 and cases:
            rows.append(cases.pop())  # bad rows of every kind (per-frame path or not), interleaved
    rows.append(later)
    table = pa.Table.from_pylist(
        [{**r, "meta": r["meta"] if isinstance(r["meta"], str) else json.dumps(r["meta"])} for r in rows]
    )
    version = new_version(client, "shuffled")
    failed = version.add_frames(table, segment_rows=25)
    bad_ids = [r["id"] for r in rows if r["id"] in {row["id"] for row, _, _ in bad_rows()}]
    assert [f.frame["id"] for f in failed] == bad_ids
    reference = new_version(client, "in-order")
    assert reference.add_frames([good[i] for i in range(60) if i != 7] + [later]) == []
    assert stored(version) == stored(reference)
    for ref in client.frames.refs(version._entry):  # each segment's rows as given, their ids indexed
        data = client.store.get_range(ref.key, 0, ref.size)
        whole = segments.from_parquet(data, ref.key, segments.INDEXED_SCHEMA.names)
        segments.check_index(whole, ref.key)
        ids = whole.column("id").to_pylist()
        assert whole.column(segments.SORTED_ID).to_pylist() == sorted(ids)
        given = [r["id"] for r in rows if r["id"] in set(ids) and r["id"] != later["id"]]
        assert [i for i in ids if i != later["id"]] == given  # in input order


def test_a_table_whose_frames_have_no_roi_is_taken_as_arrow_infers_it(client: Client) -> None:
    # ``pa.Table.from_pylist`` makes ``rois: []`` in every row a list of nulls (no struct to check)
    rows = [
        {"id": f"e{i}", "sources": [{"id": "cam", "uri": f"s3://b/{i}.jpg"}], "rois": []} for i in range(3)
    ]
    table = pa.Table.from_pylist(rows)
    assert pa.types.is_null(table.schema.field("rois").type.value_type)
    version = new_version(client, "no-rois")
    assert version.add_frames(table) == []
    assert version.get_frame_count() == 3
    assert version.get_single_frame("e1").get_all_annotations() == []
    reference = new_version(client, "no-rois-dicts")
    assert reference.add_frames(rows) == []
    assert stored(version) == stored(reference)
