"""The user-facing ``Dataset`` and ``DatasetVersion``, with the reference's names and signatures.

Every class method takes an optional keyword ``client=`` (from :func:`hds_s3.connect`); without it
the default client is used (``HDS_STORE``, else a local folder). Objects are views of the stored
documents as they were when read; methods that change something write first and then refresh the
view, and ``reload()`` re-reads it.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import socket
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.client import Client, resolve
from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.format import layout, tree
from hds_s3.format.catalog import upgrade_needed
from hds_s3.format.commit import current_user, store_stats
from hds_s3.format.docs import VersionEntry, now_ms
from hds_s3.format.leases import Lease
from hds_s3.format.log import LazyTree, history
from hds_s3.format.txn import TreeView, Txn
from hds_s3.index import arrowin, fieldschema, ingest, segments, twophase, vectors
from hds_s3.index.diff import FrameDiff, diff_segments
from hds_s3.index.frameindex import SEGMENT_ROWS, FrameIndex
from hds_s3.index.history import FrameChange, frame_history
from hds_s3.index.ingest import FailedFrame, check_frames_argument
from hds_s3.index.plan import INLINE_DROP_IDS, PlanStats, ReadPlan, manifest_key, plan_version
from hds_s3.index.twophase import WrittenSegments
from hds_s3.io.uploads import Uploader, known_hashes
from hds_s3.model.frames import FrameGroup, SingleFrame, frame_from_dict
from hds_s3.model.names import (
    check_id,
    check_metadata,
    check_name,
    check_pattern,
    check_tag_filter,
    check_tags,
    check_utf8,
    preview,
)

#: Levels of :meth:`Dataset.format_tree` that are indented (deeper ones say their depth).
TREE_INDENT_LEVELS = 24
#: The tag an archived dataset carries (the reference's system tag of that name).
ARCHIVED_TAG = "archived"


def _strings(what: str, values: object) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError(f"{what} must be a list of strings, got {preview(values)}")
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise ValidationError(f"{what} must be a list of strings, got {preview(out)}")
    return out


log = logging.getLogger(__name__)


def _one_of(kind: str, name: object, ident: object) -> None:
    if name is not None and ident is not None:
        raise ValidationError(f"give {kind}_name or {kind}_id, not both")


def _text(where: str, field: str, value: object, *, optional: bool = True) -> str:
    """A description or comment as stored: a string UTF-8 can encode (None gives "" when ``optional``).

    Raises:
        ValidationError: naming ``where`` and ``field``, when ``value`` is not a string or holds a
            lone surrogate.
    """
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValidationError(
            f"{where}: {field} must be a string, got {type(value).__name__}: {preview(value)}"
        )
    return check_utf8(f"{where}: {field}", value)


def _load(
    client: Client, dataset_name: str | None, dataset_id: str | None, version_id: str | None = None
) -> TreeView:
    _one_of("dataset", dataset_name, dataset_id)
    if dataset_name is None and dataset_id is None:
        raise ValidationError("give dataset_name or dataset_id")
    hint = version_id if isinstance(version_id, str) else None  # a bad one is refused by _find_version
    return client.catalog.get(dataset_name, dataset_id, version_id=hint)


#: Names listed, at most, by the error about a version name that does not exist.
_NAMES_SHOWN = 20


def _find_version(doc: TreeView | Txn, version_name: str | None, version_id: str | None) -> VersionEntry:
    _one_of("version", version_name, version_id)
    if version_id is not None:
        found = doc.version(check_id("version", version_id))
        if found is None:
            raise NotFoundError(f"dataset {doc.name!r} has no version with id {version_id}")
        return found
    if version_name is None:
        raise ValidationError("give version_name or version_id")
    if not isinstance(version_name, str):
        raise ValidationError(
            f"a version name is a string, got {type(version_name).__name__}: {preview(version_name)}"
        )
    found = doc.version_named(version_name)
    if found is None:
        versions = doc.whole().versions
        names = ", ".join(repr(v.name) for v in versions[:_NAMES_SHOWN]) or "none"
        more = f" and {len(versions) - _NAMES_SHOWN} more" if len(versions) > _NAMES_SHOWN else ""
        raise NotFoundError(
            f"dataset {doc.name!r} has no version named {preview(version_name)} (it has: {names}{more})"
        )
    return found


def _entry_of(doc: TreeView, version_id: str) -> VersionEntry:
    found = doc.version(version_id)
    if found is None:
        raise NotFoundError(f"dataset {doc.name!r} has no version with id {version_id} (deleted meanwhile?)")
    return found


def _check_rgb(value: object) -> list[int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        raise ValidationError(f"mask value {preview(value)} is not an (r, g, b) tuple of integers 0..255")
    return list(value)


class _Landed(Exception):
    """Internal: the transaction of a ``commit_segments`` landed meanwhile (another call of it)."""


class _hybrid:  # noqa: N801 - used as a decorator
    """A method callable on the class (``self`` is the class) or on an instance.

    Either way it is a bound method, so ``help()`` and :func:`inspect.signature` show the function's
    own docstring and parameters (without the first one).
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(cast(Any, self), func)  # __doc__, __name__, __wrapped__, ...

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        return types.MethodType(self.func, obj if obj is not None else cls)


def _progress(show: bool, label: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc=label, unit="frame")


