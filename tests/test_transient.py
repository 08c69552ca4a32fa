"""Transient S3 faults (503 SlowDown, 500, connection resets, read timeouts, cut-off bodies) are retried.

A fault-injecting proxy (tests/faultproxy.py) sits between S3Store and moto's HTTP server. It logs
what reached the server, so the tests check at the server side that nothing was written twice: no
(key, bytes) pair and no document ``txn`` lands more than once, even when a conditional PUT's first
attempt landed and only its answer was lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy

from hds_s3 import Client, ConflictError, Dataset, DatasetVersion, StorageError, ValidationError
from hds_s3.model.frames import SingleFrame
from hds_s3.store import S3Store
from hds_s3.store.base import content_etag

BUCKET = "hds-transient"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    direct = S3Store(BUCKET, endpoint_url=moto_endpoint)
    direct.create_bucket()
    fault_proxy = FaultProxy(moto_endpoint, seed=7)
    fault_proxy.start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def store_behind(proxy: FaultProxy, **options: object) -> S3Store:
    # read_timeout bounds how long a "stall" fault holds a request; it is no assertion on time.
    settings: dict[str, object] = {"max_attempts": 6, "connect_timeout": 2.0, "read_timeout": 2.0}
    settings.update(options)
    return S3Store(
        BUCKET,
        f"t-{uuid.uuid4().hex[:10]}",
        endpoint_url=proxy.endpoint,
        **settings,  # type: ignore[arg-type]
    )


def assert_nothing_written_twice(proxy: FaultProxy) -> None:
    twice = {k: n for k, n in proxy.landed_puts().items() if n > 1}
    assert not twice, f"written more than once at the server: {twice}"
    txns = {k: n for k, n in proxy.landed_txns().items() if n > 1}
    assert not txns, f"document transactions that landed more than once: {txns}"


# ---------------------------------------------------------------------------- one fault, one request

PUT_FAULTS = ["503", "500", "reset", "reset_after", "stall", "stall_after"]


@pytest.mark.parametrize("fault", PUT_FAULTS)
@pytest.mark.parametrize("condition", ["create", "if_match", "plain"])
def test_a_put_meeting_a_fault_is_retried_and_lands_once(
    proxy: FaultProxy, fault: str, condition: str
) -> None:
    store = store_behind(proxy)
    old = store.put("doc.json", b'{"v": 1}') if condition == "if_match" else None
    proxy.add(fault, at=[1], methods=["PUT"])
    body = b'{"v": 2, "txn": "t-' + fault.encode() + b'"}'
    if condition == "create":
        etag = store.put("doc.json", body, if_none_match=True)
    elif condition == "if_match":
        etag = store.put("doc.json", body, if_match=old)
    else:
        etag = store.put("doc.json", body)
    assert etag == content_etag(body)
    assert store.get("doc.json") == (body, etag)
    puts = [e for e in proxy.entries("PUT") if e.body_md5 == content_etag(body)]
    assert len(puts) >= 2 and puts[0].action == fault  # the fault was met, then the put was sent again
    if condition != "plain" or fault not in ("reset_after", "stall_after"):
        assert_nothing_written_twice(proxy)
    else:
        # An unconditional put cannot tell a lost answer from a lost request: it is sent again
        # and lands again, with the same bytes (hds_s3 writes nothing unconditionally).
        assert sum(1 for e in puts if e.landed) >= 2


@pytest.mark.parametrize("fault", ["503", "500", "reset", "stall", "truncate"])
def test_reads_meeting_a_fault_are_retried(proxy: FaultProxy, fault: str) -> None:
    store = store_behind(proxy)
    data = bytes(range(256)) * 64
    etag = store.put("blob", data)
    proxy.add(fault, at=[1, 2], methods=["GET"])
    assert store.get("blob") == (data, etag)
    proxy.clear()
    proxy.add(fault, at=[1], methods=["GET"])
    assert store.get_range("blob", 100, 1000) == data[100:1100]
    proxy.clear()
    if fault != "truncate":
        proxy.add(fault, at=[1], methods=["HEAD"])
        assert store.head("blob").size == len(data)
        proxy.clear()
        proxy.add(fault, at=[1], methods=["GET"], path_contains=f"/{BUCKET}")
        assert [i.key for i in store.list("")] == ["blob"]
    assert sum(proxy.faults().values()) >= 3


def test_a_lost_answer_to_a_create_after_a_rival_wrote_is_still_a_conflict(proxy: FaultProxy) -> None:
    # The first attempt never reached the server (a reset): the 412 of the retry is a real conflict.
    store = store_behind(proxy)
    store.put("claim", b"theirs", if_none_match=True)
    proxy.add("reset", at=[1], methods=["PUT"])
    with pytest.raises(ConflictError):
        store.put("claim", b"mine", if_none_match=True)
    assert store.get("claim")[0] == b"theirs"


# ---------------------------------------------------------------------------- limits


def test_max_attempts_bounds_the_retries_and_the_error_says_so(proxy: FaultProxy) -> None:
    store = store_behind(proxy, max_attempts=3)
    proxy.add("500", fraction=1.0)
    with pytest.raises(StorageError) as info:
        store.put("doc", b"x", if_none_match=True)
    assert "InternalError" in str(info.value) and "3 attempts" in str(info.value)
    assert "'doc'" in str(info.value) and store.url in str(info.value)
    assert len(proxy.entries("PUT")) == 3


def test_a_spent_retry_budget_stops_retrying(proxy: FaultProxy) -> None:
    store = store_behind(proxy, max_attempts=10, retry_budget=0)
    proxy.add("503", fraction=1.0)
    with pytest.raises(StorageError, match="SlowDown"):
        store.get("doc")
    assert len(proxy.entries("GET")) == 1


def test_connection_resets_past_the_limit_are_a_storage_error(proxy: FaultProxy) -> None:
    store = store_behind(proxy, max_attempts=2)
    proxy.add("reset", fraction=1.0)
    with pytest.raises(StorageError) as info:
        store.head("doc")
    assert store.url in str(info.value) and info.value.__cause__ is not None
    assert len(proxy.entries("HEAD")) == 2


def test_adaptive_mode_retries_throttling(proxy: FaultProxy) -> None:
    store = store_behind(proxy, retry_mode="adaptive")
    assert store.client.meta.config.retries["mode"] == "adaptive"
    proxy.add("503", at=[1])
    assert store.put("k", b"v", if_none_match=True) == content_etag(b"v")
    assert_nothing_written_twice(proxy)


def test_retry_settings_are_checked() -> None:
    for bad in ({"retry_mode": "legacy"}, {"max_attempts": 0}, {"read_timeout": -1}):
        with pytest.raises(ValidationError):
            S3Store("b", **bad)
    store = S3Store.from_url("s3://b/p?max_attempts=4&read_timeout=7&connect_timeout=2&retry_mode=adaptive")
    config = store.client.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    assert (config.read_timeout, config.connect_timeout) == (7, 2)
    with pytest.raises(ValidationError, match="unknown option"):
        S3Store.from_url("s3://b/p?colour=blue")


# ---------------------------------------------------------------------------- whole operations


def frames(start: int, count: int) -> list[SingleFrame]:
    out = []
    for i in range(start, start + count):
        f = SingleFrame(source=f"s3://raw/img/{i:04d}.jpg", width=64, height=48, metadata={"i": i})
        f.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["car" if i % 2 else "bus"])
        out.append(f)
    return out


@pytest.mark.slow  # a whole life cycle under random faults; each fault has its own quick test above
def test_dataset_version_and_frame_operations_complete_under_random_faults(proxy: FaultProxy) -> None:
    store = store_behind(proxy, max_attempts=8)
    client = Client(store)
    # Lost answers of landed PUTs at fixed places, and a random share of every fault everywhere.
    proxy.add("reset_after", at=[2, 6, 11, 15], methods=["PUT"])
    proxy.add("stall_after", at=[4, 9], methods=["PUT"])
    for fault in ("503", "500", "reset", "reset_after", "stall_after"):
        proxy.add(fault, fraction=0.04)
    draft = DatasetVersion.create_new_dataset(dataset_name="under fire", tags=["t"], client=client)
    assert draft.add_frames(frames(0, 30)) == []
    draft.add_frames(frames(30, 20))
    DatasetVersion.create_snapshot(dataset_name="under fire", publish_name="v1", client=client)
    child = DatasetVersion.create_version(
        dataset_name="under fire", parent_version_names=["v1"], version_name="child", client=client
    )
    child.add_frames(frames(50, 10))
    child.publish_version()
    ds = Dataset.get(dataset_name="under fire", client=client)
    ds.set_description("survived")
    proxy.clear()  # read back without faults
    ds = Dataset.get(dataset_name="under fire", client=Client(store))
    assert ds.description == "survived"
    names = sorted(v.name for v in ds.get_versions())
    assert names == sorted(["v1", "Current", "child"]), names
    v1 = DatasetVersion.get_version(dataset_name="under fire", version_name="v1", client=client)
    assert v1.get_frame_count() == 50
    got = DatasetVersion.get_version(dataset_name="under fire", version_name="child", client=client)
    assert got.is_published and got.get_frame_count() == 60
    lost_answers = [
        e for e in proxy.entries("PUT") if e.landed and e.action in ("reset_after", "stall_after")
    ]
    print(f"faults met: {dict(proxy.faults())}; landed PUTs whose answer was lost: {len(lost_answers)}")
    assert lost_answers, "no landed PUT lost its answer: the test proves nothing (change the seed)"
    assert_nothing_written_twice(proxy)


# A sweep over every PUT, like the crash sweeps: the answers lost after the write (a reset, a stall of a
# read timeout per PUT) run with the slow tier; the quick tier sweeps with 500 and meets every fault once
# per kind of write in test_a_put_meeting_a_fault_is_retried_and_lands_once above.
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("reset_after", marks=pytest.mark.slow),
        pytest.param("stall_after", marks=pytest.mark.slow),
        "500",
    ],
)
def test_every_put_of_a_snapshot_meeting_a_fault_commits_once(proxy: FaultProxy, fault: str) -> None:
    """For every k, the k-th PUT of a snapshot meets the fault; the snapshot happens exactly once."""
    k = 1
    while True:
        store = store_behind(proxy)
        client = Client(store)
        DatasetVersion.create_new_dataset(dataset_name="snap", client=client)
        DatasetVersion.get_current(dataset_name="snap", client=client).add_frames(frames(0, 3))
        proxy.clear()
        before = len(proxy.entries("PUT"))
        rule = proxy.add(fault, at=[k], methods=["PUT"])
        DatasetVersion.create_snapshot(dataset_name="snap", publish_name="v1", client=client)
        puts = len(proxy.entries("PUT")) - before
        proxy.clear()
        versions = Dataset.get(dataset_name="snap", client=client).get_versions()
        assert sorted(v.name for v in versions) == ["Current", "v1"]
        assert [v.name for v in versions if v.is_published] == ["v1"]
        assert_nothing_written_twice(proxy)
        if rule.injected == 0 or k >= puts:
            break
        k += 1
    assert k > 1
