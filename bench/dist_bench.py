"""Benchmark (i): reading and ingesting past one process, with Ray and Dask, as ratios to one process.

On a local folder, in one run:

- the synthetic set (``synth``) as two Parquet files of Arrow frame columns (sources, ROIs and
  metadata as structs), the input of both ingests;
- ingest: the baseline is one process, ``add_frames(file)`` for each file; against it, two Ray
  workers (``ray.data.read_parquet`` of the files, two blocks, ``hds_s3.ray.write_frames``: each
  worker writes its segments, one commit) and two Dask worker processes (``dask.dataframe.read_parquet``,
  two partitions, ``hds_s3.dask.write_frames``);
- reads of the published N-frame version (every frame column): the baseline is one process's
  ``get_frames_table()`` (fresh client each time); against it, the plan read in threads of this
  process, Ray (two workers read the blocks into Ray's object store: ``materialize``; and the same
  brought to the driver as one Arrow table), Dask with threads (the pandas frame of ``ArrowDtype``
  columns on the driver) and Dask with two worker processes (each partition read and counted in
  its worker: the work of a job that reads and reduces), once as ``map_partitions(len).compute()``
  (Dask's local process scheduler does not fuse the count into the read there: every partition
  travels to the driver and back) and once through ``to_delayed()`` (fused: only counts travel).

Ray runs locally with 2 CPUs (``ray.init(num_cpus=2)``), Dask's process pool with 2 workers: the
machine's two cores. Ray's start-up is timed apart. Reads are the median of ``--reps``.

Then the inputs of the estimate "on paper" (``--paper-frames``, default 400,000: four segments of
``SEGMENT_ROWS``), counted by a request-counting store in this process: two workers'
``write_segments`` (with a lease), the one ``commit_segments`` and its repeat, the publication, and
a reader opening the published version, planning it and reading every task. From them, what a job
of ``--paper-total`` frames (default 100 million) written by ``--paper-writers`` workers (default
100) costs in requests, bytes and commits, with the commit's per-segment and fixed parts apart.

    python bench/dist_bench.py --frames 1000000 --json dist.json
    python bench/dist_bench.py --frames 20000 --paper-frames 40000  # a quick look (~1-2 minutes)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth  # noqa: E402
from stores import CountingStore, key_kind  # noqa: E402

import hds_s3  # noqa: E402
from hds_s3 import Dataset, DatasetVersion  # noqa: E402
from hds_s3.format.catalog import Catalog  # noqa: E402
from hds_s3.index import plan as plan_module  # noqa: E402
from hds_s3.index.frameindex import SEGMENT_ROWS, FrameIndex  # noqa: E402
from hds_s3.store import open_store  # noqa: E402

CHUNK = 50_000

#: AWS S3 Standard list prices (us-east-1): per 1,000 PUT/POST/LIST/COPY, per 1,000 GET/HEAD (and
#: other reads), per GB-month stored. DELETE is free; transfer into S3 and to EC2 in-region is free.
PRICE_PUT = 0.005 / 1000
PRICE_GET = 0.0004 / 1000
PRICE_GB_MONTH = 0.023


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def write_inputs(frames: int, folder: Path) -> list[str]:
    """The synthetic frames as two Parquet files (halves), written a chunk at a time."""
    paths = []
    half = (frames + 1) // 2
    for part, (first, stop) in enumerate([(0, half), (half, frames)]):
        path = folder / f"frames-{part}.parquet"
        writer: pq.ParquetWriter | None = None
        for start in range(first, stop, CHUNK):
            rows = list(synth.frames(range(start, min(stop, start + CHUNK))))
            if writer is None:
                writer = pq.ParquetWriter(path, pa.Table.from_pylist(rows).schema)
            writer.write_table(pa.Table.from_pylist(rows, schema=writer.schema))
        assert writer is not None
        writer.close()
        paths.append(str(path))
    return paths


def new_draft(client: hds_s3.Client, name: str) -> DatasetVersion:
    Dataset.create(name, client=client)
    return DatasetVersion.get_current(dataset_name=name, client=client)


def counted(store: CountingStore, fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` and return its result and the requests and bytes it cost on ``store``."""
    store.reset()
    result = fn()
    snap = store.snapshot()
    kinds: dict[str, list[int]] = {}
    for key, size in snap.pop("puts"):
        kinds.setdefault(key_kind(key), []).append(size)
    snap["put_bytes"] = {k: sum(v) for k, v in kinds.items()}
    snap["put_counts"] = {k: len(v) for k, v in kinds.items()}
    return result, snap