class Dataset:
    """A named dataset: description, tags, metadata and a tree of versions.

    Get one with :meth:`create` or :meth:`get`; it is a view of the dataset document as last read.
    """

    def __init__(self, doc: TreeView, client: Client) -> None:
        self._doc = doc
        self._client = client

    # --------------------------------------------------------------- class methods

    @classmethod
    def create(
        cls,
        dataset_name: str,
        dataset_project: str | None = None,
        raise_if_exists: bool = False,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        client: Client | None = None,
    ) -> Dataset:
        """Get or create the dataset ``dataset_name``; a new one holds one empty draft named ``Current``.

        Raises:
            AlreadyExistsError: it exists and ``raise_if_exists`` is set (a ``ValueError``).
            ValidationError: a bad name, tag or metadata key, or a description that is not a string
                (or holds a lone surrogate).
            StorageError: the store failed; nothing was created.
        """
        c = resolve(client)
        doc, _ = c.catalog.create(
            check_name("dataset", dataset_name),
            raise_if_exists=raise_if_exists,
            description=_text(f"dataset {dataset_name!r}", "description", description),
            project=dataset_project,
            tags=check_tags(tags),
            metadata=check_metadata(f"dataset {dataset_name!r}", metadata),
        )
        return cls(doc, c)

    @classmethod
    def get(
        cls, dataset_name: str | None = None, dataset_id: str | None = None, *, client: Client | None = None
    ) -> Dataset:
        """Return the dataset with this name or id.

        Raises:
            NotFoundError: no such dataset.
            ValidationError: neither or both selectors.
        """
        c = resolve(client)
        return cls(_load(c, dataset_name, dataset_id), c)

    @classmethod
    def exists(
        cls,
        dataset_name: str | None = None,
        version_name: str | None = None,
        project_name: str | None = None,
        *,
        dataset_id: str | None = None,
        version_id: str | None = None,
        client: Client | None = None,
    ) -> bool:
        """Tell whether the dataset exists (and, given ``version_name`` or ``version_id``, that version).

        ``project_name``, when given, must be the dataset's project. ``version_id='*'`` asks about
        the dataset only (as the reference).

        Raises:
            ValidationError: neither dataset selector, or both of one kind.
        """
        _one_of("dataset", dataset_name, dataset_id)
        _one_of("version", version_name, version_id)
        try:
            ds = cls.get(dataset_name, dataset_id, client=client)
        except NotFoundError:
            return False
        if project_name is not None and ds.project != project_name:
            return False
        if version_name is None and version_id in (None, "*"):
            return True
        try:
            _find_version(ds._doc, version_name, version_id)
        except NotFoundError:
            return False
        return True

    @classmethod
    def list_datasets(
        cls,
        name_pattern: str | None = None,
        tags: Sequence[str] | None = None,
        *,
        ids: Iterable[str] | None = None,
        project_name: str | None = None,
        recursive_project_search: bool = True,
        include_archived: bool = True,
        client: Client | None = None,
    ) -> list[Dataset]:
        """List datasets whose name matches the regex ``name_pattern`` and that carry all ``tags``.

        A tag written ``-x`` excludes datasets tagged ``x``. ``ids`` keeps only those dataset ids;
        ``project_name`` only datasets of that project (and, with ``recursive_project_search``, of
        its sub-projects ``project_name/...``); ``include_archived=False`` leaves out archived
        datasets (see :meth:`archive`).

        Raises:
            ValidationError: the pattern is not a valid regex, ``tags`` are not tags, or ``ids`` are
                not dataset ids.
        """
        c = resolve(client)
        check_pattern(name_pattern)
        wanted_ids = None if ids is None else {check_id("dataset", i) for i in _strings("ids", ids)}
        if project_name is not None and not isinstance(project_name, str):
            raise ValidationError(f"project_name must be a string, got {preview(project_name)}")
        out = []
        for doc in c.catalog.list(name_pattern, check_tag_filter(tags)):
            if wanted_ids is not None and doc.id not in wanted_ids:
                continue
            if project_name is not None:
                project = doc.project or ""
                if project != project_name and not (
                    recursive_project_search and project.startswith(project_name.rstrip("/") + "/")
                ):
                    continue
            if not include_archived and ARCHIVED_TAG in doc.tags:
                continue
            out.append(cls(doc, c))
        return out

    @classmethod
    def delete(
        cls,
        dataset_name: str | None = None,
        delete_all_versions: bool = False,
        force: bool = False,
        *,
        dataset_id: str | None = None,
        client: Client | None = None,
    ) -> None:
        """Delete a dataset.

        Without flags, only a dataset whose versions are empty drafts; ``delete_all_versions``
        also deletes drafts with frames; ``force`` also deletes published versions.

        Raises:
            NotFoundError: no such dataset.
            InvalidStateError: its versions need a flag that was not given (the message says which).
        """
        c = resolve(client)
        doc = _load(c, dataset_name, dataset_id)
        c.catalog.delete(
            doc.id, lambda d: tree.mark_deleted(d, delete_all_versions=delete_all_versions, force=force)
        )

    # --------------------------------------------------------------- properties

    @property
    def id(self) -> str:
        """The dataset id (32 hex digits)."""
        return self._doc.id

    @property
    def name(self) -> str:
        """The dataset name."""
        return self._doc.name

    @property
    def description(self) -> str:
        """The dataset description."""
        return self._doc.description

    @property
    def project(self) -> str | None:
        """The project given at creation, if any."""
        return self._doc.project

    @property
    def tags(self) -> list[str]:
        """The dataset tags."""
        return list(self._doc.tags)

    @property
    def created(self) -> int:
        """Creation time, epoch milliseconds."""
        return self._doc.created

    @property
    def last_update(self) -> int:
        """Time of the last change to the dataset or any of its versions, epoch milliseconds."""
        return self._doc.updated

    @property
    def version_count(self) -> int:
        """Number of versions."""
        return self._doc.version_count

    @property
    def paradigm(self) -> str:
        """``single_version`` for the simple structure, else ``general`` (as the reference server)."""
        problem = tree.simple_structure_problem(self._doc.name, self._doc.aggregates())
        return "single_version" if problem is None else "general"

    @property
    def client(self) -> Client:
        """The client this dataset was read through."""
        return self._client

    # --------------------------------------------------------------- methods

    def reload(self) -> Dataset:
        """Re-read the dataset document; return self.

        Raises:
            NotFoundError: the dataset was deleted.
        """
        self._doc = self._client.catalog.get(dataset_id=self._doc.id)
        return self

    def _commit(self, change: Callable[[Txn], Any], what: str, *, fresh: bool = False) -> Any:
        """Commit ``change``; ``fresh``: ``self._doc`` was read when the change began (it is built on)."""
        result, self._doc = self._client.catalog.commit(
            self._doc.id, change, what=f"{what} in dataset {self.name!r}", view=self._doc if fresh else None
        )
        return result

    def get_versions(self, only_published: bool = False, only_draft: bool = False) -> list[DatasetVersion]:
        """Return the versions, oldest first.

        Raises:
            ValidationError: both filters set.
        """
        for flag in (only_published, only_draft):
            if not isinstance(flag, int):  # bool is an int; so is 0 or 1 given for it
                raise ValidationError(f"only_published and only_draft are True or False, got {preview(flag)}")
        if only_published and only_draft:
            raise ValidationError("only_published and only_draft cannot both be set")
        self.reload()
        return [
            DatasetVersion(self._doc, v, self._client)
            for v in self._doc.versions
            if not (only_published and v.is_draft) and not (only_draft and not v.is_draft)
        ]

    def get_version(self, version_name: str | None = None, version_id: str | None = None) -> DatasetVersion:
        """Return a version by name or id, or the current one when neither is given.

        Raises:
            NotFoundError: no such version.
        """
        self.reload()
        if version_name is None and version_id is None:
            return self.get_current()
        return DatasetVersion(self._doc, _find_version(self._doc, version_name, version_id), self._client)

    def get_current(self) -> DatasetVersion:
        """Return the current version: the draft farthest from the root (see ``DatasetDoc.head``).

        Raises:
            NotFoundError: the dataset has no versions.
        """
        head = self._doc.head()
        if head is None:
            raise NotFoundError(f"dataset {self.name!r} has no versions; create one with create_version()")
        return DatasetVersion(self._doc, head, self._client)

    def delete_version(
        self, version_name: str | None = None, version_id: str | None = None, force: bool = False
    ) -> None:
        """Delete a draft version; with ``force``, a published one together with its subtree.

        Raises:
            NotFoundError: no such version.
            InvalidStateError: it is published or has children and ``force`` is not set.
        """
        target = _find_version(self.reload()._doc, version_name, version_id)
        removed: list[str] = self._commit(
            lambda t: tree.delete_version(t, target.id, force=force), f"delete version {target.name!r}"
        )
        for vid in removed:
            for prefix in layout.version_prefixes(self.id, vid):
                self._client.catalog.remove_objects(prefix)
            if self._doc.format_version == layout.STORE_FORMAT:
                self._client.catalog.remove_objects(layout.stats_key(self.id, vid))

    def add_tags(self, tags: Iterable[str] | str) -> None:
        """Add dataset tags (existing ones are kept once).

        Raises:
            ValidationError: a bad tag.
        """
        new = check_tags(tags)
        self._commit(lambda t: t.set_dataset(tags=list(check_tags((*t.tags, *new)))), "add tags")

    def remove_tags(self, tags: Iterable[str] | str) -> None:
        """Remove dataset tags (absent ones are ignored).

        Raises:
            ValidationError: a bad tag.
        """
        gone = set(check_tags(tags))
        self._commit(lambda t: t.set_dataset(tags=[x for x in t.tags if x not in gone]), "remove tags")

    def archive(self) -> None:
        """Archive the dataset: it carries the tag ``archived`` (hds_s3 has no separate system tags).

        ``list_datasets(include_archived=False)`` leaves it out; nothing else changes.
        """
        self.add_tags([ARCHIVED_TAG])

    def unarchive(self) -> None:
        """Undo :meth:`archive`."""
        self.remove_tags([ARCHIVED_TAG])

    @property
    def archived(self) -> bool:
        """Whether the dataset is archived (carries the tag ``archived``)."""
        return ARCHIVED_TAG in self._doc.tags

    def set_tags(self, tags: Iterable[str] | None) -> None:
        """Replace the dataset tags.

        Raises:
            ValidationError: a bad tag.
        """
        new = check_tags(tags)
        self._commit(lambda t: t.set_dataset(tags=list(new)), "set tags")

    def set_description(self, description: str) -> None:
        """Replace the dataset description.

        Raises:
            ValidationError: not a string, or it holds a lone surrogate.
        """
        description = _text(f"dataset {self.name!r}", "description", description, optional=False)
        self._commit(lambda t: t.set_dataset(description=description), "set description")

    def get_metadata(self) -> dict[str, Any]:
        """Return a copy of the dataset-level metadata, freshly read."""
        return copy.deepcopy(self.reload()._doc.metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """Replace the dataset-level metadata; returns True.

        Raises:
            ValidationError: not a dict, a key with ``$`` or ``.``, or a value that is not JSON.
        """
        clean = check_metadata(f"dataset {self.name!r}", metadata)
        self._commit(lambda t: t.set_dataset(metadata=clean), "set metadata")
        return True

    def get_schema(self) -> dict[str, dict[str, Any]]:
        """Return the type of every ``meta`` path the frames of any version use (the dataset's schema).

        As :meth:`DatasetVersion.get_schema`, over every version (frame counts added up); a path
        holding several types shows them all.

        Raises:
            CorruptObjectError: a segment is missing or damaged.
        """
        return fieldschema.describe(fieldschema.union(v._meta_types() for v in self.get_versions()))

    def get_history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return the newest changes of this dataset's tree, newest first: who did what, and when.

        Each is ``{"seq", "time" (epoch ms), "user", "what", "versions": [names created or
        changed], "removed": [ids]}``. The history goes back as far as the log is kept (``gc`` removes
        entries a checkpoint folded once they are older than its grace period). A store of format 1
        has no history: ``[]``.

        Raises:
            ValidationError: ``limit`` is not a positive integer.
            CorruptObjectError: a log entry is damaged.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"get_history: limit must be a positive integer, got {limit!r}")
        view = self.reload()._doc
        if not isinstance(view, LazyTree):
            return []
        return [
            {
                "seq": e.seq,
                "time": e.time,
                "user": e.user,
                "what": e.what,
                "versions": [v.name for v in e.versions],
                "removed": list(e.removed),
            }
            for e in history(self._client.store, view.state, limit)
        ]

    def format_tree(self) -> str:
        """Render the version tree as text, one version a line, children indented under parents.

        Versions deeper than ``TREE_INDENT_LEVELS`` are indented as deep as that and marked with
        their depth, so the text of a long chain grows linearly with it.
        """
        doc = self._doc.whole()
        head = doc.head()
        lines = [f"{doc.name} ({doc.id})"]

        # depth-first with an explicit stack (a chain may be thousands of versions deep); deeper
        # than TREE_INDENT_LEVELS, lines keep that indentation and say their depth instead
        stack = [(ver, 1) for ver in reversed(doc.children(None))]
        while stack:
            ver, level = stack.pop()
            mark = " <- current" if head is not None and ver.id == head.id else ""
            deep = f"[depth {level}] " if level > TREE_INDENT_LEVELS else ""
            indent = "  " * min(level, TREE_INDENT_LEVELS)
            lines.append(f"{indent}- {deep}{ver.name} [{ver.status}] {ver.id}{mark}")
            stack.extend((kid, level + 1) for kid in reversed(doc.children(ver.id)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, id={self.id!r}, versions={self.version_count})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dataset) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _plain_id(value: object) -> bool:
    """True for a frame id that can be looked up as it is (non-empty text UTF-8 can encode).

    Anything else is normalised first, which says what is wrong with it.
    """
    if not isinstance(value, str) or not value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DatasetVersion:
    """One version of a dataset: Draft (editable) or Published (read-only, may have children)."""

    def __init__(self, doc: TreeView, entry: VersionEntry, client: Client) -> None:
        self._doc = doc
        self._entry = entry
        self._client = client

    # --------------------------------------------------------------- class methods

    @classmethod
    def create_new_dataset(
        cls,
        dataset_name: str,
        dataset_project: str | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        raise_if_exists: bool = False,
        *,
        client: Client | None = None,
    ) -> DatasetVersion:
        """Get or create a dataset, as :meth:`Dataset.create`, and return its current version.

        Raises:
            AlreadyExistsError: it exists and ``raise_if_exists`` is set (a ``ValueError``).
            ValidationError: a bad name, tag or description.
        """
        ds = Dataset.create(
            dataset_name,
            dataset_project=dataset_project,
            raise_if_exists=raise_if_exists,
            tags=tags,
            description=description,
            client=client,
        )
        return ds.get_current()

    @classmethod
    def get_current(
        cls, dataset_name: str | None = None, dataset_id: str | None = None, *, client: Client | None = None
    ) -> DatasetVersion:
        """Return the dataset's current version (the draft farthest from the root).

        Raises:
            NotFoundError: no such dataset, or it has no versions.
        """
        return Dataset.get(dataset_name, dataset_id, client=client).get_current()

    @classmethod
    def get_version(
        cls,
        dataset_name: str | None = None,
        version_name: str | None = None,
        dataset_id: str | None = None,
        version_id: str | None = None,
        *,
        client: Client | None = None,
    ) -> DatasetVersion:
        """Return a version by name or id; without either, the current one (warning if there are several).

        Raises:
            NotFoundError: no such dataset or version.
            ValidationError: conflicting selectors.
        """
        c = resolve(client)
        ds = Dataset(_load(c, dataset_name, dataset_id, version_id), c)
        if version_name is None and version_id is None:
            if ds.version_count > 1:
                warnings.warn(
                    f"dataset {ds.name!r} has {ds.version_count} versions and no version was named; "
                    "returning the current one",
                    UserWarning,
                    stacklevel=2,
                )
            return ds.get_current()
        # the dataset was read just now: pick the version from that document (no second read)
        return DatasetVersion(ds._doc, _find_version(ds._doc, version_name, version_id), ds._client)

    @classmethod
    def get_versions(
        cls,
        dataset_name: str | None = None,
        only_published: bool = False,
        only_draft: bool = False,
        dataset_id: str | None = None,
        *,
        client: Client | None = None,
    ) -> list[DatasetVersion]:
        """Return the dataset's versions, oldest first, optionally only published or only drafts.

        Raises:
            NotFoundError: no such dataset.
            ValidationError: both filters set.
        """
        return Dataset.get(dataset_name, dataset_id, client=client).get_versions(only_published, only_draft)

    @classmethod
    def get_datasets(
        cls,
        name_pattern: str | None = None,
        tags: Sequence[str] | None = None,
        *,
        client: Client | None = None,
    ) -> list[Dataset]:
        """List datasets (see :meth:`Dataset.list_datasets`).

        Raises:
            ValidationError: the pattern is not a valid regex.
        """
        return Dataset.list_datasets(name_pattern, tags, client=client)

    @_hybrid
    def create_version(
        self_or_cls: Any,
        dataset_name: str | None = None,
        version_name: str | None = None,
        parent_version_names: Sequence[str] | str | None = None,
        raise_if_exists: bool = False,
        dataset_id: str | None = None,
        parent_version_ids: Sequence[str] | str | None = None,
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        *,
        client: Client | None = None,
    ) -> DatasetVersion:
        """Get or create a version: a child of one published parent (inheriting its frames) or a root.

        Called on a version (``ds.create_version(version_name=...)``, as the reference's registration
        examples do on what ``create_new_dataset`` returns), the dataset is that version's and,
        without a parent given, the new version is a child of this one when it is published, else
        a root version (a draft has no children).

        Raises:
            AlreadyExistsError: the name exists and ``raise_if_exists`` is set (a ``ValueError``).
            NotFoundError: no such dataset or parent.
            InvalidStateError: the parent is a draft.
            ValidationError: a bad name, tag, metadata or comment, several parents, or both parent
                selectors.
        """
        if version_name is None:
            raise ValidationError("create_version needs a version_name")
        check_name("version", version_name)
        cls = DatasetVersion
        if isinstance(self_or_cls, DatasetVersion):
            if dataset_name is None and dataset_id is None:
                dataset_id = self_or_cls.dataset_id
            if client is None:
                client = self_or_cls.client
            if parent_version_names is None and parent_version_ids is None and self_or_cls.is_published:
                parent_version_ids = self_or_cls.id
        elif isinstance(self_or_cls, type) and issubclass(self_or_cls, DatasetVersion):
            cls = self_or_cls
        parents = _one_parent(parent_version_names, parent_version_ids)
        ds = Dataset.get(dataset_name, dataset_id, client=client)
        clean_meta = check_metadata(f"version {version_name!r}", metadata)
        clean_tags = check_tags(tags)
        clean_comment = _text(f"version {version_name!r}", "comment", comment)
        new_id = layout.new_id()
        user = current_user()
        if isinstance(ds._doc, LazyTree):  # what the rules below read, read at once
            by_id = [parents[1]] if parents is not None and parents[0] == "id" else []
            by_name = [parents[1]] if parents is not None and parents[0] == "name" else []
            ds._doc.fetch_ahead(records=[new_id, *by_id], names=[version_name, *by_name])

        def change(t: Txn) -> VersionEntry:
            existing = t.version_named(version_name)
            if existing is not None:
                if raise_if_exists:
                    raise AlreadyExistsError(
                        f"dataset {t.name!r} already has a version named {version_name!r} (id {existing.id})"
                    )
                return existing
            parent_id = None
            if parents is not None:
                kind, value = parents
                parent_id = _find_version(
                    t, value if kind == "name" else None, value if kind == "id" else None
                ).id
            return tree.add_version(
                t,
                version_id=new_id,
                name=version_name,
                parent_id=parent_id,
                now=now_ms(),
                user=user,
                comment=clean_comment,
                metadata=clean_meta,
                tags=clean_tags,
            )

        entry: VersionEntry = ds._commit(change, f"create version {version_name!r}", fresh=True)
        return cls(ds._doc, entry, ds.client)

    @classmethod
    def create_snapshot(
        cls,
        dataset_name: str | None = None,
        publish_name: str | None = None,
        child_name: str | None = None,
        child_metadata: Mapping[str, Any] | None = None,
        child_comment: str | None = None,
        dataset_id: str | None = None,
        publish_comment: str | None = None,
        publish_metadata: Mapping[str, Any] | None = None,
        version_id: str | None = None,
        *,
        client: Client | None = None,
    ) -> DatasetVersion:
        """Snapshot the only draft: it keeps its id and is published; a new draft child becomes current.

        The snapshot is named ``publish_name`` or ``snapshot <UTC ISO-8601 time>``; the child is
        named ``child_name`` or ``Current``. Returns the new current draft.

        The snapshot is pinned to the draft this call finds when it starts, or to ``version_id``
        when given (the draft the caller means): if another writer snapshots or publishes that draft
        first, this call fails instead of snapshotting the newer draft.

        Raises:
            InvalidStateError: the dataset is not in the simple structure (the message says why), or
                the pinned draft was snapshotted or published by another writer.
            AlreadyExistsError: a requested name is taken.
            NotFoundError: no such dataset.
            ValidationError: a bad name, metadata or comment.
        """
        for name in (publish_name, child_name):
            if name is not None:
                check_name("version", name)
        for field, text in (("publish_comment", publish_comment), ("child_comment", child_comment)):
            if text is not None:
                _text("snapshot", field, text)
        cmeta = (
            check_metadata("snapshot child_metadata", child_metadata) if child_metadata is not None else None
        )
        pmeta = (
            check_metadata("snapshot publish_metadata", publish_metadata)
            if publish_metadata is not None
            else None
        )
        ds = Dataset.get(dataset_name, dataset_id, client=client)
        seen = [check_id("version", version_id)] if version_id is not None else ds._doc.draft_ids()
        child_id = layout.new_id()
        pinned = seen[0] if len(seen) == 1 else None
        # One commit publishes the draft (freezing its frames) and adds the child; the statistics
        # are counted before, as for publish_version, and again after it if frames landed meanwhile.
        draft = ds._doc.version(pinned) if pinned is not None else None
        stats = (
            DatasetVersion(ds._doc, draft, ds.client)._count(draft)
            if draft is not None and draft.is_draft
            else None
        )
        base = draft.frames.get("manifest") if draft is not None else None
        user = current_user()
        published_entry, child_entry = ds._commit(
            lambda t: tree.snapshot(
                t,
                child_id=child_id,
                now=now_ms(),
                user=user,
                publish_name=publish_name,
                child_name=child_name,
                publish_comment=publish_comment,
                publish_metadata=pmeta,
                child_comment=child_comment,
                child_metadata=cmeta,
                draft_id=pinned,
                stats=stats,
                base=base,
            ),
            "create snapshot",
        )
        doc = ds._doc
        published = DatasetVersion(doc, published_entry, ds.client)
        unmoved = stats is not None and published_entry.frames.get("manifest") == base
        published._after_publication(stats if unmoved else None, child_id=child_id)
        if published._doc.version(child_id) is not None:  # else deleted meanwhile: keep ours
            doc = published._doc
        return cls(doc, _entry_of(doc, child_id) if doc.version(child_id) else child_entry, ds.client)

    # --------------------------------------------------------------- properties

    @property
    def id(self) -> str:
        """The version id (32 hex digits); a snapshot keeps the id its draft had."""
        return self._entry.id

    version_id = id

    @property
    def name(self) -> str:
        """The version name."""
        return self._entry.name

    version_name = name

    @property
    def dataset_id(self) -> str:
        """The id of the dataset this version belongs to."""
        return self._doc.id

    @property
    def dataset_name(self) -> str:
        """The name of the dataset this version belongs to."""
        return self._doc.name

    @property
    def dataset(self) -> Dataset:
        """The dataset this version belongs to (as read with this version)."""
        return Dataset(self._doc, self._client)

    @property
    def parent_id(self) -> str | None:
        """The parent version's id, or None for a root version."""
        return self._entry.parent

    @property
    def status(self) -> str:
        """``draft`` or ``published``."""
        return self._entry.status

    @property
    def is_draft(self) -> bool:
        """True while the version can change."""
        return self._entry.is_draft

    @property
    def is_published(self) -> bool:
        """True once the version is read-only."""
        return not self._entry.is_draft

    @property
    def comment(self) -> str:
        """The version comment."""
        return self._entry.comment

    @property
    def tags(self) -> list[str]:
        """The version tags."""
        return list(self._entry.tags)

    @property
    def created(self) -> int:
        """Creation time, epoch milliseconds."""
        return self._entry.created

    @property
    def published(self) -> int | None:
        """Publication time, epoch milliseconds, or None for a draft."""
        return self._entry.published

    @property
    def stored_stats(self) -> dict[str, Any] | None:
        """The statistics stored with this published version, as last read; None for a draft.

        Also None for a version whose publication has landed but whose statistics were not stored
        yet (the publisher stopped in between): :meth:`get_stats` computes and stores them.

        Raises:
            CorruptObjectError: the stored statistics are damaged.
        """
        if self._entry.is_draft:
            return None
        stats = self._doc.stats_of(self._entry.id)
        return copy.deepcopy(stats) if stats is not None else None

    @property
    def published_counts(self) -> dict[str, int] | None:
        """Frames, annotated frames and ROIs of a published version, kept with it; None when not kept.

        Its whole statistics are :meth:`get_stats`; these few numbers come with the version itself,
        so a listing of many versions shows them without a read per version.
        """
        return dict(self._entry.counts) if self._entry.counts is not None else None

    @property
    def created_by(self) -> str:
        """Who created this version (``HDS_USER`` or the OS user of the process; "" when not recorded)."""
        return self._entry.created_by

    @property
    def published_by(self) -> str | None:
        """Who published this version, or None (a draft, or not recorded)."""
        return self._entry.published_by

    @property
    def client(self) -> Client:
        """The client this version was read through."""
        return self._client

    # --------------------------------------------------------------- methods

    def reload(self) -> DatasetVersion:
        """Re-read this version; return self.

        Raises:
            NotFoundError: the dataset or the version was deleted.
        """
        self._doc = self._client.catalog.get(dataset_id=self._doc.id, version_id=self._entry.id)
        self._entry = _entry_of(self._doc, self._entry.id)
        return self

    def _update(self, change: Callable[[Txn, str], Any], what: str, *, fresh: bool = False) -> Any:
        """Commit ``change`` to this version; ``fresh``: ``self._doc`` was read when the change began."""
        vid = self._entry.id
        result, self._doc = self._client.catalog.commit(
            self._doc.id,
            lambda t: change(t, vid),
            what=f"{what} of version {self.name!r} in {self.dataset_name!r}",
            view=self._doc if fresh else None,
        )
        self._entry = _entry_of(self._doc, vid)
        return result

    def get_parent(self) -> DatasetVersion | None:
        """Return the parent version, or None for a root.

        Raises:
            NotFoundError: the parent was deleted meanwhile.
        """
        if self._entry.parent is None:
            return None
        return DatasetVersion(self._doc, _entry_of(self._doc, self._entry.parent), self._client)

    def get_children(self) -> list[DatasetVersion]:
        """Return the direct child versions, oldest first (freshly read)."""
        self.reload()
        return [DatasetVersion(self._doc, v, self._client) for v in self._doc.children(self.id)]

    def publish_version(self, *, stats: PlanStats | None = None) -> DatasetVersion:
        """Publish this draft; it becomes read-only and may have children. Returns self.

        Its statistics (see :meth:`get_stats`) are computed and stored with it; ``stats`` counted
        elsewhere (by workers over a read plan: ``hds_s3.ray.count_stats``, ``hds_s3.dask.count_stats``)
        are used instead when they count the manifest the draft points at (else they are counted
        here). Then, once it is
        published, it may be compacted (see ``FrameIndex.compaction_due``): rewritten whole when its
        segments carry many dead rows (replaced or deleted ones, which a chain of children
        accumulates), or, with more than ``COMPACT_SEGMENTS`` segments, the run of small segments at
        its end merged at a cost that follows the deltas. Children keep the segments they reference;
        a failure here leaves the version published and readable through its former segments.

        Raises:
            InvalidStateError: it is published already (e.g. another process won the race).
            NotFoundError: it was deleted.
        """
        if stats is not None and not isinstance(stats, PlanStats):
            raise ValidationError(
                f"publish_version: stats are PlanStats (counted over a read plan), got {preview(stats)}"
            )
        self.reload()
        if not self.is_draft:
            raise InvalidStateError(
                f"version {self.name!r} of dataset {self.dataset_name!r} is already published"
            )
        # The statistics are counted first (damaged frames fail the publish before it lands); the
        # commit then freezes whatever the draft holds when it lands: frame writers racing it fail
        # from then on, so a steady writer cannot keep the publication from landing. If frames
        # landed while they were counted, they are in, and their statistics are counted after.
        base = self._entry.frames.get("manifest")
        if stats is not None and stats.manifest == manifest_key(self._entry):
            counted = copy.deepcopy(stats.stats)  # counted by workers over this very manifest
        else:
            counted = self._count(self._entry)
        user = current_user()
        self._update(
            lambda t, vid: tree.publish(t, vid, now=now_ms(), user=user, stats=counted, base=base),
            "publish",
            fresh=True,  # read above, before the count
        )
        self._after_publication(counted if self._entry.frames.get("manifest") == base else None)
        return self

    def _count(self, entry: VersionEntry) -> dict[str, Any]:
        """Count the statistics of ``entry``, reading as little as it can.

        Its published parent's stored statistics plus its own changes when that reads less than
        counting it whole (a small delta); else counted whole.

        Raises:
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        if entry.parent is not None and isinstance(self._doc, LazyTree):
            self._doc.fetch_ahead(stats=[entry.parent])  # beside the parent's record: one round trip
        parent = self._doc.version(entry.parent) if entry.parent is not None else None
        if parent is not None and not parent.is_draft:
            before = self._doc.stats_of(parent.id)
            if before is not None:
                after = self._frames.stats_after(parent, before, entry)
                if after is not None:
                    return after
        return self._frames.stats(entry)

    def _store_stats(self, counted: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the statistics of this published version, computing and storing them if none are.

        ``counted`` are statistics counted from the very frame index the publication froze. The
        statistics are a function of that index, so whoever stores them (the publisher, a later
        reader) stores the same, once (a create-only object). A store that refuses the write (read
        only, failing, or of format 1, which is not written) leaves them to be computed again.

        Raises:
            CorruptObjectError: a segment is missing or damaged, or the stored statistics are.
            StorageError: the store failed while the frames were read.
        """
        if counted is None:
            stored = self._doc.stats_of(self.id)
            if stored is not None:
                return copy.deepcopy(stored)
        # counted by the publication: its create-only write tells whether they are stored already
        # (then they are these: a function of the frozen frames), so there is nothing to read first
        stats = counted if counted is not None else self._count(self._entry)
        if self._doc.format_version == layout.STORE_FORMAT:
            try:
                store_stats(self._client.store, self.dataset_id, self.id, stats)
            except StorageError as exc:
                log.warning("statistics of version %r were computed but not stored: %s", self.name, exc)
        return copy.deepcopy(stats)

    def _after_publication(self, counted: dict[str, Any] | None = None, child_id: str | None = None) -> None:
        """Store the statistics of the version just published, then compact it if due.

        ``counted``: the statistics counted before the publication, when it froze the very frames
        they count. ``child_id``: the draft a snapshot created after it, moved along to the
        compacted segments.

        It never raises: the publication has landed, and a caller told "failed" must never find the
        version published. What fails here (the store, damage) is logged; the statistics are then
        computed when next asked, and the version reads through its segments as they are.
        """
        try:
            stats = self._store_stats(counted)
        except HdsError as exc:
            log.warning(
                "version %r of dataset %r is published; computing its statistics failed and is left "
                "for the next get_stats(): %s",
                self.name,
                self.dataset_id,
                exc,
            )
            return
        self._compact_if_due(stats["frames"], child_id)

    def _compact_if_due(self, live: int, child_id: str | None = None) -> None:
        """Compact this just-published version if it is due, and move its draft children along.

        See ``FrameIndex.compaction_due``. A draft child created on the former segments (a
        snapshot's new draft) is then pointed at the compacted ones followed by its own, so a chain
        of snapshots stays short to read; its frames do not change. A child published or deleted
        meanwhile keeps what it has.

        It never raises: it runs after the publication has landed, so a failure (the store, or a
        concurrent writer deleting the version) is logged as a warning and the version stays
        readable through its former segments; the caller's publish or snapshot has succeeded.
        """
        try:
            self._compact(live, child_id)
        except HdsError as exc:  # the publication stands; only the tidying is left undone
            log.warning(
                "version %r of dataset %r is published; compacting it failed and was skipped: %s",
                self.name,
                self.dataset_id,
                exc,
            )

    def _compact(self, live: int, child_id: str | None) -> None:
        """The work of :meth:`_compact_if_due`; raises what the store or a concurrent writer causes."""
        due = self._frames.compaction_due(self._entry, live)
        if due is None:
            return
        clean = self._frames.dead_rows(self._entry, live) == 0  # no id twice: all disjoint
        old = self._frames.refs(self._entry)
        merged: Sequence[Any] | None
        if due == "full":
            merged = self._frames.compacted_refs(self.dataset_id, self._entry)
            clean = True
        elif due == "tail":
            merged = self._frames.tail_compacted_refs(self.dataset_id, self._entry)
            if merged is None and clean:
                merged = old
        else:
            merged = old
        if merged is None:
            return
        what = {"full": "compact", "tail": "merge the small segments of", "mark": "mark the segments of"}[due]
        self._replace_segments(merged, what, known=[(merged, len(merged))] if clean else ())
        new = tuple(merged)
        manifest = self._frames.manifest(self._entry)
        known = [(new, manifest.disjoint if manifest is not None else 0)]
        child = self._doc.version(child_id) if child_id is not None else None
        if child is not None and child.parent == self.id and child.is_draft:
            if self._frames.refs(child)[: len(old)] != old:
                return

            def rebase(entry: VersionEntry) -> Sequence[Any]:
                refs = self._frames.refs(entry)
                return (*new, *refs[len(old) :]) if refs[: len(old)] == old else refs

            try:
                self._doc = self._frames.commit_pointer(
                    self.dataset_id,
                    child.id,
                    rebase,
                    what=f"rebase {child.name!r} on compacted {self.name!r}",
                    known=known,
                )
            except (InvalidStateError, NotFoundError):
                return
            self._entry = _entry_of(self._doc, self.id)

    def commit_version(self, publish: bool = False) -> DatasetVersion:
        """Make this version's state durable (every write already is); publish too if asked. Returns self.

        Raises:
            InvalidStateError: ``publish`` on a published version.
        """
        return self.publish_version() if publish else self.reload()

    # --------------------------------------------------------------- frames

    @property
    def _frames(self) -> FrameIndex:
        return self._client.frames

    def _require_writable(self, action: str) -> None:
        """Refuse a write before anything is written when the store is of format 1.

        Raises:
            UpgradeRequiredError: naming ``hds upgrade``.
        """
        if self._doc.format_version != layout.STORE_FORMAT:
            where = f"{action} in version {self.name!r} of {self.dataset_name!r}"
            raise upgrade_needed(self._client.store, where)

    def _commit_segments(self, refs: Sequence[Any], what: str) -> None:
        # self._doc was read when the change began: the commit builds on it (a stale one costs a retry)
        self._doc = self._frames.append(
            self.dataset_id, self.id, refs, what=f"{what} in {self.name!r}", view=self._doc
        )
        self._entry = _entry_of(self._doc, self.id)

    def add_frames(
        self,
        frames: Iterable[SingleFrame | FrameGroup | Mapping[str, Any]],
        show_progress: bool = False,
        *,
        segment_rows: int = SEGMENT_ROWS,
        commit_every: int = 16,
        auto_upload_destination: str | None = None,
        local_dataset_root_path: str | os.PathLike[str] | None = None,
        upload_retries: int = 3,
        upload_workers: int | None = None,
        hash_sources: bool = False,
        force_upload: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> list[FailedFrame]:
        """Add frames to this draft; a frame whose id exists already replaces it.

        A frame object given without an ``id`` gets its derived id set (``frame.id``), so it can be
        looked up afterwards (``get_single_frame(frame_id=frame.id)``).

        With ``auto_upload_destination`` (any fsspec URL or a folder), the local files of the frames
        (sources, previews and masks named by a local path or ``file://``) are uploaded there first,
        keeping their layout under ``local_dataset_root_path``, by ``upload_workers`` threads, each
        tried ``upload_retries`` times, skipping files already there (a second run resumes an
        interrupted one); the frames are registered with the uploaded URIs. With ``hash_sources``
        each file's SHA-256 is kept in its source's ``meta.hash`` and a file uploaded before to any
        version of this dataset is not uploaded again (``force_upload`` uploads regardless). A frame
        whose upload failed is among the failures and not registered. See :mod:`hds_s3.io.uploads`.

        ``frames`` may be any iterable (a generator of millions is fine): frames are validated one
        by one and streamed into Parquet segments of ``segment_rows`` frames, committed every
        ``commit_every`` segments and at the end, so an interrupted call keeps what it committed.
        ``frames`` may also be Arrow: a ``pyarrow.Table``, record batches (a ``RecordBatchReader``
        or any iterable of them), a pandas ``DataFrame`` or the path or URL of a Parquet file, in
        the columns of :data:`hds_s3.index.arrowin.INPUT_SCHEMA`; those are converted and checked
        column by column. Returns the frames that failed validation, each with the reason (a
        FrameGroup fails whole; a failed Arrow row is given as its frame dict).

        Raises:
            ValidationError: Arrow input whose columns are not frame columns (a table, reader,
                DataFrame or Parquet file has one schema: it is refused before anything is written).
            InvalidStateError: the version is published (nothing is written), or was published while
                the frames were written (those not yet committed are not in it).
            ValidationError: ``frames`` is not an iterable of frames (a single frame dict, a number);
                nothing is written.
            StorageError: the store failed; what was committed before stays.
            ValidationError: an upload destination with Arrow input, a root that is not a folder,
                a destination fsspec does not know, or bad upload options.
        """
        tree.require_draft(self.reload()._doc, self._entry, "add frames to")
        self._require_writable("add frames")
        failed: list[FailedFrame] = []
        batches, rest = arrowin.peek(frames)
        bar = _progress(show_progress, f"add_frames {self.dataset_name}/{self.name}")
        upload_bar = None
        if auto_upload_destination is not None:
            if batches is not None:
                raise ValidationError(
                    "auto_upload_destination uploads the local files of frame objects or frame dicts; "
                    "upload the files of Arrow input first and give their URIs"
                )
            check_frames_argument(rest)
            upload_bar = _progress(show_progress, f"upload {self.dataset_name}/{self.name}")
            if upload_bar is not None:
                upload_bar.unit = "file"
            uploader = Uploader(
                auto_upload_destination,
                root=local_dataset_root_path,
                retries=upload_retries,
                workers=upload_workers,
                hash_sources=hash_sources,
                known=self._known_hashes() if hash_sources and not force_upload else None,
                force_upload=force_upload,
                progress=upload_bar,
                storage_options=storage_options,
            )
            rest = uploader.upload(rest, lambda frame, why: failed.append(FailedFrame(frame, why)))
        elif local_dataset_root_path is not None:
            raise ValidationError(
                "local_dataset_root_path is the root of an upload: give auto_upload_destination"
            )
        pending: list[Any] = []
        try:
            written = self._write_segments(batches, rest, failed, segment_rows, bar)
            for ref in written:
                pending.append(ref)
                if len(pending) >= commit_every:
                    self._commit_segments(pending, "add frames")
                    pending = []
            if pending:
                self._commit_segments(pending, "add frames")
        finally:
            for one in (bar, upload_bar):
                if one is not None:
                    one.close()
        return failed

    def _write_segments(
        self,
        batches: Any,
        rest: Iterable[Any],
        failed: list[FailedFrame],
        segment_rows: int,
        bar: Any,
    ) -> Iterator[Any]:
        """Write what :func:`arrowin.peek` split off: Arrow batches column-wise, else frames one by one."""
        write = ingest.write_segments if batches is None else arrowin.write_segments
        return write(
            self._frames,
            self.dataset_id,
            self.id,
            rest if batches is None else batches,  # type: ignore[arg-type]
            failed,
            now=now_ms(),
            segment_rows=segment_rows,
            progress=bar,
        )

    def _known_hashes(self) -> dict[str, str]:
        """SHA-256 to URI of every file uploaded with ``hash_sources`` to any version of this dataset.

        Only the sources whose metadata holds a ``hash`` are parsed (found with a vectorised
        substring match over the ``sources`` column).
        """
        out: dict[str, str] = {}
        for version in self.dataset.get_versions():
            table = version.get_frames_table(columns=["sources"])
            flat = pc.list_flatten(table.column("sources"))
            if len(flat) == 0:
                continue
            metas = pc.struct_field(flat, "meta")
            hit = pc.fill_null(pc.match_substring(metas, '"hash"'), False)
            chosen = flat.filter(hit).to_pylist()
            parsed = [json.loads(src["meta"]) if src.get("meta") else {} for src in chosen]
            for digest, uri in known_hashes(parsed, chosen).items():
                out.setdefault(digest, uri)
        return out

    def update_frames(
        self, frames: Iterable[SingleFrame | FrameGroup | Mapping[str, Any]]
    ) -> list[FailedFrame]:
        """Replace frames that exist in this draft (metadata and ROIs are replaced whole).

        Returns the frames that failed: invalid ones, and ones whose id is not in the version.
        ``frames`` may also be Arrow input, as for :meth:`add_frames` (every row needs its ``id``).

        Raises:
            ValidationError: Arrow input whose columns are not frame columns.
            InvalidStateError: the version is published.
            StorageError: the store failed.
        """
        tree.require_draft(self.reload()._doc, self._entry, "update frames in")
        self._require_writable("update frames")
        batches, rest = arrowin.peek(frames)
        if batches is not None:
            rejected, refs, ids = arrowin.write_updates(
                self._frames, self.dataset_id, self._entry, batches, now=now_ms(), segment_rows=SEGMENT_ROWS
            )
            return self._commit_updates(rejected, refs, ids)
        checked: list[tuple[object, Mapping[str, Any] | str]] = []  # (frame, its dict or why it failed)
        for item in rest:
            if isinstance(item, Mapping) and _plain_id(item.get("id")):
                checked.append((item, item))  # validated by add_frames, column-wise
                continue
            try:
                checked.append((item, ingest.normalize(item)))  # objects, and dicts whose id is derived
            except (ValidationError, TypeError, ValueError) as exc:
                checked.append((item, str(exc)))
        # which of the given ids the version holds: only the row groups whose id range covers one
        wanted = pa.array(list({c["id"] for _, c in checked if not isinstance(c, str)}), pa.string())
        present = (
            set(self._frames.holding(self._entry, wanted, kept=True).to_pylist()) if len(wanted) else set()
        )
        failed: list[FailedFrame] = []
        known: list[Mapping[str, Any]] = []  # add_frames' conversion takes them column-wise
        for given, canonical in checked:
            if isinstance(canonical, str):
                failed.append(FailedFrame(given, canonical))
            elif canonical["id"] in present:
                known.append(canonical)
            else:
                reason = f"frame {canonical['id']} is not in version {self.name!r}; use add_frames"
                failed.append(FailedFrame(given, reason))
        invalid: list[FailedFrame] = []
        written = list(
            ingest.write_segments(
                self._frames,
                self.dataset_id,
                self.id,
                known,
                invalid,
                now=now_ms(),
                segment_rows=SEGMENT_ROWS,
            )
        )
        failed.extend(invalid)
        refused = {id(f.frame) for f in invalid}
        updated = {k["id"]: k for k in known if id(k) not in refused}
        return self._commit_updates(failed, written, updated)

    def _commit_updates(
        self, failed: list[FailedFrame], written: Sequence[Any], updated: Mapping[str, object]
    ) -> list[FailedFrame]:
        """Commit the segments ``update_frames`` wrote for the frames ``updated`` (id -> frame)."""
        if not written:
            return failed
        vanished: list[str] = []
        checked_on = self._entry.frames.get("manifest")  # the frames the ids were looked up in

        def build(entry: VersionEntry) -> Sequence[Any]:
            # The requirement "every updated frame exists" is checked on the entry being committed
            # to: a frame another writer deleted meanwhile gets a tombstone after the update's rows,
            # so it stays deleted, and is reported as failed. While the version still points at
            # the frames the ids were found in, they are there: nothing needs reading again.
            nonlocal vanished
            if entry.frames.get("manifest") == checked_on:
                vanished = []
                return (*self._frames.refs(entry), *written)
            still = set(
                self._frames.holding(entry, pa.array(sorted(updated), pa.string()), kept=True).to_pylist()
            )
            vanished = sorted(set(updated) - still)
            tail = []
            if vanished:
                table = segments.deletes_table(vanished)
                tail.append(self._frames.write_segment(self.dataset_id, self.id, table, "deletes"))
            return (*self._frames.refs(entry), *written, *tail)

        self._doc = self._frames.commit_pointer(
            self.dataset_id, self.id, build, what=f"update frames in {self.name!r}", view=self._doc
        )
        self._entry = _entry_of(self._doc, self.id)
        for frame_id in vanished:
            reason = (
                f"frame {frame_id} was deleted from version {self.name!r} by another writer while this "
                "update was written; it stays deleted (use add_frames to add it again)"
            )
            failed.append(FailedFrame(updated[frame_id], reason))
        return failed

    def delete_frames(self, frames: Iterable[SingleFrame | FrameGroup | Mapping[str, Any] | str]) -> None:
        """Delete frames (given as frames or ids) from this draft; parents are never touched.

        Ids that are not in the version are ignored.

        Raises:
            InvalidStateError: the version is published.
            ValidationError: an item is not a frame or an id (or is an id UTF-8 cannot encode).
            StorageError: the store failed.
        """
        tree.require_draft(self.reload()._doc, self._entry, "delete frames from")
        self._require_writable("delete frames")
        ids = ingest.frame_ids(frames)
        if not ids:
            return
        ref = self._frames.write_segment(self.dataset_id, self.id, segments.deletes_table(ids), "deletes")
        self._commit_segments([ref], "delete frames")

    # --------------------------------------------------------------- two-phase writes, leases, plans

    def write_segments(
        self,
        frames: Iterable[SingleFrame | FrameGroup | Mapping[str, Any]] | Any,
        *,
        part: int = 0,
        segment_rows: int = SEGMENT_ROWS,
        show_progress: bool = False,
    ) -> WrittenSegments:
        """Write frames as segments of this draft and commit nothing: phase one of a distributed write.

        ``frames`` is anything :meth:`add_frames` takes (frames, frame dicts, Arrow input). The
        segments are immutable objects under this version that no reader sees until
        :meth:`commit_segments` lists them; the returned :class:`~hds_s3.index.twophase.WrittenSegments`
        holds their references (serialisable: ``to_json``/``from_json``, or pickled) and the frames
        that failed validation. ``part`` is this worker's share of the job (its task or partition
        index): the commit orders segments by part, then by their order within the call, so a
        frame id written by two workers resolves the same way on every run (the higher part wins,
        as a later frame wins in ``add_frames``). Segments nobody commits are garbage; a job that
        may outlast gc's grace period holds a lease (:meth:`acquire_lease`).

        Raises:
            InvalidStateError: the version is published (nothing is written).
            ValidationError: ``frames`` is not frames or frame columns, or ``part`` / ``segment_rows``
                is not a count (nothing is written).
            UpgradeRequiredError: the store is of format 1.
            StorageError: the store failed; what was written is garbage for gc.
        """
        for name, value, low in (("part", part, 0), ("segment_rows", segment_rows, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= twophase.MAX_PART:
                raise ValidationError(
                    f"write_segments: {name} must be a whole number >= {low}, got {preview(value)}"
                )
        tree.require_draft(self.reload()._doc, self._entry, "write segments of")
        self._require_writable("write segments")
        failed: list[FailedFrame] = []
        batches, rest = arrowin.peek(frames)
        bar = _progress(show_progress, f"write_segments {self.dataset_name}/{self.name}")
        try:
            written = self._write_segments(batches, rest, failed, segment_rows, bar)
            pending = [
                twophase.PendingSegment.of(ref, self.dataset_id, part=part, seq=seq)
                for seq, ref in enumerate(written)
            ]
        finally:
            if bar is not None:
                bar.close()
        return twophase.WrittenSegments(pending, failed)

    def commit_segments(self, segments: Iterable[Any] | Any, *, txn_id: str) -> twophase.SegmentCommit:
        """Commit segments written by :meth:`write_segments` (by any workers) in one commit: phase two.

        ``segments`` are :class:`~hds_s3.index.twophase.PendingSegment` references (or their JSON,
        or ``WrittenSegments``), in any order. Each must lie under this version and exist with its
        recorded size, in a file that says it is an hds_s3 segment of the rows recorded; they are
        appended to the version's frames in a deterministic order (by part, then place within the
        part), so a frame id written twice resolves the same way on every run.

        ``txn_id`` (any name you choose for the job, such as ``"ingest-2026-12-07"``) is recorded
        with the segments, inside the commit: a commit repeated with the same id, after a lost
        response or a driver restart (even with segments written again by a repeated job), finds
        it landed and changes nothing. It is found while the version's manifest still lists the
        transaction's segments: always for a draft, and for a published version until a compaction
        rewrites them.

        Returns a :class:`~hds_s3.index.twophase.SegmentCommit`: whether this call committed, and
        how many segments and rows the transaction holds.

        Raises:
            ValidationError: a bad ``txn_id``; a segment of another version, missing, of another
                size or not the segment it says, or already committed by another transaction
                (nothing is committed).
            InvalidStateError: the version is published and the transaction has not landed.
            UpgradeRequiredError: the store is of format 1.
            ConflictError: other writers kept moving the version's frames; nothing was committed.
            StorageError: the store failed; the commit landed or not (calling again with the same
                ``txn_id`` settles it).
        """
        txn = twophase.check_txn_id(txn_id)
        pending = twophase.commit_order(twophase.flatten(segments), self.dataset_id, self.id)
        self.reload()
        before = twophase.landed(self._frames.refs(self._entry), self.id, txn)
        if before:
            return twophase.SegmentCommit(txn, False, len(before), sum(r.rows for r in before))
        tree.require_draft(self._doc, self._entry, "commit segments to")
        self._require_writable("commit segments")
        if not pending:
            return twophase.SegmentCommit(txn, False, 0, 0)
        twophase.check_pending(self._frames, pending)
        new = [p.ref(txn) for p in pending]
        keys = {p.key for p in pending}

        def build(entry: VersionEntry) -> Sequence[Any]:
            refs = self._frames.refs(entry)
            if twophase.landed(refs, self.id, txn):
                raise _Landed  # another call of this transaction committed first
            taken = [r.key for r in refs if r.key in keys]
            if taken:
                raise ValidationError(
                    f"segment {taken[0]} is committed already (by another transaction); nothing was committed"
                )
            return (*refs, *new)

        try:
            self._doc = self._frames.commit_pointer(
                self.dataset_id, self.id, build, what=f"commit {len(new)} segments ({txn}) to {self.name!r}"
            )
        except _Landed:
            self.reload()
            done = twophase.landed(self._frames.refs(self._entry), self.id, txn)
            return twophase.SegmentCommit(txn, False, len(done), sum(r.rows for r in done))
        self._entry = _entry_of(self._doc, self.id)
        return twophase.SegmentCommit(txn, True, len(new), sum(r.rows for r in new))

    def acquire_lease(
        self, ttl_seconds: float = 3600.0, *, holder: str | None = None, renew_every: float | None = None
    ) -> Lease:
        """Take a write lease on this version: gc keeps its uncommitted segments while the lease lives.

        The lease (see :mod:`hds_s3.format.leases`) expires ``ttl_seconds`` after it was taken or
        last renewed; a daemon thread renews it every ``renew_every`` seconds (default: a third of
        the duration; 0 turns it off) until :meth:`~hds_s3.format.leases.Lease.release`, which
        leaving a ``with`` block calls. Leases never exclude: commits and other jobs ignore them.

        Raises:
            ValidationError: a duration outside 1 s .. 7 days, or a bad holder.
            UpgradeRequiredError: the store is of format 1.
            StorageError: the store failed; no lease was taken.
        """
        self._require_writable("take a lease")
        who = holder if holder is not None else f"{current_user()}@{socket.gethostname()}:{os.getpid()}"
        return Lease.acquire(
            self._client.store,
            self.dataset_id,
            self.id,
            ttl_seconds=ttl_seconds,
            holder=who,
            renew_every=renew_every,
        )

    def read_plan(
        self,
        columns: Sequence[str] | None = None,
        frame_filter: Any | None = None,
        *,
        rows_per_task: int | None = None,
        inline_drop_ids: int = INLINE_DROP_IDS,
    ) -> ReadPlan:
        """Plan the read of this version's frames as independent tasks (see :mod:`hds_s3.index.plan`).

        One :class:`~hds_s3.index.plan.ReadTask` per segment (or per range of row groups of at
        most ``rows_per_task`` rows); :func:`hds_s3.index.plan.read_task` reads one anywhere (a Ray
        or Dask worker, another machine) and the tables of all tasks, in order, equal
        :meth:`get_frames_table` (``columns``, plus ``id``) of the frames ``frame_filter`` keeps:
        a :class:`pyarrow.compute.Expression` over the frame-index columns, such as
        ``pc.field("roi_count") > 0``. The plan reads the manifest and the ids of the segments
        after its disjoint ones, and no other frame data. A task names the ids dead in its segment
        (replaced or deleted by a later one) inline up to ``inline_drop_ids`` of them, else the later
        segments holding them, whose ids the worker reads.

        Raises:
            ValidationError: a bad column, filter or ``rows_per_task``.
            CorruptObjectError: the manifest or a delta segment is missing or damaged.
        """
        return plan_version(
            self._frames,
            self._entry,
            self.dataset_id,
            columns=columns,
            frame_filter=frame_filter,
            rows_per_task=rows_per_task,
            inline_drop_ids=inline_drop_ids,
        )

    def commit_compaction(self, segments: Iterable[Any] | Any, *, plan: ReadPlan) -> DatasetVersion:
        """Point this published version at segments a compaction job wrote from ``plan``; returns self.

        ``plan`` is this version's read plan over every column (``read_plan(columns=[f.name for f
        in FRAME_SCHEMA])``) and ``segments`` what :func:`hds_s3.index.plan.compact_task` wrote from
        its tasks (in any number of workers). The segments must hold as many rows as the version has
        frames; they replace its segment list in one commit, marked disjoint (no id twice), if the
        version still points at the manifest the plan was made from. Children keep theirs.

        Raises:
            InvalidStateError: the version is a draft.
            ConflictError: the version's frames changed since the plan (another compaction); nothing
                was committed, and the segments are garbage.
            ValidationError: a segment of another version, missing or not what it says, or rows
                that do not add up to the version's frames.
            StorageError: the store failed.
        """
        if not isinstance(plan, ReadPlan):
            raise ValidationError(f"commit_compaction needs the ReadPlan the job ran, got {preview(plan)}")
        pending = twophase.commit_order(twophase.flatten(segments), self.dataset_id, self.id)
        self.reload()
        if self.is_draft:
            raise InvalidStateError(f"commit_compaction is for published versions; {self.name!r} is a draft")
        if plan.manifest != manifest_key(self._entry) or plan.ordered:
            raise ConflictError(
                f"the frames of version {self.name!r} changed since the compaction was planned (or the plan "
                "is not this version's); nothing was committed"
            )
        twophase.check_pending(self._frames, pending)
        counts = self.published_counts
        frames = counts["frames"] if counts is not None else self.get_frame_count()
        written = sum(p.rows for p in pending)
        if written != frames or any(p.kind != "frames" for p in pending):
            raise ValidationError(
                f"the compaction wrote {written} rows; version {self.name!r} has {frames} frames; "
                "nothing was committed"
            )
        refs = [p.ref() for p in pending]

        def build(entry: VersionEntry) -> Sequence[Any]:
            if manifest_key(entry) != plan.manifest:
                raise ConflictError(
                    f"the frames of version {self.name!r} changed while the compaction was committed; "
                    "nothing was committed"
                )
            return refs

        self._replace_segments_checked(build, known=[(refs, len(refs))])
        return self

    def _replace_segments_checked(
        self, build: Callable[[VersionEntry], Sequence[Any]], known: Sequence[tuple[Sequence[Any], int]]
    ) -> None:
        self._doc = self._frames.commit_pointer(
            self.dataset_id, self.id, build, what=f"compact {self.name!r}", allow_published=True, known=known
        )
        self._entry = _entry_of(self._doc, self.id)

    @_hybrid
    def get_single_frame(
        self_or_cls: Any,
        frame_id: str,
        dataset_name: str | None = None,
        version_name: str | None = None,
        dataset_id: str | None = None,
        version_id: str | None = None,
        *,
        client: Client | None = None,
    ) -> SingleFrame | FrameGroup:
        """Return one frame by id: on a version object, or as in the reference with dataset and version.

        Raises:
            NotFoundError: no such dataset, version or frame (the message names them).
            ValidationError: conflicting or missing selectors.
        """
        if isinstance(self_or_cls, DatasetVersion):
            version = self_or_cls
        else:
            if version_name is None and version_id is None:
                raise ValidationError("get_single_frame needs version_name or version_id (and the dataset)")
            version = DatasetVersion.get_version(
                dataset_name, version_name, dataset_id, version_id, client=client
            )
        if not isinstance(frame_id, str) or not frame_id:
            raise ValidationError(
                f"get_single_frame needs a frame id (a non-empty string), got {preview(frame_id)}; "
                "hds_s3.model.frames.frame_id(frame) gives the id of a frame object"
            )
        row = version._frames.lookup(version._entry, frame_id)
        if row is None:
            raise NotFoundError(
                f"frame {frame_id!r} is not in version {version.name!r} of dataset {version.dataset_name!r}"
            )
        return frame_from_dict(row)

    def iter_frames(self, batch_size: int = 1024) -> Iterator[SingleFrame | FrameGroup]:
        """Yield this version's frames (SingleFrame or FrameGroup), reading ``batch_size`` rows at a time.

        Streams as :meth:`iter_batches`: the version is never held whole.

        Raises:
            CorruptObjectError: a segment is missing or damaged.
        """
        for batch in self.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield frame_from_dict(segments.row_to_frame(row))

    def iter_batches(
        self, columns: Sequence[str] | None = None, batch_size: int = 16384
    ) -> Iterator[pa.RecordBatch]:
        """Yield this version's effective frames as Arrow record batches of at most ``batch_size`` rows.

        The same rows and columns as :meth:`get_frames_table` (``columns``, plus ``id``), in the same
        order, read one row group at a time (the next one is fetched meanwhile): memory stays
        bounded whatever the version's size, and each batch costs the same.

        Raises:
            ValidationError: a column is not in the frame index, or ``batch_size`` is not positive.
            CorruptObjectError: a segment is missing or damaged.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValidationError(f"iter_batches: batch_size must be a positive int, got {batch_size!r}")
        segments.projected_schema(tuple(columns) if columns is not None else segments.FRAME_COLUMNS)
        return self._frames.scan(self._entry).batches(columns, batch_size)

    def frames_present(self, frame_ids: Iterable[str]) -> list[str]:
        """Return which of ``frame_ids`` this version holds, sorted.

        Only the ``id`` column chunks of the row groups whose id range covers one of the ids are
        read, so the cost follows the ids asked about, not the version's size.

        Raises:
            ValidationError: ``frame_ids`` is not an iterable of texts.
            CorruptObjectError: a segment is missing or damaged.
        """
        if isinstance(frame_ids, (str, bytes)) or not isinstance(frame_ids, Iterable):
            raise ValidationError(f"frame_ids must be a list of frame ids, got {preview(frame_ids)}")
        ids = list(frame_ids)
        if not all(isinstance(i, str) for i in ids):
            raise ValidationError(f"frame_ids must be texts, got {preview(ids)}")
        try:
            wanted = pa.array(ids, pa.string())
        except (pa.ArrowException, UnicodeEncodeError) as exc:
            raise ValidationError(f"frame_ids: an id cannot be encoded as UTF-8 ({exc})") from None
        held: list[str] = self._frames.holding(self._entry, wanted).to_pylist()
        return held

    def get_frame_count(self) -> int:
        """Return the number of frames in this version (reads only the id columns).

        Raises:
            CorruptObjectError: a segment is missing or damaged.
        """
        return int(self.get_frames_table(columns=["id"]).num_rows)

    def get_frames_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Return this version's effective frames as an Arrow table (only ``columns``, plus ``id``, if given).

        Columns: see :data:`hds_s3.index.segments.FRAME_SCHEMA`; a Parquet column path such as
        ``"rois.list.element.labels"`` reads only that part of a nested column.

        Raises:
            ValidationError: ``columns`` is not a list of names, or a column is not in the frame index.
            CorruptObjectError: a segment is missing or damaged.
        """
        if columns is not None and (
            isinstance(columns, str)
            or not isinstance(columns, Sequence)
            or not all(isinstance(c, str) for c in columns)
        ):
            raise ValidationError(f"columns must be a list of column names, got {preview(columns)}")
        return self._frames.effective(self._entry, columns)

    def get_stats(self) -> dict[str, Any]:
        """Return the statistics: stored at publish time, computed now for a draft.

        ``{"frames", "annotated", "unannotated", "rois", "labels": [{"name", "count"}],
        "content_types": [{"name", "count"}]}``.

        Raises:
            CorruptObjectError: a segment is missing or damaged.
        """
        self.reload()
        if self._entry.is_draft:
            return self._count(self._entry)
        return self._store_stats()  # a publication whose statistics were not stored yet: now they are

    def get_schema(self) -> dict[str, dict[str, Any]]:
        """Return the type of every ``meta`` path this version's frames use (the "frame schema").

        ``{"meta.<path>": {"types": [...], "frames": {type: frames holding it}}}``, sorted by path.
        It follows the committed frames (kept per manifest, so asking again is free); a path with
        several types shows them all (see :mod:`hds_s3.index.fieldschema`).

        Raises:
            CorruptObjectError: a segment is missing or damaged.
        """
        return fieldschema.describe(self._meta_types())

    def _meta_types(self) -> dict[str, Any]:
        manifest = self._entry.frames.get("manifest")
        if manifest is None:
            return {}
        return fieldschema.cached(
            ("schema", self.dataset_id, str(manifest)),
            lambda: fieldschema.meta_types(self.get_frames_table(columns=["meta"]).column("meta")),
        )

    def _vectors(self, vector_field: object) -> tuple[Any, np.ndarray, np.ndarray, vectors.Vectors]:
        """(the version's scan, each vector's segment and row, the vectors), kept per manifest."""
        path = vectors.field_path(vector_field)
        manifest = self._entry.frames.get("manifest")

        def load() -> tuple[Any, np.ndarray, np.ndarray, vectors.Vectors]:
            scan = self._frames.scan(self._entry)
            table, segment, row = scan.table(["meta"])
            ids = table.column("id").combine_chunks()
            found = vectors.extract(table.column("meta"), path, ids)
            found.ids = ids.take(pa.array(found.rows, pa.int64()))
            return scan, segment[found.rows], row[found.rows], found

        if manifest is None:
            empty = np.zeros(0, np.int64)
            return None, empty, empty, vectors.Vectors(empty, np.zeros((0, 0), np.float32))
        return cast(
            "tuple[Any, np.ndarray, np.ndarray, vectors.Vectors]",
            vectors.cached_vectors(("version", self.dataset_id, str(manifest), tuple(path)), load),
        )

    def vector_search(
        self,
        reference_vector: Sequence[float],
        vector_field: str,
        number_of_neighbors: int = 50,
        fast: bool = False,
        similarity_function: str = "cosine",
        *,
        with_scores: bool = False,
        ids_only: bool = False,
    ) -> list[Any]:
        """Return the frames whose vector at ``vector_field`` is nearest ``reference_vector``, nearest first.

        Vectors are lists of numbers under a ``meta`` path (``frame.set_vector(v, "emb")``);
        ``vector_field`` is that path, with or without ``meta.``. ``similarity_function``: ``cosine``,
        ``l2_norm`` or ``dot_product``. The search is exact and vectorised (every frame scored with
        numpy); ``fast=True`` searches an approximate (HNSW) index instead. With ``with_scores``, the
        items are ``(frame, score)`` pairs; with ``ids_only``, ``(frame id, score)`` pairs (no frame is
        read). See :mod:`hds_s3.index.vectors`.

        Raises:
            ValidationError: a bad argument, vectors of two lengths, or a query of another length;
                ``fast=True`` without faiss installed.
            CorruptObjectError: a segment is missing or damaged.
        """
        scan, segment, row, found = self._vectors(vector_field)
        key = ("version", self.dataset_id, str(self._entry.frames.get("manifest")), vector_field)
        where = f"version {self.name!r} of {self.dataset_name!r}: {vector_field}"
        rows, scores = vectors.search(
            key, found, reference_vector, number_of_neighbors, similarity_function, fast, where
        )
        if scan is None or len(rows) == 0:
            return []
        positions = np.searchsorted(found.rows, rows)
        if ids_only:
            ids = cast("pa.Array", found.ids)
            return list(
                zip(ids.take(pa.array(positions, pa.int64())).to_pylist(), scores.tolist(), strict=True)
            )
        out: list[Any] = []
        batches = scan.rows_at(segment[positions], row[positions], list(segments.FRAME_COLUMNS))
        frames = (frame_from_dict(segments.row_to_frame(r)) for b in batches for r in b.to_pylist())
        for frame, score in zip(frames, scores.tolist(), strict=True):
            out.append((frame, score) if with_scores else frame)
        return out

    def diff(self, other: DatasetVersion) -> FrameDiff:
        """Compare this version's frames (the base) with ``other``'s: what turns these into those.

        Returns a :class:`~hds_s3.index.diff.FrameDiff`: the ids added (only in ``other``), changed
        (in both, with different content: sources, ROIs, metadata, context or timestamp; provenance
        is not content) and deleted (only in this version), the ROI count change of every label,
        and ``to_dict()``. Only the segments the two versions do not share are read in full (for a
        parent and its child, the child's own delta segments), plus, of the shared ones, the row
        groups that can hold an id those touch. Both versions are compared as they were when
        read; ``reload()`` them first to see frames added since.

        Raises:
            ValidationError: ``other`` is not a DatasetVersion, or lives in another store.
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        if not isinstance(other, DatasetVersion):
            raise ValidationError(
                f"diff() compares version {self.name!r} of {self.dataset_name!r} with another "
                f"DatasetVersion, got {type(other).__name__}"
            )
        if other._client is not self._client and other._client.url != self._client.url:
            raise ValidationError(
                f"diff(): version {other.name!r} is in store {other._client.url}, version {self.name!r} "
                f"in {self._client.url}; compare versions of one store"
            )
        return diff_segments(self._frames, self._frames.refs(self._entry), self._frames.refs(other._entry))

    def get_frame_history(self, frame_id: str) -> list[FrameChange]:
        """Return the versions from the root to this one in which a frame was added, changed or deleted.

        Oldest first; each :class:`~hds_s3.index.history.FrameChange` names the version, the change
        (``added``, ``changed``: its content differs from the version before, ``deleted``) and the
        frame as that version holds it. Only the versions whose own segments may hold the id are
        read. An id that never was in the ancestry gives ``[]``.

        Raises:
            ValidationError: ``frame_id`` is not a non-empty string.
            CorruptObjectError: a manifest or segment is missing or damaged.
        """
        if not isinstance(frame_id, str) or not frame_id:
            raise ValidationError(
                f"get_frame_history needs a frame id (a non-empty string), got {preview(frame_id)}"
            )
        return frame_history(self._frames, self._doc, self._entry, frame_id)

    def compact(self, segment_rows: int = SEGMENT_ROWS) -> DatasetVersion:
        """Rewrite this published version's frames as a few merged segments that readers then use.

        The frames are sorted by id and cut into segments of ``segment_rows``: their id ranges do
        not overlap, so a look-up of one frame reads one row group of one segment, whatever the
        version's size. The content does not change; children keep reading the segments they were
        created with.

        Raises:
            InvalidStateError: the version is a draft.
            ValidationError: ``segment_rows`` is not a positive integer.
            StorageError: the store failed; the version still reads its former segments.
        """
        if isinstance(segment_rows, bool) or not isinstance(segment_rows, int) or segment_rows < 1:
            raise ValidationError(
                f"compact: segment_rows must be a positive integer, got {preview(segment_rows)}"
            )
        self.reload()
        if self.is_draft:
            raise InvalidStateError(f"compact() is for published versions; {self.name!r} is a draft")
        compacted = self._frames.compacted_refs(self.dataset_id, self._entry, segment_rows)
        self._replace_segments(compacted, "compact", known=[(compacted, len(compacted))])
        return self

    def _replace_segments(
        self, refs: Sequence[Any], what: str, known: Sequence[tuple[Sequence[Any], int]] = ()
    ) -> None:
        """Point this published version at segments holding the same frames (compaction)."""
        self._doc = self._frames.commit_pointer(
            self.dataset_id,
            self.id,
            lambda entry: refs,
            what=f"{what} {self.name!r}",
            allow_published=True,
            known=known,
        )
        self._entry = _entry_of(self._doc, self.id)

    def set_version_name(self, name: str) -> None:
        """Rename this version (drafts and published versions alike).

        Raises:
            AlreadyExistsError: another version of the dataset has that name.
            ValidationError: a bad name.
        """
        check_name("version", name)
        self._update(lambda t, vid: tree.rename(t, vid, name), "rename")

    def set_comment(self, comment: str) -> None:
        """Set this version's comment.

        Raises:
            ValidationError: not a string, or it holds a lone surrogate.
        """
        comment = _text(f"version {self.name!r}", "comment", comment, optional=False)
        self._update(lambda t, vid: tree.set_comment(t, vid, comment), "set comment")

    def add_tags(self, tags: Iterable[str] | str) -> None:
        """Add version tags.

        Raises:
            ValidationError: a bad tag.
        """
        new = check_tags(tags)
        self._update(
            lambda t, vid: tree.set_tags(t, vid, check_tags((*tree.entry(t, vid).tags, *new))), "add tags"
        )

    def remove_tags(self, tags: Iterable[str] | str) -> None:
        """Remove version tags.

        Raises:
            ValidationError: a bad tag.
        """
        gone = set(check_tags(tags))
        self._update(
            lambda t, vid: tree.set_tags(t, vid, tuple(x for x in tree.entry(t, vid).tags if x not in gone)),
            "remove tags",
        )

    def get_metadata(self) -> dict[str, Any]:
        """Return a copy of this version's metadata, freshly read (``{}`` when none).

        Raises:
            NotFoundError: the version was deleted.
        """
        return copy.deepcopy(self.reload()._entry.metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """Replace this draft's metadata; returns True.

        Raises:
            InvalidStateError: the version is published.
            ValidationError: not a dict, a key with ``$`` or ``.``, or a value that is not JSON.
        """
        clean = check_metadata(f"version {self.name!r} of {self.dataset_name!r}", metadata)
        self._update(lambda t, vid: tree.set_metadata(t, vid, clean), "set metadata")
        return True

    def update_metadata(
        self, changes: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Change this draft's metadata in place of the newest one; return the metadata stored.

        ``changes`` is either a dict, whose top-level keys replace those of the stored metadata
        (the other keys are kept), or a function given a copy of the stored metadata and returning
        the new metadata. It is applied inside the commit, and again to the newer metadata if
        another writer changed it first, so a concurrent change of other keys is never lost (a
        function must therefore be pure: it may run more than once).

        Raises:
            InvalidStateError: the version is published.
            ValidationError: ``changes`` is neither a dict nor a function, or the result is not
                valid metadata (a key with ``$`` or ``.``, a value that is not JSON).
        """
        where = f"version {self.name!r} of {self.dataset_name!r}"
        if isinstance(changes, Mapping):
            given = check_metadata(f"{where}: update_metadata", changes)

            def merge(meta: dict[str, Any]) -> dict[str, Any]:
                return {**meta, **copy.deepcopy(given)}

        elif callable(changes):
            func = changes

            def merge(meta: dict[str, Any]) -> dict[str, Any]:
                return check_metadata(f"{where}: update_metadata", func(meta))

        else:
            raise ValidationError(
                f"{where}: update_metadata takes a dict of keys to set or a function of the metadata, "
                f"not {type(changes).__name__}"
            )
        self._update(lambda t, vid: tree.merge_metadata(t, vid, merge), "update metadata")
        return copy.deepcopy(self._entry.metadata)

    def set_masks_labels(self, masks_labels: Mapping[tuple[int, int, int], Iterable[str] | str]) -> None:
        """Map mask pixel values to labels for every mask of this draft.

        Stored as ``metadata["mask_labels"] = {"_all_": [{"value": [r, g, b], "labels": [...]}]}``;
        other metadata keys are kept.

        Raises:
            InvalidStateError: the version is published.
            ValidationError: a value that is not an (r, g, b) tuple, or a label that is not a string
                (or holds a lone surrogate).
        """
        if not isinstance(masks_labels, Mapping):
            raise ValidationError("set_masks_labels takes a dict {(r, g, b): [labels]}")
        entries = []
        for value, labels in masks_labels.items():
            names = (
                [labels]
                if isinstance(labels, str)
                else list(labels)
                if isinstance(labels, Iterable)
                else None
            )
            if names is None or not all(isinstance(n, str) for n in names):
                raise ValidationError(
                    f"mask value {preview(value)}: labels must be strings, got {preview(labels)}"
                )
            for name in names:
                check_utf8(f"mask value {preview(value)}: label", name)
            entries.append({"value": _check_rgb(value), "labels": names})

        self._update(
            lambda t, vid: tree.merge_metadata(
                t, vid, lambda meta: {**meta, "mask_labels": {"_all_": entries}}
            ),
            "set mask labels",
        )

    def get_masks_labels(self) -> dict[tuple[int, int, int], list[str]]:
        """Return the mask-value-to-labels mapping set with :meth:`set_masks_labels` (freshly read)."""
        stored = self.get_metadata().get("mask_labels", {}).get("_all_", [])
        return {(e["value"][0], e["value"][1], e["value"][2]): list(e["labels"]) for e in stored}

    def __repr__(self) -> str:
        return (
            f"DatasetVersion(dataset={self.dataset_name!r}, name={self.name!r}, id={self.id!r}, "
            f"status={self.status!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetVersion) and (other.dataset_id, other.id) == (
            self.dataset_id,
            self.id,
        )

    def __hash__(self) -> int:
        return hash((self.dataset_id, self.id))


def require_version(version: object, what: str) -> DatasetVersion:
    """``version``, when it is a :class:`DatasetVersion` (what ``what`` needs).

    Raises:
        ValidationError: it is not one.
    """
    if not isinstance(version, DatasetVersion):
        raise ValidationError(f"{what} needs a DatasetVersion, got {preview(version)}")
    return version


def _one_parent(names: Sequence[str] | str | None, ids: Sequence[str] | str | None) -> tuple[str, str] | None:
    if names is not None and ids is not None:
        raise ValidationError("give parent_version_names or parent_version_ids, not both")
    for kind, value in (("name", names), ("id", ids)):
        if value is None:
            continue
        values = (
            [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else [value]
        )
        if not all(isinstance(v, str) for v in values):
            raise ValidationError(f"parent version {kind}s are strings, got {preview(value)}")
        if len(values) > 1:
            raise ValidationError(
                f"a version has exactly one parent; got {len(values)} parent version {kind}s "
                f"{preview(values)}"
            )
        if values:
            return kind, values[0]
    return None
