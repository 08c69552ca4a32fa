"""hds_s3 on Ray Data: versions and DataViews as Ray datasets, distributed ingest, statistics, compaction.

Importing this module imports Ray (``pip install 'hds_s3[ray]'``). Everything runs on the Ray the
process is connected to: call ``ray.init()`` first (a cluster's address, or a local Ray of the size
you want, such as ``ray.init(num_cpus=2)``); without it, Ray starts a local one.

- :func:`read_version` and :func:`read_view` (``DataView.to_ray``): a Ray Datasource over a read
  plan (:mod:`hds_s3.index.plan`), one Ray read task and one block per segment; workers open the
  store themselves (credentials from their environment).
- :func:`write_frames`: a Ray Datasink over two-phase writes. Each Ray write task writes its blocks
  as segments of the draft (``DatasetVersion.write_segments``, its part = its task index); the
  driver then commits all of them at once (``commit_segments``) under the job's ``txn_id``, while a
  lease keeps gc away from the segments written meanwhile. A write task that dies is retried by
  Ray; what its first attempt wrote is never committed (garbage for gc). Running the job again with
  the same ``txn_id`` after it landed changes nothing.
- :func:`count_stats` and :func:`publish`: the statistics of a draft counted by the workers (partial
  counts per segment, added up on the driver), then the publication with them.
- :func:`compact`: a published version rewritten by the workers (its live rows read by a plan,
  written as new segments by a Datasink), committed by the driver in one commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

try:
    import pyarrow as pa
    import ray.data
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"hds_s3.ray needs Ray Data: pip install 'hds_s3[ray]' ({exc})") from exc

from hds_s3.api import DatasetVersion, require_version
from hds_s3.client import worker_client
from hds_s3.errors import InvalidStateError, ValidationError
from hds_s3.format import layout
from hds_s3.index import segments
from hds_s3.index.arrowin import check_schema
from hds_s3.index.frameindex import SEGMENT_ROWS
from hds_s3.index.plan import (
    STATS_COLUMNS,
    PlanStats,
    ReadPlan,
    StoreSpec,
    combine_stats,
    frame_index,
    stats_of_table,
)
from hds_s3.index.raysource import PlanDatasource, dataset
from hds_s3.index.twophase import PendingSegment, WriteSummary, WrittenSegments, check_txn_id
from hds_s3.model.names import preview
from hds_s3.query.dataview import DataView

#: How long the lease of a :func:`write_frames` job lasts between renewals (renewed every third of it).
LEASE_SECONDS = 3600.0


def read_version(
    version: DatasetVersion,
    columns: Sequence[str] | None = None,
    frame_filter: Any | None = None,
    *,
    rows_per_task: int | None = None,
    preserve_order: bool = False,
    concurrency: int | None = None,
) -> Any:
    """A version's effective frames as a ``ray.data.Dataset`` (see ``DatasetVersion.read_plan``).

    Its rows are those of ``get_frames_table(columns)`` that ``frame_filter`` keeps, one block per
    segment (or range of ``rows_per_task`` rows); blocks come in plan order (the order of
    ``get_frames_table``) with ``preserve_order``, else as their tasks finish.

    Raises:
        ValidationError: not a version; a bad column, filter or ``rows_per_task``.
        CorruptObjectError: the manifest or a delta segment is missing or damaged (a damaged
            segment surfaces when the dataset is consumed, in Ray's task error).
    """
    plan = require_version(version, "read_version").read_plan(
        columns, frame_filter, rows_per_task=rows_per_task
    )
    return dataset(plan, preserve_order=preserve_order, concurrency=concurrency)


def read_plan(plan: ReadPlan, *, ordered: bool = True, concurrency: int | None = None) -> Any:
    """Any read plan (a version's, or a DataView's) as a ``ray.data.Dataset``.

    Raises:
        ValidationError: not a plan.
    """
    if not isinstance(plan, ReadPlan):
        raise ValidationError(f"read_plan needs a ReadPlan, got {preview(plan)}")
    return dataset(plan, ordered=ordered, concurrency=concurrency)


def read_view(
    view: DataView,
    columns: Sequence[str] | None = None,
    *,
    ordered: bool = True,
    num_workers: int | None = None,
    worker_index: int | None = None,
    epoch: int | None = None,
) -> Any:
    """One pass of a DataView as a ``ray.data.Dataset`` (the same as ``view.to_ray(...)``).

    Raises:
        ValidationError: not a DataView; as ``DataView.read_plan``.
    """
    if not isinstance(view, DataView):
        raise ValidationError(f"read_view needs a DataView, got {preview(view)}")
    return view.to_ray(
        columns, ordered=ordered, num_workers=num_workers, worker_index=worker_index, epoch=epoch
    )


# ---------------------------------------------------------------------------- writing


class _FramesSink(Datasink[dict[str, Any]]):
    """Each write task writes its blocks as segments of the version; the driver collects the references."""

    def __init__(self, spec: StoreSpec, dataset_id: str, version_id: str, segment_rows: int) -> None:
        self._spec = spec
        self._dataset_id = dataset_id
        self._version_id = version_id
        self._segment_rows = segment_rows
        self.written: list[WrittenSegments] = []

    def get_name(self) -> str:
        return "HdsS3Frames"

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        version = DatasetVersion.get_version(
            dataset_id=self._dataset_id, version_id=self._version_id, client=worker_client(self._spec)
        )
        batches = (b for block in blocks for b in BlockAccessor.for_block(block).to_arrow().to_batches())
        written = version.write_segments(batches, part=int(ctx.task_idx), segment_rows=self._segment_rows)
        return written.to_dict()

    def on_write_complete(self, write_result: Any) -> None:
        self.written = [WrittenSegments.from_dict(r) for r in write_result.write_returns]


def write_frames(
    data: Any,
    version: DatasetVersion,
    *,
    txn_id: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
    segment_rows: int = SEGMENT_ROWS,
    concurrency: int | None = None,
) -> WriteSummary:
    """Add the frames of a ``ray.data.Dataset`` to a draft: written by Ray workers, committed once.

    The dataset's columns are frame columns (those ``add_frames`` takes as Arrow input:
    :data:`hds_s3.index.arrowin.INPUT_SCHEMA`, such as a table read with ``get_frames_table``).
    A frame id written by two tasks resolves to the one of the later task (the later block of
    the dataset), the same way on every run. ``txn_id`` names the job: give the same one when you
    run a job again after a failure you cannot tell landed or not (a lost driver, a lost
    response), and it lands once; without one, a fresh id is used. A lease of ``lease_seconds``
    (renewed meanwhile) keeps gc from removing the segments before the commit.

    Raises:
        ValidationError: not a dataset or draft, a bad ``txn_id``; input whose columns are not
            frame columns (nothing is committed).
        InvalidStateError: the version is published (or was published during the job).
        ConflictError: other writers kept moving the version's frames; nothing was committed.
        StorageError: the store failed.
    """
    version = require_version(version, "write_frames")
    txn = check_txn_id(txn_id) if txn_id is not None else f"ray-{layout.new_id()}"
    if not isinstance(data, ray.data.Dataset):
        raise ValidationError(f"write_frames needs a ray.data.Dataset, got {preview(data)}")
    known = data.schema(fetch_if_missing=False)  # without running anything: None when not known yet
    if isinstance(getattr(known, "base_schema", None), pa.Schema):
        check_schema(known.base_schema)  # else the workers refuse it (a ValidationError all the same)
    before = version.commit_segments([], txn_id=txn)  # InvalidStateError for a published version ...
    if before.segments:
        return WriteSummary(before)  # ... unless the job landed before: nothing to do
    sink = _FramesSink(StoreSpec.of(version.client.store), version.dataset_id, version.id, segment_rows)
    with version.acquire_lease(lease_seconds):
        data.write_datasink(sink, concurrency=concurrency)
        pending = [s for w in sink.written for s in w.segments]
        commit = version.commit_segments(pending, txn_id=txn)
    failed = [f for w in sink.written for f in w.failed]
    return WriteSummary(commit, failed, len(pending))


# ---------------------------------------------------------------------------- statistics, compaction


def _partial_stats(batch: pa.Table) -> pa.Table:
    return pa.table({"stats": [json.dumps(stats_of_table(batch))]})


def count_stats(version: DatasetVersion, *, concurrency: int | None = None) -> PlanStats:
    """Count a version's statistics in Ray workers (per segment), added up here.

    The result counts the manifest the plan was made from; ``publish_version(stats=...)`` uses it
    when the draft still points there.

    Raises:
        ValidationError: not a version.
        CorruptObjectError: the manifest or a delta segment is missing or damaged.
    """
    plan = require_version(version, "count_stats").read_plan(list(STATS_COLUMNS))
    if not plan.tasks:
        return PlanStats(plan.manifest, combine_stats([]))
    ds = dataset(plan, concurrency=concurrency).map_batches(
        _partial_stats, batch_format="pyarrow", batch_size=None, zero_copy_batch=True
    )
    parts = [json.loads(row["stats"]) for row in ds.take_all()]
    return PlanStats(plan.manifest, combine_stats(parts))


def publish(version: DatasetVersion, *, concurrency: int | None = None) -> DatasetVersion:
    """Publish a draft with its statistics counted by Ray workers (:func:`count_stats`); returns it.

    Raises:
        ValidationError: not a version.
        InvalidStateError: it is published already.
    """
    stats = count_stats(version, concurrency=concurrency)
    return version.publish_version(stats=stats)


class _CompactionSink(Datasink[list[dict[str, Any]]]):
    """Each write task writes its live rows (at least a segment's worth, bundled by Ray) as new segments."""

    def __init__(self, spec: StoreSpec, dataset_id: str, version_id: str, segment_rows: int) -> None:
        self._spec = spec
        self._dataset_id = dataset_id
        self._version_id = version_id
        self._segment_rows = segment_rows
        self.written: list[PendingSegment] = []

    def get_name(self) -> str:
        return "HdsS3Compaction"

    @property
    def min_rows_per_write(self) -> int | None:
        return self._segment_rows

    def write(self, blocks: Iterable[Any], ctx: Any) -> list[dict[str, Any]]:
        index = frame_index(self._spec)
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        rows = [t for t in tables if t.num_rows]
        if not rows:
            return []
        table = segments.unique_sorted(pa.concat_tables(rows).cast(segments.FRAME_SCHEMA))
        out = []
        for seq, start in enumerate(range(0, table.num_rows, self._segment_rows)):
            piece = table.slice(start, self._segment_rows)
            ref = index.write_segment(self._dataset_id, self._version_id, piece, "frames")
            out.append(PendingSegment.of(ref, self._dataset_id, part=int(ctx.task_idx), seq=seq).to_dict())
        return out

    def on_write_complete(self, write_result: Any) -> None:
        self.written = [PendingSegment.from_dict(d) for r in write_result.write_returns for d in r]


def compact(
    version: DatasetVersion,
    *,
    segment_rows: int = SEGMENT_ROWS,
    lease_seconds: float = LEASE_SECONDS,
    concurrency: int | None = None,
) -> DatasetVersion:
    """Rewrite a published version's live frames as new segments in Ray workers; commit them here.

    The workers read the version through its plan (every column) and write segments of at most
    ``segment_rows`` rows; the driver commits them in one commit if the version still points at
    the manifest the plan was made from (``commit_compaction``). Returns the version.

    Raises:
        ValidationError: not a version.
        InvalidStateError: the version is a draft.
        ConflictError: its frames changed meanwhile; nothing was committed.
    """
    version = require_version(version, "compact").reload()
    if version.is_draft:
        raise InvalidStateError(f"compact is for published versions; {version.name!r} is a draft")
    plan = version.read_plan([f.name for f in segments.FRAME_SCHEMA])
    sink = _CompactionSink(StoreSpec.of(version.client.store), version.dataset_id, version.id, segment_rows)
    with version.acquire_lease(lease_seconds):
        ray.data.read_datasource(PlanDatasource(plan)).write_datasink(sink, concurrency=concurrency)
        return version.commit_compaction(sink.written, plan=plan)


__all__ = [
    "LEASE_SECONDS",
    "WriteSummary",
    "compact",
    "count_stats",
    "publish",
    "read_plan",
    "read_version",
    "read_view",
    "write_frames",
]
