"""hds_s3 beside raw pyarrow, Lance and Delta Lake on one workload, on a local folder and moto's server.

    python bench/run.py --peers --frames 100000            # both stores, every system
    python bench/peers.py --frames 20000 --stores local     # a quick look

Every system gets the same Arrow table (``synth`` frames through ``pa.Table.from_pylist``: sources,
ROIs and metadata as structs) and does the same things, timed in this process; each figure is
printed with its ratio to raw pyarrow doing the same in the same run on the same store. See
bench/README.md ("Peers") for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import stores  # noqa: E402
import synth  # noqa: E402

from hds_s3 import Client, DatasetVersion  # noqa: E402

CITY, LABEL = "bremen", "cat"
SYSTEMS = ("pyarrow", "hds_s3", "lance", "delta")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_io(pid: int | str = "self") -> tuple[int, int]:
    """(bytes read, bytes written) through system calls by a process: files and sockets alike."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


class Meter:
    """Wall time, CPU time and bytes moved by one operation.

    The bytes are this process's file reads and writes (``/proc/self/io``), so they are measured on
    the local folder only: socket traffic is not counted there, and no system lets a proxy-free
    count of its S3 requests be taken alike for all.
    """

    def __init__(self, local: bool) -> None:
        self.local = local

    def __call__(self, fn: Callable[[], Any]) -> tuple[dict[str, float], Any]:
        r0, w0 = proc_io()
        c0, t0 = cpu(), time.perf_counter()
        out = fn()
        seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
        r1, w1 = proc_io()
        nan = float("nan")
        read, written = (r1 - r0, w1 - w0) if self.local else (nan, nan)
        return {"seconds": seconds, "cpu": cpu_s, "read": read, "written": written}, out


# ---------------------------------------------------------------------------------------------- the workload


def frames_table(indices: list[int], seed: int, variant: int = 0) -> pa.Table:
    return pa.Table.from_pylist([synth.make_frame(i, seed, variant) for i in indices])


def child_edits(alive: list[int], next_index: int, depth: int, seed: int, k: int) -> dict[str, Any]:
    rng = random.Random(seed * 7919 + depth)
    deleted = rng.sample(alive, k)
    gone = set(deleted)
    rest = [i for i in alive if i not in gone]
    updated = rng.sample(rest, k)
    added = list(range(next_index, next_index + k))
    return {
        "deleted": [synth.frame_id(i, seed) for i in deleted],
        "updated": frames_table(updated, seed, variant=depth),
        "added": frames_table(added, seed),
        "alive": rest + added,
        "next": next_index + k,
    }


def apply_edits(table: pa.Table, edits: dict[str, Any]) -> pa.Table:
    """What raw pyarrow does for a child: the parent's rows minus deleted and updated, plus the new."""
    drop = pa.concat_arrays(
        [pa.array(edits["deleted"], pa.string()), edits["updated"].column("id").combine_chunks()]
    )
    kept = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=drop)))
    return pa.concat_tables([kept, edits["updated"], edits["added"]], promote_options="permissive")


def matching_ids(table: pa.Table) -> list[str]:
    """Frames with >= 1 ROI labelled LABEL among those whose city is CITY (table: id, rois)."""
    rois = pc.list_flatten(table.column("rois"))
    labels = pc.struct_field(rois, "labels")
    hit = pc.equal(pc.list_flatten(labels), LABEL)
    roi_rows = pc.filter(pc.list_parent_indices(labels), hit)
    frame_rows = pc.unique(pc.take(pc.list_parent_indices(table.column("rois")), roi_rows))
    return sorted(table.column("id").take(frame_rows).to_pylist())


# ---------------------------------------------------------------------------------------------- systems


class System:
    """One system on one store: ingest, child, reads, query, writers; versions 0 (the root) to depth."""

    name = ""

    def __init__(self, store: dict[str, Any], work: Path) -> None:
        self.store = store
        self.work = work

    def ingest(self, table: pa.Table, run: int = 0) -> None:
        """Write ``table`` as version 0, in a new place for each ``run`` (the last run's is kept)."""
        raise NotImplementedError

    def child(self, depth: int, edits: dict[str, Any]) -> None:
        raise NotImplementedError

    def read(self, depth: int) -> pa.Table:
        raise NotImplementedError

    def query(self, depth: int) -> list[str]:
        raise NotImplementedError

    def two_writers(self, depth: int, batches: list[pa.Table]) -> int:
        """Two writers each add one batch to a child of version ``depth``; return how many landed."""
        raise NotImplementedError

    def fresh_child(self, depth: int, edits: dict[str, Any]) -> None:
        """:meth:`child` by a writer that has read nothing yet (a new process, say)."""
        self.child(depth, edits)  # the peers and raw pyarrow keep nothing between calls


