"""The Lucene subset: every construct against known frames, error messages, ROI rules, and agreement
with a plain Python evaluator on random frames and queries."""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hds_s3
from hds_s3 import DatasetVersion, ValidationError
from hds_s3.index import segments
from hds_s3.query import lucene as q


def frame(
    fid: str,
    *,
    ctx: str = "c",
    ts: int = 0,
    meta: dict[str, Any] | None = None,
    rois: Sequence[dict[str, Any]] = (),
    sources: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": fid,
        "context_id": ctx,
        "timestamp": ts,
        "sources": list(
            sources or [{"id": "default", "uri": f"s3://b/{fid}.jpg", "width": 640, "height": 480}]
        ),
        "rois": [{"labels": [], "confidence": None, **r} for r in rois],
        "meta": meta or {},
    }


FRAMES = [
    frame(
        "a",
        ctx="c1",
        ts=0,
        meta={
            "city": "bremen",
            "n": 5,
            "day": "2024-10-30T12:00:00",
            "csv_data": {"x": "y", "k": 2},
            "ok": True,
        },
        rois=[
            {"id": "r1", "labels": ["cat", "small"], "confidence": 0.9},
            {"id": "r2", "labels": ["dog"], "confidence": 0.2},
        ],
    ),
    frame(
        "b",
        ctx="c1",
        ts=10,
        meta={"city": "hamburg", "n": 7.5, "day": "2024-10-20", "ok": False, "title": "Bus Stop"},
        rois=[
            {"id": "r3", "labels": ["cat"], "confidence": 0.5},
            {"id": "r4", "labels": ["small"], "confidence": 0.5},
        ],
        sources=[
            {
                "id": "front",
                "uri": "s3://b/b-front.png",
                "content_type": "image/png",
                "width": 100,
                "height": 50,
            },
            {"id": "rear", "uri": "s3://b/b-rear.jpg", "width": 640, "height": 100},
        ],
    ),
    frame("c", ctx="c2", ts=5, meta={"city": "Bremen", "n": -1}),
    frame(
        "d",
        ctx="c2",
        ts=7,
        meta={"city": "br?men", "day": "2024-11-01"},
        rois=[
            {"id": "r5", "labels": ["cat"], "confidence": 0.95},
            {"id": "r6", "labels": ["cat"], "confidence": 0.1},
        ],
    ),
]
TABLE = segments.frames_table([segments.frame_row(f) for f in FRAMES])


def ids(flt: q.FrameFilter | q.Query, table: pa.Table = TABLE) -> list[str]:
    mask = q.frame_mask(table, flt)
    return [i for i, keep in zip(table.column("id").to_pylist(), mask, strict=True) if keep]


