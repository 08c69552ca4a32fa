"""Transitions of a dataset's version tree as pure functions: (document, request) -> new document.

Each function checks its requirements against the document it is given (freshly read by
:mod:`hds_s3.format.commit`) and returns the changed copy, or raises. They do no I/O, so re-applying one to
a newer document after a lost compare-and-swap is always a fresh, correct decision.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from hds_s3.errors import AlreadyExistsError, InvalidStateError, NotFoundError, ValidationError
from hds_s3.format.docs import DRAFT, PUBLISHED, DatasetDoc, VersionEntry

DEFAULT_VERSION_NAME = "Current"


def snapshot_name(at: datetime | None = None) -> str:
    """The default name of a snapshot: ``snapshot YYYY-MM-DDTHH:mm:ss.ffffff`` (UTC)."""
    at = at or datetime.now(timezone.utc)
    return "snapshot " + at.strftime("%Y-%m-%dT%H:%M:%S.%f")


_ID_FORM = re.compile(r"[0-9a-fA-F]{32}")


def check_version_name(doc: DatasetDoc, name: str, *, published: bool) -> None:
    """Refuse a version name that would be read as something else.

    ``Current`` (in any case) names the default draft, the version being worked on: a published
    version of that name would be taken for the current draft. Thirty-two hex digits is the form
    of a version id, and would be taken for one.

    Raises:
        ValidationError: naming the dataset, the name and the reason; nothing is changed.
    """
    if published and name.casefold() == DEFAULT_VERSION_NAME.casefold():
        raise ValidationError(
            f"dataset {doc.name!r}: a published version cannot be named {name!r}: that is the name of "
            "the default draft, and would be taken for the version being worked on; choose another name"
        )
    if _ID_FORM.fullmatch(name):
        raise ValidationError(
            f"dataset {doc.name!r}: a version cannot be named {name!r}: 32 hex digits is the form of a "
            "version id, and would be taken for one; choose another name"
        )


def entry(doc: DatasetDoc, version_id: str) -> VersionEntry:
    """Return the version entry with this id.

    Raises:
        NotFoundError: the dataset has no such version.
    """
    found = doc.version(version_id)
    if found is None:
        raise NotFoundError(f"dataset {doc.name!r} has no version with id {version_id}")
    return found


def _require_free_name(doc: DatasetDoc, name: str, *, allow: str | None = None) -> None:
    other = doc.version_named(name)
    if other is not None and other.id != allow:
        raise AlreadyExistsError(
            f"dataset {doc.name!r} already has a version named {name!r} (id {other.id}); choose another name"
        )


def require_draft(doc: DatasetDoc, ver: VersionEntry, action: str) -> None:
    """Refuse ``action`` on a published version.

    Raises:
        InvalidStateError: naming the version and the dataset, and what to do instead.
    """
    if not ver.is_draft:
        raise InvalidStateError(
            f"cannot {action} version {ver.name!r} of dataset {doc.name!r}: it is published and "
            "read-only; create a child version with create_version() and change that"
        )


def add_version(
    doc: DatasetDoc,
    *,
    version_id: str,
    name: str,
    parent_id: str | None,
    now: int,
    comment: str = "",
    metadata: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> DatasetDoc:
    """Add a draft version: a root (no parent) or a child of a published parent.

    The child refers to its parent's frame index; nothing is copied.

    Raises:
        AlreadyExistsError: the name is taken in this dataset.
        NotFoundError: the parent does not exist.
        InvalidStateError: the parent is still a draft.
        ValidationError: a name :func:`check_version_name` refuses.
    """
    check_version_name(doc, name, published=False)
    _require_free_name(doc, name)
    frames: dict[str, Any] = {}
    if parent_id is not None:
        parent = entry(doc, parent_id)
        if parent.is_draft:
            raise InvalidStateError(
                f"cannot create version {name!r} from {parent.name!r} in dataset {doc.name!r}: "
                "child versions can only be created from published versions; publish it first"
            )
        frames = dict(parent.frames)
    new = VersionEntry(
        id=version_id,
        name=name,
        parent=parent_id,
        status=DRAFT,
        created=now,
        comment=comment,
        metadata=dict(metadata or {}),
        tags=tags,
        frames=frames,
    )
    return doc.with_version(new)


def publish(
    doc: DatasetDoc,
    version_id: str,
    *,
    now: int,
    stats: dict[str, Any] | None = None,
) -> DatasetDoc:
    """Publish a draft: from now on it never changes and may have children.

    The publication freezes the frame index the draft points at when this commit lands; its
    statistics are a function of that index, stored by :func:`set_stats` right after (by the
    publisher, or by whoever meets a published version without them), so a publish never waits
    for frame writers to stop.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: it is published already.
    """
    ver = entry(doc, version_id)
    if not ver.is_draft:
        raise InvalidStateError(f"version {ver.name!r} of dataset {doc.name!r} is already published")
    return doc.with_version(replace(ver, status=PUBLISHED, published=now, stats=stats))


def set_stats(doc: DatasetDoc, version_id: str, stats: dict[str, Any], *, manifest: str | None) -> DatasetDoc:
    """Store the statistics of a published version, computed from its frame index ``manifest``.

    Returns ``doc`` itself (nothing to write) when the version has statistics already, or when its
    frame pointer is no longer ``manifest`` (a compaction moved it to equivalent segments; whoever
    moved it keeps the statistics, which the content determines).

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is a draft (its statistics are computed when asked).
    """
    ver = entry(doc, version_id)
    if ver.is_draft:
        raise InvalidStateError(
            f"version {ver.name!r} of dataset {doc.name!r} is a draft: its statistics are computed "
            "when asked and stored when it is published"
        )
    if ver.stats is not None or ver.frames.get("manifest") != manifest:
        return doc
    return doc.with_version(replace(ver, stats=stats))


def simple_structure_problem(doc: DatasetDoc) -> str | None:
    """Say why the tree is not the simple structure (a chain whose only draft is its leaf), or None."""
    drafts = [v for v in doc.versions if v.is_draft]
    if not drafts:
        return f"dataset {doc.name!r} has no draft version to snapshot"
    if len(drafts) > 1:
        names = ", ".join(repr(v.name) for v in drafts)
        return f"dataset {doc.name!r} has {len(drafts)} draft versions ({names}), not one"
    roots = [v for v in doc.versions if v.parent is None]
    if len(roots) > 1:
        names = ", ".join(repr(v.name) for v in roots)
        return f"dataset {doc.name!r} has {len(roots)} root versions ({names}), not one"
    for ver in doc.versions:  # one pass: the children are indexed once per document
        kids = doc.children(ver.id)
        if len(kids) > 1:
            return f"version {ver.name!r} of dataset {doc.name!r} has {len(kids)} children, not at most one"
    return None


def snapshot(
    doc: DatasetDoc,
    *,
    child_id: str,
    now: int,
    publish_name: str | None = None,
    child_name: str | None = None,
    publish_comment: str | None = None,
    publish_metadata: dict[str, Any] | None = None,
    child_comment: str | None = None,
    child_metadata: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
    draft_id: str | None = None,
) -> DatasetDoc:
    """Publish the only draft under a snapshot name (keeping its id) and add a draft child after it.

    ``draft_id`` pins the draft the caller saw: if another writer snapshotted or published it in the
    meantime, this snapshot is refused instead of snapshotting the newer, different draft.

    Raises:
        InvalidStateError: the tree is not the simple structure (the message says why), or the
            draft ``draft_id`` is no longer the draft.
        AlreadyExistsError: ``publish_name`` or ``child_name`` is taken by another version.
        ValidationError: a name :func:`check_version_name` refuses (e.g. a snapshot named ``Current``).
    """
    problem = simple_structure_problem(doc)
    if problem is not None:
        raise InvalidStateError(
            f"cannot create a snapshot: {problem}. Snapshots need the simple structure (one chain "
            "whose last version is the only draft); use publish_version() and create_version() instead"
        )
    draft = next(v for v in doc.versions if v.is_draft)
    if draft_id is not None and draft.id != draft_id:
        seen = doc.version(draft_id)
        raise InvalidStateError(
            f"cannot create a snapshot of dataset {doc.name!r}: the draft it was asked for "
            f"({seen.name if seen else draft_id!r}) was published by another writer meanwhile; the "
            f"draft is now {draft.name!r} ({draft.id}); call again to snapshot that one"
        )
    publish_name = publish_name if publish_name is not None else snapshot_name()
    child_name = child_name if child_name is not None else DEFAULT_VERSION_NAME
    if publish_name == child_name:
        raise ValidationError(
            f"dataset {doc.name!r}: the snapshot and the new draft cannot both be named {child_name!r}"
        )
    check_version_name(doc, publish_name, published=True)
    check_version_name(doc, child_name, published=False)
    _require_free_name(doc, publish_name, allow=draft.id)
    _require_free_name(doc, child_name, allow=draft.id)
    published = replace(
        draft,
        name=publish_name,
        status=PUBLISHED,
        published=now,
        comment=draft.comment if publish_comment is None else publish_comment,
        metadata=draft.metadata if publish_metadata is None else dict(publish_metadata),
        stats=stats,
    )
    child = VersionEntry(
        id=child_id,
        name=child_name,
        parent=draft.id,
        status=DRAFT,
        created=now,
        comment=child_comment or "",
        metadata=dict(child_metadata or {}),
        tags=draft.tags,
        frames=dict(draft.frames),
    )
    return doc.with_version(published).with_version(child)


def rename(doc: DatasetDoc, version_id: str, name: str) -> DatasetDoc:
    """Rename a version (allowed in any state: a name is a label, not content).

    Raises:
        NotFoundError: no such version.
        AlreadyExistsError: another version has that name.
        ValidationError: a name :func:`check_version_name` refuses.
    """
    ver = entry(doc, version_id)
    if name != ver.name:
        check_version_name(doc, name, published=not ver.is_draft)
    _require_free_name(doc, name, allow=version_id)
    return doc.with_version(replace(ver, name=name))


def set_comment(doc: DatasetDoc, version_id: str, comment: str) -> DatasetDoc:
    """Set a version's comment (allowed in any state).

    Raises:
        NotFoundError: no such version.
    """
    return doc.with_version(replace(entry(doc, version_id), comment=comment))


def set_tags(doc: DatasetDoc, version_id: str, tags: tuple[str, ...]) -> DatasetDoc:
    """Set a version's tags (allowed in any state).

    Raises:
        NotFoundError: no such version.
    """
    return doc.with_version(replace(entry(doc, version_id), tags=tags))


def set_metadata(doc: DatasetDoc, version_id: str, metadata: dict[str, Any]) -> DatasetDoc:
    """Replace a draft's metadata.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published.
    """
    ver = entry(doc, version_id)
    require_draft(doc, ver, "change the metadata of")
    return doc.with_version(replace(ver, metadata=metadata))


def merge_metadata(
    doc: DatasetDoc, version_id: str, merge: Callable[[dict[str, Any]], dict[str, Any]]
) -> DatasetDoc:
    """Apply ``merge`` to a copy of a draft's newest metadata and store what it returns.

    Re-applied to the newer document when the commit retries, so a concurrent change of other
    keys is kept.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published.
        HdsError: whatever ``merge`` raises.
    """
    ver = entry(doc, version_id)
    require_draft(doc, ver, "change the metadata of")
    return doc.with_version(replace(ver, metadata=merge(copy.deepcopy(ver.metadata))))


def delete_version(doc: DatasetDoc, version_id: str, *, force: bool = False) -> tuple[DatasetDoc, list[str]]:
    """Remove a draft, or with ``force`` a published version together with its whole subtree.

    Returns the new document and the ids removed.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published (or has children) and ``force`` is not set.
    """
    ver = entry(doc, version_id)
    doomed = doc.subtree(version_id)
    if not force:
        if not ver.is_draft:
            raise InvalidStateError(
                f"version {ver.name!r} of dataset {doc.name!r} is published; only drafts can be "
                "deleted (pass force=True to delete it and its child versions)"
            )
        if len(doomed) > 1:
            raise InvalidStateError(
                f"version {ver.name!r} of dataset {doc.name!r} has child versions; pass force=True "
                "to delete it with its whole subtree"
            )
    ids = {v.id for v in doomed}
    return replace(doc, versions=tuple(v for v in doc.versions if v.id not in ids)), [v.id for v in doomed]


def mark_deleted(doc: DatasetDoc, *, delete_all_versions: bool, force: bool) -> DatasetDoc:
    """Mark the whole dataset deleted, if its versions allow it.

    Without ``delete_all_versions`` only a dataset whose versions are all empty drafts may go;
    with it, every draft may go; published versions need ``force`` as well.

    Raises:
        InvalidStateError: naming the versions that stand in the way and the flag that would allow it.
    """
    published = [v.name for v in doc.versions if not v.is_draft]
    if published and not force:
        raise InvalidStateError(
            f"dataset {doc.name!r} has published versions ({', '.join(map(repr, published))}); "
            "pass delete_all_versions=True, force=True to delete it anyway"
        )
    if not delete_all_versions:
        holding = [v.name for v in doc.versions if v.frames.get("manifest") or not v.is_draft]
        if holding:
            raise InvalidStateError(
                f"dataset {doc.name!r} has versions with content ({', '.join(map(repr, holding))}); "
                "pass delete_all_versions=True to delete them too"
            )
    return replace(doc, deleted=True)
