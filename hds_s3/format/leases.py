"""Write leases: a job's claim that the unreferenced segments of a version are its work in progress.

A distributed ingest writes segments from many workers long before its one commit lists them
(docs/design.md, invariant 1: an unreferenced object is garbage). ``gc`` only removes garbage older
than its grace period, which protects any job shorter than that; a job that may run longer, or a
``gc`` run with a short grace period, needs more. A lease is a small create-only document,
``datasets/<dataset>/leases/<version>/<lease>.json`` (:func:`hds_s3.format.layout.lease_key`), with
an expiry time. While a lease on a version is live (its expiry is after gc's clock), gc removes none
of that version's unreferenced segments and manifests. The holder renews it (a compare-and-swap that
moves the expiry forward) and deletes it when its job has committed or given up; a lease that
expired is garbage like any other object, removed after the grace period.

A lease protects; it never excludes: any number of jobs may hold leases on one version, and commits
never look at them.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Any

from hds_s3.errors import ConflictError, CorruptObjectError, HdsError, NotFoundError, ValidationError
from hds_s3.format import layout
from hds_s3.format.docs import check_digest, dumps_with_digest, load_json, now_ms
from hds_s3.model.names import check_utf8, preview
from hds_s3.store.base import ObjectStore

log = logging.getLogger("hds_s3")

LEASE_KIND = "hds_s3.lease"
#: The longest a lease may be taken or renewed for at once (7 days).
MAX_TTL_SECONDS = 7 * 24 * 3600.0
#: The shortest (a lease shorter than this could expire before its first renewal lands).
MIN_TTL_SECONDS = 1.0


@dataclass(frozen=True)
class LeaseDoc:
    """One stored lease: who holds which version until when (epoch milliseconds)."""

    dataset_id: str
    version_id: str
    lease_id: str
    holder: str
    created: int
    expires: int

    def live(self, at_ms: int) -> bool:
        """Whether the lease still protects its version at ``at_ms``."""
        return self.expires > at_ms


def dump_lease(doc: LeaseDoc) -> bytes:
    """Serialise a lease with its digest."""
    return dumps_with_digest({"format_version": layout.STORE_FORMAT, "kind": LEASE_KIND, **as_dict(doc)})


def parse_lease(data: bytes, key: str) -> LeaseDoc:
    """Parse a stored lease and check it is the one its key names.

    Raises:
        CorruptObjectError: naming ``key``: not a lease, a field of the wrong type, a digest that
            does not match, or ids that differ from the key's.
    """
    raw = load_json(data, key)
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: expected a JSON object (a lease), found {type(raw).__name__}")
    check_digest(raw, key, required=True)
    if raw.get("kind") != LEASE_KIND or raw.get("format_version") != layout.STORE_FORMAT:
        raise CorruptObjectError(f"{key}: not a lease of store format {layout.STORE_FORMAT}")
    strings = ("dataset_id", "version_id", "lease_id", "holder")
    counts = ("created", "expires")
    for name in strings:
        if not isinstance(raw.get(name), str):
            raise CorruptObjectError(f"{key}: the lease's {name} is {preview(raw.get(name))}, not a string")
    for name in counts:
        value = raw.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CorruptObjectError(f"{key}: the lease's {name} is {preview(value)}, not a time in ms")
    doc = LeaseDoc(**{name: raw[name] for name in (*strings, *counts)})
    parts = layout.parse_key(key)
    if parts is None or (parts.dataset_id, parts.version_id, parts.object_id) != (
        doc.dataset_id,
        doc.version_id,
        doc.lease_id,
    ):
        raise CorruptObjectError(f"{key}: the lease names another dataset, version or lease than its key")
    return doc


def check_ttl(ttl_seconds: object) -> int:
    """Return a lease duration in milliseconds.

    Raises:
        ValidationError: not a number of seconds from :data:`MIN_TTL_SECONDS` to :data:`MAX_TTL_SECONDS`.
    """
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, (int, float))
        or not math.isfinite(ttl_seconds)
        or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS
    ):
        raise ValidationError(
            f"a lease lasts from {MIN_TTL_SECONDS:g} to {MAX_TTL_SECONDS:g} seconds, "
            f"got {preview(ttl_seconds)}"
        )
    return int(ttl_seconds * 1000)


def version_leases(store: ObjectStore, dataset_id: str) -> tuple[dict[str, list[LeaseDoc]], set[str]]:
    """The leases on a dataset's versions, by version id, and the versions with an unreadable lease.

    Raises:
        StorageError: the store failed.
    """
    found: dict[str, list[LeaseDoc]] = {}
    unreadable: set[str] = set()
    for info in store.list(layout.lease_prefix(dataset_id)):
        parts = layout.parse_key(info.key)
        if parts is None or parts.kind != "lease" or parts.version_id is None:
            continue
        try:
            doc = parse_lease(store.get(info.key)[0], info.key)
        except NotFoundError:
            continue  # released since the listing
        except CorruptObjectError:
            unreadable.add(parts.version_id)
            continue
        found.setdefault(doc.version_id, []).append(doc)
    return found, unreadable


class Lease:
    """A held write lease on one version (see the module docstring); a context manager.

    ``renew_every`` seconds (default: a third of the duration), a daemon thread renews it for its
    duration again, until :meth:`release`. Leaving the ``with`` block releases it.

    Attributes:
        doc: the lease as last stored.
        error: the error that made the last renewal fail (the lease may then have expired), or None.
    """

    def __init__(
        self, store: ObjectStore, doc: LeaseDoc, etag: str, ttl_ms: int, *, renew_every: float | None
    ) -> None:
        self._store = store
        self.doc = doc
        self._etag = etag
        self._ttl_ms = ttl_ms
        self.error: HdsError | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._released = False
        self._thread: threading.Thread | None = None
        if renew_every is None:
            renew_every = ttl_ms / 3000
        if renew_every > 0:
            self._thread = threading.Thread(
                target=self._renew_loop, args=(renew_every,), name="hds-lease", daemon=True
            )
            self._thread.start()

    @classmethod
    def acquire(
        cls,
        store: ObjectStore,
        dataset_id: str,
        version_id: str,
        *,
        ttl_seconds: float,
        holder: str,
        renew_every: float | None = None,
    ) -> Lease:
        """Take a new lease on a version (one create-only PUT).

        Raises:
            ValidationError: a bad duration or holder.
            StorageError: the store failed; no lease was taken.
        """
        ttl_ms = check_ttl(ttl_seconds)
        if not isinstance(holder, str) or not holder:
            raise ValidationError(f"a lease's holder is a non-empty string, got {preview(holder)}")
        check_utf8("lease holder", holder)
        if len(holder.encode("utf-8")) > 1024:
            raise ValidationError("a lease's holder is at most 1,024 bytes of UTF-8")
        now = now_ms()
        doc = LeaseDoc(dataset_id, version_id, layout.new_id(), holder, now, now + ttl_ms)
        etag = store.put(
            layout.lease_key(dataset_id, version_id, doc.lease_id), dump_lease(doc), if_none_match=True
        )
        return cls(store, doc, etag, ttl_ms, renew_every=renew_every)

    @property
    def key(self) -> str:
        """The lease's object key."""
        return layout.lease_key(self.doc.dataset_id, self.doc.version_id, self.doc.lease_id)

    @property
    def expires(self) -> int:
        """When the lease expires unless renewed (epoch milliseconds)."""
        return self.doc.expires

    def renew(self) -> None:
        """Move the expiry to now plus the lease's duration (a compare-and-swap of the lease).

        Raises:
            ConflictError: the lease is gone (released, or expired and removed by gc) or was changed
                by someone else; it no longer protects anything.
            StorageError: the store failed (the lease stands until its expiry).
        """
        with self._lock:
            if self._released:
                raise ConflictError(f"{self.key}: the lease was released")
            new = replace(self.doc, expires=now_ms() + self._ttl_ms)
            try:
                self._etag = self._store.put(self.key, dump_lease(new), if_match=self._etag)
            except (ConflictError, NotFoundError):
                raise ConflictError(
                    f"{self.key}: the lease was removed or changed by someone else; it no longer protects "
                    "the version's uncommitted segments"
                ) from None
            self.doc = new

    def _renew_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.renew()
                self.error = None
            except HdsError as exc:
                self.error = exc
                log.warning("%s: renewing the lease failed: %s", self.key, exc)
                if isinstance(exc, ConflictError):
                    return

    def release(self) -> None:
        """Stop renewing and delete the lease (idempotent).

        Raises:
            StorageError: the store failed; the lease expires on its own.
        """
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._released:
                return
            self._released = True
        self._store.delete(self.key)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.key!r}, holder={self.doc.holder!r}, expires={self.doc.expires})"


def as_dict(doc: LeaseDoc) -> dict[str, Any]:
    """A lease as JSON-ready data (for reports)."""
    return {
        "dataset_id": doc.dataset_id,
        "version_id": doc.version_id,
        "lease_id": doc.lease_id,
        "holder": doc.holder,
        "created": doc.created,
        "expires": doc.expires,
    }
