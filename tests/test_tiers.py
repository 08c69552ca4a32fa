"""The test tiers: ``pytest`` selects the quick tier, ``-m`` the others (tests/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Collects two test files with `-m all` and prints, per test, the tier markers conftest.py gave it.
COLLECT = """
import json, sys
import pytest

class Tiers:
    items = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in items:
            self.items[item.nodeid] = sorted(
                m.name for m in item.iter_markers() if m.name in ("quick", "all", "slow")
            )

tiers = Tiers()
args = ["--collect-only", "-n", "0", "-q", "-p", "no:cacheprovider", *sys.argv[1:]]
code = pytest.main(args, plugins=[tiers])
print("TIERS " + json.dumps(tiers.items))
sys.exit(code)
"""


def tiers(*args: str) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS_"))}
    files = ["tests/test_races.py", "tests/test_store_contract.py"]
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, *args, *files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("TIERS "))
    found: dict[str, list[str]] = json.loads(line.removeprefix("TIERS "))
    selected = {ln for ln in done.stdout.splitlines() if "::" in ln and not ln.startswith("TIERS ")}
    assert selected == set(found), "the -m given did not select the tests it collected"
    return found


def test_every_test_has_its_tier_and_pytest_selects_the_quick_one() -> None:
    every = tiers("-m", "all")
    quick = {node for node, marks in every.items() if "quick" in marks}
    assert all("all" in marks for marks in every.values())
    assert set(tiers()) == quick  # the default: pyproject's `-m quick`
    slow_race = "tests/test_races.py::test_publish_same_draft_one_winner[local-8processes]"
    thread_race = "tests/test_races.py::test_publish_same_draft_one_winner[memory-8threads]"
    assert every[slow_race] == ["all", "slow"] and thread_race in quick
    # slow_on("local"): the process race is slow on the local folder only
    contract = "tests/test_store_contract.py::test_create_race_processes_one_winner"
    assert f"{contract}[memory]" in quick and every[f"{contract}[local]"] == ["all", "slow"]
    # no server, and moto's HTTP server only where a test asks for it itself
    for backend in ("moto_server", "seaweedfs", "localstack", "external"):
        assert not any(f"[{backend}" in node for node in quick), backend
        assert any(f"[{backend}" in node for node in every), backend
    assert "tests/test_store_contract.py::test_put_get_round_trip_and_etag_change[moto]" in quick
