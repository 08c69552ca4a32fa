"""Commits of store format 2: one create-only log entry per change, then materialised views of it.

Creating entry ``n + 1`` of a dataset's log (``log/<seq>.json``) with ``If-None-Match`` is the commit
point of a change: exactly one writer creates each number, so the log orders every change of the
dataset's tree, and a writer that loses the create reads the entry that won, checks its own change
again against the newer state (:class:`~hds_s3.format.txn.Txn` and the rules of
:mod:`hds_s3.format.tree`) and tries ``n + 2``, with jittered backoff under a budget.

After the commit point, the entry is *materialised*: the records of the versions it changes, the
version-name index and the head are moved forward to it. These objects only move forward: each
carries the sequence number of the entry it reflects and is replaced with ``If-Match`` only by a
newer one. Before a writer creates entry ``n + 1`` it materialises every entry up to ``n`` (its own
or one a crashed writer left), so the head is at most the newest entry or two behind. Nothing a
commit reads or writes grows with the number of versions, but a checkpoint: every
:func:`checkpoint_interval` entries the whole tree is folded into one (``checkpoints/<seq>.json``),
a cost spread over those entries.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from hds_s3.errors import ConflictError, CorruptObjectError, HdsError, NotFoundError, StorageError
from hds_s3.format import layout
from hds_s3.format.docs import Aggregates, DatasetDoc, VersionEntry, now_ms
from hds_s3.format.log import (
    LazyTree,
    LogState,
    StaleView,
    follow,
    load_whole,
    read_entry,
    read_head,
    read_state,
)
from hds_s3.format.records import (
    Checkpoint,
    Head,
    LogEntry,
    NameEntry,
    apply_to_head,
    dump_checkpoint,
    dump_entry,
    dump_head,
    dump_name,
    dump_record,
    dump_removed_record,
    dump_stats,
    parse_name,
    parse_record,
)
from hds_s3.format.txn import Txn
from hds_s3.store.base import ObjectStore

log = logging.getLogger("hds_s3")

R = TypeVar("R")

#: Rounds of :func:`catch_up` (each materialises what it found pending, then looks again).
MAX_CATCH_UP = 100
#: At most this many objects (an entry's records, or its names) are written at once.
_MATERIALISE_THREADS = 8

#: A checkpoint is written once the log has this many entries after the newest one ...
CHECKPOINT_MIN = 100
#: ... or an eighth of the number of versions, if that is more (so writing it, which costs the whole
#: tree, stays a constant share of a commit's cost), but never more than this many.
CHECKPOINT_MAX = 1000


def current_user() -> str:
    """Who makes the changes of this process: ``HDS_USER``, else the operating system's user name."""
    user = os.environ.get("HDS_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name at all (a container without passwd entry)
        return "unknown"


def checkpoint_interval(versions: int) -> int:
    """How many entries may follow the newest checkpoint before a new one is written."""
    return min(CHECKPOINT_MAX, max(CHECKPOINT_MIN, versions // 8))


@dataclass(frozen=True)
class RetryBudget:
    """How long a writer keeps trying while other writers win the entries it tries to create."""

    max_attempts: int = 200
    max_seconds: float = 60.0
    first_wait: float = 0.002
    max_wait: float = 0.25

    def attempts(self) -> Iterator[int]:
        """Attempt numbers 0, 1, ... while the budget lasts; a jittered, growing wait before each retry."""
        started = time.monotonic()
        for attempt in range(self.max_attempts):
            if attempt:
                if time.monotonic() - started > self.max_seconds:
                    return
                time.sleep(random.uniform(0, min(self.max_wait, self.first_wait * 2 ** min(attempt, 16))))
            yield attempt


DEFAULT_BUDGET = RetryBudget()


def _put_forward(
    store: ObjectStore,
    key: str,
    data: bytes,
    seq: int,
    seq_of: Callable[[bytes], int],
    known: tuple[int, str | None] | None = None,
) -> None:
    """Write ``data`` (of entry ``seq``) at ``key`` unless what is there reflects entry ``seq`` or later.

    ``known`` is ``(seq, etag)`` of the object as the caller read it (etag None: absent).

    Raises:
        StorageError: the store failed.
        CorruptObjectError: what is there is damaged.
    """
    for _ in range(100):
        if known is None:
            try:
                current, found = store.get(key)
            except NotFoundError:
                known = (-1, None)
            else:
                known = (seq_of(current), found)
        have, etag = known
        if have >= seq:
            return
        try:
            if etag is None:
                store.put(key, data, if_none_match=True)
            else:
                store.put(key, data, if_match=etag)
            return
        except (ConflictError, NotFoundError):
            known = None  # another writer moved it: look again
    raise ConflictError(
        f"{key}: kept moving while entry {seq} was written to it; a later writer completes it"
    )


def _record_seq(dataset_id: str, key: str) -> Callable[[bytes], int]:
    return lambda data: parse_record(data, key)[1]


def _name_seq(key: str) -> Callable[[bytes], int]:
    return lambda data: parse_name(data, key).seq


def materialise(
    store: ObjectStore, state: LogState, entry: LogEntry, view: LazyTree | None = None
) -> tuple[Head, str]:
    """Write what ``entry`` says into the records, the name index and the head.

    ``state`` is the state right before ``entry``, with nothing pending. Returns the head after it
    (or a newer one) and its etag. Idempotent: anyone may run it again, as often as they like.

    Raises:
        StorageError, CorruptObjectError, ConflictError: it is left for a later writer to complete.
    """
    dataset_id = state.head.id
    records: list[Callable[[], None]] = []
    for vid, data in [
        *((ver.id, dump_record(dataset_id, ver)) for ver in entry.versions),
        *((vid, dump_removed_record(dataset_id, vid, entry.seq)) for vid in entry.removed),
    ]:
        key = layout.record_key(dataset_id, vid)
        seq_of, known = _record_seq(dataset_id, key), _known(view, vid)
        records.append(partial(_put_forward, store, key, data, entry.seq, seq_of, known))
    names: list[Callable[[], None]] = []
    for name, holder in entry.names.items():
        key = layout.version_name_key(dataset_id, name)
        body = dump_name(NameEntry(name=name, version_id=holder, seq=entry.seq))
        known = _known(view, name, name=True)
        names.append(partial(_put_forward, store, key, body, entry.seq, _name_seq(key), known))
    # the records at once, then the names at once, then the head: a reader that finds a name newer
    # than its view finds the record it names
    _run_all(records)
    _run_all(names)
    return advance_head(store, state.head, state.head_etag, entry)


def _run_all(calls: Sequence[Callable[[], R]]) -> list[R]:
    """Run the calls at once (threads: each is a request), wait for all; their results, in order.

    Raises:
        Exception: what the first call that failed (in the calls' order) raised, once all have ended.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(len(calls), _MATERIALISE_THREADS)) as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


def _known(view: LazyTree | None, key: str, *, name: bool = False) -> tuple[int, str | None] | None:
    """``(seq, etag)`` of a version's record (or of a name's entry) as ``view`` read it, if it did."""
    if view is None:
        return None
    with view._lock:
        cached = (view._name_objects if name else view._records).get(key)
    if cached is None:
        return None
    return cached[1], cached[2]


def advance_head(store: ObjectStore, head: Head, etag: str, entry: LogEntry) -> tuple[Head, str]:
    """Move the head (``head`` as read, with ``etag``) to ``entry``, unless it is there already.

    Returns the head after ``entry`` (or a newer one) and its etag.

    Raises:
        StorageError, CorruptObjectError, ConflictError: left for a later writer to complete.
    """
    key = layout.dataset_doc_key(head.id)
    if head.seq < entry.seq - 1:  # the head read is older than the state materialised: read it again
        head, etag = _reread_head(store, head.id)
    for _ in range(100):
        if head.seq >= entry.seq:
            return head, etag
        if head.seq != entry.seq - 1:
            raise CorruptObjectError(
                f"{key}: the head is at entry {head.seq}, behind entry {entry.seq - 1} which was "
                "materialised before it; the dataset is damaged (hds fsck)"
            )
        new = apply_to_head(head, entry)
        try:
            return new, store.put(key, dump_head(new), if_match=etag)
        except (ConflictError, NotFoundError):
            head, etag = _reread_head(store, head.id)
    raise ConflictError(
        f"{key}: kept moving while entry {entry.seq} was applied; a later writer completes it"
    )


def _reread_head(store: ObjectStore, dataset_id: str) -> tuple[Head, str]:
    head, etag = read_head(store, dataset_id)
    if head is None:
        raise CorruptObjectError(
            f"{layout.dataset_doc_key(dataset_id)}: the head turned into a format-1 document; damaged"
        )
    assert isinstance(etag, str)
    return head, etag


def catch_up(store: ObjectStore, state: LogState) -> LogState:
    """Materialise every pending entry of ``state``; return a state with nothing pending.

    The state returned may be newer than ``state`` when other writers moved the head further (their
    entries are materialised too, so none is left pending).

    Raises:
        StorageError, CorruptObjectError, ConflictError: the store failed; nothing is lost, a
            later writer completes it.
    """
    for _ in range(MAX_CATCH_UP):
        if not state.pending:
            return state
        head, etag = state.head, state.head_etag
        for entry in state.pending:
            if head.seq >= entry.seq:
                continue
            head, etag = materialise(store, LogState(head, etag, ()), entry)
        state = follow(store, head.id, head, etag) if head.seq > state.seq else LogState(head, etag, ())
    raise ConflictError(
        f"{layout.log_prefix(state.head.id)}: other writers kept adding entries while this one caught up; "
        "try again"
    )


@dataclass
class Commit:
    """What :func:`commit` did: the view after it, and the entry it wrote (None when nothing changed)."""

    view: LazyTree
    entry: LogEntry | None = None


def commit(
    store: ObjectStore,
    dataset_id: str,
    change: Callable[[Txn], R],
    *,
    what: str,
    budget: RetryBudget = DEFAULT_BUDGET,
    view: LazyTree | None = None,
) -> tuple[R, Commit]:
    """Apply ``change`` to the newest state of a format-2 dataset as one log entry.

    ``change`` receives a :class:`~hds_s3.format.txn.Txn` over the newest state and records what
    it changes (or raises when a requirement fails); it runs again, on the newer state, each time
    another writer's entry lands first, so its requirements are checked against what is really
    there. Returns what ``change`` returned and the :class:`Commit`. ``view``: the dataset as the
    caller just read it, tried first instead of a new read (if it is stale, its entry number is
    taken already and the next attempt reads the newest state).

    Raises:
        NotFoundError: the dataset does not exist or was deleted.
        UpgradeRequiredError: the dataset is of store format 1.
        ConflictError: other writers kept winning until the budget ran out; nothing was changed.
        StorageError: the store failed; the change landed or not (calling again settles it).
        HdsError: whatever ``change`` raises; nothing was changed.
    """
    from hds_s3.errors import UpgradeRequiredError

    txn_id = layout.new_id()
    user = current_user()
    results: dict[int, R] = {}
    for attempt in budget.attempts():
        try:
            if view is not None and not view.state.pending and view.id == dataset_id:
                state: LogState | DatasetDoc = view.state
            else:
                state, view = read_state(store, dataset_id), None
        except NotFoundError:
            raise NotFoundError(f"dataset {dataset_id} does not exist in {store.url}") from None
        if isinstance(state, DatasetDoc):
            raise UpgradeRequiredError(
                f"dataset {state.name!r} in {store.url} is stored in format 1, which this hds_s3 reads but "
                "does not write; convert the store with `hds upgrade` (hds_s3.tools.upgrade.upgrade())"
            )
        mine = [e for e in state.pending if e.txn == txn_id]
        if mine:  # an earlier attempt landed; its response was lost
            return results[mine[0].seq], Commit(LazyTree(store, state), mine[0])
        state = catch_up(store, state)
        if state.head.deleted:
            raise NotFoundError(f"dataset {state.head.name!r} ({dataset_id}) was deleted")
        current = view if view is not None and view.state is state else LazyTree(store, state)
        view = None  # the next attempt, if any, reads the newer state
        txn = Txn(current)
        current.strict = True  # one state for every rule of this attempt
        try:
            result = change(txn)
        except StaleView:
            log.debug(
                "retry: %s read a record newer than entry %d of dataset %s", what, state.seq, dataset_id
            )
            continue
        finally:
            current.strict = False
        if not txn.changed:
            return result, Commit(current)
        seq = state.seq + 1
        entry = _entry_of(txn, seq=seq, txn_id=txn_id, user=user, what=what)
        results[seq] = result
        key = layout.log_key(dataset_id, seq)
        try:
            store.put(key, dump_entry(entry), if_none_match=True)
        except ConflictError:
            log.debug(
                "retry: %s lost entry %d of dataset %s (attempt %d)", what, seq, dataset_id, attempt + 1
            )
            continue
        except StorageError:
            # The response may have been lost after the entry landed: look before reporting failure.
            try:
                landed = read_entry(store, dataset_id, seq).txn == txn_id
            except Exception:  # noqa: BLE001 - the original failure is the one to report
                landed = False
            if not landed:
                raise
        try:
            head, _ = materialise(store, state, entry, current)
            _checkpoint_if_due(store, head)
        except HdsError as exc:  # the commit stands; a later writer or reader completes the rest
            log.warning(
                "%s: committed as entry %d; materialising it is left to the next writer: %s", what, seq, exc
            )
        # the new view holds the entry as pending: the versions it wrote are known without a read
        return result, Commit(LazyTree(store, LogState(state.head, state.head_etag, (entry,))), entry)
    raise ConflictError(
        f"{what}: gave up after {budget.max_attempts} attempts or {budget.max_seconds:.0f} s of other "
        f"writers committing to dataset {dataset_id} in {store.url}; nothing was changed, try again"
    )


def _entry_of(txn: Txn, *, seq: int, txn_id: str, user: str, what: str) -> LogEntry:
    versions = tuple(replace(v, seq=seq) for _, v in sorted(txn.puts.items()))
    return LogEntry(
        seq=seq,
        txn=txn_id,
        time=now_ms(),
        user=user,
        what=what,
        versions=versions,
        removed=tuple(sorted(txn.removed)),
        names=txn.name_changes(),
        dataset=dict(txn.dataset),
        agg=txn.aggregates(),
    )


# ------------------------------------------------------------------------------------ checkpoints


def _checkpoint_if_due(store: ObjectStore, head: Head) -> None:
    last = head.checkpoint if head.checkpoint is not None else -1
    if head.seq - last < checkpoint_interval(head.agg.versions):
        return
    write_checkpoint(store, head.id)


def write_checkpoint(store: ObjectStore, dataset_id: str) -> int | None:
    """Fold the dataset's log up to its head into a checkpoint and point the head at it.

    Returns the checkpoint's sequence number, or None when the dataset is not of format 2.

    Raises:
        StorageError, CorruptObjectError: the store failed or something is damaged; the log is
            still whole, the next commit tries again.
    """
    state = read_state(store, dataset_id)
    if isinstance(state, DatasetDoc):
        return None
    state = LogState(state.head, state.head_etag, ())  # up to the head: every entry materialised
    if state.head.checkpoint is not None and state.head.checkpoint >= state.head.seq:
        return state.head.checkpoint
    whole = load_whole(store, state)
    head = state.head
    folded = Head(
        id=head.id,
        name=head.name,
        created=head.created,
        updated=head.updated,
        seq=head.seq,
        checkpoint=head.seq,
        description=whole.description,
        project=whole.project,
        tags=whole.tags,
        metadata=whole.metadata,
        deleted=whole.deleted,
        agg=head.agg,
    )
    key = layout.checkpoint_key(dataset_id, head.seq)
    try:
        store.put(key, dump_checkpoint(Checkpoint(folded, whole.versions)), if_none_match=True)
    except ConflictError:
        pass  # another writer wrote the same fold
    doc_key = layout.dataset_doc_key(dataset_id)
    current, etag = head, state.head_etag
    for _ in range(100):
        if current.checkpoint is not None and current.checkpoint >= head.seq:
            break
        try:
            store.put(doc_key, dump_head(replace(current, checkpoint=head.seq)), if_match=etag)
            break
        except (ConflictError, NotFoundError):
            current, etag = _reread_head(store, dataset_id)
    return head.seq


# ------------------------------------------------------------------------------------ statistics


def store_stats(store: ObjectStore, dataset_id: str, version_id: str, stats: dict[str, Any]) -> None:
    """Store the statistics of a published version (create-only: the first writer's stand).

    Raises:
        StorageError: the store failed (they are computed again when next asked).
    """
    try:
        store.put(layout.stats_key(dataset_id, version_id), dump_stats(version_id, stats), if_none_match=True)
    except ConflictError:
        pass  # stored already: statistics are a function of the frozen frames, so they are the same


# ------------------------------------------------------------------------------------ creation


def create_dataset(
    store: ObjectStore,
    *,
    dataset_id: str,
    name: str,
    now: int,
    fields: dict[str, Any],
    first: VersionEntry,
) -> LazyTree:
    """Write a new format-2 dataset (entry 0, its first version's record and name, its head).

    Nothing is visible until its name is claimed (the caller's commit point).

    Raises:
        ConflictError: the id is taken (never, for a fresh id).
        StorageError: the store failed; what was written is garbage for gc.
    """
    first = replace(first, seq=0)
    agg = Aggregates(versions=1, roots=1, drafts={first.id: (first.depth, first.created)})
    entry = LogEntry(
        seq=0,
        txn=layout.new_id(),
        time=now,
        user=current_user(),
        what=f"create dataset {name!r}",
        versions=(first,),
        names={first.name: first.id},
        dataset=dict(fields),
        agg=agg,
    )
    record_key = layout.record_key(dataset_id, first.id)
    record = dump_record(dataset_id, first)
    # the entry, the record and the name at once (none is visible yet), the head after all three
    _, record_etag, _ = _run_all(
        [
            partial(store.put, key, data, if_none_match=True)
            for key, data in (
                (layout.log_key(dataset_id, 0), dump_entry(entry)),
                (record_key, record),
                (
                    layout.version_name_key(dataset_id, first.name),
                    dump_name(NameEntry(name=first.name, version_id=first.id, seq=0)),
                ),
            )
        ]
    )
    base = Head(id=dataset_id, name=name, created=now, updated=now, seq=-1)
    head = apply_to_head(base, entry)
    etag = store.put(layout.dataset_doc_key(dataset_id), dump_head(head), if_none_match=True)
    tree = LazyTree(store, LogState(head, etag, ()))
    stored, _ = parse_record(record, record_key)  # as a reader would find it: no read back
    assert stored is not None
    tree.remember(first.id, stored, record_etag)
    return tree
