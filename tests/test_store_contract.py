"""The ObjectStore contract, run against every backend, plus backend-specific behaviour."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import race_workers
from backends import StoreSpec
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber

from hds_s3.errors import ConflictError, HdsError, NotFoundError, StorageError, ValidationError
from hds_s3.store import FaultyStore, LocalStore, MemoryStore, ObjectStore, S3Store, open_store
from hds_s3.store.base import content_etag

NOT_ATOMIC = "conditional writes on {} are not atomic under races (docs/design.md section 9)"


def _require_atomic(spec: StoreSpec) -> None:
    if not spec.atomic:
        pytest.skip(NOT_ATOMIC.format(spec.name))


def _writers(spec: StoreSpec, wanted: int) -> int:
    # SeaweedFS stalls about a second per contended conditional write (docs/design.md section 9).
    return min(wanted, 4) if spec.name == "seaweedfs" else wanted


# ---------------------------------------------------------------------------- the contract


def test_protocol_and_url(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert "://" in store.url


def test_put_get_round_trip_and_etag_change(store: ObjectStore) -> None:
    etag1 = store.put("a/b/doc.json", b'{"x": 1}')
    assert store.get("a/b/doc.json") == (b'{"x": 1}', etag1)
    etag2 = store.put("a/b/doc.json", b'{"x": 2}')
    assert etag2 != etag1
    assert store.get("a/b/doc.json") == (b'{"x": 2}', etag2)
    assert etag2 == content_etag(b'{"x": 2}')  # simple puts: the MD5 of the content everywhere
    assert store.put("empty", b"") == content_etag(b"")
    assert store.get("empty") == (b"", content_etag(b""))


def test_create_only_on_existing_key_conflicts(store: ObjectStore) -> None:
    etag = store.put("claim", b"first", if_none_match=True)
    with pytest.raises(ConflictError) as info:
        store.put("claim", b"second", if_none_match=True)
    assert "claim" in str(info.value)
    assert store.get("claim") == (b"first", etag)


def test_stale_if_match_conflicts(store: ObjectStore) -> None:
    old = store.put("doc", b"v1")
    new = store.put("doc", b"v2")
    with pytest.raises(ConflictError):
        store.put("doc", b"v3", if_match=old)
    assert store.get("doc") == (b"v2", new)


def test_if_match_on_missing_key_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        store.put("missing", b"x", if_match=content_etag(b"whatever"))
    with pytest.raises(NotFoundError):
        store.get("missing")


def test_matching_if_match_succeeds(store: ObjectStore) -> None:
    etag = store.put("doc", b"v1")
    etag2 = store.put("doc", b"v2", if_match=etag)
    assert store.get("doc") == (b"v2", etag2)
    assert store.head("doc").etag == etag2
    etag3 = store.put("doc", b"v3", if_match=store.head("doc").etag)
    assert store.get("doc")[1] == etag3


def test_contradictory_preconditions_are_refused(store: ObjectStore) -> None:
    with pytest.raises(ValidationError):
        store.put("doc", b"x", if_none_match=True, if_match="abc")
    with pytest.raises(NotFoundError):
        store.get("doc")


@pytest.mark.slow_on("moto")  # 1005 PUTs in-process; S3 pages are crossed on moto_server and the servers
def test_list_past_1000_keys_in_key_order_with_prefix(store: ObjectStore) -> None:
    keys = [f"many/{i:05d}" for i in range(1001)]
    others = ["man", "many-x", "many0", "other/1"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys + others))
    listed = list(store.list("many/"))
    assert [i.key for i in listed] == keys
    assert listed[7].size == len(keys[7]) and listed[7].etag == content_etag(keys[7].encode())
    assert [i.key for i in store.list("many/0100")] == ["many/01000"]
    assert [i.key for i in store.list("")] == sorted(keys + others)
    assert [i.key for i in store.list("many")] == sorted([*keys, "many-x", "many0"])
    assert list(store.list("nothing/here")) == []


def test_list_order_across_folders(store: ObjectStore) -> None:
    # '-' and '.' sort before '/', so a folder must not be listed before a sibling that sorts first.
    keys = ["a/b", "a-c", "a.d", "a0", "ab/c", "a/c/d/e"]
    for key in keys:
        store.put(key, b"1")
    assert [i.key for i in store.list("")] == sorted(keys)
    assert [i.key for i in store.list("a")] == sorted(keys)
    assert [i.key for i in store.list("a/")] == ["a/b", "a/c/d/e"]
    assert [i.key for i in store.list("a/c")] == ["a/c/d/e"]


def test_ranged_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    store.put("blob", data)
    assert store.get_range("blob", 10, 20) == data[10:30]
    assert store.get_range("blob", 0, 1) == data[:1]
    assert store.get_range("blob", 1000, 100) == data[1000:]  # past the end: what is there
    assert store.get_range("blob", 1024, 10) == b""  # starts at the end
    assert store.get_range("blob", 5000, 10) == b""
    assert store.get_range("blob", 3, 0) == b""
    with pytest.raises(NotFoundError):
        store.get_range("nope", 0, 10)


def test_head(store: ObjectStore) -> None:
    etag = store.put("dir/obj", b"12345")
    info = store.head("dir/obj")
    assert (info.key, info.size, info.etag) == ("dir/obj", 5, etag)
    with pytest.raises(NotFoundError):
        store.head("dir/none")
    with pytest.raises(NotFoundError):
        store.head("dir")  # a "folder" is not an object


def test_head_and_list_report_when_an_object_was_written(store: ObjectStore) -> None:
    """gc ages unreferenced objects by their last-modified time (None: the store does not say)."""
    before = time.time()
    store.put("t/obj", b"1")
    written = store.head("t/obj").last_modified
    if written is None and not isinstance(store, (MemoryStore, LocalStore)):
        pytest.skip(f"{store.url} reports no last-modified time")
    assert written is not None and before - 300 <= written <= time.time() + 300  # server clocks drift
    assert [i.last_modified for i in store.list("t/")] == [written]


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("x/y", b"1")
    store.delete("x/y")
    store.delete("x/y")
    store.delete("never/was")
    with pytest.raises(NotFoundError):
        store.get("x/y")
    assert list(store.list("x")) == []
    store.put("x/y", b"again", if_none_match=True)  # a deleted key can be created again
    assert store.get("x/y")[0] == b"again"


def test_get_missing_is_not_found_and_file_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get("no/such/key")
    assert isinstance(info.value, FileNotFoundError)
    assert "no/such/key" in str(info.value)
    assert store.url.split("://", 1)[1].split("/")[0] in str(info.value)


def test_missing_bucket_is_a_storage_error_saying_to_create_it(store_spec: StoreSpec) -> None:
    if not store_spec.url.startswith("s3://"):
        pytest.skip(f"{store_spec.name} has no buckets")
    bucket = store_spec.url.split("//", 1)[1].split("/", 1)[0]
    url = store_spec.url.replace(f"s3://{bucket}/", "s3://hds-no-such-bucket/", 1)
    store = StoreSpec(store_spec.name, url, store_spec.env).make()
    for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: list(store.list(""))):
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, NotFoundError)
        assert "'hds-no-such-bucket'" in str(info.value) and "create" in str(info.value)


# ---------------------------------------------------------------------------- races (threads)


def test_create_race_threads_one_winner(store_spec: StoreSpec) -> None:
    _require_atomic(store_spec)
    store = store_spec.make()
    n = _writers(store_spec, 8)
    rounds = 5 if store_spec.name != "seaweedfs" else 3
    barrier = threading.Barrier(n)

    def contender(me: int) -> list[bool]:
        won = []
        for r in range(rounds):
            barrier.wait()
            try:
                store.put(f"race/{r}", f"writer {me}".encode(), if_none_match=True)
                won.append(True)
            except ConflictError:
                won.append(False)
        return won

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(contender, range(n)))
    for r in range(rounds):
        winners = [me for me in range(n) if results[me][r]]
        assert len(winners) == 1, f"round {r}: winners {winners}"
        assert store.get(f"race/{r}")[0] == f"writer {winners[0]}".encode()


def test_cas_increments_threads_no_lost_update(store_spec: StoreSpec) -> None:
    _require_atomic(store_spec)
    store = store_spec.make()
    n = _writers(store_spec, 8)
    per_thread = 10 if store_spec.name != "seaweedfs" else 4
    store.put("counter", b"0")
    barrier = threading.Barrier(n)

    def worker(_: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            while True:
                data, etag = store.get("counter")
                try:
                    store.put("counter", str(int(data) + 1).encode(), if_match=etag)
                    break
                except ConflictError:
                    pass

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(worker, range(n)))
    assert int(store.get("counter")[0]) == n * per_thread


# ---------------------------------------------------------------------------- races (processes)


def _processes(spec: StoreSpec) -> int:
    if not spec.multiprocess:
        pytest.skip(f"{spec.name} cannot be opened from another process")
    _require_atomic(spec)
    return 8 if spec.name == "local" else 4


def _run_processes(target: Any, args_for: Any, n: int) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return out


@pytest.mark.slow_on("local")  # spawned processes
def test_create_race_processes_one_winner(store_spec: StoreSpec) -> None:
    n = _processes(store_spec)
    keys = [f"claims/{i}" for i in range(10)]
    out = _run_processes(race_workers.create_race, lambda i: (store_spec.url, store_spec.env, keys, i), n)
    winners: dict[str, list[int]] = {k: [] for k in keys}
    for report in out:
        for me, key, won in report:
            if won:
                winners[key].append(me)
    store = store_spec.make()
    for key, who in winners.items():
        assert len(who) == 1, f"{key}: winners {who}"
        assert store.get(key)[0] == f"worker {who[0]}".encode()


@pytest.mark.slow_on("local")
def test_cas_increments_processes_no_lost_update(store_spec: StoreSpec) -> None:
    n = _processes(store_spec)
    rounds = 15 if store_spec.name == "local" else 4
    store = store_spec.make()
    store.put("counter", b"0")
    _run_processes(
        race_workers.cas_increments, lambda i: (store_spec.url, store_spec.env, "counter", rounds), n
    )
    assert int(store.get("counter")[0]) == n * rounds


# ---------------------------------------------------------------------------- open_store


def test_open_store_forms(tmp_path: Path) -> None:
    s3 = open_store("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Store) and s3.url == "s3://bucket/some/prefix"
    assert open_store("s3://bucket").url == "s3://bucket"
    assert open_store("memory://abc") is MemoryStore.named("abc")
    local = open_store(str(tmp_path / "x"))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "x"
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    assert open_store((tmp_path / "y").as_uri()).url == (tmp_path / "y").as_uri()
    for bad in ("", "gs://bucket/x", "s3://", "file://otherhost/x"):
        with pytest.raises(ValidationError) as info:
            open_store(bad)
        assert "s3://bucket" in str(info.value) or "file:///" in str(info.value)


def test_s3_store_does_not_connect_at_construction() -> None:
    store = S3Store("bucket", "p", endpoint_url="http://127.0.0.1:9")
    assert store._client is None  # noqa: SLF001 - lazily created
    assert pickle.loads(pickle.dumps(store)).url == "s3://bucket/p"


def test_s3_endpoint_precedence_and_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    assert S3Store("b").endpoint_url is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert S3Store("b").endpoint_url == "http://127.0.0.1:1"
    monkeypatch.setenv("HDS_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    store = S3Store("b")
    assert store.endpoint_url == "http://127.0.0.1:2"
    assert S3Store("b", endpoint_url="http://127.0.0.1:3").endpoint_url == "http://127.0.0.1:3"
    client = store.client
    assert client.meta.endpoint_url == "http://127.0.0.1:2"
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.retries["mode"] == "standard"
    assert store.client is client  # created once


# ---------------------------------------------------------------------------- LocalStore specifics


@pytest.mark.parametrize(
    "key", ["../x", "a/../b", "a/./b", "/abs", "a//b", "a/", ".hidden", "a/.b", ".hds-locks/x", "a\\b", ""]
)
def test_local_store_rejects_escaping_and_reserved_keys(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ValidationError):
        store.put(key, b"x")
    with pytest.raises(ValidationError):
        store.get(key)
    with pytest.raises(ValidationError):
        store.delete(key)
    assert not (tmp_path / "x").exists()


def test_local_store_hides_locks_and_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("a/b", b"1", if_none_match=True)
    store.put("a/b", b"2", if_match=content_etag(b"1"))
    (tmp_path / "store" / "a" / ".b.leftover.tmp").write_bytes(b"junk")
    assert (tmp_path / "store" / ".hds-locks").is_dir()
    assert [i.key for i in store.list("")] == ["a/b"]
    with pytest.raises(ValidationError):
        list(store.list("../"))
    assert store.url.startswith("file:///")


def test_local_store_key_under_an_object_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("a", b"1")
    with pytest.raises(StorageError) as info:
        store.put("a/b", b"2")
    assert "'a/b'" in str(info.value)
    with pytest.raises(NotFoundError):
        store.get("a/b")


# ---------------------------------------------------------------------------- S3Store with botocore's Stubber

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"


def _stubbed(**kwargs: Any) -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    store = S3Store("bkt", "pre/fix", client=client, **kwargs)
    store.conflict_wait_multiplier = 0.001
    store.conflict_max_wait = 0.005
    return store, Stubber(client)


def _put_ok(stub: Stubber, etag: str = '"e1"', **expected: Any) -> None:
    stub.add_response("put_object", {"ETag": etag}, expected_params=expected or None)


def test_s3_409_conditional_request_conflict_is_retried() -> None:
    store, stub = _stubbed()
    expected = {"Bucket": "bkt", "Key": "pre/fix/doc", "Body": b"x", "IfMatch": '"abc"'}
    for _ in range(2):
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    _put_ok(stub, '"new"', **expected)
    with stub:
        assert store.put("doc", b"x", if_match="abc") == "new"
        stub.assert_no_pending_responses()


def test_s3_persistent_409_is_a_conflict() -> None:
    store, stub = _stubbed()
    for _ in range(store.conflict_attempts):
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    with stub, pytest.raises(ConflictError) as info:
        store.put("doc", b"x", if_none_match=True)
    assert "s3://bkt/pre/fix" in str(info.value) and "'doc'" in str(info.value)
    assert info.value.__cause__ is not None
    stub.assert_no_pending_responses()


def test_s3_412_on_if_match_with_missing_key_is_not_found() -> None:
    # SeaweedFS answers 412 (not 404) for If-Match on a missing key: a HEAD decides.
    store, stub = _stubbed()
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_client_error("head_object", "404", http_status_code=404)
    with stub, pytest.raises(NotFoundError):
        store.put("doc", b"x", if_match="abc")
    stub.assert_no_pending_responses()


def test_s3_412_on_if_match_with_existing_key_is_a_conflict() -> None:
    store, stub = _stubbed()
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response("head_object", {"ETag": '"other"', "ContentLength": 3})
    with stub, pytest.raises(ConflictError) as info:
        store.put("doc", b"x", if_match="abc")
    assert info.value.__cause__ is not None


def test_s3_404_on_if_match_is_not_found() -> None:
    # AWS may answer 404 NoSuchKey to an If-Match put on a missing key.
    store, stub = _stubbed()
    stub.add_client_error("put_object", "NoSuchKey", http_status_code=404)
    stub.add_client_error("head_object", "404", http_status_code=404)
    with stub, pytest.raises(NotFoundError):
        store.put("doc", b"x", if_match="abc")


def test_s3_412_after_a_resent_put_that_landed_is_success() -> None:
    # botocore resent the put (first response lost); the object now holds exactly our bytes.
    store, stub = _stubbed()
    stub.add_client_error(
        "put_object", "PreconditionFailed", http_status_code=412, response_meta={"RetryAttempts": 1}
    )
    stub.add_response("head_object", {"ETag": f'"{content_etag(b"mine")}"', "ContentLength": 4})
    with stub:
        assert store.put("doc", b"mine", if_none_match=True) == content_etag(b"mine")
    # Without a resend, identical bytes written by someone else are still a lost race.
    store, stub = _stubbed()
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response("head_object", {"ETag": f'"{content_etag(b"mine")}"', "ContentLength": 4})
    with stub, pytest.raises(ConflictError):
        store.put("doc", b"mine", if_none_match=True)


def test_s3_missing_bucket_says_to_create_it() -> None:
    store, stub = _stubbed()
    stub.add_client_error("get_object", "NoSuchBucket", http_status_code=404)
    stub.add_client_error("put_object", "NoSuchBucket", http_status_code=404)
    with stub:
        for call in (lambda: store.get("doc"), lambda: store.put("doc", b"x", if_match="e")):
            with pytest.raises(StorageError) as info:
                call()
            assert not isinstance(info.value, NotFoundError)
            assert "'bkt'" in str(info.value) and "create" in str(info.value)


def test_s3_ranged_get_sends_a_range_header() -> None:
    store, stub = _stubbed()
    stub.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(b"cde"), 3), "ContentRange": "bytes 2-4/10", "ETag": '"e"'},
        expected_params={"Bucket": "bkt", "Key": "pre/fix/blob", "Range": "bytes=2-4"},
    )
    with stub:
        assert store.get_range("blob", 2, 3) == b"cde"


def test_s3_no_secret_in_repr_or_errors() -> None:
    store, stub = _stubbed()
    stub.add_client_error("get_object", "AccessDenied", "Access Denied", http_status_code=403)
    stub.add_client_error("put_object", "SignatureDoesNotMatch", "bad signature", http_status_code=403)
    with stub:
        errors: list[HdsError] = []
        for call in (lambda: store.get("k"), lambda: store.put("k", b"v")):
            with pytest.raises(StorageError) as info:
                call()
            errors.append(info.value)
    bare = S3Store(
        "bkt",
        endpoint_url="http://user:" + SECRET + "@127.0.0.1:9",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET,
        aws_session_token=SECRET + "TOKEN",
    )
    texts = [repr(store), str(store.url), repr(bare), str(bare.url), str(bare.endpoint_url)]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        assert SECRET not in text
    assert "credentials" in str(errors[0])


def test_s3_unreachable_endpoint_is_a_storage_error() -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET,
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1),
    )
    store = S3Store("bkt", client=client)
    with pytest.raises(StorageError) as info:
        store.get("k")
    assert "reach" in str(info.value) and SECRET not in str(info.value)
    assert info.value.__cause__ is not None


@pytest.mark.seaweedfs
def test_seaweedfs_refuses_wrong_credentials(seaweedfs_server: Any) -> None:
    env = seaweedfs_server.env()
    store = S3Store(
        "hds-test",
        "wrong-creds",
        endpoint_url=env["HDS_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=SECRET,
    )
    with pytest.raises(StorageError) as info:
        store.put("k", b"v")
    assert SECRET not in str(info.value) and "denied" in str(info.value)
    assert SECRET not in repr(store)


# ---------------------------------------------------------------------------- FaultyStore


def test_faulty_store_before_and_after() -> None:
    inner = MemoryStore()
    faulty = FaultyStore(inner, fail_at=2, mode="before")
    faulty.put("a", b"1")
    with pytest.raises(StorageError, match="injected fault at request 2: put b"):
        faulty.put("b", b"2")
    assert faulty.count == 2
    with pytest.raises(NotFoundError):
        inner.get("b")  # never performed

    faulty = FaultyStore(inner, fail_at=1, mode="after")
    with pytest.raises(StorageError, match="request 1: put b"):
        faulty.put("b", b"2")
    assert inner.get("b")[0] == b"2"  # performed; only the answer was lost

    faulty = FaultyStore(inner)
    items = faulty.list("")
    assert faulty.count == 1  # counted when called, once
    assert [i.key for i in items] == ["a", "b"]
    faulty.get("a")
    faulty.get_range("a", 0, 1)
    faulty.head("a")
    faulty.delete("a")
    assert faulty.count == 5
    assert faulty.log == [("list", ""), ("get", "a"), ("get_range", "a"), ("head", "a"), ("delete", "a")]
    assert faulty.url == inner.url


def test_faulty_store_fails_every_k_of_a_sequence() -> None:
    def transition(store: ObjectStore) -> None:
        data, etag = store.get("doc")
        store.put("seg", b"segment", if_none_match=True)
        store.put("doc", data + b"+", if_match=etag)

    for mode in ("before", "after"):
        for k in range(1, 4):
            inner = MemoryStore()
            inner.put("doc", b"v")
            faulty = FaultyStore(inner, fail_at=k, mode=mode)  # type: ignore[arg-type]
            with pytest.raises(StorageError):
                transition(faulty)
            assert faulty.count == k
            committed = inner.get("doc")[0] == b"v+"
            assert committed == (mode == "after" and k == 3)
    with pytest.raises(ValueError):
        FaultyStore(MemoryStore(), mode="sometimes")  # type: ignore[arg-type]
    assert Counter(op for op, _ in FaultyStore(MemoryStore()).log) == Counter()
