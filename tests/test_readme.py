"""The README's examples run as written and can be run again.

Every Python block of the tour runs twice in a row on the same store (each is re-runnable) and
prints something each time, and then the whole tour runs once more; the CLI tour's shell blocks run
through the installed ``hds`` console script, twice on the same store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hds_s3 import Dataset, DatasetVersion, set_default_client

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    level = title.split(" ", 1)[0]
    found = re.search(rf"^{level} ", text[start + len(title) :], re.M)
    return text[start : start + len(title) + found.start()] if found else text[start:]


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    return blocks


def cli_tour_blocks() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", _section("## A five-minute CLI tour"), re.S)
    assert len(blocks) >= 4
    return blocks


@pytest.fixture(autouse=True)
def _default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HDS_STORE", str(tmp_path / "store"))
    set_default_client(None)
    yield
    set_default_client(None)


def test_the_readme_python_blocks_run_twice_and_print(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = python_blocks()
    for i, block in enumerate(blocks):
        for run in (1, 2):
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README is the test
            assert capsys.readouterr().out.strip(), f"block {i + 1} printed nothing on run {run}"
    for block in blocks:  # the whole tour again, on the used store
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["failed"] == []
    cars = Dataset.get(dataset_name="cars")
    assert [(v.name, v.status) for v in cars.get_versions()] == [
        ("v1", "published"),
        ("Current", "draft"),
        ("relabel", "published"),
    ]
    current = DatasetVersion.get_current(dataset_name="cars")
    assert current.name == "Current" and current.get_frame_count() == 2
    assert DatasetVersion.get_version(dataset_name="cars", version_name="relabel").get_masks_labels()


def test_the_readme_names_the_extras_its_blocks_need() -> None:
    text = README.read_text(encoding="utf-8")
    pandas_block = next(b for b in python_blocks() if "import pandas" in b)
    before = text[: text.index(pandas_block)]
    paragraph = before[: before.rindex("```python")].rstrip().rsplit("\n\n", 1)[-1]  # just above it
    assert "pip install '.[dataframes]'" in paragraph


def test_the_cli_tour_runs_twice_through_the_console_script(tmp_path: Path) -> None:
    scripts = Path(sys.executable).parent
    if shutil.which("hds", path=str(scripts)) is None or shutil.which("bash") is None:
        pytest.skip("needs the installed hds console script and bash")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HDS_")}
    env.update(PATH=f"{scripts}{os.pathsep}{env.get('PATH', '')}", HDS_STORE=str(tmp_path / "store"))
    work = tmp_path / "work"
    work.mkdir()
    for run in (1, 2):
        for block in cli_tour_blocks():
            completion = "_HDS_COMPLETE" in block
            script = block + ("complete -p hds\n" if completion else "")
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, (run, block, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            if completion:
                assert "complete" in done.stdout and " hds" in done.stdout, done.stdout
            else:
                assert done.stdout.strip(), (run, block, "printed nothing")
    assert pq.ParquetFile(work / "tour-v1.parquet").metadata.num_rows == 2
    listed = subprocess.run(
        ["hds", "--json", "versions", "list", "--dataset", "tour"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert '"name": "relabel"' in listed.stdout and '"current": true' in listed.stdout
