"""The dataset and version API, as a user of dataset.md depends on it, on every store."""

from __future__ import annotations

import re

import pytest

from hds_s3 import (
    AlreadyExistsError,
    Client,
    Dataset,
    DatasetVersion,
    HdsError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from hds_s3.store.base import ObjectStore

SNAPSHOT_NAME = re.compile(r"^snapshot \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture
def client(store: ObjectStore) -> Client:
    return Client(store)


def contents(store: ObjectStore) -> dict[str, bytes]:
    return {info.key: store.get(info.key)[0] for info in store.list("")}


def tree_of(client: Client, name: str) -> list[tuple[str, str, str | None]]:
    versions = DatasetVersion.get_versions(dataset_name=name, client=client)
    names = {v.id: v.name for v in versions}
    return sorted((v.name, v.status, names.get(v.parent_id) if v.parent_id else None) for v in versions)


# ------------------------------------------------------------------ datasets


def test_create_starts_with_one_empty_draft_named_current(client: Client) -> None:
    ds = Dataset.create(dataset_name="cars", tags=["a", "b"], description="street scenes", client=client)
    versions = ds.get_versions()
    assert [(v.name, v.status, v.parent_id) for v in versions] == [("Current", "draft", None)]
    again = Dataset.get(dataset_name="cars", client=client)
    assert (again.id, again.tags, again.description) == (ds.id, ["a", "b"], "street scenes")
    assert Dataset.get(dataset_id=ds.id, client=client).name == "cars"


def test_create_is_get_or_create_and_raise_if_exists_is_a_value_error(client: Client) -> None:
    first = Dataset.create(dataset_name="cars", client=client)
    assert Dataset.create(dataset_name="cars", client=client).id == first.id
    with pytest.raises(ValueError, match="cars"):
        Dataset.create(dataset_name="cars", raise_if_exists=True, client=client)
    with pytest.raises(AlreadyExistsError):
        DatasetVersion.create_new_dataset(dataset_name="cars", raise_if_exists=True, client=client)
    assert [d.id for d in Dataset.list_datasets(client=client)] == [first.id]


def test_create_new_dataset_returns_the_current_draft(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(
        dataset_name="two", tags=["One Tag", "Another Tag"], description="text", client=client
    )
    assert (ver.name, ver.status, ver.dataset_name) == ("Current", "draft", "two")
    ds = Dataset.get(dataset_name="two", client=client)
    assert ds.tags == ["One Tag", "Another Tag"] and ds.description == "text"
    assert DatasetVersion.get_current(dataset_name="two", client=client).id == ver.id


def test_missing_dataset_errors_name_it_and_say_what_to_do(client: Client) -> None:
    with pytest.raises(NotFoundError, match=r"'nope'.*Dataset.create") as info:
        Dataset.get(dataset_name="nope", client=client)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ValidationError):
        Dataset.get(client=client)
    with pytest.raises(ValidationError):
        Dataset.get(dataset_name="x", dataset_id="0" * 32, client=client)
    with pytest.raises(NotFoundError):
        Dataset.get(dataset_id="0" * 32, client=client)
    assert not Dataset.exists(dataset_name="nope", client=client)


def test_list_datasets_by_pattern_and_tags(client: Client) -> None:
    Dataset.create(dataset_name="cars-2024", tags=["street", "day"], client=client)
    Dataset.create(dataset_name="cars-2025", tags=["street", "night"], client=client)
    Dataset.create(dataset_name="birds", tags=["nature"], client=client)
    names = lambda found: [d.name for d in found]  # noqa: E731
    assert names(Dataset.list_datasets(client=client)) == ["birds", "cars-2024", "cars-2025"]
    assert names(Dataset.list_datasets(name_pattern="^cars", client=client)) == ["cars-2024", "cars-2025"]
    assert names(Dataset.list_datasets(tags=["street"], client=client)) == ["cars-2024", "cars-2025"]
    assert names(Dataset.list_datasets(tags=["street", "-night"], client=client)) == ["cars-2024"]
    assert names(DatasetVersion.get_datasets(tags=["nature"], client=client)) == ["birds"]
    with pytest.raises(ValidationError, match="regex"):
        Dataset.list_datasets(name_pattern="(", client=client)


def test_dataset_tags_description_and_metadata(client: Client) -> None:
    ds = Dataset.create(dataset_name="meta", client=client)
    ds.add_tags(["x", "y"])
    ds.add_tags("x")
    ds.remove_tags(["y", "absent"])
    ds.set_description("now described")
    ds.set_metadata({"owner": "team-a", "nested": {"k": [1, 2.5, None, True]}})
    fresh = Dataset.get(dataset_name="meta", client=client)
    assert fresh.tags == ["x"] and fresh.description == "now described"
    assert fresh.get_metadata() == {"owner": "team-a", "nested": {"k": [1, 2.5, None, True]}}


def test_delete_flags_guard_what_would_be_lost(client: Client) -> None:
    Dataset.create(dataset_name="empty", client=client)
    Dataset.delete(dataset_name="empty", delete_all_versions=False, force=False, client=client)
    assert not Dataset.exists(dataset_name="empty", client=client)

    DatasetVersion.create_new_dataset(dataset_name="pub", client=client)
    DatasetVersion.create_snapshot(dataset_name="pub", client=client)
    before = tree_of(client, "pub")
    for flags in ({}, {"delete_all_versions": True}):
        with pytest.raises(InvalidStateError, match="force=True"):
            Dataset.delete(dataset_name="pub", client=client, **flags)
    assert tree_of(client, "pub") == before
    Dataset.delete(dataset_name="pub", delete_all_versions=True, force=True, client=client)
    assert not Dataset.exists(dataset_name="pub", client=client)
    assert Dataset.list_datasets(client=client) == []
    with pytest.raises(NotFoundError):
        Dataset.delete(dataset_name="pub", client=client)


def test_a_deleted_name_can_be_created_again_with_a_new_id(client: Client, store: ObjectStore) -> None:
    old = Dataset.create(dataset_name="again", client=client)
    Dataset.delete(dataset_name="again", delete_all_versions=True, force=True, client=client)
    new = Dataset.create(dataset_name="again", raise_if_exists=True, client=client)
    assert new.id != old.id
    assert Dataset.get(dataset_name="again", client=client).id == new.id
    assert not any(old.id in key for key in contents(store))


# ------------------------------------------------------------------ versions


def test_snapshot_keeps_the_draft_id_and_adds_a_current_child(client: Client) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="snap", client=client)
    new_current = DatasetVersion.create_snapshot(dataset_name="snap", client=client)
    snap = DatasetVersion.get_version(dataset_name="snap", version_id=draft.id, client=client)
    assert snap.is_published and SNAPSHOT_NAME.match(snap.name), snap.name
    assert (new_current.name, new_current.status, new_current.parent_id) == ("Current", "draft", draft.id)
    assert DatasetVersion.get_current(dataset_name="snap", client=client).id == new_current.id


def test_snapshot_names_metadata_and_comment(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="snap", client=client)
    child = DatasetVersion.create_snapshot(
        dataset_name="snap",
        publish_name="v1",
        child_name="work",
        child_metadata={"abc": "1234", "def": "5678"},
        child_comment="some text comment",
        client=client,
    )
    assert child.name == "work" and child.comment == "some text comment"
    assert child.get_metadata() == {"abc": "1234", "def": "5678"}
    v1 = DatasetVersion.get_version(dataset_name="snap", version_name="v1", client=client)
    assert v1.is_published and child.parent_id == v1.id
    second = DatasetVersion.create_snapshot(dataset_name="snap", client=client)
    assert second.name == "Current"
    assert [v.status for v in DatasetVersion.get_versions(dataset_name="snap", client=client)] == [
        "published",
        "published",
        "draft",
    ]


@pytest.mark.parametrize("shape", ["two drafts", "branch", "no draft"])
def test_snapshot_is_refused_outside_the_simple_structure_with_the_reason(client: Client, shape: str) -> None:
    DatasetVersion.create_new_dataset(dataset_name="adv", client=client)
    if shape == "two drafts":
        DatasetVersion.create_version(dataset_name="adv", version_name="other root", client=client)
        reason = "2 draft versions"
    elif shape == "branch":
        DatasetVersion.create_snapshot(dataset_name="adv", publish_name="base", client=client)
        DatasetVersion.create_version(
            dataset_name="adv", version_name="side", parent_version_names=["base"], client=client
        )
        Dataset.get(dataset_name="adv", client=client).delete_version(version_name="Current")
        DatasetVersion.get_version(dataset_name="adv", version_name="side", client=client)
        DatasetVersion.create_version(
            dataset_name="adv", version_name="side2", parent_version_names="base", client=client
        )
        DatasetVersion.get_version(dataset_name="adv", version_name="side", client=client).publish_version()
        reason = "2 children"
    else:
        DatasetVersion.get_current(dataset_name="adv", client=client).publish_version()
        reason = "no draft"
    before = tree_of(client, "adv")
    with pytest.raises(InvalidStateError, match=reason):
        DatasetVersion.create_snapshot(dataset_name="adv", client=client)
    assert tree_of(client, "adv") == before


def test_snapshot_names_must_be_free(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="s", client=client)
    DatasetVersion.create_snapshot(dataset_name="s", publish_name="v1", client=client)
    with pytest.raises(AlreadyExistsError, match="v1"):
        DatasetVersion.create_snapshot(dataset_name="s", publish_name="v1", client=client)
    with pytest.raises(ValidationError):
        DatasetVersion.create_snapshot(dataset_name="s", publish_name="x", child_name="x", client=client)


def test_child_versions_need_a_published_parent_and_one_parent(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="kids", client=client)
    with pytest.raises(InvalidStateError, match="publish it first"):
        DatasetVersion.create_version(
            dataset_name="kids", version_name="c", parent_version_names=["Current"], client=client
        )
    DatasetVersion.create_snapshot(dataset_name="kids", publish_name="PublishedVersion", client=client)
    child = DatasetVersion.create_version(
        dataset_name="kids",
        parent_version_names=["PublishedVersion"],
        version_name="NewChildVersion",
        client=client,
    )
    parent = DatasetVersion.get_version(dataset_name="kids", version_name="PublishedVersion", client=client)
    assert child.parent_id == parent.id and child.is_draft
    same = DatasetVersion.create_version(
        dataset_name="kids",
        parent_version_names=["PublishedVersion"],
        version_name="NewChildVersion",
        client=client,
    )
    assert same.id == child.id
    with pytest.raises(ValueError, match="NewChildVersion"):
        DatasetVersion.create_version(
            dataset_name="kids",
            parent_version_names=["PublishedVersion"],
            version_name="NewChildVersion",
            raise_if_exists=True,
            client=client,
        )
    with pytest.raises(ValidationError, match="exactly one parent"):
        DatasetVersion.create_version(
            dataset_name="kids",
            parent_version_names=["PublishedVersion", "Current"],
            version_name="x",
            client=client,
        )
    by_id = DatasetVersion.create_version(
        dataset_name="kids", parent_version_ids=[parent.id], version_name="by id", client=client
    )
    assert by_id.parent_id == parent.id
    with pytest.raises(NotFoundError, match="no version named 'ghost'"):
        DatasetVersion.create_version(
            dataset_name="kids", parent_version_names=["ghost"], version_name="y", client=client
        )


def test_root_versions_have_no_parent(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="roots", client=client)
    root = DatasetVersion.create_version(dataset_name="roots", version_name="NewRootVersion", client=client)
    assert root.parent_id is None and root.is_draft


def test_get_version_by_name_id_or_current_with_warning(client: Client) -> None:
    only = DatasetVersion.create_new_dataset(dataset_name="g", client=client)
    assert (
        DatasetVersion.get_version(dataset_name="g", client=client).id == only.id
    )  # one version: no warning
    current = DatasetVersion.create_snapshot(dataset_name="g", publish_name="v1", client=client)
    with pytest.warns(UserWarning, match="2 versions"):
        assert DatasetVersion.get_version(dataset_name="g", client=client).id == current.id
    assert DatasetVersion.get_version(dataset_name="g", version_name="v1", client=client).id == only.id
    assert DatasetVersion.get_version(dataset_name="g", version_id=only.id, client=client).name == "v1"
    with pytest.raises(ValidationError):
        DatasetVersion.get_version(dataset_name="g", version_name="v1", version_id=only.id, client=client)
    with pytest.raises(NotFoundError, match="'nope'"):
        DatasetVersion.get_version(dataset_name="g", version_name="nope", client=client)


def test_get_versions_filters(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="f", client=client)
    DatasetVersion.create_snapshot(dataset_name="f", publish_name="p", client=client)
    assert [
        v.name for v in DatasetVersion.get_versions(dataset_name="f", only_published=True, client=client)
    ] == ["p"]
    assert [
        v.name for v in DatasetVersion.get_versions(dataset_name="f", only_draft=True, client=client)
    ] == ["Current"]
    with pytest.raises(ValidationError):
        DatasetVersion.get_versions(dataset_name="f", only_published=True, only_draft=True, client=client)


def test_current_is_the_draft_farthest_from_the_root(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="h", client=client)
    DatasetVersion.create_snapshot(dataset_name="h", publish_name="a", client=client)
    DatasetVersion.create_version(dataset_name="h", version_name="shallow root", client=client)
    deep = DatasetVersion.get_version(dataset_name="h", version_name="Current", client=client)
    assert DatasetVersion.get_current(dataset_name="h", client=client).id == deep.id


def test_publish_once_and_published_versions_do_not_change(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="p", client=client)
    ver.set_metadata({"k": 1})
    ver.publish_version()
    assert ver.is_published and ver.published is not None
    with pytest.raises(InvalidStateError, match="already published"):
        DatasetVersion.get_version(dataset_name="p", version_name="Current", client=client).publish_version()
    with pytest.raises(InvalidStateError, match="read-only"):
        ver.set_metadata({"k": 2})
    with pytest.raises(InvalidStateError):
        ver.set_masks_labels({(0, 0, 0): ["background"]})
    assert ver.get_metadata() == {"k": 1}


def test_rename_comment_and_tags(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="r", client=client)
    ver.set_version_name("2024-10-20 night run / été")
    ver.set_comment("first pass")
    ver.add_tags(["gold", "v"])
    ver.remove_tags("v")
    again = DatasetVersion.get_version(
        dataset_name="r", version_name="2024-10-20 night run / été", client=client
    )
    assert (again.id, again.comment, again.tags) == (ver.id, "first pass", ["gold"])
    DatasetVersion.create_version(dataset_name="r", version_name="other", client=client)
    with pytest.raises(AlreadyExistsError, match="other"):
        again.set_version_name("other")
    again.publish_version()
    again.set_version_name("renamed after publishing")
    assert again.name == "renamed after publishing"


def test_version_metadata_replaces_and_refuses_bad_keys(client: Client, store: ObjectStore) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="m", client=client)
    assert ver.get_metadata() == {}
    ver.set_metadata({"a": 1, "b": {"c": "d"}})
    ver.set_metadata({"z": [1, 2]})
    assert ver.get_metadata() == {"z": [1, 2]}
    before = contents(store)
    for bad in ({"a.b": 1}, {"$where": 1}, {"ok": {"bad.key": 1}}, {"ok": [{"$x": 1}]}, {"v": object()}, [1]):
        with pytest.raises(ValidationError):
            ver.set_metadata(bad)  # type: ignore[arg-type]
    assert contents(store) == before


