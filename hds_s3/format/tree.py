"""Transitions of a dataset's version tree as rules over a transaction: check, then record the change.

Each function checks its requirements against the :class:`~hds_s3.format.txn.Txn` it is given (built
on the newest state by :mod:`hds_s3.format.log`) and records the versions it creates, changes or
removes, or raises. They do no I/O of their own (a transaction reads the records it is asked for),
so re-applying one to a newer state after another writer's commit landed first is always a
fresh, correct decision. The rules that concern the whole tree (one draft, one root, no branching
for a snapshot; the current version) are answered from the aggregates the transaction keeps,
never by walking every version.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Protocol

from hds_s3.errors import AlreadyExistsError, HdsError, InvalidStateError, NotFoundError, ValidationError
from hds_s3.format.docs import DRAFT, PUBLISHED, Aggregates, VersionEntry
from hds_s3.format.txn import Txn

DEFAULT_VERSION_NAME = "Current"


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def snapshot_name(at: datetime | None = None) -> str:
    """The default name of a snapshot: ``snapshot YYYY-MM-DDTHH:mm:ss.ffffff`` (UTC)."""
    at = at or datetime.now(timezone.utc)
    return "snapshot " + at.strftime("%Y-%m-%dT%H:%M:%S.%f")


_ID_FORM = re.compile(r"[0-9a-fA-F]{32}")


def check_version_name(doc: _Named, name: str, *, published: bool) -> None:
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


def entry(t: Txn, version_id: str) -> VersionEntry:
    """Return the version with this id.

    Raises:
        NotFoundError: the dataset has no such version.
    """
    found = t.version(version_id)
    if found is None:
        raise NotFoundError(f"dataset {t.name!r} has no version with id {version_id}")
    return found


def _require_free_name(t: Txn, name: str, *, allow: str | None = None) -> None:
    other = t.version_named(name)
    if other is not None and other.id != allow:
        raise AlreadyExistsError(
            f"dataset {t.name!r} already has a version named {name!r} (id {other.id}); choose another name"
        )


def require_draft(t: _Named, ver: VersionEntry, action: str) -> None:
    """Refuse ``action`` on a published version.

    Raises:
        InvalidStateError: naming the version and the dataset, and what to do instead.
    """
    if not ver.is_draft:
        raise InvalidStateError(
            f"cannot {action} version {ver.name!r} of dataset {t.name!r}: it is published and "
            "read-only; create a child version with create_version() and change that"
        )


def add_version(
    t: Txn,
    *,
    version_id: str,
    name: str,
    parent_id: str | None,
    now: int,
    user: str = "",
    comment: str = "",
    metadata: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> VersionEntry:
    """Add a draft version: a root (no parent) or a child of a published parent; return it.

    The child refers to its parent's frame index; nothing is copied.

    Raises:
        AlreadyExistsError: the name is taken in this dataset.
        NotFoundError: the parent does not exist.
        InvalidStateError: the parent is still a draft.
        ValidationError: a name :func:`check_version_name` refuses.
    """
    check_version_name(t, name, published=False)
    _require_free_name(t, name)
    frames: dict[str, Any] = {}
    depth = 0
    if parent_id is not None:
        parent = entry(t, parent_id)
        if parent.is_draft:
            raise InvalidStateError(
                f"cannot create version {name!r} from {parent.name!r} in dataset {t.name!r}: "
                "child versions can only be created from published versions; publish it first"
            )
        frames = dict(parent.frames)
        depth = parent.depth + 1
        t.put(replace(parent, children=parent.children + 1))
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
        depth=depth,
        created_by=user,
    )
    t.put(new)
    return new


#: The statistics a version's record keeps (the rest are stored apart).
COUNTED = ("frames", "annotated", "rois")


def _counted(ver: VersionEntry, stats: dict[str, Any] | None, base: str | None) -> dict[str, int] | None:
    """The counts of ``stats`` if counted from the frames ``ver`` holds (its pointer is ``base``)."""
    if stats is None or ver.frames.get("manifest") != base:
        return None
    return {k: int(stats[k]) for k in COUNTED if isinstance(stats.get(k), int)}


def publish(
    t: Txn,
    version_id: str,
    *,
    now: int,
    user: str = "",
    stats: dict[str, Any] | None = None,
    base: str | None = None,
) -> VersionEntry:
    """Publish a draft: from now on it never changes and may have children; return it.

    The publication freezes the frame index the draft points at when this commit lands; its
    statistics are a function of that index, stored right after (by the publisher, or by whoever
    meets a published version without them), so a publish never waits for frame writers to stop.
    ``stats`` counted from the index ``base``: when the draft still points there, the record keeps
    their :data:`COUNTED` numbers.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: it is published already.
    """
    ver = entry(t, version_id)
    if not ver.is_draft:
        raise InvalidStateError(f"version {ver.name!r} of dataset {t.name!r} is already published")
    published = replace(
        ver, status=PUBLISHED, published=now, published_by=user, counts=_counted(ver, stats, base)
    )
    t.put(published)
    return published


def simple_structure_problem(name: str, agg: Aggregates) -> str | None:
    """Say why a tree is not the simple structure (a chain whose only draft is its leaf), or None.

    Answered from the tree's aggregates: one draft, one root, no version with two children.
    """
    if not agg.drafts:
        return f"dataset {name!r} has no draft version to snapshot"
    if len(agg.drafts) > 1:
        return f"dataset {name!r} has {len(agg.drafts)} draft versions, not one"
    if agg.roots > 1:
        return f"dataset {name!r} has {agg.roots} root versions, not one"
    if agg.branching:
        return (
            f"dataset {name!r} has {agg.branching} version{'s' if agg.branching > 1 else ''} with more "
            "than one child"
        )
    return None


def _structure_detail(t: Txn) -> str | None:
    """Name the versions that break the simple structure (reads the whole tree: for the error only)."""
    try:
        doc = t.whole()
    except HdsError:
        return None
    drafts = [v for v in doc.versions if v.is_draft]
    if len(drafts) > 1:
        names = ", ".join(repr(v.name) for v in drafts[:10])
        return f"dataset {doc.name!r} has {len(drafts)} draft versions ({names}), not one"
    roots = doc.children(None)
    if len(roots) > 1:
        names = ", ".join(repr(v.name) for v in roots[:10])
        return f"dataset {doc.name!r} has {len(roots)} root versions ({names}), not one"
    for ver in doc.versions:
        kids = doc.children(ver.id)
        if len(kids) > 1:
            return f"version {ver.name!r} of dataset {doc.name!r} has {len(kids)} children, not at most one"
    return None


def snapshot(
    t: Txn,
    *,
    child_id: str,
    now: int,
    user: str = "",
    publish_name: str | None = None,
    child_name: str | None = None,
    publish_comment: str | None = None,
    publish_metadata: dict[str, Any] | None = None,
    child_comment: str | None = None,
    child_metadata: dict[str, Any] | None = None,
    draft_id: str | None = None,
    stats: dict[str, Any] | None = None,
    base: str | None = None,
) -> tuple[VersionEntry, VersionEntry]:
    """Publish the only draft under a snapshot name (keeping its id) and add a draft child after it.

    Returns the published version and the new draft. ``draft_id`` pins the draft the caller saw: if
    another writer snapshotted or published it in the meantime, this snapshot is refused instead of
    snapshotting the newer, different draft.

    Raises:
        InvalidStateError: the tree is not the simple structure (the message says why), or the
            draft ``draft_id`` is no longer the draft.
        AlreadyExistsError: ``publish_name`` or ``child_name`` is taken by another version.
        ValidationError: a name :func:`check_version_name` refuses (e.g. a snapshot named ``Current``).
    """
    problem = simple_structure_problem(t.name, t.aggregates())
    if problem is not None:
        problem = _structure_detail(t) or problem
        raise InvalidStateError(
            f"cannot create a snapshot: {problem}. Snapshots need the simple structure (one chain "
            "whose last version is the only draft); use publish_version() and create_version() instead"
        )
    draft = entry(t, t.draft_ids()[0])
    if draft_id is not None and draft.id != draft_id:
        seen = t.version(draft_id)
        raise InvalidStateError(
            f"cannot create a snapshot of dataset {t.name!r}: the draft it was asked for "
            f"({seen.name if seen else draft_id!r}) was published by another writer meanwhile; the "
            f"draft is now {draft.name!r} ({draft.id}); call again to snapshot that one"
        )
    publish_name = publish_name if publish_name is not None else snapshot_name()
    child_name = child_name if child_name is not None else DEFAULT_VERSION_NAME
    if publish_name == child_name:
        raise ValidationError(
            f"dataset {t.name!r}: the snapshot and the new draft cannot both be named {child_name!r}"
        )
    check_version_name(t, publish_name, published=True)
    check_version_name(t, child_name, published=False)
    _require_free_name(t, publish_name, allow=draft.id)
    _require_free_name(t, child_name, allow=draft.id)
    published = replace(
        draft,
        name=publish_name,
        status=PUBLISHED,
        published=now,
        published_by=user,
        counts=_counted(draft, stats, base),
        comment=draft.comment if publish_comment is None else publish_comment,
        metadata=draft.metadata if publish_metadata is None else dict(publish_metadata),
        children=draft.children + 1,
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
        depth=draft.depth + 1,
        created_by=user,
    )
    t.put(published)
    t.put(child)
    return published, child


def rename(t: Txn, version_id: str, name: str) -> None:
    """Rename a version (allowed in any state: a name is a label, not content).

    Raises:
        NotFoundError: no such version.
        AlreadyExistsError: another version has that name.
        ValidationError: a name :func:`check_version_name` refuses.
    """
    ver = entry(t, version_id)
    if name == ver.name:
        return
    check_version_name(t, name, published=not ver.is_draft)
    _require_free_name(t, name, allow=version_id)
    t.put(replace(ver, name=name))


def set_comment(t: Txn, version_id: str, comment: str) -> None:
    """Set a version's comment (allowed in any state).

    Raises:
        NotFoundError: no such version.
    """
    ver = entry(t, version_id)
    if ver.comment != comment:
        t.put(replace(ver, comment=comment))


def set_tags(t: Txn, version_id: str, tags: tuple[str, ...]) -> None:
    """Set a version's tags (allowed in any state).

    Raises:
        NotFoundError: no such version.
    """
    ver = entry(t, version_id)
    if ver.tags != tags:
        t.put(replace(ver, tags=tags))


def set_metadata(t: Txn, version_id: str, metadata: dict[str, Any]) -> None:
    """Replace a draft's metadata.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published.
    """
    ver = entry(t, version_id)
    require_draft(t, ver, "change the metadata of")
    t.put(replace(ver, metadata=metadata))


def merge_metadata(t: Txn, version_id: str, merge: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Apply ``merge`` to a copy of a draft's newest metadata and store what it returns.

    Re-applied to the newer state when the commit retries, so a concurrent change of other keys
    is kept.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published.
        HdsError: whatever ``merge`` raises.
    """
    ver = entry(t, version_id)
    require_draft(t, ver, "change the metadata of")
    t.put(replace(ver, metadata=merge(copy.deepcopy(ver.metadata))))


