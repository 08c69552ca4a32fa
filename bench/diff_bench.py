"""DatasetVersion.diff on a large parent and a small child, against reading both versions whole.

    .venv/bin/python bench/diff_bench.py --frames 200000 --changes 1000

Builds, in a memory store, a published parent of ``frames`` frames (segments of 50,000) and a child
that updates, adds and deletes ``changes`` frames each, then reports the seconds and the bytes read
by ``parent.diff(child)`` and by the whole-table comparison it replaces (``get_frames_table`` of
both and a join of their ids: a lower bound of that comparison), median of ``repeat`` runs. The
changes are spread evenly over the ids, so every row group of the parent holds one: the worst case
for the diff, which then reads the parent's rows once (the whole-table way reads them twice).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

from hds_s3 import Client, DatasetVersion
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore


class ByteCounter:
    """Forwards to a store and adds up the bytes of every read."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.bytes = 0

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get(key)
        self.bytes += len(data)
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self.bytes += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def frame(i: int, label: str) -> dict[str, Any]:
    return {
        "id": f"f{i:09d}",
        "sources": [{"id": "default", "uri": f"s3://bucket/{i:09d}.jpg", "width": 640, "height": 480}],
        "rois": [{"id": "r", "labels": [label], "type": "box2d", "poly": [1, 2, 11, 2, 11, 12, 1, 12]}],
        "meta": {"city": "bremen", "i": i},
    }


def measure(store: ByteCounter, fn: Any, repeat: int) -> dict[str, float]:
    seconds, read = [], []
    for _ in range(repeat):
        store.bytes = 0
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
        read.append(store.bytes)
    return {"seconds": statistics.median(seconds), "bytes_read": statistics.median(read)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store = ByteCounter(MemoryStore("bench"))
    client = Client(store)
    draft = DatasetVersion.create_new_dataset(dataset_name="big", client=client)
    draft.add_frames((frame(i, "car") for i in range(args.frames)), segment_rows=50_000)
    child = DatasetVersion.create_snapshot(dataset_name="big", publish_name="parent", client=client)
    step = max(1, args.frames // args.changes)
    child.add_frames([frame(i, "bus") for i in range(0, args.frames, step)][: args.changes])
    child.add_frames([frame(args.frames + i, "car") for i in range(args.changes)])
    child.delete_frames([f"f{i:09d}" for i in range(1, args.frames, step)][: args.changes])
    parent = DatasetVersion.get_version(dataset_name="big", version_name="parent", client=client)

    def whole() -> None:
        a = parent.get_frames_table(["id", "sources", "rois", "meta"])
        b = child.get_frames_table(["id", "sources", "rois", "meta"])
        a.select(["id"]).join(b.select(["id"]), "id", join_type="full outer")  # a lower bound: ids only

    ours = measure(store, lambda: parent.diff(child), args.repeat)
    baseline = measure(store, whole, args.repeat)
    print(
        json.dumps({"frames": args.frames, "changes": args.changes, "diff": ours, "whole_tables": baseline})
    )


if __name__ == "__main__":
    main()
