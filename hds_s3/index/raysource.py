"""A read plan as a Ray Data datasource: one read task, and one block, per plan task.

Imported only by :mod:`hds_s3.ray` and ``DataView.to_ray`` (it imports Ray; ``pip install
'hds_s3[ray]'``). Each Ray read task runs :func:`hds_s3.index.plan.read_task` in a Ray worker, which
opens the store itself from the task's :class:`~hds_s3.index.plan.StoreSpec`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from hds_s3.index.plan import PICK_COLUMN, ReadPlan, read_task
from hds_s3.index.plan import ReadTask as PlanTask

#: Decoded bytes per stored byte, for Ray's estimate of a block's size (lz4 Parquet of frames).
EXPANSION = 4


class PlanDatasource(Datasource):
    """The tasks of a :class:`~hds_s3.index.plan.ReadPlan` as Ray read tasks (one block each)."""

    def __init__(self, plan: ReadPlan) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._plan = plan

    def get_name(self) -> str:
        """The name Ray shows for the read."""
        return "HdsS3"

    def estimate_inmemory_data_size(self) -> int | None:
        """Decoded bytes of the whole read (a rough estimate from the segments' sizes)."""
        return sum(_size(t) for t in self._plan.tasks)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any | None = None
    ) -> list[ReadTask]:
        """One Ray read task per plan task, whatever ``parallelism`` asks (a task is one segment)."""
        out = []
        for task in self._plan.tasks:
            meta = BlockMetadata(num_rows=None, size_bytes=_size(task), exec_stats=None, input_files=None)
            limit = {"per_task_row_limit": per_task_row_limit} if per_task_row_limit is not None else {}
            out.append(ReadTask(_reader(task), meta, schema=self._plan.schema, **limit))
        return out


def _size(task: PlanTask) -> int:
    return int(task.segment.size * EXPANSION * max(1, task.rows_hint) / max(1, task.segment.rows))


def _reader(task: PlanTask) -> Any:
    def read() -> Iterable[pa.Table]:
        return [read_task(task)]

    return read


def dataset(
    plan: ReadPlan, *, ordered: bool = True, preserve_order: bool = False, concurrency: int | None = None
) -> Any:
    """A ``ray.data.Dataset`` of a plan's rows.

    A DataView plan (``plan.ordered``) is sorted by its ``_pick`` column when ``ordered`` (a Ray
    sort: the view's order, whatever order the tasks finish in), and the column is dropped. A
    version's blocks come in plan order (the order of ``get_frames_table``) with
    ``preserve_order``, else as their tasks finish. Either sets only this dataset's own
    ``DataContext``.

    Raises:
        ValidationError: nothing here; what a task raises surfaces when the dataset is consumed
            (Ray wraps it in its own task error).
    """
    ds = ray.data.read_datasource(PlanDatasource(plan), concurrency=concurrency)
    if preserve_order or (plan.ordered and ordered):
        ds.context.execution_options.preserve_order = True
    if plan.ordered:
        if ordered:
            ds = ds.sort(PICK_COLUMN)
        ds = ds.drop_columns([PICK_COLUMN])
    return ds
