"""Run one ingest in a fresh process and print its figures as JSON on stdout (last line).

    python bench/ingest_worker.py '<json args>'

args: {"mode": "ours" | "baseline", "spec": store spec, "n": frames, "seed": int, "start": first index,
       "dataset": name (ours), "key": object key (baseline), "segment_rows": int, "publish": bool,
       "profile": path or null}

Time spent inside the frame generator is measured and reported separately (``gen_seconds``) so that
both ingests can be compared net of the synthetic data's own cost; ``cpu_seconds`` is the process's
CPU time over the ingest minus that generator time (approximate: the generator is timed in wall
time). Peak RSS is the high-water mark of this process (VmHWM): before the ingest (after imports)
and after it.
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import stores  # noqa: E402
import synth  # noqa: E402


def maxrss() -> int:
    """Peak resident set size of this process so far, in bytes.

    On Linux this is ``VmHWM`` of /proc/self/status: the high-water mark of this process image only.
    (``ru_maxrss`` is not used there: Linux keeps it across fork+exec, so a child started by a big
    parent would report the parent's size.)
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (less sensitive to other load than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedIter:
    """Iterate ``inner`` and add up the time spent producing items."""

    def __init__(self, inner: Iterator[Any]) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __iter__(self) -> TimedIter:
        return self

    def __next__(self) -> Any:
        t = time.perf_counter()
        try:
            return next(self.inner)
        finally:
            self.seconds += time.perf_counter() - t


def run_ours(args: dict[str, Any]) -> dict[str, Any]:
    from hds_s3 import Client, DatasetVersion

    store = stores.open_spec(args["spec"])
    client = Client(store)
    version = DatasetVersion.create_new_dataset(dataset_name=args["dataset"], client=client)
    frames = TimedIter(synth.frames(range(args["start"], args["start"] + args["n"]), args["seed"]))
    rss_before = maxrss()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    failed = version.add_frames(frames, segment_rows=args["segment_rows"])
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0 - frames.seconds
    rss_after = maxrss()
    out = {
        "seconds": seconds,
        "gen_seconds": frames.seconds,
        "cpu_seconds": cpu,
        "rss_before": rss_before,
        "rss_peak": rss_after,
        "failed": len(failed),
        "failed_sample": [f.reason for f in failed[:3]],
        "dataset_id": version.dataset_id,
        "version_id": version.id,
    }
    if args.get("publish"):
        t0 = time.perf_counter()
        version.publish_version()
        out["publish_seconds"] = time.perf_counter() - t0
        out["rss_peak_with_publish"] = maxrss()
    return out


def run_baseline(args: dict[str, Any]) -> dict[str, Any]:
    store = stores.open_spec(args["spec"])
    frames = TimedIter(synth.frames(range(args["start"], args["start"] + args["n"]), args["seed"]))
    rss_before = maxrss()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    sink = io.BytesIO()
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    for chunk in synth.chunks(frames, args["segment_rows"]):
        table = pa.Table.from_pylist(chunk, schema=schema)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(sink, schema)
        writer.write_table(table)
        del table, chunk
    assert writer is not None
    writer.close()
    data = sink.getvalue()
    store.put(args["key"], data)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0 - frames.seconds
    return {
        "seconds": seconds,
        "gen_seconds": frames.seconds,
        "cpu_seconds": cpu,
        "rss_before": rss_before,
        "rss_peak": maxrss(),
        "bytes": len(data),
    }


def main() -> None:
    args = json.loads(sys.argv[1])
    run = run_ours if args["mode"] == "ours" else run_baseline
    if args.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        out = prof.runcall(run, args)
        prof.dump_stats(args["profile"])
    else:
        out = run(args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
