"""The commit log of format 2: any checkpoint plus the entries after it is the state from the start.

Random histories of tree changes (create, publish, snapshot, rename, metadata, tags, deletes with
and without force; refused ones included) are committed through the API on a memory store, with
checkpoints written at random points. Afterwards the tree folded from every checkpoint and from the
first entry must be the same, the head's aggregates must be those of that tree, and every version's
materialised record and name must say what the log says. Also: a commit's metadata reads and writes
do not grow with the tree, and a reader opens a version with a few small requests.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, Dataset, DatasetVersion, HdsError
from hds_s3.format import layout
from hds_s3.format.commit import write_checkpoint
from hds_s3.format.docs import whole_aggregates
from hds_s3.format.log import LazyTree, LogState, load_whole, read_state
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "child",
                "publish",
                "snapshot",
                "rename",
                "metadata",
                "tags",
                "delete-draft",
                "delete-force",
                "checkpoint",
            ]
        ),
        st.integers(0, 1_000),
    ),
    min_size=1,
    max_size=40,
)


def _apply(c: Client, op: str, pick: int, n: int) -> None:
    ds = Dataset.get("d", client=c)
    versions = ds.get_versions()
    published = [v for v in versions if v.is_published]
    drafts = [v for v in versions if v.is_draft]
    if op == "child" and published:
        parent = published[pick % len(published)]
        DatasetVersion.create_version(
            dataset_name="d", version_name=f"c{n}", parent_version_ids=parent.id, client=c
        )
    elif op == "publish" and drafts:
        drafts[pick % len(drafts)].publish_version()
    elif op == "snapshot":
        DatasetVersion.create_snapshot(dataset_name="d", publish_name=f"s{n}", child_name=f"d{n}", client=c)
    elif op == "rename" and versions:
        versions[pick % len(versions)].set_version_name(f"r{n}")
    elif op == "metadata" and drafts:
        drafts[pick % len(drafts)].update_metadata({f"k{n}": n})
    elif op == "tags":
        ds.add_tags([f"t{pick % 3}"])
    elif op == "delete-draft" and drafts:
        ds.delete_version(version_id=drafts[pick % len(drafts)].id)
    elif op == "delete-force" and published:
        ds.delete_version(version_id=published[pick % len(published)].id, force=True)
    elif op == "checkpoint":
        write_checkpoint(c.store, ds.id)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_every_checkpoint_plus_the_entries_after_it_is_the_state_from_the_start(ops: list[Any]) -> None:
    store = MemoryStore()
    c = Client(store)
    ds = Dataset.create("d", client=c)
    for n, (op, pick) in enumerate(ops):
        try:
            _apply(c, op, pick, n)
        except HdsError:
            pass  # a refused change (a second draft's snapshot, a name taken, ...) changes nothing
    state = read_state(store, ds.id)
    assert isinstance(state, LogState)
    checkpoints = [
        parts.seq
        for info in store.list(layout.checkpoint_prefix(ds.id))
        if (parts := layout.parse_key(info.key)) is not None and parts.seq is not None
    ]
    from_start = load_whole(store, replace(state, head=replace(state.head, checkpoint=None)))
    for seq in checkpoints:
        assert load_whole(store, replace(state, head=replace(state.head, checkpoint=seq))) == from_start
    # the aggregates the commits kept are those of the tree
    kids = {v.id: len(from_start.children(v.id)) for v in from_start.versions}
    counted = {
        v.id: replace(v, depth=from_start.depth(v.id), children=kids[v.id]) for v in from_start.versions
    }
    assert all(counted[v.id] == v for v in from_start.versions), "a record's depth or child count drifted"
    assert whole_aggregates(counted) == state.agg
    # what is materialised says what the log says
    view = LazyTree(store, state)
    for ver in from_start.versions:
        assert view.record(ver.id)[0] == ver
        assert view.version_named(ver.name) == ver
    head = Dataset.get("d", client=c).get_current() if from_start.versions else None
    assert (head.id if head else None) == (from_start.head().id if from_start.head() else None)


class Counting:
    """Counts the requests and bytes that reach a store, by kind of key."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.requests = 0
        self.read = 0
        self.written = 0

    def reset(self) -> None:
        self.requests = self.read = self.written = 0

    def get(self, key: str) -> tuple[bytes, str]:
        self.requests += 1
        data, etag = self.inner.get(key)
        self.read += len(data)
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.requests += 1
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        self.requests += 1
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        self.requests += 1
        self.written += len(data)
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list(self, prefix: str) -> Any:
        self.requests += 1
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.requests += 1
        self.inner.delete(key)


