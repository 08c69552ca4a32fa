"""Start-up cost: what ``import hds_s3`` and the ``hds`` command load, and the hybrid methods' help.

Each check runs a fresh interpreter and looks at the modules it imported (``sys.modules``, or for the
console script, which ends with ``os._exit``, the ``-X importtime`` list); timings are in ``bench/``.
"""

from __future__ import annotations

import inspect
import json
import os
import pydoc
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hds_s3
from hds_s3 import DatasetVersion

# Heavy imports nothing needs for `import hds_s3` or `hds --help`.
HEAVY = ("boto3", "botocore", "s3transfer", "pyarrow", "numpy", "luqum", "tqdm", "pandas", "polars", "torch")
HEAVY += ("fsspec", "duckdb", "hds_s3.api", "hds_s3.store.s3", "ray", "dask", "hds_s3.ray", "hds_s3.dask")
# Loaded only by what uses them, never by working with a local folder. (pandas is not listed: when it
# is installed, pyarrow imports it on the first pa.array() of a list, to check for pandas objects.)
UNUSED_LOCALLY = ("boto3", "botocore", "s3transfer", "hds_s3.store.s3", "luqum", "tqdm", "polars", "torch")
UNUSED_LOCALLY += ("pyarrow.dataset", "duckdb", "ray", "dask")  # the extras: only hds_s3.ray / .dask


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("HDS_STORE", "PYTHONSTARTUP")}


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=_clean_env()
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def hds_script() -> str:
    found = shutil.which("hds", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the hds console script is not installed next to this interpreter")
    return found


def imported_by_hds(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run the ``hds`` console script; return the modules it imported (from ``-X importtime``)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", hds_script(), *args],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    modules = {
        line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")
    }
    assert "hds_s3.cli.app" in modules, run.stderr[-2000:]
    return modules, run


def heavy_in(modules: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy))


def test_import_hds_s3_loads_nothing_heavy() -> None:
    assert heavy_in(imported_by("import hds_s3"), HEAVY) == []


def test_the_public_names_still_import_from_the_package() -> None:
    modules = imported_by("from hds_s3 import Dataset, DatasetVersion, DataView, SingleFrame, connect")
    assert "hds_s3.api" in modules and "hds_s3.query.dataview" in modules
    assert heavy_in(modules, UNUSED_LOCALLY) == []
    assert set(hds_s3.__all__) <= set(dir(hds_s3))
    for name in hds_s3.__all__:
        assert getattr(hds_s3, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hds_s3.Nope  # noqa: B018


def test_working_on_a_local_folder_never_imports_boto3(tmp_path: Path) -> None:
    code = (
        "from hds_s3 import Dataset, DatasetVersion, SingleFrame, connect\n"
        f"client = connect({str(tmp_path / 'store')!r})\n"
        "Dataset.create('cars', client=client)\n"
        "v = DatasetVersion.get_current(dataset_name='cars', client=client)\n"
        "v.add_frames([SingleFrame(source='s3://b/1.jpg'), {'uri': 's3://b/2.jpg'}])\n"
        "assert v.get_frame_count() == 2\n"
        "assert v.read_plan().read().num_rows == 2\n"  # read plans need neither Ray nor Dask
        "from hds_s3.store import LocalStore, MemoryStore, open_store\n"
        "open_store('memory://x')\n"
    )
    assert heavy_in(imported_by(code), UNUSED_LOCALLY) == []


def test_an_s3_store_still_imports_its_store() -> None:
    modules = imported_by("from hds_s3.store import S3Store, open_store\nopen_store('s3://bucket/prefix')")
    assert "boto3" in modules and "hds_s3.store.s3" in modules


@pytest.mark.parametrize("args", [("--help",), ("frames", "add", "--help"), ("frames", "schema")])
def test_hds_help_loads_neither_the_api_nor_heavy_modules(args: tuple[str, ...]) -> None:
    modules, run = imported_by_hds(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    assert heavy_in(modules, HEAVY) == []


def test_an_hds_command_on_a_local_folder_never_imports_boto3(tmp_path: Path) -> None:
    modules, run = imported_by_hds("--store", str(tmp_path / "store"), "datasets", "create", "cars")
    assert run.returncode == 0, run.stderr[-2000:]
    # the library was used (-X importtime does not list modules imported with importlib.import_module,
    # as the CLI's lazy names are, but it lists what they import)
    assert "hds_s3.format.catalog" in modules and "pyarrow" in modules
    assert heavy_in(modules, UNUSED_LOCALLY) == []


def test_the_hybrid_get_single_frame_shows_its_own_help_and_signature() -> None:
    for method in (DatasetVersion.get_single_frame, DatasetVersion.__new__(DatasetVersion).get_single_frame):
        assert method.__doc__ is not None and method.__doc__.startswith("Return one frame by id")
        parameters = list(inspect.signature(method).parameters)
        assert parameters[:2] == ["frame_id", "dataset_name"] and "client" in parameters
        text = pydoc.render_doc(method, renderer=pydoc.plaintext)
        assert "get_single_frame(frame_id" in text and "Return one frame by id" in text
        assert "partial" not in text
    assert DatasetVersion.__dict__["get_single_frame"].__name__ == "get_single_frame"


def test_the_cli_s_lazy_names_are_the_api_classes() -> None:
    from hds_s3 import api
    from hds_s3.cli import app

    assert app.Dataset.resolve() is api.Dataset and app.DatasetVersion.resolve() is api.DatasetVersion
    assert app.Dataset.get == api.Dataset.get and "hds_s3.api.Dataset" in repr(app.Dataset)
