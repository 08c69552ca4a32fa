"""Streaming reads: a DataView pass's peak memory, and the cost of the next frame against the version's size.

    python bench/stream_bench.py                        # 1,000,000 frames (local folder)
    python bench/stream_bench.py --frames 100000         # a quick look

Builds versions of N, N/10 and 3N/10 frames (Arrow ingest) on a local folder, then, each in a fresh
process: (1) one full pass of a DataView over all N frames (whole frames, sequential order),
reporting the process's peak RSS above what it held when it started (VmHWM - VmRSS before any
import: the imports of pyarrow and hds_s3 count); (2) a pass over N/10 matches of the N/10 version
and of the 3N/10 version (a range query on meta.score selects a third of the latter), reporting the
time per frame and the ratio of the two. Targets (issue 14): peak RSS under 500 MB above the start
at 1,000,000 frames; the ratio near 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: VmRSS when this process started (before pyarrow, hds_s3 and the bench's own modules were imported).
PROCESS_START = int(re.findall(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text())[0]) * 1024

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pyarrow as pa  # noqa: E402
import synth  # noqa: E402

MB = 1024 * 1024


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def build(root: Path, name: str, n: int, seed: int) -> None:
    from hds_s3 import DatasetVersion, connect

    version = DatasetVersion.create_new_dataset(dataset_name=name, client=connect(str(root)))
    for start in range(0, n, 100_000):
        rows = [synth.make_frame(i, seed) for i in range(start, min(n, start + 100_000))]
        assert not version.add_frames(pa.Table.from_pylist(rows))
    version.publish_version()


def one_pass(args: dict[str, Any], process_start: int) -> dict[str, Any]:
    from hds_s3 import DataView, connect

    client = connect(args["root"])
    view = DataView(client=client)
    view.add_query(dataset_name=args["dataset"], version_name="Current", frame_query=args.get("query"))
    start_rss = status("VmRSS")
    t0 = time.perf_counter()
    count = 0
    for frame in view.get_iterator(projection=args.get("projection")):
        count += 1
        assert frame["id"] if isinstance(frame, dict) else frame.id  # whole frames: SingleFrame objects
    seconds = time.perf_counter() - t0
    return {
        "frames": count,
        "seconds": seconds,
        "rss_process_start": process_start,
        "rss_start": start_rss,
        "rss_peak": status("VmHWM"),
    }


def run(args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(args)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.worker:
        print(json.dumps(one_pass(json.loads(opts.worker), PROCESS_START)))
        return 0
    n = opts.frames
    work = Path(tempfile.mkdtemp(prefix="hds-stream-", dir=opts.workdir))
    root = work / "store"
    try:
        for name, size in (("big", n), ("small", n // 10), ("mid", 3 * n // 10)):
            t0 = time.perf_counter()
            build(root, name, size, opts.seed)
            print(f"built {name}: {size:,} frames in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        full = run({"root": str(root), "dataset": "big"})
        small = run({"root": str(root), "dataset": "small", "projection": ["id", "rois", "meta"]})
        mid = run(
            {
                "root": str(root),
                "dataset": "mid",
                "query": "meta.score:[0 TO 0.3333333]",
                "projection": ["id", "rois", "meta"],
            }
        )
        above = (full["rss_peak"] - full["rss_process_start"]) / MB
        per_small = small["seconds"] / small["frames"] * 1e6
        per_mid = mid["seconds"] / mid["frames"] * 1e6
        print(f"\nstreaming, N={n:,} (local folder)")
        print("| figure | value | target |")
        print("| --- | --- | --- |")
        print(
            f"| full DataView pass over {full['frames']:,} frames: peak RSS above start | {above:.0f} MB "
            f"({full['seconds']:.0f} s) | < 500 MB |"
        )
        print(
            f"| pass over {small['frames']:,} of {n // 10:,} frames vs {mid['frames']:,} of {3 * n // 10:,}: "
            f"per frame | {per_small:.1f} / {per_mid:.1f} us ({per_mid / per_small:.2f}x) | ~1x |"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
