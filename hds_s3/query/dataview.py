"""DataViews: saved, parameterised queries over (dataset, version) pairs, and their iteration.

A :class:`DataView` holds filter rules (:meth:`DataView.add_query`, :meth:`DataView.add_multi_query`),
OR-ed together; within a rule every condition is AND-ed: the ROI rules (each may be met by a
different ROI), the frame query, the source query and the ``filter_by_roi`` mode. Queries use the
Lucene subset of :mod:`hds_s3.query.lucene`. After matching, label mapping rules rename ROI labels and the
label enumeration gives each ROI a ``label_num`` (-1 for labels not listed).

Reading a view never writes (it works with read-only credentials); :meth:`DataView.store` saves it
as a JSON document (create-only, then compare-and-swap), :meth:`DataView.get` loads it,
:meth:`DataView.publish` makes it read-only.

Choices (where the reference is silent or ambiguous):

* **Datasets and versions** are resolved to ids when a rule is added. A concrete dataset given
  without a version means its current version at that moment. ``'*'`` as dataset means every
  (dataset, version) pair named concretely elsewhere in the view (the version pool); a concrete
  dataset with version ``'*'`` means the pool's pairs of that dataset. At least one rule must name
  a concrete pair, else counting or iterating raises :class:`~hds_s3.errors.ValidationError`.
* **ROI and source conditions**: ``add_query(roi_query='*')`` (or no ``roi_query``) sets no ROI
  condition; ``RoiQuery('*')`` in :meth:`DataView.add_multi_query` is a rule over any ROI (at least
  one, unless ranges or ``must_not`` say otherwise). A ``source_query`` keeps frames that have at
  least one source passing it; such frames are returned whole, with all their sources.
* **Counting**: :meth:`DataView.get_count` is the number of distinct frames (per dataset version)
  matching at least one rule; ``get_count(per_rule=True)`` returns
  ``{"total": n, "rules": [{"rule_index": i, "count": c_i}, ...]}``.
* **Sequential order** yields each matching frame once, sorted by (context_id, timestamp, id), then
  by the order in which the view names its (dataset, version) pairs; weights do not apply.
  ``infinite`` restarts from the beginning.
* **Random order** (reproducible: numpy PCG64 seeded with ``random_seed``, default 1337, and the
  epoch, so that every worker and every run agree): a new order every epoch. Each
  :meth:`DataView.get_iterator` (and ``for frame in view``) draws the view's epoch
  (:meth:`DataView.set_epoch`, as PyTorch's ``DistributedSampler.set_epoch``), then advances it;
  ``get_iterator(epoch=n)`` draws epoch ``n`` and advances nothing. Each next pick comes from
  rule *i* with probability w_i / Σw (over the rules that match any frame), and is the next frame
  of that rule's own shuffled stream (reshuffled when exhausted, so a rule drawn more often than it has frames
  repeats frames). A finite random epoch yields as many frames as the view has distinct matching
  frames; with a single rule that is a permutation of them. ``infinite`` never ends.
* **Limit** (``maximum_number_of_frames``) cuts any of these sequences after that many frames.
* **Clips**: each context's frames, in sequential order, are cut into clips, by count
  (``clip_length`` L: L consecutive frames) or by time, as the reference's server
  (``min_sequence``: a clip spans at most that many ms from its first frame; ``jump_time``: a gap of
  more ms starts a new clip); random order draws whole clips (weights then share clips), and
  sharding hands out whole clips.
* **Sharding**: the unsharded sequence is numbered by pick (frame, or clip); shard k of W keeps
  the picks whose number is k mod W, so shards are disjoint and their union is the unsharded
  sequence. W and k come from ``num_workers`` / ``worker_index`` when given, else from
  ``WORLD_SIZE`` / ``RANK`` and, when torch is already imported, the DataLoader worker info
  (W = world size x workers, k = rank x workers + worker id).
* **Resuming**: :meth:`DataView.get_current_iteration` counts frames of the unsharded sequence
  consumed so far; :meth:`DataView.set_initial_iteration` makes the next iterator start there, and
  it yields exactly the tail of the sequence it would have produced.
* **Frames out**: :meth:`DataView.get_iterator`, ``for frame in view`` and :meth:`DataView.to_list`
  give :class:`~hds_s3.model.frames.SingleFrame` / :class:`~hds_s3.model.frames.FrameGroup`
  objects (as the reference) whose annotations carry mapped labels and a ``label_num`` attribute;
  ``get_iterator(as_dict=True)``, ``get_iterator(projection=...)`` and :meth:`DataView.to_dict` give
  dicts (the canonical frame dict of :mod:`hds_s3.model.frames` plus ``"dataset": {"id", "name",
  "version", "version_name"}``, where ``version`` is the version id as in the reference server's
  frames, ``label_num`` on each ROI, and a video frame's ``is_key_frame``, ``key_frame`` and
  ``video_gop``).
* **Read-ahead**: an iterator reads frames in a background thread, ``query_cache_size`` (500) at a
  time, at most ``query_queue_depth`` (5) batches ahead (the reference's options); an error there
  is raised at the consumer's next ``next()``; ``cache_in_memory`` serves a finished pass again.
* **Vectors**: :meth:`DataView.vector_search` ranks the frames the view matches by an embedding in
  their metadata (:mod:`hds_s3.index.vectors`).
* **Mapping** (:meth:`DataView.add_mapping_rule`): a ROI carrying all ``from_labels`` has them
  replaced by ``to_label`` (at the place of the first; its other labels stay); the first
  applicable rule in the order added wins. Enumeration then gives a ROI the value of its first
  label listed in :meth:`DataView.set_labels`, else -1.
* **Published views** refuse every change of their definition (:class:`~hds_s3.errors.InvalidStateError`);
  :meth:`DataView.set_initial_iteration` is iteration state, not definition, and stays allowed.
* **Pickling** (DataLoader workers) keeps the definition and the store URL and reconnects with
  :func:`hds_s3.connect`; endpoints and credentials come from the worker's environment.
* **Not found**: :meth:`DataView.get` raises :class:`DataViewNotFoundError`, which is both a
  :class:`~hds_s3.errors.NotFoundError` (a ``FileNotFoundError``) and a ``ValueError`` (what the
  reference raises).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Generic, Literal, TypeAlias, TypeVar, cast, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.client import Client, resolve
from hds_s3.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from hds_s3.format import layout
from hds_s3.format.docs import DIGEST, VersionEntry, check_digest, dumps_with_digest, load_json, now_ms
from hds_s3.format.txn import TreeView
from hds_s3.index import segments, vectors
from hds_s3.index.plan import ReadPlan, map_labels
from hds_s3.index.scan import release_memory
from hds_s3.model.frames import VIDEO_FIELDS, VIDEO_KEY, FrameGroup, SingleFrame, frame_from_dict
from hds_s3.model.names import check_id, check_name, check_tag_filter, check_tags, preview
from hds_s3.query import lucene as query
from hds_s3.query import stored, viewstats

log = logging.getLogger("hds_s3")

DATAVIEW_FORMAT = "hds_s3.dataview"
DEFAULT_RANDOM_SEED = 1337
"""The seed of random order when none is set (the reference's task default), so that workers agree."""

DRAFT = "draft"
PUBLISHED = "published"
WILDCARD = "*"

_BLOCK_PICKS = 4096
#: Rows turned into Python dicts at a time (few: the dicts of a frame are many small objects).
_DICT_ROWS = 256
#: Picks gathered before their frames are read (at least the matched frames: one pass each).
_CHUNK_PICKS = 65536
_TABLE_CACHE = 8
_FRAME_FIELDS = frozenset(segments.FRAME_COLUMNS)
_SORT_COLUMNS = ("context_id", "timestamp")
_DERIVED_ELEMENT_KEYS = ("meta_str", "meta_num")


class DataViewNotFoundError(NotFoundError, ValueError):
    """No stored DataView has that id or name.

    Both a :class:`~hds_s3.errors.NotFoundError` and, as in the reference, a ``ValueError``.
    """


class IterationOrder(str, Enum):
    """Order in which a DataView yields frames."""

    sequential = "sequential"
    random = "random"


def _order(value: object) -> IterationOrder:
    if isinstance(value, IterationOrder):
        return value
    if isinstance(value, str) and value in {o.value for o in IterationOrder}:
        return IterationOrder(value)
    raise ValidationError(
        f"iteration order must be IterationOrder.sequential or 'random', got {preview(value)}"
    )


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RoiQuery:
    """One ROI rule of :meth:`DataView.add_multi_query` (the reference's ``DataView.RoiQuery``).

    Attributes:
        label: a label, a list of labels that must all be on the same ROI, or a ROI Lucene query
            (default field ``label.keyword``, implicit AND); ``'*'`` is any ROI.
        must_not: the frame must have no ROI matching (``count_range`` is then ignored).
        count_range: ``(min, max)`` number of matching ROIs per frame (None or -1 = unbounded);
            default at least one.
        conf_range: ``(min, max)`` confidence a matching ROI must have (None or -1 = unbounded);
            a ROI without confidence does not match a confidence range.
    """

    label: str | tuple[str, ...]
    must_not: bool = False
    count_range: tuple[float | None, float | None] | None = None
    conf_range: tuple[float | None, float | None] | None = None

    def __init__(
        self,
        label: str | Sequence[str],
        must_not: bool = False,
        count_range: Sequence[float | None] | None = None,
        conf_range: Sequence[float | None] | None = None,
    ) -> None:
        """Describe one ROI rule; it is checked when used (:meth:`rule`).

        Raises:
            ValidationError: ``label`` is neither a string nor a list of strings, or a range is not
                a pair.
        """
        if isinstance(label, str):
            lab: str | tuple[str, ...] = label
        elif isinstance(label, Sequence) and not isinstance(label, bytes):
            lab = tuple(label)
        else:
            raise ValidationError(
                f"RoiQuery label must be a label, a list of labels or a query: {preview(label)}"
            )
        for what, given in (("count_range", count_range), ("conf_range", conf_range)):
            if given is not None and (isinstance(given, (str, bytes)) or not isinstance(given, Sequence)):
                raise ValidationError(
                    f"RoiQuery {what} must be a pair [min, max] (None or -1 = unbounded), "
                    f"got {preview(given)}"
                )
        object.__setattr__(self, "label", lab)
        object.__setattr__(self, "must_not", must_not)
        object.__setattr__(self, "count_range", None if count_range is None else tuple(count_range))
        object.__setattr__(self, "conf_range", None if conf_range is None else tuple(conf_range))

    def rule(self, what: str = "RoiQuery") -> query.LabelRule:
        """Compile into a :class:`hds_s3.query.lucene.LabelRule`.

        Raises:
            ValidationError: a bad label query or range.
        """
        return query.label_rule(
            self.label if isinstance(self.label, str) else list(self.label),
            must_not=self.must_not,
            count_range=self.count_range,
            conf_range=self.conf_range,
            what=what,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "label": self.label if isinstance(self.label, str) else list(self.label),
            "must_not": self.must_not,
            "count_range": None if self.count_range is None else list(self.count_range),
            "conf_range": None if self.conf_range is None else list(self.conf_range),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoiQuery:
        """Read the stored form.

        Raises:
            ValidationError: not a ROI rule.
        """
        if not isinstance(data, Mapping) or "label" not in data:
            raise ValidationError(f"not a stored ROI rule: {preview(data)}")
        return cls(data["label"], bool(data.get("must_not")), data.get("count_range"), data.get("conf_range"))


@dataclass(frozen=True)
class DataViewQuery:
    """One filter rule of a DataView, as :meth:`DataView.get_queries` returns it.

    ``dataset_id`` / ``version_id`` are ids or ``'*'``; the names are those seen when the rule
    was added (for display). Pass it back to :meth:`DataView.add_query` to copy it.
    """

    dataset_id: str
    version_id: str
    dataset_name: str | None = None
    version_name: str | None = None
    roi_queries: tuple[RoiQuery, ...] = ()
    frame_query: str | None = None
    source_query: str | None = None
    weight: float = 1.0
    filter_by_roi: str = "label_rules"
    _filter: query.FrameFilter | None = field(default=None, compare=False, repr=False)

    @property
    def filter(self) -> query.FrameFilter:
        """The compiled filter (cached).

        Raises:
            ValidationError: a query of the rule is malformed.
        """
        if self._filter is None:
            rules = [r.rule(f"roi_queries[{i}]") for i, r in enumerate(self.roi_queries)]
            built = query.make_filter(
                frame_query=self.frame_query,
                source_query=self.source_query,
                label_rules=rules,
                filter_by_roi=self.filter_by_roi,
            )
            object.__setattr__(self, "_filter", built)
        assert self._filter is not None
        return self._filter

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "dataset_id": self.dataset_id,
            "version_id": self.version_id,
            "dataset_name": self.dataset_name,
            "version_name": self.version_name,
            "roi_queries": [r.to_dict() for r in self.roi_queries],
            "frame_query": self.frame_query,
            "source_query": self.source_query,
            "weight": self.weight,
            "filter_by_roi": self.filter_by_roi,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataViewQuery:
        """Read and compile the stored form.

        Raises:
            ValidationError: the rule is malformed.
        """
        try:
            out = cls(
                dataset_id=str(data["dataset_id"]),
                version_id=str(data["version_id"]),
                dataset_name=data.get("dataset_name"),
                version_name=data.get("version_name"),
                roi_queries=tuple(RoiQuery.from_dict(r) for r in data.get("roi_queries") or ()),
                frame_query=data.get("frame_query"),
                source_query=data.get("source_query"),
                weight=_weight(data.get("weight", 1.0)),
                filter_by_roi=str(data.get("filter_by_roi") or "label_rules"),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"not a stored DataView rule ({exc}): {preview(data)}") from None
        out.filter  # noqa: B018 - compile now: a bad stored rule fails on load
        return out


@dataclass(frozen=True)
class MappingRule:
    """A label mapping rule: ROIs carrying all ``from_labels`` get ``to_label`` instead.

    ``dataset_id`` / ``version_id`` scope the rule (``'*'``: every dataset / version of the view).
    """

    from_labels: tuple[str, ...]
    to_label: str
    dataset_id: str = WILDCARD
    version_id: str = WILDCARD
    dataset_name: str | None = None
    version_name: str | None = None

    def applies(self, dataset_id: str, version_id: str) -> bool:
        """Whether the rule covers frames of this (dataset, version)."""
        return self.dataset_id in (WILDCARD, dataset_id) and self.version_id in (WILDCARD, version_id)

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "from_labels": list(self.from_labels),
            "to_label": self.to_label,
            "dataset_id": self.dataset_id,
            "version_id": self.version_id,
            "dataset_name": self.dataset_name,
            "version_name": self.version_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MappingRule:
        """Read the stored form.

        Raises:
            ValidationError: the rule is malformed.
        """
        try:
            return cls(
                from_labels=_labels(data["from_labels"]),
                to_label=check_name("label", data["to_label"]),
                dataset_id=str(data.get("dataset_id", WILDCARD)),
                version_id=str(data.get("version_id", WILDCARD)),
                dataset_name=data.get("dataset_name"),
                version_name=data.get("version_name"),
            )
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"not a stored mapping rule ({exc}): {preview(data)}") from None


def _labels(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValidationError(
            f"from_labels must be a label or a non-empty list of labels, got {preview(value)}"
        )
    return tuple(check_name("label", x) for x in items)


def _weight(value: object) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise ValidationError(f"weight must be a positive finite number, got {preview(value)}")
    return number


#: The largest count, position or clip length a DataView takes (a 64-bit int, as numpy and JSON hold it).
MAX_COUNT = 2**63 - 1


def _positive_int(what: str, value: object, *, zero: bool = False) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if zero else 1) <= value <= MAX_COUNT:
        least = "0" if zero else "1"
        raise ValidationError(
            f"{what} must be a whole number from {least} to 2**63 - 1, or None, got {preview(value)}"
        )
    return int(value)


# ---------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Pair:
    dataset_id: str
    version_id: str
    dataset_name: str
    version_name: str
    entry: VersionEntry

    @property
    def info(self) -> dict[str, Any]:
        return {
            "id": self.dataset_id,
            "name": self.dataset_name,
            "version": self.version_id,
            "version_name": self.version_name,
        }


@dataclass
class _Matched:
    """The frames a view matches: indexed in sequential order (context_id, timestamp, id, pair)."""

    pairs: list[_Pair]
    tables: list[pa.Table]
    locations: list[tuple[Any, np.ndarray, np.ndarray]]  # per pair: its scan, segment and row of each row
    frame_pair: np.ndarray
    frame_row: np.ndarray
    context: np.ndarray
    rules: list[np.ndarray]
    rule_counts: list[int]
    stamps: np.ndarray | None = None  # timestamps in sequential order, when clips are cut by time

    @property
    def size(self) -> int:
        return len(self.frame_pair)


def _rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The given rows (ascending, unique) of a table; the table itself when they are all of them."""
    return table if len(rows) == table.num_rows else table.take(pa.array(rows))


def _clips(frames: np.ndarray, context: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sequentially sorted frame list into clips of ``length`` consecutive frames of one context.

    Returns (start, end) positions into ``frames``.
    """
    n = len(frames)
    if length <= 1 or n == 0:
        starts = np.arange(n, dtype=np.int64)
        return starts, starts + 1
    ctx = context[frames]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = ctx[1:] != ctx[:-1]
    run_start = np.flatnonzero(new_run)
    run_of = np.cumsum(new_run) - 1
    offset = np.arange(n) - run_start[run_of]
    starts = np.flatnonzero(offset % length == 0).astype(np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    return starts, ends


def _time_clips(
    frames: np.ndarray, context: np.ndarray, stamps: np.ndarray, span_ms: int | None, jump_ms: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sequentially sorted frame list into clips by time (the reference's iteration in ms).

    A clip is a run of consecutive frames of one context whose timestamps lie within ``span_ms`` of
    the clip's first frame (``min_sequence``) and no two of which are more than ``jump_ms`` apart
    (``jump.time``); either may be None. Returns (start, end) positions into ``frames``.
    """
    n = len(frames)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    ctx = context[frames]
    ts = stamps[frames]
    new_ctx = np.ones(n, dtype=bool)
    new_ctx[1:] = ctx[1:] != ctx[:-1]
    if jump_ms is not None:
        new_ctx[1:] |= (ts[1:] - ts[:-1]) > jump_ms
    if span_ms is None:
        starts = np.flatnonzero(new_ctx).astype(np.int64)
    else:
        out: list[int] = []
        first_ts = 0
        for i, (fresh, t) in enumerate(zip(new_ctx.tolist(), ts.tolist(), strict=True)):
            if fresh or t - first_ts >= span_ms:
                out.append(i)
                first_ts = t
        starts = np.array(out, dtype=np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    return starts, ends


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``range(s, s + l)`` for each start and length, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total, dtype=np.int64)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def _permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A permutation built only from ``rng.random`` (its stream is fixed for PCG64 on every machine)."""
    out: np.ndarray = np.argsort(rng.random(n), kind="stable")
    return out


@dataclass(frozen=True)
class _Plan:
    """What one pass of iteration produces, before sharding: the sequence of picks."""

    order: IterationOrder
    infinite: bool
    limit: int | None
    seed: int
    clip_length: int
    weights: tuple[float, ...]
    epoch: int = 0
    span_ms: int | None = None
    jump_ms: int | None = None

    def cut(self, frames: np.ndarray, matched: _Matched) -> tuple[np.ndarray, np.ndarray]:
        """The clips of a sequentially sorted frame list: by time when asked, else by count."""
        if (self.span_ms is not None or self.jump_ms is not None) and matched.stamps is not None:
            return _time_clips(frames, matched.context, matched.stamps, self.span_ms, self.jump_ms)
        return _clips(frames, matched.context, self.clip_length)

    def stream(self, *ids: int) -> np.random.Generator:
        """The random stream ``ids`` of this plan's seed and epoch (epoch 0: as before epochs)."""
        return _rng(self.seed, *ids, *((self.epoch,) if self.epoch else ()))

    def end(self, size: int) -> float:
        if self.infinite:
            return float(self.limit) if self.limit is not None else math.inf
        return float(min(size, self.limit) if self.limit is not None else size)

    def blocks(self, matched: _Matched) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (frames, pick numbers) in sequence order, block by block, until the epoch(s) end."""
        if matched.size == 0:
            return
        if self.order is IterationOrder.sequential:
            yield from self._sequential(matched)
        else:
            yield from self._random(matched)

    def _sequential(self, matched: _Matched) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        clips = self.clip_length > 1 or self.span_ms is not None or self.jump_ms is not None
        if not clips:  # every frame a clip of its own: the blocks are ranges, nothing held per frame
            pick = 0
            while True:
                for first in range(0, matched.size, _BLOCK_PICKS):
                    frames = np.arange(first, min(matched.size, first + _BLOCK_PICKS), dtype=np.int64)
                    yield frames, frames + (pick - first)
                    pick += len(frames)
                if not self.infinite:
                    return
        starts, ends = self.cut(np.arange(matched.size, dtype=np.int64), matched)
        pick = 0
        while True:
            for first in range(0, len(starts), _BLOCK_PICKS):
                s, e = starts[first : first + _BLOCK_PICKS], ends[first : first + _BLOCK_PICKS]
                lengths = e - s
                picks = np.repeat(np.arange(pick, pick + len(s), dtype=np.int64), lengths)
                yield _expand(s, lengths), picks
                pick += len(s)
            if not self.infinite:
                return

    def _random(self, matched: _Matched) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        live = [i for i, r in enumerate(matched.rules) if len(r)]
        weights = np.array([self.weights[i] for i in live], dtype=np.float64)
        cumulative = np.cumsum(weights / weights.sum())
        clips = [self.cut(matched.rules[i], matched) for i in live]
        members = np.concatenate([matched.rules[i] for i in live])
        base = np.cumsum([0] + [len(matched.rules[i]) for i in live])[:-1]
        chooser = self.stream(0)
        streams = [self.stream(1, i) for i in live]
        perms: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in live]
        cursors = [0 for _ in live]

        def take(k: int, count: int) -> np.ndarray:
            out: list[np.ndarray] = []
            n_clips = len(clips[k][0])
            while count > 0:
                if cursors[k] >= len(perms[k]):
                    perms[k] = _permutation(streams[k], n_clips)
                    cursors[k] = 0
                m = min(count, len(perms[k]) - cursors[k])
                out.append(perms[k][cursors[k] : cursors[k] + m])
                cursors[k] += m
                count -= m
            return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

        pick = 0
        while True:
            draws = chooser.random(_BLOCK_PICKS)
            choice = np.minimum(np.searchsorted(cumulative, draws, side="right"), len(live) - 1)
            starts = np.zeros(_BLOCK_PICKS, dtype=np.int64)
            lengths = np.zeros(_BLOCK_PICKS, dtype=np.int64)
            for k in range(len(live)):
                where = np.flatnonzero(choice == k)
                if len(where) == 0:
                    continue
                chosen = take(k, len(where))
                s, e = clips[k]
                starts[where] = base[k] + s[chosen]
                lengths[where] = e[chosen] - s[chosen]
            picks = np.repeat(np.arange(pick, pick + _BLOCK_PICKS, dtype=np.int64), lengths)
            yield members[_expand(starts, lengths)], picks
            pick += _BLOCK_PICKS


# ---------------------------------------------------------------------------- sharding


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"environment variable {name}={preview(raw)} is not a whole number") from None


def detect_shards() -> tuple[int, int]:
    """Return (number of shards, this shard's index) from the environment.

    ``WORLD_SIZE`` / ``RANK`` (distributed training) and, when torch is already imported (it is
    never imported here), the DataLoader worker info: W = world size x workers,
    k = rank x workers + worker id. (1, 0) outside of both.

    Raises:
        ValidationError: ``WORLD_SIZE`` / ``RANK`` are malformed or inconsistent.
    """
    world = _env_int("WORLD_SIZE") or 1
    rank = _env_int("RANK") or 0
    if world < 1 or not 0 <= rank < world:
        raise ValidationError(
            f"RANK={rank} and WORLD_SIZE={world} are inconsistent (need 0 <= RANK < WORLD_SIZE)"
        )
    workers, worker = 1, 0
    data = sys.modules.get("torch.utils.data")
    if data is not None:
        info = data.get_worker_info()
        if info is not None:
            workers, worker = int(info.num_workers), int(info.id)
    return world * workers, rank * workers + worker


#: The most shards (workers) a DataView's iteration is split into.
MAX_SHARDS = 2**31 - 1


def _shards(num_workers: int | None, worker_index: int | None) -> tuple[int, int]:
    if num_workers is None and worker_index is None:
        return detect_shards()
    if num_workers is None or worker_index is None:
        raise ValidationError(
            "give both num_workers and worker_index (got "
            f"{preview(num_workers)} and {preview(worker_index)}), "
            "or neither to detect them"
        )
    if (
        isinstance(num_workers, bool)
        or not isinstance(num_workers, int)
        or not 1 <= num_workers <= MAX_SHARDS
    ):
        raise ValidationError(
            f"num_workers must be a whole number from 1 to {MAX_SHARDS:,}, got {preview(num_workers)}"
        )
    if (
        isinstance(worker_index, bool)
        or not isinstance(worker_index, int)
        or not 0 <= worker_index < MAX_SHARDS
    ):
        raise ValidationError(
            f"worker_index must be a whole number from 0 to {MAX_SHARDS - 1:,}, got {preview(worker_index)}"
        )
    return num_workers, worker_index % num_workers


# ---------------------------------------------------------------------------- frames out


def _element(item: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k not in _DERIVED_ELEMENT_KEYS}
    if "meta" in out:
        out["meta"] = json.loads(out["meta"]) if out["meta"] is not None else {}
    return out


def _frame_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """An Arrow row of frame columns (any subset) as the canonical frame dict."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key not in _FRAME_FIELDS:
            continue
        if key in ("meta", "meta_blob"):
            out[key] = json.loads(value) if value is not None else {}
        elif key in ("sources", "rois"):
            out[key] = [_element(x) for x in value or ()]
        elif key in ("saved", "saved_in_version", "updated_in_version") and value is None:
            continue
        else:
            out[key] = value
    return out


def _label_num(labels: Sequence[str], enumeration: Mapping[str, int]) -> int:
    for label in labels:
        if label in enumeration:
            return enumeration[label]
    return -1


def _projection_tree(projection: Sequence[str] | str | None) -> dict[str, Any] | None:
    """Dot paths as a tree of keys (a None leaf keeps the whole value); None means no projection.

    ``'*'`` as any path component also means no projection (as in the reference).

    Raises:
        ValidationError: a path that is empty or does not start with a frame field or ``dataset``.
    """
    if projection is None:
        return None
    if not isinstance(projection, (str, list, tuple)):
        raise ValidationError(
            "projection is a dot path or a list of them (such as ['id', 'rois.labels']), "
            f"got {preview(projection)}"
        )
    paths = [projection] if isinstance(projection, str) else list(projection)
    tree: dict[str, Any] = {}
    for path in paths:
        if not isinstance(path, str) or any(not p.strip() for p in path.split(".")):
            raise ValidationError(
                f"projection paths are dot paths such as 'id' or 'dataset.id', got {preview(path)}"
            )
        parts = path.split(".")
        if "*" in parts:
            return None
        for part in parts[1:]:
            if part.isdigit() and not _is_index(part):
                raise ValidationError(
                    f"projection {preview(path[:80])}: {preview(part[:20])} "
                    "is not a list position (ASCII digits, at "
                    f"most {_INDEX_DIGITS} of them)"
                )
        if parts[0] not in _FRAME_FIELDS and parts[0] != "dataset":
            known = ", ".join(sorted(_FRAME_FIELDS | {"dataset"}))
            raise ValidationError(f"projection {preview(path)} names no frame field; fields: {known}")
        node: dict[str, Any] | None = tree
        for part in parts[:-1]:
            assert node is not None
            if part in node and node[part] is None:
                node = None  # an enclosing path keeps the whole value
                break
            node = node.setdefault(part, {})
        if node is not None:
            node[parts[-1]] = None
    return tree


_INDEX_DIGITS = 9


def _is_index(part: str) -> bool:
    """A projection path component that selects a list position: ASCII digits, not too many."""
    return part.isascii() and part.isdigit() and len(part) <= _INDEX_DIGITS


def _select(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, dict):
        return {k: _select(value[k], sub) for k, sub in tree.items() if k in value}
    if isinstance(value, list):
        indexed = {int(k): sub for k, sub in tree.items() if _is_index(k)}
        named = {k: sub for k, sub in tree.items() if not _is_index(k)}
        if not named:
            return [_select(value[i], indexed[i]) for i in sorted(indexed) if i < len(value)]
        return [
            _select(item, _merge(named, indexed[i]) if i in indexed else named)
            for i, item in enumerate(value)
        ]
    return value


def _merge(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return None
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out else v
    return out


def _columns_for(tree: dict[str, Any] | None) -> set[str]:
    if tree is None:
        return set(segments.FRAME_COLUMNS)
    return {k for k in tree if k in _FRAME_FIELDS} | {"id"}


def _identity(data: dict[str, Any]) -> dict[str, Any]:
    return data


def _as_frame(data: dict[str, Any]) -> SingleFrame | FrameGroup:
    """A frame object from an output dict; annotations get the ROI's ``label_num`` attribute."""
    rois = data.get("rois") or []
    frame = frame_from_dict({k: v for k, v in data.items() if k != "dataset"})
    if isinstance(frame, SingleFrame):
        annotations = frame.annotations
    else:  # the ROIs went where FrameGroup.from_dict puts them: to their one member, else the group
        annotations = []
        members = {key: iter(member.annotations) for key, member in frame.items()}
        group = iter(frame.annotations)
        for roi in rois:
            src = roi.get("sources") or []
            owner = members.get(src[0]) if len(src) == 1 else None
            found = next(owner if owner is not None else group, None)
            if found is None:
                break
            annotations.append(found)
    for annotation, roi in zip(annotations, rois, strict=False):
        setattr(annotation, "label_num", roi.get("label_num", -1))  # noqa: B010 - not a declared field
    return frame


# ---------------------------------------------------------------------------- the iterator


_T = TypeVar("_T")
_END = object()

#: Frames handed from the read-ahead thread to the consumer at a time (the reference's default).
DEFAULT_QUERY_CACHE_SIZE = 500
#: Batches the read-ahead thread holds ready at most (the reference's default queue depth).
DEFAULT_QUERY_QUEUE_DEPTH = 5


def _events(
    view: DataView,
    matched: _Matched,
    plan: _Plan,
    tree: dict[str, Any] | None,
    start: int,
    shards: tuple[int, int],
    convert: Callable[[dict[str, Any]], Any],
) -> Iterator[tuple[int, Any]]:
    """One pass of the view as (position after it, item or ``_END`` for a skip-ahead) pairs.

    The position is of the unsharded sequence: where a resumed iterator would start.
    """
    num_workers, worker_index = shards
    end = plan.end(matched.size)
    if start >= end:
        return
    chunk = max(matched.size, _CHUNK_PICKS)  # picks read in one pass over the versions
    frames: list[np.ndarray] = []
    places: list[np.ndarray] = []
    held = 0
    pos = 0

    def flush() -> Iterator[tuple[int, Any]]:
        if not frames:
            return
        order = np.concatenate(frames)
        positions = np.concatenate(places)
        frames.clear()  # the blocks, now in one array each
        places.clear()
        stream = view._stream(matched, order, tree)
        del order
        for first in range(0, len(positions), _BLOCK_PICKS):  # not a list of every position at once
            for at in positions[first : first + _BLOCK_PICKS].tolist():
                yield at + 1, convert(next(stream))

    for block, picks in plan.blocks(matched):
        n = len(block)
        if pos + n <= start:
            pos += n
            continue
        positions = pos + np.arange(n, dtype=np.int64)
        keep = (positions >= start) & (positions < end) & (picks % num_workers == worker_index)
        kept = np.flatnonzero(keep)
        frames.append(block[kept])
        places.append(positions[kept])
        held += len(kept)
        pos += n
        if held >= chunk or pos >= end:
            yield from flush()
            frames, places, held = [], [], 0
        if not held:
            yield int(min(pos, end)), _END
        if pos >= end:
            return
    yield from flush()
    yield int(min(pos, end)), _END


def _produce(
    events: Iterator[tuple[int, Any]], out: queue.Queue[Any], stop: threading.Event, batch: int
) -> None:
    """The read-ahead thread: put batches of events (then ``_END``, or the exception) on ``out``."""

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        buffer: list[tuple[int, Any]] = []
        for event in events:
            buffer.append(event)
            if len(buffer) >= batch:
                if not put(buffer):
                    return
                buffer = []
        if buffer and not put(buffer):
            return
        put(_END)
    except BaseException as exc:  # handed to the consumer, raised at its next()
        put(exc)


class DataViewIterator(Generic[_T]):
    """Iterates a DataView's frames (see :meth:`DataView.get_iterator`), read ahead in a thread.

    A background thread reads the frames and converts them, ``query_cache_size`` at a time, and
    keeps at most ``query_queue_depth`` such batches ready (the reference's iterator options); an
    error there is raised in the consumer at its next ``next()``. ``query_queue_depth=0`` reads in
    the consumer's thread instead. With ``cache_in_memory``, a finished pass is kept, and iterating
    the iterator again (``iter(it)``) serves it from memory.

    Attributes:
        num_workers, worker_index: the shard this iterator yields (1, 0 when unsharded).
        random_seed: the seed of random order.
        epoch: the epoch of random order (see :meth:`DataView.set_epoch`).
    """

    def __init__(
        self,
        view: DataView,
        matched: _Matched,
        plan: _Plan,
        tree: dict[str, Any] | None,
        start: int,
        shards: tuple[int, int],
        track: bool = True,
        *,
        convert: Callable[[dict[str, Any]], _T],
        query_cache_size: int = DEFAULT_QUERY_CACHE_SIZE,
        query_queue_depth: int = DEFAULT_QUERY_QUEUE_DEPTH,
        cache_in_memory: bool = False,
    ) -> None:
        self.num_workers, self.worker_index = shards
        self.random_seed = plan.seed
        self.epoch = plan.epoch
        self._view = view
        self._position = start
        self._track = track
        self._buffer: list[tuple[int, Any]] = []
        self._done = False
        self._cache: list[_T] | None = [] if cache_in_memory else None
        self._cached = False
        events = _events(view, matched, plan, tree, start, shards, convert)
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] | None = None
        self._events: Iterator[tuple[int, Any]] | None = None
        if query_queue_depth > 0:
            self._queue = queue.Queue(maxsize=query_queue_depth)
            self._thread: threading.Thread | None = threading.Thread(
                target=_produce,
                args=(events, self._queue, self._stop, query_cache_size),
                name="hds-dataview-read-ahead",
                daemon=True,
            )
            self._thread.start()
        else:
            self._events = events
            self._thread = None

    @property
    def position(self) -> int:
        """Frames of the unsharded sequence passed so far (where a resumed iterator would start)."""
        return self._position

    def __iter__(self) -> Iterator[_T]:
        if self._done and self._cache is not None and self._cached:
            return iter(list(self._cache))
        return self

    def _next_event(self) -> tuple[int, Any] | None:
        if self._events is not None:
            return next(self._events, None)
        if not self._buffer:
            assert self._queue is not None
            got = self._queue.get()
            if got is _END:
                return None
            if isinstance(got, BaseException):
                self._done = True
                raise got
            self._buffer = got
            self._buffer.reverse()
        return self._buffer.pop()

    def __next__(self) -> _T:
        while not self._done:
            event = self._next_event()
            if event is None:
                self._done = True
                self._cached = self._cache is not None
                self._stop.set()
                break
            position, item = event
            self._advance(position)
            if item is _END:
                continue
            if self._cache is not None:
                self._cache.append(item)
            return cast(_T, item)
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead (the iterator then ends)."""
        self._done = True
        self._stop.set()

    def __enter__(self) -> DataViewIterator[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def _advance(self, position: int) -> None:
        if position > self._position:
            self._position = position
            if self._track:
                self._view._current_iteration = position


# ---------------------------------------------------------------------------- the DataView

_RoiQuery: TypeAlias = RoiQuery
_IterationOrder: TypeAlias = IterationOrder


class DataView:
    """A saved query over datasets and versions, and the iterator of its frames.

    Construct it, add rules with :meth:`add_query` / :meth:`add_multi_query`, then count, iterate
    or store it. Nothing is read from or written to the store until a rule names a dataset
    (resolved to ids then) or the view is counted, iterated or stored.
    """

    RoiQuery: ClassVar[type[_RoiQuery]]
    IterationOrder: ClassVar[type[_IterationOrder]]

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        iteration_order: _IterationOrder | str = "sequential",
        iteration_infinite: bool = False,
        *,
        tags: Iterable[str] | None = None,
        iteration_random_seed: int | None = None,
        iteration_limit: int | None = None,
        clip_length: int | None = None,
        min_sequence: int | None = None,
        jump_time: int | None = None,
        client: Client | None = None,
    ) -> None:
        """Create an empty draft view (nothing is stored until :meth:`store`).

        ``clip_length`` cuts clips by frame count; ``min_sequence`` / ``jump_time`` (milliseconds,
        the reference's iteration parameters) by time (see :meth:`set_iteration_parameters`).

        Raises:
            ValidationError: a bad name, order, seed, limit or clip length.
        """
        self._name = None if name is None else check_name("dataview", name)
        if description is not None and not isinstance(description, str):
            raise ValidationError(f"DataView description must be a string, got {preview(description)}")
        self._description = description or ""
        self._tags = check_tags(tags)
        self._order = _order(iteration_order)
        self._infinite = _flag("iteration_infinite", iteration_infinite)
        self._seed = _positive_int("random_seed", iteration_random_seed, zero=True)
        self._limit = _positive_int("maximum_number_of_frames", iteration_limit)
        self._clip_length = _positive_int("clip_length", clip_length)
        self._min_sequence = _positive_int("min_sequence", min_sequence)
        self._jump_time = _positive_int("jump_time", jump_time, zero=True)
        self._epoch = 0
        self._queries: list[DataViewQuery] = []
        self._mapping: list[MappingRule] = []
        self._labels: dict[str, int] = {}
        self._client = client
        self._id: str | None = None
        self._etag: str | None = None
        self._status = DRAFT
        self._created: int | None = None  # ns since the epoch (the document also says ms)
        self._published: int | None = None
        self._extra: dict[str, Any] = {}
        self._initial_iteration = 0
        self._current_iteration = 0
        self._tables: dict[tuple[str, str], tuple[frozenset[str], pa.Table, Any]] = {}
        self._lock = threading.Lock()

    # --------------------------------------------------------------- properties

    @property
    def client(self) -> Client:
        """The client this view reads through (the default one unless given).

        Raises:
            ValidationError: ``HDS_STORE`` has an unsupported form.
        """
        if self._client is None:
            self._client = resolve(None)
        return self._client

    @property
    def id(self) -> str | None:
        """The stored DataView's id; None until :meth:`store`."""
        return self._id

    @property
    def name(self) -> str | None:
        """The view's name (not unique; :meth:`get` by name picks the most recent)."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._require_draft("rename")
        self._name = check_name("dataview", value)

    @property
    def description(self) -> str:
        """The view's description."""
        return self._description

    @property
    def tags(self) -> list[str]:
        """The view's tags."""
        return list(self._tags)

    @property
    def status(self) -> str:
        """``draft`` or ``published`` (read-only)."""
        return self._status

    def _require_draft(self, what: str) -> None:
        if self._status == PUBLISHED:
            raise InvalidStateError(
                f"cannot {what} DataView {preview(self._name)} ({self._id}): it is published and read-only; "
                "make a new DataView and add its get_queries() to it"
            )

    def _changed(self) -> None:
        self._tables.clear()

    # --------------------------------------------------------------- rules

    def _resolve(
        self,
        dataset_name: str | None,
        dataset_id: str | None,
        version_name: str | None,
        version_id: str | None,
        what: str,
    ) -> tuple[str, str, str | None, str | None]:
        """(dataset id | '*', version id | '*', dataset name, version name), read from the store."""
        for name, given in (
            ("dataset_name", dataset_name),
            ("dataset_id", dataset_id),
            ("version_name", version_name),
            ("version_id", version_id),
        ):
            if given is not None and not isinstance(given, str):
                raise ValidationError(
                    f"{what}: {name} must be a string, got {type(given).__name__}: {preview(given)}"
                )
        if dataset_name is not None and dataset_id is not None:
            raise ValidationError(f"{what}: give dataset_name or dataset_id, not both")
        if version_name is not None and version_id is not None:
            raise ValidationError(f"{what}: give version_name or version_id, not both")
        ds_sel = dataset_id if dataset_id is not None else dataset_name
        ver_sel = version_id if version_id is not None else version_name
        if ds_sel is None or ds_sel == WILDCARD:
            if ver_sel not in (None, WILDCARD):
                raise ValidationError(
                    f"{what}: version {preview(ver_sel)} needs its "
                    "dataset; name the dataset, or use '*' for both"
                )
            return WILDCARD, WILDCARD, None, None
        catalog = self.client.catalog
        doc: TreeView = (
            catalog.get(dataset_id=check_id("dataset", dataset_id))
            if dataset_id is not None
            else catalog.get(name=dataset_name)
        )
        if ver_sel == WILDCARD:
            return doc.id, WILDCARD, doc.name, None
        if version_id is not None:
            entry = doc.version(check_id("version", version_id))
            if entry is None:
                raise NotFoundError(
                    f"{what}: dataset {preview(doc.name)} has no version with id {version_id}"
                )
        elif version_name is not None:
            entry = doc.version_named(version_name)
            if entry is None:
                names = ", ".join(repr(v.name) for v in doc.versions) or "none"
                raise NotFoundError(
                    f"{what}: dataset {preview(doc.name)} has no version "
                    f"named {preview(version_name)} (it has: {names})"
                )
        else:
            entry = doc.head()
            if entry is None:
                raise NotFoundError(f"{what}: dataset {preview(doc.name)} has no versions")
        return doc.id, entry.id, doc.name, entry.name

    def add_query(
        self,
        query_: DataViewQuery | None = None,
        *,
        dataset_name: str | None = None,
        version_name: str | None = None,
        dataset_id: str | None = None,
        version_id: str | None = None,
        roi_query: str | Sequence[str] | None = None,
        frame_query: str | None = None,
        source_query: str | None = None,
        weight: float = 1,
        filter_by_roi: str | None = None,
    ) -> DataViewQuery:
        """Add one filter rule (rules are OR-ed; its conditions AND-ed) and return it.

        ``roi_query``: a label, a list of labels that must all be on the same ROI, or a ROI Lucene
        query (default field ``label.keyword``, implicit AND); ``'*'`` or None = no ROI condition.
        ``frame_query`` / ``source_query``: Lucene over frame / source fields (see
        :mod:`hds_s3.query.lucene`). Dataset and version: by name or id, or ``'*'`` (see the module
        docstring); a dataset without a version means its current version. ``filter_by_roi``:
        ``label_rules`` (default), ``disabled`` or ``no_rois``. A rule from :meth:`get_queries` may be
        passed as the only argument.

        Raises:
            InvalidStateError: the view is published.
            ValidationError: a malformed query (the message points at the bad token), a bad weight
                or mode, conflicting selectors; nothing is added.
            NotFoundError: the dataset or version does not exist.
        """
        self._require_draft("add a query to")
        if query_ is not None:
            if not isinstance(query_, DataViewQuery):
                raise ValidationError(
                    f"add_query takes a DataViewQuery (from get_queries()) or keyword arguments, "
                    f"got {preview(query_)}; name the dataset with dataset_name="
                )
            rule = DataViewQuery.from_dict(query_.to_dict())
        else:
            roi_queries: tuple[RoiQuery, ...] = ()
            if roi_query is not None and not (isinstance(roi_query, str) and roi_query.strip() == WILDCARD):
                roi_queries = (RoiQuery(roi_query),)
            rule = self._rule(
                "add_query",
                dataset_name,
                dataset_id,
                version_name,
                version_id,
                roi_queries,
                frame_query,
                source_query,
                weight,
                filter_by_roi,
            )
        self._queries.append(rule)
        self._changed()
        return rule

    def add_multi_query(
        self,
        *,
        dataset_name: str | None = None,
        version_name: str | None = None,
        dataset_id: str | None = None,
        version_id: str | None = None,
        roi_queries: Sequence[_RoiQuery],
        frame_query: str | None = None,
        source_query: str | None = None,
        weight: float = 1,
    ) -> DataViewQuery:
        """Add one filter rule with several ROI rules (AND-ed; each may match a different ROI).

        Raises:
            InvalidStateError: the view is published.
            ValidationError: a malformed query, range or weight; nothing is added.
            NotFoundError: the dataset or version does not exist.
        """
        self._require_draft("add a query to")
        if isinstance(roi_queries, RoiQuery) or not all(isinstance(r, RoiQuery) for r in roi_queries):
            raise ValidationError(
                f"roi_queries must be a list of DataView.RoiQuery, got {preview(roi_queries)}"
            )
        rule = self._rule(
            "add_multi_query",
            dataset_name,
            dataset_id,
            version_name,
            version_id,
            tuple(roi_queries),
            frame_query,
            source_query,
            weight,
            None,
        )
        self._queries.append(rule)
        self._changed()
        return rule

    def _rule(
        self,
        what: str,
        dataset_name: str | None,
        dataset_id: str | None,
        version_name: str | None,
        version_id: str | None,
        roi_queries: tuple[_RoiQuery, ...],
        frame_query: str | None,
        source_query: str | None,
        weight: object,
        filter_by_roi: str | None,
    ) -> DataViewQuery:
        if filter_by_roi is not None and not isinstance(filter_by_roi, str):
            raise ValidationError(
                f"{what}: filter_by_roi must be a string such as 'label_rules', got {preview(filter_by_roi)}"
            )
        rule = DataViewQuery(
            dataset_id=WILDCARD,
            version_id=WILDCARD,
            roi_queries=roi_queries,
            frame_query=frame_query,
            source_query=source_query,
            weight=_weight(weight),
            filter_by_roi=filter_by_roi or "label_rules",
        )
        rule.filter  # noqa: B018 - compile first: a bad query fails before the store is read
        ds, ver, ds_name, ver_name = self._resolve(dataset_name, dataset_id, version_name, version_id, what)
        return DataViewQuery(
            dataset_id=ds,
            version_id=ver,
            dataset_name=ds_name,
            version_name=ver_name,
            roi_queries=roi_queries,
            frame_query=frame_query,
            source_query=source_query,
            weight=rule.weight,
            filter_by_roi=rule.filter_by_roi,
            _filter=rule.filter,
        )

    def get_queries(self) -> list[DataViewQuery]:
        """Return the filter rules, in the order added."""
        return list(self._queries)

    def set_queries(self, queries: Iterable[DataViewQuery] | None) -> None:
        """Replace every filter rule (None or [] clears them).

        Raises:
            InvalidStateError: the view is published.
            ValidationError: an item is not a DataViewQuery; nothing changes.
        """
        self._require_draft("change the queries of")
        items = list(queries or [])
        if not all(isinstance(q, DataViewQuery) for q in items):
            raise ValidationError("set_queries takes DataViewQuery objects (from get_queries())")
        self._queries = [DataViewQuery.from_dict(q.to_dict()) for q in items]
        self._changed()

    def add_mapping_rule(
        self,
        from_labels: str | Sequence[str],
        to_label: str,
        dataset_name: str | None = None,
        version_name: str | None = None,
        *,
        dataset_id: str | None = None,
        version_id: str | None = None,
    ) -> MappingRule:
        """Map ROIs carrying all ``from_labels`` to ``to_label``, after matching.

        Queries still use the original labels.

        Scope: a dataset / version by name or id, default ``'*'`` (every one in the view).

        Raises:
            InvalidStateError: the view is published.
            ValidationError: empty or non-string labels, conflicting selectors; nothing is added.
            NotFoundError: the dataset or version does not exist.
        """
        self._require_draft("add a mapping rule to")
        labels = _labels(from_labels)
        target = check_name("label", to_label)
        if version_name is None and version_id is None:
            version_id = WILDCARD
        ds, ver, ds_name, ver_name = self._resolve(
            dataset_name, dataset_id, version_name, version_id, "add_mapping_rule"
        )
        rule = MappingRule(labels, target, ds, ver, ds_name, ver_name)
        self._mapping.append(rule)
        return rule

    def get_mapping_rules(self) -> list[MappingRule]:
        """Return the label mapping rules, in the order added."""
        return list(self._mapping)

    def set_labels(self, labels: Mapping[str, int]) -> None:
        """Set the label enumeration ``{label: int}`` (of mapped labels; unlisted ones get -1); ``{}`` clears.

        Raises:
            InvalidStateError: the view is published.
            ValidationError: not a dict of string to int (bools refused); nothing changes.
        """
        self._require_draft("set the labels of")
        if not isinstance(labels, Mapping):
            raise ValidationError(f"set_labels takes a dict {{label: int}}, got {preview(labels)}")
        for key, value in labels.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(
                    f"set_labels takes {{label: int}}; got {preview(key)}: {preview(value)}"
                )
        self._labels = dict(labels)

    def get_labels(self) -> dict[str, int]:
        """Return the label enumeration."""
        return dict(self._labels)

    # --------------------------------------------------------------- iteration parameters

    def set_iteration_parameters(
        self,
        order: _IterationOrder | str | None = None,
        infinite: bool | None = None,
        maximum_number_of_frames: int | None = None,
        random_seed: int | None = None,
        clip_length: int | None = None,
        *,
        limit: int | None = None,
        min_sequence: int | None = None,
        jump_time: int | None = None,
    ) -> None:
        """Change the iteration parameters given (None keeps a value; ``limit`` is an alias of the limit).

        Use :meth:`clear_iteration_limit` to remove a limit. Clips of video frames (frames of one
        ``context_id`` in timestamp order) are cut by count (``clip_length`` frames) or, as the
        reference's server, by time: ``min_sequence`` is a clip's length in milliseconds (its frames
        lie within that many ms of its first) and ``jump_time`` the most milliseconds between two
        frames of a clip (a longer gap starts a new clip). Random order then draws whole clips.

        Raises:
            InvalidStateError: the view is published.
            ValidationError: a bad value; nothing changes.
        """
        self._require_draft("change the iteration of")
        if limit is not None and maximum_number_of_frames is not None and limit != maximum_number_of_frames:
            raise ValidationError("give maximum_number_of_frames or limit, not both")
        new_order = self._order if order is None else _order(order)
        new_infinite = self._infinite if infinite is None else _flag("infinite", infinite)
        given_limit = maximum_number_of_frames if maximum_number_of_frames is not None else limit
        new_limit = (
            self._limit if given_limit is None else _positive_int("maximum_number_of_frames", given_limit)
        )
        new_seed = self._seed if random_seed is None else _positive_int("random_seed", random_seed, zero=True)
        new_clip = self._clip_length if clip_length is None else _positive_int("clip_length", clip_length)
        new_span = self._min_sequence if min_sequence is None else _positive_int("min_sequence", min_sequence)
        new_jump = self._jump_time if jump_time is None else _positive_int("jump_time", jump_time, zero=True)
        self._order, self._infinite, self._limit = new_order, new_infinite, new_limit
        self._seed, self._clip_length = new_seed, new_clip
        self._min_sequence, self._jump_time = new_span, new_jump

    def clear_iteration_limit(self) -> None:
        """Remove the frame limit.

        Raises:
            InvalidStateError: the view is published.
        """
        self._require_draft("change the iteration of")
        self._limit = None

    def get_iteration_parameters(self) -> dict[str, Any]:
        """Return the iteration parameters.

        ``{"order", "infinite", "limit", "random_seed", "clip_length", "min_sequence", "jump_time"}``.
        """
        return {
            "order": self._order.value,
            "infinite": self._infinite,
            "limit": self._limit,
            "random_seed": self._seed,
            "clip_length": self._clip_length,
            "min_sequence": self._min_sequence,
            "jump_time": self._jump_time,
        }

    def get_current_iteration(self) -> int:
        """Frames of the unsharded sequence consumed by the latest iterator (or the initial iteration)."""
        return self._current_iteration

    def set_initial_iteration(self, n: int) -> None:
        """Make the next iterators start at frame ``n`` of the sequence (resume); allowed when published.

        Raises:
            ValidationError: ``n`` is not a whole number >= 0.
        """
        value = _positive_int("initial iteration", n, zero=True)
        if value is None:
            raise ValidationError("initial iteration must be a whole number >= 0, got None")
        self._initial_iteration = value
        self._current_iteration = value

    def _plan(self, epoch: int = 0) -> _Plan:
        return _Plan(
            order=self._order,
            infinite=self._infinite,
            limit=self._limit,
            seed=DEFAULT_RANDOM_SEED if self._seed is None else self._seed,
            clip_length=self._clip_length or 1,
            weights=tuple(q.weight for q in self._queries),
            epoch=epoch,
            span_ms=self._min_sequence,
            jump_ms=self._jump_time,
        )

    # --------------------------------------------------------------- matching

    def _pairs(self) -> list[list[_Pair]]:
        """For each rule, the (dataset, version) pairs it reads (wildcards expanded over the pool)."""
        if not self._queries:
            raise ValidationError(f"DataView {preview(self._name)} has no queries; add one with add_query()")
        pool: list[tuple[str, str]] = []
        for q in self._queries:
            if (
                q.dataset_id != WILDCARD
                and q.version_id != WILDCARD
                and (q.dataset_id, q.version_id) not in pool
            ):
                pool.append((q.dataset_id, q.version_id))
        if not pool:
            raise ValidationError(
                "cannot fetch the contents of DataView "
                f"{preview(self._name)}: no concrete (dataset, version) in "
                "its queries; '*' selects among the pairs the view names, so name at least one"
            )
        docs: dict[str, TreeView] = {}
        resolved: dict[tuple[str, str], _Pair] = {}
        for ds, ver in pool:
            if ds not in docs:
                try:
                    docs[ds] = self.client.catalog.get(dataset_id=ds)
                except NotFoundError:
                    raise NotFoundError(
                        f"DataView {preview(self._name)}: dataset {ds} was deleted; remove its queries"
                    ) from None
            doc = docs[ds]
            entry = doc.version(ver)
            if entry is None:
                raise NotFoundError(
                    f"DataView {preview(self._name)}: version {ver} "
                    f"of dataset {preview(doc.name)} was deleted; "
                    "remove its queries"
                )
            resolved[(ds, ver)] = _Pair(ds, ver, doc.name, entry.name, entry)
        out: list[list[_Pair]] = []
        for q in self._queries:
            if q.dataset_id == WILDCARD:
                keys = pool
            elif q.version_id == WILDCARD:
                keys = [p for p in pool if p[0] == q.dataset_id]
            else:
                keys = [(q.dataset_id, q.version_id)]
            out.append([resolved[k] for k in keys])
        return out

    def _table(self, pair: _Pair, columns: set[str]) -> tuple[pa.Table, Any]:
        """The pair's effective frames with at least ``columns``, and ``(scan, segment, row)`` of each row.

        Cached per manifest: a manifest and its segments never change.
        """
        key = (pair.version_id, str(pair.entry.frames.get("manifest")))
        with self._lock:
            cached = self._tables.get(key)
        if cached is not None and columns <= cached[0]:
            return cached[1], cached[2]
        wanted = columns | (cached[0] if cached is not None else set())
        scan = self.client.frames.scan(pair.entry)
        table, segment, row = scan.table(sorted(wanted))
        release_memory()  # what the read held freed, before the pass that follows holds more
        with self._lock:
            self._tables[key] = (frozenset(table.column_names), table, (scan, segment, row))
            while len(self._tables) > _TABLE_CACHE:
                self._tables.pop(next(iter(self._tables)))
        return table, (scan, segment, row)

    def _drop_sort_columns(self, pair: _Pair, table: pa.Table, needed: set[str]) -> pa.Table:
        """The table without the sort columns that ``needed`` lacks; the pair's cached table too.

        They were read to sort the frames; holding them through a pass (and in the cache) costs
        more memory than reading them again for the next pass costs time.
        """
        drop = [c for c in _SORT_COLUMNS if c not in needed and c in table.column_names]
        if not drop:
            return table
        smaller = table.drop_columns(drop)
        key = (pair.version_id, str(pair.entry.frames.get("manifest")))
        with self._lock:
            cached = self._tables.get(key)
            if cached is not None and cached[1] is table:
                self._tables[key] = (frozenset(smaller.column_names), smaller, cached[2])
        return smaller

    def _match(self, output: set[str], *, order: bool) -> _Matched:
        """Evaluate every rule over its pairs (vectorised) and index the distinct matching frames."""
        per_rule = self._pairs()
        pairs: list[_Pair] = []
        for group in per_rule:
            for p in group:
                if p not in pairs:
                    pairs.append(p)
        needs: list[set[str]] = [set(output) for _ in pairs]
        for q, group in zip(self._queries, per_rule, strict=True):
            for p in group:
                needs[pairs.index(p)] |= q.filter.columns
        read = [
            self._table(p, needs[i] | (set(_SORT_COLUMNS) if order else set())) for i, p in enumerate(pairs)
        ]
        tables = [t for t, _ in read]
        locations = [loc for _, loc in read]
        del read
        prepared = [query.Frames(t) for t in tables]
        hits: list[list[np.ndarray]] = []  # per rule, per pair: matching rows
        for q, group in zip(self._queries, per_rule, strict=True):
            rows = [np.zeros(0, dtype=np.int64) for _ in pairs]
            for p in group:
                i = pairs.index(p)
                rows[i] = np.flatnonzero(q.filter.mask(prepared[i])).astype(np.int64)
            hits.append(rows)
        del prepared  # the filters' flattened columns
        unique = [
            np.unique(np.concatenate([h[i] for h in hits])) if hits else np.zeros(0, dtype=np.int64)
            for i in range(len(pairs))
        ]
        offsets = np.cumsum([0] + [len(u) for u in unique])
        frame_pair = np.repeat(np.arange(len(pairs), dtype=np.int64), [len(u) for u in unique])
        frame_row = np.concatenate(unique) if unique else np.zeros(0, dtype=np.int64)
        rank = np.arange(len(frame_row), dtype=np.int64)
        context = np.zeros(len(frame_row), dtype=np.int64)
        stamps: np.ndarray | None = None
        if order and len(frame_row):
            # sort indices only (no sorted copy of the keys); a pair matched whole is not copied
            keys = pa.concat_tables(
                [
                    _rows(tables[i].select(["context_id", "timestamp", "id"]), unique[i]).append_column(
                        "_pair", pa.array(np.full(len(unique[i]), i, dtype=np.int64))
                    )
                    for i in range(len(pairs))
                ]
            )
            sorted_n = pc.sort_indices(
                keys,
                sort_keys=[
                    ("context_id", "ascending"),
                    ("timestamp", "ascending"),
                    ("id", "ascending"),
                    ("_pair", "ascending"),
                ],
            ).to_numpy()
            rank = np.empty(len(frame_row), dtype=np.int64)
            rank[sorted_n] = np.arange(len(frame_row), dtype=np.int64)
            frame_pair, frame_row = frame_pair[sorted_n], frame_row[sorted_n]
            timed = self._min_sequence is not None or self._jump_time is not None
            if (self._clip_length or 1) > 1 or timed:  # contexts only cut clips
                encoded = pc.dictionary_encode(keys.column("context_id").combine_chunks())
                codes = np.asarray(
                    pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
                )
                context = codes[sorted_n]
                del encoded, codes
            if timed:
                stamps = np.asarray(pc.fill_null(keys.column("timestamp"), 0).to_numpy(), dtype=np.int64)[
                    sorted_n
                ]
            del keys
        rules: list[np.ndarray] = []
        for h in hits:
            members = [offsets[i] + np.searchsorted(unique[i], h[i]) for i in range(len(pairs)) if len(h[i])]
            idx = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
            rules.append(np.sort(rank[idx]))
        if order:  # columns read only to sort by are not kept (a pass holds what it matched, no more)
            tables = [self._drop_sort_columns(pairs[i], t, needs[i]) for i, t in enumerate(tables)]
        release_memory()  # the sort's and the masks' scratch memory, before a pass holds more
        return _Matched(
            pairs=pairs,
            tables=tables,
            locations=locations,
            frame_pair=frame_pair,
            frame_row=frame_row,
            context=context,
            rules=rules,
            rule_counts=[len(r) for r in rules],
            stamps=stamps,
        )

    def _stream(
        self, matched: _Matched, frames: np.ndarray, tree: dict[str, Any] | None
    ) -> Iterator[dict[str, Any]]:
        """Yield the output dicts of ``frames`` (matched frame numbers, repeats allowed), in order.

        Each pair's rows are read in one pass over the row groups that hold them, only the output
        columns (:meth:`hds_s3.index.scan.Scan.rows_at`), and handed back in this order: each frame
        costs the same whatever the version's size, and memory is bounded.
        """
        pair_of = matched.frame_pair[frames]
        names = [c for c in segments.FRAME_COLUMNS if c in _columns_for(tree)]
        streams: dict[int, Iterator[dict[str, Any]]] = {}
        for p in np.unique(pair_of):
            rows = matched.frame_row[frames[pair_of == p]]
            scan, segment, row = matched.locations[int(p)]
            batches = scan.rows_at(segment[rows], row[rows], names)
            streams[int(p)] = self._dicts(matched.pairs[int(p)], batches, tree)
        del frames
        if len(streams) == 1:  # one pair: its rows come in this order already
            del pair_of
            yield from streams.popitem()[1]
            return
        for first in range(0, len(pair_of), _BLOCK_PICKS):  # not a list of every pick at once
            for p in pair_of[first : first + _BLOCK_PICKS].tolist():
                yield next(streams[p])

    def _dicts(
        self, pair: _Pair, batches: Iterator[pa.RecordBatch], tree: dict[str, Any] | None
    ) -> Iterator[dict[str, Any]]:
        rules = [r for r in self._mapping if r.applies(pair.dataset_id, pair.version_id)]
        for batch in batches:
            yield from self._batch_dicts(pair, batch, tree, rules)

    def _batch_dicts(
        self, pair: _Pair, batch: pa.RecordBatch, tree: dict[str, Any] | None, rules: Sequence[MappingRule]
    ) -> Iterator[dict[str, Any]]:
        mapping = [(rule.from_labels, rule.to_label) for rule in rules]
        for start in range(0, batch.num_rows, _DICT_ROWS):
            for row in batch.slice(start, _DICT_ROWS).to_pylist():
                data = _frame_dict(row)
                for roi in data.get("rois", ()):
                    roi["labels"] = map_labels(list(roi.get("labels") or []), mapping)
                    roi["label_num"] = _label_num(roi["labels"], self._labels)
                data["dataset"] = pair.info
                video = (data.get("meta_blob") or {}).get(VIDEO_KEY)
                if isinstance(video, dict):  # a video frame's fields, where the reference has them
                    data.update((k, video[k]) for k in VIDEO_FIELDS if k in video)
                yield data if tree is None else _select(data, tree)

    # --------------------------------------------------------------- reading

    @overload
    def get_count(self, per_rule: Literal[False] = False) -> int: ...

    @overload
    def get_count(self, per_rule: Literal[True]) -> dict[str, Any]: ...

    def get_count(self, per_rule: bool = False) -> int | dict[str, Any]:
        """Count the distinct frames matching at least one rule (reads only the columns the rules need).

        With ``per_rule=True``: ``{"total": n, "rules": [{"rule_index": i, "count": c_i}, ...]}``
        where c_i counts the frames rule i matches on its own.

        Raises:
            ValidationError: no queries, or no concrete (dataset, version) among them.
            NotFoundError: a dataset or version of the view was deleted.
            CorruptObjectError: a segment is missing or damaged.
        """
        matched = self._match(set(), order=False)
        if not per_rule:
            return matched.size
        return {
            "total": matched.size,
            "rules": [{"rule_index": i, "count": c} for i, c in enumerate(matched.rule_counts)],
        }

    def get_stats(self, properties: Sequence[str] | str | None = None) -> dict[str, Any]:
        """Describe the distinct frames the view matches: counts, labels after mapping, properties.

        Returns ``{"frames", "rois", "labels": [{"name", "count"}], "rules": [{"rule_index",
        "frames", "rois", "labels"}], "properties": {name: {"values": [{"value", "count"}],
        "missing"}}}``. Labels are those of the ROIs after the mapping rules (what iterating gives),
        counted once per ROI carrying them, over all matched frames and per rule (the frames the
        rule matches on its own). ``properties`` names distributions to count: ``meta.<path>``
        (per frame; booleans count as 0 and 1), ``sources.<field>`` (per source: id, uri,
        content_type, width, height, timestamp), ``rois.<field>`` (per ROI: id, type, confidence),
        ``context_id`` or ``timestamp``. Computed over Arrow columns, with no loop over frames.

        Raises:
            ValidationError: a property that is none of those; no queries, or no concrete
                (dataset, version) among them.
            NotFoundError: a dataset or version of the view was deleted.
            CorruptObjectError: a segment is missing or damaged.
        """
        names = viewstats.property_names(properties)
        columns = viewstats.columns_for(names) | {"rois"}
        matched = self._match(columns, order=False)
        parts = []
        for p, pair in enumerate(matched.pairs):
            where = np.flatnonzero(matched.frame_pair == p)
            rows = matched.frame_row[where]
            table = matched.tables[p].select(sorted(columns)).take(pa.array(rows, pa.int64()))
            mapping = [
                (r.from_labels, r.to_label)
                for r in self._mapping
                if r.applies(pair.dataset_id, pair.version_id)
            ]
            parts.append(viewstats.Selected(table, rows, where.astype(np.int64), mapping))
        return viewstats.compute(parts, matched.size, matched.rules, names)

    def __len__(self) -> int:
        """Frames one pass yields: the limit when infinite, else the count capped by the limit.

        Raises:
            ValidationError: as :meth:`get_count`.
        """
        if self._infinite and self._limit is not None:
            return self._limit
        count = self.get_count()
        return min(count, self._limit) if self._limit is not None else count

    @overload
    def get_iterator(
        self,
        projection: None = None,
        num_workers: int | None = None,
        worker_index: int | None = None,
        *,
        as_dict: Literal[False] = False,
        query_cache_size: int | None = None,
        query_queue_depth: int = DEFAULT_QUERY_QUEUE_DEPTH,
        cache_in_memory: bool = False,
        epoch: int | None = None,
        node_id: int | None = None,
    ) -> DataViewIterator[SingleFrame | FrameGroup]: ...

    @overload
    def get_iterator(
        self,
        projection: Sequence[str] | str | None = None,
        num_workers: int | None = None,
        worker_index: int | None = None,
        *,
        as_dict: bool = False,
        query_cache_size: int | None = None,
        query_queue_depth: int = DEFAULT_QUERY_QUEUE_DEPTH,
        cache_in_memory: bool = False,
        epoch: int | None = None,
        node_id: int | None = None,
    ) -> DataViewIterator[Any]: ...

    def get_iterator(
        self,
        projection: Sequence[str] | str | None = None,
        num_workers: int | None = None,
        worker_index: int | None = None,
        *,
        as_dict: bool = False,
        query_cache_size: int | None = None,
        query_queue_depth: int = DEFAULT_QUERY_QUEUE_DEPTH,
        cache_in_memory: bool = False,
        epoch: int | None = None,
        node_id: int | None = None,
    ) -> DataViewIterator[Any]:
        """Iterate the view's frames, from the initial iteration (see :meth:`set_initial_iteration`).

        Yields :class:`~hds_s3.model.frames.SingleFrame` / :class:`~hds_s3.model.frames.FrameGroup`
        objects, as the reference; with ``as_dict=True``, or with a ``projection`` (a subset of a
        frame's fields is no frame object), frame dicts instead.

        ``projection``: dot paths to keep (``id``, ``dataset.id``, ``sources``, ``rois.labels``,
        ``sources.0.uri``; ``'*'`` = everything); only the columns they need are read.
        ``num_workers`` / ``worker_index``: the shard to yield (both or neither; default: detected,
        see :func:`detect_shards`); ``worker_index`` is taken modulo ``num_workers``; ``node_id``
        (the reference's) stands for ``worker_index`` when only ``num_workers`` is given.
        ``query_cache_size`` (default 500) frames are read ahead at a time by a background thread,
        which keeps at most ``query_queue_depth`` (default 5) such batches ready; 0 reads in this
        thread. ``cache_in_memory``: iterating the finished iterator again serves it from memory.

        Random order draws a new permutation every epoch, reproducible from (seed, epoch):
        ``epoch`` picks one; without it, the view's epoch (:meth:`set_epoch`) is used and then
        advanced, so each call (each pass of a training loop) sees another order.

        Raises:
            ValidationError: a bad projection, shard, epoch or read-ahead option, no queries, or no
                concrete pair.
            NotFoundError: a dataset or version of the view was deleted.
            CorruptObjectError: a segment is missing or damaged.
        """
        tree = _projection_tree(projection)
        if num_workers is not None and worker_index is None and node_id is not None:
            worker_index = node_id
        shards = _shards(num_workers, worker_index)
        cache_size = DEFAULT_QUERY_CACHE_SIZE if query_cache_size is None else query_cache_size
        _positive_int("query_cache_size", cache_size)
        if _positive_int("query_queue_depth", query_queue_depth, zero=True) is None:
            raise ValidationError("query_queue_depth must be a whole number >= 0, got None")
        given = None if epoch is None else _positive_int("epoch", epoch, zero=True)
        matched = self._match(set(), order=True)
        self._current_iteration = self._initial_iteration
        with self._lock:
            use = self._epoch if given is None else given
            if given is None:
                self._epoch += 1
        dicts = as_dict or tree is not None
        return DataViewIterator(
            self,
            matched,
            self._plan(use),
            tree,
            self._initial_iteration,
            shards,
            convert=_identity if dicts else _as_frame,
            query_cache_size=cache_size,
            query_queue_depth=query_queue_depth,
            cache_in_memory=_flag("cache_in_memory", cache_in_memory),
        )

    def set_epoch(self, epoch: int) -> None:
        """Make the next :meth:`get_iterator` (or ``for frame in view``) draw epoch ``epoch``'s order.

        As PyTorch's ``DistributedSampler.set_epoch``: random order is a new permutation every
        epoch, the same on every machine for the same (seed, epoch), so shards of one epoch agree.
        Each iteration that is not given an epoch advances it by one. Sequential order ignores it.

        Raises:
            ValidationError: ``epoch`` is not a whole number >= 0.
        """
        value = _positive_int("epoch", epoch, zero=True)
        if value is None:
            raise ValidationError("epoch must be a whole number >= 0, got None")
        with self._lock:
            self._epoch = value

    @property
    def epoch(self) -> int:
        """The epoch the next iteration draws (see :meth:`set_epoch`)."""
        return self._epoch

    def __iter__(self) -> Iterator[SingleFrame | FrameGroup]:
        """Iterate the frames as SingleFrame / FrameGroup objects (sharded and resumed as get_iterator).

        Raises:
            ValidationError: no queries, or no concrete pair.
        """
        return iter(self.get_iterator())

    def _one_pass(self, tree: dict[str, Any] | None, convert: Callable[[dict[str, Any]], Any]) -> list[Any]:
        if self._infinite and self._limit is None:
            raise ValidationError(
                f"DataView {preview(self._name)} iterates forever (infinite, no limit); set "
                "maximum_number_of_frames or iterate it with get_iterator()"
            )
        matched = self._match(set(), order=True)
        it: DataViewIterator[Any] = DataViewIterator(
            self, matched, self._plan(self._epoch), tree, 0, (1, 0), track=False, convert=convert
        )
        return list(it)

    def to_list(self) -> list[SingleFrame | FrameGroup]:
        """Return one whole pass (unsharded, from the start) as SingleFrame / FrameGroup objects.

        Random order is that of the current epoch (the epoch does not advance).

        Raises:
            ValidationError: the view is infinite without a limit, has no queries or no concrete pair.
        """
        return self._one_pass(None, _as_frame)

    def to_dict(self, projection: Sequence[str] | str | None = None) -> list[dict[str, Any]]:
        """Return one whole pass (unsharded, from the start) as frame dicts, optionally projected.

        Raises:
            ValidationError: a bad projection; the view is infinite without a limit, has no queries
                or no concrete pair.
        """
        return self._one_pass(_projection_tree(projection), _identity)

    def vector_search(
        self,
        reference_vector: Sequence[float],
        vector_field: str,
        number_of_neighbors: int = 50,
        fast: bool = False,
        similarity_function: str = "cosine",
        *,
        as_dict: bool = False,
        with_scores: bool = False,
        ids_only: bool = False,
    ) -> list[Any]:
        """Return the frames this view matches whose vector is nearest ``reference_vector``, nearest first.

        As ``DatasetVersion.vector_search``, over the frames of every rule of the view (the
        reference's frame browser honours the active filters the same way): each (dataset,
        version) pair's vectors are read once and kept, then only the matched frames are scored.
        Frames come as objects (``as_dict=True``: frame dicts, with mapping and enumeration
        applied); ``with_scores`` gives ``(frame, score)`` pairs, ``ids_only`` ``(frame id, score)``
        pairs (no frame is read).

        Raises:
            ValidationError: a bad argument, vectors of two lengths, a query of another length, no
                queries or no concrete pair; ``fast=True`` without faiss installed.
            NotFoundError: a dataset or version of the view was deleted.
        """
        path = vectors.field_path(vector_field)
        matched = self._match({"meta"}, order=False)
        key = (
            "view",
            tuple((p.version_id, str(p.entry.frames.get("manifest"))) for p in matched.pairs),
            json.dumps([q.to_dict() for q in self._queries], sort_keys=True),
            tuple(path),
        )
        merged, frame_numbers = vectors.cached_vectors(
            key, lambda: self._view_vectors(matched, path, vector_field)
        )
        where = f"DataView {preview(self._name)}: {vector_field}"
        picked, scores = vectors.search(
            key,
            vectors.Vectors(np.arange(len(merged), dtype=np.int64), merged),
            reference_vector,
            number_of_neighbors,
            similarity_function,
            fast,
            where,
        )
        chosen = frame_numbers[picked]
        if ids_only:
            ids = [
                matched.tables[int(matched.frame_pair[c])].column("id")[int(matched.frame_row[c])].as_py()
                for c in chosen.tolist()
            ]
            return list(zip(ids, scores.tolist(), strict=True))
        convert = _identity if as_dict else _as_frame
        out = [convert(d) for d in self._stream(matched, chosen, None)]
        return list(zip(out, scores.tolist(), strict=True)) if with_scores else out

    def _view_vectors(
        self, matched: _Matched, path: list[str], vector_field: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The matched frames' vectors as one matrix, and each row's matched frame number."""
        numbers: list[np.ndarray] = []
        matrices: list[np.ndarray] = []
        for p, pair in enumerate(matched.pairs):
            frame_numbers = np.flatnonzero(matched.frame_pair == p)
            rows = matched.frame_row[frame_numbers]
            table = matched.tables[p]

            def load(table: pa.Table = table) -> vectors.Vectors:
                ids = table.column("id").combine_chunks()
                return vectors.extract(table.column("meta"), path, ids)

            manifest = str(pair.entry.frames.get("manifest"))
            found: vectors.Vectors = vectors.cached_vectors(
                ("pair", pair.version_id, manifest, tuple(path)), load
            )
            have = np.isin(rows, found.rows)
            numbers.append(frame_numbers[have])
            matrices.append(found.matrix[np.searchsorted(found.rows, rows[have])])
        dims = {m.shape[1] for m in matrices if len(m)}
        if len(dims) > 1:
            raise ValidationError(
                f"DataView {preview(self._name)}: {vector_field} holds vectors of lengths {sorted(dims)} "
                "in different versions; vectors of one field have one length"
            )
        merged = np.concatenate([m for m in matrices if len(m)]) if dims else np.zeros((0, 0), np.float32)
        frame_numbers = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
        return merged, frame_numbers

    def prefetch_files(self, get_masks: bool = True, get_previews: bool = False, threads: int = 8) -> int:
        """Download the sources of one pass into the local cache, in parallel; return how many files.

        As the reference's ``prefetch_files``: afterwards ``get_local_source()`` finds them there.

        Raises:
            NotFoundError: a source does not exist.
            StorageError: a download failed.
        """
        uris: list[str] = []
        for frame in self.to_list():
            members = [frame] if isinstance(frame, SingleFrame) else list(frame.values())
            for m in members:
                uris.append(m.source or "")
                if get_previews and m.preview is not None:
                    uris.append(m.preview.uri)
                if get_masks:
                    uris.extend(mask.uri for mask in m.masks)
        wanted = sorted({u for u in uris if u})
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="hds-prefetch") as pool:
            list(pool.map(lambda u: SingleFrame(source=u).get_local_source(), wanted))
        return len(wanted)

    def read_plan(
        self,
        columns: Sequence[str] | None = None,
        *,
        num_workers: int | None = None,
        worker_index: int | None = None,
        epoch: int | None = None,
    ) -> ReadPlan:
        """Plan one pass of the view (unsharded, from the start) as read tasks for any worker.

        What needs the whole match (order, weights, seeded random order, clips, the limit, the
        shard given by ``num_workers``/``worker_index``) is computed here, on the matched ids; each
        task (:func:`hds_s3.index.plan.read_task`) reads one segment's picked rows, only
        ``columns`` (frame-index columns; ``id`` is always read), and adds ``dataset``, mapped
        labels and ``label_num`` on each ROI, and ``_pick``, the row's place in the sequence. See
        :mod:`hds_s3.query.viewplan`. Random order is that of ``epoch``, else of the view's
        current epoch, as :meth:`to_dict` (the epoch does not advance).

        Raises:
            ValidationError: a bad column, shard or epoch; the view is infinite without a limit,
                has no queries or no concrete pair.
            NotFoundError: a dataset or version of the view was deleted.
            CorruptObjectError: a segment is missing or damaged.
        """
        from hds_s3.query.viewplan import plan_view

        return plan_view(self, columns, num_workers=num_workers, worker_index=worker_index, epoch=epoch)

    def to_ray(
        self,
        columns: Sequence[str] | None = None,
        *,
        ordered: bool = True,
        num_workers: int | None = None,
        worker_index: int | None = None,
        epoch: int | None = None,
    ) -> Any:
        """One pass of the view as a ``ray.data.Dataset`` (``pip install 'hds_s3[ray]'``).

        The rows of :meth:`read_plan`'s tasks, one block per task, read by Ray workers; with
        ``ordered`` they are sorted into the view's order (a Ray sort on ``_pick``), else they come
        in whatever order the tasks finish. Uses the running Ray (``ray.init`` first for a cluster
        or a local Ray of your size; otherwise Ray starts a local one).

        Raises:
            ImportError: Ray Data is not installed.
            ValidationError, NotFoundError, CorruptObjectError: as :meth:`read_plan`.
        """
        try:
            from hds_s3.index.raysource import dataset
        except ImportError as exc:
            raise ImportError(f"DataView.to_ray needs Ray Data: pip install 'hds_s3[ray]' ({exc})") from exc
        plan = self.read_plan(columns, num_workers=num_workers, worker_index=worker_index, epoch=epoch)
        return dataset(plan, ordered=ordered)

    # --------------------------------------------------------------- storing

    def _document(self) -> dict[str, Any]:
        doc = dict(self._extra)
        doc.update(
            {
                "format_version": layout.FORMAT_VERSION,
                "kind": DATAVIEW_FORMAT,
                "id": self._id,
                "name": self._name,
                "description": self._description,
                "tags": list(self._tags),
                "status": self._status,
                "created": None if self._created is None else self._created // 1_000_000,
                "created_ns": self._created,
                "updated": now_ms(),
                "published": self._published,
                "queries": [q.to_dict() for q in self._queries],
                "mapping_rules": [r.to_dict() for r in self._mapping],
                "labels": dict(self._labels),
                "iteration": self.get_iteration_parameters(),
            }
        )
        return doc

    def _check_storable(self) -> None:
        if not any(q.dataset_id != WILDCARD and q.version_id != WILDCARD for q in self._queries):
            raise ValidationError(
                f"cannot store DataView {preview(self._name)}: no concrete (dataset, version) in its queries"
            )

    def store(self) -> str:
        """Save the view (create-only the first time, then compare-and-swap) and return its id.

        A published view is returned as is (it cannot have changed).

        Raises:
            ValidationError: the view names no concrete (dataset, version).
            ConflictError: someone else changed the stored view since it was loaded; load it again.
            InvalidStateError: it was published meanwhile.
            StorageError: the store failed.
        """
        if self._status == PUBLISHED and self._id is not None:
            return self._id
        self._check_storable()
        store = self.client.store
        if self._id is None:
            new_id = layout.new_id()
            self._id, self._created = new_id, time.time_ns()
            try:
                self._etag = store.put(
                    layout.dataview_doc_key(new_id), _dump(self._document()), if_none_match=True
                )
            except BaseException:
                self._id, self._created = None, None
                raise
        else:
            self._etag = self._replace(self._document())
        self._claim_name()
        return self._id

    def _replace(self, doc: dict[str, Any]) -> str:
        assert self._id is not None
        key = layout.dataview_doc_key(self._id)
        try:
            return self.client.store.put(key, _dump(doc), if_match=self._etag)
        except (ConflictError, NotFoundError):
            try:
                current, _ = _load(self.client, self._id)
            except DataViewNotFoundError:
                raise ConflictError(
                    f"DataView {preview(self._name)} ({self._id}) was deleted from the store"
                ) from None
            if current.get("status") == PUBLISHED:
                raise InvalidStateError(
                    f"DataView {preview(self._name)} ({self._id}) was published meanwhile; it is read-only"
                ) from None
            raise ConflictError(
                f"DataView {preview(self._name)} ({self._id}) was "
                "changed by someone else since it was loaded; "
                "load it again with DataView.get() and re-apply the change"
            ) from None

    def _claim_name(self) -> None:
        if self._name is None or self._id is None:
            return
        entry = json.dumps({"name": self._name, "dataview_id": self._id}).encode()
        try:
            self.client.store.put(layout.dataview_name_key(self._name, self._id), entry, if_none_match=True)
        except ConflictError:
            pass  # claimed by an earlier store()

    def publish(self) -> DataView:
        """Store the view if needed, then make it read-only (one compare-and-swap); return self.

        Raises:
            InvalidStateError: it is published already.
            ConflictError: someone else changed the stored view since it was loaded.
            ValidationError: the view names no concrete (dataset, version).
        """
        if self._status == PUBLISHED:
            raise InvalidStateError(f"DataView {preview(self._name)} ({self._id}) is published already")
        self.store()
        published = now_ms()
        doc = self._document()
        doc["status"], doc["published"] = PUBLISHED, published
        self._etag = self._replace(doc)
        self._status, self._published = PUBLISHED, published
        return self

    @classmethod
    def get(
        cls,
        dataview_id: str | None = None,
        dataview_name: str | None = None,
        *,
        client: Client | None = None,
    ) -> DataView:
        """Load a stored view by id, or by name (the most recent of that name; a warning if several).

        Raises:
            ValidationError: neither or both selectors, or a malformed one.
            DataViewNotFoundError: no such view (a ``NotFoundError`` and a ``ValueError``).
            CorruptObjectError: its document is damaged.
        """
        if (dataview_id is None) == (dataview_name is None):
            raise ValidationError("DataView.get takes exactly one of dataview_id or dataview_name")
        c = resolve(client)
        if dataview_id is not None:
            doc, etag = _load(c, check_id("dataview", dataview_id))
            return cls._from_document(doc, etag, c)
        assert dataview_name is not None
        prefix = layout.dataview_name_prefix(dataview_name)
        found: list[tuple[dict[str, Any], str]] = []
        for info in c.store.list(prefix):
            vid = layout.dataview_id_of_name_key(info.key)
            if vid is None:
                continue
            try:
                doc, etag = _load(c, vid)
            except DataViewNotFoundError:
                continue  # the view went away
            if doc.get("name") == dataview_name:
                found.append((doc, etag))
        if not found:
            raise DataViewNotFoundError(f"no DataView named {preview(dataview_name)} in {c.url}")
        found.sort(
            key=lambda d: (d[0].get("created_ns") or (d[0].get("created") or 0) * 1_000_000, d[0]["id"])
        )
        if len(found) > 1:
            warnings.warn(
                f"{len(found)} DataViews are named {preview(dataview_name)}; loading the most recent "
                f"({found[-1][0]['id']}); load by dataview_id to pick another",
                UserWarning,
                stacklevel=2,
            )
        doc, etag = found[-1]
        return cls._from_document(doc, etag, c)

    @classmethod
    def list_dataviews(
        cls,
        name_pattern: str | None = None,
        tags: Sequence[str] | None = None,
        *,
        client: Client | None = None,
    ) -> list[DataView]:
        """List the stored views, oldest first, filtered by a name regex and by tags.

        ``name_pattern`` must match the name; ``tags`` must all be present, and a tag written ``-x``
        excludes views tagged ``x``.

        A damaged document is left out with a warning naming its key (logger ``hds_s3``), so that
        one damaged view does not hide the others; :meth:`get` on it raises.

        Raises:
            ValidationError: ``name_pattern`` is not a valid regular expression.
            StorageError: the store failed.
        """
        c = resolve(client)
        pattern = stored.name_filter(name_pattern)
        wanted = check_tag_filter(tags)
        views = []
        for vid in stored.view_ids(c):
            try:
                doc, etag = _load(c, vid)
            except DataViewNotFoundError:
                continue  # deleted meanwhile
            except CorruptObjectError as exc:
                log.warning("DataView %s is left out of the list: %s", vid, exc)
                continue
            if stored.matches(doc, pattern, wanted):
                try:
                    views.append(cls._from_document(doc, etag, c))
                except CorruptObjectError as exc:
                    log.warning("DataView %s is left out of the list: %s", vid, exc)
        views.sort(key=lambda v: (v._created or 0, v._id or ""))
        return views

    def rename(self, name: str) -> DataView:
        """Rename this stored view (one compare-and-swap of its document) and return self.

        Afterwards :meth:`get` finds it by the new name and no longer by the old one.

        Raises:
            InvalidStateError: the view is not stored yet (use the ``name`` property and
                :meth:`store`), or it is published (read-only).
            ValidationError: a bad name.
            ConflictError: someone else changed the stored view since it was loaded; load it again.
            DataViewNotFoundError: it was deleted meanwhile.
        """
        if self._id is None:
            raise InvalidStateError(
                f"DataView {preview(self._name)} is not stored; "
                "set its name and call store() instead of rename()"
            )
        self._require_draft("rename")
        new = check_name("dataview", name)
        old = self._name
        if new == old:
            return self
        self._name = new
        try:
            self._etag = self._replace(self._document())
        except BaseException:
            self._name = old
            raise
        self._claim_name()
        if old is not None:
            self.client.store.delete(layout.dataview_name_key(old, self._id))
        return self

    def delete(self) -> None:
        """Delete this stored view (draft or published) from the store.

        The object keeps its definition and becomes unstored: :meth:`store` would save it again
        under a new id.

        Raises:
            InvalidStateError: the view is not stored.
            StorageError: the store failed (the view may then still be listed; delete it again).
        """
        if self._id is None:
            raise InvalidStateError(
                f"DataView {preview(self._name)} is not stored; there is nothing to delete"
            )
        stored.delete_view(self.client, self._id, self._name)
        self._id, self._etag, self._status, self._published = None, None, DRAFT, None

    def get_definition(self) -> dict[str, Any]:
        """The view as its stored document holds it (id, name, status, queries, mapping, labels, iteration).

        JSON-ready; ``created`` and ``published`` are epoch milliseconds (None until then).
        """
        doc = self._document()
        doc.pop("created_ns", None)
        doc.pop("updated", None)
        return doc

    @classmethod
    def _from_document(cls, doc: dict[str, Any], etag: str, client: Client) -> DataView:
        where = f"DataView document {doc.get('id')}"
        try:
            iteration = doc.get("iteration") or {}
            view = cls(
                name=doc.get("name"),
                description=doc.get("description") or "",
                iteration_order=iteration.get("order", "sequential"),
                iteration_infinite=bool(iteration.get("infinite", False)),
                tags=doc.get("tags") or (),
                iteration_random_seed=iteration.get("random_seed"),
                iteration_limit=iteration.get("limit"),
                clip_length=iteration.get("clip_length"),
                min_sequence=iteration.get("min_sequence"),
                jump_time=iteration.get("jump_time"),
                client=client,
            )
            view._queries = [DataViewQuery.from_dict(q) for q in doc.get("queries") or ()]
            view._mapping = [MappingRule.from_dict(r) for r in doc.get("mapping_rules") or ()]
            view.set_labels(doc.get("labels") or {})
        except (ValidationError, TypeError, AttributeError) as exc:
            raise CorruptObjectError(f"{where} cannot be read: {exc}") from exc
        view._id = doc["id"]
        view._etag = etag
        view._status = PUBLISHED if doc.get("status") == PUBLISHED else DRAFT
        view._created = doc.get("created_ns") or (doc.get("created") or 0) * 1_000_000
        view._published = doc.get("published")
        known = {
            "format_version",
            "kind",
            "id",
            "name",
            "description",
            "tags",
            "status",
            "created",
            "created_ns",
            "updated",
            "published",
            "queries",
            "mapping_rules",
            "labels",
            "iteration",
        }
        view._extra = {k: v for k, v in doc.items() if k not in known}
        return view

    # --------------------------------------------------------------- pickling (DataLoader workers)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_tables", "_lock", "_client")}
        state["_client_url"] = self._client.url if self._client is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        url = state.pop("_client_url", None)
        self.__dict__.update(state)
        self._tables = {}
        self._lock = threading.Lock()
        if url is None:
            self._client = None
        else:
            from hds_s3.client import connect

            self._client = connect(url)

    def __repr__(self) -> str:
        return (
            f"DataView(name={self._name!r}, id={self._id!r}, status={self._status!r}, "
            f"queries={len(self._queries)})"
        )


DataView.RoiQuery = RoiQuery
DataView.IterationOrder = IterationOrder


def _flag(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be True or False, got {preview(value)}")
    return value


def _dump(doc: Mapping[str, Any]) -> bytes:
    return dumps_with_digest(doc)


def _load(client: Client, dataview_id: str) -> tuple[dict[str, Any], str]:
    key = layout.dataview_doc_key(dataview_id)
    try:
        data, etag = client.store.get(key)
    except NotFoundError:
        raise DataViewNotFoundError(f"no DataView with id {dataview_id} in {client.url}") from None
    doc = load_json(data, key)  # CorruptObjectError for what is not JSON hds_s3 writes
    if not isinstance(doc, dict) or doc.get("kind") != DATAVIEW_FORMAT or doc.get("id") != dataview_id:
        raise CorruptObjectError(f"{key}: not a DataView document of this id")
    check_digest(doc, key, required=False)
    doc.pop(DIGEST, None)
    if doc.get("format_version") != layout.FORMAT_VERSION:
        raise CorruptObjectError(
            f"{key}: DataView format {preview(doc.get('format_version'))} is not one this hds_s3 reads; "
            "upgrade hds_s3"
        )
    return doc, etag


__all__ = [
    "DEFAULT_RANDOM_SEED",
    "DataView",
    "DataViewIterator",
    "DataViewNotFoundError",
    "DataViewQuery",
    "IterationOrder",
    "MappingRule",
    "RoiQuery",
    "detect_shards",
]
