"""hds_s3 on Dask: versions and DataViews as Dask DataFrames, statistics and ingest by Dask workers.

Importing this module imports Dask's DataFrame (``pip install 'hds_s3[dask]'``). The frames are
read through a read plan (:mod:`hds_s3.index.plan`) with ``dask.dataframe.from_map``: one partition
per plan task (a segment, or a range of its row groups), read by whatever scheduler computes it
(threads, processes or a ``distributed`` cluster), each worker opening the store itself. Columns
are pandas ``ArrowDtype`` columns, so nested columns (sources and ROIs as lists of structs, the
metadata maps) keep their Arrow types and come back out as they went in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

try:
    import dask.bag
    import dask.dataframe as dd
    import pandas as pd
    from dask.base import compute
    from dask.delayed import delayed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"hds_s3.dask needs Dask's DataFrame: pip install 'hds_s3[dask]' ({exc})") from exc

import pyarrow as pa

from hds_s3.api import DatasetVersion, require_version
from hds_s3.client import worker_client
from hds_s3.errors import ValidationError
from hds_s3.format import layout
from hds_s3.index.arrowin import check_schema
from hds_s3.index.frameindex import SEGMENT_ROWS
from hds_s3.index.plan import (
    PICK_COLUMN,
    STATS_COLUMNS,
    PlanStats,
    ReadPlan,
    ReadTask,
    StoreSpec,
    combine_stats,
    read_task,
    task_stats,
)
from hds_s3.index.twophase import WriteSummary, WrittenSegments, check_txn_id
from hds_s3.model.names import preview
from hds_s3.query.dataview import DataView

#: How long the lease of a :func:`write_frames` job lasts between renewals (renewed every third of it).
LEASE_SECONDS = 3600.0


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a pandas DataFrame of ``ArrowDtype`` columns (nested types kept)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _partition(task: ReadTask) -> pd.DataFrame:
    return to_pandas(read_task(task))


def from_plan(plan: ReadPlan) -> dd.DataFrame:
    """Any read plan as a Dask DataFrame: one partition per task, in plan order.

    A DataView plan keeps its ``_pick`` column (each row's place in the view's sequence).

    Raises:
        ValidationError: not a plan.
    """
    if not isinstance(plan, ReadPlan):
        raise ValidationError(f"from_plan needs a ReadPlan, got {preview(plan)}")
    meta = to_pandas(plan.schema.empty_table())
    if not plan.tasks:
        return cast(dd.DataFrame, dd.from_pandas(meta, npartitions=1))
    frame = dd.from_map(_partition, list(plan.tasks), meta=meta, label="hds-s3-read", enforce_metadata=False)
    return cast(dd.DataFrame, frame)


def read_version(
    version: DatasetVersion,
    columns: Sequence[str] | None = None,
    frame_filter: Any | None = None,
    *,
    rows_per_task: int | None = None,
) -> dd.DataFrame:
    """A version's effective frames as a Dask DataFrame (``ArrowDtype`` columns; see ``read_plan``).

    Its partitions, in order, hold exactly the rows of ``get_frames_table(columns)`` that
    ``frame_filter`` (a ``pyarrow.compute`` expression) keeps.

    Raises:
        ValidationError: not a version; a bad column, filter or ``rows_per_task``.
        CorruptObjectError: the manifest or a delta segment is missing or damaged (a damaged
            segment surfaces when the partition is computed).
    """
    plan = require_version(version, "read_version").read_plan(
        columns, frame_filter, rows_per_task=rows_per_task
    )
    return from_plan(plan)


def read_view(
    view: DataView,
    columns: Sequence[str] | None = None,
    *,
    num_workers: int | None = None,
    worker_index: int | None = None,
    epoch: int | None = None,
) -> dd.DataFrame:
    """One pass of a DataView as a Dask DataFrame, with ``_pick``: sort by it for the view's order.

    Raises:
        ValidationError: not a DataView; as ``DataView.read_plan``.
    """
    if not isinstance(view, DataView):
        raise ValidationError(f"read_view needs a DataView, got {preview(view)}")
    return from_plan(view.read_plan(columns, num_workers=num_workers, worker_index=worker_index, epoch=epoch))


def count_stats(version: DatasetVersion, *, scheduler: str | None = None) -> PlanStats:
    """Count a version's statistics in Dask tasks (per segment), added up here (see ``publish_version``).

    Raises:
        ValidationError: not a version.
        CorruptObjectError: a segment is missing or damaged.
    """
    plan = require_version(version, "count_stats").read_plan(list(STATS_COLUMNS))
    if not plan.tasks:
        return PlanStats(plan.manifest, combine_stats([]))
    parts = dask.bag.from_sequence(plan.tasks, npartitions=len(plan.tasks)).map(task_stats)
    return PlanStats(plan.manifest, combine_stats(parts.compute(scheduler=scheduler)))


# ---------------------------------------------------------------------------- writing


def _write_partition(
    frame: pd.DataFrame, spec: StoreSpec, dataset_id: str, version_id: str, part: int, segment_rows: int
) -> dict[str, Any]:
    client = worker_client(spec)
    version = DatasetVersion.get_version(dataset_id=dataset_id, version_id=version_id, client=client)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return version.write_segments(table, part=part, segment_rows=segment_rows).to_dict()


def _meta_schema(data: dd.DataFrame) -> pa.Schema | None:
    """The Arrow schema of a Dask DataFrame's empty ``meta`` frame (None when Arrow cannot tell)."""
    try:
        return pa.Schema.from_pandas(data._meta, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError, AttributeError):
        return None


