"""A hostile bucket: every kind of stored object replaced by adversarial content.

A store holds dataset ``dmg`` (published ``v1``, a draft child that added and deleted frames, a
checkpoint, the log after it), a stored DataView on it, and a healthy dataset ``fine``. One object
of one kind (name claim, head, log entry, checkpoint, version record, version name, statistics,
manifest, segment, DataView document) is replaced by adversarial content: bytes that are no JSON,
a truncation, JSON of the wrong shape, one field changed to a wrong type, a lone surrogate, NUL,
superscript digits, a number of thousands of digits or a nesting thousands deep, or a field
removed. Then every public read path (opening the dataset and its versions, listing datasets,
reading frames, looking one up, iterating, statistics, the DataView, the history), fsck and gc
(dry run) must either give what the store held before (the same frames, the same statistics), or
raise an :class:`~hds_s3.errors.HdsError`; never a builtin exception, never other frames. The
healthy dataset reads on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from backends import StoreSpec
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, Dataset, DatasetVersion, HdsError, SingleFrame
from hds_s3.format import layout
from hds_s3.format.commit import write_checkpoint
from hds_s3.query.dataview import DataView
from hds_s3.store import ObjectStore
from hds_s3.tools.fsck import fsck
from hds_s3.tools.gc import gc


def frame(i: int) -> SingleFrame:
    f = SingleFrame(
        source=f"s3://b/{i}.jpg", width=8, height=8, metadata={"i": i, "city": "bremen"}, id=f"f{i}"
    )
    f.add_annotation(box2d_xywh=(1, 1, 2, 2), labels=["car"])
    return f


@dataclass
class World:
    store: ObjectStore
    keys: dict[str, str]  # object kind -> the key of one object of that kind
    truth: dict[str, Any]  # what each read gave before the damage
    view_id: str


def _build(store: ObjectStore) -> World:
    c = Client(store)
    draft = DatasetVersion.create_new_dataset("dmg", client=c)
    draft.add_frames([frame(i) for i in range(4)])
    child = DatasetVersion.create_snapshot(dataset_name="dmg", publish_name="v1", client=c)
    write_checkpoint(store, child.dataset_id)
    child.add_frames([frame(9)])
    child.delete_frames(["f0"])
    DatasetVersion.create_new_dataset("fine", client=c).add_frames([frame(7)])
    view = DataView(name="cars", client=c)
    view.add_query(dataset_name="dmg", version_name="v1", roi_query="car")
    view_id = view.store()
    ds = c.catalog.get("dmg")
    v1 = ds.version_named("v1")
    current = ds.version_named("Current")
    assert v1 is not None and current is not None and ds.format_version == layout.STORE_FORMAT
    manifest = str(current.frames["manifest"])
    segment = c.frames.refs(current)[-1].key
    head = ds.head_doc  # type: ignore[attr-defined]
    keys = {
        "claim": layout.dataset_claim_key("dmg"),
        "head": layout.dataset_doc_key(ds.id),
        "log": layout.log_key(ds.id, head.seq),
        "checkpoint": layout.checkpoint_key(ds.id, head.checkpoint),
        "record": layout.record_key(ds.id, current.id),
        "name": layout.version_name_key(ds.id, "v1"),
        "stats": layout.stats_key(ds.id, v1.id),
        "manifest": manifest,
        "segment": segment,
        "dataview": layout.dataview_doc_key(view_id),
    }
    world = World(store, keys, {}, view_id)
    world.truth = {name: read(Client(store), world) for name, read in READS.items()}
    return world


def _table(version: DatasetVersion) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in version.get_frames_table().to_pylist())


READS: dict[str, Callable[[Client, World], Any]] = {
    "dataset": lambda c, w: Dataset.get("dmg", client=c).name,
    "list": lambda c, w: sorted(d.name for d in Dataset.list_datasets(client=c)),
    "versions": lambda c, w: [(v.name, v.status) for v in Dataset.get("dmg", client=c).get_versions()],
    "current": lambda c, w: Dataset.get("dmg", client=c).get_current().name,
    "v1 frames": lambda c, w: _table(DatasetVersion.get_version("dmg", version_name="v1", client=c)),
    "draft frames": lambda c, w: _table(DatasetVersion.get_version("dmg", version_name="Current", client=c)),
    "lookup": lambda c, w: (
        DatasetVersion.get_version("dmg", version_name="Current", client=c).get_single_frame("f9").to_dict()
    ),
    "iterate": lambda c, w: sorted(
        f.id or "" for f in DatasetVersion.get_version("dmg", version_name="Current", client=c).iter_frames()
    ),
    "stats": lambda c, w: DatasetVersion.get_version("dmg", version_name="v1", client=c).get_stats(),
    "dataview": lambda c, w: sorted(
        str(f.id) for f in DataView.get(dataview_id=w.view_id, client=c).to_list()
    ),
    "history": lambda c, w: [h["seq"] for h in Dataset.get("dmg", client=c).get_history()],
    "fine": lambda c, w: _table(DatasetVersion.get_version("fine", version_name="Current", client=c)),
}

_HOSTILE_VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            1.5,
            -1,
            2**70,
            "",
            "\ud800",
            "\x00",
            "²³",
            "x" * 10_000,
            [],
            {},
            [1, [2]],
            {"a": {"b": 1}},
        ]
    ),
    st.text(max_size=20),
    st.integers(),
)
_DEEP = 5_000
_HUGE = "9" * 5_000


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.just("bytes"), st.binary(max_size=64)),
        st.tuples(st.just("truncate"), st.floats(0.0, 0.99)),
        st.tuples(st.just("shape"), st.sampled_from([[], "text", 7, None])),
        st.tuples(st.just("field"), st.tuples(st.integers(0, 50), _HOSTILE_VALUES)),
        st.tuples(st.just("deep"), st.integers(0, 50)),
        st.tuples(st.just("huge"), st.integers(0, 50)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
    )


def _paths(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every field, dicts and lists, iteratively."""
    out: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append((node, k))
            if isinstance(v, (dict, list)):
                stack.append(v)
    return out


