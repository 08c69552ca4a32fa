"""PyTorch loaders over a DataView: map-style and iterable datasets, sharding, sources from file/memory/S3."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import pytest

from hds_s3 import DatasetVersion, SingleFrame, set_default_client
from hds_s3.errors import NotFoundError, ValidationError
from hds_s3.index import segments
from hds_s3.io.loaders import iter_frames
from hds_s3.io.sources import SourceFetcher
from hds_s3.query.dataview import DataView
from hds_s3.store import S3Store

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from torch.utils.data import DataLoader  # noqa: E402

from hds_s3.torch import DataViewDataset, DataViewIterableDataset, worker_shard  # noqa: E402

DATASET = "loader frames"
BUCKET = "hds-loader-sources"
SIZE = 64  # bytes per source


class VersionView:
    """Not a DataView: any object with the methods the loaders use will do (sequential order)."""

    def __init__(self, dataset_name: str, version_name: str) -> None:
        self.version = DatasetVersion.get_version(dataset_name=dataset_name, version_name=version_name)

    def _frames(self) -> list[dict[str, Any]]:
        frames = [segments.row_to_frame(r) for r in self.version.get_frames_table().to_pylist()]
        return sorted(frames, key=lambda f: (f["context_id"], f["timestamp"], f["id"]))

    def get_count(self) -> int:
        return len(self._frames())

    def to_dict(self, projection: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self._frames()

    def get_iterator(
        self,
        projection: Sequence[str] | None = None,
        *,
        num_workers: int | None = None,
        worker_index: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        for i, frame in enumerate(self._frames()):
            if num_workers is None or i % num_workers == worker_index:
                yield frame


def make_view(dataset_name: str = DATASET, version_name: str = "Current") -> DataView:
    view = DataView(iteration_order="sequential", iteration_infinite=False)
    view.add_query(dataset_name=dataset_name, version_name=version_name)
    return view


@pytest.fixture
def default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh local default store (a folder), so forked DataLoader workers see the same data."""
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "store"))
    set_default_client(None)
    yield
    set_default_client(None)


@pytest.fixture
def s3_options(moto_server: str) -> dict[str, dict[str, str]]:
    S3Store(
        BUCKET, endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing"
    ).create_bucket()
    return {"s3": {"endpoint_url": moto_server, "key": "testing", "secret": "testing"}}


