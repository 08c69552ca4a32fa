"""Bad input, fuzzed: every call either succeeds or raises its documented error, and a call that fails
writes nothing.

Hypothesis throws names (datasets, versions, snapshots, tags), metadata, frames (``SingleFrame`` and
``FrameGroup`` constructor arguments, and plain dicts given to ``add_frames``), annotations
(``add_annotation`` arguments) and query strings at the API. The rules checked:

* the result is success or :class:`~hds_s3.errors.ValidationError` (or the other error the call
  documents, e.g. ``AlreadyExistsError`` for a taken name), never another exception;
* a call that raises leaves the store's objects exactly as they were (keys and etags);
* ``add_frames`` reports invalid frames instead of raising, stores exactly the valid ones, and
  writes nothing when none is valid; a failed ``add_annotation`` leaves the frame's ROIs unchanged.

The number of examples run is printed at the end of the module (``pytest -s``);
``HDS_FUZZ_EXAMPLES`` sets the examples per test (default 150 in the ``full`` Hypothesis profile,
scaled down in ``quick``: see ``tests/budget.py``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3 import (
    AlreadyExistsError,
    Client,
    Dataset,
    DatasetVersion,
    FrameGroup,
    HdsError,
    SingleFrame,
    ValidationError,
)
from hds_s3.index.ingest import normalize
from hds_s3.store import MemoryStore, ObjectStore

RUNS: Counter[str] = Counter()
_SET_EXAMPLES = os.environ.get("HDS_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_SET_EXAMPLES) if _SET_EXAMPLES else examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def _print_runs() -> Iterator[None]:
    yield
    if RUNS:
        detail = ", ".join(f"{name} {n}" for name, n in sorted(RUNS.items()))
        print(f"\n[fuzz] {sum(RUNS.values())} examples run: {detail}")


def objects(store: ObjectStore) -> dict[str, str]:
    return {i.key: i.etag for i in store.list("")}


def world() -> tuple[Client, DatasetVersion]:
    """A store with dataset ``ds`` whose draft ``Current`` holds one frame."""
    c = Client(MemoryStore())
    draft = DatasetVersion.create_new_dataset("ds", client=c)
    draft.add_frames([SingleFrame(source="s3://b/0.jpg", id="f0")])
    return c, draft


def attempt(
    name: str, store: ObjectStore, call: Callable[[], object], allowed: tuple[type[HdsError], ...] = ()
) -> bool:
    """Run ``call``; True on success. On an allowed error the store must be untouched."""
    RUNS[name] += 1
    before = objects(store)
    try:
        call()
    except (ValidationError, *allowed):
        assert objects(store) == before, f"{name}: a failed call changed the store"
        return False
    return True


# ---------------------------------------------------------------------------- strategies

_ODD = list("./\\%~$ \t\n\x00\x7f\u200bé日-_*?\"'()[]{}:")
# Text UTF-8 can encode, and (weird_text) text with lone surrogates, which every field must refuse.
text_utf8 = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(_ODD)),
    st.sampled_from(["", " ", ".", "..", "../x", "a/b", "x" * 300, "Current", "é" * 200]),
)
weird_text = st.one_of(
    text_utf8, st.sampled_from(["\ud800", "a\udfff"]), st.text(alphabet="\ud800x", max_size=3)
)
not_text = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.booleans())
names = st.one_of(weird_text, not_text, st.lists(st.text(max_size=4), max_size=2))
tag_lists = st.one_of(
    weird_text,
    not_text,
    st.lists(names, max_size=4),
    st.tuples(names, names),
    st.sets(st.one_of(weird_text, st.integers()), max_size=2),
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    weird_text,
)
odd_leaf = st.one_of(
    st.binary(max_size=4), st.sets(st.integers(), max_size=2), st.complex_numbers(), st.just(object())
)
meta_keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["$x", "a.b", "", "ok", "nested", "\ud800", "k\udfff"]),
    st.integers(),
    st.none(),
)
metadata_values = st.recursive(
    st.one_of(json_leaf, odd_leaf),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(meta_keys, children, max_size=3),
    ),
    max_leaves=10,
)
metadata = st.one_of(st.dictionaries(meta_keys, metadata_values, max_size=4), metadata_values)

# Integers around the int32 (sizes) and int64 (times) limits and beyond.
numbers = st.one_of(
    st.none(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**70]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
plausible = st.one_of(
    st.lists(finite, min_size=2, max_size=10),
    st.lists(st.tuples(finite, finite), min_size=1, max_size=5),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
)
coords = st.one_of(
    plausible,
    plausible,
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=8),
    st.none(),
    st.lists(numbers, max_size=12),
    st.lists(st.tuples(numbers, numbers), max_size=5),
    st.lists(st.lists(numbers, max_size=6), max_size=3),
    st.tuples(numbers, numbers, numbers),
    numbers,
    st.text(max_size=5),
)
labels = st.one_of(
    st.lists(st.sampled_from(["car", "person"]), max_size=2),
    st.none(),
    weird_text,
    st.lists(st.one_of(weird_text, not_text), max_size=3),
    not_text,
)
uris = st.one_of(
    st.none(),
    st.sampled_from(["s3://b/a.jpg", "file:///data/x.png", "https://h/v.mp4", "rel/path.jpg", "", " "]),
    st.sampled_from(["s3://b/\ud800.jpg", "s3://b/a\udfff"]),
    weird_text,
    not_text,
)
mask_uris = st.one_of(st.none(), st.sampled_from(["s3://b/m.png", ""]), weird_text, not_text)
roi_dicts = st.dictionaries(
    st.sampled_from(
        ["id", "labels", "label", "type", "poly", "confidence", "sources", "meta", "mask", "zzz"]
    ),
    st.one_of(
        coords, labels, metadata_values, st.sampled_from(["box2d", "poly2d", "mask", "label", "bogus"])
    ),
    max_size=5,
)
annotation_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "poly2d_xy": coords,
        "poly3d_xyz": coords,
        "points2d_xy": coords,
        "points3d_xyz": coords,
        "box2d_xywh": coords,
        "box3d_xyzwhxyzwh": coords,
        "ellipse2d_xyrrt": coords,
        "mask_rgb": coords,
        "frame_class": labels,
        "id": st.one_of(st.none(), weird_text, not_text, st.just("0" * 32)),
        "labels": labels,
        "confidence": numbers,
        "metadata": metadata,
    },
)
shape_kwargs = st.one_of(
    st.fixed_dictionaries({"box2d_xywh": st.tuples(finite, finite, st.floats(0.1, 50), st.floats(0.1, 50))}),
    st.fixed_dictionaries({"poly2d_xy": st.lists(finite, min_size=6, max_size=12)}),
    st.fixed_dictionaries({"points2d_xy": st.lists(st.tuples(finite, finite), min_size=1, max_size=4)}),
    st.fixed_dictionaries(
        {"ellipse2d_xyrrt": st.tuples(finite, finite, st.floats(0.1, 9), st.floats(0.1, 9), finite)}
    ),
    st.fixed_dictionaries(
        {"mask_rgb": st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))}
    ),
    st.fixed_dictionaries(
        {"frame_class": st.lists(st.sampled_from(["day", "night"]), min_size=1, max_size=2)}
    ),
)
plausible_annotation = st.builds(
    lambda shape, extra: {**shape, **extra},
    shape_kwargs,
    st.fixed_dictionaries(
        {},
        optional={
            "labels": st.lists(st.sampled_from(["car", "person", "a.b", ""]), max_size=2),
            "confidence": st.one_of(st.floats(0, 1), numbers),
            "metadata": st.one_of(
                st.dictionaries(st.sampled_from(["k", "n"]), json_leaf, max_size=2), metadata
            ),
            "id": st.one_of(st.none(), st.just("0" * 32), text_utf8),
        },
    ),
)
annotation_args = st.one_of(plausible_annotation, plausible_annotation, annotation_kwargs)
frame_kwargs = st.fixed_dictionaries(
    {"source": uris},
    optional={
        "width": numbers,
        "height": numbers,
        "preview_uri": uris,
        "metadata": metadata,
        "annotations": st.one_of(st.none(), st.lists(roi_dicts, max_size=3)),
        "mask_source": mask_uris,
        "id": st.one_of(st.none(), weird_text, not_text),
        "context_id": st.one_of(st.none(), weird_text, not_text),
        "timestamp": numbers,
        "masks_source": st.one_of(
            mask_uris, st.lists(uris, max_size=2), st.dictionaries(weird_text, uris, max_size=2)
        ),
        "meta_blob": metadata,
        "content_type": st.one_of(st.none(), weird_text, not_text),
        "source_meta": metadata,
        "source_id": st.one_of(weird_text, not_text),
        "source_timestamp": numbers,
    },
)
plausible_frame_kwargs = st.fixed_dictionaries(
    {"source": st.sampled_from(["s3://b/a.jpg", "https://h/v.mp4", "rel/x.png", "gs://g/1.tif"])},
    optional={
        "width": st.integers(1, 5000),
        "height": st.integers(1, 5000),
        "metadata": st.one_of(
            st.dictionaries(st.sampled_from(["city", "n", "x"]), json_leaf, max_size=3), metadata
        ),
        "id": st.one_of(st.none(), st.text(min_size=1, max_size=8), weird_text),
        "timestamp": st.one_of(st.integers(0, 2**40), numbers),
        "preview_uri": st.one_of(st.none(), st.just("s3://b/p.jpg"), uris),
        "annotations": st.lists(roi_dicts, max_size=2),
        "source_timestamp": st.one_of(st.integers(0, 10**6), numbers),
        "content_type": st.one_of(st.none(), st.just("image/png"), weird_text),
    },
)
any_frame_kwargs = st.one_of(plausible_frame_kwargs, plausible_frame_kwargs, frame_kwargs)
source_dicts = st.dictionaries(
    st.sampled_from(
        ["id", "uri", "content_type", "width", "height", "timestamp", "meta", "preview", "masks", "x"]
    ),
    st.one_of(
        uris, numbers, metadata_values, st.lists(st.dictionaries(st.sampled_from(["id", "uri"]), uris))
    ),
    max_size=6,
)
frame_dicts = st.dictionaries(
    st.sampled_from(
        ["id", "context_id", "timestamp", "sources", "rois", "meta", "meta_blob", "saved", "junk"]
    ),
    st.one_of(
        st.lists(source_dicts, max_size=3),
        st.lists(roi_dicts, max_size=3),
        numbers,
        weird_text,
        metadata_values,
    ),
    max_size=7,
)


def _build_frame(kwargs: dict[str, Any]) -> SingleFrame | None:
    """The constructor documents only ValidationError (both mask arguments)."""
    try:
        return SingleFrame(**kwargs)
    except ValidationError:
        return None


# ---------------------------------------------------------------------------- names and tags


@FUZZ
@given(name=names, tags=tag_lists)
def test_dataset_names_and_tags(name: Any, tags: Any) -> None:
    c = Client(MemoryStore())
    Dataset.create("seed", client=c)
    if attempt("Dataset.create", c.store, lambda: Dataset.create(name, tags=tags, client=c)):
        assert Dataset.get(name, client=c).name == name
    ds = Dataset.get("seed", client=c)
    attempt("Dataset.add_tags", c.store, lambda: ds.add_tags(tags))


@FUZZ
@given(name=names, other=names, tags=tag_lists)
def test_version_names(name: Any, other: Any, tags: Any) -> None:
    c, draft = world()
    DatasetVersion.create_snapshot(dataset_name="ds", publish_name="v1", client=c)
    if attempt(
        "create_version",
        c.store,
        lambda: DatasetVersion.create_version(
            dataset_name="ds", version_name=name, parent_version_names="v1", client=c
        ),
        (AlreadyExistsError,),
    ):
        assert Dataset.get("ds", client=c).get_version(version_name=name).name == name
    current = Dataset.get("ds", client=c).get_current()
    attempt("set_version_name", c.store, lambda: current.set_version_name(other), (AlreadyExistsError,))
    attempt("version.add_tags", c.store, lambda: current.add_tags(tags))


@FUZZ
@given(publish=names, child=names)
def test_snapshot_names(publish: Any, child: Any) -> None:
    c, _ = world()
    if attempt(
        "create_snapshot",
        c.store,
        lambda: DatasetVersion.create_snapshot(
            dataset_name="ds", publish_name=publish, child_name=child, client=c
        ),
        (AlreadyExistsError,),
    ):
        names_now = [v.name for v in Dataset.get("ds", client=c).get_versions()]
        assert publish in names_now or publish is None


# ---------------------------------------------------------------------------- metadata


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_json_clean(value: Any) -> bool:
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and k and "$" not in k and "." not in k and _is_utf8(k) and _is_json_clean(v)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return all(_is_json_clean(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _is_utf8(value)
    return value is None or isinstance(value, (int, bool))


@FUZZ
@given(meta=metadata)
def test_metadata(meta: Any) -> None:
    c, draft = world()
    ok = attempt("version.set_metadata", c.store, lambda: draft.set_metadata(meta))
    assert ok == (meta is None or (isinstance(meta, dict) and _is_json_clean(meta)))
    ds = Dataset.get("ds", client=c)
    attempt("Dataset.set_metadata", c.store, lambda: ds.set_metadata(meta))
    attempt(
        "create_version(metadata)",
        c.store,
        lambda: DatasetVersion.create_version(dataset_name="ds", version_name="m", metadata=meta, client=c),
    )
    attempt("Dataset.create(metadata)", c.store, lambda: Dataset.create("m", metadata=meta, client=c))


@FUZZ
@given(text=st.one_of(weird_text, not_text))
def test_comments_and_descriptions(text: Any) -> None:
    c, draft = world()
    ds = Dataset.get("ds", client=c)
    valid = isinstance(text, str) and _is_utf8(text)
    assert attempt("set_comment", c.store, lambda: draft.set_comment(text)) == valid
    assert attempt("set_description", c.store, lambda: ds.set_description(text)) == valid
    assert attempt(
        "Dataset.create(description)", c.store, lambda: Dataset.create("d", description=text, client=c)
    ) == (valid or text is None)
    attempt(
        "create_version(comment)",
        c.store,
        lambda: DatasetVersion.create_version(dataset_name="ds", version_name="c", comment=text, client=c),
    )


# ---------------------------------------------------------------------------- frames


def _check_add_frames(name: str, c: Client, draft: DatasetVersion, items: list[Any]) -> None:
    RUNS[name] += 1
    before = objects(c.store)
    failed = draft.add_frames(items)  # invalid frames are reported, never raised
    bad = {id(f.frame) for f in failed}
    good = [i for i in items if id(i) not in bad]
    if not good:
        assert objects(c.store) == before, f"{name}: nothing was valid, yet the store changed"
        return
    RUNS[f"{name} ok"] += 1
    ids = {normalize(i)["id"] for i in good} | {"f0"}
    assert set(draft.get_frames_table(columns=["id"]).column("id").to_pylist()) == ids


@FUZZ
@given(kwargs=st.lists(any_frame_kwargs, min_size=1, max_size=3))
def test_single_frames(kwargs: list[dict[str, Any]]) -> None:
    c, draft = world()
    frames = [f for f in map(_build_frame, kwargs) if f is not None]
    _check_add_frames("add_frames(SingleFrame)", c, draft, frames)


@FUZZ
@given(
    members=st.dictionaries(
        st.one_of(st.sampled_from(["left", "right"]), weird_text), any_frame_kwargs, min_size=1, max_size=2
    ),
    group_meta=metadata,
)
def test_frame_groups(members: dict[str, dict[str, Any]], group_meta: Any) -> None:
    c, draft = world()
    built = {k: f for k, f in ((k, _build_frame(v)) for k, v in members.items()) if f is not None}
    try:
        group = FrameGroup(built, metadata=group_meta if isinstance(group_meta, dict) else None)
    except ValidationError:
        return
    _check_add_frames("add_frames(FrameGroup)", c, draft, [group])


@FUZZ
@given(
    items=st.lists(
        st.one_of(frame_dicts, st.just({"sources": [{"id": "default", "uri": "s3://b/1.jpg"}]})), max_size=3
    )
)
def test_frame_dicts(items: list[dict[str, Any]]) -> None:
    c, draft = world()
    _check_add_frames("add_frames(dict)", c, draft, items)


@FUZZ
@given(kwargs=annotation_args, with_mask=st.booleans())
def test_annotations(kwargs: dict[str, Any], with_mask: bool) -> None:
    frame = SingleFrame(
        source="s3://b/a.jpg", width=10, height=10, mask_source="s3://b/m.png" if with_mask else None
    )
    frame.add_annotation(box2d_xywh=(1, 1, 2, 2), labels=["seed"])
    before = [a.to_dict() for a in frame.annotations]
    RUNS["add_annotation"] += 1
    try:
        added = frame.add_annotation(**kwargs)
    except ValidationError:
        assert [a.to_dict() for a in frame.annotations] == before, "a failed add_annotation added ROIs"
        return
    RUNS["add_annotation ok"] += 1
    assert [a.to_dict() for a in frame.annotations[: len(before)]] == before and added
    c, draft = world()
    _check_add_frames("add_frames(annotated)", c, draft, [frame])


# ---------------------------------------------------------------------------- queries

query_tokens = st.sampled_from(
    [
        "meta.city:",
        "label:",
        "label.keyword:",
        "rois.confidence:",
        "sources.width:",
        "id:",
        "timestamp:",
        "meta.x.y:",
        "nope:",
        '"car"',
        "'bus stop'",
        "car",
        "c*r",
        "?",
        "*",
        "[1 TO 5]",
        "[2024-01-01 TO 2024-12-31]",
        "{1 TO 2}",
        ">=3",
        "<=",
        ">",
        "~2",
        "^3",
        "/re/",
        "AND",
        "OR",
        "NOT",
        "+",
        "-",
        "(",
        ")",
        " ",
        ":",
        "\\",
        '"',
        "1.5e3",
        "true",
    ]
)
plausible_query = st.lists(
    st.builds(
        lambda field, value: field + value,
        st.sampled_from(
            ["meta.city:", "label:", "rois.confidence:", "sources.width:", "timestamp:", "id:", ""]
        ),
        st.sampled_from(
            ['"bremen"', "car", "[0.5 TO 1]", "[1 TO *]", ">=3", "c?r*", "*", "2024-01-01", "true"]
        ),
    ),
    min_size=1,
    max_size=3,
).flatmap(lambda parts: st.sampled_from([" AND ", " OR ", " AND NOT ", " "]).map(lambda op: op.join(parts)))
queries = st.one_of(
    plausible_query,
    plausible_query,
    st.text(max_size=40),
    st.lists(query_tokens, max_size=10).map(" ".join),
    st.lists(query_tokens, max_size=8).map("".join),
)


@FUZZ
@given(text=queries, scope=st.sampled_from(["frame", "roi", "source"]))
def test_query_parsing(text: str, scope: str) -> None:
    from hds_s3.query.lucene import parse

    RUNS["query.parse"] += 1
    try:
        parse(text, scope)  # type: ignore[arg-type]
    except ValidationError as exc:
        assert str(exc)
        return
    RUNS["query.parse ok"] += 1


# ---------------------------------------------------------------------------- inputs fuzzing found
#
# Each of these once escaped as another exception (TypeError, UnicodeEncodeError, OverflowError,
# ArrowInvalid) instead of a ValidationError naming the field, or (add_frames) instead of the frame
# being reported as failed.

S = "\ud800"  # a lone surrogate: a str Python holds but UTF-8 cannot encode


def _add(frame: SingleFrame | dict[str, Any]) -> str:
    """Add one invalid frame next to a stored one; it must be reported, and nothing written."""
    c, draft = world()
    before = objects(c.store)
    failed = draft.add_frames([frame])
    assert [f.frame for f in failed] == [frame], "the invalid frame was stored"
    assert objects(c.store) == before
    raise ValidationError(failed[0].reason)  # checked like the other calls


FOUND: list[tuple[str, str, Callable[[], object]]] = [
    ("check_tags(0)", "tags", lambda: Dataset.create("t", tags=0, client=Client(MemoryStore()))),  # type: ignore[arg-type]
    ("add_tags(1.5)", "tags", lambda: world()[1].add_tags(1.5)),  # type: ignore[arg-type]
    ("add_tags(True)", "tags", lambda: world()[1].add_tags(True)),  # type: ignore[arg-type]
    ("SingleFrame(mask_source=0)", "masks", lambda: SingleFrame(source="s3://b/a.jpg", mask_source=0)),  # type: ignore[arg-type]
    ("SingleFrame(masks_source=7)", "masks", lambda: SingleFrame(source="s3://b/a.jpg", masks_source=7)),  # type: ignore[arg-type]
    ("set_metadata(surrogate value)", "metadata value at 'k'", lambda: world()[1].set_metadata({"k": S})),
    ("set_metadata(surrogate key)", "metadata key", lambda: world()[1].set_metadata({S: 1})),
    ("set_metadata(nested surrogate)", "a.[1]", lambda: world()[1].set_metadata({"a": [1, S]})),
    ("set_comment(surrogate)", "comment", lambda: world()[1].set_comment(S)),
    (
        "set_description(surrogate)",
        "description",
        lambda: Dataset.get("ds", client=world()[0]).set_description("x" + S),
    ),
    (
        "Dataset.create(description=surrogate)",
        "description",
        lambda: Dataset.create("d", description=S, client=Client(MemoryStore())),
    ),
    (
        "Dataset.create(description=bytes)",
        "description",
        lambda: Dataset.create("d", description=b"x", client=Client(MemoryStore())),  # type: ignore[arg-type]
    ),
    (
        "Dataset.create(description=int)",
        "description",
        lambda: Dataset.create("d", description=5, client=Client(MemoryStore())),  # type: ignore[arg-type]
    ),
    (
        "create_version(comment=surrogate)",
        "comment",
        lambda: DatasetVersion.create_version(
            dataset_name="ds", version_name="v", comment=S, client=world()[0]
        ),
    ),
    (
        "add_frames(timestamp=2**63)",
        "timestamp",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", timestamp=2**63)),
    ),
    (
        "add_frames(source_timestamp=2**63)",
        "source_timestamp",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", source_timestamp=2**63)),
    ),
    ("add_frames(width=2**31)", "width", lambda: _add(SingleFrame(source="s3://b/a.jpg", width=2**31))),
    ("add_frames(height=2**70)", "height", lambda: _add(SingleFrame(source="s3://b/a.jpg", height=2**70))),
    (
        "add_frames(dict, width=2**31)",
        "width",
        lambda: _add({"id": "x", "sources": [{"id": "default", "uri": "s3://b/a.jpg", "width": 2**31}]}),
    ),
    (
        "add_frames(dict, timestamp=2**64)",
        "timestamp",
        lambda: _add({"id": "x", "timestamp": 2**64, "sources": [{"id": "default", "uri": "s3://b/a.jpg"}]}),
    ),
    ("to_dict(uri=surrogate)", "source", lambda: SingleFrame(source="s3://b/" + S).to_dict()),
    (
        "add_frames(content_type=surrogate)",
        "content_type",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", content_type=S)),
    ),
    (
        "add_frames(context_id=surrogate)",
        "context_id",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", context_id=S)),
    ),
    (
        "add_frames(meta value=surrogate)",
        "metadata value at 'k'",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", metadata={"k": S})),
    ),
    (
        "add_frames(meta_blob=surrogate)",
        "meta_blob",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", meta_blob={"k": S})),
    ),
    (
        "add_frames(dict, meta=surrogate)",
        "metadata value at 'k'",
        lambda: _add({"sources": [{"id": "default", "uri": "s3://b/a.jpg"}], "meta": {"k": S}}),
    ),
    (
        "add_frames(dict, label=surrogate)",
        "labels",
        lambda: _add(
            {
                "id": "x",
                "sources": [{"id": "default", "uri": "s3://b/a.jpg"}],
                "rois": [{"labels": ["a" + S], "type": "label", "poly": []}],
            }
        ),
    ),
    (
        "add_frames(mask uri=surrogate)",
        "masks[0].uri",
        lambda: _add(SingleFrame(source="s3://b/a.jpg", masks_source={"00": "s3://b/" + S})),
    ),
]


@pytest.mark.parametrize("field, call", [pytest.param(f, c, id=label) for label, f, c in FOUND])
def test_inputs_fuzzing_found_raise_validation_error_naming_the_field(
    field: str, call: Callable[[], object]
) -> None:
    with pytest.raises(ValidationError) as info:
        call()
    assert field in str(info.value)
