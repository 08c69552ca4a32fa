"""Reads at the physical limit: only the column chunks needed, nothing of dead segments, streaming.

A store wrapper records every ranged read, so the tests see which bytes of which segment a read
fetched; the rows are checked against what the version holds.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from gating import Gated

from hds_s3 import Client, DatasetVersion, DataView, ValidationError
from hds_s3.index import scan as scan_module
from hds_s3.index import segments
from hds_s3.store.base import ObjectInfo, ObjectStore

ALL = [f.name for f in segments.FRAME_SCHEMA]


class Recording:
    """A store that passes everything through and records the bytes each key was read for."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.read: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    def reset(self) -> None:
        with self.lock:
            self.read.clear()

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get(key)
        with self.lock:
            self.read[key] += len(data)
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        with self.lock:
            self.read[key] += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def noise(i: int) -> str:
    """768 characters that compress poorly: segments of a few MB (smaller ones are fetched whole)."""
    return "".join(hashlib.sha256(f"{i}-{k}".encode()).hexdigest() for k in range(12))


def frame(i: int, variant: int = 0) -> dict[str, Any]:
    return {
        "id": f"f{i:05d}",
        "sources": [{"id": "cam", "uri": f"s3://bucket/{i:05d}.jpg", "width": 64, "height": 48}],
        "rois": [
            {"labels": [f"label-{(i + r + variant) % 7}"], "type": "box2d", "poly": [0, 0, 9, 0, 9, 9, 0, 9]}
            for r in range(i % 4)
        ],
        "meta": {
            "city": f"city-{i % 5}",
            "n": i,
            "variant": variant,
            "text": noise(i),
        },
    }


def table(indices: range | list[int], variant: int = 0) -> pa.Table:
    return pa.Table.from_pylist([frame(i, variant) for i in indices])


@pytest.fixture
def recording(store: ObjectStore) -> Recording:
    return Recording(store)


@pytest.fixture
def client(recording: Recording) -> Client:
    return Client(recording)


def segment_keys(client: Client, version: DatasetVersion) -> list[str]:
    return [r.key for r in client.frames.refs(version._entry)]


def fresh(client: Client, version: DatasetVersion) -> DatasetVersion:
    """The version through a new client (no cached footers)."""
    return DatasetVersion.get_version(
        dataset_id=version.dataset_id, version_id=version.id, client=Client(client.store)
    )


def test_a_column_read_fetches_only_its_column_chunks(client: Client, recording: Recording) -> None:
    version = DatasetVersion.create_new_dataset(dataset_name="columns", client=client)
    assert version.add_frames(table(range(3000))) == []
    (key,) = segment_keys(client, version)
    size = recording.inner.head(key).size
    recording.reset()
    ids = fresh(client, version).get_frames_table(columns=["id"])
    assert ids.num_rows == 3000
    assert recording.read[key] < size / 3  # the footer and the id chunks, not the frames
    recording.reset()
    full = fresh(client, version).get_frames_table(columns=ALL)
    assert full.num_rows == 3000 and recording.read[key] >= size * 0.9
    assert full.column("id").to_pylist() == ids.column("id").to_pylist()


def test_nothing_but_ids_is_read_of_a_segment_whose_rows_are_all_dead(
    client: Client, recording: Recording
) -> None:
    version = DatasetVersion.create_new_dataset(dataset_name="dead", client=client)
    assert version.add_frames(table(range(2000))) == []
    assert version.add_frames(table(range(2000, 3000))) == []
    assert version.update_frames(table(range(2000), variant=1)) == []  # every row of the first segment
    first = segment_keys(client, version)[0]
    size = recording.inner.head(first).size
    recording.reset()
    got = fresh(client, version).get_frames_table(columns=ALL)
    assert recording.read[first] < size / 3
    assert got.num_rows == 3000
    assert sorted(got.column("id").to_pylist()) == [f"f{i:05d}" for i in range(3000)]
    variants = {r["id"]: r["meta"] for r in got.select(["id", "meta"]).to_pylist()}
    assert '"variant":1' in variants["f00007"] and '"variant":0' in variants["f02007"]


