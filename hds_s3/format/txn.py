"""A change of a version tree in the making: reads what it needs, records what it changes.

The tree's rules (:mod:`hds_s3.format.tree`) are functions of a :class:`Txn`. A transaction reads
the versions it needs from a base view (one record at a time from the store, or a whole tree held in
memory), records the versions it creates, changes or removes and the dataset fields it changes, and
keeps the tree's aggregates (:class:`~hds_s3.format.records.Aggregates`) up to date as it goes, so
a rule such as "one draft, one root, no branching" is answered without reading the other versions.
A transaction does no writing: :mod:`hds_s3.format.log` turns it into one log entry.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Protocol

from hds_s3.format.docs import Aggregates, DatasetDoc, VersionEntry
from hds_s3.format.records import DATASET_FIELDS


class TreeView(Protocol):
    """A dataset's tree as read at one moment: a whole document, or records read on demand."""

    @property
    def id(self) -> str:
        """The dataset id."""
        ...

    @property
    def name(self) -> str:
        """The dataset name."""
        ...

    @property
    def description(self) -> str:
        """The dataset description."""
        ...

    @property
    def project(self) -> str | None:
        """The dataset project."""
        ...

    @property
    def tags(self) -> tuple[str, ...]:
        """The dataset tags."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """The dataset metadata (do not change it in place)."""
        ...

    @property
    def deleted(self) -> bool:
        """True once the dataset is deleted."""
        ...

    @property
    def created(self) -> int:
        """Creation time, epoch milliseconds."""
        ...

    @property
    def updated(self) -> int:
        """Time of the newest change of the dataset or any of its versions, epoch milliseconds."""
        ...

    @property
    def format_version(self) -> int:
        """The store format the dataset is kept in (1: one document; 2: a log)."""
        ...

    @property
    def version_count(self) -> int:
        """The number of versions."""
        ...

    @property
    def versions(self) -> tuple[VersionEntry, ...]:
        """Every version, oldest first (a format-2 view reads the whole tree for it)."""
        ...

    def version(self, version_id: str) -> VersionEntry | None:
        """The version with this id, or None."""
        ...

    def head(self) -> VersionEntry | None:
        """The current version: the deepest draft (newest on ties), else the latest published one."""
        ...

    def draft_ids(self) -> list[str]:
        """The ids of the drafts, the current one first."""
        ...

    def children(self, version_id: str | None) -> list[VersionEntry]:
        """The direct children of a version (of None: the roots), oldest first."""
        ...

    def subtree(self, version_id: str) -> list[VersionEntry]:
        """The version and all its descendants."""
        ...

    def depth(self, version_id: str) -> int:
        """The number of ancestors of a version."""
        ...

    def stats_of(self, version_id: str) -> dict[str, Any] | None:
        """The statistics stored with a published version, or None."""
        ...

    def version_named(self, name: str) -> VersionEntry | None:
        """The version with this name, or None."""
        ...

    def aggregates(self) -> Aggregates:
        """The aggregates of the tree."""
        ...

    def whole(self) -> DatasetDoc:
        """The whole tree in memory (reads every version record: for listings and subtree walks)."""
        ...


def _current_key(item: tuple[str, tuple[int, int]]) -> tuple[int, int, str]:
    return item[1][0], item[1][1], item[0]


class Txn:
    """One change of a tree, built on ``base``: the versions it touches and the aggregates after it.

    Reads see the change made so far. Raises nothing itself; the rules that use it raise.
    """

    def __init__(self, base: TreeView) -> None:
        self.base = base
        self.puts: dict[str, VersionEntry] = {}
        self.removed: set[str] = set()
        self.dataset: dict[str, Any] = {}
        agg = base.aggregates()
        self._versions = agg.versions
        self._roots = agg.roots
        self._branching = agg.branching
        self._latest = agg.latest
        self._latest_unknown = False
        self._drafts = dict(agg.drafts)
        self._whole: DatasetDoc | None = None

    # ------------------------------------------------------------------------- reading

    @property
    def id(self) -> str:
        """The dataset id."""
        return self.base.id

    @property
    def name(self) -> str:
        """The dataset name."""
        return self.base.name

    @property
    def tags(self) -> tuple[str, ...]:
        """The dataset tags, with this change's."""
        return tuple(self.dataset.get("tags", self.base.tags))

    @property
    def metadata(self) -> dict[str, Any]:
        """The dataset metadata, with this change's (a copy)."""
        return copy.deepcopy(self.dataset.get("metadata", self.base.metadata))

    @property
    def changed(self) -> bool:
        """True when the change writes anything."""
        return bool(self.puts or self.removed or self.dataset)

    def version(self, version_id: str) -> VersionEntry | None:
        """The version with this id as this change leaves it, or None."""
        if version_id in self.removed:
            return None
        if version_id in self.puts:
            return self.puts[version_id]
        return self.base.version(version_id)

    def version_named(self, name: str) -> VersionEntry | None:
        """The version with this name as this change leaves it, or None."""
        for ver in self.puts.values():
            if ver.name == name:
                return ver
        found = self.base.version_named(name)
        if found is None:
            return None
        now = self.version(found.id)
        return now if now is not None and now.name == name else None

    def aggregates(self) -> Aggregates:
        """The aggregates after this change.

        Raises:
            HdsError: what reading the whole tree raises, when the most recently published version
                was removed or unpublished and the next one must be found.
        """
        if self._latest_unknown:
            self._latest = None
            for ver in self.whole().versions:
                if not ver.is_draft and ver.published is not None:
                    cand = (ver.id, ver.published, ver.created)
                    if self._latest is None or (cand[1], cand[2], cand[0]) > (
                        self._latest[1],
                        self._latest[2],
                        self._latest[0],
                    ):
                        self._latest = cand
            self._latest_unknown = False
        return Aggregates(
            versions=self._versions,
            roots=self._roots,
            branching=self._branching,
            latest=self._latest,
            drafts=dict(self._drafts),
        )

    def draft_ids(self) -> list[str]:
        """The ids of the drafts, the current one (deepest, newest) first."""
        return [vid for vid, _ in sorted(self._drafts.items(), key=_current_key, reverse=True)]

    def whole(self) -> DatasetDoc:
        """The whole tree as this change leaves it (reads every record of the base once).

        Raises:
            HdsError: what reading the tree raises.
        """
        if self._whole is None:
            self._whole = self.base.whole()
        doc = self._whole
        versions = [self.puts.get(v.id, v) for v in doc.versions if v.id not in self.removed]
        known = {v.id for v in doc.versions}
        versions.extend(v for v in self.puts.values() if v.id not in known)
        fields: dict[str, Any] = {k: (tuple(v) if k == "tags" else v) for k, v in self.dataset.items()}
        return replace(doc, versions=tuple(versions), **fields)

    # ------------------------------------------------------------------------- writing

    def put(self, ver: VersionEntry) -> None:
        """Create or change a version (its aggregates follow)."""
        self._account(self.version(ver.id), ver)
        self.removed.discard(ver.id)
        self.puts[ver.id] = ver

    def remove(self, version_id: str) -> None:
        """Remove a version (its parent's child count is the caller's to change)."""
        old = self.version(version_id)
        if old is None:
            return
        self._account(old, None)
        self.puts.pop(version_id, None)
        self.removed.add(version_id)

    def set_dataset(self, **changes: Any) -> None:
        """Change dataset fields (names from :data:`~hds_s3.format.records.DATASET_FIELDS`).

        Raises:
            ValueError: an unknown field (a bug of the caller).
        """
        unknown = set(changes) - set(DATASET_FIELDS)
        if unknown:
            raise ValueError(f"not dataset fields: {sorted(unknown)}")
        self.dataset.update(changes)

    def _account(self, old: VersionEntry | None, new: VersionEntry | None) -> None:
        self._versions += (new is not None) - (old is not None)
        self._roots += (new is not None and new.parent is None) - (old is not None and old.parent is None)
        self._branching += (new is not None and new.children >= 2) - (old is not None and old.children >= 2)
        if old is not None:
            self._drafts.pop(old.id, None)
        if new is not None and new.is_draft:
            self._drafts[new.id] = (new.depth, new.created)
        if (
            old is not None
            and self._latest is not None
            and self._latest[0] == old.id
            and (new is None or new.is_draft)
        ):
            self._latest_unknown = True
        if new is not None and not new.is_draft and new.published is not None and not self._latest_unknown:
            cand = (new.id, new.published, new.created)
            if self._latest is None or (cand[1], cand[2], cand[0]) > (
                self._latest[1],
                self._latest[2],
                self._latest[0],
            ):
                self._latest = cand

    # ------------------------------------------------------------------------- names

    def name_changes(self) -> dict[str, str | None]:
        """The version-name index changes this change makes: each name given or freed."""
        out: dict[str, str | None] = {}
        for vid in sorted(self.removed):
            old = self.base.version(vid)
            if old is not None:
                out[old.name] = None
        for ver in self.puts.values():
            old = self.base.version(ver.id)
            if old is not None and old.name != ver.name:
                out.setdefault(old.name, None)
        for ver in self.puts.values():
            old = self.base.version(ver.id)
            if old is None or old.name != ver.name:
                out[ver.name] = ver.id
        return out
