"""The documents of store format 2, parsed and written in one place.

A dataset of format 2 is a commit log with materialised views of it (see :mod:`hds_s3.format.log`):

- the **head** (``dataset.json``): the dataset's own fields, the aggregates of its tree that the
  tree's rules need (how many versions, roots and branching versions; the drafts with their depth;
  the most recently published version), the log position it reflects and the newest checkpoint;
- **log entries** (``log/<seq>.json``, create-only): one per commit, holding the records of the
  versions it creates or changes, the ids it removes, the dataset fields it changes and the
  aggregates after it;
- **version records** (``tree/<id>.json``): a version as of the newest entry that touched it;
- **version names** (``names/<enc(name)>.json``): which version holds a name, as of an entry;
- **checkpoints** (``checkpoints/<seq>.json``): the dataset and every version record folded up to
  an entry, so listing a tree reads one object and the entries after it;
- **statistics** (``stats/<id>.json``): a published version's statistics, written once.

Every document carries ``format_version`` (:data:`~hds_s3.format.layout.STORE_FORMAT`) and
``kind``; fields a document does not know are kept in ``extra`` and written back unchanged. Every
field readers use is type-checked when parsed, so a damaged object raises
:class:`~hds_s3.errors.CorruptObjectError` naming its key and field, never a builtin error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hds_s3.errors import CorruptObjectError
from hds_s3.format.docs import (
    DIGEST,
    STATUSES,
    Aggregates,
    DatasetDoc,
    VersionEntry,
    check_digest,
    dumps_with_digest,
    load_json,
)
from hds_s3.format.layout import STORE_FORMAT, parse_key

#: The dataset fields a log entry may change (the name and creation time never change).
DATASET_FIELDS = ("description", "project", "tags", "metadata", "deleted")


@dataclass(frozen=True)
class Head:
    """The head of a format-2 dataset: its fields and aggregates as of log entry ``seq``.

    Every entry up to ``seq`` is materialised (its records and names written); entries after it
    may not be. ``checkpoint`` is the newest checkpoint's sequence number, None before the first.
    """

    id: str
    name: str
    created: int
    updated: int
    seq: int
    checkpoint: int | None = None
    description: str = ""
    project: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    agg: Aggregates = field(default_factory=Aggregates)
    format_version: int = STORE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogEntry:
    """One commit of a format-2 dataset: what changed, as of sequence number ``seq``.

    ``versions`` are whole records after the change (created or changed versions), ``removed`` the
    ids of versions deleted, ``names`` the version-name index changes (name to id, or None when a
    name is freed), ``dataset`` the dataset fields changed (a subset of :data:`DATASET_FIELDS`),
    ``agg`` the aggregates after the change. ``txn`` names the call that wrote it, so a writer whose
    response was lost can tell that its entry landed.
    """

    seq: int
    txn: str
    time: int
    user: str = ""
    what: str = ""
    versions: tuple[VersionEntry, ...] = ()
    removed: tuple[str, ...] = ()
    names: dict[str, str | None] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    agg: Aggregates = field(default_factory=Aggregates)
    format_version: int = STORE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NameEntry:
    """The version-name index entry of ``name``: the version holding it as of entry ``seq``, or None."""

    name: str
    version_id: str | None
    seq: int
    format_version: int = STORE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A dataset folded up to entry ``seq``: its head fields and every live version record."""

    head: Head
    versions: tuple[VersionEntry, ...]

    @property
    def seq(self) -> int:
        """The log position this checkpoint reflects."""
        return self.head.seq


# ------------------------------------------------------------------------------------- checks


