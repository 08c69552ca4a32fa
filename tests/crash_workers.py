"""The transitions the crash sweep kills, the state summary it compares, and the child's entry point.

Importable by a child process (``multiprocessing`` forkserver or spawn): :func:`crash_child` runs one
transition on a local store folder through a crashing :class:`~hds_s3.store.faulty.FaultyStore`.
Everything a transition writes is deterministic given the starting folder (fixed frame and ROI ids),
except the ids it generates, which :func:`summary` numbers in order of appearance.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import hds_s3.index.frameindex
from hds_s3 import (
    AlreadyExistsError,
    Client,
    Dataset,
    DatasetVersion,
    FrameGroup,
    HdsError,
    InvalidStateError,
    NotFoundError,
    SingleFrame,
)
from hds_s3.store import LocalStore, ObjectStore
from hds_s3.store.base import content_etag
from hds_s3.store.faulty import FaultyStore

Ids = dict[str, str]
Summary = tuple[Any, ...]


def local(folder: str) -> LocalStore:
    """The store of a sweep folder (no fsync: a killed process, not a machine, is what is simulated)."""
    return LocalStore(folder, fsync=False)


# ---------------------------------------------------------------------------- frames


def frame(i: int, label: str = "car", city: str = "bremen") -> SingleFrame:
    """A frame with a fixed id, metadata and one ROI with a fixed id."""
    f = SingleFrame(
        source=f"s3://bucket/img/{i:04d}.jpg",
        width=64,
        height=48,
        metadata={"city": city, "i": i},
        id=f"f{i:04d}",
    )
    f.add_annotation(box2d_xywh=(i, 1, 5, 6), labels=[label], id=f"{i:032x}", confidence=0.5)
    return f


def group(i: int) -> FrameGroup:
    """A two-source frame group with a fixed id."""
    g = FrameGroup(id=f"g{i:04d}", metadata={"kind": "pair"})
    g["left"] = SingleFrame(source=f"s3://bucket/l/{i}.jpg", width=8, height=8)
    g["right"] = SingleFrame(source=f"s3://bucket/r/{i}.jpg", width=8, height=8)
    return g


# ---------------------------------------------------------------------------- starting states


def _bystander(c: Client) -> None:
    """Another dataset with frames, a snapshot and a draft, that no transition may touch."""
    ds = Dataset.create("other", tags=["keep"], metadata={"o": 1}, client=c)
    ds.get_current().add_frames([frame(100), frame(101, "person")])
    DatasetVersion.create_snapshot(dataset_name="other", publish_name="o1", client=c)


def setup_empty(c: Client) -> Ids:
    _bystander(c)
    return {}


def setup_draft(c: Client) -> Ids:
    """``ds`` with the draft ``Current`` holding three frames (one a group) and metadata."""
    _bystander(c)
    ds = Dataset.create("ds", tags=["t1"], description="the dataset", metadata={"owner": "me"}, client=c)
    draft = ds.get_current()
    draft.set_metadata({"k": "v"})
    draft.add_frames([frame(1), frame(2, "person"), group(3)])
    return {"draft": draft.id}


def setup_published(c: Client) -> Ids:
    """``ds`` whose only version ``Current`` (three frames) is published."""
    ids = setup_draft(c)
    _version(c, ids).publish_version()
    return ids


def setup_segments(c: Client) -> Ids:
    """``ds``'s draft holds four segments: three frame batches and one deletion."""
    ids = setup_draft(c)
    draft = _version(c, ids)
    draft.add_frames([frame(4), frame(5)])
    draft.add_frames([frame(6)])
    draft.delete_frames(["f0004"])
    return ids


def setup_segments_published(c: Client) -> Ids:
    """As :func:`setup_segments`, published."""
    ids = setup_segments(c)
    _version(c, ids).publish_version()
    return ids


def setup_scratch(c: Client) -> Ids:
    """``ds`` with the draft ``Current`` and a second root draft ``scratch`` with frames of its own."""
    ids = setup_draft(c)
    scratch = DatasetVersion.create_version(dataset_name="ds", version_name="scratch", client=c)
    scratch.add_frames([frame(9)])
    ids["scratch"] = scratch.id
    return ids


def setup_chain(c: Client) -> Ids:
    """``ds`` as a chain: published ``s1`` (the old draft) -> draft ``Current`` with one more frame."""
    ids = setup_draft(c)
    child = DatasetVersion.create_snapshot(dataset_name="ds", publish_name="s1", client=c)
    child.add_frames([frame(7)])
    ids["child"] = child.id
    return ids


# ---------------------------------------------------------------------------- transitions