def write_frames(
    data: dd.DataFrame,
    version: DatasetVersion,
    *,
    txn_id: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
    segment_rows: int = SEGMENT_ROWS,
    scheduler: str | None = None,
) -> WriteSummary:
    """Add the frames of a Dask DataFrame to a draft: each partition written by a task, committed once.

    As :func:`hds_s3.ray.write_frames`: frame columns (``ArrowDtype`` keeps nested ones), the part
    of a partition is its number, ``txn_id`` makes a repeated job land once, a lease protects the
    segments until the commit.

    Raises:
        ValidationError: not a Dask DataFrame or a version; a bad ``txn_id``; input whose columns
            are not frame columns.
        InvalidStateError: the version is published.
        ConflictError: other writers kept moving the version's frames; nothing was committed.
        StorageError: the store failed.
    """
    version = require_version(version, "write_frames")
    txn = check_txn_id(txn_id) if txn_id is not None else f"dask-{layout.new_id()}"
    if not isinstance(data, dd.DataFrame):
        raise ValidationError(f"write_frames needs a dask DataFrame, got {preview(data)}")
    known = _meta_schema(data)  # the columns Dask knows without computing anything
    if known is not None:
        check_schema(known)  # else the tasks refuse it (a ValidationError all the same)
    before = version.commit_segments([], txn_id=txn)  # InvalidStateError for a published version ...
    if before.segments:
        return WriteSummary(before)  # ... unless the job landed before
    spec = StoreSpec.of(version.client.store)
    parts = data.to_delayed()
    jobs = [
        delayed(_write_partition)(p, spec, version.dataset_id, version.id, i, segment_rows)
        for i, p in enumerate(parts)
    ]
    with version.acquire_lease(lease_seconds):
        results = compute(*jobs, scheduler=scheduler)
        written = [WrittenSegments.from_dict(r) for r in results]
        pending = [s for w in written for s in w.segments]
        commit = version.commit_segments(pending, txn_id=txn)
    return WriteSummary(commit, [f for w in written for f in w.failed], len(pending))


__all__ = [
    "LEASE_SECONDS",
    "PICK_COLUMN",
    "WriteSummary",
    "count_stats",
    "from_plan",
    "read_version",
    "read_view",
    "to_pandas",
    "write_frames",
]