def frame_ids(text: str) -> list[str]:
    return ids(q.parse(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('meta.city:"bremen"', ["a"]),
        ("meta.city:bremen", ["a"]),
        ("meta.city:'bremen'", ["a"]),  # single quotes, as the reference's examples write them
        ('meta.title:"Bus Stop"', ["b"]),
        ("meta.title:'Bus Stop'", ["b"]),
        ("meta.city:bremen OR meta.city:hamburg", ["a", "b"]),
        ("meta.city:bremen meta.city:hamburg", ["a", "b"]),  # implicit OR in frame queries
        ('meta.city:("bremen" OR "hamburg")', ["a", "b"]),
        ("meta.city:(bremen hamburg)", ["a", "b"]),
        ("meta.city:bremen AND label:cat", ["a"]),
        ("label:cat AND NOT meta.city:bremen", ["b", "d"]),
        ("label:cat -meta.city:bremen", ["b", "d"]),
        ("+label:cat +meta.city:hamburg", ["b"]),
        ("+label:cat meta.city:hamburg", ["a", "b", "d"]),  # a should clause is optional next to a must
        ("(meta.city:bremen OR meta.city:hamburg) AND NOT label:dog", ["b"]),
        ("label:dog OR meta.n:[-5 TO 0]", ["a", "c"]),
        ("label.keyword:cat", ["a", "b", "d"]),
        ("rois.labels:small", ["a", "b"]),
        ("NOT label:*", ["c"]),
        ("label:*", ["a", "b", "d"]),
        ("label:c?t", ["a", "b", "d"]),
        ("label:d*", ["a"]),
        ("meta.n:5", ["a"]),
        ("meta.n:5.0", ["a"]),
        ("meta.n:[5 TO 7.5]", ["a", "b"]),
        ("meta.n:[5 TO *]", ["a", "b"]),
        ("meta.n:[* TO 0]", ["c"]),
        ("meta.n:-1", ["c"]),  # a negative number, not NOT meta.n:1
        ('meta.n:"-1"', ["c"]),
        ("meta.city:-bremen", ["b", "c", "d"]),  # a prohibited word stays NOT
        ("meta.n:>=6", ["b"]),
        ("meta.n:<=5", ["a", "c"]),
        ("meta.n:*", ["a", "b", "c"]),
        ("NOT meta.n:5", ["b", "c", "d"]),  # absent values never match, so NOT matches them
        ("meta.ok:true", ["a"]),
        ("meta.ok:false", ["b"]),
        ("meta.csv_data.x:y", ["a"]),
        ("meta.csv_data.k:[1 TO 2]", ["a"]),
        ("meta.day:[2024-10-20 TO 2024-10-30]", ["a", "b"]),  # a date upper bound covers the whole day
        ("meta.day:[2024-10-21 TO *]", ["a", "d"]),
        ("meta.day:[2024-10-30T12:00:00 TO 2024-10-30T12:00:00]", ["a"]),
        ("meta.day:[2024-10-30T13:00:00 TO 2024-12-01T00:00:00]", ["d"]),
        ("meta.city:[a TO c]", ["a", "d"]),  # strings compare as text (B < a)
        ("meta.city:Br*", ["c"]),  # exact, case-sensitive
        ("meta.city:br\\?men", ["d"]),  # an escaped wildcard is literal
        ('meta.city:"br?men"', ["d"]),  # wildcards in phrases are literal
        ("meta.city:br?men", ["a", "d"]),
        ("meta.nope:*", []),
        ("id:a OR id:c", ["a", "c"]),
        ("id:[b TO c]", ["b", "c"]),
        ("context_id:c2", ["c", "d"]),
        ("timestamp:[5 TO 10]", ["b", "c", "d"]),
        ("timestamp:7", ["d"]),
        ("timestamp:[1970-01-01 TO 1970-01-01]", ["a", "b", "c", "d"]),  # ISO bounds become epoch ms
        ("timestamp:[1970-01-01T00:00:00.006 TO *]", ["b", "d"]),
        ("roi_count:0", ["c"]),
        ("roi_count:[2 TO *]", ["a", "b", "d"]),
        ("rois.confidence:[0.9 TO 1]", ["a", "d"]),
        ("rois.confidence:0.5", ["b"]),
        ("rois.id:r5", ["d"]),
        ("rois.id:r*", ["a", "b", "d"]),
        ("sources.width:640", ["a", "b", "c", "d"]),
        ("sources.uri:*png", ["b"]),
        ("sources.id:rear", ["b"]),
        ("source.id:front", ["b"]),
        ("sources.content_type:image/png", ["b"]),
        ("sources.height:[0 TO 60]", ["b"]),
        ("*", ["a", "b", "c", "d"]),
        ("NOT *", []),
        ("meta.city:bremen AND *", ["a"]),
    ],
)
def test_frame_queries_select_the_expected_frames(text: str, expected: list[str]) -> None:
    assert frame_ids(text) == expected


def test_leaves_on_rois_and_sources_in_a_frame_query_may_be_met_by_different_elements() -> None:
    # frame b: front is 100x50, rear is 640x100: no single source is 640 wide and 50 high
    assert frame_ids("sources.width:640 AND sources.height:50") == ["b"]
    assert ids(q.make_filter(source_query="width:640 AND height:50")) == []
    assert ids(q.make_filter(source_query="sources.width:640 AND sources.height:100")) == ["b"]
    # frame a: r1 has confidence 0.9 (cat), r2 is the dog
    assert frame_ids("rois.confidence:[0.85 TO 1] AND rois.labels:dog") == ["a"]
    assert ids(q.make_filter(roi_query="confidence:[0.85 TO 1] AND label:dog")) == []


@pytest.mark.parametrize(
    ("roi_query", "expected"),
    [
        ("cat", ["a", "b", "d"]),
        ("cat small", ["a"]),  # implicit AND: both labels on one ROI
        (["cat", "small"], ["a"]),  # a list: both labels on the same ROI
        ("label.keyword:cat AND NOT label.keyword:small", ["b", "d"]),  # some ROI is cat and not small
        ("cat OR dog", ["a", "b", "d"]),
        ("confidence:[0.9 TO 1]", ["a", "d"]),
        ("rois.id:r3", ["b"]),
        ("label:cat AND confidence:[0 TO 0.2]", ["d"]),
        ("'cat'", ["a", "b", "d"]),
        ("*", ["a", "b", "c", "d"]),  # no ROI condition
        ("c*", ["a", "b", "d"]),
    ],
)
def test_roi_queries_test_one_roi_at_a_time(roi_query: str | list[str], expected: list[str]) -> None:
    assert ids(q.make_filter(roi_query=roi_query)) == expected


