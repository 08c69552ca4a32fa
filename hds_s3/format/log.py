"""Reading store format 2: a dataset's head, the log entries after it, its records, its whole tree.

A dataset of format 2 keeps its history as a log of entries ``log/<seq>.json`` (created by
:mod:`hds_s3.format.commit`, one per change). What the entries say is also kept where a reader finds
it without reading the log (*materialised*): each version's record (``tree/<id>.json``), the
version-name index (``names/<enc(name)>.json``) and the head (``dataset.json``: the dataset's fields,
the tree's aggregates and the position ``seq`` up to which every entry is materialised). A reader
needs the head, the entries after it (usually none: one GET that finds nothing) and the records it
asks for: a few small objects, whatever the tree's size. Listing the whole tree reads the newest
checkpoint (``checkpoints/<seq>.json``: the tree folded up to an entry) and the entries after it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hds_s3.errors import CorruptObjectError, NotFoundError, ValidationError
from hds_s3.format import layout
from hds_s3.format.docs import Aggregates, DatasetDoc, VersionEntry, parse_dataset_doc
from hds_s3.format.records import (
    Head,
    LogEntry,
    apply_to_head,
    document_format,
    parse_checkpoint,
    parse_entry,
    parse_head,
    parse_name,
    parse_record,
    parse_stats,
    tree_of,
)
from hds_s3.store.base import ObjectStore

T = TypeVar("T")

_ID = re.compile(r"[0-9a-f]{32}")

#: A reader follows at most this many entries past the head in one read (damage beyond that).
MAX_PENDING = 100_000
_FETCH_THREADS = 16


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class LogState:
    """A format-2 dataset as of log position :attr:`seq`: its head and the entries after it."""

    head: Head
    head_etag: str
    pending: tuple[LogEntry, ...] = ()

    @property
    def seq(self) -> int:
        """The newest entry this state includes."""
        return self.pending[-1].seq if self.pending else self.head.seq

    @property
    def agg(self) -> Aggregates:
        """The aggregates as of :attr:`seq`."""
        return self.pending[-1].agg if self.pending else self.head.agg

    def folded_head(self) -> Head:
        """The head with every pending entry applied (its seq is :attr:`seq`)."""
        head = self.head
        for entry in self.pending:
            head = apply_to_head(head, entry)
        return head


def read_head(store: ObjectStore, dataset_id: str) -> tuple[Head, str] | tuple[None, bytes]:
    """The format-2 head of a dataset and its etag, or ``(None, bytes)`` for a format-1 document.

    Raises:
        NotFoundError: no such dataset document.
        CorruptObjectError: it is damaged.
        StorageError: the store failed.
    """
    key = layout.dataset_doc_key(dataset_id)
    data, etag = store.get(key)
    if document_format(data, key) != layout.STORE_FORMAT:
        return None, data
    head = parse_head(data, key)
    if head.id != dataset_id:
        raise CorruptObjectError(f"{key}: the head names dataset {head.id}, not {dataset_id}; it is damaged")
    return head, etag


def read_entry(store: ObjectStore, dataset_id: str, seq: int) -> LogEntry:
    """Read one log entry.

    Raises:
        NotFoundError: there is no entry ``seq`` (yet, or any more).
        CorruptObjectError: it is damaged (or says another number).
        StorageError: the store failed.
    """
    key = layout.log_key(dataset_id, seq)
    data, _ = store.get(key)
    entry = parse_entry(data, key)
    if entry.seq != seq:
        raise CorruptObjectError(f"{key}: the entry says it is number {entry.seq}; it is damaged")
    return entry


def follow(store: ObjectStore, dataset_id: str, head: Head, etag: str) -> LogState:
    """The state after ``head``: the head and every entry created after it, read one by one.

    Raises:
        CorruptObjectError: an entry is damaged, or the log runs on past :data:`MAX_PENDING`.
        StorageError: the store failed.
    """
    pending: list[LogEntry] = []
    seq = head.seq + 1
    while True:
        try:
            pending.append(read_entry(store, dataset_id, seq))
        except NotFoundError:
            break
        seq += 1
        if len(pending) > MAX_PENDING:
            raise CorruptObjectError(
                f"{layout.log_prefix(dataset_id)}: more than {MAX_PENDING} entries after the head; the "
                "head is damaged (hds fsck tells more)"
            )
    return LogState(head, etag, tuple(pending))


def read_dataset_doc(store: ObjectStore, dataset_id: str) -> tuple[DatasetDoc, str]:
    """Read a dataset document of store format 1 (the whole tree) and its etag.

    Raises:
        NotFoundError: the document does not exist.
        CorruptObjectError: it cannot be parsed as a format-1 document.
        StorageError: the store failed.
    """
    key = layout.dataset_doc_key(dataset_id)
    data, etag = store.get(key)
    return parse_dataset_doc(data, key), etag


_prefetcher: tuple[int, ThreadPoolExecutor] | None = None
_prefetcher_lock = threading.Lock()


def _prefetch_pool() -> ThreadPoolExecutor:
    """The pool of this process for reads issued ahead of need.

    A forked child makes its own: the parent's threads did not come with it.
    """
    global _prefetcher
    with _prefetcher_lock:
        if _prefetcher is None or _prefetcher[0] != os.getpid():
            _prefetcher = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="hds-prefetch"))
        return _prefetcher[1]


def _get_or_none(store: ObjectStore, key: str) -> tuple[bytes, str] | None:
    try:
        return store.get(key)
    except NotFoundError:
        return None


def read_tree(store: ObjectStore, dataset_id: str, *, version_id: str | None = None) -> LazyTree | DatasetDoc:
    """The newest state of a dataset as a :class:`LazyTree` (format 2) or its whole document (format 1).

    Given ``version_id``, that version's record is fetched while the log is followed past the head
    (two requests at once rather than one after the other: on S3 a round trip less to open a
    version). Taking the record before the look past the head gives what reading it after would: an
    entry found there overrides the record (:meth:`LazyTree.version`), and a record newer than the
    view is taken (or refused by a strict view) as when it is read later.

    Raises:
        NotFoundError: no such dataset document.
        CorruptObjectError: it is damaged.
        StorageError: the store failed.
    """
    got = _head_or_document(store, dataset_id)
    if isinstance(got, DatasetDoc):
        return got
    if version_id is None or not _ID.fullmatch(version_id):
        return LazyTree(store, follow(store, dataset_id, *got))
    ahead = _prefetch_pool().submit(_get_or_none, store, layout.record_key(dataset_id, version_id))
    try:
        state = follow(store, dataset_id, *got)
    except BaseException:
        ahead.cancel()
        raise
    return LazyTree(store, state, fetched={version_id: ahead})


def _head_or_document(store: ObjectStore, dataset_id: str) -> tuple[Head, str] | DatasetDoc:
    """The format-2 head and its etag, or the whole format-1 document (checked to be this dataset's)."""
    head, etag_or_data = read_head(store, dataset_id)
    if head is not None:
        assert isinstance(etag_or_data, str)
        return head, etag_or_data
    assert isinstance(etag_or_data, bytes)
    doc = parse_dataset_doc(etag_or_data, layout.dataset_doc_key(dataset_id))
    if doc.id != dataset_id:
        raise CorruptObjectError(
            f"{layout.dataset_doc_key(dataset_id)}: the document names dataset {doc.id}; it is damaged"
        )
    return doc


def read_state(store: ObjectStore, dataset_id: str) -> LogState | DatasetDoc:
    """The newest state of a dataset: a :class:`LogState` (format 2) or the whole document (format 1).

    Raises:
        NotFoundError: no such dataset document.
        CorruptObjectError: it is damaged.
        StorageError: the store failed.
    """
    got = _head_or_document(store, dataset_id)
    return got if isinstance(got, DatasetDoc) else follow(store, dataset_id, *got)


class StaleView(Exception):
    """Internal: a strict view met a record or name written after its log position (retry newer)."""


class LazyTree:
    """A format-2 dataset as of one log position; version records are read when first asked for.

    Opening a version reads the head, looks past it for new entries (usually one GET that finds
    nothing) and reads that version's record: a few small objects, whatever the tree's size.
    :meth:`whole` reads the newest checkpoint and the entries after it, once.

    A reader takes a record or name entry newer than the view as it finds it. A *strict* view (the
    one a commit decides on) raises :class:`StaleView` instead, so that every rule of one commit
    is checked against one state: the commit then starts over on the newer one.
    """

    def __init__(
        self,
        store: ObjectStore,
        state: LogState,
        *,
        strict: bool = False,
        fetched: dict[str, Future[tuple[bytes, str] | None]] | None = None,
    ) -> None:
        """A view of ``state``; ``fetched``: record GETs issued for it ahead of need, by version id.

        Each gives a store ``get`` (None for a missing record); it is parsed and checked when its
        version is first asked for, and not at all when the log's entries name that version.
        """
        self.store = store
        self.state = state
        self.strict = strict
        head = state.folded_head()
        self._head = head
        self._overlay: dict[str, VersionEntry | None] = {}
        self._names: dict[str, str | None] = {}
        for entry in state.pending:
            for ver in entry.versions:
                self._overlay[ver.id] = ver
            for vid in entry.removed:
                self._overlay[vid] = None
            self._names.update(entry.names)
        self._records: dict[str, tuple[VersionEntry | None, int, str | None]] = {}
        self._name_objects: dict[str, tuple[str | None, int, str | None]] = {}
        self._names_fetched: dict[str, Future[tuple[bytes, str] | None]] = {}
        self._fetched = dict(fetched or {})
        self._stats: dict[str, dict[str, Any] | None] = {}
        self._stats_fetched: dict[str, Future[tuple[bytes, str] | None]] = {}
        self._whole: DatasetDoc | None = None
        self._lock = threading.Lock()

    format_version = layout.STORE_FORMAT

    @property
    def id(self) -> str:
        """The dataset id."""
        return self._head.id

    @property
    def name(self) -> str:
        """The dataset name."""
        return self._head.name

    @property
    def created(self) -> int:
        """Creation time, epoch milliseconds."""
        return self._head.created

    @property
    def updated(self) -> int:
        """Time of the newest change of the dataset or any of its versions, epoch milliseconds."""
        return self._head.updated

    @property
    def description(self) -> str:
        """The dataset description."""
        return self._head.description

    @property
    def project(self) -> str | None:
        """The project given at creation, if any."""
        return self._head.project

    @property
    def tags(self) -> tuple[str, ...]:
        """The dataset tags."""
        return self._head.tags

    @property
    def metadata(self) -> dict[str, Any]:
        """The dataset metadata (do not change it in place)."""
        return self._head.metadata

    @property
    def deleted(self) -> bool:
        """True once the dataset is deleted."""
        return self._head.deleted

    @property
    def seq(self) -> int:
        """The log position this view reflects."""
        return self.state.seq

    @property
    def head_doc(self) -> Head:
        """The head with the entries this view saw applied."""
        return self._head

    def aggregates(self) -> Aggregates:
        """The tree's aggregates as of :attr:`seq`."""
        return self.state.agg

    @property
    def version_count(self) -> int:
        """The number of versions."""
        return self.state.agg.versions

    # versions

    def record(self, version_id: str) -> tuple[VersionEntry | None, int, str | None]:
        """``(record, seq, etag)`` of a version's record object as stored (``etag`` None: none stored).

        Raises:
            CorruptObjectError: the record is damaged.
            StorageError: the store failed.
        """
        key = layout.record_key(self.id, version_id)

        def parse(data: bytes) -> tuple[VersionEntry | None, int]:
            ver, seq = parse_record(data, key)
            if ver is not None and ver.id != version_id:
                raise CorruptObjectError(f"{key}: the record is of version {ver.id}; it is damaged")
            return ver, seq

        return self._stored(self._records, self._fetched, version_id, key, parse)

    def _stored(
        self,
        kept: dict[str, tuple[T | None, int, str | None]],
        ahead: dict[str, Future[tuple[bytes, str] | None]],
        item: str,
        key: str,
        parse: Callable[[bytes], tuple[T | None, int]],
    ) -> tuple[T | None, int, str | None]:
        """``(value, seq, etag)`` of the object ``key`` (``item``'s record or name entry), read once.

        What this view kept is returned as it is; else the GET issued ahead (:meth:`fetch_ahead`)
        or a new one. A strict view refuses what is newer than its log position (:class:`StaleView`).
        """
        with self._lock:
            cached = kept.get(item)
            pending = ahead.pop(item, None) if cached is None else None
        if cached is not None:
            if self.strict and cached[1] > self.seq:
                raise StaleView(item)
            return cached
        got = pending.result() if pending is not None else _get_or_none(self.store, key)
        if got is None:
            found: tuple[T | None, int, str | None] = (None, -1, None)
        else:
            data, etag = got
            value, seq = parse(data)
            if self.strict and seq > self.seq:
                raise StaleView(key)
            found = (value, seq, etag)
        with self._lock:
            kept[item] = found
        return found

    def remember(self, version_id: str, record: VersionEntry, etag: str) -> None:
        """Keep a record this process has just stored (as :meth:`record` would read it back)."""
        with self._lock:
            self._records[version_id] = (record, record.seq, etag)

    def version(self, version_id: str) -> VersionEntry | None:
        """The version with this id, or None.

        Raises:
            CorruptObjectError: its record is damaged.
            StorageError: the store failed.
        """
        if version_id in self._overlay:
            return self._overlay[version_id]
        if self._whole is not None:
            return self._whole.version(version_id)
        if not _ID.fullmatch(version_id):
            return None  # not an id: no version has it (as in a whole tree)
        return self.record(version_id)[0]

    def version_named(self, name: str) -> VersionEntry | None:
        """The version with this name, or None (one index entry and one record read).

        Raises:
            CorruptObjectError: the index entry or the record is damaged.
            StorageError: the store failed.
        """
        if self._whole is not None:
            return self._whole.version_named(name)
        vid = self._names[name] if name in self._names else self.name_object(name)[0]
        if vid is None:
            return None
        ver = self.version(vid)
        return ver if ver is not None and ver.name == name else None

    def name_object(self, name: str) -> tuple[str | None, int, str | None]:
        """``(version id, seq, etag)`` of a name's index entry as stored (``etag`` None: none stored).

        Read once per view, like records: asking twice (a commit's rule, then its materialising)
        costs one request.

        Raises:
            CorruptObjectError: the index entry is damaged.
            StorageError: the store failed.
        """
        key = layout.version_name_key(self.id, name)

        def parse(data: bytes) -> tuple[str | None, int]:
            entry = parse_name(data, key)
            return entry.version_id, entry.seq

        return self._stored(self._name_objects, self._names_fetched, name, key, parse)

    def head(self) -> VersionEntry | None:
        """The current version: the deepest draft (newest on ties), else the latest published one."""
        vid = self.state.agg.current_id()
        return self.version(vid) if vid is not None else None

    def draft_ids(self) -> list[str]:
        """The ids of the drafts, the current one first."""
        drafts = self.state.agg.drafts
        return sorted(drafts, key=lambda v: (drafts[v][0], drafts[v][1], v), reverse=True)

    def stats_of(self, version_id: str) -> dict[str, Any] | None:
        """The stored statistics of a published version, or None when none are stored (yet).

        Raises:
            CorruptObjectError: they are damaged.
            StorageError: the store failed.
        """
        with self._lock:
            if version_id in self._stats:
                return self._stats[version_id]
            ahead = self._stats_fetched.pop(version_id, None)
        key = layout.stats_key(self.id, version_id)
        got = ahead.result() if ahead is not None else _get_or_none(self.store, key)
        if got is None:
            return None
        stats = parse_stats(got[0], key)
        with self._lock:
            self._stats[version_id] = stats
        return stats

    def fetch_ahead(
        self, *, records: Iterable[str] = (), names: Iterable[str] = (), stats: Iterable[str] = ()
    ) -> None:
        """Start reading these records, name entries and statistics now, all at once.

        A commit's rules ask for them one after the other (a version's name, then its parent's
        record, ...); issued together beforehand, they cost one round trip instead of one each.
        Each is parsed and checked when first asked for, exactly as if it were read then (this view
        is already as of its log position, so what is read now is no older than a later read's
        view). Ids that are not ids, and what this view knows already, are not read.
        """
        pool = _prefetch_pool()
        with self._lock:
            whole = self._whole is not None  # it answers records and names without a read
            for vid in records:
                known = vid in self._overlay or vid in self._records or vid in self._fetched
                if not whole and not known and _ID.fullmatch(vid):
                    self._fetched[vid] = pool.submit(
                        _get_or_none, self.store, layout.record_key(self.id, vid)
                    )
            for name in names:
                known = name in self._names or name in self._name_objects or name in self._names_fetched
                if not whole and not known:
                    try:
                        key = layout.version_name_key(self.id, name)
                    except ValidationError:
                        continue  # no version has it; the rule that asks says so
                    self._names_fetched[name] = pool.submit(_get_or_none, self.store, key)
            for vid in stats:
                if vid not in self._stats and vid not in self._stats_fetched:
                    key = layout.stats_key(self.id, vid)
                    self._stats_fetched[vid] = pool.submit(_get_or_none, self.store, key)

    # the whole tree

    def whole(self) -> DatasetDoc:
        """The whole tree as of :attr:`seq` (read once, then kept).

        Raises:
            CorruptObjectError: a checkpoint or an entry is damaged or missing.
            StorageError: the store failed.
        """
        if self._whole is None:
            self._whole = load_whole(self.store, self.state)
        return self._whole

    @property
    def versions(self) -> tuple[VersionEntry, ...]:
        """Every version, oldest first (reads the whole tree)."""
        return self.whole().versions

    def children(self, version_id: str | None) -> list[VersionEntry]:
        """The direct children of a version (of None: the roots), oldest first (reads the whole tree)."""
        return self.whole().children(version_id)

    def subtree(self, version_id: str) -> list[VersionEntry]:
        """The version and all its descendants (reads the whole tree)."""
        return self.whole().subtree(version_id)

    def depth(self, version_id: str) -> int:
        """The number of ancestors of a version."""
        ver = self.version(version_id)
        return ver.depth if ver is not None else 0


def load_whole(store: ObjectStore, state: LogState) -> DatasetDoc:
    """Fold the newest checkpoint at or before ``state`` and the entries after it into the whole tree.

    Raises:
        CorruptObjectError: the checkpoint or an entry is damaged or missing.
        StorageError: the store failed.
    """
    dataset_id = state.head.id
    ckpt = state.head.checkpoint
    versions: dict[str, VersionEntry] = {}
    head: Head | None = None
    first = 0
    if ckpt is not None:
        key = layout.checkpoint_key(dataset_id, ckpt)
        try:
            data, _ = store.get(key)
        except NotFoundError:
            raise CorruptObjectError(
                f"{key}: the checkpoint the head names is missing; the dataset is damaged (hds fsck)"
            ) from None
        checkpoint = parse_checkpoint(data, key)
        if checkpoint.seq != ckpt:
            raise CorruptObjectError(f"{key}: the checkpoint says it is of entry {checkpoint.seq}; damaged")
        head = checkpoint.head
        versions = {v.id: v for v in checkpoint.versions}
        if len(versions) != len(checkpoint.versions):
            raise CorruptObjectError(f"{key}: the checkpoint lists a version twice; it is damaged (hds fsck)")
        first = ckpt + 1
    numbers = list(range(first, state.head.seq + 1))

    def fetch(seq: int) -> LogEntry:
        try:
            return read_entry(store, dataset_id, seq)
        except NotFoundError:
            raise CorruptObjectError(
                f"{layout.log_key(dataset_id, seq)}: an entry after the newest checkpoint is missing; "
                "the dataset is damaged (hds fsck)"
            ) from None

    if len(numbers) > 1:
        with ThreadPoolExecutor(max_workers=_FETCH_THREADS) as pool:
            entries = list(pool.map(fetch, numbers))
    else:
        entries = [fetch(n) for n in numbers]
    entries.extend(state.pending)
    for entry in entries:
        if head is None:
            head = _initial_head(dataset_id, state.head, entry)
        else:
            head = apply_to_head(head, entry)
        for ver in entry.versions:
            versions[ver.id] = ver
        for vid in entry.removed:
            versions.pop(vid, None)
    if head is None:
        raise CorruptObjectError(f"{layout.log_prefix(dataset_id)}: the log is empty; the dataset is damaged")
    return tree_of(head, versions)


def _initial_head(dataset_id: str, now: Head, first: LogEntry) -> Head:
    """The head after entry 0 (the dataset's creation), from the head's constant fields."""
    base = Head(id=dataset_id, name=now.name, created=now.created, updated=now.created, seq=-1)
    return apply_to_head(base, first)


def history(store: ObjectStore, state: LogState, limit: int) -> list[LogEntry]:
    """The newest ``limit`` log entries of a dataset, newest first, as far back as they are kept.

    Entries folded into a checkpoint may have been removed by gc; the history stops there.

    Raises:
        CorruptObjectError: an entry is damaged.
        StorageError: the store failed.
    """
    out = list(reversed(state.pending))[:limit]
    seq = state.head.seq
    while len(out) < limit and seq >= 0:
        try:
            out.append(read_entry(store, state.head.id, seq))
        except NotFoundError:
            break
        seq -= 1
    return out