@pytest.fixture
def frames(
    default_store: None, tmp_path: Path, s3_options: dict[str, dict[str, str]]
) -> Iterator[dict[str, bytes]]:
    """12 frames: 4 with file:// sources, 4 with memory:// sources, 4 on S3 (moto's HTTP server).

    Returns frame id -> the bytes of its source.
    """
    s3 = S3Store(
        BUCKET,
        endpoint_url=s3_options["s3"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    mem = f"memory://loader-{uuid.uuid4().hex[:8]}"
    memfs = fsspec.filesystem("memory")
    expected: dict[str, bytes] = {}
    items = []
    for i in range(12):
        fid = f"f{i:02d}"
        data = bytes([i]) * SIZE
        if i % 3 == 0:
            path = tmp_path / f"src {i}.bin"
            path.write_bytes(data)
            uri = path.as_uri()
        elif i % 3 == 1:
            uri = f"{mem}/{i}.bin"
            memfs.pipe(uri, data)
        else:
            key = f"{uuid.uuid4().hex[:8]}/{i}.bin"
            s3.put(key, data)
            uri = f"s3://{BUCKET}/{key}"
        expected[fid] = data
        items.append(SingleFrame(id=fid, source=uri, context_id="clip", timestamp=i, metadata={"n": i}))
    assert DatasetVersion.create_new_dataset(dataset_name=DATASET).add_frames(items) == []
    yield expected
    memfs.rm(mem, recursive=True)


def id_and_data(frame: dict[str, Any]) -> tuple[str, bytes]:
    return frame["id"], frame["sources"][0]["data"]


def as_tensor(frame: dict[str, Any]) -> Any:
    return torch.frombuffer(bytearray(frame["sources"][0]["data"]), dtype=torch.uint8).float()


def test_map_style_length_indexing_and_transform(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    ds = DataViewDataset(make_view(), storage_options=s3_options)
    assert len(ds) == 12
    first = ds[0]
    assert first["id"] == "f00" and first["sources"][0]["data"] == frames["f00"]
    assert first["meta"] == {"n": 0} and first["dataset"]["name"] == DATASET
    assert ds[-1]["id"] == "f11"
    assert "data" not in ds.frames[0]["sources"][0]  # the view's dicts are not changed
    with pytest.raises(IndexError, match="out of range"):
        ds[12]
    with pytest.raises(TypeError):
        ds["f00"]  # type: ignore[index]

    pairs = DataViewDataset(make_view(), storage_options=s3_options, transform=id_and_data)
    assert [pairs[i] for i in range(12)] == sorted(frames.items())
    assert pairs.__getitems__([5, 2, 11]) == [
        ("f05", frames["f05"]),
        ("f02", frames["f02"]),
        ("f11", frames["f11"]),
    ]

    loader = DataLoader(pairs, batch_size=5, num_workers=2, collate_fn=list)
    assert sorted(p for batch in loader for p in batch) == sorted(frames.items())


def test_iterable_with_two_workers_yields_every_frame_exactly_once(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    ds = DataViewIterableDataset(make_view(), storage_options=s3_options, transform=id_and_data, ahead=3)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list)
    for _ in range(2):  # two epochs
        seen = [pair for batch in loader for pair in batch]
        assert Counter(fid for fid, _ in seen) == Counter(list(frames))
        assert dict(seen) == frames


def test_iterable_collates_tensors_from_a_transform(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    ds = DataViewIterableDataset(make_view(), storage_options=s3_options, transform=as_tensor)
    batches = list(DataLoader(ds, batch_size=4))
    assert [tuple(b.shape) for b in batches] == [(4, SIZE)] * 3
    assert sorted(int(b[0]) for batch in batches for b in batch) == list(range(12))


def test_iterable_shards_by_rank(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher = SourceFetcher(s3_options)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    from_env = [f["id"] for f in DataViewIterableDataset(make_view(), fetcher=fetcher)]
    assert from_env == [f"f{i:02d}" for i in range(1, 12, 2)]
    explicit = [f["id"] for f in DataViewIterableDataset(make_view(), fetcher=fetcher, rank=0, world_size=1)]
    assert explicit == sorted(frames)  # the arguments win over the environment
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    parts = [
        [f["id"] for f in DataViewIterableDataset(make_view(), fetcher=fetcher, rank=r, world_size=3)]
        for r in range(3)
    ]
    assert all(len(p) == 4 for p in parts)
    assert sorted(fid for p in parts for fid in p) == sorted(frames)
    assert worker_shard(1, 3) == (1, 3)  # outside a DataLoader worker: one worker
    with pytest.raises(ValidationError, match="rank 3 is not within world_size 3"):
        DataViewIterableDataset(make_view(), rank=3, world_size=3)
    with pytest.raises(ValidationError, match="together"):
        DataViewIterableDataset(make_view(), rank=0)


def test_source_cache_bound_is_respected(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    bound = 3 * SIZE + SIZE // 2
    ds = DataViewIterableDataset(make_view(), storage_options=s3_options, cache_bytes=bound, threads=2)
    for _ in range(2):
        assert sorted(f["id"] for f in ds) == sorted(frames)
        info = ds.fetcher.cache_info()
        assert info.currsize <= bound and info.items == 3
    assert ds.fetcher.cache_info().misses == 24  # 12 frames, LRU smaller than an epoch: no hits

    big = DataViewIterableDataset(make_view(), storage_options=s3_options, cache_bytes=12 * SIZE)
    for _ in range(2):
        list(big)
    assert (big.fetcher.cache_info().hits, big.fetcher.cache_info().misses) == (12, 12)


def test_a_missing_source_is_raised_in_the_consumer(default_store: None, tmp_path: Path) -> None:
    ok = tmp_path / "ok.bin"
    ok.write_bytes(b"ok")
    DatasetVersion.create_new_dataset(dataset_name="broken").add_frames(
        [
            SingleFrame(id="a", source=ok.as_uri(), context_id="c", timestamp=0),
            SingleFrame(id="b", source=(tmp_path / "gone.bin").as_uri(), context_id="c", timestamp=1),
        ]
    )
    seen = []
    with pytest.raises(NotFoundError, match=r"frame 'b' source 'default'.*gone\.bin"):
        for frame in DataViewIterableDataset(make_view("broken")):
            seen.append(frame["id"])
    assert seen == ["a"]
    with pytest.raises(NotFoundError, match="gone.bin"):
        DataViewDataset(make_view("broken"))[1]


def test_iter_frames_without_torch_api(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    out = list(iter_frames(make_view(), storage_options=s3_options, num_workers=2, worker_index=1))
    assert [f["id"] for f in out] == [f"f{i:02d}" for i in range(1, 12, 2)]
    assert all(f["sources"][0]["data"] == frames[f["id"]] for f in out)
    with pytest.raises(ValidationError, match="not a DataView"):
        list(iter_frames(object()))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not a DataView"):
        DataViewDataset(object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not both"):
        DataViewDataset(make_view(), fetcher=SourceFetcher(), storage_options={})


def test_importing_hds_s3_and_loaders_does_not_import_torch() -> None:
    code = (
        "import sys, hds_s3, hds_s3.io.loaders, hds_s3.io.fs, hds_s3.io.sources\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from hds_s3.io.loaders import DataViewIterableDataset\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_any_object_with_the_dataview_methods_is_a_view(
    frames: dict[str, bytes], s3_options: dict[str, dict[str, str]]
) -> None:
    view = VersionView(DATASET, "Current")
    assert len(DataViewDataset(view, storage_options=s3_options)) == 12
    ds = DataViewIterableDataset(view, storage_options=s3_options, transform=id_and_data)
    seen = [pair for batch in DataLoader(ds, batch_size=3, num_workers=2, collate_fn=list) for pair in batch]
    assert sorted(seen) == sorted(frames.items())
