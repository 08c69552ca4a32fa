"""A writer killed at any request of a transition leaves the store before or after it, never damaged.

For every transition of :mod:`crash_workers` (dataset and version life cycle, frame writes,
publishing with and without compaction, compaction) and every request ``k`` it makes, a child
process runs the transition on a copy of one starting folder (a local store) and is killed at request
``k`` by :class:`~hds_s3.store.faulty.FaultyStore` in mode ``crash-after``: once request ``k`` has
reached the store. A kill *before* request ``k`` (mode ``crash``) leaves the store exactly as a kill
after request ``k - 1`` does (requests ``1..k-1`` landed, nothing else), so one mode covers every
point; set ``HDS_CRASH_MODES=crash-after,crash`` to run both (twice the time). The parent then
checks, through the API and :mod:`hds_s3.tools.fsck` / :mod:`hds_s3.tools.gc`:

1. the child really died at ``k`` (its exit status is ``CRASH_EXIT_CODE``);
2. the state the API shows equals the state before or the state after the transition (run without
   faults), frames included;
3. fsck finds no damage (pending roll-forwards and garbage are allowed: they are what a crash leaves);
4. repeating the transition works: from "before" it succeeds and reaches "after"; from "after" it
   gives the outcome declared for the transition and leaves "after";
5. ``fsck(repair=True)`` then ``gc(grace_seconds=0)`` leave a clean store in the same "after" state.

The children come from a forkserver whose server has imported hds_s3 and pyarrow once, so a child
costs a fork, not an interpreter start. A deliberately broken transition (segments written after the
document that lists them) shows that the sweep catches a two-write transition in the wrong order.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import crash_workers as cw
import pytest

from hds_s3 import Client, HdsError
from hds_s3.store.faulty import CRASH_EXIT_CODE, FaultyStore
from hds_s3.tools.fsck import fsck
from hds_s3.tools.gc import gc

pytestmark = pytest.mark.slow  # crash sweeps: a real kill at every request of every transition

MODES = tuple(m.strip() for m in os.environ.get("HDS_CRASH_MODES", "crash-after").split(",") if m.strip())
if "forkserver" in multiprocessing.get_all_start_methods():
    _CTX = multiprocessing.get_context("forkserver")
    # Imported once in the server, not in every child ("__main__" too: else each child re-runs it).
    # pandas is what pyarrow imports lazily on its first conversions (missing ones are skipped).
    _CTX.set_forkserver_preload(["__main__", "crash_workers", "pandas", "_strptime"])
else:  # Windows: every child is a fresh interpreter (slower, same checks)
    _CTX = multiprocessing.get_context("spawn")
_TOTALS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_totals() -> Iterator[None]:
    yield
    if _TOTALS:
        print(
            f"\n[crash sweep] {_TOTALS['points']} crash points tried (real kills) over "
            f"{_TOTALS['transitions']} transitions: {_TOTALS['before']} left it before, "
            f"{_TOTALS['after']} after"
        )


@dataclass
class Reference:
    """The starting folder of a transition and what running it without faults gives."""

    template: Path
    ids: cw.Ids
    known: frozenset[str]
    before: cw.Summary
    after: cw.Summary
    requests: int
    log: list[tuple[str, str]]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".hds-locks"))
    return dst


def _client(folder: Path) -> Client:
    return Client(cw.local(str(folder)))


def reference(t: cw.Transition, tmp: Path) -> Reference:
    template = tmp / "template"
    ids = t.setup(_client(template))
    store = cw.local(str(template))
    known = cw.known_ids(store)
    before = cw.summary(store, known)
    clean = _copy(template, tmp / "reference")
    counter = FaultyStore(cw.local(str(clean)))
    t.run(Client(t.wrap(counter) if t.wrap else counter), ids)
    after = cw.summary(cw.local(str(clean)), known)
    assert counter.count > 0
    return Reference(template, ids, known, before, after, counter.count, list(counter.log))


def _outcome(t: cw.Transition, client: Client, ids: cw.Ids) -> str:
    try:
        t.run(client, ids)
    except HdsError as exc:
        return type(exc).__name__
    return "success"


def _damage(folder: Path) -> str | None:
    report = fsck(_client(folder))
    if report.damage:
        return "fsck found damage:\n" + "\n".join(f"      [{f.code}] {f.message}" for f in report.damage)
    return None


def check_point(t: cw.Transition, ref: Reference, folder: Path, k: int, mode: str) -> tuple[str, str | None]:
    """Kill a child running ``t`` at request ``k`` in ``folder``; return the state reached and any problem."""
    child = _CTX.Process(target=cw.crash_child, args=(str(folder), t.name, ref.ids, k, mode))
    child.start()
    child.join(300)
    if child.exitcode != CRASH_EXIT_CODE:
        if child.is_alive():
            child.kill()
            child.join()
        return "?", f"the child did not die at request {k}: exit status {child.exitcode}"
    store = cw.local(str(folder))
    try:
        state = cw.summary(store, ref.known)
    except Exception as exc:  # noqa: BLE001 - any error is the finding
        problem = _damage(folder) or "fsck finds no damage"
        return "?", f"the store does not load through the API: {type(exc).__name__}: {exc}. {problem}"
    if state not in (ref.before, ref.after):
        problem = _damage(folder) or ""
        return "?", f"state is neither before nor after. {problem}"
    where = "before" if state == ref.before else "after"
    problem = _damage(folder)
    if problem is not None:
        return where, problem
    client = _client(folder)
    got = _outcome(t, client, ref.ids)
    want = "success" if where == "before" or t.repeat is None else t.repeat.__name__
    if got != want:
        return where, f"state is {where!r}; repeating it gave {got}, want {want}"
    if cw.summary(store, ref.known) != ref.after:
        return where, f"state was {where!r}; the repeat did not leave 'after'"
    repaired = fsck(_client(folder), repair=True)
    if not repaired.ok or any(not f.repaired for f in repaired.pending):
        return where, "fsck(repair=True) left:\n" + repaired.summary()
    collected = gc(_client(folder), grace_seconds=0, dry_run=False)
    if collected.failed or collected.kept:
        return where, "gc(grace_seconds=0) did not remove all garbage:\n" + collected.summary()
    final = fsck(_client(folder))
    if not final.clean:
        return where, "after repair and gc the store is not clean:\n" + final.summary()
    if cw.summary(store, ref.known) != ref.after:
        return where, "repair or gc changed what the API shows"
    if t.after_check is not None:
        try:
            t.after_check(_client(folder), ref.ids)
        except Exception as exc:  # noqa: BLE001
            return where, f"after-state check failed: {type(exc).__name__}: {exc}"
    return where, None


def sweep(t: cw.Transition, tmp: Path, modes: tuple[str, ...] = MODES) -> tuple[int, list[str]]:
    """Kill ``t`` at each request in each mode; return the number of crash points and what went wrong."""
    ref = reference(t, tmp)
    problems: list[str] = []
    states: Counter[str] = Counter()
    for mode in modes:
        for k in range(1, ref.requests + 1):
            folder = _copy(ref.template, tmp / f"{mode}-{k}")
            state, problem = check_point(t, ref, folder, k, mode)
            states[state] += 1
            if problem is not None:
                op = " ".join(ref.log[k - 1])
                problems.append(f"{t.name} mode={mode} k={k}/{ref.requests} (at: {op}): {problem}")
            shutil.rmtree(folder, ignore_errors=True)
    points = ref.requests * len(modes)
    print(
        f"[crash {t.name}] {points} crash points ({ref.requests} requests x {len(modes)} modes): "
        f"{states['before']} before, {states['after']} after, {len(problems)} problems"
    )
    _TOTALS.update(points=points, transitions=1, before=states["before"], after=states["after"])
    return points, problems


def _report(problems: list[str], points: int) -> str:
    head = f"{len(problems)} of {points} crash points went wrong:\n"
    return head + "\n".join(problems[:10]) + ("\n..." if len(problems) > 10 else "")


@pytest.mark.parametrize("name", [t.name for t in cw.TRANSITIONS])
def test_a_kill_at_any_request_leaves_before_or_after(name: str, tmp_path: Path) -> None:
    points, problems = sweep(cw.BY_NAME[name], tmp_path)
    assert not problems, _report(problems, points)


def test_the_sweep_catches_a_broken_protocol(tmp_path: Path) -> None:
    """Segments written after the document listing them: some kill point must show damage."""
    points, problems = sweep(cw.BROKEN, tmp_path, modes=("crash-after",))
    assert problems, "the sweep passed a transition that writes its segments after its commit point"
    assert all("[segment-missing]" in p for p in problems), _report(problems, points)


def test_every_transition_is_swept() -> None:
    """The list covers the life cycle, frame writes and compaction (a guard against dropping one)."""
    names = {t.name for t in cw.TRANSITIONS}
    assert {
        "Dataset.create",
        "create_version-root",
        "create_snapshot",
        "publish_version",
        "set_version_name",
        "set_metadata",
        "delete_version-draft",
        "Dataset.delete-force",
        "add_frames",
        "update_frames",
        "delete_frames",
        "compact",
    } <= names


def test_a_crash_mode_ends_the_process_with_its_status(tmp_path: Path) -> None:
    """FaultyStore's crash contract: request k ends the process; in crash-after, once performed."""
    for mode, landed in (("crash", False), ("crash-after", True)):
        folder = tmp_path / mode
        child = _CTX.Process(target=cw.put_twice, args=(str(folder), mode))
        child.start()
        child.join(60)
        assert child.exitcode == CRASH_EXIT_CODE
        keys = [i.key for i in cw.local(str(folder)).list("")]
        assert keys == (["a", "b"] if landed else ["a"])