def test_roi_rules_count_confidence_and_must_not() -> None:
    def rule(label: Any, **kw: Any) -> list[str]:
        return ids(q.FrameFilter(label_rules=(q.label_rule(label, **kw),)))

    assert rule("cat", count_range=[2, None]) == ["d"]
    assert rule("cat", count_range=[2, -1]) == ["d"]
    assert rule("cat", count_range=[1, 1]) == ["a", "b"]
    assert rule("cat", count_range=[0, 0]) == ["c"]
    assert rule("cat", conf_range=[0.5, 1]) == ["a", "b", "d"]
    assert rule("cat", conf_range=[0.91, -1]) == ["d"]
    assert rule("cat", conf_range=[0.5, 1], count_range=[2, None]) == []
    assert rule("cat", must_not=True) == ["c"]
    assert rule("dog", must_not=True) == ["b", "c", "d"]
    assert rule("cat", must_not=True, conf_range=[0.9, 1]) == ["b", "c"]
    assert rule("*", count_range=[2, None]) == ["a", "b", "d"]
    assert rule("*") == ["a", "b", "d"]
    assert rule("*", must_not=True) == ["c"]
    # several rules are AND-ed and each may be met by a different ROI
    both = q.FrameFilter(label_rules=(q.label_rule("cat"), q.label_rule("small")))
    assert ids(both) == ["a", "b"]
    not_dog = q.FrameFilter(label_rules=(q.label_rule("cat"), q.label_rule("dog", must_not=True)))
    assert ids(not_dog) == ["b", "d"]


