"""Worker processes of the load test (tests/test_load.py), importable by spawned children.

Each worker opens the store from a URL and the environment it is given, waits at a barrier with
the others, then makes ``ops`` calls on a few shared datasets, choosing each call from what it just
read of the dataset: ``add_frames``, ``update_frames``, ``delete_frames``, ``publish_version``,
``create_snapshot``, ``create_version`` and ``delete_version``. Every call is logged, one JSON line
each, to the worker's own file: what was asked, the outcome (``"ok"`` or the exception's class
name), the frame ids it wrote with their content marker, the version ids it created, published or
deleted, the content hash of what it published (read right after the call returned), and the store
requests the call made (how many conditional writes it lost, i.e. how often it retried).

Frame ownership makes the log checkable: worker ``w`` only ever writes the frames ``w<w>-f<k>``, so
the writes to one frame in one version are sequential and the last acknowledged one decides what
the version holds. Each written frame carries ``meta = {"writer": w, "op": n}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from hds_s3 import Client, Dataset, DatasetVersion
from hds_s3.errors import ConflictError, NotFoundError
from hds_s3.format.docs import VersionEntry
from hds_s3.format.txn import TreeView
from hds_s3.index.segments import FRAME_COLUMNS
from hds_s3.model.frames import SingleFrame
from hds_s3.store import open_store
from hds_s3.store.base import ObjectInfo, ObjectStore

#: Dataset kinds. A ``chain`` dataset is kept in the simple structure (a chain whose leaf is the only
#: draft), so snapshots can succeed; side drafts and publishes break it for a while and the workers
#: repair it (delete the side draft, create a child of the published leaf). A ``tree`` dataset grows
#: a general tree: drafts are published, children are created from any published version, drafts
#: are deleted; snapshots there are mostly refused.
CHAIN = "chain"
TREE = "tree"

#: Relative weights of the calls a worker makes, by dataset kind.
WEIGHTS = {
    CHAIN: {
        "add": 32,
        "update": 16,
        "delete": 10,
        "snapshot": 22,
        "publish": 6,
        "create_version": 7,
        "delete_version": 7,
    },
    TREE: {
        "add": 30,
        "update": 14,
        "delete": 10,
        "snapshot": 5,
        "publish": 13,
        "create_version": 14,
        "delete_version": 14,
    },
}
FRAME_OPS = ("add", "update", "delete")
#: Draft count above which a tree dataset gets no more new versions.
MAX_TREE_DRAFTS = 4


def frame_id(worker: int, k: int) -> str:
    """The id of frame ``k`` owned by ``worker``."""
    return f"w{worker}-f{k}"


def owner(fid: str) -> int:
    """The worker that owns a frame id made by :func:`frame_id`."""
    return int(fid[1 : fid.index("-")])


def make_frame(worker: int, fid: str, op: int) -> SingleFrame:
    """A frame whose content names the writer and the operation that wrote it."""
    return SingleFrame(
        source=f"s3://load-test/{fid}/{op}.jpg",
        id=fid,
        metadata={"writer": worker, "op": op},
    )


def content_hash(table: pa.Table) -> str:
    """A hash of a version's effective frames (every stored column, rows sorted by id)."""
    rows = table.select(list(FRAME_COLUMNS)).sort_by("id").to_pylist()
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def read_log(path: str) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    """Return the call records of one worker's log and its closing request counts (None if it died)."""
    records: list[dict[str, Any]] = []
    summary = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "summary" in rec:
                summary = rec["summary"]
            else:
                records.append(rec)
    return records, summary


