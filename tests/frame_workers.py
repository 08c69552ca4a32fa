"""Top-level functions that child processes run in the frame race tests (spawn context)."""

from __future__ import annotations

import os
from typing import Any

from hds_s3 import Client, DatasetVersion, HdsError
from hds_s3.model.frames import SingleFrame
from hds_s3.store import open_store


def make_frames(tag: str, count: int) -> list[SingleFrame]:
    return [
        SingleFrame(source=f"s3://b/{tag}/{i}.jpg", id=f"{tag}-{i}", metadata={"w": tag})
        for i in range(count)
    ]


def run(
    action: str, url: str, env: dict[str, str], dataset_id: str, version_id: str, tag: str, barrier: Any
) -> str:
    """Do one racing action on the version; return "ok" or the error's class name."""
    os.environ.update(env)
    client = Client(open_store(url))
    version = DatasetVersion.get_version(dataset_id=dataset_id, version_id=version_id, client=client)
    frames = make_frames(tag, 20)
    barrier.wait(timeout=60)
    try:
        if action == "add":
            failed = version.add_frames(frames, segment_rows=7, commit_every=1)
            assert not failed, failed
        else:
            version.publish_version()
    except HdsError as exc:
        return type(exc).__name__
    return "ok"
