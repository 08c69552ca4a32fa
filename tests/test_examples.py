"""Every example runs on the embedded default (a fresh local folder) and checks its own result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: train_loader.py has its own test (test_examples_loader.py), which also checks what it leaves behind;
#: ui_quickstart.py serves until stopped: test_ui_example.py runs it with --check; ray_pipeline.py needs
#: the ray extra and starts a local Ray: test_ray.py runs it (slow tier).
OWN_TESTS = ("train_loader.py", "ui_quickstart.py", "ray_pipeline.py")
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if p.name not in OWN_TESTS)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_on_the_embedded_default(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDS_", "AWS_"))}
    env.update({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")})
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "data" / "hds_s3").is_dir(), "the example did not use the embedded default"


def test_the_readme_quick_start_runs_the_quickstart_example() -> None:
    assert "python examples/quickstart.py" in (ROOT / "README.md").read_text()
