"""A failure at any request of a transition leaves the store before or after it (docs/design.md section 3).

For every transition T and every request k it makes, in both fault modes of
:class:`~hds_s3.store.faulty.FaultyStore` (``before``: the request fails without reaching the store;
``after``: it is performed and its response is lost), the test:

1. builds the same starting state (a copy of one template store, so ids from the setup are equal in
   every run), runs T through a ``FaultyStore(fail_at=k)``, and accepts only success or
   ``StorageError``;
2. reads the state through the API on the unwrapped store and requires it to equal the state before
   T or the state after T (run without faults), as a canonical summary: every dataset with its name,
   description, tags, metadata, current version and every version's name, status, parent, comment,
   tags and metadata. Ids the setup made are kept (a snapshot must keep its draft's id); ids T makes
   are numbered in the order they appear; timestamps are left out;
3. in the "before" state, repeats T without faults, which must succeed and reach the "after" state; in
   the "after" state, repeats T, which must give the outcome declared per transition (success, or an
   error saying it is done already) and leave the state "after";
4. checks that every document in the store parses and every listed dataset loads by name and by id.

Each (transition, mode) is one test that loops over k and reports every k that went wrong, with the
request that failed. A smaller run repeats this on a LocalStore for a few transitions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from crash_workers import known_ids, summary  # the same canonical state the crash sweep compares

from hds_s3 import (
    AlreadyExistsError,
    Client,
    Dataset,
    DatasetVersion,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
)
from hds_s3.format.records import parse_stored
from hds_s3.store import FaultyStore, LocalStore, MemoryStore, ObjectStore

Ids = dict[str, str]
Summary = tuple[Any, ...]
MODES = ("before", "after")


# ---------------------------------------------------------------------------- starting states


def _bystander(c: Client) -> None:
    """Another dataset (published snapshot + draft) that no transition may touch."""
    Dataset.create("other", tags=["keep"], metadata={"o": 1}, client=c)
    DatasetVersion.create_snapshot(dataset_name="other", publish_name="o1", client=c)


def setup_empty(c: Client) -> Ids:
    _bystander(c)
    return {}


def setup_draft(c: Client) -> Ids:
    """``ds`` with one draft ``Current`` carrying metadata, next to the bystander."""
    _bystander(c)
    ds = Dataset.create("ds", tags=["t1"], description="the dataset", metadata={"owner": "me"}, client=c)
    draft = ds.get_current()
    draft.set_metadata({"k": "v"})
    return {"draft": draft.id}


def setup_published(c: Client) -> Ids:
    """``ds`` whose only version ``Current`` is published."""
    ids = setup_draft(c)
    DatasetVersion.get_version("ds", version_id=ids["draft"], client=c).publish_version()
    return ids


def setup_scratch(c: Client) -> Ids:
    """``ds`` with the draft ``Current`` and a second root draft ``scratch``."""
    ids = setup_draft(c)
    ids["scratch"] = DatasetVersion.create_version(dataset_name="ds", version_name="scratch", client=c).id
    return ids


def setup_chain(c: Client) -> Ids:
    """``ds`` as a chain: published ``s1`` (the old draft) -> draft ``Current``."""
    ids = setup_draft(c)
    ids["child"] = DatasetVersion.create_snapshot(dataset_name="ds", publish_name="s1", client=c).id
    return ids


# ---------------------------------------------------------------------------- transitions


def _version(c: Client, ids: Ids, key: str = "draft") -> DatasetVersion:
    return DatasetVersion.get_version("ds", version_id=ids[key], client=c)


def _name_is_free_again(c: Client, ids: Ids) -> None:
    """After a dataset delete (however interrupted), its name can be created again."""
    ds = Dataset.create("ds", raise_if_exists=True, client=c)
    assert [d.id for d in Dataset.list_datasets(name_pattern="^ds$", client=c)] == [ds.id]
    assert [v.name for v in ds.get_versions()] == ["Current"]


@dataclass(frozen=True)
class Transition:
    """One transition under test.

    Attributes:
        name: test id.
        setup: builds the starting state; returns the ids the transition needs.
        run: the transition, from its look-ups to its last request.
        repeat: what repeating it in the "after" state raises (``None``: it succeeds).
        local: also run on a LocalStore.
        after_check: an extra check of the "after" state (may write; runs last).
    """

    name: str
    setup: Callable[[Client], Ids]
    run: Callable[[Client, Ids], object]
    repeat: type[HdsError] | None
    local: bool = False
    after_check: Callable[[Client, Ids], None] | None = None


TRANSITIONS = [
    Transition(
        "Dataset.create",
        setup_empty,
        lambda c, ids: Dataset.create(
            "new", tags=["a"], description="fresh", metadata={"m": 1}, raise_if_exists=True, client=c
        ),
        AlreadyExistsError,
        local=True,
    ),
    Transition(
        "create_new_dataset",
        setup_empty,
        lambda c, ids: DatasetVersion.create_new_dataset("new", tags=["a"], description="fresh", client=c),
        None,  # get-or-create
    ),
    Transition(
        "create_version-root",
        setup_draft,
        lambda c, ids: DatasetVersion.create_version(
            dataset_name="ds",
            version_name="root2",
            comment="c",
            metadata={"r": 1},
            raise_if_exists=True,
            client=c,
        ),
        AlreadyExistsError,
    ),
    Transition(
        "create_version-child",
        setup_published,
        lambda c, ids: DatasetVersion.create_version(
            dataset_name="ds",
            version_name="child",
            parent_version_ids=[ids["draft"]],
            metadata={"c": 2},
            client=c,
        ),
        None,  # get-or-create
    ),
    Transition(
        "create_snapshot",
        setup_draft,
        lambda c, ids: DatasetVersion.create_snapshot(
            dataset_name="ds",
            publish_name="snap1",
            child_name="next",
            publish_metadata={"p": 1},
            child_metadata={"n": 1},
            child_comment="after snap1",
            client=c,
        ),
        AlreadyExistsError,  # "snap1" is taken by the snapshot now
        local=True,
    ),
    Transition(
        "publish_version",
        setup_draft,
        lambda c, ids: _version(c, ids).publish_version(),
        InvalidStateError,
        local=True,
    ),
    Transition(
        "set_version_name", setup_draft, lambda c, ids: _version(c, ids).set_version_name("renamed"), None
    ),
    Transition(
        "set_metadata",
        setup_draft,
        lambda c, ids: _version(c, ids).set_metadata({"k": "v2", "n": [1, 2]}),
        None,
    ),
    Transition(
        "set_masks_labels",
        setup_draft,
        lambda c, ids: _version(c, ids).set_masks_labels({(1, 2, 3): ["car"], (0, 0, 0): "background"}),
        None,
    ),
    Transition(
        "Dataset.add_tags",
        setup_draft,
        lambda c, ids: Dataset.get("ds", client=c).add_tags(["t2", "t1"]),
        None,
    ),
    Transition(
        "Dataset.set_metadata",
        setup_draft,
        lambda c, ids: Dataset.get("ds", client=c).set_metadata({"owner": "you", "x": {"y": 1}}),
        None,
    ),
    Transition(
        "Dataset.delete_version-draft",
        setup_scratch,
        lambda c, ids: Dataset.get("ds", client=c).delete_version(version_name="scratch"),
        NotFoundError,  # it is gone
    ),
    Transition(
        "Dataset.delete_version-force",
        setup_chain,
        lambda c, ids: Dataset.get("ds", client=c).delete_version(version_id=ids["draft"], force=True),
        NotFoundError,  # it is gone, with its child
    ),
    Transition(
        "Dataset.delete-all-force",
        setup_chain,
        lambda c, ids: Dataset.delete("ds", delete_all_versions=True, force=True, client=c),
        NotFoundError,  # the dataset is gone
        local=True,
        after_check=_name_is_free_again,
    ),
    Transition(
        "Dataset.delete-no-flags",
        setup_draft,
        lambda c, ids: Dataset.delete("ds", client=c),
        NotFoundError,
        after_check=_name_is_free_again,
    ),
]
BY_NAME = {t.name: t for t in TRANSITIONS}
LOCAL_TRANSITIONS = [t.name for t in TRANSITIONS if t.local]


# ---------------------------------------------------------------------------- observing a store


def copy_objects(src: ObjectStore, dst: ObjectStore) -> ObjectStore:
    """Copy every object of ``src`` into ``dst`` (same keys and bytes, so the same etags); return ``dst``."""
    for info in src.list(""):
        data, _ = src.get(info.key)
        dst.put(info.key, data)
    return dst


def check_documents_parse(store: ObjectStore) -> None:
    """Every document in the store parses as what its key says it is (garbage included)."""
    for info in store.list(""):
        data, _ = store.get(info.key)
        if parse_stored(info.key, data) is None and info.key.endswith(".json"):
            json.loads(data)


def _diff(got: Summary, ref: Reference) -> str:
    def lines(s: Summary) -> str:
        return "\n".join(f"      {row}" for row in s)

    return f"\n    got:\n{lines(got)}\n    before:\n{lines(ref.before)}\n    after:\n{lines(ref.after)}"


# ---------------------------------------------------------------------------- the sweep


@dataclass
class Reference:
    """The starting state of a transition and what running it without faults gives."""

    template: MemoryStore
    ids: Ids
    known: frozenset[str]
    before: Summary
    after: Summary
    requests: int
    log: list[tuple[str, str]]


def reference(t: Transition) -> Reference:
    template = MemoryStore()
    ids = t.setup(Client(template))
    known = known_ids(template)
    before = summary(template, known)
    clean = copy_objects(template, MemoryStore())
    counter = FaultyStore(clean)
    t.run(Client(counter), ids)
    after = summary(clean, known)
    assert after != before, f"{t.name}: the transition changed nothing visible"
    assert counter.count > 0
    return Reference(template, ids, known, before, after, counter.count, list(counter.log))


def _outcome(t: Transition, client: Client, ids: Ids) -> str:
    """Run ``t`` once more without faults; return ``"success"`` or the name of the HdsError it raised."""
    try:
        t.run(client, ids)
    except HdsError as exc:
        return type(exc).__name__
    return "success"


def check_point(
    t: Transition, ref: Reference, inner: ObjectStore, k: int, mode: str
) -> tuple[str, str | None]:
    """Run ``t`` failing request ``k`` over ``inner``; return the state reached and the problem, if any."""
    faulty = FaultyStore(inner, fail_at=k, mode=mode)  # type: ignore[arg-type]
    raised: StorageError | None = None
    try:
        t.run(Client(faulty), ref.ids)
    except StorageError as exc:
        raised = exc
    except Exception as exc:  # noqa: BLE001 - any other error is the finding
        return "?", f"raised {type(exc).__name__}: {exc} (only StorageError may surface)"
    try:
        check_documents_parse(inner)
        state = summary(inner, ref.known)
    except Exception as exc:  # noqa: BLE001
        return "?", f"the store does not load through the API: {type(exc).__name__}: {exc}"
    client = Client(inner)
    if state == ref.before:
        if raised is None:
            return "before", "reported success, but the state is 'before'"
        got = _outcome(t, client, ref.ids)
        if got != "success":
            return "before", f"state is 'before'; repeating it raised {got}"
        again = summary(inner, ref.known)
        if again != ref.after:
            return "before", "state was 'before'; the repeat did not reach 'after':" + _diff(again, ref)
    elif state == ref.after:
        got = _outcome(t, client, ref.ids)
        want = t.repeat.__name__ if t.repeat is not None else "success"
        if got != want:
            return "after", f"state is 'after'; repeating it gave {got}, want {want}"
        again = summary(inner, ref.known)
        if again != ref.after:
            return "after", "state was 'after'; the repeat changed it:" + _diff(again, ref)
    else:
        return "?", f"state is neither before nor after (raised: {raised!r}):" + _diff(state, ref)
    if t.after_check is not None:
        try:
            t.after_check(client, ref.ids)
        except Exception as exc:  # noqa: BLE001
            return "after", f"after-state check failed: {type(exc).__name__}: {exc}"
    return ("before" if state == ref.before else "after"), None


def sweep(
    t: Transition, mode: str, make_store: Callable[[int], ObjectStore], label: str
) -> tuple[int, list[str]]:
    """Fail each request of ``t`` in turn; return the number of fault points and what went wrong."""
    ref = reference(t)
    problems: list[str] = []
    states: Counter[str] = Counter()
    for k in range(1, ref.requests + 1):
        inner = copy_objects(ref.template, make_store(k))
        state, problem = check_point(t, ref, inner, k, mode)
        states[state] += 1
        if problem is not None:
            op = " ".join(ref.log[k - 1])
            problems.append(f"{t.name} mode={mode} k={k}/{ref.requests} (fails: {op}): {problem}")
    print(
        f"[faults {t.name} mode={mode} on {label}] {ref.requests} fault points: "
        f"{states['before']} left it before, {states['after']} after, {len(problems)} problems"
    )
    return ref.requests, problems


def _report(problems: list[str], points: int) -> str:
    head = f"{len(problems)} of {points} fault points went wrong:\n"
    return head + "\n".join(problems[:20]) + ("\n..." if len(problems) > 20 else "")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BY_NAME))
def test_fault_at_every_request_memory(name: str, mode: str) -> None:
    points, problems = sweep(BY_NAME[name], mode, lambda k: MemoryStore(), "memory")
    assert not problems, _report(problems, points)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", LOCAL_TRANSITIONS)
def test_fault_at_every_request_local(name: str, mode: str, tmp_path: Path) -> None:
    points, problems = sweep(BY_NAME[name], mode, lambda k: LocalStore(tmp_path / f"k{k}"), "local")
    assert not problems, _report(problems, points)


def test_every_transition_is_swept() -> None:
    """The list covers the transitions the design names (a guard against dropping one)."""
    assert len(TRANSITIONS) == len(BY_NAME) >= 13
    assert set(LOCAL_TRANSITIONS) == {
        "Dataset.create",
        "create_snapshot",
        "publish_version",
        "Dataset.delete-all-force",
    }


def test_faulty_store_after_mode_loses_the_response_even_of_a_failed_request() -> None:
    """FaultyStore's contract: request ``fail_at`` raises StorageError, in mode "after" once performed.

    A lost response looks the same to the caller whatever the request did. A request that fails in the
    inner store (a create-only put on an existing key, a get of a missing key) must therefore also end
    in StorageError in mode "after"; otherwise that fault point injects nothing (in the sweep above:
    the store-marker put and the name-claim get of ``Dataset.create``/``create_new_dataset``).
    """
    inner = MemoryStore()
    inner.put("k", b"1")
    with pytest.raises(StorageError):
        FaultyStore(inner, fail_at=1, mode="after").put("k", b"2", if_none_match=True)
    with pytest.raises(StorageError):
        FaultyStore(inner, fail_at=1, mode="after").get("missing")
    assert inner.get("k")[0] == b"1"