def set_frames(t: Txn, version_id: str, frames: dict[str, Any], *, allow_published: bool = False) -> None:
    """Point a version at a new frame index (a manifest and its counts).

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published (unless ``allow_published``, for compaction).
    """
    ver = entry(t, version_id)
    if not allow_published:
        require_draft(t, ver, "change the frames of")
    t.put(replace(ver, frames=frames))


def delete_version(t: Txn, version_id: str, *, force: bool = False) -> list[str]:
    """Remove a draft, or with ``force`` a published version together with its whole subtree.

    Returns the ids removed. A draft has no children, so removing one reads nothing else; a
    published version's subtree is found in the whole tree.

    Raises:
        NotFoundError: no such version.
        InvalidStateError: the version is published (or has children) and ``force`` is not set.
    """
    ver = entry(t, version_id)
    if not force:
        if not ver.is_draft:
            raise InvalidStateError(
                f"version {ver.name!r} of dataset {t.name!r} is published; only drafts can be "
                "deleted (pass force=True to delete it and its child versions)"
            )
        if ver.children:
            raise InvalidStateError(
                f"version {ver.name!r} of dataset {t.name!r} has child versions; pass force=True "
                "to delete it with its whole subtree"
            )
    doomed = [ver.id] if not ver.children else [v.id for v in t.whole().subtree(version_id)]
    for vid in doomed:
        t.remove(vid)
    if ver.parent is not None:
        parent = t.version(ver.parent)
        if parent is not None:
            t.put(replace(parent, children=max(0, parent.children - 1)))
    return doomed


def mark_deleted(t: Txn, *, delete_all_versions: bool, force: bool) -> None:
    """Mark the whole dataset deleted, if its versions allow it.

    Without ``delete_all_versions`` only a dataset whose versions are all empty drafts may go;
    with it, every draft may go; published versions need ``force`` as well.

    Raises:
        InvalidStateError: naming the versions that stand in the way and the flag that would allow it.
    """
    versions = t.whole().versions
    published = [v.name for v in versions if not v.is_draft]
    if published and not force:
        raise InvalidStateError(
            f"dataset {t.name!r} has published versions ({', '.join(map(repr, published))}); "
            "pass delete_all_versions=True, force=True to delete it anyway"
        )
    if not delete_all_versions:
        holding = [v.name for v in versions if v.frames.get("manifest") or not v.is_draft]
        if holding:
            raise InvalidStateError(
                f"dataset {t.name!r} has versions with content ({', '.join(map(repr, holding))}); "
                "pass delete_all_versions=True to delete them too"
            )
    t.set_dataset(deleted=True)