def measure_requests(url: str, files: list[str], sample: int) -> dict[str, Any]:
    """Requests and bytes of each step of a two-worker job of ``sample`` frames, and of reading it."""
    store = CountingStore(open_store(url))
    client = hds_s3.Client(store)
    draft = new_draft(client, "paper")
    half = sample // 2
    shares = [pq.read_table(path).slice(0, half) for path in files]
    out: dict[str, Any] = {"frames": 2 * half}
    lease, out["lease_take"] = counted(store, lambda: draft.acquire_lease(3600, renew_every=0))
    _, out["lease_renew"] = counted(store, lease.renew)
    written = []
    for part, share in enumerate(shares):
        w, out[f"write_part_{part}"] = counted(store, lambda s=share, p=part: draft.write_segments(s, part=p))
        assert not w.failed, w.failed[:3]
        written.append(w)
    out["segments"] = sum(len(w.segments) for w in written)
    out["segment_rows"] = [s.rows for w in written for s in w.segments]
    commit, out["commit"] = counted(store, lambda: draft.commit_segments(written, txn_id="paper"))
    assert commit.committed and commit.rows == 2 * half, commit
    # a draft's plan reads the ids of its segments after the first (their id ranges overlap)
    _, out["draft_plan"] = counted(store, lambda: draft.read_plan())
    again, out["commit_repeated"] = counted(store, lambda: draft.commit_segments(written, txn_id="paper"))
    assert not again.committed
    _, out["lease_release"] = counted(store, lease.release)
    _, out["publish"] = counted(store, draft.publish_version)
    reader = CountingStore(open_store(url))
    fresh = hds_s3.Client(reader)
    version, out["open"] = counted(
        reader,
        lambda: DatasetVersion.get_version(dataset_id=draft.dataset_id, version_id=draft.id, client=fresh),
    )
    plan, out["plan"] = counted(reader, lambda: version.read_plan())
    out["tasks"] = len(plan.tasks)
    # A worker opens the store of a task's spec once per process (plan.frame_index): here, that
    # process-wide index is one on a counting store of its own, so the tasks' requests are counted.
    spec = plan.tasks[0].store
    worker = CountingStore(spec.open())
    plan_module._indexes[spec] = FrameIndex(Catalog(worker))
    try:
        table, out["read"] = counted(worker, plan.read)
    finally:
        plan_module._indexes.pop(spec, None)
    assert table.num_rows == 2 * half
    return out