def test_mask_labels_are_stored_as_the_reference_stores_them(client: Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="masks", client=client)
    ver.set_metadata({"keep": True})
    ver.set_masks_labels({(0, 0, 0): ["background"], (1, 1, 1): ["person", "sitting"], (2, 2, 2): ["cat"]})
    meta = DatasetVersion.get_version(
        dataset_name="masks", version_name="Current", client=client
    ).get_metadata()
    assert meta["mask_labels"] == {
        "_all_": [
            {"value": [0, 0, 0], "labels": ["background"]},
            {"value": [1, 1, 1], "labels": ["person", "sitting"]},
            {"value": [2, 2, 2], "labels": ["cat"]},
        ]
    }
    assert meta["keep"] is True
    assert ver.get_masks_labels()[(1, 1, 1)] == ["person", "sitting"]
    for bad in ({(0, 0): ["x"]}, {(0, 0, 256): ["x"]}, {(0, 0, 0): [1]}):
        with pytest.raises(ValidationError):
            ver.set_masks_labels(bad)  # type: ignore[arg-type]


def test_delete_version_drafts_only_or_the_subtree_with_force(client: Client, store: ObjectStore) -> None:
    DatasetVersion.create_new_dataset(dataset_name="d", client=client)
    DatasetVersion.create_snapshot(dataset_name="d", publish_name="base", client=client)
    DatasetVersion.create_version(dataset_name="d", version_name="VersionToDelete", client=client)
    ds = Dataset.get(dataset_name="d", client=client)
    ds.delete_version(version_name="VersionToDelete")
    assert [v.name for v in ds.get_versions()] == ["base", "Current"]
    with pytest.raises(InvalidStateError, match="force=True"):
        ds.delete_version(version_name="base")
    with pytest.raises(NotFoundError):
        ds.delete_version(version_name="VersionToDelete")
    ds.delete_version(version_name="base", force=True)
    assert ds.get_versions() == []
    with pytest.raises(NotFoundError, match="no versions"):
        ds.get_current()


