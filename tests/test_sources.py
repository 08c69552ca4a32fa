"""hds_s3.io.sources: reading source bytes from URLs, the bounded cache, and read-ahead."""

from __future__ import annotations

import importlib.util
import pickle
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from hds_s3.errors import NotFoundError, StorageError, ValidationError
from hds_s3.io.sources import SourceFetcher, prefetch
from hds_s3.store import S3Store

SOURCE_BUCKET = "hds-sources"


@pytest.fixture
def memory_dir() -> Iterator[str]:
    root = f"memory://sources-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture
def s3_sources(moto_server: str) -> dict[str, dict[str, str]]:
    """A bucket on moto's HTTP server; returns storage options that reach it."""
    store = S3Store(
        SOURCE_BUCKET,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store.create_bucket()
    return {"s3": {"endpoint_url": moto_server, "key": "testing", "secret": "testing"}}


def _put_s3(options: dict[str, dict[str, str]], key: str, data: bytes) -> str:
    store = S3Store(
        SOURCE_BUCKET,
        endpoint_url=options["s3"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store.put(key, data)
    return f"s3://{SOURCE_BUCKET}/{key}"


def test_reads_local_paths_file_urls_and_memory(tmp_path: Path, memory_dir: str) -> None:
    path = tmp_path / "a b.bin"
    path.write_bytes(b"local")
    with fsspec.open(f"{memory_dir}/x.bin", "wb") as f:
        f.write(b"in memory")
    fetcher = SourceFetcher()
    assert fetcher.fetch(str(path)) == b"local"
    assert fetcher.fetch(path.as_uri()) == b"local"
    assert fetcher.fetch(f"{memory_dir}/x.bin") == b"in memory"
    assert fetcher.size(f"{memory_dir}/x.bin") == len(b"in memory")
    assert fetcher.fetch(f"simplecache::{memory_dir}/x.bin") == b"in memory"


def test_missing_and_bad_urls_say_what(tmp_path: Path, memory_dir: str) -> None:
    fetcher = SourceFetcher()
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        fetcher.fetch(str(tmp_path / "nope.bin"))
    with pytest.raises(NotFoundError, match="memory://"):
        fetcher.fetch(f"{memory_dir}/nope.bin")
    with pytest.raises(ValidationError, match="directory"):
        fetcher.fetch(str(tmp_path))
    with pytest.raises(ValidationError, match="no protocol 'nosuchproto'"):
        fetcher.fetch("nosuchproto://x/y")
    with pytest.raises(ValidationError, match="non-empty string"):
        fetcher.fetch("")
    with pytest.raises(ValidationError, match="protocol to its options"):
        SourceFetcher({"s3": "not a mapping"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="cache_bytes"):
        SourceFetcher(cache_bytes=-1)


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is not None, reason="aiohttp is installed")
def test_http_without_aiohttp_names_the_missing_package() -> None:
    with pytest.raises(StorageError, match="needs a package for 'https'"):
        SourceFetcher().fetch("https://127.0.0.1:1/x.jpg")


def test_s3_through_moto_server_with_endpoint_in_storage_options(
    s3_sources: dict[str, dict[str, str]],
) -> None:
    uri = _put_s3(s3_sources, "images/0001.jpg", b"\xff\xd8jpeg")
    fetcher = SourceFetcher(s3_sources)
    assert fetcher.fetch(uri) == b"\xff\xd8jpeg"
    assert fetcher.size(f"s3://{SOURCE_BUCKET}/images/0001.jpg") == 6
    with pytest.raises(FileNotFoundError, match="images/missing.jpg"):
        fetcher.fetch(f"s3://{SOURCE_BUCKET}/images/missing.jpg")
    with pytest.raises(ValidationError, match="not an s3://bucket/key"):
        fetcher.fetch(f"s3://{SOURCE_BUCKET}")


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed and reads s3://")
def test_s3_without_s3fs_refuses_options_it_cannot_honour() -> None:
    with pytest.raises(ValidationError, match="need s3fs"):
        SourceFetcher({"s3": {"anon": True}}).fetch("s3://bucket/key")


def test_cache_is_bounded_in_bytes_and_lru(memory_dir: str) -> None:
    fs = fsspec.filesystem("memory")
    for name in "abcd":
        fs.pipe(f"{memory_dir}/{name}", name.encode() * 100)
    fs.pipe(f"{memory_dir}/big", b"x" * 1000)
    fetcher = SourceFetcher(cache_bytes=250)
    uri = {name: f"{memory_dir}/{name}" for name in ("a", "b", "c", "d", "big")}

    fetcher.fetch(uri["a"])
    fetcher.fetch(uri["b"])
    fetcher.fetch(uri["a"])  # hit: a becomes the most recently used
    fetcher.fetch(uri["c"])  # evicts b, the least recently used
    info = fetcher.cache_info()
    assert (info.hits, info.misses, info.items, info.currsize, info.maxsize) == (1, 3, 2, 200, 250)
    fetcher.fetch(uri["a"])
    assert fetcher.cache_info().hits == 2
    fetcher.fetch(uri["b"])
    assert fetcher.cache_info().misses == 4
    assert fetcher.fetch(uri["big"]) == b"x" * 1000  # larger than the cache: returned, not kept
    for name in "abcd":
        fetcher.fetch(uri[name])
        assert fetcher.cache_info().currsize <= 250
    assert fetcher.cache_info().items == 2

    fetcher.clear_cache()
    assert fetcher.cache_info() == type(info)(hits=0, misses=0, currsize=0, maxsize=250, items=0)

    off = SourceFetcher(cache_bytes=0)
    off.fetch(uri["a"])
    off.fetch(uri["a"])
    assert (off.cache_info().hits, off.cache_info().items) == (0, 0)


def test_fetcher_pickles_with_its_options_and_an_empty_cache(memory_dir: str) -> None:
    fsspec.filesystem("memory").pipe(f"{memory_dir}/a", b"a")
    fetcher = SourceFetcher({"memory": {}}, cache_bytes=1000)
    fetcher.fetch(f"{memory_dir}/a")
    copy = pickle.loads(pickle.dumps(fetcher))
    assert copy.storage_options == {"memory": {}}
    assert copy.cache_info().items == 0 and copy.cache_info().maxsize == 1000
    assert copy.fetch(f"{memory_dir}/a") == b"a"


def test_load_frame_copies_the_frame_and_adds_bytes(memory_dir: str) -> None:
    fs = fsspec.filesystem("memory")
    for name in ("img", "mask", "preview"):
        fs.pipe(f"{memory_dir}/{name}", name.encode())
    frame = {
        "id": "f1",
        "sources": [
            {
                "id": "cam",
                "uri": f"{memory_dir}/img",
                "masks": [{"id": "00", "uri": f"{memory_dir}/mask"}],
                "preview": {"uri": f"{memory_dir}/preview"},
            }
        ],
    }
    loaded = SourceFetcher().load_frame(frame, masks=True, previews=True)
    src = loaded["sources"][0]
    assert (src["data"], src["masks"][0]["data"], src["preview"]["data"]) == (b"img", b"mask", b"preview")
    assert "data" not in frame["sources"][0] and "data" not in frame["sources"][0]["masks"][0]
    assert "data" not in SourceFetcher().load_frame(frame)["sources"][0]["masks"][0]

    broken = {"id": "f2", "sources": [{"id": "cam", "uri": f"{memory_dir}/gone"}]}
    with pytest.raises(NotFoundError, match=r"frame 'f2' source 'cam'.*gone"):
        SourceFetcher().load_frame(broken)


def test_fetch_many_keeps_order(memory_dir: str) -> None:
    fs = fsspec.filesystem("memory")
    uris = []
    for i in range(20):
        fs.pipe(f"{memory_dir}/{i}", str(i).encode())
        uris.append(f"{memory_dir}/{i}")
    assert SourceFetcher().fetch_many(uris, threads=4) == [str(i).encode() for i in range(20)]


def test_prefetch_yields_in_order_and_stays_bounded() -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield i

    out = prefetch(items(), lambda i: i * i, ahead=4, threads=3)
    assert next(out) == 0
    assert pulled == 5  # the one consumed and 4 ahead, no more
    assert list(out) == [i * i for i in range(1, 50)]


def test_prefetch_raises_in_the_consumer_at_the_failing_item() -> None:
    def work(i: int) -> int:
        if i == 3:
            raise ValueError(f"item {i} is bad")
        return i

    seen = []
    with pytest.raises(ValueError, match="item 3 is bad"):
        for value in prefetch(range(10), work, ahead=5, threads=2):
            seen.append(value)
    assert seen == [0, 1, 2]


def test_prefetch_closed_early_cancels_pending_work() -> None:
    started: list[int] = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        gate.wait(5)
        return i

    out = prefetch(range(100), work, ahead=8, threads=1)
    gate.set()
    assert next(out) == 0
    out.close()
    assert len(started) <= 10
    with pytest.raises(ValidationError):
        prefetch(range(3), work, ahead=0)
