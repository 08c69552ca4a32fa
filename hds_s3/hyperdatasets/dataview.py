"""The new API's ``DataView`` and ``HyperDatasetQuery``, over hds_s3's DataView.

Queries name datasets and versions by id (or ``'*'``), as the reference's; iteration yields
:class:`~hds_s3.hyperdatasets.entries.DataEntry` objects (``DataEntryImage`` for image frames, or
the subclass an entry was written with). Everything else (Lucene queries checked when added,
ROI label rules, weights, label mapping and enumeration, random order per epoch, worker sharding,
read-ahead in a background thread, storing and loading by id or name) is hds_s3's
:class:`hds_s3.query.dataview.DataView`, which :attr:`DataView.view` gives. Where the reference's
client is buggy, this one is not: ``set_iteration_parameters`` may change the order and the seed
too, and a DataLoader worker's shard comes from its worker info when not given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from hds_s3.client import Client, resolve
from hds_s3.errors import NotFoundError, ValidationError
from hds_s3.hyperdatasets.core import HyperDatasetManagement, HyperDatasetNotFoundError
from hds_s3.hyperdatasets.entries import DataEntry
from hds_s3.model.names import preview
from hds_s3.query import dataview as legacy

WILDCARD = "*"
_UNSET: Any = object()
FILTER_BY_ROI = ("label_rules", "disabled", "no_rois")


def _rule_of(rule: object) -> legacy.RoiQuery:
    """A label rule (a dict or an object with ``label``, ``count_range``, ``conf_range``, ``must_not``)."""
    get = rule.get if isinstance(rule, Mapping) else (lambda k, d=None: getattr(rule, k, d))
    label = get("label")
    if label is None:
        raise ValidationError(f"a label rule needs a label (a Lucene query or a label), got {preview(rule)}")
    return legacy.RoiQuery(
        label, bool(get("must_not", False)), get("count_range", None), get("conf_range", None)
    )


class HyperDatasetQuery:
    """One filter rule: a dataset and version (ids or ``'*'``), Lucene queries, ROI rules and a weight."""

    def __init__(
        self,
        project_id: str | None = WILDCARD,
        dataset_id: str | None = WILDCARD,
        version_id: str | None = WILDCARD,
        source_query: str | None = None,
        frame_query: str | None = None,
        weight: float = 1.0,
        filter_by_roi: str | None = None,
        label_rules: Sequence[Any] | None = None,
        *,
        client: Client | None = None,
    ) -> None:
        """Check the rule: its queries parse, its dataset and version exist.

        Raises:
            ValidationError: a malformed Lucene query (with a caret under the bad token), a bad
                weight, ``filter_by_roi`` or label rule, or a version without its dataset.
            HyperDatasetNotFoundError: the dataset or version does not exist (a ``ValueError``).
        """
        self._project_id = project_id or WILDCARD
        self._dataset_id = dataset_id or WILDCARD
        self._version_id = version_id or WILDCARD
        if self._dataset_id == WILDCARD and self._version_id != WILDCARD:
            raise ValidationError(f"version_id {self._version_id!r} needs its dataset_id")
        if filter_by_roi is not None and filter_by_roi not in FILTER_BY_ROI:
            raise ValidationError(
                f"filter_by_roi is one of {', '.join(FILTER_BY_ROI)}, got {preview(filter_by_roi)}"
            )
        self._source_query = source_query
        self._frame_query = frame_query
        self._weight = weight
        self._filter_by_roi = filter_by_roi
        self._label_rules = list(label_rules or [])
        self._rois = tuple(_rule_of(r) for r in self._label_rules)
        compiled = legacy.DataViewQuery(
            WILDCARD,
            WILDCARD,
            roi_queries=self._rois,
            frame_query=frame_query,
            source_query=source_query,
            weight=legacy._weight(weight),
            filter_by_roi=filter_by_roi or "label_rules",
        )
        compiled.filter  # noqa: B018 - compile: a bad query fails here
        if self._dataset_id != WILDCARD and not HyperDatasetManagement.exists(
            dataset_id=self._dataset_id,
            version_id=None if self._version_id == WILDCARD else self._version_id,
            client=client,
        ):
            raise HyperDatasetNotFoundError(
                "HyperDataset query references non-existent dataset/version: "
                f"dataset_id={self._dataset_id} version_id={self._version_id}"
            )

    project_id = property(lambda self: self._project_id, doc="The project (kept, not used to filter).")
    dataset_id = property(lambda self: self._dataset_id, doc="The dataset id, or '*'.")
    version_id = property(lambda self: self._version_id, doc="The version id, or '*'.")
    source_query = property(lambda self: self._source_query, doc="The Lucene query on sources.")
    frame_query = property(lambda self: self._frame_query, doc="The Lucene query on frames.")
    weight = property(lambda self: self._weight, doc="The rule's weight.")
    filter_by_roi = property(lambda self: self._filter_by_roi, doc="label_rules, disabled or no_rois.")
    label_rules = property(lambda self: list(self._label_rules), doc="The ROI label rules.")

    def __repr__(self) -> str:
        return (
            f"HyperDatasetQuery(dataset_id={self._dataset_id!r}, version_id={self._version_id!r}, "
            f"frame_query={self._frame_query!r}, weight={self._weight!r})"
        )


class DataView:
    """A query over datasets and versions, iterated as data entries (see the module docstring)."""

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        iteration_order: str = "sequential",
        iteration_infinite: bool = False,
        iteration_random_seed: int | None = None,
        iteration_limit: int | None = None,
        auto_connect_with_task: bool = True,
        project_name: str | None = None,
        *,
        client: Client | None = None,
    ) -> None:
        """An empty view (``auto_connect_with_task`` and ``project_name`` concern ClearML tasks; kept).

        Raises:
            ValidationError: a bad name, order, seed or limit.
        """
        self._client = client
        self.view = legacy.DataView(
            name=name,
            description=description,
            iteration_order=iteration_order,
            iteration_infinite=iteration_infinite,
            tags=tags,
            iteration_random_seed=iteration_random_seed,
            iteration_limit=iteration_limit,
            client=client,
        )
        self._queries: list[HyperDatasetQuery] = []
        self._synthetic_epoch_limit: int | None = None

    @property
    def id(self) -> str | None:
        """The stored view's id (None until :meth:`store`)."""
        return self.view.id

    @property
    def name(self) -> str | None:
        """The view's name."""
        return self.view.name

    @name.setter
    def name(self, value: str) -> None:
        self.view.name = value

    # -- queries

    def add_query(
        self,
        *,
        project_id: str = WILDCARD,
        dataset_id: str = WILDCARD,
        version_id: str = WILDCARD,
        source_query: str | None = None,
        frame_query: str | None = None,
        weight: float = 1.0,
        filter_by_roi: str | None = None,
        label_rules: Sequence[Any] | None = None,
    ) -> HyperDatasetQuery:
        """Add one rule (rules are OR-ed) and return it.

        Raises:
            ValidationError: as :class:`HyperDatasetQuery`.
            HyperDatasetNotFoundError: the dataset or version does not exist.
        """
        query = HyperDatasetQuery(
            project_id,
            dataset_id,
            version_id,
            source_query,
            frame_query,
            weight,
            filter_by_roi,
            label_rules,
            client=self._client,
        )
        self.add_queries(query)
        return query

    def add_queries(self, queries: HyperDatasetQuery | Iterable[HyperDatasetQuery]) -> None:
        """Add one rule or several.

        Raises:
            ValidationError: an item is not a HyperDatasetQuery.
        """
        items = [queries] if isinstance(queries, HyperDatasetQuery) else list(queries)
        for q in items:
            if not isinstance(q, HyperDatasetQuery):
                raise ValidationError(f"DataView expects HyperDatasetQuery instances, got {preview(q)}")
        for q in items:
            ds = None if q.dataset_id == WILDCARD else q.dataset_id
            ver = None if q.version_id == WILDCARD and ds is None else q.version_id
            if q._rois:
                self.view.add_multi_query(
                    dataset_id=ds,
                    version_id=ver,
                    roi_queries=list(q._rois),
                    frame_query=q.frame_query,
                    source_query=q.source_query,
                    weight=q.weight,
                )
            else:
                self.view.add_query(
                    dataset_id=ds,
                    version_id=ver,
                    frame_query=q.frame_query,
                    source_query=q.source_query,
                    weight=q.weight,
                    filter_by_roi=q.filter_by_roi,
                )
            self._queries.append(q)
        self._synthetic_epoch_limit = None

    def set_queries(self, queries: Iterable[HyperDatasetQuery] | None) -> None:
        """Replace every rule (None or [] clears them).

        Raises:
            ValidationError: an item is not a HyperDatasetQuery.
        """
        items = list(queries or [])
        self.view.set_queries(None)
        self._queries = []
        if items:
            self.add_queries(items)

    def get_queries(self) -> list[HyperDatasetQuery]:
        """The rules, in the order added."""
        return list(self._queries)

    # -- labels

    def set_labels(self, label_dict: Mapping[str, int]) -> None:
        """Set the label enumeration ``{label: int}`` (``{}`` clears).

        Raises:
            ValidationError: not a dict of label to int.
        """
        self.view.set_labels(label_dict)

    def get_labels(self) -> dict[str, int]:
        """The label enumeration."""
        return self.view.get_labels()

    def add_mapping_rule(
        self,
        from_labels: str | Sequence[str],
        to_label: str,
        dataset_id: str | None = None,
        dataset_name: str | None = None,
        version_id: str | None = None,
        version_name: str | None = None,
        project_name: str | None = None,
    ) -> legacy.MappingRule:
        """Map ROIs carrying all ``from_labels`` to ``to_label`` after matching (default scope: every pair).

        Raises:
            ValidationError: empty or bad labels, or conflicting selectors.
            NotFoundError: the dataset or version does not exist.
        """
        if dataset_id == WILDCARD:
            dataset_id = None
        return self.view.add_mapping_rule(
            from_labels, to_label, dataset_name, version_name, dataset_id=dataset_id, version_id=version_id
        )

    def get_mapping_rules(self) -> list[legacy.MappingRule]:
        """The mapping rules."""
        return self.view.get_mapping_rules()

    # -- iteration

    def get_iteration_parameters(self) -> dict[str, Any]:
        """``{"order", "infinite", "limit", "random_seed"}``."""
        params = self.view.get_iteration_parameters()
        return {k: params[k] for k in ("order", "infinite", "limit", "random_seed")}

    def set_iteration_parameters(
        self,
        *,
        infinite: bool | None = None,
        limit: int | None = _UNSET,
        order: str | None = None,
        random_seed: int | None = None,
    ) -> None:
        """Change ``infinite``, ``limit`` (None removes it) and ``order`` and ``random_seed``.

        The reference changes only the first two after construction.

        Raises:
            ValidationError: a bad value.
        """
        if limit is None:
            self.view.clear_iteration_limit()
        self.view.set_iteration_parameters(
            order=order, infinite=infinite, random_seed=random_seed, limit=None if limit is _UNSET else limit
        )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of random order the next iterator draws (as ``DistributedSampler.set_epoch``).

        Raises:
            ValidationError: not a whole number >= 0.
        """
        self.view.set_epoch(epoch)

    def _synthetic_limit(self) -> int | None:
        """The reference's synthetic epoch: enough frames that the largest rule is seen once at its share."""
        if len(self._queries) <= 1:
            return None
        counts = [r["count"] for r in self.view.get_count(per_rule=True)["rules"]]
        weights = [float(q.weight) for q in self._queries]
        live = [(c, w) for c, w in zip(counts, weights, strict=True) if c > 0]
        if not live:
            return None
        total = sum(w for _, w in live)
        biggest, weight = max(live, key=lambda cw: cw[0])
        return int(math.ceil(biggest / (weight / total)))

    def get_iterator(
        self,
        projection: Sequence[str] | None = None,
        query_cache_size: int | None = None,
        query_queue_depth: int = 5,
        allow_repetition: bool = False,
        auto_synthetic_epoch_limit: bool | None = None,
        node_id: int | None = None,
        worker_index: int | None = None,
        num_workers: int | None = None,
        cache_in_memory: bool = False,
    ) -> Iterator[Any]:
        """Iterate the view as data entries, read ahead by a background thread.

        ``query_cache_size`` entries are read at a time, at most ``query_queue_depth`` batches
        ahead; ``cache_in_memory`` serves a finished pass again from memory. With a ``projection``
        the items are frame dicts of those fields (a part of a frame is no entry).
        ``allow_repetition`` (or ``auto_synthetic_epoch_limit``) makes the view infinite with the
        reference's synthetic epoch as its limit, so weighted rules repeat frames to meet their
        shares. Sharding: ``num_workers`` / ``worker_index`` (``node_id`` for the index), else
        detected (``WORLD_SIZE``/``RANK`` and the DataLoader worker).

        Raises:
            ValidationError: no queries, no concrete (dataset, version), or a bad option.
        """
        if allow_repetition or auto_synthetic_epoch_limit:
            limit = self._synthetic_limit()
            self._synthetic_epoch_limit = limit
            if limit is not None:
                self.view.set_iteration_parameters(infinite=True, limit=limit)
        it = self.view.get_iterator(
            projection,
            num_workers,
            worker_index,
            as_dict=True,
            query_cache_size=query_cache_size,
            query_queue_depth=query_queue_depth,
            cache_in_memory=cache_in_memory,
            node_id=node_id,
        )
        if projection is not None:
            return iter(it)
        return (DataEntry.from_api_object(frame) for frame in it)

    def __iter__(self) -> Iterator[Any]:
        return self.get_iterator()

    def get_count(self) -> int:
        """The number of frames the view matches.

        Raises:
            ValidationError: no queries, or no concrete (dataset, version).
        """
        return self.view.get_count()

    def __len__(self) -> int:
        limit = self.get_iteration_parameters()["limit"]
        if limit is not None:
            return int(limit)
        if self._synthetic_epoch_limit is not None:
            return self._synthetic_epoch_limit
        return self.get_count()

    def vector_search(
        self,
        reference_vector: Sequence[float],
        vector_field: str,
        number_of_neighbors: int = 50,
        fast: bool = False,
        similarity_function: str = "cosine",
    ) -> list[DataEntry]:
        """The entries the view matches nearest ``reference_vector``, nearest first.

        As ``HyperDataset.vector_search``, over the frames the view's rules match.

        Raises:
            ValidationError: a bad argument, no queries or no concrete pair.
        """
        found = self.view.vector_search(
            reference_vector, vector_field, number_of_neighbors, fast, similarity_function, as_dict=True
        )
        return [DataEntry.from_api_object(f) for f in found]

    def prefetch_local_sources(
        self,
        num_workers: int | None = None,
        wait: bool = True,
        query_cache_size: int | None = None,
        get_previews: bool = False,
        get_masks: bool = True,
        force_download: bool = False,
    ) -> int:
        """Download the view's sources (and masks, and previews if asked) into the local cache; how many.

        Raises:
            NotFoundError: a source does not exist.
            StorageError: a download failed.
        """
        return self.view.prefetch_files(
            get_masks=get_masks, get_previews=get_previews, threads=num_workers or 8
        )

    # -- storing

    def store(self, project_name: str | None = None) -> str:
        """Store the view (see ``hds_s3.query.dataview.DataView.store``); return its id.

        Raises:
            ValidationError: no concrete (dataset, version) among the rules.
        """
        return self.view.store()

    @classmethod
    def get(
        cls, dataview_id: str | None = None, dataview_name: str | None = None, *, client: Client | None = None
    ) -> DataView:
        """Load a stored view by id or name (the most recent of that name).

        Raises:
            ValidationError: neither or both selectors.
            DataViewNotFoundError: no such view (a ``ValueError`` too).
        """
        c = resolve(client)
        stored = legacy.DataView.get(dataview_id, dataview_name, client=c)
        out = cls.__new__(cls)
        out._client = c
        out.view = stored
        out._synthetic_epoch_limit = None
        out._queries = []
        for q in stored.get_queries():
            try:
                out._queries.append(
                    HyperDatasetQuery(
                        WILDCARD,
                        q.dataset_id,
                        q.version_id,
                        q.source_query,
                        q.frame_query,
                        q.weight,
                        q.filter_by_roi,
                        [r.to_dict() for r in q.roi_queries],
                        client=c,
                    )
                )
            except NotFoundError:
                continue  # its dataset went away; iterating says so
        return out

    def __repr__(self) -> str:
        return f"DataView(name={self.name!r}, id={self.id!r}, queries={len(self._queries)})"


__all__ = ["DataView", "HyperDatasetQuery"]
