"""Requirements checked inside the commit, with the interleavings forced deterministically.

Each test wraps the store of one writer (A) in :class:`Interleave`, which runs another writer's
whole call (B, on the unwrapped store) at one chosen request of A: the narrow window between what
A read and the conditional write that commits it. B's call is acknowledged before A commits, so
A's commit must see it:

- ``update_frames`` of a frame that B deleted meanwhile does not bring it back;
- metadata merges (``update_metadata``, COCO import) re-apply to the newest metadata and keep B's;
- a publish racing a writer that commits small batches back to back lands while the writer is
  still writing (it never waits for the writer to stop);
- every rebuild loop has a budget: a frame commit whose pointer keeps moving gives up with
  ConflictError and changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hds_s3 import Client, DatasetVersion, InvalidStateError, SingleFrame
from hds_s3.errors import ConflictError
from hds_s3.format.commit import RetryBudget
from hds_s3.index.frameindex import FrameIndex
from hds_s3.index.segments import deletes_table
from hds_s3.store import MemoryStore
from hds_s3.store.base import ObjectInfo, ObjectStore
from hds_s3.tools.coco import COCO_KEY, import_coco

COCO_FILE = Path(__file__).parent / "data" / "coco_small.json"


class Interleave:
    """A store that runs ``action`` before each request of its own for which ``when(op, key)`` holds.

    At most ``times`` runs (then requests pass straight through); ``runs`` counts them. The
    action runs in the requesting thread, on another client, before the request reaches ``inner``.
    """

    def __init__(
        self,
        inner: ObjectStore,
        when: Callable[[str, str], bool],
        action: Callable[[], None],
        times: int = 1,
    ) -> None:
        self.inner = inner
        self.when = when
        self.action = action
        self.times = times
        self.runs = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    def _before(self, op: str, key: str) -> None:
        with self._lock:
            due = self.runs < self.times and self.when(op, key)
            if due:
                self.runs += 1
        if due:
            self.action()

    def get(self, key: str) -> tuple[bytes, str]:
        self._before("get", key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._before("get_range", key)
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        self._before("head", key)
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        self._before("put", key)
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._before("list", prefix)
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._before("delete", key)
        self.inner.delete(key)


def _frame(i: int, label: str = "car") -> SingleFrame:
    f = SingleFrame(source=f"s3://bucket/{i:04d}.jpg", width=64, height=48, metadata={"i": i}, id=f"f{i}")
    f.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=[label])
    return f


def _ids(version: DatasetVersion) -> set[str]:
    return set(version.get_frames_table(columns=["id"]).column("id").to_pylist())


def _segment_put(op: str, key: str) -> bool:
    return op == "put" and key.endswith(".parquet")


def _document_put(op: str, key: str) -> bool:
    """The commit point of a change of the tree: the create of its log entry."""
    return op == "put" and "/log/" in key


@pytest.fixture
def inner() -> MemoryStore:
    return MemoryStore()


def test_update_of_a_frame_deleted_meanwhile_does_not_bring_it_back(inner: MemoryStore) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="d", client=Client(inner))
    draft.add_frames([_frame(1), _frame(2)])

    def delete_f1() -> None:  # B: acknowledged before A commits its update
        DatasetVersion.get_version("d", version_id=draft.id, client=Client(inner)).delete_frames(["f1"])

    a = DatasetVersion.get_version(
        "d", version_id=draft.id, client=Client(Interleave(inner, _segment_put, delete_f1))
    )
    failed = a.update_frames([_frame(1, "dog"), _frame(2, "dog")])

    after = DatasetVersion.get_version("d", version_id=draft.id, client=Client(inner))
    assert _ids(after) == {"f2"}, "a frame deleted (and acknowledged) before the update committed came back"
    assert [f.reason for f in failed if "f1" in f.reason] and len(failed) == 1
    assert "deleted" in failed[0].reason
    labels = after.get_single_frame("f2").get_all_annotations()[0].labels
    assert labels == ["dog"], "the update of the frame that still exists must land"


def test_update_metadata_keeps_a_concurrent_change_of_other_keys(inner: MemoryStore) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="m", client=Client(inner))
    draft.set_metadata({"kept": 0})

    def set_owner() -> None:
        b = DatasetVersion.get_version("m", version_id=draft.id, client=Client(inner))
        b.set_metadata({**b.get_metadata(), "owner": "b"})

    a = DatasetVersion.get_version(
        "m", version_id=draft.id, client=Client(Interleave(inner, _document_put, set_owner))
    )
    assert a.update_metadata({"labels": ["car"]}) == {"kept": 0, "owner": "b", "labels": ["car"]}
    assert a.update_metadata(lambda meta: {**meta, "n": len(meta)})["n"] == 3
    assert DatasetVersion.get_version("m", version_id=draft.id, client=Client(inner)).get_metadata() == {
        "kept": 0,
        "owner": "b",
        "labels": ["car"],
        "n": 3,
    }


def test_coco_import_keeps_a_concurrent_metadata_change(inner: MemoryStore) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="c", client=Client(inner))

    def set_owner() -> None:
        b = DatasetVersion.get_version("c", version_id=draft.id, client=Client(inner))
        b.set_metadata({**b.get_metadata(), "owner": "b"})

    a = DatasetVersion.get_version(
        "c", version_id=draft.id, client=Client(Interleave(inner, _document_put, set_owner))
    )
    import_coco(a, COCO_FILE, "s3://bucket/coco/")
    meta = DatasetVersion.get_version("c", version_id=draft.id, client=Client(inner)).get_metadata()
    assert meta["owner"] == "b", "the COCO import overwrote a metadata change acknowledged before it"
    assert meta[COCO_KEY]["categories"], "the import's categories are stored too"


def test_a_publish_lands_while_a_writer_keeps_committing(inner: MemoryStore) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="p", client=Client(inner))
    draft.add_frames([_frame(0)])
    landed: list[str] = []
    refused: list[str] = []
    counter = iter(range(1, 1000))

    def commit_one_more() -> None:  # B: a writer committing one small batch after another
        i = next(counter)
        b = DatasetVersion.get_version("p", version_id=draft.id, client=Client(inner))
        try:
            b.add_frames([_frame(i)])
            landed.append(f"f{i}")
        except InvalidStateError:
            refused.append(f"f{i}")

    def reads_frames(op: str, key: str) -> bool:
        return op in ("get", "get_range") and key.endswith(".parquet")

    hook = Interleave(inner, reads_frames, commit_one_more, times=25)
    a = DatasetVersion.get_version("p", version_id=draft.id, client=Client(hook))
    a.publish_version()
    assert refused, (
        f"the publish only landed once the writer stopped ({len(landed)} batches committed meanwhile, "
        "none refused): a steady writer can starve it"
    )
    published = DatasetVersion.get_version("p", version_id=draft.id, client=Client(inner))
    assert published.is_published
    assert _ids(published) == {"f0", *landed}, "every acknowledged batch, and nothing else, is published"
    assert published.get_stats()["frames"] == 1 + len(landed)


def test_a_frame_commit_whose_pointer_keeps_moving_gives_up_after_its_budget(inner: MemoryStore) -> None:
    draft = DatasetVersion.create_new_dataset(dataset_name="b", client=Client(inner))
    draft.add_frames([_frame(0)])
    counter = iter(range(1, 1000))

    def move_pointer() -> None:
        b = DatasetVersion.get_version("b", version_id=draft.id, client=Client(inner))
        b.add_frames([_frame(next(counter))])

    def manifest_put(op: str, key: str) -> bool:  # A wrote its manifest; B moves the pointer first
        return op == "put" and "/versions/" in key

    hook = Interleave(inner, manifest_put, move_pointer, times=1000)
    index = FrameIndex(Client(hook).catalog)
    ref = index.write_segment(draft.dataset_id, draft.id, deletes_table(["f0"]), "deletes")
    with pytest.raises(ConflictError, match="kept moving"):
        index.append(draft.dataset_id, draft.id, [ref], what="delete f0", budget=RetryBudget(max_attempts=4))
    assert hook.runs == 4
    after = DatasetVersion.get_version("b", version_id=draft.id, client=Client(inner))
    assert "f0" in _ids(after), "the commit that gave up changed nothing"