def _mutate(data: bytes, mutation: tuple[str, Any]) -> bytes:
    kind, arg = mutation
    if kind == "bytes":
        return bytes(arg)
    if kind == "truncate":
        return data[: int(len(data) * arg)]
    if kind == "shape":
        return json.dumps(arg).encode()
    try:
        raw = json.loads(data)
    except ValueError:  # a segment: its bytes
        return data[: len(data) // 2] + b"\x00" * 16 + data[len(data) // 2 + 16 :]
    fields = _paths(raw)
    if not fields:
        return b"{}"
    index = (arg[0] if kind == "field" else arg) % len(fields)
    node, key = fields[index]
    marker = "\u2603HOSTILE\u2603"
    if kind == "field":
        node[key] = arg[1]
        return json.dumps(raw, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if kind == "drop":
        del node[key]
        return json.dumps(raw).encode()
    node[key] = marker
    text = json.dumps(raw, ensure_ascii=False)
    hostile = "[" * _DEEP + "]" * _DEEP if kind == "deep" else _HUGE
    return text.replace(json.dumps(marker, ensure_ascii=False), hostile).encode()


KINDS = ["claim", "head", "log", "checkpoint", "record", "name", "stats", "manifest", "segment", "dataview"]


def _check(world: World, kind: str, mutation: tuple[str, Any]) -> None:
    key = world.keys[kind]
    original, _ = world.store.get(key)
    world.store.put(key, _mutate(original, mutation))
    try:
        for name, read in READS.items():
            try:
                got = read(Client(world.store), world)
            except HdsError:
                continue  # refused, with our error: fine
            except Exception as exc:  # noqa: BLE001 - the point of the test
                raise AssertionError(
                    f"{kind} {mutation[0]}: {name} raised {type(exc).__name__}: {str(exc)[:300]}"
                ) from exc
            if name == "list" and got == ["fine"]:
                continue  # a damaged dataset is left out of the listing (with a warning naming it)
            assert got == world.truth[name], f"{kind} {mutation[0]}: {name} returned something else"
        for tool in (lambda c: fsck(c, deep=True), lambda c: gc(c, grace_seconds=0, dry_run=True)):
            try:
                tool(Client(world.store))
            except HdsError:
                pass
            except Exception as exc:  # noqa: BLE001
                raise AssertionError(
                    f"{kind} {mutation[0]}: fsck/gc raised {type(exc).__name__}: {exc}"
                ) from exc
        if mutation[0] in ("bytes", "truncate", "shape"):
            report = fsck(Client(world.store), deep=True)
            if kind != "dataview":
                assert not report.ok, f"{kind} {mutation[0]}: fsck found no damage"
    finally:
        world.store.put(key, original)


@pytest.mark.parametrize(
    "store_spec",
    [
        pytest.param("memory", marks=pytest.mark.memory),
        pytest.param("local", marks=pytest.mark.local),
        pytest.param("seaweedfs", marks=pytest.mark.seaweedfs),
    ],
    indirect=True,
)
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_content_in_any_object_is_refused_or_harmless(store_spec: StoreSpec, kind: str) -> None:
    world = _build(store_spec.make())

    @settings(
        max_examples=examples(30),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(_mutations())
    def run(mutation: tuple[str, Any]) -> None:
        _check(world, kind, mutation)

    run()
