"""Stored documents: parsed in one place, unknown fields kept, damage reported with the key."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hds_s3 import Client, CorruptObjectError, Dataset, DatasetVersion, ValidationError
from hds_s3.format import layout
from hds_s3.format.docs import dumps_with_digest
from hds_s3.store import MemoryStore


@pytest.fixture
def client() -> Client:
    return Client(MemoryStore())


def _doc_key(client: Client, name: str) -> str:
    return layout.dataset_doc_key(Dataset.get(dataset_name=name, client=client).id)


def _edit(client: Client, key: str, edit: object) -> None:
    """Change a document as another (newer) hds_s3 would write it: its digest written anew."""
    data, etag = client.store.get(key)
    raw = json.loads(data)
    edit(raw)  # type: ignore[operator]
    client.store.put(key, dumps_with_digest(raw), if_match=etag)


def test_fields_written_by_a_newer_client_survive_our_writes(client: Client) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="n", client=client)
    key = _doc_key(client, "n")
    record = layout.record_key(draft.dataset_id, draft.id)

    def add_unknown(raw: dict) -> None:  # type: ignore[type-arg]
        raw["future_field"] = {"x": 1}

    def add_unknown_to_version(raw: dict) -> None:  # type: ignore[type-arg]
        raw["future_version_field"] = [1, 2]

    _edit(client, key, add_unknown)
    _edit(client, record, add_unknown_to_version)
    DatasetVersion.create_snapshot(dataset_name="n", publish_name="v1", client=client)
    Dataset.get(dataset_name="n", client=client).add_tags(["t"])
    assert json.loads(client.store.get(key)[0])["future_field"] == {"x": 1}
    raw = json.loads(client.store.get(record)[0])
    assert raw["future_version_field"] == [1, 2]
    assert raw["name"] == "v1"
    whole = Dataset.get(dataset_name="n", client=client)._doc.whole()
    assert whole.version(draft.id).extra == {"future_version_field": [1, 2]}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: b'{"format_version": 2, "id": ', "not valid JSON"),
        (lambda raw: json.dumps({**raw, "format_version": 9}).encode(), "format_version 9"),
        (lambda raw: json.dumps([raw]).encode(), "JSON object"),
        (lambda raw: json.dumps({**raw, "agg": {**raw["agg"], "drafts": 5}}).encode(), "malformed"),
        (lambda raw: json.dumps({**raw, "seq": "last"}).encode(), "seq"),
        (lambda raw: json.dumps({**raw, "tags": {"a": 1}}).encode(), "tags"),
    ],
)
def test_a_damaged_document_names_its_key_and_other_datasets_keep_working(
    client: Client, damage: object, message: str
) -> None:
    Dataset.create(dataset_name="broken", client=client)
    Dataset.create(dataset_name="fine", client=client)
    key = _doc_key(client, "broken")
    data, etag = client.store.get(key)
    damaged = damage(json.loads(data))  # type: ignore[operator]
    try:
        raw = json.loads(damaged)
    except ValueError:
        raw = None
    if isinstance(raw, dict):  # as a faulty writer would leave it: wrong, with a matching digest
        damaged = dumps_with_digest(raw)
    client.store.put(key, damaged, if_match=etag)
    with pytest.raises(CorruptObjectError, match=message) as info:
        Dataset.get(dataset_name="broken", client=client)
    assert key in str(info.value)
    DatasetVersion.create_snapshot(dataset_name="fine", client=client)
    assert len(Dataset.get(dataset_name="fine", client=client).get_versions()) == 2


def test_a_damaged_name_claim_is_reported_with_its_key(client: Client) -> None:
    Dataset.create(dataset_name="c", client=client)
    key = layout.dataset_claim_key("c")
    client.store.put(key, b"garbage", if_match=client.store.get(key)[1])
    with pytest.raises(CorruptObjectError, match="_hds/datasets/"):
        Dataset.get(dataset_name="c", client=client)


@given(st.text(min_size=1, max_size=200).filter(lambda s: s.strip() and len(s.encode()) <= 255))
def test_encoded_names_are_one_safe_key_component(name: str) -> None:
    try:
        enc = layout.encode_name(name)
    except ValidationError:
        assert any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name)
        return
    assert "/" not in enc and enc not in (".", "..") and not enc.startswith(".")
    assert len(enc) <= 120
    assert layout.encode_name(name) == enc


def test_encoding_tells_apart_case_and_shared_long_prefixes() -> None:
    assert layout.encode_name("Cars").lower() != layout.encode_name("cars").lower()
    long = "x" * 200
    assert layout.encode_name(long + "a") != layout.encode_name(long + "b")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "ABCDEF" * 6, "0" * 31])
def test_ids_from_users_cannot_reach_a_key(bad: str) -> None:
    with pytest.raises(ValidationError):
        layout.dataset_doc_key(bad)
    with pytest.raises(ValidationError):
        layout.segment_key("0" * 32, bad, "1" * 32)


def test_the_store_marker_is_written_once_and_checked(client: Client) -> None:
    Dataset.create(dataset_name="a", client=client)
    data, etag = client.store.get(layout.STORE_MARKER)
    assert json.loads(data)["format_version"] == layout.STORE_FORMAT
    other = Client(client.store)
    Dataset.create(dataset_name="b", client=other)
    assert client.store.get(layout.STORE_MARKER)[1] == etag
    client.store.put(layout.STORE_MARKER, b'{"format_version": 9}', if_match=etag)
    with pytest.raises(CorruptObjectError, match="upgrade"):
        Dataset.create(dataset_name="c", client=Client(client.store))


_REF = {"key": "datasets/d/segments/v/s.parquet", "kind": "frames", "rows": 2, "size": 10, "version": "v"}


@pytest.mark.parametrize(
    "field, change",
    [
        ("size", {"size": "many"}),
        ("size", {"size": -1}),
        ("rows", {"rows": 1.5}),
        ("rows", {"rows": True}),
        ("kind", {"kind": "other"}),
        ("key", {"key": 7}),
        ("min_id", {"min_id": 3}),
    ],
)
def test_a_manifest_field_of_the_wrong_type_is_corruption_naming_the_key_and_field(
    field: str, change: dict[str, object]
) -> None:
    from hds_s3.format.docs import parse_manifest

    raw = {"format_version": 1, "dataset_id": "d", "version_id": "v", "created": 1, "segments": [_REF]}
    assert parse_manifest(json.dumps(raw).encode(), "m.json").segments[0].size == 10
    raw["segments"] = [{**_REF, **change}]
    with pytest.raises(CorruptObjectError) as info:
        parse_manifest(json.dumps(raw).encode(), "m.json")
    assert "m.json" in str(info.value) and field in str(info.value)


@pytest.mark.parametrize(
    "disjoint, segments, message",
    [
        (2, [_REF], "not a count of its segments"),
        (-1, [_REF], "not a count"),
        ("all", [_REF], "not a count"),
        (2, [_REF, {**_REF, "kind": "deletes"}], "not all of them frames"),
    ],
)
def test_a_manifest_claiming_disjoint_segments_it_cannot_have_is_corruption(
    disjoint: object, segments: list[dict[str, object]], message: str
) -> None:
    from hds_s3.format.docs import dump_manifest, parse_manifest

    raw = {"format_version": 1, "dataset_id": "d", "version_id": "v", "created": 1, "segments": [_REF]}
    old = parse_manifest(json.dumps(raw).encode(), "m.json")
    assert old.disjoint == 0  # written before the field existed: nothing known
    assert parse_manifest(dump_manifest(old), "m.json") == old
    raw.update(segments=segments, disjoint=disjoint)
    with pytest.raises(CorruptObjectError, match=message):
        parse_manifest(json.dumps(raw).encode(), "m.json")


def test_a_document_changed_by_hand_is_refused_as_damaged_not_served(client: Client) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="h", client=client)
    draft.add_frames([])
    key = layout.record_key(draft.dataset_id, draft.id)
    raw = json.loads(client.store.get(key)[0])
    raw["comment"] = "edited by hand"  # valid JSON, valid fields: only the digest tells
    client.store.put(key, json.dumps(raw).encode())
    with pytest.raises(CorruptObjectError, match="digest") as info:
        DatasetVersion.get_version("h", version_id=draft.id, client=Client(client.store))
    assert key in str(info.value)
    del raw["digest"]
    client.store.put(key, json.dumps(raw).encode())
    with pytest.raises(CorruptObjectError, match="digest"):  # format-2 documents always carry one
        DatasetVersion.get_version("h", version_id=draft.id, client=Client(client.store))