def test_filter_by_roi_modes() -> None:
    assert ids(q.make_filter(filter_by_roi="no_rois")) == ["c"]
    assert ids(q.make_filter(filter_by_roi="disabled")) == ["a", "b", "c", "d"]
    assert ids(q.make_filter(filter_by_roi="disabled", frame_query="meta.n:*")) == ["a", "b", "c"]
    with pytest.raises(ValidationError, match="filter_by_roi"):
        q.make_filter(filter_by_roi="no_rois", roi_query="cat")
    with pytest.raises(ValidationError, match="must be one of"):
        q.make_filter(filter_by_roi="some")


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("meta.city:bremen AND", 20, "syntax error"),
        ("meta.city:bremen OR OR label:cat", 20, "unexpected"),
        ("(meta.city:bremen OR label:cat", 30, "syntax error"),
        ('meta.city:"bremen', 10, "syntax error"),
        ("meta.n:{1 TO 5}", 7, "exclusive ranges"),
        ("meta.n:[1 TO 5}", 7, "exclusive ranges"),
        ("meta.n:>5", 7, "exclusive ranges"),
        ("meta.n:<5", 7, "exclusive ranges"),
        ("meta.city:bremen~2", 10, "fuzzy"),
        ('meta.city:"a b"~2', 10, "proximity"),
        ("meta.city:bremen^2", 10, "boosts"),
        ("meta.city:/bre.*/", 10, "regular expressions"),
        ("label:cat AND bremen", 14, "needs a field"),
        ("label:cat AND town:bremen", 14, "unknown field 'town'"),
        ("timestamp:yesterday", 10, "holds numbers"),
        ("rois.confidence:hi*", 16, "wildcards apply to strings"),
        ("meta.n:[1 TO 2024-01-01]", 7, "different types"),
        ("rois.confidence:[2024-01-01 TO *]", 16, "date bounds"),
        ("meta.x:id:c", 7, "nested"),
    ],
)
def test_bad_queries_raise_a_validation_error_pointing_at_the_token(
    text: str, position: int, words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        q.parse(text, what="frame_query")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert words in message
    assert f"frame_query {text!r}" in message
    assert f"(at position {position})" in message
    lines = message.splitlines()
    assert lines[-2] == "    " + text
    assert lines[-1] == "    " + " " * position + "^"


def test_unsupported_and_empty_input() -> None:
    with pytest.raises(ValidationError, match="empty"):
        q.parse("   ")
    with pytest.raises(ValidationError, match="must be a string"):
        q.parse(5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown field 'width'"):
        q.parse("width:5", "roi")
    assert q.parse("width:640", "source").columns == frozenset({"sources"})
    with pytest.raises(ValidationError, match="a list of labels must hold"):
        q.label_rule([])
    with pytest.raises(ValidationError, match="min is above max"):
        q.label_rule("cat", count_range=[3, 1])
    with pytest.raises(ValidationError, match="whole numbers"):
        q.label_rule("cat", count_range=[1.5, 2])
    with pytest.raises(ValidationError, match="pair"):
        q.label_rule("cat", conf_range=0.5)


def test_queries_name_only_the_columns_they_read() -> None:
    assert q.parse('meta.city:"bremen"').columns == {"meta_str"}
    assert q.parse("meta.n:[1 TO 2]").columns == {"meta_num"}
    assert q.parse("meta.n:5").columns == {"meta_str", "meta_num"}
    assert q.parse("label:cat AND id:x").columns == {"labels", "id"}
    assert q.parse("rois.confidence:1 OR sources.width:3").columns == {"rois", "sources"}
    bench = q.make_filter(roi_query="cat", frame_query='meta.city:"bremen"')
    assert bench.columns == {"labels", "meta_str"}  # a single label test reads the labels column only
    assert q.make_filter(roi_query=["cat", "small"]).columns == {"rois"}
    assert q.make_filter(filter_by_roi="no_rois").columns == {"roi_count"}


def test_roi_and_source_metadata_fields() -> None:
    frames = [
        frame("x", rois=[{"labels": ["cat"], "meta": {"occluded": True, "by": "tree"}}]),
        frame(
            "y",
            rois=[{"labels": ["cat"], "meta": {"occluded": False}}],
            sources=[{"id": "default", "uri": "s3://b/y.jpg", "meta": {"hash": {"source": "h2"}}}],
        ),
    ]
    table = segments.frames_table([segments.frame_row(f) for f in frames])
    assert ids(q.make_filter(roi_query="cat AND meta.occluded:true"), table) == ["x"]
    assert ids(q.make_filter(roi_query="meta.by:tr*"), table) == ["x"]
    assert ids(q.parse("rois.meta.occluded:false"), table) == ["y"]
    assert ids(q.parse('sources.meta.hash.source:("h1" OR "h2")'), table) == ["y"]
    assert ids(q.make_filter(source_query="meta.hash.source:h2"), table) == ["y"]


# ---------------------------------------------------------------------------- through a version


@pytest.fixture
def client() -> hds_s3.Client:
    return hds_s3.connect(f"memory://query-{uuid.uuid4().hex}")


class Spy:
    """A version whose get_frames_table records the columns asked for."""

    def __init__(self, version: DatasetVersion) -> None:
        self.version = version
        self.asked: list[list[str] | None] = []

    def get_frames_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        self.asked.append(None if columns is None else list(columns))
        return self.version.get_frames_table(columns)


def test_match_ids_filters_the_merged_frames_reading_only_the_needed_columns(client: hds_s3.Client) -> None:
    ver = DatasetVersion.create_new_dataset(dataset_name="q", client=client)
    ver.add_frames(FRAMES)
    # a later segment: a stops matching (now hamburg), c starts matching (now a bremen cat), d goes
    ver.add_frames(
        [
            frame("a", meta={"city": "hamburg"}, rois=[{"labels": ["cat"]}]),
            frame("c", meta={"city": "bremen"}, rois=[{"labels": ["cat"]}]),
            frame("e", meta={"city": "bremen"}, rois=[{"labels": ["dog"]}]),
        ]
    )
    ver.delete_frames(["d"])
    assert len(ver._frames.refs(ver._entry)) == 3
    spy = Spy(ver)
    got = q.match_ids(spy, 'meta.city:"bremen"', roi_query="cat")
    assert got.to_pylist() == ["c"]
    assert spy.asked == [["id", "labels", "meta_str"]]
    assert q.match_ids(ver, "label:cat AND meta.city:bremen").to_pylist() == ["c"]
    assert q.match_ids(ver, "meta.city:*").to_pylist() == ["a", "b", "c", "e"]
    assert q.match_ids(ver, source_query="uri:*png").to_pylist() == ["b"]


def test_a_frame_query_cannot_be_given_where_an_element_query_is_expected() -> None:
    with pytest.raises(ValidationError, match="frame query"):
        q.element_mask(q.parse("id:x"), pa.array([], pa.struct([("id", pa.string())])))
    with pytest.raises(ValidationError, match="roi query"):
        q.frame_mask(TABLE, q.parse("cat", "roi"))
    rois = pa.array([{"labels": ["cat"], "confidence": 0.5}, {"labels": ["dog"], "confidence": 0.9}])
    assert q.element_mask(q.parse("cat OR confidence:[0.8 TO 1]", "roi"), rois).tolist() == [True, True]
    assert q.element_mask(q.parse("cat confidence:[0.8 TO 1]", "roi"), rois).tolist() == [False, False]


# ---------------------------------------------------------------------------- agreement with Python

CITIES = ["bremen", "hamburg", "Bremen", "köln", "a b"]
LABELS = ["cat", "dog", "car", "Bus Stop"]


@st.composite
def random_frame(draw: st.DrawFn, index: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["city"] = draw(st.sampled_from(CITIES))
    if draw(st.booleans()):
        meta["n"] = draw(st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)))
    rois = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "labels": st.lists(st.sampled_from(LABELS), min_size=1, max_size=2, unique=True),
                    "confidence": st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                }
            ),
            max_size=3,
        )
    )
    return frame(f"f{index:02d}", ts=draw(st.integers(0, 5)), meta=meta, rois=rois)


