"""Datasets in a store: the format marker, name claims, creation, lookup, listing, deletion.

Creating a dataset writes its first log entry, its first version's record and name and its head
(unreachable, so invisible) and then claims the name with a create-only PUT: that claim is the
commit point. Every later change is one log entry (:mod:`hds_s3.format.commit`). Deleting a dataset
is the entry that marks it deleted (the commit point); releasing the name and removing the
dataset's objects follow and are completed by whoever meets them later (a create of the same name
takes over a claim whose dataset is gone; ``gc`` removes what is left).

A store of format 1 (every dataset's tree in one document) is read as before; every write to it
is refused with :class:`~hds_s3.errors.UpgradeRequiredError` until ``hds upgrade`` converts it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    HdsError,
    NotFoundError,
    StorageError,
    UpgradeRequiredError,
    ValidationError,
)
from hds_s3.format import layout
from hds_s3.format.commit import DEFAULT_BUDGET, RetryBudget, commit, create_dataset, current_user
from hds_s3.format.docs import (
    DatasetClaim,
    VersionEntry,
    dump_claim,
    load_json,
    now_ms,
    parse_claim,
)
from hds_s3.format.log import LazyTree, read_head, read_tree
from hds_s3.format.tree import DEFAULT_VERSION_NAME
from hds_s3.format.txn import TreeView, Txn
from hds_s3.model.names import check_id, check_name
from hds_s3.store.base import ObjectStore

log = logging.getLogger(__name__)

R = TypeVar("R")


def marker_bytes(store_format: int) -> bytes:
    """The store marker of a store of ``store_format``."""
    return b'{"format_version":%d,"kind":"hds_s3 store"}' % store_format


def marker_format(data: bytes, key: str) -> int:
    """The store format a marker names.

    Raises:
        CorruptObjectError: naming ``key``, when it is not a marker of a format this hds_s3 knows.
    """
    raw = load_json(data, key)
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version not in (layout.LEGACY_STORE_FORMAT, layout.STORE_FORMAT):
        raise CorruptObjectError(
            f"{key}: the store marker names format {version!r}, which this hds_s3 cannot read; upgrade "
            "hds_s3 if a newer one wrote it, or restore the marker"
        )
    return int(version)


def upgrade_needed(store: ObjectStore, what: str) -> UpgradeRequiredError:
    """The error refusing a write to a store of format 1."""
    return UpgradeRequiredError(
        f"cannot {what}: the store {store.url} is of format {layout.LEGACY_STORE_FORMAT}, which this hds_s3 "
        f"reads but does not write; convert it with `hds upgrade` (a dry run first: `hds upgrade "
        "--dry-run`), then try again"
    )


class Catalog:
    """The datasets of one store. Thread-safe; holds no state but a cache of the format check."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._marker_checked = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- store marker

    def store_format(self) -> int | None:
        """The format the store's marker names, or None for a store nothing was written to yet.

        Raises:
            CorruptObjectError: the marker is damaged or names a format this hds_s3 cannot read.
            StorageError: the store failed.
        """
        try:
            data, _ = self.store.get(layout.STORE_MARKER)
        except NotFoundError:
            return None
        return marker_format(data, layout.STORE_MARKER)

    def ensure_marker(self, what: str = "write to the store") -> None:
        """Create the store's format marker on the first write, or check the one there.

        Raises:
            UpgradeRequiredError: the store is of format 1 (``what`` says what was refused).
            CorruptObjectError: the store was written by an incompatible format.
            StorageError: the store failed.
        """
        if self._marker_checked:
            return
        try:
            self.store.put(layout.STORE_MARKER, marker_bytes(layout.STORE_FORMAT), if_none_match=True)
        except ConflictError:
            data, _ = self.store.get(layout.STORE_MARKER)
            if marker_format(data, layout.STORE_MARKER) != layout.STORE_FORMAT:
                raise upgrade_needed(self.store, what) from None
        with self._lock:
            self._marker_checked = True

    # ----------------------------------------------------------------- lookup

    def _claim(self, name: str) -> tuple[DatasetClaim | None, str | None]:
        key = layout.dataset_claim_key(name)
        try:
            data, etag = self.store.get(key)
        except NotFoundError:
            return None, None
        return parse_claim(data, key), etag

    def _live(self, dataset_id: str | None, version_id: str | None = None) -> TreeView | None:
        if dataset_id is None:
            return None
        try:
            view: TreeView = read_tree(self.store, dataset_id, version_id=version_id)
        except NotFoundError:
            return None
        return None if view.deleted else view

    def get(
        self, name: str | None = None, dataset_id: str | None = None, *, version_id: str | None = None
    ) -> TreeView:
        """Return the dataset with this name or id (exactly one of them), as read now.

        A dataset of format 2 is read as a :class:`~hds_s3.format.log.LazyTree` (its head; version
        records are read when asked for), one of format 1 as its whole document. ``version_id``
        names the version about to be asked for: its record is fetched beside the log's.

        Raises:
            ValidationError: neither or both selectors, or a malformed one.
            NotFoundError: no such dataset.
            CorruptObjectError: its document is damaged.
            StorageError: the store failed.
        """
        if (name is None) == (dataset_id is None):
            raise ValidationError("give exactly one of dataset_name or dataset_id")
        if dataset_id is not None:
            doc = self._live(check_id("dataset", dataset_id), version_id)
            if doc is None:
                raise NotFoundError(f"no dataset with id {dataset_id} in {self.store.url}")
            return doc
        assert name is not None
        check_name("dataset", name)
        claim, _ = self._claim(name)
        doc = self._live(claim.dataset_id if claim else None, version_id)
        if doc is None:
            raise NotFoundError(
                f"no dataset named {name!r} in {self.store.url}; create it with Dataset.create()"
            )
        return doc

    def list(self, name_pattern: str | None = None, tags: list[str] | None = None) -> list[TreeView]:
        """Return the live datasets, sorted by name, filtered by a regex and by tags.

        ``tags`` must all be present; a tag written ``-x`` must be absent.

        A dataset whose name claim or document is damaged is left out of the list, with a warning
        naming the damaged key (logger ``hds_s3.format.catalog``), so that one damaged dataset does not hide
        the others; :meth:`get` on it raises :class:`~hds_s3.errors.CorruptObjectError`.

        Raises:
            ValidationError: ``name_pattern`` is not a valid regular expression.
            StorageError: the store failed.
        """
        try:
            pattern = re.compile(name_pattern) if name_pattern else None
        except re.error as exc:
            raise ValidationError(f"name pattern {name_pattern!r} is not a valid regex: {exc}") from exc
        keys = [info.key for info in self.store.list(layout.DATASET_CLAIMS_PREFIX)]

        def load(key: str) -> TreeView | None:
            try:
                data, _ = self.store.get(key)
            except NotFoundError:
                return None
            try:
                claim = parse_claim(data, key)
                if pattern is not None and not pattern.search(claim.name):
                    return None
                return self._live(claim.dataset_id)
            except CorruptObjectError as exc:
                log.warning(
                    "listing datasets: skipped the dataset claimed by %s, it is damaged: %s", key, exc
                )
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            docs = [d for d in pool.map(load, keys) if d is not None]
        wanted = [t for t in (tags or []) if not t.startswith("-")]
        unwanted = [t[1:] for t in (tags or []) if t.startswith("-")]
        docs = [
            d for d in docs if all(t in d.tags for t in wanted) and not any(t in d.tags for t in unwanted)
        ]
        return sorted(docs, key=lambda d: d.name)

    # ----------------------------------------------------------------- create

    def create(
        self,
        name: str,
        *,
        raise_if_exists: bool = False,
        description: str = "",
        project: str | None = None,
        tags: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> tuple[TreeView, bool]:
        """Get or create the dataset ``name``; a new one holds one empty draft named ``Current``.

        Returns the dataset and whether this call created it.

        Raises:
            AlreadyExistsError: it exists and ``raise_if_exists`` (also a ``ValueError``).
            ValidationError: the name is not valid.
            UpgradeRequiredError: it does not exist and the store is of format 1.
            StorageError: the store failed; nothing visible was created.
        """
        check_name("dataset", name)
        claim, etag = self._claim(name)  # get of an existing dataset: no write at all (read-only works)
        existing = self._live(claim.dataset_id if claim else None)
        if existing is not None:
            if raise_if_exists:
                raise AlreadyExistsError(f"dataset {name!r} already exists in {self.store.url}")
            return existing, False
        self.ensure_marker(f"create dataset {name!r}")
        now = now_ms()
        dataset_id = layout.new_id()
        first = VersionEntry(
            id=layout.new_id(),
            name=DEFAULT_VERSION_NAME,
            parent=None,
            status="draft",
            created=now,
            created_by=current_user(),
        )
        fields = {
            "description": description,
            "project": project,
            "tags": list(tags),
            "metadata": dict(metadata or {}),
            "deleted": False,
        }
        view: TreeView | None = None
        claim_key = layout.dataset_claim_key(name)
        body = dump_claim(DatasetClaim(name=name, dataset_id=dataset_id, txn=layout.new_id()))
        # The claim as read above decides the first attempt: its conditional PUT fails if another
        # creator moved it since, and only then is it read again.
        while True:
            if existing is not None:
                if view is not None:
                    self.remove_objects(
                        layout.dataset_prefix(dataset_id), last=layout.dataset_doc_key(dataset_id)
                    )
                if raise_if_exists:
                    raise AlreadyExistsError(f"dataset {name!r} already exists in {self.store.url}")
                return existing, False
            if view is None:
                view = create_dataset(
                    self.store, dataset_id=dataset_id, name=name, now=now, fields=fields, first=first
                )
            try:
                if etag is None:
                    self.store.put(claim_key, body, if_none_match=True)
                else:
                    self.store.put(claim_key, body, if_match=etag)
            except (ConflictError, NotFoundError):
                claim, etag = self._claim(name)  # another creator moved the claim: look again
                existing = self._live(claim.dataset_id if claim else None)
                continue
            except StorageError:
                now_claim, _ = self._claim(name)
                if now_claim is not None and now_claim.dataset_id == dataset_id:
                    return view, True
                raise
            return view, True

    # ----------------------------------------------------------------- change

    def commit(
        self,
        dataset_id: str,
        change: Callable[[Txn], R],
        *,
        what: str,
        budget: RetryBudget = DEFAULT_BUDGET,
        view: TreeView | None = None,
    ) -> tuple[R, TreeView]:
        """Apply a change to a dataset's tree as one log entry (see :mod:`hds_s3.format.commit`).

        Returns what ``change`` returned and the dataset as the commit left it. ``view``: the
        dataset as the caller just read it, tried first (saves reading it again).

        Raises:
            NotFoundError: the dataset is gone.
            UpgradeRequiredError: the dataset (the store) is of format 1.
            ConflictError: the retry budget ran out.
            StorageError: the store failed.
            HdsError: whatever ``change`` raises.
        """
        try:
            lazy = view if isinstance(view, LazyTree) else None
            result, done = commit(self.store, dataset_id, change, what=what, budget=budget, view=lazy)
        except UpgradeRequiredError:
            raise upgrade_needed(self.store, what) from None
        return result, done.view

    def delete(self, dataset_id: str, change: Callable[[Txn], Any]) -> TreeView:
        """Mark a dataset deleted (the commit point), then release its name and remove its objects.

        Raises:
            NotFoundError: the dataset is gone already.
            UpgradeRequiredError: the store is of format 1.
            ConflictError: the retry budget ran out.
            StorageError: the store failed before the commit point.
            HdsError: whatever ``change`` raises.
        """
        _, view = self.commit(dataset_id, change, what=f"delete dataset {dataset_id}")
        self.release_name(view)
        try:
            head, _ = read_head(self.store, dataset_id)
        except HdsError:
            head = None
        if head is None or not head.deleted:
            # the deletion is committed but its head lags: removing the log now would leave readers
            # nothing to see it by; the next create of the name, fsck --repair or gc completes it
            log.warning("dataset %s deleted; its objects are left for fsck --repair or gc", dataset_id)
            return view
        self.remove_objects(layout.dataset_prefix(dataset_id), last=layout.dataset_doc_key(dataset_id))
        return view

    def release_name(self, doc: TreeView) -> None:
        """Free the name of the deleted dataset ``doc`` if its claim still gives the name to it.

        One compare-and-swap of the name claim to "released"; a claim that another dataset holds,
        or that moved meanwhile, is left alone. A failing store is logged, not raised: the step is
        a roll-forward that a later create of the name (or ``fsck(repair=True)``) completes.

        Raises:
            CorruptObjectError: the name claim is damaged (it names the claim's key).
        """
        try:
            claim, etag = self._claim(doc.name)
            if claim is not None and etag is not None and claim.dataset_id == doc.id:
                released = DatasetClaim(name=doc.name, dataset_id=None, txn=layout.new_id())
                self.store.put(layout.dataset_claim_key(doc.name), dump_claim(released), if_match=etag)
        except (ConflictError, NotFoundError):
            pass  # someone else already moved the claim on
        except StorageError as exc:
            log.warning(
                "dataset %r deleted; releasing its name failed (%s), a later create does it", doc.name, exc
            )

    def remove_objects(self, prefix: str, *, last: str | None = None) -> None:
        """Best-effort removal of objects no document refers to any more (what fails stays for gc).

        ``last`` is removed after everything else under the prefix.
        """
        try:
            keys = [info.key for info in self.store.list(prefix) if info.key != last]
            run: Callable[[str], None] = self.store.delete
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(run, keys))
            if last is not None:
                self.store.delete(last)
        except StorageError as exc:
            log.warning("could not remove everything under %s (%s); gc will", prefix, exc)