def _grow(c: Client, first: int, n: int) -> DatasetVersion:
    """``n`` more published versions in a chain ending with a draft, built by snapshots."""
    for i in range(first, first + n):
        DatasetVersion.create_snapshot(dataset_name="big", publish_name=f"v{i}", client=c)
    return DatasetVersion.get_current(dataset_name="big", client=c)


@pytest.mark.parametrize("size", [300])
def test_a_commit_and_opening_a_version_cost_the_same_in_a_large_tree(size: int) -> None:
    store = Counting(MemoryStore())
    c = Client(store)  # type: ignore[arg-type]
    Dataset.create("big", client=c)
    _grow(c, 0, 5)

    def cost() -> tuple[int, int, int]:
        store.reset()
        DatasetVersion.get_version("big", version_name="v3", client=Client(store)).get_stats()  # type: ignore[arg-type]
        opened = store.read
        store.reset()
        draft = DatasetVersion.get_current(dataset_name="big", client=c)
        draft.set_comment(f"at {draft.name}")
        return opened, store.read, store.written

    small = cost()
    _grow(c, 5, size)
    large = cost()
    # the tree grew 60-fold; what a commit and an open move does not (a checkpoint's write aside,
    # which this commit is not due for)
    assert large[0] <= small[0] * 1.5 + 512, (small, large)
    assert large[1] <= small[1] * 1.5 + 512, (small, large)
    assert large[2] <= small[2] * 1.5 + 512, (small, large)


def test_each_commit_records_who_made_it_and_the_history_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    c = Client(MemoryStore())
    monkeypatch.setenv("HDS_USER", "ada")
    draft = DatasetVersion.create_new_dataset("who", client=c)
    monkeypatch.setenv("HDS_USER", "grace")
    draft.publish_version()
    child = DatasetVersion.create_version(
        dataset_name="who", version_name="next", parent_version_ids=draft.id, client=c
    )
    assert (draft.created_by, draft.published_by) == ("ada", "grace")
    assert (child.created_by, child.published_by) == ("grace", None)
    again = DatasetVersion.get_version("who", version_name="Current", client=Client(c.store))
    assert (again.created_by, again.published_by) == ("ada", "grace")
    history = Dataset.get("who", client=c).get_history()
    assert [(h["user"], sorted(h["versions"])) for h in history] == [
        ("grace", ["Current", "next"]),  # the parent's record counts its new child
        ("grace", ["Current"]),
        ("ada", ["Current"]),
    ]
    assert "publish" in history[1]["what"] and history[0]["seq"] > history[1]["seq"]
    assert len(Dataset.get("who", client=c).get_history(limit=1)) == 1
    with pytest.raises(HdsError, match="limit"):
        Dataset.get("who", client=c).get_history(limit=0)


class _Unmaterialised:
    """A store that fails every write after a log entry's: a commit lands its entry, then stops."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.broken = False

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        if self.broken:
            from hds_s3.errors import StorageError

            raise StorageError(f"injected: {key}")
        etag = self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        self.broken = "/log/" in key
        return etag

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_writer_catching_up_materialises_what_other_writers_left_meanwhile() -> None:
    """Entries left unmaterialised appear while a writer catches up: it materialises them all first."""
    inner = MemoryStore()
    draft = DatasetVersion.create_new_dataset("d", client=Client(inner))
    crashing = _Unmaterialised(inner)
    left = DatasetVersion.get_version("d", version_id=draft.id, client=Client(crashing))  # type: ignore[arg-type]
    left.set_comment("one")  # entry 1 lands, its record and the head stay behind
    fired = []

    class LeaveAnother:
        """Before the catching-up writer's first record write, others commit twice; the second stops."""

        def __init__(self, store: ObjectStore) -> None:
            self.inner = store
            self.url = store.url

        def put(self, key: str, data: bytes, **kw: Any) -> str:
            if not fired and "/tree/" in key:
                fired.append(key)
                healthy = DatasetVersion.get_version("d", version_id=draft.id, client=Client(inner))
                healthy.add_tags(["x"])  # catches up entry 1, commits and materialises entry 2
                crashing.broken = False
                left.set_comment("two")  # entry 3 lands, unmaterialised
            return self.inner.put(key, data, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    writer = DatasetVersion.get_version(
        "d",
        version_id=draft.id,
        client=Client(LeaveAnother(inner)),  # type: ignore[arg-type]
    )
    writer.set_metadata({"mine": 1})
    assert fired
    state = read_state(inner, draft.dataset_id)
    # the writer found the head past what it caught up, and entry 3 pending: it materialised that
    # too before its own entry 4, and then its own
    assert isinstance(state, LogState) and not state.pending and state.head.seq == 4
    again = DatasetVersion.get_version("d", version_id=draft.id, client=Client(inner))
    assert again.comment == "two" and again.get_metadata() == {"mine": 1} and again.tags == ["x"]