class CountingStore:
    """An ObjectStore that forwards every call and counts requests and lost preconditions.

    ``cas_lost``: compare-and-swap PUTs (``if_match``) that lost (a record or head another writer
    moved forward first); ``create_lost``: create-only PUTs that found the key taken (a log entry
    another writer created first, each of which makes :func:`hds_s3.format.commit.commit` re-read
    and retry); ``manifest_deletes``: manifests removed, which (outside
    ``delete_version``) happens only when :meth:`FrameIndex.commit_pointer` lost its base pointer
    and rebuilds on the new one.
    """

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def snapshot(self) -> Counter[str]:
        """A copy of the counts so far."""
        with self._lock:
            return Counter(self.counts)

    @property
    def url(self) -> str:
        """The wrapped store's URL."""
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        """Forward, counting."""
        self._count("get")
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Forward, counting."""
        self._count("get_range")
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        """Forward, counting."""
        self._count("head")
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Forward, counting lost preconditions."""
        self._count("put")
        try:
            return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        except (ConflictError, NotFoundError):
            self._count("cas_lost" if if_match is not None else "create_lost")
            raise

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Forward, counting."""
        self._count("list")
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        """Forward, counting manifest removals."""
        self._count("delete")
        if "/versions/" in key and key.endswith(".json"):
            self._count("manifest_deletes")
        self.inner.delete(key)


# ---------------------------------------------------------------------------- choosing a call


def _published_leaves(doc: TreeView) -> list[VersionEntry]:
    return [v for v in doc.versions if not v.is_draft and not doc.children(v.id)]


def choose(rng: random.Random, doc: TreeView, kind: str) -> tuple[str, dict[str, Any]]:
    """Pick the next call on a dataset from its document as just read: ``(op, arguments)``.

    Arguments: ``version`` (the version the call is on), ``parent`` (for create_version).
    """
    drafts = [v for v in doc.versions if v.is_draft]
    published = [v for v in doc.versions if not v.is_draft]
    if not drafts:
        leaves = _published_leaves(doc) if kind == CHAIN else published
        parent = rng.choice(leaves).id if leaves else None
        return "create_version", {"parent": parent}
    weights = dict(WEIGHTS[kind])
    head = doc.head()
    assert head is not None
    if kind == CHAIN:
        if len(drafts) > 1:
            weights["create_version"] = 0
            weights["publish"] = 0
            weights["delete_version"] *= 4  # repair the chain soon
        else:
            weights["delete_version"] = 0
    elif len(drafts) > MAX_TREE_DRAFTS:
        weights["create_version"] = 0
    ops = list(weights)
    op = rng.choices(ops, [weights[o] for o in ops])[0]
    if op == "create_version":
        if kind == CHAIN:  # a side draft: a second child of the draft's parent (or a second root)
            return op, {"parent": head.parent}
        return op, {"parent": rng.choice(published).id if published and rng.random() < 0.9 else None}
    if op == "delete_version":
        if kind == CHAIN:
            side = [v for v in drafts if v.id != head.id]
            return op, {"version": rng.choice(side).id if side else head.id}
        return op, {"version": rng.choice(drafts).id}
    target = head if kind == CHAIN else rng.choice(drafts)
    return op, {"version": target.id}


# ---------------------------------------------------------------------------- making a call


def _version(doc: TreeView, version_id: str, client: Client) -> DatasetVersion:
    entry = doc.version(version_id)
    if entry is None:  # pragma: no cover - choose() only names versions of this document
        raise NotFoundError(f"version {version_id} vanished from the document just read")
    return DatasetVersion(doc, entry, client)


def perform(client: Client, doc: TreeView, me: int, n: int, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Make one call; return what the log needs of its result (the call raises on failure).

    A frame call's ``args["ids"]`` are the frames it writes (all owned by ``me``).
    """
    if op in FRAME_OPS:
        version = _version(doc, args["version"], client)
        ids = args["ids"]
        if op == "add":
            failed = version.add_frames([make_frame(me, fid, n) for fid in ids])
            if failed:
                raise AssertionError(f"add_frames refused valid frames: {failed}")
            return {}
        if op == "update":
            failed = version.update_frames([make_frame(me, fid, n) for fid in ids])
            odd = [f for f in failed if "is not in version" not in f.reason]
            if odd:
                raise AssertionError(f"update_frames refused valid frames: {odd}")
            skipped = sorted(f.frame.id for f in failed)  # not in the version: nothing written for them
            return {"ids": [i for i in ids if i not in skipped], "skipped": skipped}
        version.delete_frames(ids)
        return {}
    if op == "publish":
        version = _version(doc, args["version"], client)
        version.publish_version()
        table = version.get_frames_table()
        return {"hash": content_hash(table), "rows": table.num_rows}
    if op == "snapshot":
        child = DatasetVersion.create_snapshot(
            dataset_id=doc.id,
            version_id=args["version"],
            publish_name=f"snap-w{me}-{n}",
            child_name=f"draft-w{me}-{n}",
            client=client,
        )
        frozen = DatasetVersion.get_version(dataset_id=doc.id, version_id=child.parent_id, client=client)
        table = frozen.get_frames_table()
        return {
            "published": child.parent_id,
            "child": child.id,
            "hash": content_hash(table),
            "rows": table.num_rows,
        }
    if op == "create_version":
        parent = args["parent"]
        created = DatasetVersion.create_version(
            dataset_id=doc.id,
            version_name=f"v-w{me}-{n}",
            parent_version_ids=[parent] if parent else None,
            raise_if_exists=True,
            client=client,
        )
        return {"child": created.id, "parent": created.parent_id}
    if op == "delete_version":
        Dataset(doc, client).delete_version(version_id=args["version"])
        return {}
    raise ValueError(f"unknown load operation {op!r}")


def one_call(
    client: Client,
    store: CountingStore,
    rng: random.Random,
    me: int,
    n: int,
    datasets: list[tuple[str, str]],
    own: int,
) -> dict[str, Any]:
    """Read one dataset, choose a call, make it, and return its log record."""
    dataset_id, kind = rng.choice(datasets)
    rec: dict[str, Any] = {"w": me, "n": n, "dataset": dataset_id, "kind": kind}
    before = store.snapshot()
    try:
        doc = client.catalog.get(dataset_id=dataset_id)
        op, args = choose(rng, doc, kind)
    except Exception as exc:  # noqa: BLE001 - logged; the checker fails on it
        rec.update(op="read", outcome=type(exc).__name__, detail=str(exc)[:500])
        return rec
    if op in FRAME_OPS:
        args["ids"] = sorted(rng.sample([frame_id(me, i) for i in range(own)], rng.randint(1, 3)))
    rec.update(op=op, **args)
    rec["t0"] = time.monotonic_ns()
    try:
        rec.update(perform(client, doc, me, n, op, args))
        rec["outcome"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the outcome is the exception's class
        rec["outcome"] = type(exc).__name__
        rec["detail"] = str(exc)[:500]
    rec["t1"] = time.monotonic_ns()
    used = store.snapshot()
    used.subtract(before)
    rec["requests"] = {k: v for k, v in used.items() if v}
    return rec


def run_worker(
    url: str,
    env: dict[str, str],
    me: int,
    datasets: list[tuple[str, str]],
    ops: int,
    own: int,
    seed: int,
    log_path: str,
    barrier: Any,
    timeout: float,
) -> None:
    """Entry point of a load process: ``ops`` calls on ``datasets`` (``(id, kind)`` pairs), logged."""
    os.environ.update(env)
    store = CountingStore(open_store(url))
    client = Client(store)
    rng = random.Random(seed * 1009 + me)
    client.catalog.get(dataset_id=datasets[0][0])  # connect before the start line
    barrier.wait(timeout)
    with open(log_path, "w", encoding="utf-8") as log:
        for n in range(ops):
            rec = one_call(client, store, rng, me, n, datasets, own)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        log.write(json.dumps({"summary": dict(store.counts)}) + "\n")
