"""Top-level functions that child processes run in the two-phase write tests (spawn context)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from hds_s3 import Client, DatasetVersion
from hds_s3.store import open_store


def job_frames(start: int, count: int, tag: str = "job") -> list[dict[str, Any]]:
    """Frames of a job: ids ``<tag>-<i>``, each with a box labelled by its parity."""
    return [
        {
            "id": f"{tag}-{i:05d}",
            "context_id": f"ctx-{i % 5}",
            "timestamp": i,
            "sources": [{"id": "cam", "uri": f"s3://b/{tag}/{i}.jpg", "width": 64, "height": 48}],
            "meta": {"i": i, "city": ["bremen", "paris", "oslo"][i % 3]},
            "rois": [
                {"labels": ["car" if i % 2 else "bus"], "type": "box2d", "poly": [0, 0, 8, 0, 8, 8, 0, 8]}
            ],
        }
        for i in range(start, start + count)
    ]


def run_job(url: str, dataset_id: str, version_id: str, txn_id: str, marker: str, stop: str) -> None:
    """A driver: four workers' shares written, then one commit; it says where it is and may hang there.

    ``stop`` is ``"before-commit"`` (hang once every segment is written) or ``"after-commit"`` (hang
    once the commit returned, before anything is reported): the test kills the process there.
    """
    client = Client(open_store(url))
    version = DatasetVersion.get_version(dataset_id=dataset_id, version_id=version_id, client=client)
    written = [version.write_segments(job_frames(p * 50, 50), part=p, segment_rows=20) for p in range(4)]
    if stop == "before-commit":
        Path(marker).write_text("written")
        time.sleep(600)
    version.commit_segments(written, txn_id=txn_id)
    Path(marker).write_text("committed")
    time.sleep(600)


class KillOnce:
    """A map step that kills its worker process the first time it sees a given frame (a real crash)."""

    def __init__(self, marker: str, frame_id: str) -> None:
        self.marker, self.frame_id = marker, frame_id

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.frame_id in batch.column("id").to_pylist() and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(9)  # the worker dies mid-job, without cleaning up anything
        return batch


class WaitForGc:
    """A map step that holds every block but the first until the test's gc has run."""

    def __init__(self, done: str) -> None:
        self.done = done

    def __call__(self, batch: pa.Table) -> pa.Table:
        if "job-00000" not in batch.column("id").to_pylist():
            deadline = time.monotonic() + 120
            while not os.path.exists(self.done) and time.monotonic() < deadline:
                time.sleep(0.05)
        return batch
