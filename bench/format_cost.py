"""What writing a segment costs, by what the segment stores: the CPU behind item 1 of the ingest targets.

    python bench/format_cost.py                    # 100,000 frames, the peers' table
    python bench/format_cost.py --frames 20000     # a quick look

One Arrow table of synthetic COCO-like frames (the one ``bench/peers.py`` ingests: sources, ROIs
and metadata as structs) is written, in memory, five ways, taking turns; each figure is the median
of ``--reps`` and is printed with its ratio to raw pyarrow's write of the table in the same run:

* raw pyarrow: ``pq.write_table`` of the table, pyarrow's defaults;
* hds_s3 ingest: ``add_frames(table)`` into a memory store, the whole Arrow ingest (validation,
  metadata written as JSON text, the query columns, rows as given with an id index, encoding,
  the commit);
* as given, input order: the table itself with the provenance columns hds_s3 adds, encoded as
  hds_s3 encodes a segment (``segments.to_parquet``: its codecs, dictionaries and page checksums);
* as given, id order: the same after taking the rows in id order (as a sorted segment stores
  them: frames added as objects or dicts, compactions);
* as given, input order + id index: the input-order file plus the ids sorted, each with its row
  number (as an indexed segment, what an Arrow ingest writes, stores them; here in a second file).

CPU is the process's (every thread's); wall time is printed too. No target is asserted here: the
figures say which of the stored things the ingest targets (``README.md``, "Beside the peers") can
afford.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

from hds_s3 import Client, DatasetVersion  # noqa: E402
from hds_s3.index import segments  # noqa: E402
from hds_s3.store.memory import MemoryStore  # noqa: E402

VERSION = "0123456789abcdef0123456789abcdef"


def with_provenance(table: pa.Table) -> pa.Table:
    """The table with the columns hds_s3 adds to every stored frame (when and by which version)."""
    n = table.num_rows
    stamp = pa.repeat(pa.scalar(time.time_ns() // 1_000_000, pa.int64()), n)
    version = pa.repeat(pa.scalar(VERSION, pa.string()), n)
    return (
        table.append_column("saved", stamp)
        .append_column("saved_in_version", version)
        .append_column("updated_in_version", version)
    )


def raw_write(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return int(sink.getvalue().size)


def as_given(table: pa.Table) -> int:
    return len(segments.to_parquet(with_provenance(table)))


def as_given_id_order(table: pa.Table) -> int:
    return as_given(table.take(pc.sort_indices(table.column("id"))))


def as_given_with_index(table: pa.Table) -> int:
    ids = table.column("id")
    order = pc.sort_indices(ids)
    index = pa.table({"id": ids.take(order), "row": pc.cast(order, pa.int32())})
    return as_given(table) + len(segments.to_parquet(index))


def parquet_bytes(store: MemoryStore) -> int:
    return sum(info.size for info in store.list("") if info.key.endswith(".parquet"))


def hds_ingest(table: pa.Table, store: MemoryStore, run: list[int]) -> int:
    """Ingest into a new dataset; the bytes of the segments it wrote."""
    run[0] += 1
    before = parquet_bytes(store)
    version = DatasetVersion.create_new_dataset(dataset_name=f"format-{run[0]}", client=Client(store))
    failed = version.add_frames(table)
    assert not failed, failed[:2]
    return parquet_bytes(store) - before


def measure(ways: list[tuple[str, Callable[[], int]]], reps: int) -> dict[str, tuple[float, float, int]]:
    """Median wall and CPU seconds of each way over ``reps`` runs, and its bytes.

    Each way runs once unmeasured; then the ways take turns, rep after rep, so that a change in the
    machine's speed meanwhile falls on all of them.
    """
    sizes = {label: fn() for label, fn in ways}
    walls: dict[str, list[float]] = {label: [] for label, _ in ways}
    cpus: dict[str, list[float]] = {label: [] for label, _ in ways}
    for _ in range(reps):
        for label, fn in ways:
            c0, t0 = peers.cpu(), time.perf_counter()
            sizes[label] = fn()
            walls[label].append(time.perf_counter() - t0)
            cpus[label].append(peers.cpu() - c0)
    return {
        label: (statistics.median(walls[label]), statistics.median(cpus[label]), sizes[label])
        for label, _ in ways
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    table = peers.frames_table(list(range(opts.frames)), opts.seed)
    store, run = MemoryStore(), [0]
    ways: list[tuple[str, Callable[[], int]]] = [
        ("raw pyarrow", lambda: raw_write(table)),
        ("hds_s3 ingest (add_frames)", lambda: hds_ingest(table, store, run)),
        ("as given, input order", lambda: as_given(table)),
        ("as given, id order", lambda: as_given_id_order(table)),
        ("as given, input order + id index", lambda: as_given_with_index(table)),
    ]
    results = measure(ways, opts.reps)
    base_wall, base_cpu, _ = results["raw pyarrow"]
    print(f"format_cost: {opts.frames:,} frames, median of {opts.reps}; ratios to raw pyarrow in this run\n")
    print("| way | CPU | wall | MB |")
    print("| --- | --- | --- | --- |")
    for label, (wall, used, size) in results.items():
        print(
            f"| {label} | {used:.3f} s ({used / base_cpu:.2f}×) | {wall:.3f} s ({wall / base_wall:.2f}×) "
            f"| {size / 1e6:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
