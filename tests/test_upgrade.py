"""A store of format 1 reads as before, refuses writes naming ``hds upgrade``, and converts in place.

``tests/data/format1_store`` is a store written by the last hds_s3 of format 1 (one document per
dataset holding its whole tree): a chain of snapshots whose children added, updated and deleted
frames, a published root with two draft children and a deleted one, and an empty dataset. The
upgrade is checked as every transition is: a failure at any of its requests (the request fails,
or it lands and its response is lost) leaves every dataset readable as before, and running it
again completes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from crash_workers import known_ids, summary
from hds_command import run_hds

from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame, StorageError, UpgradeRequiredError
from hds_s3.format import layout
from hds_s3.query.dataview import DataView
from hds_s3.store import FaultyStore, LocalStore, MemoryStore, ObjectStore
from hds_s3.tools.fsck import fsck
from hds_s3.tools.upgrade import upgrade

FIXTURE = Path(__file__).parent / "data" / "format1_store"


def _copy(dst: ObjectStore) -> ObjectStore:
    for path in sorted(FIXTURE.rglob("*")):
        if path.is_file():
            dst.put(path.relative_to(FIXTURE).as_posix(), path.read_bytes())
    return dst


def _objects(store: ObjectStore) -> dict[str, str]:
    return {info.key: info.etag for info in store.list("")}


def _stats(store: ObjectStore) -> dict[str, Any]:
    client = Client(store)
    return {
        (ds.name, v.name): v.get_stats()
        for ds in Dataset.list_datasets(client=client)
        for v in ds.get_versions()
        if v.is_published
    }


@pytest.fixture
def old() -> MemoryStore:
    store = MemoryStore()
    _copy(store)
    return store


def test_a_format_1_store_reads_as_before(old: MemoryStore) -> None:
    c = Client(old)
    assert [d.name for d in Dataset.list_datasets(client=c)] == ["coco-like", "empty", "tree"]
    ds = Dataset.get("coco-like", client=c)
    assert ds.tags == ["fixture", "f1"] and ds.get_metadata() == {"owner": "tests"}
    assert [(v.name, v.status) for v in ds.get_versions()] == [
        ("v1", "published"),
        ("v2", "published"),
        ("work", "draft"),
    ]
    assert ds.get_current().name == "work" and ds.get_current().comment == "still being labelled"
    v1 = ds.get_version("v1")
    v2 = ds.get_version("v2")
    assert v1.get_frame_count() == 12 and v2.get_frame_count() == 15
    assert v1.get_metadata() == {"stage": "one"}
    assert v2.get_single_frame("frame-0000").get_all_annotations()[0].labels == ["dog"]
    assert v1.stored_stats is not None and v1.stored_stats["frames"] == 12
    assert v2.get_stats()["labels"] == [
        {"name": "car", "count": 10},
        {"name": "cat", "count": 4},
        {"name": "dog", "count": 1},
    ]
    tree = Dataset.get("tree", client=c)
    assert tree.paradigm == "general" and len(tree.format_tree().splitlines()) == 4
    view = DataView(client=c)
    view.add_query(dataset_name="coco-like", version_name="v2", roi_query="cat")
    assert view.get_count() == 4
    assert fsck(c).ok


def test_writes_to_a_format_1_store_are_refused_naming_hds_upgrade(old: MemoryStore) -> None:
    c = Client(old)
    before = _objects(old)
    work = DatasetVersion.get_version("coco-like", version_name="work", client=c)
    writes = [
        lambda: work.add_frames([SingleFrame(source="s3://b/new.jpg", id="new")]),
        lambda: work.set_metadata({"x": 1}),
        lambda: work.publish_version(),
        lambda: DatasetVersion.create_snapshot(dataset_name="coco-like", client=c),
        lambda: DatasetVersion.create_version(dataset_name="tree", version_name="c", client=c),
        lambda: Dataset.get("tree", client=c).delete_version(version_name="a"),
        lambda: Dataset.get("empty", client=c).add_tags(["x"]),
        lambda: Dataset.create("brand-new", client=c),
        lambda: Dataset.delete("empty", client=c),
    ]
    for write in writes:
        with pytest.raises(UpgradeRequiredError, match="hds upgrade"):
            write()
    assert {k: v for k, v in _objects(old).items() if not k.endswith(".parquet")} == {
        k: v for k, v in before.items() if not k.endswith(".parquet")
    }
    Dataset.create("coco-like", client=c)  # get-or-create of an existing dataset only reads


def test_the_upgrade_converts_in_place_and_then_writes_work(old: MemoryStore) -> None:
    known = known_ids(old)
    before, stats = summary(old, known), _stats(old)
    plan = upgrade(Client(old), dry_run=True)
    assert plan.dry_run and sorted(plan.converted) == ["coco-like", "empty", "tree"] and plan.marker == (1, 2)
    assert _objects(old) == _objects(_copy(MemoryStore()))  # the dry run wrote nothing
    report = upgrade(Client(old))
    assert report.done and sorted(report.converted) == ["coco-like", "empty", "tree"] and report.versions == 7
    assert summary(old, known) == before and _stats(old) == stats
    raw = json.loads(old.get(layout.STORE_MARKER)[0])
    assert raw["format_version"] == layout.STORE_FORMAT
    checked = fsck(Client(old))
    assert checked.ok and not checked.pending, checked.summary()
    # writes work, on the converted trees
    c = Client(old)
    work = DatasetVersion.get_version("coco-like", version_name="work", client=c)
    work.add_frames([SingleFrame(source="s3://b/new.jpg", id="new")])
    child = DatasetVersion.create_snapshot(dataset_name="coco-like", publish_name="v3", client=c)
    assert child.get_parent().get_frame_count() == 16  # type: ignore[union-attr]
    DatasetVersion.create_version(
        dataset_name="tree", version_name="c", parent_version_names="Current", client=c
    )
    Dataset.get("tree", client=c).delete_version(version_name="a")
    assert [v.name for v in Dataset.get("tree", client=c).get_versions()] == ["Current", "b", "c"]
    # running it again changes nothing
    again = upgrade(Client(old))
    assert again.done and again.converted == () and again.already == 3
    assert fsck(Client(old)).ok


@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_failure_at_any_request_of_the_upgrade_leaves_every_dataset_readable_and_a_rerun_completes_it(
    mode: str,
) -> None:
    template = _copy(MemoryStore())
    known = known_ids(template)
    before = summary(template, known)
    counting = FaultyStore(_copy(MemoryStore()), fail_at=None)
    upgrade(Client(counting))  # type: ignore[arg-type]
    requests = counting.count
    assert requests > 20
    problems = []
    for k in range(1, requests + 1):
        store = _copy(MemoryStore())
        try:
            upgrade(Client(FaultyStore(store, fail_at=k, mode=mode)))  # type: ignore[arg-type]
        except StorageError:
            pass
        if summary(store, known) != before:
            problems.append(f"k={k}: the store does not read as before")
            continue
        report = upgrade(Client(store))
        if not report.done or summary(store, known) != before:
            problems.append(f"k={k}: the rerun did not complete it ({report.summary()})")
        elif not fsck(Client(store)).ok:
            problems.append(f"k={k}: damage after the rerun: {fsck(Client(store)).summary()}")
    assert not problems, "\n".join(problems)


def test_hds_upgrade_with_a_dry_run_first(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    shutil.copytree(FIXTURE, folder)
    refused = run_hds(folder, "versions", "create", "--dataset", "tree", "--parent", "Current", "c")
    assert refused.returncode == 1 and "hds upgrade" in refused.stderr
    dry = run_hds(folder, "--json", "upgrade", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["marker"] == {"before": 1, "after": 2}
    assert json.loads(LocalStore(folder).get(layout.STORE_MARKER)[0])["format_version"] == 1
    done = run_hds(folder, "upgrade", "--yes")
    assert done.returncode == 0, done.stderr
    assert "converted 3 datasets" in done.stdout
    created = run_hds(folder, "versions", "create", "--dataset", "tree", "--parent", "Current", "c")
    assert created.returncode == 0, created.stderr
    listed = run_hds(folder, "--json", "versions", "list", "--dataset", "coco-like")
    assert [v["name"] for v in json.loads(listed.stdout)] == ["v1", "v2", "work"]
    assert "converted 0 datasets" in run_hds(folder, "upgrade", "--yes").stdout
