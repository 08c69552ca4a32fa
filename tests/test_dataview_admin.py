"""Stored DataViews: listing, renaming and deleting them."""

from __future__ import annotations

import logging
import uuid

import pytest

import hds_s3
from hds_s3 import Client, DatasetVersion, InvalidStateError, SingleFrame, ValidationError
from hds_s3.errors import ConflictError
from hds_s3.format import layout
from hds_s3.query.dataview import DataView, DataViewNotFoundError


@pytest.fixture
def client() -> Client:
    c = hds_s3.connect(f"memory://views-{uuid.uuid4().hex}")
    v = DatasetVersion.create_new_dataset(dataset_name="zoo", client=c)
    v.add_frames([SingleFrame(source="s3://b/1.jpg", id="one")])
    return c


def stored_view(client: Client, name: str, tags: tuple[str, ...] = ()) -> DataView:
    dv = DataView(name=name, tags=list(tags), client=client)
    dv.add_query(dataset_name="zoo", version_name="Current")
    dv.store()
    return dv


def test_list_filters_by_name_and_tags_oldest_first(client: Client) -> None:
    a = stored_view(client, "train", ("cars",))
    b = stored_view(client, "val", ("cars", "night"))
    c = stored_view(client, "train-small")
    assert [v.id for v in DataView.list_dataviews(client=client)] == [a.id, b.id, c.id]
    assert [v.name for v in DataView.list_dataviews("^train", client=client)] == ["train", "train-small"]
    assert [v.name for v in DataView.list_dataviews(tags=["cars"], client=client)] == ["train", "val"]
    assert [v.name for v in DataView.list_dataviews(tags=["cars", "-night"], client=client)] == ["train"]
    listed = DataView.list_dataviews("^val$", client=client)[0]
    assert listed.get_count() == 1 and listed.get_definition()["queries"][0]["dataset_name"] == "zoo"
    with pytest.raises(ValidationError, match="regex"):
        DataView.list_dataviews("(", client=client)


def test_a_damaged_document_is_left_out_of_the_list_with_a_warning(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    good = stored_view(client, "good")
    bad = stored_view(client, "bad")
    assert bad.id is not None
    client.store.put(layout.dataview_doc_key(bad.id), b"not json")
    with caplog.at_level(logging.WARNING, logger="hds_s3"):
        assert [v.id for v in DataView.list_dataviews(client=client)] == [good.id]
    assert bad.id in caplog.text


def test_rename_moves_the_name(client: Client) -> None:
    dv = stored_view(client, "old")
    assert dv.rename("new") is dv and dv.name == "new"
    assert DataView.get(dataview_name="new", client=client).id == dv.id
    with pytest.raises(DataViewNotFoundError):
        DataView.get(dataview_name="old", client=client)
    assert [v.name for v in DataView.list_dataviews(client=client)] == ["new"]
    assert not list(client.store.list(layout.dataview_name_prefix("old")))


def test_rename_refuses_unstored_published_bad_names_and_stale_copies(client: Client) -> None:
    with pytest.raises(InvalidStateError, match="not stored"):
        DataView(name="x", client=client).rename("y")
    dv = stored_view(client, "a")
    with pytest.raises(ValidationError):
        dv.rename("")
    stale = DataView.get(dataview_id=dv.id, client=client)
    dv.rename("b")
    with pytest.raises(ConflictError):
        stale.rename("c")
    assert stale.name == "a"  # unchanged after the failure
    assert DataView.get(dataview_id=dv.id, client=client).name == "b"
    dv.publish()
    with pytest.raises(InvalidStateError, match="published"):
        dv.rename("d")


def test_delete_removes_the_view_and_its_name(client: Client) -> None:
    keep = stored_view(client, "keep")
    dv = stored_view(client, "gone")
    gone_id = dv.id
    assert gone_id is not None
    dv.publish()
    dv.delete()
    assert dv.id is None and dv.status == "draft"
    with pytest.raises(DataViewNotFoundError):
        DataView.get(dataview_id=gone_id, client=client)
    with pytest.raises(DataViewNotFoundError):
        DataView.get(dataview_name="gone", client=client)
    assert [v.id for v in DataView.list_dataviews(client=client)] == [keep.id]
    with pytest.raises(InvalidStateError, match="not stored"):
        dv.delete()
    assert dv.store() != gone_id  # stored again, as a new view