def chain(
    client: Client,
    name: str = "chain",
    added: range = range(2500, 2700),
    updated: range = range(100, 300),
    deleted: range = range(1000, 1400),
) -> tuple[DatasetVersion, set[str]]:
    """A published root (2,500 frames in 3 segments) and a draft child with adds, updates and deletes."""
    root = DatasetVersion.create_new_dataset(dataset_name=name, client=client)
    assert root.add_frames(table(range(2500)), segment_rows=1000) == []
    root.publish_version()
    child = DatasetVersion.create_version(
        dataset_name=name, parent_version_names=[root.name], version_name="child", client=client
    )
    assert child.add_frames(table(added)) == []
    assert child.update_frames(table(updated, variant=2)) == []
    child.delete_frames([f"f{i:05d}" for i in deleted])
    live = {f"f{i:05d}" for i in range(added.stop)} - {f"f{i:05d}" for i in deleted}
    return child, live


def test_iter_batches_streams_the_same_rows_as_the_table(client: Client) -> None:
    child, live = chain(client)
    whole = child.get_frames_table(columns=["meta", "rois.list.element.labels"])
    batches = list(child.iter_batches(columns=["meta", "rois.list.element.labels"], batch_size=300))
    assert all(b.num_rows <= 300 for b in batches) and len(batches) > len(live) // 300
    streamed = pa.Table.from_batches(batches)
    assert streamed.schema == whole.schema
    assert streamed.to_pylist() == whole.to_pylist()
    assert set(whole.column("id").to_pylist()) == live
    frames = list(child.iter_frames(batch_size=128))
    assert [f.id for f in frames] == whole.column("id").to_pylist()
    by_id = {f.id: f for f in frames}
    assert by_id["f00150"].metadata["variant"] == 2 and by_id["f00050"].metadata["variant"] == 0


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_iter_batches_refuses_bad_arguments(client: Client, batch_size: Any) -> None:
    version = DatasetVersion.create_new_dataset(dataset_name="args", client=client)
    with pytest.raises(ValidationError, match="batch_size"):
        version.iter_batches(batch_size=batch_size)
    assert version.add_frames(table(range(3))) == []
    with pytest.raises(ValidationError, match="nope"):
        version.iter_batches(columns=["nope"])


