"""Running the real ``hds`` command (``python -m hds_s3.cli``) on a store, as a shell user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_hds(store: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``hds --store STORE ARGS...`` without ``HDS_STORE`` from the test's environment.

    ``env`` adds variables (``HDS_USER``, say).
    """
    environ = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "hds_s3.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )
