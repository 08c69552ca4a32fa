"""Streaming frames into Parquet segments in bounded memory, collecting the frames that fail.

Input is any iterable of ``SingleFrame``, ``FrameGroup`` or canonical frame dicts (see
:mod:`hds_s3.model.frames`). Each frame is validated and normalised on its own; one that fails is reported
with the reason and the others go on (a ``FrameGroup`` fails or passes whole). At most
``segment_rows`` frames are held at a time: each full batch becomes one segment, written before any
document refers to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import pyarrow as pa

from hds_s3.errors import HdsError, ValidationError
from hds_s3.format.docs import SegmentRef
from hds_s3.index import columnar, segments
from hds_s3.index.frameindex import FrameIndex
from hds_s3.model.frames import (
    FrameGroup,
    SingleFrame,
    frame_from_dict,
    guess_content_type,
    hash_id,
    to_frame_dict,
)
from hds_s3.model.limits import check_frame_input
from hds_s3.model.names import check_utf8, preview

Frame = SingleFrame | FrameGroup


@dataclass(frozen=True)
class FailedFrame:
    """A frame that was not written, and why."""

    frame: Any
    reason: str

    def __repr__(self) -> str:
        """The frame shortened (it may be huge or nested without end), and the reason."""
        return f"FailedFrame(frame={preview(self.frame)}, reason={self.reason!r})"


def normalize(frame: object) -> dict[str, Any]:
    """Return the canonical, validated dict of a frame object or frame dict.

    A frame dict past a limit (:mod:`hds_s3.model.limits`) is refused before it is read, so a huge
    or deeply nested one costs a bounded walk, not copies of it.

    Raises:
        ValidationError: naming the frame and the field.
    """
    if isinstance(frame, (SingleFrame, FrameGroup)):
        return to_frame_dict(frame)
    if isinstance(frame, Mapping):
        check_frame_input(frame)
        return to_frame_dict(frame_from_dict(frame))
    raise ValidationError(
        f"cannot store a {type(frame).__name__} as a frame; give a SingleFrame, a FrameGroup or a frame dict"
    )


def write_segments(
    index: FrameIndex,
    dataset_id: str,
    version_id: str,
    frames: Iterable[object],
    failed: list[FailedFrame],
    *,
    now: int,
    segment_rows: int,
    progress: Any | None = None,
) -> Iterator[SegmentRef]:
    """Validate, convert and write frames as segments of ``version_id``; yield each segment written.

    Frames that fail validation are appended to ``failed``; ``progress`` (a tqdm bar) is advanced
    per frame. While one batch is converted (Python work, holding the GIL), the batch before it is
    sorted, encoded as Parquet and stored by a writer thread (Arrow and I/O work, mostly without the
    GIL), so at most two converted batches are held at a time. Segments are yielded in input order.

    Raises:
        ValidationError: ``frames`` is not an iterable of frames (a single frame dict, a number).
        StorageError: the store failed; segments already yielded are intact.
    """
    yield from write_pipelined(
        index, dataset_id, version_id, _converted(frames, failed, version_id, now, segment_rows, progress)
    )


def write_pipelined(
    index: FrameIndex,
    dataset_id: str,
    version_id: str,
    tables: Iterator[tuple[pa.Table, list[int]]],
    *,
    as_given: bool = False,
) -> Iterator[SegmentRef]:
    """Write each ``(table, positions)`` as segments (:func:`write_table`) by a writer thread.

    The next table is produced (converted) while the writer sorts, encodes and stores the one
    before, so at most two are held at a time. Segments are yielded in input order. ``as_given``:
    see :func:`write_table`.

    Raises:
        StorageError: the store failed; segments already yielded are intact.
        HdsError: whatever producing the tables raises.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hds-segment-writer") as writer:
        pending: Future[list[SegmentRef]] | None = None
        for table, positions in tables:
            future = writer.submit(
                write_table, index, dataset_id, version_id, table, positions, as_given=as_given
            )
            del table, positions
            if pending is not None:
                yield from pending.result()
            pending = future
        if pending is not None:
            yield from pending.result()


#: Frames converted at a time: few enough that they are still in the CPU's cache when they are
#: converted and released (a segment's 100,000 frame dicts are not).
CONVERT_ROWS = 4096


def check_frames_argument(frames: object) -> None:
    """Refuse what is not an iterable of frames: a number, a text, one frame dict.

    Raises:
        ValidationError: naming what was given, and how to give one frame.
    """
    if not isinstance(frames, Iterable) or isinstance(frames, (str, bytes, Mapping)):
        raise ValidationError(
            f"frames are given as a list (or any iterable) of frames, got a {type(frames).__name__}: "
            f"{preview(frames)}; give [frame] for one frame"
        )


def _converted(
    frames: Iterable[object],
    failed: list[FailedFrame],
    version_id: str,
    now: int,
    segment_rows: int,
    progress: Any | None,
) -> Iterator[tuple[pa.Table, list[int]]]:
    """Batches of ``segment_rows`` frames as tables (not yet sorted) with each row's input position.

    Frames are converted ``CONVERT_ROWS`` at a time and released at once; only the Arrow tables
    are kept until a segment is full.
    """
    tables: list[pa.Table] = []
    positions: list[int] = []
    seen = 0  # frames of the current segment consumed so far
    check_frames_argument(frames)
    source = iter(frames)
    while True:
        # The collector is paused while a batch is built, converted and released: its objects live
        # until then and each full collection would walk them all, freeing nothing (that cost as
        # much as the conversion). It runs between batches, when they are gone.
        with columnar.gc_paused():
            # taken with islice: the loop over the input runs in C, not frame by frame in Python
            batch = list(islice(source, min(CONVERT_ROWS, segment_rows - seen)))
            if not batch:
                break
            table, where = _batch_table(batch, failed, version_id, now)
            taken = len(batch)
            del batch
        if progress is not None:
            progress.update(taken)
        tables.append(table)
        positions.extend([seen + p for p in where])
        seen += taken
        if seen >= segment_rows:
            yield pa.concat_tables(tables), positions
            tables, positions, seen = [], [], 0
    if tables:
        yield pa.concat_tables(tables), positions