def _version(c: Client, ids: Ids, key: str = "draft") -> DatasetVersion:
    return DatasetVersion.get_version("ds", version_id=ids[key], client=c)


@contextmanager
def _compact_threshold(value: int) -> Iterator[None]:
    old = hds_s3.index.frameindex.COMPACT_SEGMENTS
    hds_s3.index.frameindex.COMPACT_SEGMENTS = value
    try:
        yield
    finally:
        hds_s3.index.frameindex.COMPACT_SEGMENTS = old


def _publish_compacting(c: Client, ids: Ids) -> object:
    with _compact_threshold(2):  # four segments: publishing also merges them (a second commit)
        return _version(c, ids).publish_version()


def _name_is_free_again(c: Client, ids: Ids) -> None:
    """After a dataset delete (however interrupted), its name can be created again."""
    ds = Dataset.create("ds", raise_if_exists=True, client=c)
    assert [d.id for d in Dataset.list_datasets(name_pattern="^ds$", client=c)] == [ds.id]
    assert ds.get_current().get_frame_count() == 0


@dataclass(frozen=True)
class Transition:
    """One transition under test.

    Attributes:
        name: test id.
        setup: builds the starting state; returns the ids the transition needs.
        run: the transition, from its look-ups to its last request.
        repeat: what repeating it in the "after" state raises (``None``: it succeeds).
        after_check: an extra check of the final state (may write; runs last).
    """

    name: str
    setup: Callable[[Client], Ids]
    run: Callable[[Client, Ids], object]
    repeat: type[HdsError] | None
    after_check: Callable[[Client, Ids], None] | None = None
    wrap: Callable[[ObjectStore], ObjectStore] | None = None


class LateSegments:
    """A deliberately broken store wrapper: it holds segment writes back until after the next commit
    (the create of a log entry), inverting docs/design.md invariant 1 (segments before the entry
    that refers to them). The crash sweep must catch this (see
    ``test_the_sweep_catches_a_broken_protocol``)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.held: list[tuple[str, bytes]] = []

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def list(self, prefix: str) -> Any:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        if key.endswith(".parquet"):
            self.held.append((key, data))
            return content_etag(data)
        etag = self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        if "/log/" in key:
            for held_key, held_data in self.held:
                self.inner.put(held_key, held_data, if_none_match=True)
            self.held.clear()
        return etag


BROKEN = Transition(
    "broken-add_frames",
    setup_draft,
    lambda c, ids: _version(c, ids).add_frames([frame(4), frame(5)]),
    None,
    wrap=LateSegments,
)

TRANSITIONS = [
    Transition(
        "Dataset.create",
        setup_empty,
        lambda c, ids: Dataset.create(
            "new", tags=["a"], description="fresh", metadata={"m": 1}, raise_if_exists=True, client=c
        ),
        AlreadyExistsError,
    ),
    Transition(
        "create_version-root",
        setup_draft,
        lambda c, ids: DatasetVersion.create_version(
            dataset_name="ds", version_name="root2", metadata={"r": 1}, raise_if_exists=True, client=c
        ),
        AlreadyExistsError,
    ),
    Transition(
        "create_version-child",
        setup_published,
        lambda c, ids: DatasetVersion.create_version(
            dataset_name="ds", version_name="child", parent_version_ids=[ids["draft"]], client=c
        ),
        None,  # get-or-create
    ),
    Transition(
        "create_snapshot",
        setup_draft,
        lambda c, ids: DatasetVersion.create_snapshot(
            dataset_name="ds", publish_name="snap1", child_name="next", child_metadata={"n": 1}, client=c
        ),
        AlreadyExistsError,  # "snap1" is taken by the snapshot now
    ),
    Transition(
        "publish_version", setup_draft, lambda c, ids: _version(c, ids).publish_version(), InvalidStateError
    ),
    Transition("publish_version-compacting", setup_segments, _publish_compacting, InvalidStateError),
    Transition(
        "set_version_name", setup_draft, lambda c, ids: _version(c, ids).set_version_name("renamed"), None
    ),
    Transition(
        "set_metadata", setup_draft, lambda c, ids: _version(c, ids).set_metadata({"k": "v2", "n": [1]}), None
    ),
    Transition(
        "Dataset.set_metadata",
        setup_draft,
        lambda c, ids: Dataset.get("ds", client=c).set_metadata({"owner": "you"}),
        None,
    ),
    Transition(
        "delete_version-draft",
        setup_scratch,
        lambda c, ids: Dataset.get("ds", client=c).delete_version(version_name="scratch"),
        NotFoundError,
    ),
    Transition(
        "delete_version-force",
        setup_chain,
        lambda c, ids: Dataset.get("ds", client=c).delete_version(version_id=ids["draft"], force=True),
        NotFoundError,
    ),
    Transition(
        "Dataset.delete-force",
        setup_chain,
        lambda c, ids: Dataset.delete("ds", delete_all_versions=True, force=True, client=c),
        NotFoundError,
        after_check=_name_is_free_again,
    ),
    Transition(
        "add_frames",
        setup_draft,
        # two segments (segment_rows=2), one commit; f0001 is replaced, f0004 and g0005 are new
        lambda c, ids: _version(c, ids).add_frames([frame(1, "bus"), frame(4), group(5)], segment_rows=2),
        None,
    ),
    Transition(
        "update_frames",
        setup_draft,
        lambda c, ids: _version(c, ids).update_frames([frame(2, "truck", city="ulm")]),
        None,
    ),
    Transition(
        "delete_frames", setup_draft, lambda c, ids: _version(c, ids).delete_frames(["f0001", "g0003"]), None
    ),
    Transition(
        "compact",
        setup_segments_published,
        lambda c, ids: _version(c, ids).compact(),
        None,
    ),
]
BY_NAME = {t.name: t for t in [*TRANSITIONS, BROKEN]}


# ---------------------------------------------------------------------------- observing a store


class Canon:
    """Keep known ids; number the others in order of appearance."""

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        self.fresh: dict[str, str] = {}

    def __call__(self, ident: str | None) -> str | None:
        if ident is None or ident in self.known:
            return ident
        return self.fresh.setdefault(ident, f"<new {len(self.fresh)}>")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


_FRAME_COLUMNS = ["id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob"]


def frames_of(version: DatasetVersion) -> tuple[str, ...]:
    """A version's effective frames (content only, no provenance), canonical and sorted."""
    rows = version.get_frames_table(columns=_FRAME_COLUMNS).to_pylist()
    return tuple(sorted(_json(row) for row in rows))


