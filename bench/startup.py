"""Start-up cost: the import time of ``import hds_s3``, ``from hds_s3 import Dataset`` and ``hds --help``.

    .venv/bin/python bench/startup.py            # best of 7 runs each
    .venv/bin/python bench/startup.py --runs 15

Each case runs in a fresh interpreter with ``python -X importtime``; the figure is the import time of
every module the case loads beyond what a bare ``python -c pass`` loads (the interpreter's own start-up
is left out), in milliseconds, the best of the runs (the machine's noise only ever adds time). The
modules are listed by cumulative time with ``--top N``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def _times(args: list[str]) -> dict[str, tuple[int, int]]:
    """Module name -> (cumulative us, depth) from one ``-X importtime`` run."""
    run = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True)
    out: dict[str, tuple[int, int]] = {}
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        out.setdefault(name.strip(), (int(cumulative), depth))
    return out


def case_ms(args: list[str], baseline: set[str]) -> tuple[float, dict[str, int]]:
    """Import time of the modules ``args`` loads beyond the baseline (top-level entries), in ms."""
    times = _times(args)
    top = {name: us for name, (us, depth) in times.items() if depth == 0 and name not in baseline}
    return sum(top.values()) / 1000, {name: us for name, (us, _) in times.items() if name not in baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=0, help="also list the N slowest modules of each case")
    opts = parser.parse_args()
    hds = shutil.which("hds", path=str(Path(sys.executable).parent)) or "hds"
    cases = {
        "import hds_s3": ["-c", "import hds_s3"],
        "from hds_s3 import Dataset": ["-c", "from hds_s3 import Dataset"],
        "hds --help": [hds, "--help"],
        "hds frames add --help": [hds, "frames", "add", "--help"],
    }
    baseline = set(_times(["-c", "pass"]))
    for label, args in cases.items():
        runs = [case_ms(args, baseline) for _ in range(opts.runs)]
        best, modules = min(runs, key=lambda r: r[0])
        print(f"{label:30} {best:8.1f} ms")
        for name, us in sorted(modules.items(), key=lambda kv: -kv[1])[: opts.top]:
            print(f"    {us / 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