Leaf = tuple[str, Callable[[dict[str, Any]], bool]]


def _quoted(value: str) -> str:
    return '"' + value + '"'


@st.composite
def leaf(draw: st.DrawFn) -> Leaf:
    kind = draw(st.sampled_from(["city", "city_wild", "n", "n_range", "label", "conf", "ts", "exists"]))
    if kind == "city":
        city = draw(st.sampled_from(CITIES))
        return f"meta.city:{_quoted(city)}", lambda f: f["meta"].get("city") == city
    if kind == "city_wild":
        pattern = draw(st.sampled_from(["b*", "*men", "?remen", "*", "k*n"]))
        return (
            f"meta.city:{pattern}",
            lambda f: "city" in f["meta"] and fnmatch.fnmatchcase(f["meta"]["city"], pattern),
        )
    if kind == "n":
        value = draw(st.integers(-3, 3))
        return f"meta.n:{value}", lambda f: "n" in f["meta"] and f["meta"]["n"] == value
    if kind == "n_range":
        low, high = sorted(draw(st.lists(st.integers(-3, 3), min_size=2, max_size=2)))
        open_low, open_high = draw(st.booleans()), draw(st.booleans())
        text = f"meta.n:[{'*' if open_low else low} TO {'*' if open_high else high}]"

        def test(f: dict[str, Any]) -> bool:
            n = f["meta"].get("n")
            return n is not None and (open_low or n >= low) and (open_high or n <= high)

        return text, test
    if kind == "label":
        label = draw(st.sampled_from(LABELS))
        return f"label:{_quoted(label)}", lambda f: any(label in r["labels"] for r in f["rois"])
    if kind == "conf":
        low = draw(st.sampled_from([0.0, 0.25, 0.5]))
        return (
            f"rois.confidence:[{low} TO 1]",
            lambda f: any(r["confidence"] is not None and r["confidence"] >= low for r in f["rois"]),
        )
    if kind == "ts":
        value = draw(st.integers(0, 5))
        return f"timestamp:[{value} TO *]", lambda f: f["timestamp"] >= value
    return "meta.n:*", lambda f: "n" in f["meta"]


def expression(depth: int = 2) -> st.SearchStrategy[Leaf]:
    if depth == 0:
        return leaf()

    def combine(parts: tuple[str, Leaf, Leaf]) -> Leaf:
        op, (ta, fa), (tb, fb) = parts
        if op == "AND":
            return f"({ta} AND {tb})", lambda f: fa(f) and fb(f)
        if op == "OR":
            return f"({ta} OR {tb})", lambda f: fa(f) or fb(f)
        return f"({ta} AND NOT {tb})", lambda f: fa(f) and not fb(f)

    sub = expression(depth - 1)
    return st.one_of(leaf(), st.tuples(st.sampled_from(["AND", "OR", "ANDNOT"]), sub, sub).map(combine))


@st.composite
def frames_and_query(draw: st.DrawFn) -> tuple[list[dict[str, Any]], Leaf]:
    count = draw(st.integers(0, 12))
    frames = [draw(random_frame(i)) for i in range(count)]
    return frames, draw(expression())


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames_and_query())
def test_compiled_queries_agree_with_a_python_evaluator(case: tuple[list[dict[str, Any]], Leaf]) -> None:
    frames, (text, python) = case
    table = segments.frames_table([segments.frame_row(f) for f in frames])
    expected = [f["id"] for f in frames if python(f)]
    assert ids(q.parse(text), table) == expected, text
    assert ids(q.parse(f"NOT ({text})"), table) == [f["id"] for f in frames if not python(f)], text