@pytest.mark.parametrize("spool", ["memory", "disk"])
def test_rows_come_back_in_any_order_with_repeats(
    client: Client, spool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spool == "disk":  # the spool's bounds, set low so that a small version exercises the files
        monkeypatch.setattr(scan_module, "SPOOL_MEMORY", 0)
        monkeypatch.setattr(scan_module, "BUCKET_ROWS", 97)
    child, _ = chain(client)
    scan = client.frames.scan(child._entry)
    whole, segment, row = scan.table(["meta"])
    rng = np.random.default_rng(5)
    wanted = np.concatenate([rng.permutation(whole.num_rows), rng.integers(0, whole.num_rows, 500)])
    got = pa.Table.from_batches(list(scan.rows_at(segment[wanted], row[wanted], ["meta"])))
    assert got.to_pylist() == whole.take(pa.array(wanted)).to_pylist()


def test_a_dataview_pass_reads_each_frame_once_in_its_order(client: Client, recording: Recording) -> None:
    child, live = chain(client)
    view = DataView(iteration_order="random", iteration_random_seed=3, client=client)
    view.add_query(dataset_name="chain", version_name="child", roi_query="label-3")
    expected = {
        r["id"] for r in child.get_frames_table(columns=["labels"]).to_pylist() if "label-3" in r["labels"]
    }
    recording.reset()
    seen = [f["id"] for f in view.get_iterator(projection=["id", "meta"])]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    again = [f["id"] for f in view.get_iterator(projection=["id"], epoch=0)]
    assert again == seen  # the first epoch's seeded order again
    sizes = {r.key: r.size for r in client.frames.refs(child._entry)}
    assert sum(recording.read[k] for k in sizes) <= 2.5 * sum(sizes.values())


def test_the_index_file_holds_the_versions_rows(client: Client) -> None:
    import fsspec
    import pyarrow.parquet as pq

    child, live = chain(client)
    fs = fsspec.filesystem("hds", store=client)
    url = f"hds://chain@{child.name}/index.parquet"
    with fs.open(url) as handle:
        read = pq.read_table(handle)
    whole = child.get_frames_table(columns=ALL)
    assert read.column_names == ALL
    assert read.to_pylist() == whole.to_pylist()
    assert fs.info(url)["size"] == len(fs.cat(url))
    assert set(read.column("id").to_pylist()) == live
    assert fs.frame(f"hds://chain@{child.name}/f00150")["meta"]["variant"] == 2


def some_masks(n: int) -> list[np.ndarray]:
    """Keep-masks of ``n`` rows: a few dead rows, most dead, none, all, the ends, runs."""
    rng = np.random.default_rng(11)
    masks = [rng.random(n) > p for p in (0.02, 0.5, 0.97)]
    masks += [np.ones(n, bool), np.zeros(n, bool)]
    ends = np.ones(n, bool)
    ends[[0, n - 1]] = False
    runs = np.ones(n, bool)
    runs[n // 4 : n // 2] = False
    return [*masks, ends, runs]


@pytest.mark.parametrize("run_bytes", [0, 1024, 10**12])  # every nested column by runs, as chosen, none
def test_dropping_rows_by_runs_gives_what_a_filter_gives(
    client: Client, run_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_module, "RUN_BYTES", run_bytes)
    child, _ = chain(client)
    whole = child.get_frames_table(columns=ALL)
    several = pa.concat_tables([whole.slice(0, 700), whole.slice(700)])  # columns of two chunks
    for source in (whole, several):
        for keep in some_masks(source.num_rows):
            got = scan_module.drop_rows(source, keep)
            assert got.schema == source.schema
            assert got.equals(source.filter(pa.array(keep)))
    empty = whole.slice(0, 0)
    assert scan_module.drop_rows(empty, np.zeros(0, bool)).equals(empty)


@pytest.mark.parametrize("path", ["runs", "whole segments in memory", "ranged reads"])
def test_a_chain_reads_the_same_rows_whichever_way_dead_rows_go_and_bytes_come(
    client: Client, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    child, live = chain(client)
    child.publish_version()
    grandchild = DatasetVersion.create_version(
        dataset_name="chain", parent_version_names=[child.name], version_name="grandchild", client=client
    )
    assert grandchild.add_frames(table(range(2700, 2750))) == []
    assert grandchild.update_frames(table([i for i in range(0, 2700, 9) if not 1000 <= i < 1400], 3)) == []
    grandchild.delete_frames([f"f{i:05d}" for i in range(5, 2700, 13) if not 1000 <= i < 1400])
    with monkeypatch.context() as plain:  # the reference: Arrow's filter, segments read by ranges
        plain.setattr(scan_module, "drop_rows", lambda t, keep: t.filter(pa.array(keep)))
        plain.setattr(scan_module, "WHOLE_SHARE", 2.0)
        plain.setattr(scan_module, "SMALL_BYTES", 0)
        plain.setattr(scan_module, "FETCH_WHILE_PROBING", False)
        expected = [fresh(client, v).get_frames_table(columns=ALL) for v in (child, grandchild)]
    if path == "runs":
        monkeypatch.setattr(scan_module, "RUN_BYTES", 0)
    elif path == "whole segments in memory":
        monkeypatch.setattr(scan_module, "WHOLE_SHARE", 0.0)
    else:
        monkeypatch.setattr(scan_module, "WHOLE_SHARE", 2.0)
        monkeypatch.setattr(scan_module, "SMALL_BYTES", 0)
    for version, want in zip((child, grandchild), expected, strict=True):
        got = fresh(client, version).get_frames_table(columns=ALL)
        assert got.equals(want)
        batches = pa.Table.from_batches(list(fresh(client, version).iter_batches(columns=ALL)), want.schema)
        assert batches.equals(want)
    assert set(expected[0].column("id").to_pylist()) == live


def test_a_childs_parent_segments_are_all_fetched_while_its_deltas_are_probed(store: ObjectStore) -> None:
    """The leading disjoint segments hold no id of one another: only the deltas can replace their
    rows, so each one larger than the deltas is requested at once, not after the deltas' ids."""
    gated = Gated(store)
    client = Client(gated)
    child, live = chain(client, "gate", range(2500, 2520), range(10, 30), range(1200, 1210))
    child.publish_version()
    root = child.get_parent()
    assert root is not None
    parents = segment_keys(client, root)
    assert len(parents) == 3 and client.frames.manifest(root._entry).disjoint == 3
    deltas = [k for k in segment_keys(client, child) if k not in parents]
    assert len(deltas) == 3
    expected = fresh(client, child).get_frames_table(columns=ALL)
    gated.arm(set(deltas), set(parents))
    got = fresh(client, child).get_frames_table(columns=ALL)
    assert gated.waited_out == []  # no delta was read before every parent segment was asked for
    assert got.equals(expected)
    assert set(got.column("id").to_pylist()) == live
