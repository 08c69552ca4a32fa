"""A DataView's frames as a read plan: what needs the whole match on the driver, the rest in tasks.

Order, weights, seeded random order, clips, the frame limit and sharding are functions of the whole
match, so the driver computes them, as a DataView's own iteration does: it matches the rules
(reading only the columns they need), draws the sequence of picks and keeps the shard's. Each task
then reads one segment's picked rows (their output columns only), in the order of their picks,
and adds what a DataView adds to a frame (``dataset``, the mapped labels and ``label_num`` of each
ROI) and the pick's place in the view's sequence, ``_pick`` (see :mod:`hds_s3.index.plan`).
Concatenated and sorted by ``_pick``, the tasks' rows are exactly one pass of the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hds_s3.errors import ValidationError
from hds_s3.index.plan import ReadPlan, ReadTask, StoreSpec, ViewOutput, output_columns, view_schema
from hds_s3.model.names import preview

if TYPE_CHECKING:
    from hds_s3.query.dataview import DataView


def plan_view(
    view: DataView,
    columns: Sequence[str] | None = None,
    *,
    num_workers: int | None = None,
    worker_index: int | None = None,
    epoch: int | None = None,
) -> ReadPlan:
    """Plan one pass of a DataView (unsharded unless ``num_workers``/``worker_index`` are given).

    Random order is that of ``epoch``, else of the view's current epoch (which does not advance).

    Raises:
        ValidationError: a bad column, shard or epoch; the view iterates forever without a limit,
            has no queries or no concrete (dataset, version).
        NotFoundError: a dataset or version of the view was deleted.
        CorruptObjectError: a segment is missing or damaged.
    """
    from hds_s3.query.dataview import _positive_int, _shards

    cols = output_columns(columns)
    params = view.get_iteration_parameters()
    if params["infinite"] and params["limit"] is None:
        raise ValidationError(
            f"DataView {preview(view.name)} iterates forever (infinite, no limit); set "
            "maximum_number_of_frames to plan a pass of it"
        )
    shards, shard = (
        (1, 0) if num_workers is None and worker_index is None else _shards(num_workers, worker_index)
    )
    given = _positive_int("epoch", epoch, zero=True)
    matched = view._match(set(), order=True)
    sequence = view._plan(view.epoch if given is None else given)
    end = sequence.end(matched.size)
    frames: list[np.ndarray] = []
    places: list[np.ndarray] = []
    pos = 0
    for block, picks in sequence.blocks(matched):
        if pos >= end:
            break
        positions = pos + np.arange(len(block), dtype=np.int64)
        keep = np.flatnonzero((positions < end) & (picks % shards == shard))
        frames.append(block[keep])
        places.append(positions[keep])
        pos += len(block)
    picked = np.concatenate(frames) if frames else np.zeros(0, np.int64)
    where = np.concatenate(places) if places else np.zeros(0, np.int64)
    labels = view.get_labels()
    rules = view.get_mapping_rules()
    tasks: list[ReadTask] = []
    for p, pair in enumerate(matched.pairs):
        mine = matched.frame_pair[picked] == p
        if not mine.any():
            continue
        scan, segment_of, row_of = matched.locations[p]
        local = matched.frame_row[picked[mine]]
        seg, row, pick = segment_of[local], row_of[local], where[mine]
        output = ViewOutput(
            dataset=pair.info,
            mapping=tuple(
                (tuple(r.from_labels), r.to_label)
                for r in rules
                if r.applies(pair.dataset_id, pair.version_id)
            ),
            labels=labels,
        )
        spec = StoreSpec.of(view.client.store)
        for number in np.unique(seg):
            here = seg == number
            ref = scan.segments[int(number)].ref
            tasks.append(
                ReadTask(
                    store=spec,
                    dataset_id=pair.dataset_id,
                    version_id=pair.version_id,
                    number=int(number),
                    segment=ref,
                    columns=cols,
                    rows=row[here].astype(np.int64),
                    picks=pick[here].astype(np.int64),
                    view=output,
                    rows_hint=int(here.sum()),
                )
            )
    return ReadPlan(tuple(tasks), view_schema(cols), None, ordered=True)
