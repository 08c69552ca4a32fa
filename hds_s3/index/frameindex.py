"""A version's frame index in the store: segments written, committed, read, looked up and compacted.

Writes go in two phases (docs/design.md invariants 1 and 3): immutable segments first (create-only PUTs
under the writing version's prefix), then a new immutable manifest listing every segment in effect,
then one commit (a log entry, :mod:`hds_s3.format.commit`) that moves the version's pointer to that
manifest. The commit requires the version to still be a draft and its pointer to be the one the
manifest was built on; if another writer moved it, the manifest is rebuilt on the new pointer and
the commit tried again, so two concurrent ``add_frames`` both land, and ``add_frames`` racing
``publish`` either lands before the publish (and is in the published version) or fails with
:class:`~hds_s3.errors.InvalidStateError`. Commits of other versions of the dataset that land
first need no rebuild: the commit is simply tried again on the newer state.

Reads take the version's manifest (one GET) and its segments (one GET each, in parallel), and merge
them with :func:`hds_s3.index.segments.merge`; no parent is ever visited.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cachetools import LRUCache

from hds_s3.errors import ConflictError, CorruptObjectError, HdsError, NotFoundError, StorageError
from hds_s3.format import layout, tree
from hds_s3.format.catalog import Catalog, upgrade_needed
from hds_s3.format.commit import DEFAULT_BUDGET, RetryBudget
from hds_s3.format.docs import (
    ManifestDoc,
    SegmentRef,
    VersionEntry,
    dump_manifest,
    now_ms,
    parse_manifest,
)
from hds_s3.format.txn import TreeView, Txn
from hds_s3.index import segments
from hds_s3.index.ranged import RangeReader, columns_file
from hds_s3.store.base import ObjectStore

if TYPE_CHECKING:
    from hds_s3.index.scan import Scan

#: Rows per segment written by one ``add_frames`` batch.
SEGMENT_ROWS = 100_000
#: A published version with more segments than this is compacted when it is published.
COMPACT_SEGMENTS = 32
#: A segment with fewer rows than the largest one of its manifest, or than a full segment, divided
#: by this is "small": automatic compaction merges the run of small segments at the end of a
#: manifest (the deltas of a chain), never the large segments before it.
SMALL_SEGMENT_RATIO = 4
#: A published version whose segments hold more rows than its live frames by this share (rows that
#: later rows replaced, deleted rows and tombstones: what a chain of children accumulates) is
#: rewritten whole when it is published, so that reading it stays close to reading its live rows.
DEAD_ROWS_RATIO = 0.1
#: ... but never for fewer dead rows than this: small versions are cheap to read as they are.
DEAD_ROWS_MIN = 10_000

_FETCH_THREADS = 8
#: Bytes of decoded ``id`` columns (one per row group of a segment) a frame index keeps: ids looked
#: up once (``update_frames``' check) are then not read again (the statistics of the publish).
ID_CACHE_BYTES = 64 * 1024 * 1024
#: A segment this frame index wrote of at most this many bytes is kept as written (at most
#: :data:`WRITTEN_CACHE_BYTES` in all, least recently used dropped first): publishing a child reads
#: its own deltas back for the statistics, and the counted columns of the parent's rows it replaced
#: or deleted; when this client wrote the parent too (a child committed after an ingest), none of
#: that comes from the store again. The bytes are the ones just stored: keeping them costs memory,
#: no work.
WRITTEN_KEEP_BYTES = 32 * 1024 * 1024
WRITTEN_CACHE_BYTES = 64 * 1024 * 1024

#: Appended to the errors about a missing segment or manifest: the check that tells what else is damaged.
FSCK_ADVICE = "; check the store with hds_s3.tools.fsck.fsck() (hds fsck from a shell)"

log = logging.getLogger(__name__)


class _PointerMoved(Exception):
    """Internal: another writer moved the version's manifest pointer; rebuild on the new one."""


