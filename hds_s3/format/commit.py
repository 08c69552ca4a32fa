"""The commit point of every transition: one compare-and-swap of a dataset document.

:func:`update_dataset_doc` reads the document, applies a pure change (from :mod:`hds_s3.format.tree`),
and writes it back with ``If-Match``. When another writer got there first, it re-reads and
re-applies the change to the newer document, with jittered exponential backoff and a total budget;
the change re-checks its requirements, so a publish that lost to another publish fails cleanly
instead of publishing twice. When the write's response is lost, the document's ``txn`` tells
whether it landed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity import wait_random_exponential as _wait

from hds_s3.errors import ConflictError, NotFoundError, StorageError
from hds_s3.format import layout
from hds_s3.format.docs import DatasetDoc, dump_dataset_doc, now_ms, parse_dataset_doc
from hds_s3.store.base import ObjectStore

log = logging.getLogger("hds_s3")

Change = Callable[[DatasetDoc], DatasetDoc]


@dataclass(frozen=True)
class RetryBudget:
    """How long a writer keeps re-applying its change while it loses compare-and-swaps."""

    max_attempts: int = 200
    max_seconds: float = 60.0
    first_wait: float = 0.005
    max_wait: float = 0.5


DEFAULT_BUDGET = RetryBudget()


def read_dataset_doc(store: ObjectStore, dataset_id: str) -> tuple[DatasetDoc, str]:
    """Read a dataset document and its etag.

    Raises:
        NotFoundError: the document does not exist.
        CorruptObjectError: it cannot be parsed.
        StorageError: the store failed.
    """
    key = layout.dataset_doc_key(dataset_id)
    data, etag = store.get(key)
    return parse_dataset_doc(data, key), etag


def update_dataset_doc(
    store: ObjectStore,
    dataset_id: str,
    change: Change,
    *,
    what: str,
    budget: RetryBudget = DEFAULT_BUDGET,
) -> DatasetDoc:
    """Apply ``change`` to the dataset document with one conditional PUT; return the new document.

    If ``change`` returns the document it was given, nothing is written.

    Raises:
        NotFoundError: the dataset does not exist or was deleted.
        ConflictError: other writers kept winning until the budget ran out; nothing was changed.
        StorageError: the store failed; the document is as before, or carries this call's change.
        HdsError: whatever ``change`` raises (its requirement failed); nothing was changed.
    """
    key = layout.dataset_doc_key(dataset_id)
    txn = layout.new_id()
    retrying = Retrying(
        retry=retry_if_exception_type(ConflictError),
        stop=stop_after_attempt(budget.max_attempts) | stop_after_delay(budget.max_seconds),
        wait=_wait(multiplier=budget.first_wait, max=budget.max_wait),
        reraise=True,
        before_sleep=lambda state: log.debug(
            "retry: %s lost the compare-and-swap of %s (attempt %d); re-reading",
            what,
            key,
            state.attempt_number,
        ),
    )
    try:
        for attempt in retrying:
            with attempt:
                return _apply_once(store, key, dataset_id, change, txn)
    except ConflictError as exc:
        raise ConflictError(
            f"{what}: gave up after {budget.max_attempts} attempts or {budget.max_seconds:.0f} s of "
            f"conflicting writers on {key} in {store.url}; nothing was changed, try again"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _apply_once(store: ObjectStore, key: str, dataset_id: str, change: Change, txn: str) -> DatasetDoc:
    try:
        doc, etag = read_dataset_doc(store, dataset_id)
    except NotFoundError:
        raise NotFoundError(f"dataset {dataset_id} does not exist in {store.url}") from None
    if doc.txn == txn:
        return doc  # an earlier attempt of this call landed; its response was lost
    if doc.deleted:
        raise NotFoundError(f"dataset {doc.name!r} ({dataset_id}) was deleted")
    new = change(doc)
    if new is doc:
        return doc
    new = replace(new, txn=txn, updated=now_ms())
    try:
        store.put(key, dump_dataset_doc(new), if_match=etag)
    except StorageError:
        # The response may have been lost after the write landed: look before reporting failure.
        try:
            current, _ = read_dataset_doc(store, dataset_id)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            current = None
        if current is not None and current.txn == txn:
            return current
        raise
    return new