class _Fields:
    """Type checks of one parsed JSON object, collecting the first problem with its field name."""

    def __init__(self, raw: Mapping[str, Any], key: str, what: str) -> None:
        self.raw = raw
        self.key = key
        self.what = what

    def fail(self, name: str, value: object, expected: str) -> CorruptObjectError:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return CorruptObjectError(
            f"{self.key}: the {self.what} is malformed: {name} is {shown}, expected {expected}; "
            "the object is damaged (hds fsck tells what else is)"
        )

    def text(self, name: str, *, optional: bool = False, default: str | None = None) -> Any:
        value = self.raw.get(name, default)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(name, value, "a string")
        return value

    def count(self, name: str, *, optional: bool = False, default: int | None = None) -> Any:
        value = self.raw.get(name, default)
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise self.fail(name, value, "a count")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, value, "true or false")
        return value

    def obj(self, name: str, *, optional: bool = False) -> Any:
        value = self.raw.get(name, None if optional else {})
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, value, "an object")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, value, "a list of strings")
        return tuple(value)

    def items(self, name: str) -> list[Any]:
        value = self.raw.get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, value, "a list")
        return value


def _object(data: bytes, key: str, kind: str) -> dict[str, Any]:
    raw = load_json(data, key)
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: expected a JSON object, found {type(raw).__name__}")
    if raw.get("format_version") != STORE_FORMAT:
        raise CorruptObjectError(
            f"{key}: format_version {raw.get('format_version')!r} is not the one this hds_s3 reads here "
            f"({STORE_FORMAT}); upgrade hds_s3 if a newer one wrote it"
        )
    if raw.get("kind") != kind:
        raise CorruptObjectError(f"{key}: expected a {kind} document, found kind {raw.get('kind')!r}")
    check_digest(raw, key, required=True)
    return raw


def _extra(raw: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in known and k != DIGEST}


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return dumps_with_digest(obj)


# ------------------------------------------------------------------------------------- aggregates


def _agg_from(raw: object, key: str) -> Aggregates:
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: the aggregates are malformed ({raw!r:.80})")
    f = _Fields(raw, key, "aggregates")
    latest = raw.get("latest")
    if latest is not None and not (
        isinstance(latest, list)
        and len(latest) == 3
        and isinstance(latest[0], str)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in latest[1:])
    ):
        raise f.fail("latest", latest, "[id, published, created]")
    drafts = f.obj("drafts")
    clean: dict[str, tuple[int, int]] = {}
    for vid, pair in drafts.items():
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
        ):
            raise f.fail(f"drafts[{vid!r}]", pair, "[depth, created]")
        clean[vid] = (pair[0], pair[1])
    return Aggregates(
        versions=f.count("versions", default=0),
        roots=f.count("roots", default=0),
        branching=f.count("branching", default=0),
        latest=(latest[0], latest[1], latest[2]) if latest is not None else None,
        drafts=clean,
    )


def _agg_to(agg: Aggregates) -> dict[str, Any]:
    return {
        "versions": agg.versions,
        "roots": agg.roots,
        "branching": agg.branching,
        "latest": list(agg.latest) if agg.latest is not None else None,
        "drafts": {vid: list(pair) for vid, pair in sorted(agg.drafts.items())},
    }


# ------------------------------------------------------------------------------------- records

_RECORD_FIELDS = {f.name for f in fields(VersionEntry)} - {"extra", "stats"}


def record_from(raw: object, key: str) -> VersionEntry:
    """Parse a version record (from its own object, an entry or a checkpoint), checking every field.

    Raises:
        CorruptObjectError: naming ``key`` and the first bad field.
    """
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: a version record is not an object ({raw!r:.80})")
    f = _Fields(raw, key, "version record")
    status = f.text("status")
    if status not in STATUSES:
        raise f.fail("status", status, "'draft' or 'published'")
    frames = f.obj("frames")
    manifest = frames.get("manifest")
    if manifest is not None and not isinstance(manifest, str):
        raise f.fail("frames.manifest", manifest, "a string")
    if manifest is not None:
        own = parse_key(key)
        parts = parse_key(manifest)
        if parts is None or parts.kind != "manifest" or own is None or parts.dataset_id != own.dataset_id:
            raise f.fail("frames.manifest", manifest, "the key of a frame manifest of this dataset")
    published = raw.get("published")
    if published is not None and (not isinstance(published, int) or isinstance(published, bool)):
        raise f.fail("published", published, "a time in milliseconds or null")
    return VersionEntry(
        id=f.text("id"),
        name=f.text("name"),
        parent=f.text("parent", optional=True),
        status=status,
        created=f.count("created"),
        published=published,
        comment=f.text("comment", default=""),
        metadata=f.obj("metadata"),
        tags=f.texts("tags"),
        frames=frames,
        depth=f.count("depth", default=0),
        children=f.count("children", default=0),
        seq=f.count("seq", default=0),
        created_by=f.text("created_by", default=""),
        published_by=f.text("published_by", optional=True),
        counts=_counts(f),
        extra=_extra(raw, _RECORD_FIELDS | {"format_version", "kind", "dataset_id", "removed"}),
    )


