"""The package's layers: imports only go down, and boto3 stays inside the S3 store.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); import-linter checks them on the
import graph of the installed sources, including imports made inside functions.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_imports_only_go_down_the_layers() -> None:
    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        pytest.skip("import-linter is not installed (it is in the test extra)")
    done = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