def summary(store: ObjectStore, known: frozenset[str]) -> Summary:
    """The state as the API shows it, canonical; loading all of it also checks that it loads.

    Per dataset: name, id, description, project, tags, metadata, current version, and per version
    its id, name, status, parent, comment, tags, metadata and effective frames.
    """
    client = Client(store)
    canon = Canon(known)
    out = []
    for ds in Dataset.list_datasets(client=client):
        assert Dataset.get(dataset_name=ds.name, client=client).id == ds.id
        assert Dataset.get(dataset_id=ds.id, client=client).name == ds.name
        versions = ds.get_versions()
        current = ds.get_current() if versions else None
        out.append(
            (
                ds.name,
                canon(ds.id),
                ds.description,
                ds.project,
                tuple(ds.tags),
                _json(ds.get_metadata()),
                tuple(
                    (
                        canon(v.id),
                        v.name,
                        v.status,
                        canon(v.parent_id),
                        v.comment,
                        tuple(v.tags),
                        _json(v.get_metadata()),
                        frames_of(v),
                    )
                    for v in versions
                ),
                canon(current.id) if current is not None else None,
            )
        )
    return tuple(out)


def known_ids(store: ObjectStore) -> frozenset[str]:
    """Every dataset and version id the API shows in ``store``."""
    client = Client(store)
    ids: set[str] = set()
    for ds in Dataset.list_datasets(client=client):
        ids.add(ds.id)
        ids.update(v.id for v in ds.get_versions())
    return frozenset(ids)


# ---------------------------------------------------------------------------- the child


def crash_child(folder: str, name: str, ids: Ids, k: int, mode: str) -> None:
    """Run transition ``name`` on the store in ``folder``, ending the process at request ``k``.

    Exit status: ``CRASH_EXIT_CODE`` when the crash happened; 0 when the transition finished first
    (``k`` is past its last request); 1 when it raised (the traceback goes to standard error).
    """
    t = BY_NAME[name]
    store: ObjectStore = FaultyStore(local(folder), fail_at=k, mode=mode)  # type: ignore[arg-type]
    if t.wrap is not None:
        store = t.wrap(store)
    try:
        t.run(Client(store), ids)
    except BaseException:  # noqa: BLE001 - reported through the exit status
        traceback.print_exc()
        sys.stderr.flush()
        raise SystemExit(1) from None


def put_twice(folder: str, mode: str) -> None:
    """Three puts through a FaultyStore that crashes at the second (for the crash-mode contract test)."""
    store = FaultyStore(local(folder), fail_at=2, mode=mode)  # type: ignore[arg-type]
    store.put("a", b"1")
    store.put("b", b"2")
    store.put("c", b"3")  # never reached
