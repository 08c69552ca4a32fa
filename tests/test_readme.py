"""The README's Python examples run as written, in order, on the embedded default store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hds_s3 import Dataset, DatasetVersion, set_default_client

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def _default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "store"))
    set_default_client(None)
    yield
    set_default_client(None)


def test_the_readme_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README is the test
    assert namespace["failed"] == []
    current = DatasetVersion.get_version(dataset_name="cars", version_name="Current")
    assert current.is_published and current.get_stats()["frames"] == 2
    assert [v.name for v in Dataset.get(dataset_name="cars").get_versions(only_draft=True)] == []
