"""Process entry points for the multi-process race tests (importable by spawned children)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hds_s3 import Client, Dataset, DatasetVersion
from hds_s3.errors import ConflictError
from hds_s3.store import open_store


def create_race(url: str, env: dict[str, str], keys: list[str], me: int, barrier: Any, results: Any) -> None:
    """Try to create each key with bytes naming this worker; report ``(me, key, won)`` per key."""
    os.environ.update(env)
    store = open_store(url)
    store.list("")  # connect before the start line
    barrier.wait()
    out = []
    for key in keys:
        try:
            store.put(key, f"worker {me}".encode(), if_none_match=True)
            out.append((me, key, True))
        except ConflictError:
            out.append((me, key, False))
    results.put(out)


def cas_increments(url: str, env: dict[str, str], key: str, rounds: int, barrier: Any, results: Any) -> None:
    """Increment the integer stored at ``key`` ``rounds`` times with compare-and-swap; report conflicts."""
    os.environ.update(env)
    store = open_store(url)
    store.head(key)
    barrier.wait()
    conflicts = 0
    for _ in range(rounds):
        while True:
            data, etag = store.get(key)
            try:
                store.put(key, str(int(data) + 1).encode(), if_match=etag)
                break
            except ConflictError:
                conflicts += 1
    results.put(conflicts)


# ---------------------------------------------------------------------------- API races (test_races.py)
#
# A racer (a thread or a spawned process) serves tasks from its own queue: for each task it prepares
# the call (the reads that come before it), waits at the barrier shared by every racer, makes the
# call and reports ``(me, outcome, detail)``: outcome ``"ok"`` with the id the call returned, or the
# name of the exception it raised with its message.

RaceTask = tuple[str, dict[str, Any]]
RaceReport = tuple[int, str, str]


def prepare_race_call(client: Client, action: str, params: dict[str, Any], me: int) -> Callable[[], str]:
    """Do the reads a contender does before its racing call; return the call (no arguments, returns an id).

    Actions: ``publish`` (publish one draft), ``snapshot`` (snapshot a dataset), ``create_dataset``
    (``Dataset.create(raise_if_exists=True)``), ``create_version`` (``version`` may contain ``{me}``;
    ``raise_if_exists`` as given).

    Raises:
        ValueError: an unknown action.
        HdsError: a read failed.
    """
    if action == "publish":
        version = DatasetVersion.get_version(
            dataset_name=params["dataset"], version_id=params["version_id"], client=client
        )
        return lambda: version.publish_version().id
    if action == "snapshot":
        ds = Dataset.get(dataset_name=params["dataset"], client=client)
        draft = ds.get_current().id  # every contender means the draft they all saw
        return lambda: DatasetVersion.create_snapshot(dataset_id=ds.id, version_id=draft, client=client).id
    if action == "create_dataset":
        client.catalog.ensure_marker()
        return lambda: Dataset.create(params["dataset"], raise_if_exists=True, client=client).id
    if action == "create_version":
        ds = Dataset.get(dataset_name=params["dataset"], client=client)
        name = str(params["version"]).format(me=me)
        strict = bool(params["raise_if_exists"])
        return lambda: (
            DatasetVersion.create_version(
                dataset_id=ds.id, version_name=name, raise_if_exists=strict, client=client
            ).id
        )
    raise ValueError(f"unknown race action {action!r}")


def serve_races(client: Client, me: int, tasks: Any, barrier: Any, results: Any, timeout: float) -> None:
    """Serve race tasks from ``tasks`` until it yields ``None``; one report per task goes to ``results``."""
    while True:
        task: RaceTask | None = tasks.get()
        if task is None:
            return
        action, params = task
        call: Callable[[], str] | None = None
        try:
            call = prepare_race_call(client, action, params, me)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            prepared: RaceReport = (me, f"prepare:{type(exc).__name__}", str(exc))
        barrier.wait(timeout)  # everyone prepared: go together
        if call is None:
            results.put(prepared)
            continue
        try:
            report: RaceReport = (me, "ok", str(call()))
        except Exception as exc:  # noqa: BLE001 - the outcome is the exception's type
            report = (me, type(exc).__name__, str(exc))
        results.put(report)


def api_race_process(
    url: str, env: dict[str, str], me: int, tasks: Any, barrier: Any, results: Any, timeout: float
) -> None:
    """Entry point of a racing process: open the store from ``url`` and ``env``, then serve tasks."""
    os.environ.update(env)
    serve_races(Client(open_store(url)), me, tasks, barrier, results, timeout)
