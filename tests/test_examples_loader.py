"""examples/train_loader.py trains through the PyTorch loader, checks its own result and cleans up."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hds_s3 import Dataset, connect

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_loader.py"


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs torch: pip install -e '.[torch]'"
)
def test_train_loader_example_learns_and_leaves_nothing_behind(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDS_", "AWS_"))}
    env["HDS_STORE"] = str(store)
    # Where the example writes its source files; short, as the loader's worker processes put their
    # sockets there too and a Unix socket's path has at most 107 bytes (pytest's own folders, under
    # xdist, are longer).
    temp = Path(tempfile.mkdtemp(prefix="hds-ex-", dir="/tmp" if os.path.isdir("/tmp") else None))
    env["TMPDIR"] = str(temp)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "the view selects 64 frames" in done.stdout
    assert "every frame seen once per epoch" in done.stdout
    assert not Dataset.exists(dataset_name="train loader example", client=connect(str(store)))
    left = list(temp.iterdir())
    if not left:
        temp.rmdir()
    assert left == []
