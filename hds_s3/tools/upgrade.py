"""Converting a store of format 1 to format 2 in place (``hds upgrade``).

Format 1 kept each dataset's whole version tree in its ``dataset.json``; format 2 keeps a log of
commits with one record per version (:mod:`hds_s3.format.log`). Frames (manifests and segments),
name claims and DataViews are the same in both formats and are not touched.

Each dataset is converted on its own, crash-safe: its format-2 objects are written first (the
statistics of its published versions, a checkpoint of its whole tree at position 0, every version's
record and name), while ``dataset.json`` still holds the format-1 document, so nothing reads them;
then one compare-and-swap replaces that document by the format-2 head (the commit point). A crash
before it leaves the dataset in format 1 with unreferenced objects that the next run writes again
(they are a function of the document alone); after it, the dataset is in format 2 and the next run
skips it. When every dataset is converted, the store marker is moved to format 2 (another
compare-and-swap), and writes are allowed again.

Run it when no hds_s3 older than format 2 writes to the store: those clients do not know format 2.
Clients of this version refuse writes until the marker says 2, and read either format meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from hds_s3.client import Client, resolve
from hds_s3.errors import ConflictError, CorruptObjectError, NotFoundError
from hds_s3.format import layout
from hds_s3.format.catalog import marker_bytes, marker_format
from hds_s3.format.docs import DatasetDoc, parse_dataset_doc, whole_aggregates
from hds_s3.format.records import (
    Checkpoint,
    Head,
    NameEntry,
    document_format,
    dump_checkpoint,
    dump_head,
    dump_name,
    dump_record,
    dump_stats,
)
from hds_s3.format.tree import COUNTED
from hds_s3.store.base import ObjectStore

log = logging.getLogger(__name__)

_THREADS = 16


@dataclass(frozen=True)
class UpgradeReport:
    """What :func:`upgrade` did (or, in a dry run, would do).

    Attributes:
        store: the store's URL.
        dry_run: nothing was written.
        converted: names of the datasets converted (or to convert) to format 2.
        already: how many datasets were in format 2 already.
        versions: versions of the converted datasets.
        objects: objects written (or to write), besides the heads.
        marker: the store marker's format before, and after.
    """

    store: str
    dry_run: bool
    converted: tuple[str, ...] = ()
    already: int = 0
    versions: int = 0
    objects: int = 0
    marker: tuple[int | None, int | None] = (None, None)
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def done(self) -> bool:
        """True when the store is (or, in a dry run, would be) of format 2 throughout."""
        return not self.problems and self.marker[1] in (None, layout.STORE_FORMAT)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``hds upgrade --json`` prints)."""
        return {
            "store": self.store,
            "dry_run": self.dry_run,
            "converted": list(self.converted),
            "already": self.already,
            "versions": self.versions,
            "objects": self.objects,
            "marker": {"before": self.marker[0], "after": self.marker[1]},
            "problems": list(self.problems),
            "done": self.done,
        }

    def summary(self) -> str:
        """A human summary of the report."""
        verb = "would convert" if self.dry_run else "converted"
        lines = [
            f"upgrade {self.store}: {verb} {len(self.converted)} datasets ({self.versions} versions, "
            f"{self.objects} objects written) to format {layout.STORE_FORMAT}; {self.already} already were"
        ]
        lines += [f"  {name}" for name in self.converted[:20]]
        if len(self.converted) > 20:
            lines.append(f"  ... and {len(self.converted) - 20} more")
        before, after = self.marker
        lines.append(f"store marker: format {before} -> {after}")
        lines += [f"problem: {p}" for p in self.problems]
        if self.dry_run:
            lines.append("dry run: nothing was written; run without --dry-run to convert")
        return "\n".join(lines)


def _counts(stats: dict[str, Any] | None) -> dict[str, int] | None:
    if stats is None:
        return None
    return {k: stats[k] for k in COUNTED if isinstance(stats.get(k), int) and not isinstance(stats[k], bool)}