def _counts(f: _Fields) -> dict[str, int] | None:
    counts = f.obj("counts", optional=True)
    if counts is None:
        return None
    check = _Fields(counts, f.key, f.what)
    return {name: check.count(name) for name in counts}


def record_to(entry: VersionEntry) -> dict[str, Any]:
    """The JSON object of a version record (its statistics are stored apart)."""
    out = dict(copy.deepcopy(entry.extra))
    out.update(
        id=entry.id,
        name=entry.name,
        parent=entry.parent,
        status=entry.status,
        created=entry.created,
        published=entry.published,
        comment=entry.comment,
        metadata=entry.metadata,
        tags=list(entry.tags),
        frames=entry.frames,
        depth=entry.depth,
        children=entry.children,
        seq=entry.seq,
        created_by=entry.created_by,
        published_by=entry.published_by,
        counts=entry.counts,
    )
    return out


def parse_record(data: bytes, key: str) -> tuple[VersionEntry | None, int]:
    """Parse a version record object: ``(record, seq)``, or ``(None, seq)`` for a removed version.

    Raises:
        CorruptObjectError: naming ``key``, when the bytes are not a valid record.
    """
    raw = _object(data, key, "version")
    f = _Fields(raw, key, "version record")
    if f.flag("removed"):
        return None, f.count("seq")
    entry = record_from(raw, key)
    return entry, entry.seq


def dump_record(dataset_id: str, entry: VersionEntry) -> bytes:
    """Serialise a version record object."""
    out = record_to(entry)
    out.update(format_version=STORE_FORMAT, kind="version", dataset_id=dataset_id)
    return _dumps(out)


def dump_removed_record(dataset_id: str, version_id: str, seq: int) -> bytes:
    """Serialise the record left by a removed version (so no late writer brings it back)."""
    return _dumps(
        {
            "format_version": STORE_FORMAT,
            "kind": "version",
            "dataset_id": dataset_id,
            "id": version_id,
            "seq": seq,
            "removed": True,
        }
    )


# ------------------------------------------------------------------------------------- head

_HEAD_FIELDS = {f.name for f in fields(Head)} - {"extra"} | {"kind"}


def _head_from(raw: dict[str, Any], key: str) -> Head:
    f = _Fields(raw, key, "dataset head")
    return Head(
        id=f.text("id"),
        name=f.text("name"),
        created=f.count("created"),
        updated=f.count("updated"),
        seq=f.count("seq"),
        checkpoint=f.count("checkpoint", optional=True),
        description=f.text("description", default=""),
        project=f.text("project", optional=True),
        tags=f.texts("tags"),
        metadata=f.obj("metadata"),
        deleted=f.flag("deleted"),
        agg=_agg_from(raw.get("agg", {}), key),
        extra=_extra(raw, _HEAD_FIELDS),
    )


def _head_to(head: Head) -> dict[str, Any]:
    out = dict(copy.deepcopy(head.extra))
    out.update(
        format_version=STORE_FORMAT,
        kind="dataset",
        id=head.id,
        name=head.name,
        created=head.created,
        updated=head.updated,
        seq=head.seq,
        checkpoint=head.checkpoint,
        description=head.description,
        project=head.project,
        tags=list(head.tags),
        metadata=head.metadata,
        deleted=head.deleted,
        agg=_agg_to(head.agg),
    )
    return out


def parse_head(data: bytes, key: str) -> Head:
    """Parse a format-2 dataset head.

    Raises:
        CorruptObjectError: naming ``key`` and the bad field.
    """
    return _head_from(_object(data, key, "dataset"), key)


