"""``examples/ui_quickstart.py --check``: builds the quick start's data, starts the UI, checks it, stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the ui extra is not installed: pip install -e '.[ui]'")
pytest.importorskip("uvicorn", reason="the ui extra is not installed: pip install -e '.[ui]'")

ROOT = Path(__file__).resolve().parents[1]


def test_ui_example_starts_the_ui_on_the_quickstart_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDS_", "AWS_"))}
    env.update(
        {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path)}
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ui_quickstart.py"), "--port", "0", "--check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "serves 'quickstart streets' with 1000 frames" in done.stdout
    assert len(list((tmp_path / "hds_s3" / "ui_quickstart").glob("*.jpg"))) == 1000
    assert (tmp_path / "data" / "hds_s3").is_dir(), "the example did not use the embedded default"