#: A table of at least twice this many rows is written as several segments, one per part of its
#: id range, encoded at once by as many threads (at most :data:`WRITE_THREADS`): a Parquet file is
#: encoded by one thread, which left the other cores idle while a large table was written.
PART_ROWS = 32_768
WRITE_THREADS = 2


def write_table(
    index: FrameIndex,
    dataset_id: str,
    version_id: str,
    table: pa.Table,
    positions: list[int],
    *,
    as_given: bool = False,
) -> list[SegmentRef]:
    """Keep the last row of each id, sort by id and write the rows as segments (none when empty).

    A large table is cut at even points of its id order into parts of at least :data:`PART_ROWS`
    rows, written in parallel: their id ranges do not overlap (a look-up still reads one segment,
    and a manifest starting with them knows they hold no id twice). With ``as_given``, the rows
    stay in their order and each part is an indexed segment (:func:`hds_s3.index.segments.input_order`):
    the parts are then cut at even points of that order.

    Raises:
        StorageError: the store failed; the parts written are garbage for gc.
    """
    if table.num_rows == 0:
        return []
    if as_given:  # no row moves: an id given twice only loses its earlier rows
        kept = segments.last_rows(table, positions)
        if kept is not None:
            table = table.take(np.sort(kept.to_numpy(zero_copy_only=False)))
        order = None
    else:
        order = segments.unique_order(table, positions)
    rows = table.num_rows if order is None else len(order)
    parts = max(1, min(WRITE_THREADS, rows // PART_ROWS))
    cuts = [rows * i // parts for i in range(parts + 1)]

    def write(i: int) -> SegmentRef:
        start, stop = cuts[i], cuts[i + 1]
        if as_given:
            part = segments.input_order(table.slice(start, stop - start))
        elif order is None:
            part = table.slice(start, stop - start)
        elif parts == 1:
            part = segments.take_columns(table, order)
        else:
            part = table.take(order.slice(start, stop - start))
        return index.write_segment(dataset_id, version_id, part, "frames")

    if parts == 1:
        return [write(0)]
    with ThreadPoolExecutor(max_workers=parts, thread_name_prefix="hds-segment-part") as pool:
        return list(pool.map(write, range(parts)))


def _batch_table(
    batch: list[object], failed: list[FailedFrame], version_id: str, now: int
) -> tuple[pa.Table, list[int]]:
    """Turn one batch into rows: dicts column by column, the rest frame by frame; with their positions."""
    fast, positions, slow = columnar.fast_frames_table(
        batch, version_id=version_id, now=now, hash_id=hash_id, guess_type=guess_content_type
    )
    rows: list[dict[str, Any]] = []
    row_positions: list[int] = []
    for i in slow:
        try:
            canonical = normalize(batch[i])
            given = batch[i]
            if isinstance(given, (SingleFrame, FrameGroup)) and given.id is None:
                given.id = canonical["id"]  # the derived id, shown on the object (as the reference does)
            canonical["saved"] = now
            canonical["saved_in_version"] = version_id
            canonical["updated_in_version"] = version_id
            rows.append(segments.frame_row(canonical))
        except (HdsError, TypeError, ValueError) as exc:
            failed.append(FailedFrame(batch[i], str(exc)))
            continue
        row_positions.append(i)
    if not rows:
        return fast, positions
    slow_table = _rows_table(rows, row_positions, batch, failed)
    return pa.concat_tables([fast, slow_table]), positions + row_positions


_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def _rows_table(
    rows: list[dict[str, Any]], positions: list[int], batch: list[object], failed: list[FailedFrame]
) -> pa.Table:
    """Convert per-frame rows to Arrow at once; if that fails, row by row, reporting the rows that fail.

    ``positions`` (the batch index of each row) keeps only the rows that made it into the table.
    """
    try:
        return pa.Table.from_pylist(rows, schema=segments.FRAME_SCHEMA)
    except _CONVERSION_ERRORS:
        pass  # a frame validation let through that Arrow refuses: find it
    good: list[dict[str, Any]] = []
    kept: list[int] = []
    for row, i in zip(rows, positions, strict=True):
        try:
            pa.Table.from_pylist([row], schema=segments.FRAME_SCHEMA)
        except _CONVERSION_ERRORS as exc:
            failed.append(FailedFrame(batch[i], f"frame {row.get('id')!r} cannot be stored: {exc}"))
            continue
        good.append(row)
        kept.append(i)
    positions[:] = kept
    return pa.Table.from_pylist(good, schema=segments.FRAME_SCHEMA)


def frame_ids(frames: Iterable[object]) -> list[str]:
    """Return the ids of frames given as objects, dicts or id strings.

    Raises:
        ValidationError: an item is none of those, or a frame cannot be identified.
    """
    ids: list[str] = []
    for item in frames:
        if isinstance(item, str):
            if not item:
                raise ValidationError("an empty frame id was given")
            ids.append(check_utf8("frame id", item))
        else:
            ids.append(normalize(item)["id"])
    return ids
