"""A frame's history along a version's ancestry: the versions in which it was added, changed or deleted.

A version's frames differ from its parent's only where its own segments (those its manifest lists
beyond the parent's) hold the frame's id, as a row (written in that version: its
``updated_in_version``) or a tombstone. So the frame is looked up in the root and then only in the
versions whose own segments may hold its id; the others inherit the state before them. A version
whose segments are not its parent's plus its own (the parent compacted since) is looked up too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hds_s3.format.docs import VersionEntry
from hds_s3.format.txn import TreeView
from hds_s3.index.frameindex import FrameIndex

ADDED = "added"
CHANGED = "changed"
DELETED = "deleted"
_PROVENANCE = ("saved", "saved_in_version", "updated_in_version")


@dataclass(frozen=True)
class FrameChange:
    """One version in which a frame was ``added``, ``changed`` or ``deleted``.

    ``frame`` is the canonical frame dict as that version holds it (None when deleted).
    """

    version_id: str
    version_name: str
    status: str
    change: str
    frame: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {
            "version_id": self.version_id,
            "version_name": self.version_name,
            "status": self.status,
            "change": self.change,
            "frame": self.frame,
        }


def ancestry(doc: TreeView, entry: VersionEntry) -> list[VersionEntry]:
    """The version's ancestors and the version itself, root first."""
    chain = [entry]
    seen = {entry.id}
    while chain[-1].parent is not None and chain[-1].parent not in seen:
        parent = doc.version(chain[-1].parent)
        if parent is None:
            break
        seen.add(parent.id)
        chain.append(parent)
    return chain[::-1]


def _content(frame: dict[str, Any] | None) -> dict[str, Any] | None:
    if frame is None:
        return None
    return {k: v for k, v in frame.items() if k not in _PROVENANCE}


def _may_touch(own: Sequence[Any], frame_id: str) -> bool:
    for ref in own:
        if ref.rows == 0:
            continue
        if ref.min_id is None or ref.max_id is None or ref.min_id <= frame_id <= ref.max_id:
            return True
    return False


def frame_history(frames: FrameIndex, doc: TreeView, entry: VersionEntry, frame_id: str) -> list[FrameChange]:
    """The versions from the root to ``entry`` in which ``frame_id`` changed, oldest first.

    Raises:
        CorruptObjectError: a manifest or segment is missing or damaged.
    """
    out: list[FrameChange] = []
    state: dict[str, Any] | None = None
    parent_keys: set[str] | None = None
    for version in ancestry(doc, entry):
        refs = frames.refs(version)
        keys = {r.key for r in refs}
        if parent_keys is None or not parent_keys <= keys:
            own: Sequence[Any] = refs  # a root, or the parent's segments were replaced: look it up
        else:
            own = [r for r in refs if r.key not in parent_keys]
        parent_keys = keys
        if not _may_touch(own, frame_id):
            continue
        now = frames.lookup(version, frame_id)
        if _content(now) == _content(state):
            state = now
            continue
        change = ADDED if state is None else DELETED if now is None else CHANGED
        out.append(FrameChange(version.id, version.name, version.status, change, now))
        state = now
    return out
