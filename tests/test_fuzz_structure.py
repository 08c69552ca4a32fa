"""Structure-aware fuzzing: hostile values in every field of a frame, and in DataView arguments and queries.

Where ``test_fuzz.py`` throws loosely shaped input at the API, this module starts from valid input (a
frame with sources, a preview, masks, ROIs of every kind and metadata; a DataView over a small dataset)
and replaces one part of it, wherever it lies, by something hostile:

* nesting far past any limit (dicts, lists and tuples 33 to 5,000 levels deep);
* huge and odd numbers (beyond 32 and 64 bits, 5,000 digits, infinity, NaN, ``Decimal``,
  ``Fraction``, numpy scalars and arrays);
* odd unicode (lone surrogates, superscript and other non-ASCII digits, NUL and other control
  characters, direction marks, texts of more than 1 MiB);
* wrong types (None, bools, bytes, sets, lists where text is due, objects);
* keys that are no field (typos, ``add_annotation``'s ``box2d_xywh``), and hostile keys in metadata.

The rule checked everywhere: a call either succeeds, and what it accepted reads back equal, or it raises
an :class:`~hds_s3.errors.HdsError` (``add_frames`` and ``update_frames`` report the frame among their
failures instead); a builtin exception (``RecursionError``, ``ValueError``, ``OverflowError``,
``TypeError``, ...) never reaches the caller, and the version stays readable. ``hds frames add`` gets
hostile JSON Lines (deep, huge numbers, long lines, bytes that are not UTF-8) and must report each bad
line by its number, never fail with an unexpected error.

The version API (``get_single_frame``, ``delete_frames``, ``get_frames_table``, ``set_masks_labels``,
``get_version``, ``create_version``, metadata, comments, tags, ``add_frames`` itself) gets hostile
arguments too: a call that raises leaves the store as it was.

Budget: ``HDS_FUZZ_EXAMPLES`` examples per test if set, else 200 in the ``full`` Hypothesis profile
(what CI runs) and 40 in ``quick`` (see ``tests/budget.py``); six tests, so 1,200 examples in CI. The
examples run are printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from functools import cache
from itertools import islice
from typing import Any

import numpy as np
import pytest
from budget import examples
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import Client, Dataset, DatasetVersion, DataView, HdsError, RoiQuery
from hds_s3.cli.app import cli
from hds_s3.index.ingest import normalize
from hds_s3.model.frames import frame_from_dict, to_frame_dict
from hds_s3.store import MemoryStore

RUNS: Counter[str] = Counter()
_SET_EXAMPLES = os.environ.get("HDS_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_SET_EXAMPLES) if _SET_EXAMPLES else examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
PROVENANCE = ("saved", "saved_in_version", "updated_in_version")


@pytest.fixture(scope="module", autouse=True)
def _print_runs() -> Iterator[None]:
    yield
    if RUNS:
        detail = ", ".join(f"{name} {n}" for name, n in sorted(RUNS.items()))
        print(f"\n[fuzz_structure] {sum(RUNS.values())} calls: {detail}")


def attempt(name: str, call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``call``: ``(True, result)``, or ``(False, the HdsError)``; any other exception fails the test."""
    RUNS[name] += 1
    try:
        return True, call()
    except HdsError as exc:
        assert str(exc), f"{name}: an error without a message"
        return False, exc


# ---------------------------------------------------------------------------- hostile values


def nest(kind: str, depth: int) -> Any:
    """A value ``depth`` levels deep (built without recursion): dicts, lists, tuples or both in turn."""
    value: Any = 1
    for level in range(depth):
        shape = kind if kind != "mixed" else ("dict", "list")[level % 2]
        value = {"k": value} if shape == "dict" else [value] if shape == "list" else (value,)
    return value