class FrameIndex:
    """The frame indexes of the versions of one store (thread-safe; caches immutable objects)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.store: ObjectStore = catalog.store
        self._manifests: OrderedDict[str, ManifestDoc] = OrderedDict()
        self._footers: OrderedDict[str, pq.FileMetaData] = OrderedDict()
        # by (segment, row group): the sorted ids of its key column and, of an indexed segment, their rows
        self._ids: OrderedDict[tuple[str, int], _GroupIds] = OrderedDict()
        self._id_bytes = 0
        self._written: LRUCache[str, bytes] = LRUCache(maxsize=WRITTEN_CACHE_BYTES, getsizeof=len)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    def manifest(self, entry: VersionEntry) -> ManifestDoc | None:
        """Return the version's current manifest, or None when it has no frames.

        Raises:
            NotFoundError: the manifest the dataset document names is missing (damage).
            CorruptObjectError: it cannot be parsed.
        """
        key = entry.frames.get("manifest")
        if not key:
            return None
        with self._lock:
            cached = self._manifests.get(key)
            if cached is not None:
                self._manifests.move_to_end(key)
                return cached
        try:
            data, _ = self.store.get(key)
        except NotFoundError:
            self._raise_if_deleted(entry)
            raise CorruptObjectError(
                f"{key}: the frame manifest of version {entry.name!r} is missing{FSCK_ADVICE}"
            ) from None
        doc = parse_manifest(data, key)
        parts = layout.parse_key(key)
        if parts is None or parts.dataset_id != doc.dataset_id:
            raise CorruptObjectError(
                f"{key}: the frame manifest of version {entry.name!r} says it belongs to dataset "
                f"{doc.dataset_id}, not to the one its key names{FSCK_ADVICE}"
            )
        with self._lock:
            self._manifests[key] = doc
            while len(self._manifests) > 256:
                self._manifests.popitem(last=False)
        return doc

    def refs(self, entry: VersionEntry) -> tuple[SegmentRef, ...]:
        """Return the segments in effect for a version, oldest first.

        Raises:
            CorruptObjectError: the manifest is missing or damaged.
        """
        manifest = self.manifest(entry)
        return manifest.segments if manifest is not None else ()

    def read_segment(
        self, ref: SegmentRef, columns: Sequence[str] | None = None, *, written: bool = False
    ) -> pa.Table:
        """Read one segment (only ``columns`` for a frames segment; deletes have just ``id``).

        With ``written``, a small segment this frame index wrote itself is read from the bytes it
        kept (segments are immutable): what a commit reads back of its own deltas. Reads made for
        a caller always go to the store, so damage in the bucket is reported.

        Raises:
            CorruptObjectError: the segment is missing or not a segment.
        """
        data = self._kept(ref) if written else None
        if data is None:
            try:
                # A ranged read of the recorded size: one request, and no etag to compute.
                data = self.store.get_range(ref.key, 0, ref.size)
            except NotFoundError:
                raise CorruptObjectError(
                    f"{ref.key}: a segment listed by a manifest is missing{FSCK_ADVICE}"
                ) from None
        if len(data) != ref.size:
            raise CorruptObjectError(f"{ref.key}: {len(data)} bytes stored, the manifest recorded {ref.size}")
        cols = None if ref.kind == "deletes" or columns is None else columns
        return segments.from_parquet(data, ref.key, cols)

    def effective(self, entry: VersionEntry, columns: Sequence[str] | None = None) -> pa.Table:
        """Return the version's effective frames as one Arrow table (``columns`` always include ``id``).

        Only the column chunks of ``columns`` are fetched, and nothing but the ``id`` column of a
        segment whose rows are all dead (see :class:`hds_s3.index.scan.Scan`). A column may also be
        a Parquet column path that reads part of a nested column, such as
        ``"rois.list.element.labels"`` (see :func:`hds_s3.index.segments.projected_schema`).

        Raises:
            ValidationError: a column is not in the frame index.
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        try:
            return self.scan(entry).table(columns)[0]
        except CorruptObjectError:
            self._raise_if_deleted(entry)
            raise

    def scan(self, entry: VersionEntry) -> Scan:
        """A :class:`hds_s3.index.scan.Scan` of the version's live rows (streamed, or in any order).

        Raises:
            CorruptObjectError: the manifest is missing or damaged.
        """
        from hds_s3.index.scan import Scan

        return Scan(self, entry)

    def lookup(self, entry: VersionEntry, frame_id: str) -> dict[str, Any] | None:
        """Return the effective row of one frame (as a canonical frame dict), or None.

        First, in parallel, the ``id`` column of the one row group that can hold the id in each
        segment whose id range covers it (footers of immutable segments are cached); then the whole
        row group only of the newest segment that holds it.

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        candidates = [r for r in reversed(self.refs(entry)) if _may_hold(r, frame_id)]
        if not candidates:
            return None
        try:
            with ThreadPoolExecutor(max_workers=min(_FETCH_THREADS, len(candidates))) as pool:
                found = list(pool.map(lambda r: self._locate(r, frame_id), candidates))
            for ref, place in zip(candidates, found, strict=True):
                if place is not None:
                    return None if ref.kind == "deletes" else self._row(ref, *place, frame_id)
        except CorruptObjectError:
            self._raise_if_deleted(entry)
            raise
        return None

    def rows_of(
        self, ref: SegmentRef, ids: pa.Array, columns: Sequence[str], *, kept: bool = False
    ) -> pa.Table | None:
        """The rows of one segment whose id is among the sorted string array ``ids`` (``id`` first).

        First the ``id`` column of the row groups whose id statistics cover one of ``ids`` (kept
        for later calls: see :meth:`_group_ids`), then the other ``columns`` only of the row groups
        holding one (a deletes segment has just ``id``). None when no row holds one. With ``kept``
        (a commit's own check), a segment this frame index wrote is read from the bytes it keeps.

        Raises:
            CorruptObjectError: the segment is missing or damaged.
        """

        def read() -> pa.Table | None:
            groups = self._groups_holding(ref, ids, kept=kept)
            if not groups:
                return None
            by_group = self._group_ids(ref, groups, kept=kept)
            hits = {
                g: np.flatnonzero(
                    np.asarray(pc.is_in(by_group[g][0], value_set=ids).to_numpy(zero_copy_only=False), bool)
                )
                for g in groups
            }
            held = [g for g in groups if len(hits[g])]
            if not held:
                return None
            found = pa.concat_arrays([by_group[g][0].take(pa.array(hits[g])) for g in held])
            rest = [] if ref.kind == "deletes" else [c for c in columns if c != "id"]
            if not rest:
                return pa.table({"id": found})
            meta = self._footer(ref, kept=kept)
            starts = segments.group_starts(meta)
            rows = np.concatenate([_rows_in(by_group[g], hits[g], int(starts[g])) for g in held])
            group_of = np.searchsorted(starts, rows, side="right") - 1
            data_groups = np.unique(group_of)
            indexed = segments.key_column(meta) != 0
            cols = ["id", *rest] if indexed else rest  # an index's rows are checked against their ids
            table = self._chunks(ref, meta, data_groups.tolist(), cols, kept=kept).read_row_groups(
                data_groups.tolist(), columns=cols, use_threads=False
            )
            sizes = starts[data_groups + 1] - starts[data_groups]
            if table.num_rows != int(sizes.sum()):
                raise CorruptObjectError(f"{ref.key}: its columns do not have the same number of rows")
            base = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # where each group read begins
            at = base[np.searchsorted(data_groups, group_of)] + rows - starts[group_of]
            taken = table.take(pa.array(at))
            if indexed:
                if not taken.column("id").combine_chunks().equals(found):
                    raise CorruptObjectError(
                        f"{ref.key}: its id index names rows of other ids; it is damaged"
                    )
                taken = taken.drop_columns(["id"])
            return pa.Table.from_arrays([found, *taken.columns], names=["id", *taken.column_names])

        result: pa.Table | None = self._guarded(ref, read)
        return result

    def _group_ids(
        self, ref: SegmentRef, groups: Sequence[int], *, kept: bool = False
    ) -> dict[int, _GroupIds]:
        """The sorted ids of each of these row groups of a segment, read once per frame index.

        Those of its ``id`` column, or of an indexed segment's ``sorted_id`` column with the row of
        each (``sorted_row``). Segments are immutable, so what is read is kept (at most
        :data:`ID_CACHE_BYTES`, least recently used dropped first); what is not kept is read in one
        call, checked to be sorted and unique as written.

        Raises:
            CorruptObjectError: the segment's ids are not sorted and unique, or an indexed
                segment's rows are not its own (see :meth:`_guarded` for what else a damaged
                segment raises).
        """
        out: dict[int, _GroupIds] = {}
        with self._lock:
            for g in groups:
                cached = self._ids.get((ref.key, g))
                if cached is not None:
                    self._ids.move_to_end((ref.key, g))
                    out[g] = cached
        missing = [g for g in groups if g not in out]
        if missing:
            meta = self._footer(ref, kept=kept)
            indexed = segments.key_column(meta) != 0
            cols = [segments.SORTED_ID, segments.SORTED_ROW] if indexed else ["id"]
            reader = self._chunks(ref, meta, missing, cols, kept=kept)
            table = reader.read_row_groups(missing, columns=cols, use_threads=False)
            column = table.column(cols[0])
            segments.check_ids(column, ref.key)  # sorted and unique, as written
            ids = column.combine_chunks()
            rows = None
            if indexed:
                rows = table.column(segments.SORTED_ROW).to_numpy().astype(np.int64)
                if len(rows) and (rows.min() < 0 or rows.max() >= meta.num_rows):
                    raise CorruptObjectError(f"{ref.key}: its id index names rows it does not have")
            at = 0
            for g in missing:
                size = meta.row_group(g).num_rows
                out[g] = (ids.slice(at, size), None if rows is None else rows[at : at + size])
                at += size
            if at != len(ids):
                raise CorruptObjectError(f"{ref.key}: its row groups do not hold the rows its footer says")
            self._cache_ids(ref.key, {g: out[g] for g in missing})
        return out

    def holding(
        self, entry: VersionEntry, ids: pa.Array | pa.ChunkedArray | Sequence[str], *, kept: bool = False
    ) -> pa.Array:
        """Which of ``ids`` the version holds (sorted, unique), reading as little as the ids allow.

        Of each segment only the ``id`` column chunks of the row groups whose id range covers one of
        ``ids`` are read (in parallel; the footers of immutable segments are cached), so asking about
        a few frames of a large version reads a few row groups, not every id. The segments' rows are
        applied in order: a later tombstone removes an id, a later frames row brings it back. With
        ``kept`` (a commit's own check), the segments this frame index wrote come from the bytes it
        keeps (see :meth:`_kept`).

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        given = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
        wanted = pc.unique(given).drop_null().sort()
        if isinstance(wanted, pa.ChunkedArray):
            wanted = wanted.combine_chunks()
        refs = [(n, r) for n, r in enumerate(self.refs(entry)) if _may_hold_any(r, wanted)]
        if not refs:
            return pa.array([], pa.string())
        try:
            with ThreadPoolExecutor(max_workers=min(_FETCH_THREADS, len(refs))) as pool:
                found = list(pool.map(lambda nr: self.rows_of(nr[1], wanted, ["id"], kept=kept), refs))
        except CorruptObjectError:
            self._raise_if_deleted(entry)
            raise
        pieces = [(n, t.column("id")) for (n, _), t in zip(refs, found, strict=True) if t is not None]
        ids, last = last_holders(pieces)
        deletes = [n for n, r in refs if r.kind == "deletes"]
        held: pa.Array = ids.filter(pa.array(~np.isin(last, deletes)))
        return held.sort()

    def _groups_holding(self, ref: SegmentRef, ids: pa.Array, *, kept: bool = False) -> list[int]:
        """The row groups of a segment whose id statistics cover one of the sorted ``ids``.

        Raises:
            CorruptObjectError: the segment is missing or damaged.
        """

        def find() -> list[int]:
            meta = self._footer(ref, kept=kept)
            groups = []
            key_at = segments.key_column(meta)
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(key_at).statistics
                if stats is not None and stats.has_min_max:
                    inside = pc.and_(pc.greater_equal(ids, stats.min), pc.less_equal(ids, stats.max))
                    if not pc.any(inside).as_py():
                        continue
                groups.append(group)
            return groups

        found: list[int] = self._guarded(ref, find)
        return found

    def _raise_if_deleted(self, entry: VersionEntry) -> None:
        """Explain a missing object by a version deleted meanwhile, if that is what happened.

        Deleting a version (or its dataset) removes its objects right after the commit; a reader
        that loaded the version before then finds them gone. That is not damage: re-read the
        dataset and, when the version is no longer in it, raise NotFoundError saying so.

        Raises:
            NotFoundError: the version or its dataset was deleted after the caller loaded it.
        """
        key = entry.frames.get("manifest")
        parts = layout.parse_key(key) if key else None
        if parts is None or parts.dataset_id is None:
            return
        try:
            doc = self.catalog.get(dataset_id=parts.dataset_id)
        except NotFoundError:
            doc = None
        except HdsError:
            return  # cannot tell: report the original problem
        if doc is None or doc.deleted or doc.version(entry.id) is None:
            raise NotFoundError(
                f"version {entry.name!r} ({entry.id}) was deleted by another writer while it was "
                "being read; reload the dataset"
            )

    def _guarded(self, ref: SegmentRef, read: Callable[[], Any]) -> Any:
        """Run a read of one segment, turning what a damaged segment makes it raise into corruption.

        Raises:
            CorruptObjectError: naming the segment's key, when it is missing, not Parquet, or not
                shaped as a segment (a missing column, a column of another type: TypeError,
                KeyError or ValueError while reading it).
        """
        try:
            return read()
        except CorruptObjectError:
            raise
        except StorageError:
            raise  # the store failed (a retry may succeed): not damage
        except NotFoundError:
            raise CorruptObjectError(
                f"{ref.key}: a segment listed by a manifest is missing{FSCK_ADVICE}"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            raise CorruptObjectError(f"{ref.key}: not a readable Parquet segment ({exc})") from exc
        except (TypeError, KeyError, ValueError) as exc:
            raise CorruptObjectError(
                f"{ref.key}: not an hds_s3 segment ({type(exc).__name__}: {exc})"
            ) from exc

    def _locate(self, ref: SegmentRef, frame_id: str) -> tuple[int, int] | None:
        """The (row group, row) of ``frame_id`` in a segment, reading only ``id`` columns; or None."""

        def read() -> tuple[int, int] | None:
            meta = self._footer(ref)
            key_at = segments.key_column(meta)
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(key_at).statistics
                if stats is not None and stats.has_min_max and not stats.min <= frame_id <= stats.max:
                    continue
                ids = self._group_ids(ref, [group])[group]
                hit = pc.index(ids[0], frame_id).as_py()
                if hit >= 0:
                    starts = segments.group_starts(meta)
                    row = int(_rows_in(ids, np.array([hit]), int(starts[group]))[0])
                    holder = int(np.searchsorted(starts, row, side="right") - 1)
                    return holder, row - int(starts[holder])
            return None

        result: tuple[int, int] | None = self._guarded(ref, read)
        return result

    def _row(self, ref: SegmentRef, group: int, row: int, frame_id: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            columns = list(segments.FRAME_COLUMNS)
            reader = self._chunks(ref, self._footer(ref), [group], columns)
            table = reader.read_row_group(group, columns=columns, use_threads=False)  # see Scan.read
            if not 0 <= row < table.num_rows or table.column("id")[row].as_py() != frame_id:
                # what an indexed segment's id index names must be the row of that id
                raise CorruptObjectError(f"{ref.key}: it does not hold {frame_id!r} where its ids say")
            return segments.row_to_frame(table.slice(row, 1).to_pylist()[0])

        out: dict[str, Any] = self._guarded(ref, read)
        return out

    def _chunks(
        self,
        ref: SegmentRef,
        meta: pq.FileMetaData,
        groups: Sequence[int],
        columns: Sequence[str],
        *,
        kept: bool = False,
    ) -> pq.ParquetFile:
        """A reader of the segment whose column chunks of ``columns`` in ``groups`` are fetched at once.

        With ``kept``, a segment this frame index wrote and still keeps is read from those bytes.

        Raises:
            StorageError, NotFoundError: from the store (see :meth:`_guarded`).
        """
        data = self._kept(ref) if kept else None
        file: Any
        if data is not None:
            file = pa.BufferReader(data)
        else:
            file = columns_file(self.store, ref.key, ref.size, meta, groups, columns)
        return pq.ParquetFile(file, metadata=meta, page_checksum_verification=True)

    def _kept(self, ref: SegmentRef) -> bytes | None:
        """The bytes of a (small) segment this frame index wrote, while it keeps them.

        A commit's own checks (``update_frames``' look at the ids, a publish's count) read the
        deltas its writer stored moments before from these bytes, as :meth:`read_segment` does
        with ``written``; reads made for a caller go to the store.
        """
        with self._lock:
            data = self._written.get(ref.key)
        return data if data is not None and len(data) == ref.size else None

    def _footer(self, ref: SegmentRef, *, kept: bool = False) -> pq.FileMetaData:
        """The segment's Parquet footer (cached), checked to be that of an hds_s3 segment.

        With ``kept``, that of a segment this frame index wrote and still keeps comes from those
        bytes (see :meth:`_kept`).

        Raises:
            CorruptObjectError: naming ``ref.key``, when the file does not say it is an hds_s3
                segment or its first column is not a string column ``id``.
            NotFoundError, pa.ArrowException, OSError: the object is missing or not Parquet (see
                :meth:`_guarded`).
        """
        with self._lock:
            cached = self._footers.get(ref.key)
            if cached is not None:
                self._footers.move_to_end(ref.key)
                return cached
        data = self._kept(ref) if kept else None
        source: Any = RangeReader(self.store, ref.key, ref.size) if data is None else pa.BufferReader(data)
        meta = pq.ParquetFile(source, page_checksum_verification=True).metadata
        return self.accept_footer(ref, meta)

    def accept_footer(self, ref: SegmentRef, meta: pq.FileMetaData) -> pq.FileMetaData:
        """Check a segment's footer, however it was read, and keep it (see :meth:`_footer`).

        Raises:
            CorruptObjectError: naming ``ref.key``, when the file does not say it is an hds_s3
                segment, its columns are not those of a segment of its kind, or its rows and ids
                are not what ``ref`` records.
        """
        fmt = (meta.metadata or {}).get(b"hds_s3", b"").decode("utf-8", "replace")
        if fmt not in segments.SCHEMAS:
            raise CorruptObjectError(f"{ref.key}: not an hds_s3 segment (format {fmt!r})")
        schema = meta.schema.to_arrow_schema()
        if not schema.names or schema.names[0] != "id" or not schema.field(0).type.equals(pa.string()):
            raise CorruptObjectError(
                f"{ref.key}: not an hds_s3 segment (its first column is not a string 'id')"
            )
        shapes = {"frames": segments.FRAME_SCHEMA, "deletes": segments.DELETES_SCHEMA}
        if fmt == segments.INDEXED_FORMAT:
            shapes["frames"] = segments.INDEXED_SCHEMA
        columns = [(f.name, f.type) for f in schema]
        if columns != [(f.name, f.type) for f in shapes.get(ref.kind, segments.FRAME_SCHEMA)]:
            like = [k for k, shape in shapes.items() if columns == [(f.name, f.type) for f in shape]]
            what = f"the columns of a {like[0]} segment" if like else f"columns {', '.join(schema.names)}"
            raise CorruptObjectError(f"{ref.key}: it holds {what}, but is listed as a {ref.kind} segment")
        segments.check_footer(meta, ref.key, ref.rows, ref.min_id, ref.max_id)
        with self._lock:
            self._footers[ref.key] = meta
            while len(self._footers) > 1024:
                self._footers.popitem(last=False)
        return meta

    # ------------------------------------------------------------------ writing

    def write_segment(self, dataset_id: str, version_id: str, table: pa.Table, kind: str) -> SegmentRef:
        """Write one immutable segment (create-only) and return its reference.

        Raises:
            StorageError: the store failed; nothing references the object.
        """
        key = layout.segment_key(dataset_id, version_id, layout.new_id())
        # the format its columns make, whichever segments the rows were read from
        table = table.replace_schema_metadata(segments.schema_of(kind, table.schema).metadata)
        data = segments.to_parquet(table)
        self.store.put(key, data, if_none_match=True)
        if len(data) <= WRITTEN_KEEP_BYTES:
            with self._lock:
                self._written[key] = data
        indexed = segments.is_indexed(table.schema)
        ids = table.column(segments.SORTED_ID if indexed else "id")
        rising = segments.ids_rise(ids)  # as every writer writes them (else a read says it is damaged)
        if not table.num_rows:
            low = high = None
        elif rising:  # the ends are the extremes: no pass over the ids for them
            low, high = ids[0].as_py(), ids[-1].as_py()
        else:
            low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
        ref = SegmentRef(
            key=key,
            kind=kind,
            rows=table.num_rows,
            size=len(data),
            version=version_id,
            min_id=low,
            max_id=high,
        )
        # what a later check of this segment's ids would read (its footer, each row group's ids)
        # is known now: kept, a commit on top of what this client wrote reads none of it
        if rising:
            rows = table.column(segments.SORTED_ROW) if indexed else None
            self._keep_ids(
                ref, self.accept_footer(ref, pq.ParquetFile(pa.BufferReader(data)).metadata), ids, rows
            )
        return ref

    def _keep_ids(
        self,
        ref: SegmentRef,
        meta: pq.FileMetaData,
        ids: pa.Array | pa.ChunkedArray,
        rows: pa.Array | pa.ChunkedArray | None,
    ) -> None:
        """Keep the sorted ids of each row group of a segment (the cache :meth:`_group_ids` reads first)."""
        flat = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        where = None if rows is None else np.asarray(rows.to_numpy(), dtype=np.int64)
        starts = segments.group_starts(meta)
        self._cache_ids(
            ref.key,
            {
                g: (
                    flat.slice(int(starts[g]), int(starts[g + 1] - starts[g])),
                    None if where is None else where[starts[g] : starts[g + 1]],
                )
                for g in range(meta.num_row_groups)
            },
        )

    def _cache_ids(self, key: str, groups: Mapping[int, _GroupIds]) -> None:
        """Keep these row groups' ids of segment ``key``; drop the least recently used beyond the limit."""
        with self._lock:
            for g, held in groups.items():
                if (key, g) not in self._ids:
                    self._ids[(key, g)] = held
                    self._id_bytes += _group_bytes(held)
            while self._id_bytes > ID_CACHE_BYTES and self._ids:
                _, dropped = self._ids.popitem(last=False)
                self._id_bytes -= _group_bytes(dropped)

    def _write_manifest(
        self, dataset_id: str, version_id: str, refs: Sequence[SegmentRef], disjoint: int
    ) -> str:
        key = layout.manifest_key(dataset_id, version_id, layout.new_id())
        doc = ManifestDoc(
            dataset_id=dataset_id,
            version_id=version_id,
            segments=tuple(refs),
            created=now_ms(),
            disjoint=disjoint,
        )
        self.store.put(key, dump_manifest(doc), if_none_match=True)
        with self._lock:
            self._manifests[key] = doc
        return key

    def commit_pointer(
        self,
        dataset_id: str,
        version_id: str,
        build: Callable[[VersionEntry], Sequence[SegmentRef]],
        *,
        what: str,
        allow_published: bool = False,
        known: Sequence[tuple[Sequence[SegmentRef], int]] = (),
        budget: RetryBudget = DEFAULT_BUDGET,
        view: TreeView | None = None,
    ) -> TreeView:
        """Point a version at a new manifest with one commit, rebuilding if the pointer moved.

        ``build(entry)`` returns the segments of the new manifest, given the entry as read. The new
        manifest's ``disjoint`` count is the longest run of leading segments it shares with a
        segment list known to start with that many disjoint segments: the version's current
        manifest, or one of ``known`` (pairs of segments and their disjoint count).

        ``build`` runs again on the newer entry whenever the pointer moved, so a requirement it
        checks (the ids an update replaces still exist, say) holds at the commit. Rebuilds are
        bounded by ``budget`` (attempts and seconds, with jittered backoff between them). Returns
        the dataset as the commit left it. ``view``: the dataset as the caller read it when the
        change began, built on in the first attempt instead of reading it again (when it is stale,
        the commit's conditional write fails and the next attempt reads the dataset anew).

        Raises:
            InvalidStateError: the version is published (unless ``allow_published``).
            UpgradeRequiredError: the store is of format 1.
            NotFoundError: the dataset or version is gone.
            ConflictError: the retry budget ran out; nothing was changed.
            HdsError: whatever ``build`` raises; nothing was changed.
        """
        for attempt in budget.attempts():
            doc = view if attempt == 0 and view is not None else self.catalog.get(dataset_id=dataset_id)
            if doc.format_version != layout.STORE_FORMAT:
                raise upgrade_needed(self.store, what)
            found = doc.version(version_id)
            if found is None:
                raise NotFoundError(f"dataset {doc.name!r} has no version with id {version_id}")
            entry = found
            if not allow_published and not entry.is_draft:
                tree.require_draft(doc, entry, "change the frames of")
            base = entry.frames.get("manifest")
            refs = build(entry)
            current = self.manifest(entry)
            sources = [*known, (current.segments, current.disjoint)] if current is not None else known
            disjoint = max([_ranges_apart(refs), *(_shared(refs, segs, count) for segs, count in sources)])
            new_key = self._write_manifest(dataset_id, version_id, refs, disjoint)
            frames = {
                "manifest": new_key,
                "segments": len(refs),
                "rows": sum(r.rows for r in refs if r.kind == "frames"),
            }

            def change(t: Txn, base: Any = base, frames: dict[str, Any] = frames) -> None:
                if tree.entry(t, version_id).frames.get("manifest") != base:
                    raise _PointerMoved
                tree.set_frames(t, version_id, frames, allow_published=allow_published)

            try:
                _, view = self.catalog.commit(dataset_id, change, what=what, budget=budget, view=doc)
                return view
            except _PointerMoved:
                log.debug("retry: %s: the frames of version %s moved meanwhile; rebuilding", what, version_id)
                self.store.delete(new_key)  # never referenced
                continue
        raise ConflictError(
            f"{what}: the frames of version {version_id} kept moving under other writers "
            f"({budget.max_attempts} attempts or {budget.max_seconds:.0f} s); nothing was changed, try again"
        )

    def append(
        self,
        dataset_id: str,
        version_id: str,
        new: Sequence[SegmentRef],
        *,
        what: str,
        budget: RetryBudget = DEFAULT_BUDGET,
        view: TreeView | None = None,
    ) -> TreeView:
        """Commit written segments to a draft: its manifest becomes the current one plus ``new``.

        ``view``: as for :meth:`commit_pointer`.

        Raises:
            InvalidStateError: the version is published (the segments are left for gc).
            UpgradeRequiredError: the store is of format 1.
            NotFoundError: the dataset or version is gone.
            ConflictError: the retry budget ran out.
        """
        return self.commit_pointer(
            dataset_id,
            version_id,
            lambda entry: (*self.refs(entry), *new),
            what=what,
            budget=budget,
            view=view,
        )

    # ------------------------------------------------------------------ statistics and compaction

    def stats(self, entry: VersionEntry) -> dict[str, Any]:
        """Compute the statistics stored when a version is published (vectorised over Arrow).

        Returns ``{"frames", "annotated", "unannotated", "rois", "labels": [{name, count}],
        "content_types": [{name, count}]}``; label counts count ROIs carrying the label.

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        # only the parts of the ROIs and sources counted: not their shapes, masks and metadata
        return _stats_of(self.effective(entry, list(STATS_COLUMNS)))

    def stats_after(
        self, parent: VersionEntry, parent_stats: Mapping[str, Any], entry: VersionEntry
    ) -> dict[str, Any] | None:
        """The statistics of ``entry`` as its parent's plus what its own segments change, or None.

        ``entry``'s segments must be its parent's followed by its own (a child's deltas). Its own
        segments are read, and of the parent only the rows whose ids those segments touch (the row
        groups whose id range holds one): the frames they replace or delete are counted out, the
        frames the child holds at the end counted in. Of the parent, the ``id`` chunks of the row
        groups that may hold a touched id are read (unless kept from an earlier look-up, such as
        ``update_frames``' check), then the counted columns of those that hold one. None when
        ``entry`` does not extend the parent's segments, or when its own rows are more than half
        the parent's (then counting the version whole is cheaper).

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        before, after = self.refs(parent), self.refs(entry)
        if tuple(after[: len(before)]) != tuple(before):
            return None
        own = after[len(before) :]
        if not own:
            return dict(parent_stats)
        if sum(r.rows for r in own) > sum(r.rows for r in before) // 2:
            return None  # a delta as large as half the parent: counting the version whole is cheaper
        columns = ["id", *STATS_COLUMNS]
        mine = [(r.kind, self.read_segment(r, columns, written=True)) for r in own]
        touched = pc.unique(
            pa.chunked_array([c for _, t in mine for c in t.column("id").chunks], pa.string())
        ).sort()
        # of the parent, the id chunks of the row groups that may hold a touched id (often kept
        # from the update's own check), then the counted columns of those that do hold one: never
        # more than counting the version whole, which reads every id and counted column
        holding = [ref for ref in before if _may_hold_any(ref, touched)]
        with ThreadPoolExecutor(max_workers=max(1, min(_FETCH_THREADS, len(holding)))) as pool:
            found = list(pool.map(lambda ref: self.rows_of(ref, touched, columns, kept=True), holding))
        theirs = [(ref.kind, rows) for ref, rows in zip(holding, found, strict=True) if rows is not None]
        schema = segments.projected_schema(tuple(columns))
        gone = segments.merge(theirs, schema) if theirs else schema.empty_table()
        kept = segments.merge(mine, schema)
        out = dict(parent_stats)
        less, more = _stats_of(gone), _stats_of(kept)
        for key in ("frames", "annotated", "unannotated", "rois"):
            out[key] = int(parent_stats[key]) - less[key] + more[key]
        for key in ("labels", "content_types"):
            counts: dict[str, int] = {item["name"]: int(item["count"]) for item in parent_stats[key]}
            for item in less[key]:
                counts[item["name"]] = counts.get(item["name"], 0) - int(item["count"])
            for item in more[key]:
                counts[item["name"]] = counts.get(item["name"], 0) + int(item["count"])
            rows = [{"name": name, "count": count} for name, count in counts.items() if count > 0]
            out[key] = sorted(rows, key=lambda r: (-r["count"], r["name"]))
        return out

    def compaction_due(self, entry: VersionEntry, live: int) -> str | None:
        """Say which compaction publishing ``entry`` (holding ``live`` frames) calls for, if any.

        ``"full"`` when its segments carry more dead rows than ``DEAD_ROWS_RATIO`` of ``live`` (and
        at least ``DEAD_ROWS_MIN``): a rewrite of the live frames; ``"tail"`` when it has more than
        ``COMPACT_SEGMENTS`` segments: a merge of the small ones at its end; ``"mark"`` when it has
        no dead row at all (no id twice, no tombstone) but its manifest does not say that all its
        segments are disjoint: a new manifest that says so (see ``ManifestDoc.disjoint``), which
        makes reading it and its children cheaper; else ``None``.

        Raises:
            CorruptObjectError: the manifest is missing or damaged.
        """
        manifest = self.manifest(entry)
        refs = manifest.segments if manifest is not None else ()
        dead = sum(r.rows for r in refs) - live
        if dead > max(DEAD_ROWS_MIN, DEAD_ROWS_RATIO * live):
            return "full"
        if len(refs) > COMPACT_SEGMENTS:
            return "tail"
        if dead == 0 and manifest is not None and 1 < len(refs) != manifest.disjoint:
            return "mark"
        return None

    def dead_rows(self, entry: VersionEntry, live: int) -> int:
        """Rows of a version's segments that are not its ``live`` frames (replaced, deleted, tombstones).

        Raises:
            CorruptObjectError: the manifest is missing or damaged.
        """
        return sum(r.rows for r in self.refs(entry)) - live

    def compacted_refs(
        self, dataset_id: str, entry: VersionEntry, segment_rows: int | None = None
    ) -> list[SegmentRef]:
        """Write the version's effective frames as fresh segments and return them.

        The frames are sorted by id and cut into segments of ``segment_rows`` (``SEGMENT_ROWS`` when
        None), so the segments' id ranges do not overlap (a look-up then reads one segment).

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
            StorageError: the store failed; nothing references what was written.
        """
        table = self.effective(entry, [f.name for f in segments.FRAME_SCHEMA])
        if table.num_rows == 0:
            return []
        table = table.take(pc.sort_indices(table.column("id")))
        segment_rows = SEGMENT_ROWS if segment_rows is None else segment_rows
        return [
            self.write_segment(dataset_id, entry.id, table.slice(start, segment_rows), "frames")
            for start in range(0, table.num_rows, segment_rows)
        ]

    def tail_compacted_refs(self, dataset_id: str, entry: VersionEntry) -> list[SegmentRef] | None:
        """Merge the run of small segments at the end of the manifest; None when there is nothing to merge.

        The run's frames (last row of each id wins) become one frames segment and its tombstones
        that no later row of the run re-adds become one deletes segment; the large segments before
        the run are kept as they are, so the cost follows the size of the deltas, not of the dataset.

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
            StorageError: the store failed; nothing references what was written.
        """
        refs = list(self.refs(entry))
        small = max(max((r.rows for r in refs), default=0), SEGMENT_ROWS) / SMALL_SEGMENT_RATIO
        start = len(refs)
        while start > 0 and refs[start - 1].rows < small:
            start -= 1
        run = refs[start:]
        if len(run) < 2:
            return None
        everything = [f.name for f in segments.FRAME_SCHEMA]
        with ThreadPoolExecutor(max_workers=min(_FETCH_THREADS, len(run))) as pool:
            tables = list(pool.map(lambda r: self.read_segment(r, everything), run))
        pairs = [(r.kind, t) for r, t in zip(run, tables, strict=True)]
        frames = segments.merge(pairs, segments.FRAME_SCHEMA)
        re_added = set(frames.column("id").to_pylist())
        deleted = {i for (kind, t) in pairs if kind == "deletes" for i in t.column("id").to_pylist()}
        out = refs[:start]
        if frames.num_rows:
            frames = segments.unique_sorted(frames)
            out.append(self.write_segment(dataset_id, entry.id, frames, "frames"))
        if deleted - re_added:
            out.append(
                self.write_segment(
                    dataset_id, entry.id, segments.deletes_table(deleted - re_added), "deletes"
                )
            )
        return out


#: The sorted ids of a row group's key column and, for an indexed segment, the row holding each.
_GroupIds = tuple[pa.Array, np.ndarray | None]


def _group_bytes(held: _GroupIds) -> int:
    ids, rows = held
    return int(ids.nbytes) + (0 if rows is None else int(rows.nbytes))


def _rows_in(held: _GroupIds, hits: np.ndarray, start: int) -> np.ndarray:
    """The rows of the segment holding the ids at ``hits`` of a row group's sorted ids."""
    rows = held[1]
    out: np.ndarray = start + hits if rows is None else rows[hits]
    return out


def _ranges_apart(refs: Sequence[SegmentRef]) -> int:
    """How many leading segments are frames segments whose id ranges do not overlap.

    Such segments hold no id twice (each holds an id once, as written), whoever wrote them: the
    parts of one large table, the partitions of a compaction.
    """
    starts: list[str] = []  # the ranges seen so far, by their first id
    stops: list[str] = []
    for i, ref in enumerate(refs):
        if ref.kind != "frames" or ref.min_id is None or ref.max_id is None:
            return i
        at = bisect.bisect_left(starts, ref.min_id)
        if (at > 0 and stops[at - 1] >= ref.min_id) or (at < len(starts) and starts[at] <= ref.max_id):
            return i
        starts.insert(at, ref.min_id)
        stops.insert(at, ref.max_id)
    return len(refs)


def _shared(refs: Sequence[SegmentRef], known: Sequence[SegmentRef], disjoint: int) -> int:
    """How many leading segments ``refs`` shares with ``known``, at most ``disjoint``."""
    count = 0
    for mine, theirs in zip(refs[:disjoint], known[:disjoint], strict=False):
        if mine != theirs:
            break
        count += 1
    return count


def _may_hold(ref: SegmentRef, frame_id: str) -> bool:
    if ref.min_id is None or ref.max_id is None:
        return ref.rows > 0
    return ref.min_id <= frame_id <= ref.max_id


#: What statistics read of a frame: each ROI's labels (which also give the ROI count) and each
#: source's content type. ``roi_count`` would say again what the ROI lists' lengths say.
STATS_COLUMNS = ("rois.list.element.labels", "sources.list.element.content_type")


def _stats_of(table: pa.Table) -> dict[str, Any]:
    """The statistics of the frames of ``table`` (read with :data:`STATS_COLUMNS`)."""
    part = stats_of_table(table)
    return {
        "frames": part["frames"],
        "annotated": part["annotated"],
        "unannotated": part["frames"] - part["annotated"],
        "rois": part["rois"],
        "labels": sorted_counts(part["labels"]),
        "content_types": sorted_counts(part["content_types"]),
    }


def stats_of_table(table: pa.Table) -> dict[str, Any]:
    """Partial statistics (counts by name, unsorted) of frames read with :data:`STATS_COLUMNS`."""
    total = table.num_rows
    counts = pc.list_value_length(table.column("rois"))
    annotated = int(pc.sum(pc.greater(counts, 0)).as_py() or 0) if total else 0
    rois = pc.list_flatten(table.column("rois"))
    labels = pc.list_flatten(pc.struct_field(rois, "labels")) if len(rois) else pa.array([], pa.string())
    sources = pc.list_flatten(table.column("sources"))
    types = pc.struct_field(sources, "content_type") if len(sources) else pa.array([], pa.string())
    return {
        "frames": total,
        "annotated": annotated,
        "rois": len(rois),
        "labels": _value_counts(labels),
        "content_types": _value_counts(pc.fill_null(types, "unknown") if len(types) else types),
    }


def _value_counts(values: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    if len(values) == 0:
        return {}
    return {
        c["values"]: int(c["counts"]) for c in pc.value_counts(values).to_pylist() if c["values"] is not None
    }


def sorted_counts(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """``{name: count}`` as ``[{"name", "count"}]``, most first, then by name."""
    return sorted(
        ({"name": k, "count": v} for k, v in counts.items()), key=lambda r: (-r["count"], r["name"])
    )


def last_holders(pieces: Sequence[tuple[int, pa.Array | pa.ChunkedArray]]) -> tuple[pa.Array, np.ndarray]:
    """Each distinct id of ``(segment number, ids)`` pieces, with the highest number holding it.

    Returns the ids and, aligned with them, the numbers (empty when the pieces hold no id).
    """
    if not sum(len(ids) for _, ids in pieces):
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    chunks = [c for _, ids in pieces for c in (ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids])]
    table = pa.table(
        {
            "id": pa.chunked_array(chunks, pa.string()),
            "n": pa.array(np.concatenate([np.full(len(ids), n, np.int64) for n, ids in pieces])),
        }
    )
    last = table.group_by("id", use_threads=False).aggregate([("n", "max")])
    numbers: np.ndarray = last.column("n_max").to_numpy()
    return last.column("id").combine_chunks(), numbers


def _may_hold_any(ref: SegmentRef, ids: pa.Array) -> bool:
    """Whether the segment's id range can hold one of the sorted ``ids``."""
    if ref.rows == 0 or not len(ids):
        return False
    if ref.min_id is None or ref.max_id is None:
        return True
    inside = pc.and_(pc.greater_equal(ids, ref.min_id), pc.less_equal(ids, ref.max_id))
    return bool(pc.any(inside).as_py())
