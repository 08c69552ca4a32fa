"""Datasets in a store: name claims, creation, lookup, listing, deletion and its clean-up.

Creating a dataset writes its document first (unreachable, so invisible) and then claims the name
with a create-only PUT: that claim is the commit point. Deleting one flips ``deleted`` in its
document with a compare-and-swap (the commit point); releasing the name and removing the
dataset's objects follow and are completed by whoever meets them later (a create of the same name
takes over a claim whose dataset is gone; ``gc`` removes what is left).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.format import layout
from hds_s3.format.commit import Change, read_dataset_doc, update_dataset_doc
from hds_s3.format.docs import (
    DatasetClaim,
    DatasetDoc,
    dump_claim,
    dump_dataset_doc,
    now_ms,
    parse_claim,
)
from hds_s3.format.tree import DEFAULT_VERSION_NAME, add_version
from hds_s3.model.names import check_id, check_name
from hds_s3.store.base import ObjectStore

log = logging.getLogger(__name__)

_MARKER = b'{"format_version":1,"kind":"hds_s3 store"}'


class Catalog:
    """The datasets of one store. Thread-safe; holds no state but a cache of the format check."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._marker_checked = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- store marker

    def ensure_marker(self) -> None:
        """Create the store's format marker on the first write, or check the one there.

        Raises:
            CorruptObjectError: the store was written by an incompatible format.
            StorageError: the store failed.
        """
        if self._marker_checked:
            return
        try:
            self.store.put(layout.STORE_MARKER, _MARKER, if_none_match=True)
        except ConflictError:
            data, _ = self.store.get(layout.STORE_MARKER)
            if b'"format_version":1' not in data.replace(b" ", b""):
                raise CorruptObjectError(
                    f"{self.store.url}: {layout.STORE_MARKER} names a format this hds_s3 cannot "
                    "write; upgrade hds_s3"
                ) from None
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

    def _live(self, dataset_id: str | None) -> DatasetDoc | None:
        if dataset_id is None:
            return None
        try:
            doc, _ = read_dataset_doc(self.store, dataset_id)
        except NotFoundError:
            return None
        return None if doc.deleted else doc

    def get(self, name: str | None = None, dataset_id: str | None = None) -> DatasetDoc:
        """Return the document of the dataset with this name or id (exactly one of them).

        Raises:
            ValidationError: neither or both selectors, or a malformed one.
            NotFoundError: no such dataset.
            CorruptObjectError: its document is damaged.
            StorageError: the store failed.
        """
        if (name is None) == (dataset_id is None):
            raise ValidationError("give exactly one of dataset_name or dataset_id")
        if dataset_id is not None:
            doc = self._live(check_id("dataset", dataset_id))
            if doc is None:
                raise NotFoundError(f"no dataset with id {dataset_id} in {self.store.url}")
            return doc
        assert name is not None
        check_name("dataset", name)
        claim, _ = self._claim(name)
        doc = self._live(claim.dataset_id if claim else None)
        if doc is None:
            raise NotFoundError(
                f"no dataset named {name!r} in {self.store.url}; create it with Dataset.create()"
            )
        return doc

    def list(self, name_pattern: str | None = None, tags: list[str] | None = None) -> list[DatasetDoc]:
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

        def load(key: str) -> DatasetDoc | None:
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
    ) -> tuple[DatasetDoc, bool]:
        """Get or create the dataset ``name``; a new one holds one empty draft named ``Current``.

        Returns the document and whether this call created it.

        Raises:
            AlreadyExistsError: it exists and ``raise_if_exists`` (also a ``ValueError``).
            ValidationError: the name is not valid.
            StorageError: the store failed; nothing visible was created.
        """
        check_name("dataset", name)
        claim, _ = self._claim(name)  # get of an existing dataset: no write at all (read-only works)
        existing = self._live(claim.dataset_id if claim else None)
        if existing is not None:
            if raise_if_exists:
                raise AlreadyExistsError(f"dataset {name!r} already exists in {self.store.url}")
            return existing, False
        self.ensure_marker()
        now = now_ms()
        dataset_id = layout.new_id()
        empty = DatasetDoc(
            id=dataset_id,
            name=name,
            created=now,
            updated=now,
            description=description,
            project=project,
            tags=tags,
            metadata=dict(metadata or {}),
            txn=layout.new_id(),
        )
        doc = add_version(
            empty, version_id=layout.new_id(), name=DEFAULT_VERSION_NAME, parent_id=None, now=now
        )
        written = False
        claim_key = layout.dataset_claim_key(name)
        body = dump_claim(DatasetClaim(name=name, dataset_id=dataset_id, txn=doc.txn))
        while True:
            claim, etag = self._claim(name)
            existing = self._live(claim.dataset_id if claim else None)
            if existing is not None:
                if written:
                    self._forget(dataset_id)
                if raise_if_exists:
                    raise AlreadyExistsError(f"dataset {name!r} already exists in {self.store.url}")
                return existing, False
            if not written:
                self.store.put(layout.dataset_doc_key(dataset_id), dump_dataset_doc(doc), if_none_match=True)
                written = True
            try:
                if etag is None:
                    self.store.put(claim_key, body, if_none_match=True)
                else:
                    self.store.put(claim_key, body, if_match=etag)
            except (ConflictError, NotFoundError):
                continue  # another creator moved the claim: look again
            except StorageError:
                now_claim, _ = self._claim(name)
                if now_claim is not None and now_claim.dataset_id == dataset_id:
                    return doc, True
                raise
            return doc, True

    def _forget(self, dataset_id: str) -> None:
        try:
            self.store.delete(layout.dataset_doc_key(dataset_id))
        except StorageError as exc:  # garbage for gc, never visible
            log.warning("could not remove unused dataset document %s: %s", dataset_id, exc)

    # ----------------------------------------------------------------- change

    def update(self, dataset_id: str, change: Change, *, what: str) -> DatasetDoc:
        """Apply a pure change to a dataset document with one compare-and-swap (see :mod:`commit`).

        Raises:
            NotFoundError: the dataset is gone.
            ConflictError: the retry budget ran out.
            StorageError: the store failed.
            HdsError: whatever ``change`` raises.
        """
        return update_dataset_doc(self.store, dataset_id, change, what=what)

    def delete(self, dataset_id: str, change: Change) -> DatasetDoc:
        """Mark a dataset deleted (the commit point), then release its name and remove its objects.

        Raises:
            NotFoundError: the dataset is gone already.
            ConflictError: the retry budget ran out.
            StorageError: the store failed before the commit point.
            HdsError: whatever ``change`` raises.
        """
        doc = self.update(dataset_id, change, what=f"delete dataset {dataset_id}")
        self.release_name(doc)
        self.remove_objects(layout.dataset_prefix(dataset_id), last=layout.dataset_doc_key(dataset_id))
        return doc

    def release_name(self, doc: DatasetDoc) -> None:
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
