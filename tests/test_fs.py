"""The hds:// fsspec filesystem: listing, reading, Parquet by URL (pandas, polars, DuckDB), read-only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pandas as pd
import polars as pl
import pytest

from hds_s3 import Client, DatasetVersion, FrameGroup, SingleFrame, connect, set_default_client
from hds_s3.io.fs import HdsFileSystem, quote_name, version_url
from hds_s3.store import S3Store

NAME = "street scenes/2024@day 100%"  # needs percent-encoding: '/', '@', ' ', '%'


@pytest.fixture
def client() -> Client:
    return connect(f"memory://fs-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Three small source files, on disk and in fsspec's memory filesystem."""
    out = {}
    for i in range(3):
        path = tmp_path / f"img {i}.bin"
        path.write_bytes(bytes([i]) * (10 + i))
        out[f"file{i}"] = path.as_uri()
    mem = f"memory://fs-sources-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("memory").pipe(f"{mem}/depth.bin", b"depth!")
    out["mem"] = f"{mem}/depth.bin"
    yield out
    fsspec.filesystem("memory").rm(mem, recursive=True)


def _fill(client: Client, sources: dict[str, str]) -> DatasetVersion:
    """NAME: v1 (published; f0, f1, a group, a frame with id 'index.parquet') and its child Current."""
    draft = DatasetVersion.create_new_dataset(dataset_name=NAME, client=client)
    group = FrameGroup(id="grp/1")
    group["left cam"] = SingleFrame(source=sources["file2"])
    group["depth"] = SingleFrame(source=sources["mem"])
    failed = draft.add_frames(
        [
            SingleFrame(id="f0", source=sources["file0"], metadata={"city": "bremen", "n": 0}),
            SingleFrame(id="f1", source=sources["file1"], metadata={"city": "paris", "n": 1}),
            SingleFrame(id="index.parquet", source=sources["file0"]),
            group,
        ]
    )
    assert failed == []
    DatasetVersion.create_snapshot(dataset_name=NAME, publish_name="v1", client=client)
    return DatasetVersion.get_version(dataset_name=NAME, version_name="v1", client=client)


def _fs(client: Client, **kw: Any) -> HdsFileSystem:
    return HdsFileSystem(store=client, skip_instance_cache=True, **kw)


def test_entry_point_registers_the_protocol(client: Client) -> None:
    assert fsspec.get_filesystem_class("hds") is HdsFileSystem
    store_url = client.url
    fs = fsspec.filesystem("hds", store=store_url)
    assert isinstance(fs, HdsFileSystem) and fs.client.url == store_url


def test_listing_datasets_versions_frames_and_sources(client: Client, sources: dict[str, str]) -> None:
    v1 = _fill(client, sources)
    fs = _fs(client)
    enc = quote_name(NAME)
    assert enc == "street%20scenes%2F2024%40day%20100%25"
    assert fs.ls("hds://", detail=False) == [enc]

    root = f"hds://{enc}@v1"
    assert version_url(NAME, "v1") == root
    names = fs.ls(root, detail=False)
    assert sorted(names) == sorted(
        f"{enc}@v1/{n}" for n in ("index.parquet", "f0", "f1", "grp%2F1", "index%2Eparquet")
    )
    by_id = fs.ls(f"hds://{enc}@{v1.id}", detail=False)
    assert len(by_id) == 5

    info = fs.info(root)
    assert (info["type"], info["version_name"], info["version_id"], info["status"]) == (
        "directory",
        "v1",
        v1.id,
        "published",
    )

    group = fs.ls(f"{root}/grp%2F1/")
    assert sorted(e["source_id"] for e in group) == ["depth", "left cam"]
    assert all(e["type"] == "file" for e in group)
    assert fs.cat(f"{root}/grp%2F1/depth") == b"depth!"
    assert fs.cat(f"{root}/grp%2F1/left%20cam") == bytes([2]) * 12
    assert fs.info(f"{root}/f1/default")["size"] == 11
    assert fs.cat_file(f"{root}/f1/default", start=2, end=5) == bytes([1]) * 3
    with fs.open(f"{root}/f0/default") as f:
        assert f.read() == bytes([0]) * 10
    # The frame literally named "index.parquet" is a directory; the raw name is the index file.
    assert fs.ls(f"{root}/index%2Eparquet", detail=False) == [f"{enc}@v1/index%2Eparquet/default"]
    assert fs.isfile(f"{root}/index.parquet") and fs.isdir(f"{root}/index%2Eparquet")
    assert fs.frame(f"{root}/f1")["meta"] == {"city": "paris", "n": 1}
    assert fs.find(root, detail=False)[-1] == f"{enc}@v1/index.parquet"


def test_no_version_means_the_current_version(client: Client, sources: dict[str, str]) -> None:
    _fill(client, sources)
    fs = _fs(client)
    enc = quote_name(NAME)
    current = fs.info(f"hds://{enc}")
    assert (current["version_name"], current["status"]) == ("Current", "draft")
    assert len(fs.ls(f"hds://{enc}", detail=False)) == 5  # the child inherits v1's frames