deep = st.builds(
    nest,
    st.sampled_from(["dict", "list", "tuple", "mixed"]),
    st.one_of(st.sampled_from([33, 34, 36, 40, 600, 1_100, 5_000]), st.integers(30, 120)),
)
huge_numbers = st.sampled_from(
    [
        2**31,
        2**63,
        2**64,
        -(2**63) - 1,
        2**64 - 1,
        10**400,
        -(10**5000),
        1e308,
        -1e308,
        math.inf,
        -math.inf,
        math.nan,
        -0.0,
        5e-324,
        Decimal("1e1000"),
        Decimal("NaN"),
        Fraction(10**400, 3),
        np.float64("nan"),
        np.int64(2**62),
        np.uint64(2**64 - 1),
        np.float32(3.5),
    ]
)
ODD = ["\ud800", "\udfff", "²", "³", "¹", "٣", "\x00", "\x1f", "\x7f", "\u202e", "\ufeff", "\u2028"]
ODD += ["e\u0301", "𝟘", "ﬁ", " ", "\t", ".", "$", "*", "?", ":", "\\", '"', "-999999999"]
odd_text = st.one_of(
    st.lists(st.sampled_from(ODD), min_size=1, max_size=6).map("".join),
    st.sampled_from(["", " ", "\u3000", "a" * 256, "é" * 128, "²³", "x\x00y", "s3://b/\ud800.jpg"]),
    st.builds(
        lambda char, extra: char * ((1 << 20) + extra), st.sampled_from(["x", "é"]), st.integers(-2, 2)
    ),
)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.complex_numbers(max_magnitude=10),
    st.sampled_from([object(), np.array([1.0, 2.0]), np.array([]), b"\xff\xfe", bytearray(b"x"), range(3)]),
)
hostile = st.one_of(deep, huge_numbers, odd_text, wrong_types)
hostile_keys = st.one_of(
    st.sampled_from(
        ["", "a.b", "$x", "\ud800", "²", "\x00", "k" * ((1 << 20) + 1), 10**400, 1.5, None, True]
    ),
    st.frozensets(st.integers(), max_size=1),
    st.tuples(st.integers()),
)


# ---------------------------------------------------------------------------- frames


def base_frame(fid: str, sources: int) -> dict[str, Any]:
    """A valid frame dict with every kind of field: sources with preview and masks, ROIs, metadata."""
    ids = ["front", "rear", "top"][:sources] if sources > 1 else ["default"]
    out: dict[str, Any] = {
        "id": fid,
        "context_id": "ctx",
        "timestamp": 40,
        "sources": [
            {
                "id": sid,
                "uri": f"s3://b/{fid}/{sid}.jpg",
                "content_type": "image/jpeg",
                "width": 640,
                "height": 480,
                "timestamp": 40,
                "meta": {"angle": 45, "lens": {"fov": 90.5}},
                "preview": {"uri": f"s3://b/{fid}/{sid}-p.jpg", "width": 64, "height": 48},
                "masks": [{"id": "00", "uri": f"s3://b/{fid}/{sid}-m.png", "width": 640, "height": 480}],
            }
            for sid in ids
        ],
        "rois": [
            {
                "id": "r1",
                "labels": ["car", "occluded"],
                "type": "box2d",
                "poly": [10, 20, 210, 20, 210, 140, 10, 140],
                "confidence": 0.5,
                "sources": [ids[0]],
                "meta": {"area": 12.5},
                "mask": None,
            },
            {"labels": ["person"], "type": "poly2d", "poly": [1, 2, 3, 4, 5, 6]},
            {
                "labels": ["road"],
                "type": "mask",
                "mask": {"id": "00", "value": [1, 2, 3]},
                "sources": [ids[0]],
            },
            {"labels": ["night"], "type": "label"},
        ],
        "meta": {"city": "bremen", "n": {"d": 2.5}, "tags": ["a", "b"]},
        "meta_blob": {"raw": [1, "a", None]},
    }
    return out


