"""Reading a version's live rows at the physical limit: only the column chunks needed, streamed.

A version's effective frames are its manifest's segments applied in order (docs/design.md,
invariant 2): a row is dead when a later segment holds its id. :class:`Scan` knows which rows are
dead without reading the segments whole: it reads the ``id`` column of the segments that can kill
rows (all but the first, or only the deltas after the leading disjoint segments of a manifest),
and keeps, for each of those ids, the last segment holding it (the *probe*). Each row group of a
segment is then read with only the columns asked for (ranged reads of their column chunks, fetched
in parallel and coalesced when close), and its dead rows are dropped as it is read. A segment that
the probe may kill entirely has its ``id`` column read first; when every row is dead, nothing else
of it is read.

Three ways out, all in the order :func:`hds_s3.index.segments.merge` gives:

- :meth:`Scan.table`: the live rows as one table (``get_frames_table``), with their locations;
- :meth:`Scan.batches`: record batches, one row group at a time (``iter_batches``, ``iter_frames``,
  ``hds://.../index.parquet``): memory is bounded by a few row groups, whatever the version's size;
- :meth:`Scan.rows_at`: given rows (by location) in any order, with repeats: the rows are read in
  storage order, one pass, and handed back in the order asked for through a spool of buckets
  (in memory when small, else Arrow IPC files in a temporary folder), so each row costs the same
  whatever the version's size (DataView iteration).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hds_s3.errors import CorruptObjectError
from hds_s3.format.docs import SegmentRef, VersionEntry
from hds_s3.index import segments
from hds_s3.index.frameindex import FrameIndex, last_holders
from hds_s3.index.ranged import FETCH_THREADS, PartsFile, chunk_ranges, fetch_ranges, leaves_of

#: When the chunks needed are at least this share of a segment, the segment is fetched whole.
WHOLE_SHARE = 0.8
#: A segment this small is fetched whole (one request: its footer comes with it).
SMALL_BYTES = 1024 * 1024
#: At most this many row groups are read ahead of a stream (:meth:`Scan.batches`), one per core.
STREAM_AHEAD = 4
#: At most this many row groups are read (and their dead rows dropped) by one work item of
#: :meth:`Scan.table`; fewer when that leaves a core without one.
GROUPS_PER_READ = 4
#: Rows handed back at a time by :meth:`Scan.rows_at`; the spool holds at most one bucket decoded.
BUCKET_ROWS = 16384
#: Bytes of rows :meth:`Scan.rows_at` holds in memory before it spools them to temporary files.
SPOOL_MEMORY = 64 * 1024 * 1024
#: At most this many buckets (files) in one spool; buckets grow instead.
MAX_BUCKETS = 256
#: Fetch a segment that cannot die whole while the probe reads the ids of the later segments.
FETCH_WHILE_PROBING = True
#: A nested column loses its dead rows by a copy of its runs of live rows (one copy of each run's
#: values) rather than a filter (which gathers nested values one at a time, about three times the
#: cost per byte) when it holds at least this many bytes per run and per leaf array: below that, the
#: cost of putting many runs back together outweighs the filter's.
RUN_BYTES = 1024


def release_memory() -> None:
    """Hand back to the system the memory that Arrow's allocator and the C allocator hold freed.

    After a large read, both keep freed memory for reuse (glibc's in its heaps, whatever freed it:
    Python's bytes, numpy's arrays); a long pass that holds little afterwards then keeps the peak.
    """
    pool = pa.default_memory_pool()
    pool.release_unused()
    if pool.backend_name != "system":
        pa.system_memory_pool().release_unused()  # glibc: malloc_trim


def _leaf_count(kind: pa.DataType) -> int:
    """How many leaf (non-nested) arrays a value of this type is made of."""
    if not kind.num_fields:
        return 1
    return sum(_leaf_count(kind.field(i).type) for i in range(kind.num_fields))


def _shaped(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The columns of ``schema`` of rows read from a segment, labelled as ``schema`` (not as their file)."""
    return table.select(schema.names).replace_schema_metadata(schema.metadata)