def dump_head(head: Head) -> bytes:
    """Serialise a format-2 dataset head."""
    return _dumps(_head_to(head))


def document_format(data: bytes, key: str) -> int:
    """The store format a ``dataset.json`` was written in: 1 (the whole tree) or 2 (a head).

    Raises:
        CorruptObjectError: naming ``key``, when it is neither.
    """
    raw = load_json(data, key)
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: expected a JSON object, found {type(raw).__name__}")
    version = raw.get("format_version")
    if version not in (1, STORE_FORMAT):
        raise CorruptObjectError(
            f"{key}: format_version {version!r} is not supported by this hds_s3 (it reads 1 and "
            f"{STORE_FORMAT}); upgrade hds_s3 if a newer one wrote it"
        )
    return int(version)


# ------------------------------------------------------------------------------------- log entries

_ENTRY_FIELDS = {f.name for f in fields(LogEntry)} - {"extra"} | {"kind"}


def parse_entry(data: bytes, key: str) -> LogEntry:
    """Parse a log entry.

    Raises:
        CorruptObjectError: naming ``key`` and the bad field.
    """
    raw = _object(data, key, "entry")
    f = _Fields(raw, key, "log entry")
    names = f.obj("names")
    for name, vid in names.items():
        if vid is not None and not isinstance(vid, str):
            raise f.fail(f"names[{name!r}]", vid, "a version id or null")
    dataset = f.obj("dataset")
    unknown = set(dataset) - set(DATASET_FIELDS)
    if unknown:
        raise f.fail("dataset", sorted(unknown), f"fields among {DATASET_FIELDS}")
    _check_dataset_fields(dataset, f)
    return LogEntry(
        seq=f.count("seq"),
        txn=f.text("txn"),
        time=f.count("time"),
        user=f.text("user", default=""),
        what=f.text("what", default=""),
        versions=tuple(record_from(v, key) for v in f.items("versions")),
        removed=f.texts("removed"),
        names=names,
        dataset=dataset,
        agg=_agg_from(raw.get("agg", {}), key),
        extra=_extra(raw, _ENTRY_FIELDS),
    )


def _check_dataset_fields(dataset: Mapping[str, Any], f: _Fields) -> None:
    sub = _Fields(dataset, f.key, f.what)
    if "description" in dataset:
        sub.text("description")
    if "project" in dataset:
        sub.text("project", optional=True)
    if "tags" in dataset:
        sub.texts("tags")
    if "metadata" in dataset:
        sub.obj("metadata")
    if "deleted" in dataset:
        sub.flag("deleted")


def dump_entry(entry: LogEntry) -> bytes:
    """Serialise a log entry."""
    out = dict(copy.deepcopy(entry.extra))
    out.update(
        format_version=STORE_FORMAT,
        kind="entry",
        seq=entry.seq,
        txn=entry.txn,
        time=entry.time,
        user=entry.user,
        what=entry.what,
        versions=[record_to(v) for v in entry.versions],
        removed=list(entry.removed),
        names=entry.names,
        dataset={k: (list(v) if k == "tags" else v) for k, v in entry.dataset.items()},
        agg=_agg_to(entry.agg),
    )
    return _dumps(out)


def apply_to_head(head: Head, entry: LogEntry) -> Head:
    """The head after ``entry`` (which must be the entry right after it)."""
    changes: dict[str, Any] = {k: v for k, v in entry.dataset.items() if k != "tags"}
    if "tags" in entry.dataset:
        changes["tags"] = tuple(entry.dataset["tags"])
    return replace(head, seq=entry.seq, updated=max(head.updated, entry.time), agg=entry.agg, **changes)


# ------------------------------------------------------------------------------------- names


def parse_name(data: bytes, key: str) -> NameEntry:
    """Parse a version-name index entry.

    Raises:
        CorruptObjectError: naming ``key`` and the bad field.
    """
    raw = _object(data, key, "name")
    f = _Fields(raw, key, "version name")
    return NameEntry(
        name=f.text("name"),
        version_id=f.text("version_id", optional=True),
        seq=f.count("seq"),
        extra=_extra(raw, {"format_version", "kind", "name", "version_id", "seq"}),
    )


