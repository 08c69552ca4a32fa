"""Security: read-only credentials, secrets kept out of messages and logs, SSE, names kept in their prefix."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, Dataset, DatasetVersion, HdsError, StorageError, ValidationError
from hds_s3.format import layout
from hds_s3.model.frames import SingleFrame
from hds_s3.store import LocalStore, MemoryStore, ObjectStore, S3Store
from hds_s3.store.readonly import ReadOnlyStore
from hds_s3.store.s3 import check_key

SECRET = "hdsSECRET-wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
TOKEN = "hdsTOKEN-IQoJb3JpZ2luX2VjEOr-FwoGZXIvYXdzEBYaDH"
PASSWORD = "hdsPASSWORD-s3cr3t-in-url"
ALL_SECRETS = (SECRET, TOKEN, PASSWORD)


def texts_of(error: BaseException) -> list[str]:
    """str and repr of an error and of every exception chained to it."""
    out: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        out += [str(item), repr(item)]
        todo += [item.__cause__, item.__context__]
    return out


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"a secret leaked into: {text[:300]}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, botocore's included (it prints request headers there)."""
    with caplog.at_level(logging.DEBUG):
        for name in ("botocore", "boto3", "urllib3", "hds_s3"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            yield caplog
        finally:
            for name in ("botocore", "boto3", "urllib3", "hds_s3"):
                logging.getLogger(name).setLevel(logging.NOTSET)


# ---------------------------------------------------------------------------- (a) read-only credentials


def build_dataset(client: Client) -> None:
    DatasetVersion.create_new_dataset(dataset_name="ro", tags=["t"], client=client)
    draft = DatasetVersion.get_current(dataset_name="ro", client=client)
    draft.set_masks_labels({(1, 2, 3): ["x"]})
    shot = SingleFrame(source="s3://b/a.jpg", id="a", metadata={"city": "bremen"})
    shot.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["car"])
    draft.add_frames([shot, SingleFrame(source="s3://b/b.jpg", id="b")])
    DatasetVersion.create_snapshot(dataset_name="ro", publish_name="v1", client=client)
    child = DatasetVersion.create_version(
        dataset_name="ro", parent_version_names=["v1"], version_name="child", client=client
    )
    child.add_frames([SingleFrame(source="s3://b/c.jpg", id="c")])


def read_everything(client: Client) -> None:
    ds = Dataset.get(dataset_name="ro", client=client)
    assert Dataset.exists(dataset_name="ro", client=client)
    assert [d.name for d in Dataset.list_datasets(tags=["t"], client=client)] == ["ro"]
    assert sorted(str(v.name) for v in ds.get_versions()) == ["Current", "child", "v1"]
    assert "v1 [published]" in ds.format_tree()
    v1 = DatasetVersion.get_version(dataset_name="ro", version_name="v1", client=client)
    assert v1.get_masks_labels() == {(1, 2, 3): ["x"]}
    assert v1.get_frame_count() == 2 and v1.get_single_frame("a").metadata == {"city": "bremen"}
    assert v1.get_stats()["labels"] == [{"name": "car", "count": 1}]
    assert sorted(str(f.id) for f in v1.iter_frames()) == ["a", "b"]
    child = DatasetVersion.get_version(dataset_name="ro", version_name="child", client=client)
    assert child.get_frames_table(columns=["id"]).num_rows == 3
    assert child.get_parent() is not None and child.get_parent().name == "v1"  # type: ignore[union-attr]