def drop_rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """``table.filter(keep)``, cheaper when the rows dropped are few and the columns nested.

    A nested column with enough bytes per run of kept rows (:data:`RUN_BYTES`) is cut into those
    runs (zero-copy slices) and concatenated into one array: one copy of each run rather than
    Arrow's filter, which takes nested values one at a time. Other columns are filtered. The values
    are those of ``table.filter(keep)``; a column put back from runs is one chunk.
    """
    n = table.num_rows
    if n == 0 or keep.all():
        return table
    dead = np.flatnonzero(~keep)
    starts = np.concatenate(([0], dead + 1))
    stops = np.concatenate((dead, [n]))
    some = stops > starts
    runs = list(zip(starts[some].tolist(), (stops - starts)[some].tolist(), strict=True))
    mask = pa.array(keep, pa.bool_())
    columns = []
    for column in table.columns:
        kind = column.type
        if runs and kind.num_fields and column.nbytes >= RUN_BYTES * len(runs) * _leaf_count(kind):
            pieces = [chunk for start, length in runs for chunk in column.slice(start, length).chunks]
            columns.append(pa.chunked_array([pa.concat_arrays(pieces)], kind))
        else:
            columns.append(column.filter(mask))
    return pa.Table.from_arrays(columns, schema=table.schema)


@dataclass
class _Segment:
    """One segment of the scan: its place in the manifest and what is known of its rows."""

    number: int
    ref: SegmentRef
    meta: pq.FileMetaData | None = None
    starts: np.ndarray | None = None  # first row of each row group, and the row count at the end
    keep: np.ndarray | None = None  # per row: alive (None: not known before reading)