SOURCE_FIELDS = ["id", "uri", "content_type", "width", "height", "timestamp", "meta", "preview", "masks"]
MEDIA_FIELDS = ["uri", "content_type", "width", "height", "timestamp"]
ROI_FIELDS = ["id", "labels", "type", "poly", "confidence", "sources", "meta", "mask"]
FRAME_FIELDS = ["id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob"]
# Where a hostile value may go: every field of the frame, a source, its preview and masks, a ROI, a
# ROI's mask binding, list items, metadata values at depth, and keys that are no field.
PATHS: list[tuple[Any, ...]] = [
    *[(f,) for f in [*FRAME_FIELDS, "metadata", "saved", "junk", "widht", "dataset"]],
    ("sources", 0),
    *[("sources", 0, f) for f in [*SOURCE_FIELDS, "metadata", "widht", "source_meta"]],
    *[("sources", 0, "preview", f) for f in [*MEDIA_FIELDS, "size"]],
    ("sources", 0, "masks", 0),
    *[("sources", 0, "masks", 0, f) for f in ["id", *MEDIA_FIELDS, "alpha"]],
    ("rois", 0),
    *[("rois", i, f) for i in (0, 1, 2, 3) for f in ROI_FIELDS],
    *[("rois", 0, f) for f in ["label", "metadata", "label_num", "area", "box2d_xywh", "poly2d_xy"]],
    ("rois", 2, "mask", "id"),
    ("rois", 2, "mask", "value"),
    ("rois", 2, "mask", "value", 0),
    ("rois", 0, "poly", 3),
    ("rois", 0, "labels", 0),
    ("rois", 0, "sources", 0),
    ("meta", "city"),
    ("meta", "n", "d"),
    ("meta", "tags", 1),
    ("meta_blob", "raw", 0),
    ("sources", 0, "meta", "lens", "fov"),
    ("rois", 0, "meta", "area"),
]