def convert_dataset(store: ObjectStore, doc: DatasetDoc, etag: str) -> int:
    """Convert one dataset of format 1 (its document ``doc``, read with ``etag``); return objects written.

    Raises:
        ConflictError: the document changed since it was read (nothing of it was converted).
        StorageError: the store failed; the dataset is still of format 1, a repeat converts it.
    """
    written = 0
    for ver in doc.versions:
        if not ver.is_draft and ver.stats is not None:
            try:
                store.put(layout.stats_key(doc.id, ver.id), dump_stats(ver.id, ver.stats), if_none_match=True)
                written += 1
            except ConflictError:
                pass  # written by an earlier run: the same statistics
    records = tuple(replace(v, stats=None, seq=0, counts=_counts(v.stats)) for v in doc.versions)
    agg = whole_aggregates({v.id: v for v in records})
    head = Head(
        id=doc.id,
        name=doc.name,
        created=doc.created,
        updated=doc.updated,
        seq=0,
        checkpoint=0,
        description=doc.description,
        project=doc.project,
        tags=doc.tags,
        metadata=doc.metadata,
        deleted=doc.deleted,
        agg=agg,
        extra=dict(doc.extra),
    )
    store.put(layout.checkpoint_key(doc.id, 0), dump_checkpoint(Checkpoint(head, records)))
    written += 1
    writes = [(layout.record_key(doc.id, v.id), dump_record(doc.id, v)) for v in records]
    writes += [
        (layout.version_name_key(doc.id, v.name), dump_name(NameEntry(name=v.name, version_id=v.id, seq=0)))
        for v in records
    ]
    if len(writes) > 1:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(lambda kv: store.put(kv[0], kv[1]), writes))
    else:
        for key, data in writes:
            store.put(key, data)
    written += len(writes)
    store.put(layout.dataset_doc_key(doc.id), dump_head(head), if_match=etag)  # the commit point
    return written


def upgrade(
    client: Client | None = None,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> UpgradeReport:
    """Convert the store of ``client`` (default: the default client) to format 2, in place.

    Idempotent: datasets in format 2 already are skipped, and a run interrupted at any request is
    completed by the next one. ``progress(done, total, name)`` is called after each dataset.

    Raises:
        CorruptObjectError: the store marker names a format this hds_s3 does not know.
        StorageError: the store failed; what was converted stays converted, a repeat goes on.
    """
    c = resolve(client)
    store = c.store
    try:
        marker_data, marker_etag = store.get(layout.STORE_MARKER)
        before: int | None = marker_format(marker_data, layout.STORE_MARKER)
    except NotFoundError:
        marker_etag, before = "", None
    dataset_ids = [
        parts.dataset_id
        for info in store.list(layout.DATASETS_PREFIX)
        if (parts := layout.parse_key(info.key)) is not None and parts.kind == "dataset" and parts.dataset_id
    ]
    converted: list[str] = []
    problems: list[str] = []
    already = versions = objects = 0
    for i, dataset_id in enumerate(dataset_ids):
        key = layout.dataset_doc_key(dataset_id)
        name = dataset_id
        for _ in range(10):  # an older client changing the document meanwhile: read it again
            try:
                data, etag = store.get(key)
            except NotFoundError:
                break  # removed meanwhile
            try:
                if document_format(data, key) == layout.STORE_FORMAT:
                    already += 1
                    break
                doc = parse_dataset_doc(data, key)
            except CorruptObjectError as exc:
                problems.append(f"{key}: not converted, it is damaged ({exc}); hds fsck tells more")
                break
            name = doc.name
            if dry_run:
                converted.append(doc.name)
                versions += len(doc.versions)
                objects += 1 + 2 * len(doc.versions) + sum(1 for v in doc.versions if v.stats is not None)
                break
            try:
                objects += convert_dataset(store, doc, etag)
            except ConflictError:
                continue
            converted.append(doc.name)
            versions += len(doc.versions)
            break
        else:
            problems.append(f"{key}: kept changing while it was converted; run hds upgrade again")
        if progress is not None:
            progress(i + 1, len(dataset_ids), name)
    after = before
    if not dry_run and not problems:
        after = _move_marker(store, before, marker_etag)
    elif dry_run and not problems:
        after = layout.STORE_FORMAT if dataset_ids or before is not None else None
    return UpgradeReport(
        store=store.url,
        dry_run=dry_run,
        converted=tuple(converted),
        already=already,
        versions=versions,
        objects=objects,
        marker=(before, after),
        problems=tuple(problems),
    )


def _move_marker(store: ObjectStore, before: int | None, etag: str) -> int | None:
    """Point the store marker at format 2 (from format 1, or none at all in a store with datasets).

    Raises:
        StorageError: the store failed; a repeat moves it.
    """
    if before == layout.STORE_FORMAT:
        return before
    data = marker_bytes(layout.STORE_FORMAT)
    try:
        if before is None:
            store.put(layout.STORE_MARKER, data, if_none_match=True)
        else:
            store.put(layout.STORE_MARKER, data, if_match=etag)
    except (ConflictError, NotFoundError):
        current, _ = store.get(layout.STORE_MARKER)  # another upgrade moved it first
        return marker_format(current, layout.STORE_MARKER)
    return layout.STORE_FORMAT


__all__ = ["UpgradeReport", "convert_dataset", "upgrade"]