class Scan:
    """The live rows of one version (see the module docstring).

    Raises (from every method that reads):
        CorruptObjectError: a manifest or segment is missing or damaged.
        ValidationError: a column is not in the frame index.
    """

    def __init__(self, index: FrameIndex, entry: VersionEntry) -> None:
        self.index = index
        self.entry = entry
        manifest = index.manifest(entry)
        refs = manifest.segments if manifest is not None else ()
        self.disjoint = manifest.disjoint if manifest is not None else 0
        self.segments = [_Segment(i, r) for i, r in enumerate(refs)]
        self._ids: dict[int, pa.Table] = {}  # id columns read for the probe, by segment number
        self._whole: dict[int, bytes] = {}  # segments fetched whole for the read under way
        self._probe_ids: pa.Array | None = None
        self._probe_last: np.ndarray | None = None

    # ------------------------------------------------------------------ reading a segment

    def _meta(self, seg: _Segment) -> pq.FileMetaData:
        if seg.meta is None:
            data = self._whole.get(seg.number)
            if data is not None and seg.ref.key not in self.index._footers:  # its footer in memory
                meta = self.index._guarded(
                    seg.ref,
                    lambda: self.index.accept_footer(
                        seg.ref,
                        pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True).metadata,
                    ),
                )
            else:
                meta = self.index._guarded(seg.ref, lambda: self.index._footer(seg.ref))
            seg.starts = segments.group_starts(meta)
            seg.meta = meta
        return seg.meta

    def read(self, seg: _Segment, groups: Sequence[int], columns: Sequence[str]) -> pa.Table:
        """Read row groups of a segment, fetching only the column chunks of ``columns`` (parallel GETs).

        Decoded on the calling thread (the work items of a read run on several): Arrow's own threads
        would hold the file, Python bytes or a Python file, until after the read returns, and one
        that lets go of it while the interpreter shuts down (a script ending right after a read) is
        stopped inside C++, which aborts the process ("terminate called without an active
        exception"). Work items of a few row groups each keep the cores as busy, with less
        switching between threads.
        """
        meta = self._meta(seg)
        cols = ["id"] if seg.ref.kind == "deletes" else list(columns)
        known = self._ids.get(seg.number)
        if cols == ["id"] and known is not None and seg.starts is not None:  # read for the probe
            return pa.concat_tables(
                [known.slice(int(seg.starts[g]), int(seg.starts[g + 1] - seg.starts[g])) for g in groups]
            )

        def run() -> pa.Table:
            ranges = self._ranges(seg, groups, cols)
            whole = self._whole.get(seg.number)
            if whole is None and ranges and sum(b - a for a, b in ranges) >= WHOLE_SHARE * seg.ref.size:
                whole = self._fetch_whole(seg)
            source: Any
            if whole is not None:  # in memory: Arrow reads it without a Python file in between
                source = pa.BufferReader(whole)
            else:
                parts = fetch_ranges(self.index.store, seg.ref.key, ranges)
                source = PartsFile(self.index.store, seg.ref.key, seg.ref.size, parts)
            file = pq.ParquetFile(source, metadata=meta, page_checksum_verification=True)
            return file.read_row_groups(list(groups), columns=cols, use_threads=False)

        table: pa.Table = self.index._guarded(seg.ref, run)
        if (
            "id" in table.column_names
            and list(groups) == sorted(set(groups))
            and segments.key_column(meta) == 0
        ):
            # sorted and unique, as written (a check that costs nothing; the ids of an indexed
            # segment, as given, would take a hash of each: fsck --deep checks them, and look-ups
            # check that the row the index names holds the id)
            segments.check_ids(table.column("id"), seg.ref.key)
        return table

    def _ranges(self, seg: _Segment, groups: Sequence[int], cols: Sequence[str]) -> list[tuple[int, int]]:
        """Byte ranges of the column chunks of ``cols`` in these row groups (from the footer)."""
        return chunk_ranges(self._meta(seg), groups, cols)

    def _prefetch(self, wanted: Sequence[_Segment]) -> None:
        """Fetch these segments whole (one request each, in parallel), for the call under way."""
        wanted = [s for s in wanted if s.number not in self._whole]
        fetched = self._map(lambda seg: self.index._guarded(seg.ref, lambda: self._fetch_whole(seg)), wanted)
        self._whole.update({seg.number: data for seg, data in zip(wanted, fetched, strict=True)})

    def _fetch_whole(self, seg: _Segment) -> bytes:
        """The whole segment in one request (when most of it is needed anyway)."""
        data = self.index.store.get_range(seg.ref.key, 0, seg.ref.size)
        if len(data) != seg.ref.size:
            raise CorruptObjectError(
                f"{seg.ref.key}: {len(data)} bytes stored, the manifest recorded {seg.ref.size}"
            )
        return data

    # ------------------------------------------------------------------ which rows are dead

    def _probe(self) -> tuple[pa.Array, np.ndarray]:
        """The ids of the segments that can kill rows, each with the last segment holding it."""
        if self._probe_ids is None or self._probe_last is None:
            later = self.segments[max(1, self.disjoint) :]
            self._prefetch([s for s in later if s.ref.size <= SMALL_BYTES])
            tables = self._map(lambda s: self.read(s, self._all_groups(s), ["id"]), later)
            self._ids = {s.number: t for s, t in zip(later, tables, strict=True)}
            self._probe_ids, self._probe_last = last_holders(
                [(s.number, t.column("id")) for s, t in zip(later, tables, strict=True)]
            )
        return self._probe_ids, self._probe_last

    def _all_groups(self, seg: _Segment) -> list[int]:
        return list(range(self._meta(seg).num_row_groups))

    def dead(self, seg: _Segment, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Which of these rows of ``seg`` a later segment replaces or deletes."""
        probe, last = self._probe()
        if len(probe) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        where = pc.index_in(ids, value_set=probe)
        found = np.asarray(where.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        at = pc.fill_null(where, 0).to_numpy(zero_copy_only=False)
        out: np.ndarray = found & (last[at] > seg.number)
        return out

    def _may_all_die(self, seg: _Segment) -> bool:
        """Whether later segments hold as many ids in this segment's id range as it has rows."""
        probe, last = self._probe()
        ref = seg.ref
        if len(probe) < ref.rows or ref.min_id is None or ref.max_id is None:
            return False
        inside = pc.and_(pc.greater_equal(probe, ref.min_id), pc.less_equal(probe, ref.max_id))
        later = np.asarray(inside.to_numpy(zero_copy_only=False), dtype=bool) & (last > seg.number)
        return int(later.sum()) >= ref.rows

    def _plan(self, seg: _Segment) -> list[int]:
        """The row groups of ``seg`` that hold a live row (all, unless it may die entirely)."""
        groups = self._all_groups(seg)
        if seg.keep is None and self._may_all_die(seg):
            ids = self.read(seg, groups, ["id"]).column("id")
            seg.keep = ~self.dead(seg, ids)
        if seg.keep is None:
            return groups
        assert seg.starts is not None
        live: Any = np.add.reduceat(seg.keep.astype(np.int64), seg.starts[:-1]) if len(seg.keep) else []
        return [g for g in groups if seg.starts[g + 1] > seg.starts[g] and live[g] > 0]

    def _live(self, seg: _Segment, table: pa.Table, groups: Sequence[int]) -> tuple[pa.Table, np.ndarray]:
        """Drop the dead rows of row groups just read; also return the kept rows' numbers in the segment."""
        assert seg.starts is not None
        spans = [np.arange(seg.starts[g], seg.starts[g + 1], dtype=np.int64) for g in groups]
        rows: np.ndarray = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        if seg.keep is not None:
            keep = seg.keep[rows]
        else:
            keep = ~self.dead(seg, table.column("id"))
        if keep.all():
            return table, rows
        return drop_rows(table, keep), rows[keep]

    def _frames(self) -> list[_Segment]:
        return [s for s in self.segments if s.ref.kind == "frames" and s.ref.rows]

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(items))) as pool:
            return list(pool.map(fn, items))

    @staticmethod
    def _columns(columns: Sequence[str] | None) -> tuple[list[str], pa.Schema]:
        cols = list(columns) if columns is not None else list(segments.FRAME_COLUMNS)
        if "id" not in cols:
            cols = ["id", *cols]
        return cols, segments.projected_schema(tuple(cols))

    # ------------------------------------------------------------------ the three ways out

    def table(self, columns: Sequence[str] | None = None) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """The live rows as one table (``columns``, always with ``id``), and each row's location.

        Returns ``(table, segment number, row in segment)``.
        """
        cols, schema = self._columns(columns)
        frames = self._frames()
        try:
            return self._table(cols, schema, frames)
        finally:
            self._whole = {}

    def _table(
        self, cols: list[str], schema: pa.Schema, frames: list[_Segment]
    ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        # A segment read for the bulk of its bytes (sources or ROIs), or a small one, is fetched
        # whole: one request for its footer and data. One that may be dead entirely is not. One
        # with more rows than all the segments that can replace its rows cannot be: it is fetched
        # while the probe reads their ids (its request does not wait for theirs). Those are the
        # probed segments after it: the leading disjoint segments hold no id of one another.
        bulk = {"sources", "rois"} & set(cols)  # whole columns (a path inside one reads a part)
        first = max(1, self.disjoint)
        probed = {s.number for s in self.segments[first:]}
        suffix = [*np.cumsum([s.ref.rows for s in reversed(self.segments)])[::-1].tolist(), 0]
        early = [
            s
            for s in frames
            if (bulk or s.ref.size <= SMALL_BYTES)
            and s.number not in probed
            and s.ref.rows > suffix[min(max(s.number + 1, first), len(self.segments))]
        ]
        if early and probed and FETCH_WHILE_PROBING:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hds-scan") as pool:
                ahead = pool.submit(self._prefetch, early)
                self._probe()
                ahead.result()
        else:
            self._probe()
        self._prefetch(
            [s for s in frames if (bulk or s.ref.size <= SMALL_BYTES) and not self._may_all_die(s)]
        )
        plans = self._map(self._plan, frames)
        self._prefetch(
            [
                seg
                for seg, groups in zip(frames, plans, strict=True)
                if groups
                and sum(b - a for a, b in self._ranges(seg, groups, cols)) >= WHOLE_SHARE * seg.ref.size
            ]
        )
        # work items of a few row groups each: reading and dropping dead rows (a copy of the rest)
        # run in parallel within a segment, not only across them, one core each
        per = max(1, min(GROUPS_PER_READ, -(-sum(map(len, plans)) // (os.cpu_count() or 1))))
        items = [
            (seg, groups[i : i + per])
            for seg, groups in zip(frames, plans, strict=True)
            for i in range(0, len(groups), per)
        ]

        def one(item: tuple[_Segment, list[int]]) -> tuple[pa.Table, np.ndarray]:
            seg, groups = item
            return self._live(seg, self.read(seg, groups, cols), groups)

        parts = self._map(one, items)
        tables = [_shaped(t, schema) for t, _ in parts if t.num_rows]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        numbers = [
            np.full(len(r), seg.number, np.int64) for (seg, _), (_, r) in zip(items, parts, strict=True)
        ]
        rows = [r for _, r in parts]
        return (
            table,
            np.concatenate(numbers) if numbers else np.zeros(0, np.int64),
            np.concatenate(rows) if rows else np.zeros(0, np.int64),
        )

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = 16384
    ) -> Iterator[pa.RecordBatch]:
        """The live rows as record batches of at most ``batch_size`` rows, a row group at a time.

        The next row groups (one per core, at most :data:`STREAM_AHEAD`) are fetched and decoded
        while the caller works on the current one.
        """
        cols, schema = self._columns(columns)
        self._probe()
        self._whole = {}  # streamed: a row group at a time, never a whole segment
        work = [(seg, g) for seg in self._frames() for g in self._plan(seg)]
        if not work:
            return

        def one(item: tuple[_Segment, int]) -> pa.Table:
            seg, g = item
            return _shaped(self._live(seg, self.read(seg, [g], cols), [g])[0], schema)

        depth = max(1, min(STREAM_AHEAD, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="hds-scan") as pool:
            ahead = deque(pool.submit(one, item) for item in work[:depth])
            for i in range(len(work)):
                table = ahead.popleft().result()
                if i + depth < len(work):
                    ahead.append(pool.submit(one, work[i + depth]))
                yield from table.to_batches(max_chunksize=batch_size)

    def rows_at(
        self, segment: np.ndarray, row: np.ndarray, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The rows at these locations (segment number, row in segment), in this order, repeats allowed.

        One pass over the row groups that hold them, in storage order; the rows go to buckets of
        the output order (a spool) and come back a bucket at a time.
        """
        cols, schema = self._columns(columns)
        n = len(segment)
        if n == 0:
            return
        self._probe()
        self._whole = {}
        size = max(BUCKET_ROWS, math.ceil(n / MAX_BUCKETS))
        buckets = math.ceil(n / size)
        order = np.lexsort((row, segment))
        with _Spool(buckets, self._estimate(cols, n) > SPOOL_MEMORY) as spool:  # or once it holds more
            by_segment = np.split(order, np.flatnonzero(np.diff(segment[order])) + 1)
            for positions in by_segment:
                seg = self.segments[int(segment[positions[0]])]
                self._meta(seg)
                assert seg.starts is not None
                wanted = row[positions]
                group_of = np.searchsorted(seg.starts, wanted, side="right") - 1
                for group in np.unique(group_of):
                    mine = positions[group_of == group]
                    g = int(group)
                    # decoded in this thread: Arrow's pool threads would each keep the blocks
                    # freed here cached, and a pass over a large version would hold them all
                    table = _shaped(self.read(seg, [g], cols), schema)
                    spool.add(table, row[mine] - seg.starts[g], mine, size)
                    del table
            del segment, row, order, by_segment  # the locations asked for: not needed any more
            release_memory()
            for b in range(buckets):
                table = spool.take(b)
                if table is not None:
                    yield from table.to_batches()

    def _estimate(self, cols: list[str], n: int) -> int:
        """Decoded bytes of ``n`` rows of ``cols``, from the first segment's footer."""
        frames = self._frames()
        if not frames:
            return 0
        meta = self._meta(frames[0])
        paths = tuple(meta.schema.column(i).path for i in range(len(meta.schema)))
        leaves = leaves_of(paths, tuple(cols))
        total = sum(
            meta.row_group(g).column(leaf).total_uncompressed_size
            for g in range(meta.num_row_groups)
            for leaf in leaves
        )
        return int(total / max(1, meta.num_rows) * n)


class _Spool:
    """Rows gathered by output position into buckets, in memory or in Arrow IPC files."""

    def __init__(self, buckets: int, on_disk: bool) -> None:
        self._memory: list[list[pa.Table]] = [[] for _ in range(buckets)]
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._held = 0
        if on_disk:
            self._to_disk()

    def _to_disk(self) -> None:
        """Move to files: what is held in memory so far is written out."""
        self._dir = tempfile.TemporaryDirectory(prefix="hds-spool-")
        held, self._memory = self._memory, [[] for _ in self._memory]
        for bucket, pieces in enumerate(held):
            for piece in pieces:
                self._write(bucket, piece)

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        for writer in self._writers.values():
            writer.close()
        if self._dir is not None:
            self._dir.cleanup()

    def _path(self, bucket: int) -> Path:
        assert self._dir is not None
        return Path(self._dir.name, f"{bucket}.arrow")

    def add(self, table: pa.Table, rows: np.ndarray, positions: np.ndarray, size: int) -> None:
        """Add rows of ``table`` (``rows``, repeats allowed) whose output positions are ``positions``.

        The rows are taken once, in bucket order (not at all when they are the table as it is).
        """
        bucket = positions // size
        order = np.argsort(bucket, kind="stable")
        taken = rows[order]
        if len(taken) != table.num_rows or np.any(taken != np.arange(len(taken))):
            table = table.take(pa.array(taken))
        table = table.append_column("_pos", pa.array(positions[order], pa.int64()))
        bucket = bucket[order]
        edges = np.flatnonzero(np.diff(bucket)) + 1
        for start, stop in zip(
            np.concatenate(([0], edges)), np.concatenate((edges, [len(bucket)])), strict=True
        ):
            b = int(bucket[start])
            piece = table.slice(int(start), int(stop - start))
            if self._dir is None:
                self._memory[b].append(piece)
            else:
                self._write(b, piece)
        if self._dir is None:
            self._held += table.nbytes
            if self._held > SPOOL_MEMORY:
                self._to_disk()

    def _write(self, bucket: int, piece: pa.Table) -> None:
        writer = self._writers.get(bucket)
        if writer is None:
            writer = self._writers[bucket] = pa.ipc.new_stream(str(self._path(bucket)), piece.schema)
        writer.write_table(piece)

    def take(self, bucket: int) -> pa.Table | None:
        """The bucket's rows in output order (and forget them), without ``_pos``."""
        if self._dir is None:
            pieces, self._memory[bucket] = self._memory[bucket], []
            if not pieces:
                return None
            table = pa.concat_tables(pieces)
        else:
            writer = self._writers.pop(bucket, None)
            if writer is None:
                return None
            writer.close()
            with pa.ipc.open_stream(str(self._path(bucket))) as reader:
                table = reader.read_all()
            self._path(bucket).unlink()
        table = table.take(pc.sort_indices(table.column("_pos")))
        return table.drop_columns(["_pos"])