def put(frame: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    """Set ``frame[path] = value`` (True), or do nothing when the path does not exist (False)."""
    node: Any = frame
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
        if not isinstance(node, (dict, list)):
            return False
    last = path[-1]
    if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
        return False
    node[last] = value
    return True


SHORTHAND_KEYS = ("uri", "content_type", "width", "height", "timestamp", "preview", "masks")


def shorthand(frame: dict[str, Any]) -> dict[str, Any]:
    """A one-source frame written with its source's fields at the top level (the source's meta is left out).

    The source's timestamp becomes the top-level one (the frame's too).
    """
    (source,) = frame["sources"]
    out = {k: v for k, v in frame.items() if k not in ("sources", "timestamp")}
    out.update((k, source[k]) for k in SHORTHAND_KEYS if k in source)
    return out


@st.composite
def hostile_frames(draw: st.DrawFn, fid: str = "target") -> dict[str, Any]:
    """A valid frame with one part (or one metadata key) replaced by something hostile."""
    frame = base_frame(fid, draw(st.sampled_from([1, 2])))
    kind = draw(st.sampled_from(["value", "value", "value", "key"]))
    if kind == "key":
        where = draw(
            st.sampled_from([("meta",), ("meta", "n"), ("sources", 0, "meta"), ("rois", 0, "meta"), ()])
        )
        node: Any = frame
        for step in where:
            node = node[step]
        node[draw(hostile_keys)] = draw(st.one_of(st.integers(0, 3), hostile))
    else:
        put(frame, draw(st.sampled_from(PATHS)), draw(hostile))
    sources = frame.get("sources")
    if (
        isinstance(sources, list)
        and len(sources) == 1
        and isinstance(sources[0], dict)
        and draw(st.booleans())
    ):
        if sources[0].get("id") == "default":
            frame = shorthand(frame)
    return frame


def content(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in PROVENANCE}


def fresh_draft() -> tuple[Client, DatasetVersion]:
    client = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset("fuzz", client=client)
    assert draft.add_frames([base_frame("seed", 1), base_frame("target", 2)]) == []
    return client, draft


def check_readable(client: Client, draft: DatasetVersion) -> None:
    """Every read path of the version works after whatever was written."""
    ids = [f.id for f in draft.iter_frames()]
    assert "seed" in ids
    for fid in ids:
        draft.get_single_frame(fid)
    view = DataView(client=client)
    view.add_query(dataset_name="fuzz", version_name=draft.name)
    assert len(view.to_list()) == len(ids)


def accepted_reads_back(name: str, draft: DatasetVersion, given: object) -> None:
    """A frame ``add_frames`` took is the frame the per-frame rules make of it, read back unchanged."""
    ok, expected = attempt(f"{name}: normalize", lambda: normalize(given))
    assert ok, f"{name}: accepted a frame the per-frame rules refuse: {expected}"
    stored = to_frame_dict(draft.get_single_frame(expected["id"]))
    assert content(stored) == content(expected)


@FUZZ
@given(frame=hostile_frames())
def test_hostile_frame_dicts_are_reported_or_read_back_equal(frame: dict[str, Any]) -> None:
    client, draft = fresh_draft()
    good = base_frame("good", 1)
    RUNS["add_frames(dict)"] += 1
    failed = draft.add_frames([frame, good])  # reports, never raises
    assert [f.frame for f in failed] in ([], [frame]), failed
    assert draft.get_single_frame("good") is not None
    if failed:
        RUNS["add_frames(dict) refused"] += 1
        assert isinstance(failed[0].reason, str) and failed[0].reason.startswith("frame")
    else:
        accepted_reads_back("add_frames(dict)", draft, frame)
    check_readable(client, draft)


@FUZZ
@given(frame=hostile_frames())
def test_hostile_frames_given_to_update_frames_and_as_objects(frame: dict[str, Any]) -> None:
    client, draft = fresh_draft()
    RUNS["update_frames(dict)"] += 1
    failed = draft.update_frames([frame])
    assert [f.frame for f in failed] in ([], [frame]), failed
    if not failed:
        accepted_reads_back("update_frames(dict)", draft, frame)
    ok, obj = attempt("frame_from_dict", lambda: frame_from_dict(frame))
    if ok:
        RUNS["add_frames(object)"] += 1
        failed = draft.add_frames([obj])
        assert [f.frame for f in failed] in ([], [obj]), failed
        if not failed:
            accepted_reads_back("add_frames(object)", draft, obj)
    check_readable(client, draft)


# ---------------------------------------------------------------------------- hds frames add

GOOD_LINE = '{"id": "ok", "uri": "s3://b/ok.jpg", "meta": {"city": "bremen"}}'
bad_lines = st.one_of(
    st.builds(lambda n: "[" * n + "]" * n, st.sampled_from([40, 1_100, 100_000])),
    st.builds(
        lambda n: '{"id": "m", "uri": "s3://b/1.jpg", "meta": ' + '{"k": ' * n + "1" + "}" * n + "}",
        st.sampled_from([33, 600, 5_000]),
    ),
    st.builds(
        lambda digits: '{"id": "n", "uri": "s3://b/1.jpg", "meta": {"n": ' + "9" * digits + "}}",
        st.sampled_from([20, 400, 5_000]),
    ),
    st.sampled_from(
        [
            '{"id": "nan", "uri": "s3://b/1.jpg", "meta": {"x": NaN}}',
            '{"id": "inf", "uri": "s3://b/1.jpg", "width": Infinity}',
            '{"id": "s", "uri": "s3://b/\\ud800.jpg"}',
            '{"id": "t", "uri": "s3://b/1.jpg", "widht": 3}',
            '{"id": "b", "uri": "s3://b/1.jpg", "rois": [{"labels": ["car"], "box2d_xywh": [1, 2, 3, 4]}]}',
            '{"id": "sup", "uri": "s3://b/1.jpg", "width": 1e400}',
            "[1, 2]",
            '"text"',
            "{",
            '{"id": "\\u0000", "uri": "s3://b/1.jpg"}',
        ]
    ),
    st.builds(
        lambda n: '{"id": "long", "uri": "s3://b/1.jpg", "meta": {"t": "' + "x" * n + '"}}',
        st.sampled_from([(1 << 20) + 1, 9 << 20]),
    ),
)


@FUZZ
@given(lines=st.lists(st.one_of(bad_lines, st.just(GOOD_LINE)), min_size=1, max_size=3), raw=st.booleans())
def test_hds_frames_add_reports_every_hostile_line_by_its_number(
    lines: list[str], raw: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each line is added or skipped with its number; the good first line always lands."""
    folder = tmp_path_factory.mktemp("lines")
    path = folder / "frames.jsonl"
    text = ("\n".join([GOOD_LINE, *lines]) + "\n").encode("utf-8", "surrogatepass")
    path.write_bytes(text + (b'{"id": "\xff\xfe"}\n' if raw else b""))  # a line that is not UTF-8
    count = 1 + len(lines) + raw
    store = f"memory://fuzz-{folder.name}"
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store, "datasets", "create", "-d", "d"]).exit_code == 0
    RUNS["hds frames add"] += 1
    args = ["--store", store, "--json", "frames", "add", "-d", "d", "--skip-invalid", str(path)]
    result = runner.invoke(cli, args)
    assert "unexpected" not in result.output.lower() and "Traceback" not in result.output, result.output
    assert result.exit_code == 0, (result.exit_code, result.output)
    summary = json.loads(result.stdout)
    skipped = [s["where"] for s in summary["skipped"]]
    assert all(where.startswith("frames.jsonl line ") for where in skipped)
    assert "frames.jsonl line 1" not in skipped
    assert summary["added"] + len(skipped) == count, summary
    RUNS["hds frames add: lines skipped"] += len(skipped)


# ---------------------------------------------------------------------------- DataViews and queries


@cache
def shared_store() -> MemoryStore:
    """A small dataset the DataView tests only read (DataView calls write nothing unless stored)."""
    store = MemoryStore()
    draft = DatasetVersion.create_new_dataset("fuzz", client=Client(store))
    assert draft.add_frames([base_frame(f"f{i}", 1 + i % 2) for i in range(4)]) == []
    return store


FIELDS = [
    "meta.city",
    "meta.n.d",
    "meta.²",
    "meta." + "9" * 5_000,
    "meta.\x00",
    "meta.\ud800",
    "meta",
    "nope",
]
FIELDS += ["sources.width", "sources.²", "sources.meta.angle", "rois.confidence", "rois.meta.area"]
FIELDS += ["timestamp", "id", "context_id", "label", "label.keyword", "rois.labels", "sources.9" * 3]
VALUES = ['"bremen"', "bremen", "[1 TO 5]", "[1e400 TO *]", "[" + "9" * 5_000 + " TO *]", ">=" + "9" * 5_000]
VALUES += ["[2024-01-01 TO 99999-12-31]", "[2024-13-45 TO *]", "*", "?", "\\", '"\ud800"', "²", "1e309"]
VALUES += ["-0", "NaN", "Infinity", "[a TO b]", "{5 TO 1}", "/re/", "c*r", '"\x00"', "<" + "1" * 400]
hostile_queries = st.one_of(
    st.builds(lambda field, value: f"{field}:{value}", st.sampled_from(FIELDS), st.sampled_from(VALUES)),
    st.builds(
        lambda n: "(" * n + "meta.city:bremen" + ")" * n, st.sampled_from([10, 63, 64, 65, 1_000, 5_000])
    ),
    st.builds(
        lambda n, op: f"{op} " * n + "car",
        st.sampled_from([10, 64, 65, 2_000]),
        st.sampled_from(["NOT", "+", "-"]),
    ),
    st.builds(lambda n: " OR ".join(["label:car"] * n), st.sampled_from([2, 100, 2_000])),
    st.lists(
        st.sampled_from([*ODD, "(", ")", "[", "]", "{", "}", " TO ", " AND ", ":", "~", "^"]), max_size=30
    ).map("".join),
    hostile,
)
maybe = st.one_of(st.none(), hostile)


@FUZZ
@given(
    rule=st.fixed_dictionaries(
        {},
        optional={
            "dataset_name": st.one_of(st.just("fuzz"), hostile),
            "version_name": st.one_of(st.just("Current"), hostile),
            "dataset_id": hostile,
            "roi_query": st.one_of(hostile_queries, st.lists(st.one_of(st.just("car"), hostile), max_size=3)),
            "frame_query": hostile_queries,
            "source_query": hostile_queries,
            "weight": st.one_of(hostile, st.floats()),
            "filter_by_roi": maybe,
        },
    ),
    roi=st.tuples(st.one_of(st.just("car"), hostile_queries), maybe, maybe, maybe),
)
def test_hostile_dataview_rules_and_queries(rule: dict[str, Any], roi: tuple[Any, ...]) -> None:
    client = Client(shared_store())
    view = DataView(client=client)
    ok, _ = attempt(
        "add_query", lambda: view.add_query(**{"dataset_name": "fuzz", "version_name": "Current", **rule})
    )
    made, roi_query = attempt("RoiQuery", lambda: RoiQuery(*roi))
    if made:
        attempt(
            "add_multi_query",
            lambda: view.add_multi_query(
                dataset_name="fuzz", version_name="Current", roi_queries=[roi_query]
            ),
        )
    if view.get_queries():
        counted, count = attempt("get_count", view.get_count)
        listed, frames = attempt("to_list", view.to_list)
        if counted and listed:
            assert count == len(frames)
        attempt("get_stats", lambda: view.get_stats(properties=["meta.city"]))


@FUZZ
@given(
    init=st.fixed_dictionaries(
        {},
        optional={
            "name": hostile,
            "description": hostile,
            "iteration_order": st.one_of(st.sampled_from(["random", "sequential"]), hostile),
            "iteration_infinite": hostile,
            "tags": hostile,
            "iteration_random_seed": hostile,
            "iteration_limit": hostile,
            "clip_length": hostile,
        },
    ),
    params=st.fixed_dictionaries(
        {},
        optional={
            "order": maybe,
            "infinite": maybe,
            "maximum_number_of_frames": maybe,
            "random_seed": maybe,
            "clip_length": maybe,
        },
    ),
    reading=st.fixed_dictionaries(
        {},
        optional={
            "projection": st.one_of(
                hostile, st.lists(st.one_of(st.sampled_from(["id", "sources.0.uri"]), odd_text), max_size=2)
            ),
            "num_workers": hostile,
            "worker_index": hostile,
        },
    ),
    labels=st.one_of(hostile, st.dictionaries(st.one_of(st.just("car"), odd_text), hostile, max_size=2)),
    mapping=st.tuples(st.one_of(st.just("car"), hostile), st.one_of(st.just("vehicle"), hostile)),
    start=hostile,
    properties=hostile,
)
def test_hostile_dataview_arguments(
    init: dict[str, Any],
    params: dict[str, Any],
    reading: dict[str, Any],
    labels: Any,
    mapping: tuple[Any, Any],
    start: Any,
    properties: Any,
) -> None:
    client = Client(shared_store())
    ok, view = attempt("DataView()", lambda: DataView(client=client, **init))
    if not ok:
        view = DataView(client=client)
    view.add_query(dataset_name="fuzz", version_name="Current")
    attempt("set_iteration_parameters", lambda: view.set_iteration_parameters(**params))
    attempt("set_labels", lambda: view.set_labels(labels))
    attempt("add_mapping_rule", lambda: view.add_mapping_rule(*mapping))
    attempt("set_initial_iteration", lambda: view.set_initial_iteration(start))
    attempt("get_stats", lambda: view.get_stats(properties=properties))
    attempt("get_iterator", lambda: list(islice(view.get_iterator(**reading), 20)))
    attempt("to_dict", lambda: view.to_dict(projection=reading.get("projection")))
    counted, count = attempt("get_count", view.get_count)
    assert not counted or isinstance(count, int)


# ---------------------------------------------------------------------------- the version API


def keyed(value: Any) -> dict[Any, list[str]]:
    """``{value: ["x"]}``, or ``{}`` when the value cannot be a key (unhashable, or too deep to hash)."""
    try:
        return {value: ["x"]}
    except (TypeError, RecursionError):
        return {}


VERSION_CALLS: dict[str, Callable[[Client, DatasetVersion, Any], object]] = {
    "get_single_frame": lambda c, d, v: d.get_single_frame(frame_id=v),
    "get_frame_history": lambda c, d, v: d.get_frame_history(v),
    "delete_frames": lambda c, d, v: d.delete_frames([v]),
    "get_frames_table": lambda c, d, v: d.get_frames_table(columns=v),
    "set_masks_labels": lambda c, d, v: d.set_masks_labels({(1, 2, 3): v}),
    "set_masks_labels(value)": lambda c, d, v: d.set_masks_labels(keyed(v)),
    "get_version": lambda c, d, v: DatasetVersion.get_version(dataset_name="fuzz", version_name=v, client=c),
    "create_version": lambda c, d, v: DatasetVersion.create_version(
        dataset_name="fuzz", version_name="child", parent_version_names=v, client=c
    ),
    "set_comment": lambda c, d, v: d.set_comment(v),
    "add_tags": lambda c, d, v: d.add_tags(v),
    "set_metadata": lambda c, d, v: d.set_metadata({"k": v}),
    "update_metadata": lambda c, d, v: d.update_metadata({"k": v}),
    "add_frames": lambda c, d, v: d.add_frames(v),
    "list_datasets(name_pattern)": lambda c, d, v: Dataset.list_datasets(name_pattern=v, client=c),
    "list_datasets(tags)": lambda c, d, v: Dataset.list_datasets(tags=v, client=c),
    "list_dataviews(name_pattern)": lambda c, d, v: DataView.list_dataviews(name_pattern=v, client=c),
    "list_dataviews(tags)": lambda c, d, v: DataView.list_dataviews(tags=v, client=c),
    "get_versions": lambda c, d, v: Dataset.get("fuzz", client=c).get_versions(only_published=v),
}


@FUZZ
@given(call=st.sampled_from(sorted(VERSION_CALLS)), value=hostile)
def test_hostile_arguments_to_the_version_api(call: str, value: Any) -> None:
    """Each call succeeds or raises an HdsError, and one that raises leaves the store as it was."""
    client, draft = fresh_draft()
    before = {i.key: i.etag for i in client.store.list("")}
    ok, _ = attempt(call, lambda: VERSION_CALLS[call](client, draft, value))
    if not ok:
        assert {i.key: i.etag for i in client.store.list("")} == before, f"{call} failed and wrote"
    check_readable(client, draft)


def test_the_base_frames_are_valid_and_every_path_reaches_into_them() -> None:
    """The fuzzer starts from valid frames, and each of its paths names a place in them."""
    for sources in (1, 2):
        frame = base_frame("x", sources)
        assert content(normalize(frame)) == content(normalize(copy.deepcopy(frame)))
        for path in PATHS:
            assert put(copy.deepcopy(frame), path, "value"), path
    full, short = base_frame("x", 1), shorthand(base_frame("x", 1))
    del full["sources"][0]["meta"]
    assert content(normalize(short)) == content(normalize(full))
