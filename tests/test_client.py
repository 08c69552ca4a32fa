"""Choosing a store, the default store, read-only use, and the commit loop's retry budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hds_s3 import (
    Client,
    ConflictError,
    Dataset,
    DatasetVersion,
    StorageError,
    ValidationError,
    connect,
    default_client,
    set_default_client,
)
from hds_s3.format.commit import RetryBudget, commit
from hds_s3.format.tree import set_comment
from hds_s3.model.frames import SingleFrame
from hds_s3.store import LocalStore, MemoryStore, ReadOnlyStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_default() -> Iterator[None]:
    set_default_client(None)
    yield
    set_default_client(None)


def test_the_default_store_is_the_folder_named_by_hds_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "here"))
    Dataset.create(dataset_name="d")
    assert isinstance(default_client().store, LocalStore)
    assert (tmp_path / "here" / "_hds" / "store.json").exists()
    # another process (here: another client on the same folder) sees it
    assert Dataset.get(dataset_name="d", client=connect(str(tmp_path / "here"))).name == "d"
    assert Dataset.get(dataset_name="d", client=connect((tmp_path / "here").as_uri())).name == "d"


def test_without_hds_store_the_default_is_a_folder_under_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HDS_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_client().url == (tmp_path / "hds_s3").as_uri()


def test_set_default_client_and_memory_urls() -> None:
    set_default_client("memory://shared-by-name")
    Dataset.create(dataset_name="m")
    assert Dataset.exists(dataset_name="m", client=connect("memory://shared-by-name"))
    assert not Dataset.exists(dataset_name="m", client=connect("memory://another"))


@pytest.mark.parametrize("url", ["ftp://host/x", "s3://", "file://otherhost/x", ""])
def test_unsupported_urls_are_refused_with_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValidationError, match="accepted forms|file:///"):
        connect(url)


def test_every_read_works_with_read_only_credentials() -> None:
    inner = MemoryStore()
    writer = Client(inner)
    DatasetVersion.create_new_dataset(dataset_name="ro", tags=["t"], client=writer)
    draft = DatasetVersion.get_current(dataset_name="ro", client=writer)
    draft.set_masks_labels({(1, 2, 3): ["x"]})
    shot = SingleFrame(source="s3://b/a.jpg", id="a")
    shot.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["car"])
    draft.add_frames([shot, SingleFrame(source="s3://b/b.jpg", id="b")])
    DatasetVersion.create_snapshot(dataset_name="ro", publish_name="v1", client=writer)
    reader = Client(ReadOnlyStore(inner))
    ds = Dataset.get(dataset_name="ro", client=reader)
    assert [d.name for d in Dataset.list_datasets(tags=["t"], client=reader)] == ["ro"]
    assert [v.name for v in ds.get_versions(only_published=True)] == ["v1"]
    v1 = DatasetVersion.get_version(dataset_name="ro", version_name="v1", client=reader)
    assert v1.get_masks_labels() == {(1, 2, 3): ["x"]}
    assert v1.get_frame_count() == 2 and v1.get_single_frame("a").source == "s3://b/a.jpg"
    assert v1.get_stats()["labels"] == [{"name": "car", "count": 1}]
    assert sorted(f.id for f in v1.iter_frames()) == ["a", "b"]
    assert DatasetVersion.get_current(dataset_name="ro", client=reader).get_frames_table().num_rows == 2
    assert DatasetVersion.get_current(dataset_name="ro", client=reader).name == "Current"
    assert "v1 [published]" in ds.format_tree()
    with pytest.raises(StorageError, match="read-only"):
        DatasetVersion.create_snapshot(dataset_name="ro", client=reader)


class CompetingStore(MemoryStore):
    """A store where another writer commits to a dataset just before each commit of ours lands."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Callable[[], object] | None = None

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        rival, self.rival = self.rival, None  # the rival's own commit goes straight through
        try:
            if rival is not None and if_none_match and "/log/" in key:
                rival()  # the rival wins the entry we are about to create
        finally:
            self.rival = rival
        return super().put(key, data, if_none_match=if_none_match, if_match=if_match)


def test_a_writer_that_always_loses_gives_up_with_conflict_error_and_changes_nothing() -> None:
    store = CompetingStore()
    ds = Dataset.create(dataset_name="busy", client=Client(store))
    vid = ds.get_current().id
    rival = Dataset.get(dataset_name="busy", client=Client(store))
    store.rival = lambda: rival.set_description(rival.reload().description + "+")
    with pytest.raises(ConflictError, match="gave up after 4 attempts"):
        commit(
            store,
            ds.id,
            lambda t: set_comment(t, vid, "mine"),
            what="comment",
            budget=RetryBudget(max_attempts=4, first_wait=0.001, max_wait=0.002),
        )
    store.rival = None
    again = Dataset.get(dataset_name="busy", client=Client(store))
    assert again.description == "++++" and again.get_current().comment == ""


def test_a_worker_client_shares_the_frame_index_kept_for_its_store(tmp_path: Path) -> None:
    from hds_s3.client import worker_client
    from hds_s3.index.plan import StoreSpec, frame_index

    spec = StoreSpec(str(tmp_path / "store"))
    client = worker_client(spec)
    assert client.frames is frame_index(spec) and client.catalog is client.frames.catalog
    assert worker_client(spec).frames is client.frames  # its caches serve the tasks that follow
    version = DatasetVersion.create_new_dataset(dataset_name="w", client=client)
    assert version.add_frames([SingleFrame(source="s3://b/1.jpg", id="one")]) == []
    assert DatasetVersion.get_version(dataset_name="w", client=Client(client.store)).get_frame_count() == 1

    with pytest.raises(ValidationError, match="frame index"):
        Client(MemoryStore(), frames=client.frames)
