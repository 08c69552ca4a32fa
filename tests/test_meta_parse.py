"""Parsing the JSON meta of sources and ROIs into typed columns, as queries over them need."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from hds_s3.index.segments import parse_meta


def test_nested_keys_become_dotted_typed_columns_aligned_with_the_input() -> None:
    texts = pa.array(['{"area": 12.5, "hash": {"source": "h1"}}', None, '{"area": 3, "iscrowd": 1}'])
    table = parse_meta(texts)
    assert table.num_rows == 3
    assert table.column("area").to_pylist() == [12.5, None, 3.0]
    assert table.column("hash.source").to_pylist() == ["h1", None, None]
    assert table.column("iscrowd").to_pylist() == [None, None, 1]


def test_values_disagreeing_on_a_type_become_text() -> None:
    table = parse_meta(pa.array(['{"k": 1}', '{"k": "one"}', None, '{"k": 2.5}']))
    assert table.column("k").to_pylist() == ["1", "one", None, "2.5"]


def test_no_meta_at_all_gives_rows_without_columns() -> None:
    table = parse_meta(pa.chunked_array([pa.array([None, None], pa.string())]))
    assert (table.num_rows, table.num_columns) == (2, 0)


scalars = st.one_of(st.text(max_size=5), st.integers(-1000, 1000), st.booleans())
keys = st.text(alphabet="abcxyz", min_size=1, max_size=3)


@given(st.lists(st.one_of(st.none(), st.dictionaries(keys, scalars, max_size=3)), min_size=1, max_size=8))
def test_every_present_value_is_found_under_its_key(metas: list[dict[str, object] | None]) -> None:
    table = parse_meta(pa.array([None if m is None else json.dumps(m) for m in metas], pa.string()))
    assert table.num_rows == len(metas)
    for row, meta in enumerate(metas):
        for key, value in (meta or {}).items():
            found = table.column(key)[row].as_py()
            # where the values of a key disagree on a type they are all text; booleans as 0/1
            assert found in (value, str(int(value)) if isinstance(value, bool) else str(value))


def test_text_that_looks_like_a_date_stays_the_text_written() -> None:
    # Arrow's JSON reader takes "2024-10-01" for a timestamp; metadata keeps what the user wrote
    texts = pa.array(['{"date": "2024-10-01", "at": {"t": "2024-10-01T10:00:00"}}', None, '{"date": "soon"}'])
    table = parse_meta(texts)
    assert table.column("date").to_pylist() == ["2024-10-01", None, "soon"]
    assert table.column("at.t").to_pylist() == ["2024-10-01T10:00:00", None, None]
    only_dates = parse_meta(pa.array(['{"date": "2024-10-01"}', '{"date": "2024-10-02"}']))
    assert only_dates.column("date").type == pa.string()


def test_iso_dates_in_roi_metadata_and_in_arrow_json_text_are_queried_as_in_frame_dicts() -> None:
    # ROI metadata is parsed when a query asks; frame metadata given to add_frames as JSON text in
    # an Arrow table is parsed when it is stored: both once dropped the dates Arrow read as times
    from hds_s3 import Client, DatasetVersion, SingleFrame
    from hds_s3.query.lucene import match_ids
    from hds_s3.store import MemoryStore

    client = Client(MemoryStore())
    frames = []
    for i in range(4):
        f = SingleFrame(
            source=f"s3://b/{i}.jpg", width=8, height=8, id=f"f{i}", metadata={"date": f"2024-10-0{i + 1}"}
        )
        f.add_annotation(box2d_xywh=(1, 1, 2, 2), labels=["car"], metadata={"date": f"2024-10-0{i + 1}"})
        frames.append(f)
    dicts = DatasetVersion.create_new_dataset(dataset_name="dicts", client=client)
    assert dicts.add_frames(frames) == []
    rows = [{**f.to_dict(), "meta": json.dumps(f.to_dict()["meta"])} for f in frames]
    arrow = DatasetVersion.create_new_dataset(dataset_name="arrow", client=client)
    assert arrow.add_frames(pa.Table.from_pylist(rows)) == []
    for version in (dicts, arrow):
        assert match_ids(version, 'meta.date:"2024-10-02"').to_pylist() == ["f1"]
        assert match_ids(version, "meta.date:[2024-10-02 TO 2024-10-03]").to_pylist() == ["f1", "f2"]
        assert match_ids(version, "*", roi_query='meta.date:"2024-10-03"').to_pylist() == ["f2"]
        assert match_ids(version, "*", roi_query="meta.date:[2024-10-03 TO *]").to_pylist() == ["f2", "f3"]
    maps = [v.get_frames_table(columns=["id", "meta_str"]).sort_by("id").to_pylist() for v in (dicts, arrow)]
    assert maps[0] == maps[1]