# ------------------------------------------------------------------ names and errors


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "..", ".", "2024-10-20", "Ünïcødé ✓ 数据", "with spaces  ", "%2F", "~"]
)
def test_free_form_names_never_escape_the_prefix(client: Client, store: ObjectStore, name: str) -> None:
    ds = Dataset.create(dataset_name=name, client=client)
    ver = DatasetVersion.create_version(dataset_name=name, version_name=name + " v", client=client)
    assert Dataset.get(dataset_name=name, client=client).id == ds.id
    assert ver.name == name + " v"
    for key in contents(store):
        parts = key.split("/")
        assert (
            parts[0] in ("_hds", "datasets") and ".." not in parts and "." not in parts and "" not in parts
        ), key


@pytest.mark.parametrize("name", ["", "   ", "x" * 256, "é" * 128, "tab\there", "nl\n", "nul\x00", 5, None])
def test_bad_names_are_refused_and_change_nothing(client: Client, store: ObjectStore, name: object) -> None:
    Dataset.create(dataset_name="exists", client=client)
    before = contents(store)
    with pytest.raises(ValidationError):
        Dataset.create(dataset_name=name, client=client)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DatasetVersion.create_version(dataset_name="exists", version_name=name, client=client)  # type: ignore[arg-type]
    if name is not None:  # None asks for the default snapshot name
        with pytest.raises(ValidationError):
            DatasetVersion.create_snapshot(dataset_name="exists", publish_name=name, client=client)  # type: ignore[arg-type]
    assert contents(store) == before


def test_a_255_byte_name_is_fine(client: Client) -> None:
    name = "é" * 127 + "x"
    assert len(name.encode()) == 255
    assert Dataset.create(dataset_name=name, client=client).name == name


def test_every_error_is_an_hds_error() -> None:
    import hds_s3.errors as errors

    for exc in (getattr(errors, n) for n in errors.__all__):
        assert issubclass(exc, HdsError)


def test_a_snapshot_pinned_to_a_draft_someone_else_snapshotted_fails_and_changes_nothing(
    client: Client,
) -> None:
    seen = DatasetVersion.create_new_dataset(dataset_name="pin", client=client)
    DatasetVersion.create_snapshot(dataset_name="pin", publish_name="theirs", client=client)
    before = tree_of(client, "pin")
    with pytest.raises(InvalidStateError, match="another writer"):
        DatasetVersion.create_snapshot(dataset_name="pin", version_id=seen.id, client=client)
    assert tree_of(client, "pin") == before
