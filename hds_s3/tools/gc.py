"""Removing garbage: objects no document refers to, once they are old enough to be safe to remove.

What counts as garbage is decided by :class:`hds_s3.tools.fsck.StoreScan` (fsck's findings of kind
``garbage``): unreferenced segments and manifests of live datasets (left by an interrupted write, or
superseded by a later commit or a compaction), dataset documents whose create never claimed the
name (with whatever lies under them), and objects under a dataset prefix whose dataset is gone.
Pending roll-forwards (a deleted dataset's objects, a deleted version's objects) are not garbage:
``fsck(repair=True)`` completes them.

The rules that make removing safe while others read and write:

1. **A writer's uncommitted objects are younger than the grace period.** Segments and manifests are
   written before the commit that makes them referenced (docs/design.md invariant 1), so an unreferenced
   object may belong to a writer that has not committed yet. gc removes an object only when it was
   written more than ``grace_seconds`` ago, which is safe as long as every writer commits (or gives
   up on) what it wrote within that time. The default, 24 hours, is far beyond any single commit.
   The write time comes from the store's last-modified time when it reports one; otherwise from the
   ``created`` time a manifest carries, and for a segment from the earliest manifest listing it;
   an object whose age cannot be told is kept.
2. **Readers and writers act on the dataset document they read.** A reader that read the document
   just before a commit or a compaction still reads the objects that commit made unreferenced, so
   gc also waits until the dataset's document has not changed for ``grace_seconds``.
3. **Re-read before removing.** Right before removing anything of a dataset, gc reads its document
   (and the manifests it now refers to, and for an unclaimed dataset its name claim) again and
   keeps whatever became referenced, or whose dataset changed, since the scan.
4. **Write leases.** While a version has a live write lease (:mod:`hds_s3.format.leases`: a job
   writing segments that it will commit later), none of its unreferenced segments and manifests is
   removed, whatever their age; the leases are read again right before removing. Expired leases
   are garbage themselves.
5. A dataset fsck finds any damage in (an unreadable document, record or manifest; a record naming
   another dataset's manifest), and orphan documents while any name claim is unreadable, are left
   alone: what they refer to cannot be known. A store whose marker names another format is refused
   whole, and so is a store of format 1 (convert it with ``hds upgrade`` first). Name claims are
   never removed (a released claim is the state "this name is free"; there is no conditional
   delete to remove one safely).

Segments go first, then manifests, then documents, so an interrupted gc leaves only garbage.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hds_s3.client import Client, resolve
from hds_s3.errors import CorruptObjectError, HdsError, NotFoundError, UpgradeRequiredError, ValidationError
from hds_s3.format import layout
from hds_s3.format.docs import parse_claim, parse_manifest
from hds_s3.format.leases import version_leases
from hds_s3.store.base import ObjectStore
from hds_s3.tools.fsck import Finding, StoreScan, live_keys, load_dataset

#: Default grace period: garbage younger than this is kept.
DEFAULT_GRACE_SECONDS = 24 * 3600.0

_REMOVABLE = (
    "orphan-dataset",
    "unreferenced-manifest",
    "unreferenced-segment",
    "leftover",
    "folded-entry",
    "superseded-checkpoint",
    "removed-record",
    "freed-name",
    "unreferenced-stats",
    "expired-lease",
)
_THREADS = 8
_SHOWN = 20


@dataclass(frozen=True)
class GcItem:
    """One garbage object gc considered.

    Attributes:
        key: the object.
        size: its size in bytes.
        code: the fsck finding it came from (``unreferenced-segment``, ...).
        dataset_id: the dataset it lies under.
        written: the latest time it can have been written (epoch seconds), or None when unknown.
        reason: why it was kept or why removing it failed; empty for removed objects.
    """

    key: str
    size: int
    code: str
    dataset_id: str | None
    written: float | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the item as JSON-ready data."""
        return {
            "key": self.key,
            "size": self.size,
            "code": self.code,
            "dataset_id": self.dataset_id,
            "written": self.written,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GcReport:
    """What :func:`gc` removed (or, in a dry run, would remove) and what it kept.

    Attributes:
        store: the store's URL.
        dry_run: nothing was removed; ``removed`` lists what would have been.
        grace_seconds: the grace period applied.
        now: the time ages were measured against (epoch seconds).
        removed: objects removed (or that would be).
        kept: garbage kept, each with the reason (too young, age unknown, dataset changed recently,
            referenced again, unreadable dataset).
        failed: objects whose removal failed, with the error; they stay garbage for the next run.
        pending: pending roll-forwards fsck found (``fsck(repair=True)`` completes them).
        damage: damage fsck found (see ``fsck``).
    """

    store: str
    dry_run: bool
    grace_seconds: float
    now: float
    removed: tuple[GcItem, ...]
    kept: tuple[GcItem, ...]
    failed: tuple[GcItem, ...]
    pending: int
    damage: int

    @property
    def bytes_removed(self) -> int:
        """Bytes removed (or that would be)."""
        return sum(i.size for i in self.removed)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (what ``hds gc --json`` prints)."""
        return {
            "store": self.store,
            "dry_run": self.dry_run,
            "grace_seconds": self.grace_seconds,
            "now": self.now,
            "bytes_removed": self.bytes_removed,
            "removed": [i.to_dict() for i in self.removed],
            "kept": [i.to_dict() for i in self.kept],
            "failed": [i.to_dict() for i in self.failed],
            "pending": self.pending,
            "damage": self.damage,
        }

    def summary(self) -> str:
        """Return a human summary: what went (or would go), what stayed and why, and what to do next."""
        verb = "would remove" if self.dry_run else "removed"
        lines = [
            f"gc {self.store}: {verb} {len(self.removed)} objects ({self.bytes_removed} bytes); kept "
            f"{len(self.kept)} younger or unsure; grace period {self.grace_seconds:g} s"
            + (" (dry run: pass dry_run=False to remove)" if self.dry_run else "")
        ]
        for item in self.removed[:_SHOWN]:
            lines.append(f"  {verb}: {item.key} [{item.code}]")
        if len(self.removed) > _SHOWN:
            lines.append(f"  ... and {len(self.removed) - _SHOWN} more")
        reasons: dict[str, int] = defaultdict(int)
        for item in self.kept:
            reasons[item.reason] += 1
        for reason, count in sorted(reasons.items()):
            lines.append(f"  kept {count}: {reason}")
        for item in self.failed[:_SHOWN]:
            lines.append(f"  failed: {item.key}: {item.reason}")
        if self.pending:
            lines.append(f"{self.pending} pending roll-forwards: run fsck(repair=True) to complete them")
        if self.damage:
            lines.append(f"{self.damage} damaged objects or documents: run fsck for details")
        return "\n".join(lines)


def _items(finding: Finding, scan: StoreScan) -> list[GcItem]:
    return [
        GcItem(
            key=key,
            size=scan.objects[key].size if key in scan.objects else 0,
            code=finding.code,
            dataset_id=finding.dataset_id,
            written=finding.written,
        )
        for key in finding.objects
    ]


def _kept(items: Iterable[GcItem], reason: str) -> list[GcItem]:
    return [GcItem(i.key, i.size, i.code, i.dataset_id, i.written, reason) for i in items]


def _referenced_now(store: ObjectStore, scan: StoreScan, dataset_id: str) -> tuple[set[str], bool] | None:
    """Re-read a live dataset: the keys its versions refer to now, and whether it changed since the scan.

    None when the dataset is no longer a live, readable one.
    """
    key = layout.dataset_doc_key(dataset_id)
    try:
        data, etag = store.get(key)
        doc, log = load_dataset(store, dataset_id, data, etag, key)
    except (NotFoundError, CorruptObjectError):
        return None
    if doc.deleted:
        return None
    keys: set[str] = live_keys(doc, log)
    for ver in doc.versions:
        mkey = ver.frames.get("manifest")
        if not mkey:
            continue
        keys.add(mkey)
        manifest = scan.manifests.get(mkey)
        if manifest is None:
            try:
                manifest = parse_manifest(store.get(mkey)[0], mkey)
            except (NotFoundError, CorruptObjectError):
                return None
        keys.update(ref.key for ref in manifest.segments)
    return keys, etag != scan.datasets[dataset_id].doc_etag


def _still_orphan(store: ObjectStore, scan: StoreScan, dataset_id: str) -> bool:
    """An unclaimed dataset is still unclaimed and unchanged (its claim and document re-read)."""
    state = scan.datasets[dataset_id]
    if state.doc is None:
        return False
    key = layout.dataset_doc_key(dataset_id)
    try:
        _, etag = store.get(key)
    except NotFoundError:
        return False
    if etag != state.doc_etag:
        return False
    claim_key = layout.dataset_claim_key(state.doc.name)
    try:
        data, _ = store.get(claim_key)
    except NotFoundError:
        return True
    return parse_claim(data, claim_key).dataset_id != dataset_id


def _doc_absent(store: ObjectStore, dataset_id: str) -> bool:
    try:
        store.head(layout.dataset_doc_key(dataset_id))
    except NotFoundError:
        return True
    return False


def gc(
    client: Client | None = None,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = True,
    now: float | None = None,
) -> GcReport:
    """Remove garbage older than ``grace_seconds`` from the store of ``client`` (a dry run by default).

    See the module docstring for what is garbage and the rules that keep removal safe next to live
    readers and writers. ``now`` (epoch seconds, default: the clock) is the time ages are measured
    against; a later ``now`` shows what a later run would remove. ``grace_seconds=0`` removes all
    garbage at once and is only safe when nobody else is using the store.

    Raises:
        ValidationError: ``grace_seconds`` is negative or not a finite number.
        CorruptObjectError: the store marker names a format this hds_s3 does not know (gc would
            not know what such a store refers to, so it removes nothing).
        UpgradeRequiredError: the store is of format 1.
        StorageError: the store failed while scanning (removals that fail are reported in
            ``failed`` instead).
    """
    if (
        isinstance(grace_seconds, bool)
        or not isinstance(grace_seconds, (int, float))
        or not math.isfinite(grace_seconds)
        or grace_seconds < 0
    ):
        raise ValidationError(f"grace_seconds must be a finite number >= 0, got {grace_seconds!r}")
    c = resolve(client)
    store = c.store
    when = time.time() if now is None else float(now)
    scan = StoreScan(store).run()
    if not scan.marker_ok:
        raise CorruptObjectError(
            f"{store.url}: {layout.STORE_MARKER} names a format this hds_s3 does not know; gc removes "
            "nothing from such a store (upgrade hds_s3)"
        )
    if scan.store_format == layout.LEGACY_STORE_FORMAT:
        raise UpgradeRequiredError(
            f"{store.url} is a store of format {layout.LEGACY_STORE_FORMAT}: gc removes nothing from it; "
            "convert it with `hds upgrade` first"
        )
    damaged = {f.dataset_id for f in scan.findings if f.kind == "damage" and f.dataset_id is not None}
    kept: list[GcItem] = []
    candidates: dict[str, list[GcItem]] = defaultdict(list)
    for finding in scan.findings:
        if finding.kind != "garbage" or finding.code not in _REMOVABLE:
            continue
        items = _items(finding, scan)
        dataset_id = finding.dataset_id
        assert dataset_id is not None
        state = scan.datasets[dataset_id]
        if dataset_id in damaged:
            kept += _kept(items, "its dataset is damaged: what it refers to cannot be judged (see hds fsck)")
        elif grace_seconds == 0:
            candidates[dataset_id] += items  # no grace: age does not matter
        elif finding.written is None:
            kept += _kept(items, "age unknown (the store reports no last-modified time)")
        elif when - finding.written < grace_seconds:
            kept += _kept(items, "younger than the grace period")
        elif (
            finding.code != "orphan-dataset"
            and state.doc is not None
            and when - scan.doc_written(state.doc) < grace_seconds
        ):
            kept += _kept(items, "its dataset changed within the grace period")
        else:
            candidates[dataset_id] += items
    go: list[GcItem] = []
    for dataset_id, items in sorted(candidates.items()):
        state = scan.datasets[dataset_id]
        if state.doc is None:  # leftovers of a removed dataset
            if _doc_absent(store, dataset_id):
                go += items
            else:
                kept += _kept(items, "its dataset document appeared meanwhile")
            continue
        if all(i.code == "orphan-dataset" for i in items):
            if _still_orphan(store, scan, dataset_id):
                go += items
            else:
                kept += _kept(items, "claimed or changed meanwhile")
            continue
        fresh = _referenced_now(store, scan, dataset_id)
        if fresh is None:
            kept += _kept(items, "its dataset changed meanwhile (deleted or unreadable)")
            continue
        referenced, changed = fresh
        if changed and grace_seconds > 0:
            kept += _kept(items, "its dataset changed within the grace period")
            continue
        kept += _kept([i for i in items if i.key in referenced], "referenced again")
        items = [i for i in items if i.key not in referenced]
        held, renewed = _leased(store, dataset_id, when)
        kept += _kept([i for i in items if _held(i, held, renewed)], "a live write lease holds its version")
        go += [i for i in items if not _held(i, held, renewed)]
    failed: list[GcItem] = []
    if not dry_run:
        failed = _remove(store, go)
        gone = {i.key for i in failed}
        go = [i for i in go if i.key not in gone]
    return GcReport(
        store=store.url,
        dry_run=dry_run,
        grace_seconds=float(grace_seconds),
        now=when,
        removed=tuple(go),
        kept=tuple(kept),
        failed=tuple(failed),
        pending=sum(1 for f in scan.findings if f.kind == "pending"),
        damage=sum(1 for f in scan.findings if f.kind == "damage"),
    )


def _leased(store: ObjectStore, dataset_id: str, when: float) -> tuple[set[str], set[str]]:
    """Re-read a dataset's write leases: the versions live (or unreadable) leases hold, and the live ones.

    Read right before removing, after the listing: a job takes its lease before it writes, so any
    segment listed by the scan whose job holds a lease is seen held here.
    """
    leases, unreadable = version_leases(store, dataset_id)
    at = int(when * 1000)
    live = {d for docs in leases.values() for d in docs if d.live(at)}
    held = {d.version_id for d in live} | unreadable
    return held, {layout.lease_key(d.dataset_id, d.version_id, d.lease_id) for d in live}


def _held(item: GcItem, held: set[str], renewed: set[str]) -> bool:
    """Whether a live lease keeps this item: its version's uncommitted objects, or the lease itself."""
    if item.key in renewed:
        return True
    parts = layout.parse_key(item.key)
    return (
        parts is not None
        and parts.kind in ("segment", "manifest")
        and item.code in ("unreferenced-segment", "unreferenced-manifest")
        and parts.version_id in held
    )


def _rank(key: str) -> int:
    parts = layout.parse_key(key)
    kind = parts.kind if parts is not None else ""
    return {"segment": 0, "manifest": 1, "dataset": 2}.get(kind, 1)


def _remove(store: ObjectStore, items: list[GcItem]) -> list[GcItem]:
    """Delete segments, then manifests, then documents; return the items whose delete failed."""
    failed: list[GcItem] = []

    def delete(item: GcItem) -> GcItem | None:
        try:
            store.delete(item.key)
        except HdsError as exc:
            return GcItem(item.key, item.size, item.code, item.dataset_id, item.written, str(exc))
        return None

    for rank in (0, 1, 2):
        batch = [i for i in items if _rank(i.key) == rank]
        if not batch:
            continue
        with ThreadPoolExecutor(max_workers=min(_THREADS, len(batch))) as pool:
            failed += [f for f in pool.map(delete, batch) if f is not None]
        if failed and rank < 2:
            # Keep the order promise: nothing later in the order goes while an earlier object stays.
            left = [i for i in items if _rank(i.key) > rank]
            failed += _kept(left, "not removed: an object to remove before it failed")
            break
    return failed


__all__ = ["DEFAULT_GRACE_SECONDS", "GcItem", "GcReport", "gc"]
