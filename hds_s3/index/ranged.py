"""Reading parts of a stored Parquet object: the byte ranges of column chunks, fetched in parallel.

A segment's footer says where each column chunk lies. :func:`chunk_ranges` lists the chunks of some
columns in some row groups, :func:`fetch_ranges` fetches them (ranges closer than :data:`MAX_GAP`
coalesced into one request, the requests in parallel), and :class:`PartsFile` hands the fetched
bytes to Arrow's Parquet reader as a file, so decoding costs no request of its own. Reading column
chunks one after another through a plain file object would cost one round trip each, in sequence.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from fsspec.utils import merge_offset_ranges

from hds_s3.store.base import ObjectStore

#: Requests in flight for one read.
FETCH_THREADS = 8
#: Column chunks closer than this are fetched with one request.
MAX_GAP = 256 * 1024
#: The gap :func:`columns_file` bridges: reads of a few chunks (look-ups, checks of ids) fetch the
#: chunks, not what lies between them (Arrow's own read coalescing bridges holes of 8 KiB).
NARROW_GAP = 8 * 1024


class SeekableObject(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes; a subclass reads them (``readinto``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        """Always: it is read."""
        return True

    def seekable(self) -> bool:
        """Always: any offset can be read."""
        return True

    def tell(self) -> int:
        """The current offset."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the current offset or the end; return the new offset."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos


class RangeReader(SeekableObject):
    """A read-only, seekable file over one stored object, read with ranged GETs.

    The last 64 KiB are fetched once with the first read near the end, which is where Parquet keeps
    its footer, so opening a segment costs one request.
    """

    _TAIL = 64 * 1024

    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        super().__init__(size)
        self._store, self._key = store, key
        self._tail_start = max(0, size - self._TAIL)
        self._tail: bytes | None = None

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` from the current offset; return the bytes read (0 at the end).

        Raises:
            StorageError, NotFoundError: from the store.
        """
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        if want == 0:
            return 0
        if self._pos >= self._tail_start:
            if self._tail is None:
                self._tail = self._store.get_range(self._key, self._tail_start, self._size - self._tail_start)
            start = self._pos - self._tail_start
            chunk = self._tail[start : start + want]
        else:
            chunk = self._store.get_range(self._key, self._pos, want)
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


class PartsFile(SeekableObject):
    """A read-only file of which some byte ranges were fetched; other reads go to the store."""

    def __init__(self, store: ObjectStore, key: str, size: int, parts: dict[int, bytes]) -> None:
        super().__init__(size)
        self._store, self._key = store, key
        self._starts = sorted(parts)
        self._parts = parts

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` from the current offset, from the fetched parts when they hold it.

        Raises:
            StorageError, NotFoundError: from the store, for bytes outside the fetched parts.
        """
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        if want == 0:
            return 0
        at = int(np.searchsorted(self._starts, self._pos, side="right")) - 1
        chunk: bytes | memoryview = b""
        if at >= 0:
            start = self._starts[at]
            part = self._parts[start]
            if self._pos + want <= start + len(part):
                chunk = memoryview(part)[self._pos - start : self._pos - start + want]  # no copy
        if not len(chunk):
            chunk = self._store.get_range(self._key, self._pos, want)
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


@cache
def leaves_of(schema_key: tuple[str, ...], columns: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the Parquet leaf columns (paths in ``schema_key``) that ``columns`` read."""
    return tuple(
        i for i, path in enumerate(schema_key) if any(path == c or path.startswith(c + ".") for c in columns)
    )


def chunk_ranges(meta: pq.FileMetaData, groups: Sequence[int], cols: Sequence[str]) -> list[tuple[int, int]]:
    """Byte ranges ``(start, stop)`` of the column chunks of ``cols`` in these row groups of a footer."""
    paths = tuple(meta.schema.column(i).path for i in range(len(meta.schema)))
    leaves = leaves_of(paths, tuple(cols))
    ranges = []
    for g in groups:
        group = meta.row_group(g)
        for leaf in leaves:
            chunk = group.column(leaf)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            ranges.append((int(start), int(start) + int(chunk.total_compressed_size)))
    return ranges


def fetch_ranges(
    store: ObjectStore, key: str, ranges: Sequence[tuple[int, int]], max_gap: int = MAX_GAP
) -> dict[int, bytes]:
    """Fetch byte ranges of an object, coalesced when closer than ``max_gap``, in parallel.

    Returns the bytes by start offset, for :class:`PartsFile` (empty when ``ranges`` is).

    Raises:
        StorageError, NotFoundError: from the store.
    """
    if not ranges:
        return {}
    ordered = sorted(ranges)
    _, starts, ends = merge_offset_ranges(
        [""] * len(ordered), [a for a, _ in ordered], [b for _, b in ordered], max_gap=max_gap
    )

    def fetch(span: tuple[int, int]) -> bytes:
        return store.get_range(key, span[0], span[1] - span[0])

    spans = list(zip(starts, ends, strict=True))
    if len(spans) > 1:
        with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(spans))) as pool:
            blobs = list(pool.map(fetch, spans))
    else:
        blobs = [fetch(spans[0])]
    return dict(zip(starts, blobs, strict=True))


def columns_file(
    store: ObjectStore, key: str, size: int, meta: pq.FileMetaData, groups: Sequence[int], cols: Sequence[str]
) -> PartsFile:
    """A file of the object whose column chunks of ``cols`` in ``groups`` are fetched (in parallel).

    Chunks are coalesced only across gaps of :data:`NARROW_GAP`: the bytes read stay those of the
    chunks asked for.

    Raises:
        StorageError, NotFoundError: from the store.
    """
    ranges = chunk_ranges(meta, groups, cols)
    return PartsFile(store, key, size, fetch_ranges(store, key, ranges, max_gap=NARROW_GAP))
