"""Bench (h): what a commit costs as the version tree grows, and how many commits several writers land.

For each tree size (10, 1,000 and 5,000 versions by default) and shape (a chain; a tree of 50
branches), a dataset is built on a local folder as a long history would leave it (published versions
carrying statistics of about 2.4 KB, as a version with 60 labels has; built as one format-1 document
and converted by the upgrade, which writes every version's record and name and a checkpoint), then
one cycle runs against it through a byte-counting store:

- ``create``: create a child of a published version;
- ``add``: add one frame to it;
- ``publish``: publish it (statistics included);
- ``open``: open another version by name and read its statistics, in a fresh client.

Each is shown with its time and the *metadata* bytes it read and wrote (heads, log entries,
version records and names, statistics, checkpoints, name claims, the store marker; manifests and
segments aside), and as ratios to the smallest tree. A checkpoint (the whole tree folded into one
object) is written once every ``checkpoint_interval(versions)`` commits; its cost, divided by that
interval, is shown as the share each commit carries.

Then ``--writers 1,4,8`` processes, each adding one frame at a time to its own draft of one dataset
for ``--seconds``, give the commit rate (commits/s over all writers, ratio to one writer) and how
many calls failed after their retry budget; ``--starve 16 --starve-seconds 60`` runs that many
writers for that long and reports the share of calls that failed and the slowest call.

    python bench/tree_bench.py                       # 10 / 1,000 / 5,000 versions, 1/4/8 writers
    python bench/tree_bench.py --sizes 10,200 --writers 1,2 --seconds 3      # a quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame
from hds_s3.errors import HdsError
from hds_s3.format import layout
from hds_s3.format.catalog import marker_bytes
from hds_s3.format.commit import checkpoint_interval, write_checkpoint
from hds_s3.format.docs import PUBLISHED, DatasetClaim, DatasetDoc, VersionEntry, dump_claim, dump_dataset_doc
from hds_s3.store import LocalStore, MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore
from hds_s3.tools.upgrade import upgrade

STATS = {
    "frames": 1000,
    "annotated": 900,
    "unannotated": 100,
    "rois": 4200,
    "labels": [{"name": f"label-{i:02d}-of-the-catalog", "count": 10 * i + 7} for i in range(60)],
    "content_types": [{"name": "image/jpeg", "count": 1000}],
}


def kind(key: str) -> str:
    if key.endswith(".parquet"):
        return "segment"
    if "/versions/" in key:
        return "manifest"
    return "metadata"


class MetaCounter:
    """A store wrapper counting bytes read and written per key kind."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.read: Counter[str] = Counter()
        self.written: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return self.inner.url

    def reset(self) -> None:
        with self._lock:
            self.read.clear()
            self.written.clear()

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get(key)
        with self._lock:
            self.read[kind(key)] += len(data)
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        with self._lock:
            self.read[kind(key)] += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        etag = self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        with self._lock:
            self.written[kind(key)] += len(data)
        return etag

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def build(folder: Path, versions: int, shape: str) -> None:
    """Dataset ``t`` with ``versions`` published versions named ``v0..``: a chain, or 50 branches.

    Written in memory as a format-1 document, converted by the upgrade, then laid out as the local
    folder store keeps objects (one file per key).
    """
    store = MemoryStore()
    store.put(layout.STORE_MARKER, marker_bytes(layout.LEGACY_STORE_FORMAT))
    ids = [layout.new_id() for _ in range(versions)]
    entries = []
    for i in range(versions):
        if i == 0:
            parent = None
        elif shape == "chain":
            parent = ids[i - 1]
        else:  # 50 branches grown side by side from the root
            parent = ids[0] if i <= 50 else ids[i - 50]
        entries.append(
            VersionEntry(
                id=ids[i],
                name=f"v{i}",
                parent=parent,
                status=PUBLISHED,
                created=1_000 + i,
                published=2_000 + i,
                metadata={"note": f"version {i}"},
                stats=STATS,
            )
        )
    dataset_id = layout.new_id()
    doc = DatasetDoc(id=dataset_id, name="t", created=1_000, updated=3_000, versions=tuple(entries))
    store.put(layout.dataset_doc_key(dataset_id), dump_dataset_doc(doc))
    store.put(layout.dataset_claim_key("t"), dump_claim(DatasetClaim(name="t", dataset_id=dataset_id)))
    upgrade(Client(store))
    for info in store.list(""):
        path = folder.joinpath(*info.key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get(info.key)[0])


