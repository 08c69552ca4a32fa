"""Races on the API with real threads and processes (docs/design.md section 3, invariant 5).

Each race runs for many rounds; in each round every contender prepares its call (the reads it makes
first), all meet at a barrier, and all make the racing call at once. Every round must have exactly
one winner (or, where the calls do not exclude each other, all of them must land), losers must get a
clear ``ConflictError`` / ``InvalidStateError`` (``AlreadyExistsError`` for the name races run with
``raise_if_exists=True``), and any other exception fails the test.

Backends: 8 threads on a MemoryStore, 8 spawned processes on a LocalStore (a temp folder) and 4
spawned processes on SeaweedFS (skipped with a reason when it cannot start). Not moto: its
conditional writes are not atomic under races (docs/design.md section 9).

Rounds: ``HDS_RACE_ROUNDS`` (default 20) on memory and local, ``HDS_RACE_ROUNDS_SEAWEEDFS``
(default 5) on SeaweedFS, whose contended conditional writes stall for about a second.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import race_workers
from backends import StoreSpec
from race_workers import RaceReport

from hds_s3 import Client, Dataset, DatasetVersion
from hds_s3.store import LocalStore, MemoryStore, ObjectStore

ROUNDS = int(os.environ.get("HDS_RACE_ROUNDS", "20"))
ROUNDS_SEAWEEDFS = int(os.environ.get("HDS_RACE_ROUNDS_SEAWEEDFS", "5"))
SEAWEEDFS_BUCKET = "hds-test"  # created by conftest's seaweedfs_server fixture
BARRIER_TIMEOUT = 120.0  # a hang guard only: a dead contender breaks the barrier instead of hanging
RESULT_TIMEOUT = 240.0

CLEAR_LOSS = {"ConflictError", "InvalidStateError"}
NAME_TAKEN = {"AlreadyExistsError", "ConflictError"}


class Racers:
    """``n`` contenders (threads or spawned processes) on one store, each with its own ``Client``."""

    def __init__(self, label: str, n: int, kind: str, store: ObjectStore, spec: StoreSpec | None) -> None:
        self.label = label
        self.n = n
        self.kind = kind
        self.store = store
        self.client = Client(store)  # the referee's own view of the store
        self.rounds = ROUNDS_SEAWEEDFS if label.startswith("seaweedfs") else ROUNDS
        self._workers: list[Any] = []
        if kind == "threads":
            self._tasks: list[Any] = [queue.Queue() for _ in range(n)]
            self._results: Any = queue.Queue()
            self._barrier: Any = threading.Barrier(n)
            for me in range(n):
                args = (Client(store), me, self._tasks[me], self._barrier, self._results, BARRIER_TIMEOUT)
                thread = threading.Thread(target=race_workers.serve_races, args=args, daemon=True)
                self._workers.append(thread)
        else:
            assert spec is not None
            ctx = multiprocessing.get_context("spawn")
            self._tasks = [ctx.Queue() for _ in range(n)]
            self._results = ctx.Queue()
            self._barrier = ctx.Barrier(n)  # kept referenced: the children attach to it after start()
            for me in range(n):
                queues = (self._tasks[me], self._barrier, self._results)
                args = (spec.url, spec.env, me, *queues, BARRIER_TIMEOUT)
                process = ctx.Process(target=race_workers.api_race_process, args=args, daemon=True)
                self._workers.append(process)
        for worker in self._workers:
            worker.start()

    def race(self, action: str, params: dict[str, Any]) -> list[RaceReport]:
        """Run one round: every contender makes the same call at once; return their reports by contender."""
        for tasks in self._tasks:
            tasks.put((action, params))
        reports: list[RaceReport] = []
        waited = 0.0
        while len(reports) < self.n:
            try:
                reports.append(self._results.get(timeout=1.0))
                continue
            except queue.Empty:
                waited += 1.0
            dead = [me for me, w in enumerate(self._workers) if not w.is_alive()]
            if dead or waited > RESULT_TIMEOUT:
                codes = [getattr(w, "exitcode", None) for w in self._workers]
                pytest.fail(f"{self.label}: contenders {dead} died or did not report (exit codes {codes})")
        return sorted(reports)

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        for worker in self._workers:
            if isinstance(worker, multiprocessing.process.BaseProcess) and worker.is_alive():
                worker.kill()
                worker.join()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("memory-8threads", id="memory-8threads"),
        pytest.param("local-8processes", id="local-8processes", marks=pytest.mark.slow),
        pytest.param("seaweedfs-4processes", id="seaweedfs-4processes", marks=pytest.mark.seaweedfs),
    ],
)
def racers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Racers]:
    label: str = request.param
    if label.startswith("memory"):
        pool = Racers(label, 8, "threads", MemoryStore(f"races-{uuid.uuid4().hex[:8]}"), None)
    elif label.startswith("local"):
        folder: Path = tmp_path_factory.mktemp("races") / "store"
        spec = StoreSpec("local", folder.as_uri(), atomic=True, multiprocess=True)
        pool = Racers(label, 8, "processes", LocalStore(folder), spec)
    else:
        server = request.getfixturevalue("seaweedfs_server")
        spec = StoreSpec(
            "seaweedfs",
            f"s3://{SEAWEEDFS_BUCKET}/races-{uuid.uuid4().hex[:12]}",
            server.env(),
            atomic=True,
            multiprocess=True,
        )
        pool = Racers(label, 4, "processes", spec.make(), spec)
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class Tally:
    """What a race did over its rounds, printed as its summary."""

    race: str
    label: str
    rounds: int = 0
    winners: Counter[int] = field(default_factory=Counter)  # number of winners -> rounds
    losses: Counter[str] = field(default_factory=Counter)  # loser outcome -> count

    def add(self, reports: list[RaceReport]) -> tuple[list[RaceReport], list[RaceReport]]:
        won = [r for r in reports if r[1] == "ok"]
        lost = [r for r in reports if r[1] != "ok"]
        self.rounds += 1
        self.winners[len(won)] += 1
        self.losses.update(r[1] for r in lost)
        return won, lost

    def print(self) -> None:
        wins = ", ".join(f"{w} winner(s): {c} rounds" for w, c in sorted(self.winners.items()))
        losses = ", ".join(f"{k} x{c}" for k, c in sorted(self.losses.items())) or "none"
        print(f"[race {self.race} on {self.label}] rounds={self.rounds}; {wins}; losers: {losses}")


def _show(reports: list[RaceReport]) -> str:
    return "\n".join(f"  contender {me}: {outcome}: {detail[:200]}" for me, outcome, detail in reports)


def _check_losers(lost: list[RaceReport], allowed: set[str], where: str) -> None:
    bad = [r for r in lost if r[1] not in allowed]
    assert not bad, f"{where}: losers must get one of {sorted(allowed)}, got:\n{_show(bad)}"


def _tree(client: Client, dataset: str) -> list[tuple[str, str, str, str | None]]:
    """(id, name, status, parent id) of every version, oldest first."""
    versions = DatasetVersion.get_versions(dataset_name=dataset, client=client)
    return [(v.id, v.name, v.status, v.parent_id) for v in versions]


def _name(racers: Racers, race: str, r: int) -> str:
    return f"{race}-{racers.label.split('-')[0]}-{r}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------- publish / snapshot


def test_publish_same_draft_one_winner(racers: Racers) -> None:
    tally = Tally("publish same draft", racers.label)
    try:
        for r in range(racers.rounds):
            name = _name(racers, "pub", r)
            draft = Dataset.create(name, client=racers.client).get_current()
            reports = racers.race("publish", {"dataset": name, "version_id": draft.id})
            won, lost = tally.add(reports)
            where = f"round {r} ({name})"
            assert len(won) == 1, f"{where}: {len(won)} publishers won, want exactly 1:\n{_show(reports)}"
            assert won[0][2] == draft.id
            _check_losers(lost, {"InvalidStateError"}, where)
            assert _tree(racers.client, name) == [(draft.id, "Current", "published", None)]
    finally:
        tally.print()


def test_snapshot_same_dataset_one_winner(racers: Racers) -> None:
    """Contenders released together snapshot one dataset: one snapshot, the others InvalidStateError.

    Every round must also leave a chain (each success published the draft of its time, kept its
    id, and added one draft child); that is checked at once. The number of winners is checked after
    all rounds, so that the failure shows how often a round had more than one.
    """
    tally = Tally("create_snapshot same dataset", racers.label)
    extra: list[str] = []
    try:
        for r in range(racers.rounds):
            name = _name(racers, "snap", r)
            draft = Dataset.create(name, client=racers.client).get_current()
            reports = racers.race("snapshot", {"dataset": name})
            won, lost = tally.add(reports)
            where = f"round {r} ({name})"
            _check_losers(lost, CLEAR_LOSS, where)
            tree = _tree(racers.client, name)
            # a chain: the old draft (same id) published first, one published per winner, one draft last
            assert len(tree) == len(won) + 1, f"{where}: {len(won)} winners but tree {tree}"
            assert tree[0][0] == draft.id and tree[0][2] == "published" and tree[0][3] is None, tree
            for parent, child in zip(tree, tree[1:], strict=False):
                assert child[3] == parent[0] and parent[2] == "published", f"{where}: not a chain: {tree}"
            assert tree[-1][2] == "draft" and tree[-1][1] == "Current", tree
            assert {w[2] for w in won} == {t[0] for t in tree[1:]}, f"{where}: {won} vs {tree}"
            if len(won) != 1:
                extra.append(
                    f"{where}: {len(won)} of {racers.n} concurrent create_snapshot calls succeeded:\n"
                    f"{_show(reports)}\n{Dataset.get(name, client=racers.client).format_tree()}"
                )
    finally:
        tally.print()
    assert not extra, (
        f"{len(extra)} of {racers.rounds} rounds had more than one winner, want exactly 1 each "
        f"(winners per round: {dict(tally.winners)}); first:\n{extra[0]}"
    )


# ---------------------------------------------------------------------------- names


def test_create_dataset_same_name_one_winner(racers: Racers) -> None:
    tally = Tally("Dataset.create same name raise_if_exists", racers.label)
    try:
        for r in range(racers.rounds):
            name = _name(racers, "newds", r)
            reports = racers.race("create_dataset", {"dataset": name})
            won, lost = tally.add(reports)
            where = f"round {r} ({name})"
            assert len(won) == 1, f"{where}: {len(won)} creators succeeded, want exactly 1:\n{_show(reports)}"
            _check_losers(lost, NAME_TAKEN, where)
            listed = Dataset.list_datasets(name_pattern=f"^{name}$", client=racers.client)
            assert [d.id for d in listed] == [won[0][2]], f"{where}: listed {listed}"
            assert Dataset.get(name, client=racers.client).id == won[0][2]
    finally:
        tally.print()


def test_create_version_same_name_one_winner(racers: Racers) -> None:
    tally = Tally("create_version same name raise_if_exists", racers.label)
    try:
        for r in range(racers.rounds):
            name = _name(racers, "cv", r)
            current = Dataset.create(name, client=racers.client).get_current()
            params = {"dataset": name, "version": "v", "raise_if_exists": True}
            reports = racers.race("create_version", params)
            won, lost = tally.add(reports)
            where = f"round {r} ({name})"
            assert len(won) == 1, f"{where}: {len(won)} creators succeeded, want exactly 1:\n{_show(reports)}"
            _check_losers(lost, NAME_TAKEN, where)
            assert _tree(racers.client, name) == [
                (current.id, "Current", "draft", None),
                (won[0][2], "v", "draft", None),
            ]
    finally:
        tally.print()


def test_create_version_different_names_all_land(racers: Racers) -> None:
    tally = Tally("create_version different names", racers.label)
    try:
        for r in range(racers.rounds):
            name = _name(racers, "cvd", r)
            Dataset.create(name, client=racers.client)
            params = {"dataset": name, "version": "v{me}", "raise_if_exists": True}
            reports = racers.race("create_version", params)
            won, _ = tally.add(reports)
            where = f"round {r} ({name})"
            assert len(won) == racers.n, f"{where}: all must land (no lost update):\n{_show(reports)}"
            landed = {vname: vid for vid, vname, _, _ in _tree(racers.client, name)}
            assert landed == {"Current": landed["Current"], **{f"v{me}": vid for me, _, vid in won}}, where
    finally:
        tally.print()


def test_get_or_create_version_all_get_the_same(racers: Racers) -> None:
    tally = Tally("create_version get-or-create", racers.label)
    try:
        for r in range(racers.rounds):
            name = _name(racers, "goc", r)
            Dataset.create(name, client=racers.client)
            params = {"dataset": name, "version": "v", "raise_if_exists": False}
            reports = racers.race("create_version", params)
            won, _ = tally.add(reports)
            where = f"round {r} ({name})"
            assert len(won) == racers.n, f"{where}: get-or-create must not fail:\n{_show(reports)}"
            ids = {vid for _, _, vid in won}
            assert len(ids) == 1, f"{where}: contenders got different versions {ids}"
            tree = _tree(racers.client, name)
            assert [t[1] for t in tree] == ["Current", "v"] and tree[1][0] in ids, where
    finally:
        tally.print()