def on_paper(m: dict[str, Any], total: int, writers: int) -> tuple[list[str], dict[str, Any]]:
    """What a job of ``total`` frames by ``writers`` workers costs on S3, from the measured steps.

    Per-segment costs scale with the segments (``total / SEGMENT_ROWS``), the rest is per call
    (one ``write_segments`` per worker share), per job (lease, commit, publish) or per reader.
    """
    segments = m["segments"]
    frames = m["frames"]
    seg_bytes = sum(m[f"write_part_{p}"]["put_bytes"].get("segment", 0) for p in (0, 1))  # the workers
    per_frame = seg_bytes / frames
    big = -(-total // SEGMENT_ROWS)
    per_writer = max(1, -(-big // writers))
    big = per_writer * writers  # each writer's share ends in a partial segment at worst

    def ops(step: str, kind: str) -> int:
        return int(m[step]["ops"].get(kind, 0))

    parts = [m[f"write_part_{p}"] for p in (0, 1)]
    w_meta_req = statistics.mean(w["requests"] - w["put_counts"].get("segment", 0) for w in parts)
    w_meta_read = statistics.mean(w["bytes_read"] for w in parts)
    c = m["commit"]
    per_seg_req = (ops("commit", "head") + ops("commit", "get_range")) / segments
    per_seg_read = c["bytes_read"] / segments  # footers (the fixed metadata reads are small)
    manifest_now = c["put_bytes"].get("manifest", 0)
    per_entry = manifest_now / segments
    c_fixed_req = c["requests"] - per_seg_req * segments
    c_fixed_written = c["bytes_written"] - manifest_now
    draft_plan_per_seg = m["draft_plan"]["bytes_read"] / max(1, segments - 1)
    r = m["read"]
    read_req_per_seg = r["requests"] / m["tasks"]
    read_per_frame = r["bytes_read"] / frames
    est: dict[str, Any] = {
        "total": total,
        "writers": writers,
        "segments": big,
        "segment_mb": per_frame * SEGMENT_ROWS / 1e6,
        "stored_gb": per_frame * total / 1e9,
        "writer_puts": big,
        "writer_meta_requests": w_meta_req * writers,
        "writer_meta_kb": w_meta_read * writers / 1e3,
        "commit_requests": c_fixed_req + per_seg_req * big,
        "commit_read_mb": per_seg_read * big / 1e6,
        "manifest_mb": per_entry * big / 1e6,
        "commit_written_kb": (c_fixed_written + per_entry * big) / 1e3,
        "lease_requests": m["lease_take"]["requests"] + m["lease_release"]["requests"],
        "read_requests": m["open"]["requests"] + m["plan"]["requests"] + read_req_per_seg * big,
        "read_gb": per_frame * total / 1e9 * (read_per_frame / per_frame),
        "per_commit_manifests_mb": per_entry * big * big / 2 / 1e6,
        "draft_plan_gb": draft_plan_per_seg * (big - 1) / 1e9,
    }
    metadata_puts = ops("commit", "put") + ops("lease_take", "put")  # priced as PUTs, the rest as GETs
    est["write_usd"] = (big + metadata_puts) * PRICE_PUT + (
        est["writer_meta_requests"] + est["commit_requests"] - metadata_puts
    ) * PRICE_GET
    est["read_usd"] = est["read_requests"] * PRICE_GET
    est["store_usd_month"] = est["stored_gb"] * PRICE_GB_MONTH
    lines = [
        f"on paper: {total:,} frames written by {writers} workers (measured at {frames:,} frames, "
        f"{segments} segments)",
        f"  stored: {per_frame:.0f} B/frame -> {est['stored_gb']:.1f} GB in {big:,} segments of "
        f"~{est['segment_mb']:.1f} MB",
        f"  workers: {big:,} segment PUTs; {est['writer_meta_requests']:.0f} metadata requests "
        f"({w_meta_req:.1f} per write_segments call, {w_meta_read / 1e3:.1f} KB read each)",
        f"  one commit: {est['commit_requests']:,.0f} requests ({per_seg_req:.1f} per segment: HEAD + "
        f"footer; {c_fixed_req:.0f} fixed), {est['commit_read_mb']:.1f} MB of footers read, "
        f"a manifest of {est['manifest_mb']:.2f} MB ({per_entry:.0f} B per segment) and "
        f"{c_fixed_written / 1e3:.1f} KB of commit metadata written",
        f"  lease: {est['lease_requests']} requests to take and release, 1 PUT per renewal (ttl/3)",
        f"  reading it all: {est['read_requests']:,.0f} requests ({read_req_per_seg:.1f} per segment), "
        f"{est['read_gb']:.1f} GB; planning the draft before its publication reads "
        f"{est['draft_plan_gb']:.2f} GB of ids ({draft_plan_per_seg / 1e6:.1f} MB per later segment)",
        f"  if each of the {big:,} segments were its own commit instead: {big:,} commits whose manifests "
        f"total {est['per_commit_manifests_mb']:,.0f} MB written (each lists every segment before it)",
        f"  S3 Standard list prices: writing ${est['write_usd']:.3f} in requests, one full read "
        f"${est['read_usd']:.4f}, storage ${est['store_usd_month']:.2f} a month",
    ]
    return lines, est


def paper_only(args: argparse.Namespace) -> None:
    """Write ``--paper-frames`` synthetic frames, count the job's requests, print the estimate."""
    work = Path(tempfile.mkdtemp(prefix="hds-dist-bench-", dir=args.workdir))
    try:
        log(f"writing {args.paper_frames:,} synthetic frames as two Parquet files")
        files = write_inputs(args.paper_frames, work)
        log("requests and bytes of a two-worker job")
        measured = measure_requests(str(work / "store"), files, args.paper_frames)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    lines, estimate = on_paper(measured, args.paper_total, args.paper_writers)
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"paper": measured, "on_paper": estimate}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-dask-ingest", action="store_true", help="skip the Dask ingest")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--paper-frames", type=int, default=400_000, help="the sample of the request counts")
    ap.add_argument("--paper-total", type=int, default=100_000_000)
    ap.add_argument("--paper-writers", type=int, default=100)
    ap.add_argument("--paper-only", action="store_true", help="only the request counts and the estimate")
    args = ap.parse_args()
    if args.paper_only:
        paper_only(args)
        return

    import dask
    import dask.dataframe as dd
    import pandas as pd
    import ray

    import hds_s3.dask as hds_dask
    import hds_s3.ray as hds_ray

    work = Path(tempfile.mkdtemp(prefix="hds-dist-bench-", dir=args.workdir))
    url = str(work / "store")
    n = args.frames
    out: dict[str, Any] = {"frames": n, "reps": args.reps, "hds_s3": hds_s3.__file__}
    try:
        log(f"writing {n:,} synthetic frames as two Parquet files")
        t, files = timed(lambda: write_inputs(n, work))
        out["inputs_s"] = t

        client = hds_s3.connect(url)
        log("ingest: one process")
        single = new_draft(client, "single")

        def one_process() -> None:
            for path in files:
                assert not single.add_frames(path)

        out["ingest_single_s"], _ = timed(one_process)

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no progress reports per dataset
        log("ray.init(num_cpus=2)")
        out["ray_init_s"], _ = timed(
            lambda: ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
            )
        )
        log("ingest: two Ray workers")
        by_ray = new_draft(client, "ray")

        def two_ray_workers() -> Any:
            data = ray.data.read_parquet(files, override_num_blocks=2)
            return hds_ray.write_frames(data, by_ray, txn_id="bench-ray")

        out["ingest_ray_s"], summary = timed(two_ray_workers)
        assert summary.commit.rows == n and not summary.failed, summary
        out["ingest_ray_segments"] = summary.segments
        if not args.no_dask_ingest:
            log("ingest: two Dask worker processes")
            by_dask = new_draft(client, "dask")

            def two_dask_workers() -> Any:
                data = dd.read_parquet(files, dtype_backend="pyarrow", split_row_groups=False)
                return hds_dask.write_frames(data, by_dask, txn_id="bench-dask", scheduler="processes")

            with dask.config.set(num_workers=2):
                out["ingest_dask_s"], summary = timed(two_dask_workers)
            assert summary.commit.rows == n and not summary.failed, summary
        for name in ("single", "ray"):
            version = DatasetVersion.get_current(dataset_name=name, client=hds_s3.connect(url))
            assert version.get_frame_count() == n
        log("publishing the one-process version (the reads' subject)")
        single.publish_version()

        def fresh() -> DatasetVersion:
            return DatasetVersion.get_version(
                dataset_id=single.dataset_id, version_id=single.id, client=hds_s3.connect(url)
            )

        def single_read() -> int:
            return int(fresh().get_frames_table().num_rows)

        def plan_threads() -> int:
            return int(fresh().read_plan().read().num_rows)

        def ray_materialise() -> int:
            return int(hds_ray.read_version(fresh()).materialize().count())

        def ray_to_driver() -> int:
            refs = hds_ray.read_version(fresh()).to_arrow_refs()
            return int(pa.concat_tables(ray.get(refs)).num_rows)

        def dask_threads() -> int:
            frame: pd.DataFrame = hds_dask.read_version(fresh()).compute(scheduler="threads")
            return len(frame)

        def dask_processes() -> int:
            counts = (
                hds_dask.read_version(fresh())
                .map_partitions(len)
                .compute(scheduler="processes", num_workers=2)
            )
            return int(sum(counts))

        def dask_processes_delayed() -> int:
            parts = hds_dask.read_version(fresh()).map_partitions(len).to_delayed()
            return int(sum(sum(c) for c in dask.compute(*parts, scheduler="processes", num_workers=2)))

        reads = {
            "one process: get_frames_table": single_read,
            "one process: the plan's tasks in threads": plan_threads,
            "Ray, 2 workers: read into the object store": ray_materialise,
            "Ray, 2 workers: read and brought to the driver": ray_to_driver,
            "Dask, threads: pandas (ArrowDtype) on the driver": dask_threads,
            "Dask, 2 processes: map_partitions(len).compute()": dask_processes,
            "Dask, 2 processes: the same per partition (to_delayed)": dask_processes_delayed,
        }
        times: dict[str, list[float]] = {}
        for rep in range(args.reps):
            for label, fn in reads.items():
                log(f"read {rep + 1}/{args.reps}: {label}")
                t, rows = timed(fn)
                assert rows == n, (label, rows)
                times.setdefault(label, []).append(t)
        out["reads_s"] = times
        ray.shutdown()
        log(f"requests and bytes of a two-worker job of {min(n, args.paper_frames):,} frames")
        out["paper"] = measure_requests(url, files, min(n, args.paper_frames))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    base_read = statistics.median(out["reads_s"]["one process: get_frames_table"])
    lines = [f"benchmark (i) at N = {n:,} frames, local folder, 2 CPUs (median of {args.reps} reads)", ""]
    lines.append(f"{'figure':<58} {'time':>9} {'ratio':>7}")
    for label, ts in out["reads_s"].items():
        m = statistics.median(ts)
        lines.append(f"{'read: ' + label:<58} {m:>8.2f}s {m / base_read:>6.2f}x")
    base_ingest = out["ingest_single_s"]
    lines.append(f"{'ingest: one process, add_frames of each file':<58} {base_ingest:>8.2f}s {1:>6.2f}x")
    lines.append(
        f"{'ingest: 2 Ray workers, write_frames, one commit':<58} {out['ingest_ray_s']:>8.2f}s "
        f"{out['ingest_ray_s'] / base_ingest:>6.2f}x"
    )
    if "ingest_dask_s" in out:
        lines.append(
            f"{'ingest: 2 Dask processes, write_frames, one commit':<58} {out['ingest_dask_s']:>8.2f}s "
            f"{out['ingest_dask_s'] / base_ingest:>6.2f}x"
        )
    lines.append(
        f"(ray.init: {out['ray_init_s']:.1f} s, not counted; inputs written in {out['inputs_s']:.1f} s)"
    )
    paper, out["on_paper"] = on_paper(out["paper"], args.paper_total, args.paper_writers)
    lines += ["", *paper]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