def dump_name(entry: NameEntry) -> bytes:
    """Serialise a version-name index entry."""
    out = dict(copy.deepcopy(entry.extra))
    out.update(
        format_version=STORE_FORMAT,
        kind="name",
        name=entry.name,
        version_id=entry.version_id,
        seq=entry.seq,
    )
    return _dumps(out)


# ------------------------------------------------------------------------------------- checkpoints


def parse_checkpoint(data: bytes, key: str) -> Checkpoint:
    """Parse a checkpoint.

    Raises:
        CorruptObjectError: naming ``key`` and the bad field.
    """
    raw = _object(data, key, "checkpoint")
    f = _Fields(raw, key, "checkpoint")
    head = f.obj("head")
    head_raw = {**head, "format_version": STORE_FORMAT, "kind": "dataset"}
    return Checkpoint(
        head=_head_from(head_raw, key),
        versions=tuple(record_from(v, key) for v in f.items("versions")),
    )


def dump_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Serialise a checkpoint."""
    head = _head_to(checkpoint.head)
    del head["format_version"], head["kind"]
    return _dumps(
        {
            "format_version": STORE_FORMAT,
            "kind": "checkpoint",
            "seq": checkpoint.seq,
            "head": head,
            "versions": [record_to(v) for v in checkpoint.versions],
        }
    )


# ------------------------------------------------------------------------------------- statistics


def parse_stats(data: bytes, key: str) -> dict[str, Any]:
    """Parse the statistics of a published version.

    Raises:
        CorruptObjectError: naming ``key``, when they are not an object with a frame count.
    """
    raw = _object(data, key, "stats")
    stats = _Fields(raw, key, "statistics").obj("stats")
    _Fields(stats, key, "statistics").count("frames")
    return dict(stats)


def dump_stats(version_id: str, stats: Mapping[str, Any]) -> bytes:
    """Serialise the statistics of a published version."""
    return _dumps({"format_version": STORE_FORMAT, "kind": "stats", "version_id": version_id, "stats": stats})


# ------------------------------------------------------------------------------------- whole trees


def tree_of(head: Head, versions: Mapping[str, VersionEntry]) -> DatasetDoc:
    """The whole tree as one in-memory document, oldest version first, for listings and tree walks."""
    ordered = sorted(versions.values(), key=lambda v: (v.created, v.depth, v.id))
    return DatasetDoc(
        id=head.id,
        name=head.name,
        created=head.created,
        updated=head.updated,
        description=head.description,
        project=head.project,
        tags=head.tags,
        metadata=head.metadata,
        versions=tuple(ordered),
        deleted=head.deleted,
        format_version=STORE_FORMAT,
    )


# ------------------------------------------------------------------------------------- any object


def parse_stored(key: str, data: bytes) -> object | None:
    """Parse any JSON document hds_s3 keeps at ``key`` (the parser its kind of key calls for).

    Returns the parsed document, or None when ``key`` is not a document of the dataset layout
    (segments, DataViews, keys hds_s3 never writes).

    Raises:
        CorruptObjectError: naming ``key``, when the document is damaged.
    """
    from hds_s3.format.docs import parse_claim, parse_dataset_doc, parse_manifest
    from hds_s3.format.layout import LEGACY_STORE_FORMAT, STORE_MARKER, parse_key

    parts = parse_key(key)
    if parts is None or parts.kind == "segment":
        return None
    if key == STORE_MARKER:
        marker: object = load_json(data, key)
        return marker
    parsers: dict[str, Callable[[bytes, str], object]] = {
        "claim": parse_claim,
        "manifest": parse_manifest,
        "log": parse_entry,
        "checkpoint": parse_checkpoint,
        "record": parse_record,
        "name": parse_name,
        "stats": parse_stats,
    }
    if parts.kind == "dataset":
        if document_format(data, key) == LEGACY_STORE_FORMAT:
            return parse_dataset_doc(data, key)
        return parse_head(data, key)
    parse = parsers.get(parts.kind)
    return parse(data, key) if parse is not None else None