class RawPyarrow(System):
    """One Parquet file per version (pyarrow defaults), put and got whole through the store."""

    name = "pyarrow"

    def __init__(self, store: dict[str, Any], work: Path) -> None:
        super().__init__(store, work)
        self.objects = stores.open_spec(store["spec"])

    def key(self, depth: int) -> str:
        return f"raw/v{depth:02d}.parquet"

    def put(self, depth: int, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.objects.put(self.key(depth), sink.getvalue().to_pybytes())

    def ingest(self, table: pa.Table, run: int = 0) -> None:
        self.put(0, table)  # a new object each time

    def read(self, depth: int, columns: list[str] | None = None) -> pa.Table:
        data, _ = self.objects.get(self.key(depth))
        return pq.read_table(pa.BufferReader(data), columns=columns)

    def child(self, depth: int, edits: dict[str, Any]) -> None:
        self.put(depth, apply_edits(self.read(depth - 1), edits))

    def query(self, depth: int) -> list[str]:
        data, _ = self.objects.get(self.key(depth))
        table = pq.read_table(
            pa.BufferReader(data), columns=["id", "rois"], filters=pc.field("meta", "city") == CITY
        )
        return matching_ids(table)

    def two_writers(self, depth: int, batches: list[pa.Table]) -> int:
        return 0  # files have no versions: the second writer's file replaces the first one's


class Hds(System):
    name = "hds_s3"

    def __init__(self, store: dict[str, Any], work: Path) -> None:
        super().__init__(store, work)
        self.client = Client(stores.open_spec(store["spec"]))
        self.versions: dict[int, str] = {}
        self.dataset_id = ""

    def version(self, depth: int) -> DatasetVersion:
        return DatasetVersion.get_version(
            dataset_id=self.dataset_id, version_id=self.versions[depth], client=Client(self.client.store)
        )

    def ingest(self, table: pa.Table, run: int = 0) -> None:
        version = DatasetVersion.create_new_dataset(dataset_name=f"peers-{run}", client=self.client)
        failed = version.add_frames(frames_input(table))
        assert not failed, failed[:2]
        self.dataset_id, self.versions[0] = version.dataset_id, version.id

    def publish_root(self) -> None:
        self.version(0).publish_version()

    def child(self, depth: int, edits: dict[str, Any], client: Client | None = None) -> None:
        child = DatasetVersion.create_version(
            dataset_id=self.dataset_id,
            version_name=f"d{depth:02d}",
            parent_version_ids=[self.versions[depth - 1]],
            client=client or self.client,
        )
        assert not child.add_frames(frames_input(edits["added"]))
        assert not child.update_frames(frames_input(edits["updated"]))
        child.delete_frames(edits["deleted"])
        child.publish_version()
        self.versions[depth] = child.id

    def fresh_child(self, depth: int, edits: dict[str, Any]) -> None:
        # a client of its own: it knows nothing of the segments the ingest and the children wrote
        self.child(depth, edits, Client(stores.open_spec(self.store["spec"])))

    def read(self, depth: int) -> pa.Table:
        return self.version(depth).get_frames_table()

    def query(self, depth: int) -> list[str]:
        from hds_s3.query.lucene import match_ids

        ids = match_ids(self.version(depth), f'meta.city:"{CITY}"', roi_query=LABEL)
        return sorted(ids.to_pylist())

    def two_writers(self, depth: int, batches: list[pa.Table]) -> int:
        landed = []

        def write(i: int, batch: pa.Table) -> None:
            client = Client(stores.open_spec(self.store["spec"]))
            child = DatasetVersion.create_version(
                dataset_id=self.dataset_id,
                version_name=f"writer-{i}",
                parent_version_ids=[self.versions[depth]],
                client=client,
            )
            if not child.add_frames(frames_input(batch)):
                child.publish_version()
                landed.append(i)

        run_two(write, batches)
        return len(landed)


def frames_input(table: pa.Table) -> Any:
    """The table itself, or its rows as dicts for an hds_s3 without Arrow input (a run of older code)."""
    try:
        import hds_s3.index.arrowin  # noqa: F401
    except ImportError:
        return table.to_pylist()
    return table


def run_two(write: Callable[[int, pa.Table], None], batches: list[pa.Table]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int, batch: pa.Table) -> None:
        try:
            write(i, batch)
        except Exception as exc:  # noqa: BLE001 - a writer that fails is counted, not fatal
            errors.append(exc)
            log(f"  writer {i} failed: {type(exc).__name__}: {str(exc)[:200]}")

    threads = [threading.Thread(target=guarded, args=(i, b)) for i, b in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Lance(System):
    name = "lance"

    def __init__(self, store: dict[str, Any], work: Path) -> None:
        super().__init__(store, work)
        import lance

        self.lance = lance
        spec = store["spec"]
        if spec["kind"] == "local":
            self.base, self.options = str(work / "lance"), None
        else:
            self.base = f"s3://{spec['bucket']}/lance"
            self.options = {
                "aws_endpoint": spec["endpoint"],
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "aws_region": "us-east-1",
                "allow_http": "true",
            }
        self.uri = self.base
        self.versions: dict[int, int] = {}

    def dataset(self, version: int | None = None) -> Any:
        return self.lance.dataset(self.uri, version=version, storage_options=self.options)

    def ingest(self, table: pa.Table, run: int = 0) -> None:
        self.uri = f"{self.base}-{run}"
        ds = self.lance.write_dataset(table, self.uri, storage_options=self.options)
        self.versions[0] = ds.version

    def child(self, depth: int, edits: dict[str, Any]) -> None:
        ds = self.dataset()
        ds.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(
            pa.concat_tables([edits["updated"], edits["added"]], promote_options="permissive")
        )
        ds = self.dataset()
        quoted = ", ".join(f"'{i}'" for i in edits["deleted"])
        ds.delete(f"id IN ({quoted})")
        self.versions[depth] = self.dataset().version

    def read(self, depth: int) -> pa.Table:
        return self.dataset(self.versions[depth]).to_table()

    def query(self, depth: int) -> list[str]:
        table = self.dataset(self.versions[depth]).to_table(
            columns=["id", "rois"], filter=f"meta.city = '{CITY}'"
        )
        return matching_ids(table)

    def two_writers(self, depth: int, batches: list[pa.Table]) -> int:
        before = self.dataset().count_rows()
        run_two(
            lambda i, b: self.lance.write_dataset(b, self.uri, mode="append", storage_options=self.options),
            batches,
        )
        after = self.dataset().count_rows()
        return sum(1 for b in batches) if after - before == sum(b.num_rows for b in batches) else 0


class Delta(System):
    name = "delta"

    def __init__(self, store: dict[str, Any], work: Path) -> None:
        super().__init__(store, work)
        import deltalake

        self.deltalake = deltalake
        spec = store["spec"]
        if spec["kind"] == "local":
            self.base, self.options = str(work / "delta"), None
        else:
            self.base = f"s3://{spec['bucket']}/delta"
            self.options = {
                "AWS_ENDPOINT_URL": spec["endpoint"],
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true",
                "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
            }
        self.uri = self.base
        self.versions: dict[int, int] = {}

    def table(self, version: int | None = None) -> Any:
        return self.deltalake.DeltaTable(self.uri, version=version, storage_options=self.options)

    def ingest(self, table: pa.Table, run: int = 0) -> None:
        self.uri = f"{self.base}-{run}"
        self.deltalake.write_deltalake(self.uri, table, storage_options=self.options)
        self.versions[0] = self.table().version()

    def child(self, depth: int, edits: dict[str, Any]) -> None:
        source = pa.concat_tables([edits["updated"], edits["added"]], promote_options="permissive")
        (
            self.table()
            .merge(source, "s.id = t.id", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        quoted = ", ".join(f"'{i}'" for i in edits["deleted"])
        self.table().delete(f"id IN ({quoted})")
        self.versions[depth] = self.table().version()

    def read(self, depth: int) -> pa.Table:
        return self.table(self.versions[depth]).to_pyarrow_table()

    def query(self, depth: int) -> list[str]:
        data = self.table(self.versions[depth]).to_pyarrow_dataset()
        return matching_ids(data.to_table(columns=["id", "rois"], filter=pc.field("meta", "city") == CITY))

    def two_writers(self, depth: int, batches: list[pa.Table]) -> int:
        before = self.table().to_pyarrow_dataset().count_rows()
        run_two(
            lambda i, b: self.deltalake.write_deltalake(
                self.uri, b, mode="append", storage_options=self.options
            ),
            batches,
        )
        after = self.table().to_pyarrow_dataset().count_rows()
        return len(batches) if after - before == sum(b.num_rows for b in batches) else 0


SYSTEM_CLASSES: dict[str, type[System]] = {
    "pyarrow": RawPyarrow,
    "hds_s3": Hds,
    "lance": Lance,
    "delta": Delta,
}


# ---------------------------------------------------------------------------------------------- one store


def run_store(
    name: str, spec: dict[str, Any], server_pid: int | None, opts: argparse.Namespace
) -> dict[str, Any]:
    n, depth, seed = opts.frames, opts.depth, opts.seed
    k = max(1, n // 100)
    meter = Meter(spec["kind"] == "local")
    work = Path(tempfile.mkdtemp(prefix=f"hds-peers-{name}-", dir=opts.workdir))
    store = {"name": name, "spec": spec}
    log(f"{name}: building the table of {n:,} frames")
    root = frames_table(list(range(n)), seed)
    systems = {s: SYSTEM_CLASSES[s](store, work) for s in opts.systems}
    out: dict[str, Any] = {s: {} for s in systems}
    try:
        for s, system in systems.items():
            log(f"{name}/{s}: ingest")
            # the median of --reps ingests, each into a new dataset (table, file): a process's first
            # large write also pays for memory it never touched before, which on a virtual machine
            # can cost more than the write (the last ingest is the one the children build on)
            runs = [meter(lambda system=system, r=r: system.ingest(root, r))[0] for r in range(opts.reps)]
            out[s]["ingest"] = median_of(runs)
            out[s]["ingest_runs"] = runs
            if isinstance(system, Hds):
                out[s]["publish_root"], _ = meter(system.publish_root)
        alive, next_index = list(range(n)), n
        expected_rows = {0: n}
        for d in range(1, depth + 1):
            edits = child_edits(alive, next_index, d, seed, k)
            alive, next_index = edits["alive"], edits["next"]
            expected_rows[d] = len(alive)
            for s, system in systems.items():
                fig, _ = meter(lambda system=system, edits=edits, d=d: system.child(d, edits))
                out[s].setdefault("children", []).append(fig)
            if d == 1 or d == depth:
                log(f"{name}: child d={d} committed by every system")
        log(f"{name}: reads, query, two writers")
        # each read figure: one unmeasured read per system, then the systems in turn, rep after rep,
        # so that whatever the machine does meanwhile (the memory a first read after the quiet of
        # the commits takes anew costs seconds of system time on a virtual machine) falls on all
        for label, d in (("read_child", 1), ("read_v1", 0), ("read_tip", depth)):
            for system in systems.values():
                system.read(d)  # unmeasured
            reads: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
            for _ in range(opts.reps):
                for s, system in systems.items():
                    fig, table = meter(lambda system=system, d=d: system.read(d))
                    assert table.num_rows == expected_rows[d], (s, label, table.num_rows, expected_rows[d])
                    del table
                    reads[s].append(fig)
            for s in systems:
                out[s][label] = median_of(reads[s])
        for s, system in systems.items():
            figs, answers = [], []
            for _ in range(opts.reps):
                fig, ids = meter(lambda system=system: system.query(0))
                figs.append(fig)
                answers.append(ids)
            out[s]["query"] = median_of(figs)
            out[s]["query_count"] = len(answers[0])
            writers = [
                frames_table(list(range(next_index + i * k, next_index + (i + 1) * k)), seed)
                for i in range(2)
            ]
            fig, landed = meter(lambda system=system, writers=writers: system.two_writers(depth, writers))
            out[s]["two_writers"] = {**fig, "landed": landed}
        # one more child of the tip, by a writer that has read nothing yet (the two writers' frames
        # hold the ids after ``next_index``: this child adds new ones after theirs)
        edits = child_edits(alive, next_index + 2 * k, depth + 1, seed, k)
        for s, system in systems.items():
            fig, _ = meter(lambda system=system, edits=edits: system.fresh_child(depth + 1, edits))
            out[s]["fresh_child"] = fig
        counts = {s: out[s]["query_count"] for s in systems}
        assert len(set(counts.values())) == 1, f"the systems disagree on the query: {counts}"
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


def median_of(figs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(f[key] for f in figs) for key in figs[0]}


# ---------------------------------------------------------------------------------------------- output

ROWS = [
    ("ingest the table: time", "ingest", "seconds"),
    ("ingest the table: CPU", "ingest", "cpu"),
    ("child commit (1 % add/update/delete): time", "child", "seconds"),
    ("child commit: MB read", "child", "read"),
    ("child commit: MB written", "child", "written"),
    ("child commit by a new writer: time", "fresh_child", "seconds"),
    ("child commit by a new writer: MB read", "fresh_child", "read"),
    ("child commit by a new writer: MB written", "fresh_child", "written"),
    ("read the child", "read_child", "seconds"),
    ("read v1", "read_v1", "seconds"),
    ("query >= 1 ROI cat AND city bremen", "query", "seconds"),
    ("read the tip of the chain", "read_tip", "seconds"),
    ("two writers on one parent: time (s)", "two_writers", "seconds"),
]


def figure(result: dict[str, Any], key: str, field: str) -> float:
    if key == "child":
        return float(result["children"][0][field])
    if key not in result:  # a JSON of an older bench
        return float("nan")
    return float(result[key][field])


def table_rows(results: dict[str, dict[str, Any]], systems: list[str]) -> list[list[str]]:
    """One line per figure: each system's value and its ratio to raw pyarrow (per store)."""
    lines = []
    for label, key, field in ROWS:
        cells = [label]
        for s in systems:
            parts = []
            for res in results.values():
                value = figure(res[s], key, field)
                base = figure(res["pyarrow"], key, field) if "pyarrow" in res else None
                if value != value:
                    parts.append("-")
                elif field in ("read", "written"):
                    parts.append(f"{value / 1e6:.1f}")
                elif key == "two_writers":
                    parts.append(f"{value:.2f}")
                elif base:
                    parts.append(f"{value / base:.2f}x")
                else:
                    parts.append(f"{value:.2f}s")
            cells.append(" / ".join(parts))
        lines.append(cells)
    landed = ["two writers: commits landed"]
    for s in systems:
        landed.append(" / ".join(str(res[s]["two_writers"]["landed"]) for res in results.values()))
    lines.append(landed)
    seconds = ["seconds: ingest, read the child, read the tip"]
    for s in systems:
        seconds.append(
            " / ".join(
                f"{figure(res[s], 'ingest', 'seconds'):.2f}, {figure(res[s], 'read_child', 'seconds'):.2f}, "
                f"{figure(res[s], 'read_tip', 'seconds'):.2f}"
                for res in results.values()
            )
        )
    lines.append(seconds)
    return lines


def print_table(results: dict[str, dict[str, Any]], systems: list[str], opts: argparse.Namespace) -> None:
    stores_ = " / ".join(results)
    print(
        f"\npeers: N={opts.frames:,}, depth {opts.depth}, median of {opts.reps} reads; each cell: {stores_}"
    )
    print("ratios are to raw pyarrow in the same run on the same store; MB are absolute\n")
    header = ["figure", *systems]
    lines = table_rows(results, systems)
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for line in lines:
        print("| " + " | ".join(line) + " |")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--stores", default="local,moto_server")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--report", type=Path, help="only print the table of a JSON written by --json")
    opts = p.parse_args(argv)
    if opts.report:
        saved = json.loads(opts.report.read_text())
        opts.frames, opts.depth, opts.reps = saved["frames"], saved["depth"], saved["reps"]
        print_table(saved["results"], saved["systems"], opts)
        return 0
    opts.systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    if "pyarrow" not in opts.systems:
        opts.systems.insert(0, "pyarrow")
    results: dict[str, dict[str, Any]] = {}
    for name in [s.strip() for s in opts.stores.split(",") if s.strip()]:
        server = None
        root = Path(tempfile.mkdtemp(prefix="hds-peers-store-", dir=opts.workdir))
        try:
            if name == "local":
                spec: dict[str, Any] = {"kind": "local", "root": str(root / "store")}
                pid = None
            elif name == "moto_server":
                server = stores.MotoServer()
                spec = {"kind": "s3", "endpoint": server.endpoint, "bucket": "hds-peers", "prefix": "hds"}
                stores.open_spec(spec).create_bucket()
                pid = server.pid
            else:
                p.error(f"unknown store {name!r}")
            results[name] = run_store(name, spec, pid, opts)
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(root, ignore_errors=True)
        if opts.json:
            opts.json.write_text(
                json.dumps(
                    {
                        "frames": opts.frames,
                        "depth": opts.depth,
                        "reps": opts.reps,
                        "systems": opts.systems,
                        "results": results,
                        "machine": {"cpus": os.cpu_count()},
                    },
                    indent=1,
                )
            )
    print_table(results, opts.systems, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
