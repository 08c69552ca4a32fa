"""Hostile queries: deep nesting and huge texts are refused with the caret, never a RecursionError."""

from __future__ import annotations

import pytest

from hds_s3 import Client, DatasetVersion, DataView, SingleFrame
from hds_s3.errors import ValidationError
from hds_s3.query.lucene import MAX_QUERY_CHARS, MAX_QUERY_DEPTH, parse
from hds_s3.store import MemoryStore

TERM = 'meta.city:"bremen"'

DEEP = {
    "1,000 nested groups": "(" * 1000 + TERM + ")" * 1000,
    "2,000 chained NOTs": "NOT " * 2000 + TERM,
    "3,000 leading +": "+" * 3000 + TERM,
    "3,000 leading -": "-" * 3000 + TERM,
    "just past the limit": "(" * MAX_QUERY_DEPTH + TERM + ")" * MAX_QUERY_DEPTH,
}


@pytest.mark.parametrize("query", DEEP.values(), ids=DEEP.keys())
def test_a_deeply_nested_query_is_refused_with_the_reason(query: str) -> None:
    with pytest.raises(ValidationError, match=f"more than {MAX_QUERY_DEPTH} levels deep") as caught:
        parse(query)
    assert "^" in str(caught.value).splitlines()[-1], "the caret line is missing"


def test_a_query_nested_within_the_limit_works() -> None:
    depth = MAX_QUERY_DEPTH // 2 - 2
    query = parse("(" * depth + TERM + ' AND NOT meta.city:"paris"' + ")" * depth)
    assert "meta_str" in query.columns


def test_a_huge_query_is_refused_before_parsing() -> None:
    with pytest.raises(ValidationError, match="characters long; the limit is"):
        parse(" OR ".join([TERM] * (MAX_QUERY_CHARS // len(TERM) + 1)))


def test_a_dataview_with_a_deep_query_raises_validation_error_and_still_works_after() -> None:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="q", client=client)
    draft.add_frames([SingleFrame(source="s3://b/1.jpg", metadata={"city": "bremen"}, id="f1")])
    view = DataView(client=client)
    with pytest.raises(ValidationError, match="levels deep"):
        view.add_query(dataset_name="q", version_name=draft.name, frame_query=DEEP["2,000 chained NOTs"])
    view.add_query(dataset_name="q", version_name=draft.name, frame_query=TERM)
    assert view.get_count() == 1


@pytest.fixture
def view() -> DataView:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset(dataset_name="v", client=client)
    draft.add_frames([SingleFrame(source="s3://b/1.jpg", metadata={"city": "bremen"}, id="f1")])
    dv = DataView(client=client)
    dv.add_query(dataset_name="v", version_name=draft.name, frame_query=TERM)
    return dv


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"projection": ["sources.²"]}, "not a list position"),
        ({"projection": ["sources." + "9" * 5000]}, "not a list position"),
        ({"num_workers": 2**70, "worker_index": 0}, "num_workers must be a whole number"),
        ({"num_workers": 2, "worker_index": 2**70}, "worker_index must be a whole number"),
    ],
)
def test_hostile_iteration_arguments_raise_validation_error(
    view: DataView, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        list(view.get_iterator(**kwargs))  # type: ignore[arg-type]
    assert [f["sources"] for f in view.get_iterator(projection=["sources.0.uri"])] == [
        [{"uri": "s3://b/1.jpg"}]
    ]