@pytest.mark.seaweedfs
def test_every_read_works_with_read_only_credentials_on_seaweedfs(seaweedfs_server: Any) -> None:
    prefix = f"ro-{uuid.uuid4().hex[:10]}"
    admin, reader = seaweedfs_server.env(), seaweedfs_server.read_only_env()

    def store(env: dict[str, str]) -> S3Store:
        return S3Store(
            "hds-test",
            prefix,
            endpoint_url=env["HDS_S3_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    build_dataset(Client(store(admin)))
    read_only = store(reader)
    read_everything(Client(read_only))
    # The identity really may not write: every kind of write is refused, and says why.
    for write in (
        lambda: read_only.put("x", b"y"),
        lambda: read_only.put("x", b"y", if_none_match=True),
        lambda: read_only.delete("_hds/store.json"),
    ):
        with pytest.raises(StorageError, match="access denied"):
            write()
    with pytest.raises(StorageError, match="access denied"):
        Dataset.get(dataset_name="ro", client=Client(read_only)).set_description("changed")
    with pytest.raises(StorageError, match="access denied"):
        DatasetVersion.get_version(
            dataset_name="ro", version_name="child", client=Client(read_only)
        ).add_frames([SingleFrame(source="s3://b/d.jpg", id="d")])
    read_everything(Client(read_only))  # the failed write changed nothing


def test_every_read_works_through_a_read_only_store_on_every_backend(store: ObjectStore) -> None:
    build_dataset(Client(store))
    reader = Client(ReadOnlyStore(store))
    read_everything(reader)
    with pytest.raises(StorageError, match="AccessDenied"):
        Dataset.get(dataset_name="ro", client=reader).set_description("changed")


# ---------------------------------------------------------------------------- (b) no secret leaks


def test_no_secret_in_errors_logs_or_reprs_against_a_real_http_server(
    moto_server: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    kwargs: dict[str, Any] = {
        "endpoint_url": moto_server,
        "aws_access_key_id": "AKIDHDSTEST",
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
        "max_attempts": 2,
    }
    S3Store("hds-sec", **kwargs).create_bucket()
    store = S3Store("hds-sec", f"p-{uuid.uuid4().hex[:8]}", **kwargs)
    errors: list[BaseException] = []
    store.put("doc", b"1", if_none_match=True)
    store.get("doc")
    list(store.list(""))
    for fail in (
        lambda: store.put("doc", b"2", if_none_match=True),  # 412
        lambda: store.get("missing"),  # 404
        lambda: S3Store("hds-no-such-bucket", **kwargs).get("k"),  # NoSuchBucket
        lambda: store.put("../escape", b"x"),  # refused key
    ):
        with pytest.raises(HdsError) as info:
            fail()
        errors.append(info.value)
    unreachable = S3Store(
        "b",
        endpoint_url=f"http://user:{PASSWORD}@127.0.0.1:9",
        aws_access_key_id="AKIDHDSTEST",
        aws_secret_access_key=SECRET,
        aws_session_token=TOKEN,
        max_attempts=1,
        connect_timeout=1,
    )
    with pytest.raises(StorageError) as info:
        unreachable.get("k")
    errors.append(info.value)
    texts = [repr(store), str(store), repr(unreachable), repr(Client(store)), repr(Client(unreachable))]
    texts += [str(unreachable.endpoint_url), unreachable.url]
    for error in errors:
        texts += texts_of(error)
    assert_no_secret(*texts, debug_logs.text)
    # The check is not vacuous: botocore logged the requests, and the token header was scrubbed.
    assert "x-amz-security-token" in debug_logs.text.lower() and "***" in debug_logs.text


def test_credentials_from_the_environment_stay_out_of_logs(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, debug_logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDHDSENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("HDS_S3_ENDPOINT_URL", moto_server)
    store = S3Store("hds-sec-env", "p")
    store.create_bucket()
    store.put("k", b"v")
    with pytest.raises(HdsError) as info:
        store.put("k", b"w", if_none_match=True)
    assert_no_secret(debug_logs.text, repr(store), *texts_of(info.value))
    assert TOKEN[:12] not in debug_logs.text


def test_a_botocore_error_whose_text_holds_a_secret_is_redacted_in_the_chain() -> None:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    store = S3Store("bkt", client=client, aws_secret_access_key=SECRET, aws_session_token=TOKEN)
    stub = Stubber(client)
    stub.add_client_error("get_object", "InternalError", f"echo {SECRET} and {TOKEN}", http_status_code=500)
    stub.add_client_error("put_object", "Weird", f"token {TOKEN}", http_status_code=400)
    with stub:
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v")):
            with pytest.raises(StorageError) as info:
                call()
            assert info.value.__cause__ is not None
            assert_no_secret(*texts_of(info.value))
            assert "***" in str(info.value)


# ---------------------------------------------------------------------------- (c) server-side encryption


def _stubbed(**kwargs: Any) -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x" * 40,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    return S3Store("bkt", "pre", client=client, **kwargs), Stubber(client)


def test_sse_kms_goes_with_every_put() -> None:
    store, stub = _stubbed(sse="aws:kms", sse_kms_key_id="alias/hds")
    base = {"Bucket": "bkt", "Key": "pre/k", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/hds"}
    for extra in ({}, {"IfNoneMatch": "*"}, {"IfMatch": '"e1"'}):
        stub.add_response("put_object", {"ETag": '"e2"'}, expected_params={**base, "Body": b"v", **extra})
    with stub:
        store.put("k", b"v")
        store.put("k", b"v", if_none_match=True)
        store.put("k", b"v", if_match="e1")
        stub.assert_no_pending_responses()
    assert "aws:kms" in repr(store)


def test_a_resent_put_under_sse_kms_is_recognised_by_its_bytes() -> None:
    # Under SSE-KMS the etag is not the MD5 of the content: the bytes are read back to decide.
    store, stub = _stubbed(sse="aws:kms")
    stub.add_client_error(
        "put_object", "PreconditionFailed", http_status_code=412, response_meta={"RetryAttempts": 1}
    )
    stub.add_response("head_object", {"ETag": '"kms-etag"', "ContentLength": 4})
    stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b"mine"), 4), "ETag": '"kms-etag"'})
    with stub:
        assert store.put("doc", b"mine", if_none_match=True) == "kms-etag"
        stub.assert_no_pending_responses()


@pytest.mark.parametrize("how", ["argument", "environment", "url"])
def test_sse_s3_is_stored_with_the_object(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    with mock_aws():
        S3Store("hds-sse").create_bucket()
        if how == "argument":
            store = S3Store("hds-sse", "p", sse="AES256")
        elif how == "environment":
            monkeypatch.setenv("HDS_S3_SSE", "AES256")
            store = S3Store("hds-sse", "p")
        else:
            store = S3Store.from_url("s3://hds-sse/p?sse=AES256")
        assert store.sse == "AES256"
        etag = store.put("doc.json", b"{}", if_none_match=True)
        store.put("doc.json", b"{1}", if_match=etag)
        head = store.client.head_object(Bucket="hds-sse", Key="p/doc.json")
        assert head["ServerSideEncryption"] == "AES256"
        kms = S3Store.from_url("s3://hds-sse/p?sse=aws:kms&kms_key_id=alias/hds")
        kms.put("kms.json", b"{}")
        head = kms.client.head_object(Bucket="hds-sse", Key="p/kms.json")
        assert head["ServerSideEncryption"] == "aws:kms"


def test_bad_encryption_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="AES256"):
        S3Store("b", sse="rot13")
    with pytest.raises(ValidationError, match="aws:kms"):
        S3Store("b", sse="AES256", sse_kms_key_id="alias/x")
    monkeypatch.setenv("HDS_S3_SSE_KMS_KEY_ID", "alias/x")
    with pytest.raises(ValidationError, match="HDS_S3_SSE_KMS_KEY_ID"):
        S3Store("b")
    assert S3Store("b", sse="aws:kms").sse_kms_key_id == "alias/x"


# ---------------------------------------------------------------------------- (d) names stay in the prefix

HOSTILE = [
    "../x",
    "../../etc/passwd",
    "..",
    ".",
    "%2e%2e/%2e%2e/x",
    "%2F..%2F",
    "/abs/path",
    "C:\\Windows\\x",
    "a/../../b",
    "a\x00b",
    "x" * 255,
    "é" * 127,
    "日本語/../データ",
    "\u202e/rtl",
    "~root",
    "name with spaces/and/slashes/",
    "_hds/datasets/x",
    "datasets/../_hds/store.json",
]
names = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(min_size=1, max_size=80),
    st.lists(
        st.sampled_from(["..", ".", "/", "%2e", "\\", "a", "é", "\x00", "~"]), min_size=1, max_size=12
    ).map("".join),
)


