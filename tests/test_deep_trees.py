"""Trees of 10,000 versions, a chain that deep and a wide one, through the API and the real command.

Every walk of the tree is iterative: drawing it (``format_tree``, ``hds versions tree``, its
``--json``), finding the current version, checking the simple structure for a snapshot, deleting a
subtree. The trees are written as one format-1 dataset document, as a long history of snapshots
would have left it, and converted by the upgrade (which writes every version's record and name, and
one checkpoint of the whole tree), so the test does not spend its time committing 10,000 versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hds_command import run_hds

from hds_s3 import Client, Dataset, DatasetVersion
from hds_s3.api import TREE_INDENT_LEVELS
from hds_s3.format import layout
from hds_s3.format.catalog import marker_bytes
from hds_s3.format.docs import (
    DRAFT,
    PUBLISHED,
    DatasetClaim,
    DatasetDoc,
    VersionEntry,
    dump_claim,
    dump_dataset_doc,
)
from hds_s3.store import LocalStore, MemoryStore
from hds_s3.tools.upgrade import upgrade

VERSIONS = 10_000


def _write_tree(folder: Path, name: str, parent_of: list[int | None]) -> str:
    """Make dataset ``name`` whose versions are ``v0..vN`` with the given parents; leaves are drafts.

    Built and upgraded in memory, then laid out as the local folder store keeps objects (one file
    per key), which is quicker than 20,000 locked writes through it.
    """
    store = MemoryStore()
    store.put(layout.STORE_MARKER, marker_bytes(layout.LEGACY_STORE_FORMAT))
    has_child = {p for p in parent_of if p is not None}
    ids = [layout.new_id() for _ in parent_of]
    entries = []
    for i, parent in enumerate(parent_of):
        leaf = i not in has_child
        entries.append(
            VersionEntry(
                id=ids[i],
                name=f"v{i}",
                parent=None if parent is None else ids[parent],
                status=DRAFT if leaf else PUBLISHED,
                created=1_000 + i,
                published=None if leaf else 2_000 + i,
                stats=None if leaf else {"frames": 0},
            )
        )
    dataset_id = layout.new_id()
    doc = DatasetDoc(id=dataset_id, name=name, created=1_000, updated=3_000, versions=tuple(entries))
    store.put(layout.dataset_doc_key(dataset_id), dump_dataset_doc(doc))
    store.put(layout.dataset_claim_key(name), dump_claim(DatasetClaim(name=name, dataset_id=dataset_id)))
    report = upgrade(Client(store))
    assert report.done and report.versions == len(parent_of)
    for info in store.list(""):
        path = folder.joinpath(*info.key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get(info.key)[0])
    return dataset_id


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chain")
    _write_tree(folder, "chain", [None, *range(VERSIONS - 1)])
    return folder


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wide")
    # a root, 99 children under it, and 99 more under each of those: 9,901 versions
    parents: list[int | None] = [None, *([0] * 99)]
    for mid in range(1, 100):
        parents.extend([mid] * 99)
    _write_tree(folder, "wide", parents)
    return folder


def test_a_10000_deep_chain_works_through_the_api(chain: Path) -> None:
    client = Client(LocalStore(chain))
    ds = Dataset.get(dataset_name="chain", client=client)
    lines = ds.format_tree().splitlines()
    assert len(lines) == 1 + VERSIONS
    assert f"v{VERSIONS - 1} [draft]" in lines[-1] and lines[-1].endswith("<- current")
    # indented once per ancestor up to TREE_INDENT_LEVELS, then marked with the depth: linear size
    assert lines[-1].startswith("  " * TREE_INDENT_LEVELS + f"- [depth {VERSIONS}] v{VERSIONS - 1} ")
    assert sum(map(len, lines)) < 200 * len(lines)
    assert ds.get_current().name == f"v{VERSIONS - 1}"
    # the simple structure holds: a snapshot of the leaf is allowed and lands
    child = DatasetVersion.create_snapshot(dataset_name="chain", publish_name="last", client=client)
    assert child.get_parent() is not None and child.get_parent().name == "last"  # type: ignore[union-attr]


def test_a_10000_deep_chain_works_through_the_command(chain: Path) -> None:
    text = run_hds(chain, "versions", "tree", "--dataset", "chain")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "chain" and lines[1].startswith("└── v0  [published]")
    assert lines[VERSIONS].startswith("    " * (TREE_INDENT_LEVELS - 1) + f"└── [depth {VERSIONS}] ")
    assert sum(map(len, lines)) < 200 * len(lines)
    as_json = run_hds(chain, "--json", "versions", "tree", "--dataset", "chain")
    assert as_json.returncode == 0, as_json.stderr
    nodes = json.loads(as_json.stdout)["versions"]
    assert len(nodes) >= VERSIONS
    by_id = {n["id"]: n for n in nodes}
    assert all(n["parent"] is None or by_id[n["parent"]]["children"] == [n["id"]] for n in nodes)


def test_a_10000_version_tree_works_through_the_api_and_the_command(wide: Path) -> None:
    client = Client(LocalStore(wide))
    ds = Dataset.get(dataset_name="wide", client=client)
    assert ds.version_count == 9_901
    assert len(ds.format_tree().splitlines()) == 1 + 9_901
    assert ds.paradigm == "general"
    drawn = run_hds(wide, "versions", "tree", "--dataset", "wide")
    assert drawn.returncode == 0, drawn.stderr
    assert len(drawn.stdout.splitlines()) == 1 + 9_901
    # deleting a subtree of 100 versions with force walks it without recursion
    ds.delete_version(version_name="v1", force=True)
    assert Dataset.get(dataset_name="wide", client=client).version_count == 9_901 - 100
