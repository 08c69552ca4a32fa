"""Every code block of the seed page "Datasets and Dataset Versions" runs with only the import changed.

The blocks ship in ``tests/data/seed_dataset_blocks.txt`` (in the page's order); each runs on the
default client (the embedded local folder, via ``HDS_STORE``) after a set-up that gives it the
state the page's prose presumes (e.g. a published version named ``PublishedVersion``).
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import hds_s3
from hds_s3 import Dataset, DatasetVersion, set_default_client

SEED = Path(__file__).resolve().parent / "data" / "seed_dataset_blocks.txt"
BLOCKS = 26


def _blocks() -> list[str]:
    text = SEED.read_text(encoding="utf-8")
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]
    assert len(blocks) == BLOCKS, f"{SEED.name} holds {len(blocks)} code blocks, the tests index {BLOCKS}"
    return blocks


def _run(block: str, namespace: dict[str, object]) -> str:
    code = block.replace("from allegroai import", "from hds_s3 import")
    assert "allegroai" not in code
    # Later blocks rely on the page's first imports, as a reader's session would.
    namespace.setdefault("Dataset", Dataset)
    namespace.setdefault("DatasetVersion", DatasetVersion)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "seed-dataset.md", "exec"), namespace)  # noqa: S102 - the page is the test
    return out.getvalue()


@pytest.fixture(autouse=True)
def default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "store"))
    set_default_client(None)
    yield
    set_default_client(None)


def _my_dataset(*published: str, drafts: tuple[str, ...] = ()) -> None:
    """MyDataset with a chain of published versions (by name), then the Current draft, then root drafts."""
    DatasetVersion.create_new_dataset(dataset_name="MyDataset")
    for name in published:
        DatasetVersion.create_snapshot(dataset_name="MyDataset", publish_name=name)
    for name in drafts:
        DatasetVersion.create_version(dataset_name="MyDataset", version_name=name)


def test_creating_datasets_blocks_run_in_page_order() -> None:
    blocks, ns = _blocks(), {"__name__": "seed"}
    outputs = [_run(b, ns) for b in blocks[:6]]
    assert outputs[2] == ""  # 'myDataset One' did not exist yet
    assert outputs[3] == "Dataset exists.\n"
    ds = Dataset.get(dataset_name="myDataset")
    assert [v.name for v in ds.get_versions()] == ["Current"]
    assert {d.name for d in Dataset.list_datasets()} == {"myDataset", "myDataset One", "myDataset Two"}
    assert isinstance(ns["myDataset"], DatasetVersion) and ns["myDataset"].name == "Current"


@pytest.mark.parametrize(
    "index, setup",
    [
        (6, lambda: _my_dataset()),
        (7, lambda: _my_dataset(drafts=("other",))),
        (8, lambda: _my_dataset("v1", "v2")),
    ],
)
def test_deleting_datasets(index: int, setup: Callable[[], None]) -> None:
    setup()
    _run(_blocks()[index], {})
    assert not Dataset.exists(dataset_name="MyDataset")


def test_snapshot_blocks() -> None:
    blocks = _blocks()
    _my_dataset()
    first = DatasetVersion.get_current(dataset_name="MyDataset")
    ns: dict[str, object] = {}
    _run(blocks[9], ns)
    snap = DatasetVersion.get_version(dataset_name="MyDataset", version_id=first.id)
    assert snap.is_published and snap.name.startswith("snapshot 2")
    assert ns["myDataset"].name == "Current"  # type: ignore[attr-defined]
    _run(blocks[10], ns)
    assert DatasetVersion.get_version(dataset_name="MyDataset", version_name="NewSnapshotName").is_published
    _run(blocks[11], ns)
    assert DatasetVersion.get_current(dataset_name="MyDataset").name == "NewCurrentVersionName"
    _run(blocks[12], ns)
    current = DatasetVersion.get_current(dataset_name="MyDataset")
    assert current.get_metadata() == {"abc": "1234", "def": "5678"} and current.comment == "some text comment"


def test_child_and_root_version_blocks() -> None:
    blocks = _blocks()
    _my_dataset("PublishedVersion")
    ns: dict[str, object] = {}
    _run(blocks[13], ns)
    child = ns["myVersion"]
    assert isinstance(child, DatasetVersion) and child.name == "NewChildVersion"
    with pytest.raises(ValueError, match="NewChildVersion"):
        _run(blocks[14], ns)  # it exists now
    _run(blocks[15], ns)
    assert (
        DatasetVersion.get_version(dataset_name="MyDataset", version_name="NewRootVersion").parent_id is None
    )


def test_getting_versions_blocks() -> None:
    blocks = _blocks()
    _my_dataset("VersionName")
    ns: dict[str, object] = {}
    _run(blocks[16], ns)
    assert [v.name for v in ns["myDatasetversion"]] == ["VersionName", "Current"]  # type: ignore[attr-defined]
    _run(blocks[17], ns)
    assert [v.name for v in ns["myDatasetversion"]] == ["VersionName"]  # type: ignore[attr-defined]
    _run(blocks[18], ns)
    assert [v.name for v in ns["myDatasetversion"]] == ["Current"]  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="versions"):
        _run(blocks[19], ns)
    assert ns["myDatasetversion"].name == "Current"  # type: ignore[attr-defined]
    _run(blocks[20], ns)
    assert ns["myDatasetversion"].name == "VersionName"  # type: ignore[attr-defined]


def test_delete_and_publish_version_blocks() -> None:
    blocks = _blocks()
    _my_dataset("base", drafts=("VersionToDelete", "VersionToPublish"))
    _run(blocks[21], {})
    assert not any(v.name == "VersionToDelete" for v in DatasetVersion.get_versions(dataset_name="MyDataset"))
    _run(blocks[22], {})
    assert DatasetVersion.get_version(dataset_name="MyDataset", version_name="VersionToPublish").is_published


def test_mask_label_blocks_print_what_the_page_shows() -> None:
    blocks = _blocks()
    _my_dataset(drafts=("VersionName",))
    ns: dict[str, object] = {}
    _run(blocks[23], ns)
    printed = _run(blocks[24], ns)
    assert printed.strip() == blocks[25].strip()
    assert hds_s3.__version__
