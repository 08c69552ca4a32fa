"""Who did what, through the real command: ``hds datasets history`` and the BY column of ``versions list``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hds_command import run_hds


def hds(store: Path, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_hds(store, *args, HDS_USER=user)


def test_the_command_shows_who_created_and_published_each_version(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert hds(store, "ada", "datasets", "create", "--dataset", "cars").returncode == 0
    snap = hds(store, "grace", "versions", "snapshot", "--dataset", "cars", "--publish-name", "v1")
    assert snap.returncode == 0, snap.stderr
    history = hds(store, "linus", "--json", "datasets", "history", "--dataset", "cars")
    assert history.returncode == 0, history.stderr
    changes = json.loads(history.stdout)
    assert [c["user"] for c in changes] == ["grace", "ada"]
    assert "snapshot" in changes[0]["what"] and changes[0]["seq"] == 1
    text = hds(store, "linus", "datasets", "history", "--dataset", "cars", "--limit", "1").stdout
    assert "grace" in text and "ada" not in text and "WHO" in text
    listed = hds(store, "linus", "--json", "versions", "list", "--dataset", "cars")
    rows = {v["name"]: v for v in json.loads(listed.stdout)}
    assert (rows["v1"]["created_by"], rows["v1"]["published_by"]) == ("ada", "grace")
    assert (rows["Current"]["created_by"], rows["Current"]["published_by"]) == ("grace", None)
    table = hds(store, "linus", "versions", "list", "--dataset", "cars").stdout
    header, first = table.splitlines()[:2]
    assert "BY" in header.split() and first.split()[0] == "v1" and "grace" in first.split()
    bad = hds(store, "linus", "datasets", "history", "--dataset", "cars", "--limit", "0")
    assert bad.returncode == 2