def checkpoint_cost(folder: Path, versions: int) -> dict[str, float]:
    """Write one checkpoint of ``t`` (what every ``checkpoint_interval`` commits do) and measure it."""
    counter = MetaCounter(LocalStore(folder))
    dataset_id = Dataset.get("t", client=Client(counter)).id
    counter.reset()
    started = time.perf_counter()
    write_checkpoint(counter, dataset_id)
    seconds = time.perf_counter() - started
    interval = checkpoint_interval(versions)
    return {
        "seconds": seconds,
        "meta_read": counter.read["metadata"],
        "meta_written": counter.written["metadata"],
        "interval": interval,
    }


def cycle(folder: Path, versions: int, rep: int) -> dict[str, dict[str, float]]:
    counter = MetaCounter(LocalStore(folder))
    client = Client(counter)
    out: dict[str, dict[str, float]] = {}

    def measure(name: str, call: Any) -> Any:
        counter.reset()
        started = time.perf_counter()
        result = call()
        out[name] = {
            "seconds": time.perf_counter() - started,
            "meta_read": counter.read["metadata"],
            "meta_written": counter.written["metadata"],
        }
        return result

    child = measure(
        "create",
        lambda: DatasetVersion.create_version(
            dataset_name="t", parent_version_names=[f"v{versions - 1}"], version_name=f"c{rep}", client=client
        ),
    )
    frame = SingleFrame(source=f"s3://bucket/{rep}.jpg", width=10, height=10, id=f"f{rep}")
    measure("add", lambda: child.add_frames([frame]))
    measure("publish", lambda: child.publish_version())
    fresh = Client(counter)
    measure(
        "open",
        lambda: DatasetVersion.get_version(
            dataset_name="t", version_name=f"v{versions // 2}", client=fresh
        ).get_stats(),
    )
    return out


def writer(folder: str, draft_id: str, seconds: float, ready: Any, go: Any, results: Any) -> None:
    client = Client(LocalStore(folder))
    version = DatasetVersion.get_version(dataset_name="w", version_id=draft_id, client=client)
    landed = failed = 0
    slowest = 0.0
    ready.put(draft_id)
    go.wait()
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        frame = SingleFrame(source=f"s3://bucket/{draft_id}/{i}.jpg", width=10, height=10)
        started = time.monotonic()
        try:
            version.add_frames([frame])
            landed += 1
        except HdsError:  # ConflictError once its retry budget ran out
            failed += 1
        slowest = max(slowest, time.monotonic() - started)
    results.put((landed, failed, slowest))


def commit_rate(workdir: Path, writers: int, seconds: float) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(dir=workdir))
    client = Client(LocalStore(folder))
    root = DatasetVersion.create_new_dataset(dataset_name="w", client=client)
    root.publish_version()
    drafts = [
        DatasetVersion.create_version(
            dataset_name="w", parent_version_names=[root.name], version_name=f"d{i}", client=client
        ).id
        for i in range(writers)
    ]
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(str(folder), d, seconds, ready, go, results)) for d in drafts]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    go.set()  # every writer starts at once
    got = [results.get(timeout=seconds + 300) for _ in procs]
    for proc in procs:
        proc.join()
    landed = sum(g[0] for g in got)
    failed = sum(g[1] for g in got)
    return {
        "writers": writers,
        "commits_per_s": landed / seconds,
        "failed": failed,
        "failed_share": failed / max(1, landed + failed),
        "slowest_call_s": max(g[2] for g in got),
        "fewest_commits_of_a_writer": min(g[0] for g in got),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,1000,5000", help="tree sizes (default 10,1000,5000)")
    p.add_argument("--shapes", default="chain,tree", help="chain, tree or both (default both)")
    p.add_argument("--reps", type=int, default=3, help="cycles per size (median; default 3)")
    p.add_argument("--writers", default="1,4,8", help="writer counts for the commit rate (default 1,4,8)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds each writer count runs (default 10)")
    p.add_argument("--starve", type=int, default=0, help="writers of the starvation run (default: none)")
    p.add_argument("--starve-seconds", type=float, default=60.0, help="seconds of the starvation run")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    opts = p.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    results: dict[str, Any] = {"cycles": {}, "rates": []}
    with tempfile.TemporaryDirectory(prefix="hds-tree-bench-") as tmp:
        work = Path(tmp)
        for shape in opts.shapes.split(","):
            base: dict[str, float] = {}
            print(
                f"\n(h) one commit cycle on a {shape}: median of {opts.reps}; ratios to {sizes[0]} versions"
            )
            print(
                f"{'versions':>9} {'call':>8} {'time s':>9} {'ratio':>7} "
                f"{'meta read KB':>13} {'meta written KB':>16}"
            )
            for n in sizes:
                folder = work / f"{shape}-{n}"
                build(folder, n, shape)
                runs = [cycle(folder, n, rep) for rep in range(opts.reps)]
                results["cycles"][f"{shape}-{n}"] = runs
                for call in ("create", "add", "publish", "open"):
                    sec = statistics.median(r[call]["seconds"] for r in runs)
                    read = statistics.median(r[call]["meta_read"] for r in runs) / 1024
                    written = statistics.median(r[call]["meta_written"] for r in runs) / 1024
                    base.setdefault(call, sec)
                    ratio = sec / base[call]
                    print(f"{n:>9} {call:>8} {sec:>9.3f} {ratio:>6.1f}x {read:>13.1f} {written:>16.1f}")
                total = [sum(r[c]["seconds"] for c in ("create", "add", "publish")) for r in runs]
                base.setdefault("cycle", statistics.median(total))
                print(
                    f"{n:>9} {'cycle':>8} {statistics.median(total):>9.3f} "
                    f"{statistics.median(total) / base['cycle']:>6.1f}x"
                )
                ck = checkpoint_cost(folder, n)
                results["cycles"][f"{shape}-{n}-checkpoint"] = ck
                per = ck["interval"]
                print(
                    f"{n:>9} {'ckpt':>8} {ck['seconds']:>9.3f} {'':>7} {ck['meta_read'] / 1024:>13.1f} "
                    f"{ck['meta_written'] / 1024:>16.1f}   once per {per} commits: "
                    f"{1000 * ck['seconds'] / per:.2f} ms, "
                    f"{(ck['meta_read'] + ck['meta_written']) / per / 1024:.1f} KB a commit"
                )
        print(
            f"\n(h) commit rate: writers adding one frame at a time to their own drafts, {opts.seconds:.0f} s"
        )
        print(f"{'writers':>8} {'commits/s':>10} {'ratio':>7} {'failed':>7} {'slowest call s':>15}")
        one = 0.0
        counts = [int(x) for x in opts.writers.split(",") if x]
        for w in counts:
            rate = commit_rate(work, w, opts.seconds)
            results["rates"].append(rate)
            one = one or rate["commits_per_s"] or 1.0
            print(
                f"{w:>8} {rate['commits_per_s']:>10.1f} {rate['commits_per_s'] / one:>6.2f}x "
                f"{rate['failed']:>7d} ({100 * rate['failed_share']:.1f} %) {rate['slowest_call_s']:>8.2f}"
            )
        if opts.starve:
            rate = commit_rate(work, opts.starve, opts.starve_seconds)
            results["starve"] = rate
            print(
                f"\n(h) starvation: {opts.starve} writers for {opts.starve_seconds:.0f} s: "
                f"{rate['commits_per_s']:.1f} commits/s, {rate['failed']} calls failed "
                f"({100 * rate['failed_share']:.2f} %, target < 1 %), slowest call "
                f"{rate['slowest_call_s']:.1f} s, fewest commits of one writer "
                f"{rate['fewest_commits_of_a_writer']}"
            )
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