def test_index_parquet_reads_with_pandas_polars_and_duckdb(client: Client, sources: dict[str, str]) -> None:
    _fill(client, sources)
    url = f"{version_url(NAME, 'v1')}/index.parquet"
    opts = {"store": client}

    df = pd.read_parquet(url, storage_options=opts)
    assert sorted(df["id"]) == ["f0", "f1", "grp/1", "index.parquet"]
    assert {"meta", "sources", "labels", "meta_num"} <= set(df.columns)

    # polars' native reader knows cloud schemes only: use_pyarrow (or an opened file) goes through fsspec.
    pf = pl.read_parquet(url, storage_options=opts, use_pyarrow=True)
    assert pf.height == 4
    with fsspec.open(url, store=client) as f:
        assert pl.read_parquet(f).height == 4

    con = duckdb.connect()
    con.register_filesystem(HdsFileSystem(store=client))
    rows = con.sql(
        f"SELECT id FROM read_parquet('{url}') WHERE json_extract_string(meta, '$.city') = 'paris'"
    ).fetchall()
    assert rows == [("f1",)]
    con.close()


def test_published_index_is_built_once_per_instance_and_drafts_stay_fresh(
    client: Client, sources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(client, sources)
    builds: list[str] = []
    real = client.frames.effective

    def counting(entry: Any, columns: Any = None) -> Any:
        builds.append(entry.name)
        return real(entry, columns)

    monkeypatch.setattr(client.frames, "effective", counting)
    fs = _fs(client)
    v1 = version_url(NAME, "v1")
    first = fs.cat(f"{v1}/index.parquet")
    fs.ls(v1)
    fs.info(f"{v1}/f0")
    assert fs.cat(f"{v1}/index.parquet") == first
    assert builds == ["v1"]

    current = version_url(NAME)
    assert len(fs.ls(current, detail=False)) == 5
    fs.ls(current)
    assert builds == ["v1", "Current"]  # unchanged draft: cached too
    draft = DatasetVersion.get_current(dataset_name=NAME, client=client)
    draft.add_frames([SingleFrame(id="f9", source=sources["file0"])])
    assert f"{quote_name(NAME)}/f9" in fs.ls(current, detail=False)
    assert builds == ["v1", "Current", "Current"]


def test_missing_things_raise_file_not_found(client: Client, sources: dict[str, str]) -> None:
    _fill(client, sources)
    fs = _fs(client)
    v1 = version_url(NAME, "v1")
    for path, message in [
        ("hds://no such dataset", "no dataset named 'no such dataset'"),
        (version_url(NAME, "v9"), "no version named or with id 'v9'"),
        (f"{v1}/nope", "frame 'nope' is not in version 'v1'"),
        (f"{v1}/f0/nope", "no source 'nope'"),
        (f"{v1}/f0/default/deeper", "nothing lies below a source"),
        (f"hds://{quote_name(NAME)}@", "give a version name or id after '@'"),
    ]:
        with pytest.raises(FileNotFoundError, match=message):
            fs.info(path)
        assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{v1}/nope")
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{v1}/f0/nope")
    with pytest.raises(IsADirectoryError):
        fs.cat(f"{v1}/f0")


def test_a_missing_source_object_names_its_uri(client: Client, tmp_path: Path) -> None:
    gone = (tmp_path / "gone.bin").as_uri()
    DatasetVersion.create_new_dataset(dataset_name="d", client=client).add_frames(
        [SingleFrame(id="a", source=gone)]
    )
    fs = _fs(client)
    with pytest.raises(FileNotFoundError, match="gone.bin"):
        fs.cat("hds://d/a/default")
    assert fs.ls("hds://d/a", detail=False) == ["d/a/default"]  # listing does not read sources


def test_writes_are_refused(client: Client, sources: dict[str, str]) -> None:
    _fill(client, sources)
    fs = _fs(client)
    v1 = version_url(NAME, "v1")
    attempts = [
        lambda: fs.pipe(f"{v1}/new/default", b"x"),
        lambda: fs.open(f"{v1}/index.parquet", "wb"),
        lambda: fs.rm(f"{v1}/f0", recursive=True),
        lambda: fs.mkdir(f"{v1}/new"),
        lambda: fs.makedirs(f"{v1}/new"),
        lambda: fs.touch(f"{v1}/new"),
        lambda: fs.mv(f"{v1}/f0", f"{v1}/f8"),
        lambda: fs.cp_file(f"{v1}/f0/default", f"{v1}/f8/default"),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError, match="read-only"):
            attempt()
    with fs.open(f"{v1}/index.parquet") as f, pytest.raises(PermissionError):
        f.write(b"x")
    assert len(fs.ls(v1)) == 5


def test_default_store_comes_from_hds_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, str]
) -> None:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "env-store"))
    set_default_client(None)
    try:
        DatasetVersion.create_new_dataset(dataset_name="from env").add_frames(
            [SingleFrame(id="x", source=sources["file1"])]
        )
        fs = HdsFileSystem(skip_instance_cache=True)
        assert fs.ls("hds://", detail=False) == ["from%20env"]
        assert fs.cat("hds://from%20env/x/default") == bytes([1]) * 11
        assert pd.read_parquet("hds://from%20env/index.parquet")["id"].tolist() == ["x"]
    finally:
        set_default_client(None)


def test_reads_a_store_on_moto_server(moto_server: str, sources: dict[str, str]) -> None:
    store = S3Store(
        "hds-fs-test",
        f"t-{uuid.uuid4().hex[:8]}",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store.create_bucket()
    v1 = _fill(Client(store), sources)
    url = f"hds://{quote_name(NAME)}@{v1.id}"
    df = pd.read_parquet(f"{url}/index.parquet", storage_options={"store": store})
    assert sorted(df["id"]) == ["f0", "f1", "grp/1", "index.parquet"]
    fs = HdsFileSystem(store=store, skip_instance_cache=True)
    assert fs.cat(f"{url}/grp%2F1/depth") == b"depth!"