class RecordingStore(MemoryStore):
    """A memory store that remembers every key written."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.written: list[str] = []

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        self.written.append(key)
        return super().put(key, data, if_none_match=if_none_match, if_match=if_match)


def assert_layout_key(key: str) -> None:
    check_key(key)  # no escaping component, no control character
    assert key.startswith((layout.DATASET_CLAIMS_PREFIX, layout.DATASETS_PREFIX, layout.STORE_MARKER)), key
    assert "\\" not in key and len(key.encode()) < 512, key


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, version=names)
def test_hostile_dataset_and_version_names_write_only_layout_keys(name: str, version: str) -> None:
    store = RecordingStore()
    client = Client(store)
    try:
        Dataset.create(dataset_name=name, client=client)
    except ValidationError:
        assert store.written in ([], [layout.STORE_MARKER])
        return
    try:
        DatasetVersion.create_version(dataset_name=name, version_name=version, client=client)
    except ValidationError:
        pass
    assert Dataset.get(dataset_name=name, client=client).name == name
    for key in store.written:
        assert_layout_key(key)


def test_hostile_names_on_s3_stay_under_the_prefix() -> None:
    from moto import mock_aws

    with mock_aws():
        root = S3Store("hds-names")
        root.create_bucket()
        client = Client(S3Store("hds-names", "tenant/a"))
        created = []
        for name in HOSTILE:
            try:
                Dataset.create(dataset_name=name, client=client)
                created.append(name)
            except ValidationError:
                pass
        assert len(created) >= len(HOSTILE) - 3  # only NUL, '.'-only or too long names are refused
        keys = [info.key for info in root.list("")]
        assert keys and all(k.startswith("tenant/a/") for k in keys), keys
        assert sorted(d.name for d in Dataset.list_datasets(client=client)) == sorted(created)


@settings(max_examples=examples(120), deadline=None)
@given(key=names)
def test_s3_store_refuses_keys_that_could_leave_its_prefix(key: str) -> None:
    from moto import mock_aws

    with mock_aws():
        S3Store("hds-keys").create_bucket()
        store = S3Store("hds-keys", "tenant/a")
        try:
            store.put(key, b"x")
        except ValidationError:
            return
        parts = key.split("/")
        assert ".." not in parts and "." not in parts and "" not in parts
        assert all(i.key.startswith("tenant/a/") for i in S3Store("hds-keys").list(""))
        assert store.get(key)[0] == b"x"


@settings(
    max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=names)
def test_local_store_never_writes_outside_its_folder(tmp_path: Path, key: str) -> None:
    root = tmp_path / f"r-{uuid.uuid4().hex[:8]}"
    store = LocalStore(root / "store")
    try:
        store.put(key, b"x")
    except (ValidationError, StorageError):
        pass
    outside = [p for p in root.rglob("*") if not str(p).startswith(str(root / "store"))]
    assert not outside
    assert not (tmp_path / "x").exists()
