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
