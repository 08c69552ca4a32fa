"""The reference's Lucene subset, parsed with luqum and compiled to vectorised Arrow work.

A query is parsed once (:func:`parse`) into a small tree of boolean nodes over leaf tests; the tree
knows which index columns it reads (:attr:`Query.columns`), so a version is read with exactly those
columns, and it is evaluated over the whole merged table at once with ``pyarrow.compute`` and numpy:
there is no Python loop per frame or per ROI on the filter path.

Three scopes, as in the reference (section 6 of the reference catalogue):

``frame`` (a DataView's ``frame_query``)
    ``id``, ``context_id`` (strings); ``timestamp`` (ms) and ``roi_count`` (numbers);
    ``meta.<path>`` (frame metadata; nested keys as dotted paths, ``meta.csv_data.x``);
    ``label`` / ``label.keyword`` / ``labels`` / ``rois.label[s]`` (true when *some* ROI of the frame
    carries the label; read from the index's ``labels`` column); ``rois.<roi field>`` and
    ``sources.<source field>`` (also ``source.``): true when *some* ROI / source of the frame passes
    that one test. Each leaf is tested on its own, so ``rois.confidence:[0.9 TO 1] AND
    rois.label:cat`` may be satisfied by two different ROIs; a DataView's ROI rules
    (``roi_query``) and ``source_query`` test one ROI / one source at a time.
``roi`` (a ROI rule: ``roi_query``, ``DataView.RoiQuery``)
    evaluated per ROI: ``label`` / ``label.keyword`` / ``labels`` (the default field), ``id``,
    ``type``, ``confidence``, ``sources`` (source ids), ``meta.<path>``; an optional ``rois.``
    prefix is accepted. The implicit operator is AND (the reference's ``FilterLabelRule``), so
    ``'Bus Stop' Blue`` means one ROI labelled both ``Bus Stop`` and ``Blue``.
``source`` (a DataView's ``source_query``)
    evaluated per source: ``id``, ``uri``, ``content_type`` (strings), ``width``, ``height``,
    ``timestamp`` (numbers), ``meta.<path>``; an optional ``sources.`` / ``source.`` prefix is accepted.

Syntax: terms and quoted phrases (``"..."``, and ``'...'`` as the reference's examples write them),
``AND`` / ``OR`` / ``NOT`` / ``+`` / ``-``, parentheses, an OR-list on one field
(``f:("a" OR "b")``), inclusive ranges ``[a TO b]`` and ``f:>=a`` / ``f:<=b`` with ``*`` for an
open end over numbers, ISO dates and datetimes (and strings, compared as text), wildcards ``*`` and
``?`` in unquoted terms on string fields, and ``f:*`` (the field exists). The implicit operator
between terms is OR in frame and source queries (Lucene's default) and AND in ROI queries. Fuzzy
(``~``), boosts (``^``), regular expressions (``/.../``) and exclusive ranges (``{a TO b}``, ``>``,
``<``) are refused with :class:`~hds_s3.errors.ValidationError`, as is any syntax error; the
message shows the query with a caret under the offending token.

Matching rules: string comparisons are exact and case-sensitive (keywords, not analysed text). A
value that is absent never matches, so ``NOT meta.x:1`` matches frames without ``meta.x``. A numeric
term on ``meta.<path>`` matches a number equal to it or the same text; ``true`` / ``false`` also
match booleans (stored as 1 / 0). Dates are compared as ISO text, so store them in one format
(e.g. UTC ``YYYY-MM-DDTHH:MM:SS``); an upper bound that is a date covers that whole day
(``[2024-10-20 TO 2024-10-30]`` includes ``2024-10-30T23:00:00``), and generally every value that
starts with the upper bound. On ``timestamp`` (ms), ISO bounds are converted to epoch milliseconds
(UTC when no offset is given). A trailing ``.keyword`` on any field is ignored (``label.keyword`` is
``label``).
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, Protocol, TypeAlias, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hds_s3.errors import ValidationError
from hds_s3.index import segments
from hds_s3.model.names import check_utf8, preview

Scope = Literal["frame", "roi", "source"]
FilterByRoi = Literal["label_rules", "disabled", "no_rois"]
FILTER_BY_ROI_MODES: tuple[str, ...] = ("label_rules", "disabled", "no_rois")

_PARSE_LOCK = threading.Lock()  # luqum's ply parser keeps state between calls


# ---------------------------------------------------------------------------- the compiled tree


@dataclass(frozen=True)
class Field:
    """Where a leaf reads its values.

    ``level`` is the table the value lives in (frame row, one ROI, one source); ``kind`` is
    ``str`` (one string), ``num`` (one number), ``strlist`` (a list of strings: some element must
    pass) or ``meta`` (a key ``path`` of the typed metadata maps ``meta_str`` / ``meta_num``).
    """

    level: Scope
    kind: Literal["str", "num", "strlist", "meta"]
    name: str
    path: str = ""
    written: str = ""


@dataclass(frozen=True)
class Bound:
    """One end of a range: its text and how it compares (``num``, ``date`` or ``str``)."""

    text: str
    kind: Literal["num", "date", "str"]


@dataclass(frozen=True)
class Equals:
    """The value equals ``text`` (exactly; numerically when the field or value is a number)."""

    text: str


@dataclass(frozen=True)
class Wildcard:
    """The string value matches the anchored RE2 ``regex`` (from ``*`` and ``?``)."""

    regex: str


@dataclass(frozen=True)
class Between:
    """``low <= value <= high``; ``None`` is an open end."""

    low: Bound | None
    high: Bound | None


@dataclass(frozen=True)
class Exists:
    """The field has a value (``field:*``)."""


Test = Equals | Wildcard | Between | Exists


@dataclass(frozen=True)
class Leaf:
    """One test of one field."""

    field: Field
    test: Test


@dataclass(frozen=True)
class MatchAll:
    """Every row (``*``)."""


@dataclass(frozen=True)
class And:
    """All items hold."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one item holds."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The item does not hold."""

    item: Node


Node = Leaf | MatchAll | And | Or | Not


@dataclass(frozen=True)
class Query:
    """A parsed, validated query of one scope; evaluate it with :func:`frame_mask` or a DataView.

    Attributes:
        text: the query as given.
        scope: ``frame``, ``roi`` or ``source``.
        root: the compiled boolean tree.
    """

    text: str
    scope: Scope
    root: Node

    @property
    def columns(self) -> frozenset[str]:
        """The index columns (of :data:`hds_s3.index.segments.FRAME_SCHEMA`) this query reads."""
        return frozenset(_columns(self.root))

    def __str__(self) -> str:
        return self.text


def _columns(node: Node) -> set[str]:
    if isinstance(node, Leaf):
        f = node.field
        if f.level == "roi":
            return {"rois"}
        if f.level == "source":
            return {"sources"}
        if f.kind != "meta":
            return {f.name}
        return set(_meta_maps(node.test))
    if isinstance(node, (And, Or)):
        out: set[str] = set()
        for item in node.items:
            out |= _columns(item)
        return out
    if isinstance(node, Not):
        return _columns(node.item)
    return set()


def _meta_maps(test: Test) -> tuple[str, ...]:
    """Which typed maps a test on a metadata key needs."""
    if isinstance(test, Wildcard):
        return ("meta_str",)
    if isinstance(test, Between):
        kinds = {b.kind for b in (test.low, test.high) if b is not None}
        if not kinds:
            return ("meta_str", "meta_num")
        return ("meta_num",) if kinds == {"num"} else ("meta_str",)
    if isinstance(test, Equals) and _number(test.text) is None and _boolean(test.text) is None:
        return ("meta_str",)
    return ("meta_str", "meta_num")


# ---------------------------------------------------------------------------- parsing


#: Characters of a query shown on either side of the caret.
_CARET_WINDOW = 60
#: Categories of the characters shown as ``?`` under which the caret would not line up (control
#: characters, line breaks) or that no terminal prints (lone surrogates).
_UNSHOWN = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _caret(text: str, pos: int) -> str:
    """The query (around ``pos`` when it is long) on one line and a caret under ``pos``."""
    pos = max(0, min(pos, len(text)))
    start, end = max(0, pos - _CARET_WINDOW), min(len(text), pos + _CARET_WINDOW)
    shown = "".join("?" if unicodedata.category(c) in _UNSHOWN else c for c in text[start:end])
    offset = pos - start
    if start:
        shown, offset = "..." + shown, offset + 3
    if end < len(text):
        shown += "..."
    return f"\n    {shown}\n    {' ' * offset}^"


def _fail(what: str, text: str, pos: int, problem: str) -> ValidationError:
    return ValidationError(f"{what} {preview(text)}: {problem} (at position {pos}){_caret(text, pos)}")


def _single_quotes(text: str) -> str:
    """Turn ``'a b'`` into ``"a b"`` outside double-quoted phrases (same length: positions hold)."""
    out = list(text)
    i, n = 0, len(text)
    in_double = False
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_double = not in_double
        elif ch == "'" and not in_double and (i == 0 or text[i - 1] in " \t\n:(["):
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            if j < n and '"' not in text[i + 1 : j]:
                out[i] = out[j] = '"'
                i = j + 1
                continue
        i += 1
    return "".join(out)


_POSITION = re.compile(r"position (\d+)")


def parse(
    text: str,
    scope: Scope = "frame",
    *,
    what: str | None = None,
    default_operator: Literal["AND", "OR"] | None = None,
) -> Query:
    """Parse and validate a query of ``scope`` (see the module docstring for the language).

    ``what`` names the query in error messages (default: ``"<scope> query"``);
    ``default_operator`` overrides the implicit operator (OR for frame/source, AND for roi).

    Raises:
        ValidationError: a syntax error, an unknown field, an unsupported construct (fuzzy, boost,
            regex, exclusive range) or a value of the wrong type; the message quotes the query and
            puts a caret under the offending token.
    """
    from luqum.exceptions import IllegalCharacterError, ParseError
    from luqum.parser import parser

    what = what or f"{scope} query"
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a string, got {type(text).__name__}: {preview(text)}")
    if not text.strip():
        raise ValidationError(f"{what} is empty; give a query such as meta.city:\"bremen\" or '*'")
    if len(text) > MAX_QUERY_CHARS:
        raise ValidationError(
            f"{what} is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}: split it into "
            "several rules (a DataView ORs its queries) or match on a metadata field instead"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(
            what, text, exc.start, "a lone surrogate, which is no text (UTF-8 cannot encode it)"
        ) from None
    source = _single_quotes(text)
    try:
        with _PARSE_LOCK:
            tree = parser.parse(source)
    except (ParseError, IllegalCharacterError) as exc:
        message = str(exc)
        found = _POSITION.search(message)
        pos = int(found.group(1)) if found else len(text)
        detail = message.replace("Syntax error in input : ", "").rstrip("!")
        raise _fail(what, text, pos, f"syntax error: {detail}") from None
    except Exception as exc:  # luqum raises plain errors for a few malformed inputs
        raise _fail(what, text, len(text), f"syntax error: {exc}") from None
    _check_depth(tree, text, what)
    op = default_operator or ("AND" if scope == "roi" else "OR")
    compiler = _Compiler(text, scope, what, op)
    return Query(text=text, scope=scope, root=compiler.node(tree, None))


#: The longest query text accepted, in characters.
MAX_QUERY_CHARS = 10_000
#: The deepest nesting of a query (groups, NOT, +/- and operators inside one another) accepted; the
#: compiler and the evaluator walk the query recursively, so this bounds their depth too.
MAX_QUERY_DEPTH = 64


def _check_depth(tree: Any, text: str, what: str) -> None:
    """Refuse a parsed query nested deeper than :data:`MAX_QUERY_DEPTH` (walked without recursion).

    Raises:
        ValidationError: quoting the query, the caret under the item that is too deep.
    """
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_QUERY_DEPTH:
            pos = getattr(item, "pos", None)
            raise _fail(
                what,
                text,
                pos if isinstance(pos, int) else 0,
                f"the query nests more than {MAX_QUERY_DEPTH} levels deep (groups, NOT, +/- and "
                "operators inside one another); flatten it",
            )
        stack.extend((child, depth + 1) for child in getattr(item, "children", ()))


_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_WILD_SPECIAL = set("\\.^$|?*+()[]{}")


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.match(text) else None


def _boolean(text: str) -> float | None:
    return {"true": 1.0, "false": 0.0}.get(text)


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        _to_datetime(text)
    except ValueError:
        return False
    return True


def _to_datetime(text: str) -> datetime:
    value = text.replace(" ", "T", 1) if len(text) > 10 else text
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _epoch_ms(text: str, upper: bool) -> int:
    """Epoch ms of an ISO date/datetime; a date-only upper bound means the last ms of that day."""
    moment = _to_datetime(text)
    if upper and len(text) == 10:
        moment = moment + timedelta(days=1) - timedelta(milliseconds=1)
    return int(moment.timestamp() * 1000)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def _wildcard_regex(raw: str) -> str | None:
    """The anchored RE2 pattern of a term with unescaped ``*`` / ``?``; None when it has none."""
    parts: list[str] = []
    wild = False
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            parts.append("\\" + nxt if nxt in _WILD_SPECIAL else nxt)
            i += 2
            continue
        if ch == "*":
            parts.append(".*")
            wild = True
        elif ch == "?":
            parts.append(".")
            wild = True
        else:
            parts.append("\\" + ch if ch in _WILD_SPECIAL else ch)
        i += 1
    return "(?s)^" + "".join(parts) + "$" if wild else None


_FRAME_STR = ("id", "context_id")
_FRAME_NUM = ("timestamp", "roi_count")
_LABEL_NAMES = ("label", "labels")
_ROI_STR = ("id", "type")
_ROI_NUM = ("confidence",)
_SOURCE_STR = ("id", "uri", "content_type")
_SOURCE_NUM = ("width", "height", "timestamp")

_ELEMENT_PREFIXES: tuple[tuple[str, Scope], ...] = (
    ("rois.", "roi"),
    ("sources.", "source"),
    ("source.", "source"),
)
_FIELDS_HELP = {
    "frame": "id, context_id, timestamp, roi_count, label (label.keyword), meta.<key>, "
    "rois.<label|id|type|confidence|sources|meta.key>, "
    "sources.<id|uri|content_type|width|height|timestamp|meta.key>",
    "roi": "label (label.keyword, the default), id, type, confidence, sources, meta.<key>",
    "source": "id, uri, content_type, width, height, timestamp, meta.<key>",
}


def resolve_field(name: str, scope: Scope) -> Field | None:
    """The :class:`Field` a field name denotes in ``scope``; None when it names nothing queryable."""
    written = name
    if name.endswith(".keyword"):
        name = name[: -len(".keyword")]
    if scope == "frame":
        if name in _FRAME_STR:
            return Field("frame", "str", name, written=written)
        if name in _FRAME_NUM:
            return Field("frame", "num", name, written=written)
        if name in _LABEL_NAMES or name in ("rois.label", "rois.labels"):
            return Field("frame", "strlist", "labels", written=written)
        if name.startswith("meta.") and len(name) > 5:
            return Field("frame", "meta", "meta", name[5:], written=written)
        for prefix, level in _ELEMENT_PREFIXES:
            if name.startswith(prefix):
                inner = resolve_field(name[len(prefix) :], level)
                return (
                    None if inner is None else Field(inner.level, inner.kind, inner.name, inner.path, written)
                )
        return None
    if scope == "roi":
        for prefix in ("rois.", "roi."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if name in _LABEL_NAMES:
            return Field("roi", "strlist", "labels", written=written)
        if name == "sources":
            return Field("roi", "strlist", "sources", written=written)
        if name in _ROI_STR:
            return Field("roi", "str", name, written=written)
        if name in _ROI_NUM:
            return Field("roi", "num", name, written=written)
    else:
        for prefix in ("sources.", "source."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if name in _SOURCE_STR:
            return Field("source", "str", name, written=written)
        if name in _SOURCE_NUM:
            return Field("source", "num", name, written=written)
    if name.startswith("meta.") and len(name) > 5:
        return Field(scope, "meta", "meta", name[5:], written=written)
    return None


class _Compiler:
    """Turns a luqum tree into :data:`Node` s, checking fields and values as it goes."""

    def __init__(self, text: str, scope: Scope, what: str, default_operator: str) -> None:
        self.text, self.scope, self.what, self.default_operator = text, scope, what, default_operator

    def error(self, item: Any, problem: str) -> ValidationError:
        return _fail(self.what, self.text, int(getattr(item, "pos", None) or 0), problem)

    def node(self, item: Any, fld: Field | None) -> Node:
        from luqum import tree as t

        if isinstance(item, t.SearchField):
            if fld is not None:
                raise self.error(
                    item, f"field {preview(item.name)} is nested inside field {preview(fld.written)}"
                )
            return self.node(item.expr, self.field(item))
        if isinstance(item, (t.Group, t.FieldGroup)):
            return self.node(item.expr, fld)
        if isinstance(item, t.AndOperation):
            return _and([self.node(c, fld) for c in item.children])
        if isinstance(item, t.OrOperation):
            return _or([self.node(c, fld) for c in item.children])
        if isinstance(item, t.UnknownOperation):
            return self.implicit(item, fld)
        if isinstance(item, t.Prohibit) and fld is not None and isinstance(item.a, t.Word):
            if _NUMBER.match(item.a.value):  # meta.n:-1 is a negative number
                return self.term(item.a, fld, sign="-")
        if isinstance(item, (t.Not, t.Prohibit)):
            return Not(self.node(item.a, fld))
        if isinstance(item, t.Plus):
            return self.node(item.a, fld)
        if isinstance(item, t.Fuzzy):
            raise self.error(item, "fuzzy terms (~) are not supported")
        if isinstance(item, t.Proximity):
            raise self.error(item, "proximity searches (~) are not supported")
        if isinstance(item, t.Boost):
            raise self.error(item, "boosts (^) are not supported")
        if isinstance(item, t.Regex):
            raise self.error(item, "regular expressions (/.../) are not supported; use wildcards * and ?")
        if isinstance(item, t.Range):
            return self.range(item, fld, item.low, item.high, item.include_low, item.include_high)
        if isinstance(item, t.From):
            return self.range(item, fld, item.a, None, item.include, True)
        if isinstance(item, t.To):
            return self.range(item, fld, None, item.a, True, item.include)
        if isinstance(item, (t.Word, t.Phrase)):
            return self.term(item, fld)
        raise self.error(item, f"{type(item).__name__} is not part of the supported query language")

    def implicit(self, item: Any, fld: Field | None) -> Node:
        """Terms without an operator: the scope's default, with Lucene's + / - when present."""
        from luqum import tree as t

        children = list(item.children)
        if self.default_operator == "AND" or not any(isinstance(c, (t.Plus, t.Prohibit)) for c in children):
            nodes = [self.node(c, fld) for c in children]
            return _and(nodes) if self.default_operator == "AND" else _or(nodes)
        must = [self.node(c, fld) for c in children if isinstance(c, (t.Plus, t.Prohibit))]
        should = [self.node(c, fld) for c in children if not isinstance(c, (t.Plus, t.Prohibit))]
        if any(isinstance(c, t.Plus) for c in children) or not should:
            return _and(must)
        return _and([*must, _or(should)])

    def field(self, item: Any) -> Field:
        name = _unescape(str(item.name))
        found = resolve_field(name, self.scope)
        if found is None:
            raise self.error(
                item,
                f"unknown field {preview(name)} in a {self.scope} query; fields: {_FIELDS_HELP[self.scope]}",
            )
        return found

    def default_field(self, item: Any) -> Field:
        if self.scope == "roi":
            return Field("roi", "strlist", "labels", written="label.keyword")
        raise self.error(
            item,
            f'a term needs a field in a {self.scope} query (e.g. meta.city:"bremen"); '
            f"fields: {_FIELDS_HELP[self.scope]}",
        )

    def term(self, item: Any, fld: Field | None, sign: str = "") -> Node:
        from luqum import tree as t

        raw = sign + str(item.value)
        if isinstance(item, t.Phrase):
            fld = fld or self.default_field(item)
            value = _unescape(raw[1:-1])
        else:
            if raw == "*":
                return MatchAll() if fld is None else Leaf(fld, Exists())
            fld = fld or self.default_field(item)
            regex = _wildcard_regex(raw)
            if regex is not None:
                if fld.kind == "num":
                    raise self.error(
                        item, f"field {preview(fld.written)} holds numbers; wildcards apply to strings"
                    )
                return Leaf(fld, Wildcard(regex))
            value = _unescape(raw)
        if fld.kind == "num" and _number(value) is None and not (fld.name == "timestamp" and _is_date(value)):
            raise self.error(
                item, f"field {preview(fld.written)} holds numbers; {preview(value)} is not a number"
            )
        return Leaf(fld, Equals(value))

    def bound(self, item: Any, fld: Field) -> Bound | None:
        from luqum import tree as t

        if item is None:
            return None
        sign = ""
        if isinstance(item, (t.Prohibit, t.Plus)) and isinstance(item.a, t.Word):  # [-5 TO 5]
            sign, item = ("-" if isinstance(item, t.Prohibit) else ""), item.a
        if not isinstance(item, (t.Word, t.Phrase)):
            raise self.error(item, "a range bound must be a value or *")
        raw = sign + str(item.value)
        if raw == "*":
            return None
        text = _unescape(raw[1:-1] if raw.startswith('"') else raw)
        if _number(text) is not None:
            return Bound(text, "num")
        if _is_date(text):
            return Bound(text, "date")
        if fld.kind == "num":
            raise self.error(
                item, f"field {preview(fld.written)} holds numbers; range bound {preview(text)} is not one"
            )
        return Bound(text, "str")

    def range(self, item: Any, fld: Field | None, low: Any, high: Any, inc_low: bool, inc_high: bool) -> Node:
        if not (inc_low and inc_high):
            raise self.error(
                item, "exclusive ranges ({a TO b}, >, <) are not supported; use [a TO b], >=, <="
            )
        if fld is None:
            fld = self.default_field(item)
        lo, hi = self.bound(low, fld), self.bound(high, fld)
        kinds = {b.kind for b in (lo, hi) if b is not None}
        if len(kinds) > 1:
            raise self.error(
                item, f"range bounds {low} and {high} are of different types ({', '.join(kinds)})"
            )
        if fld.kind == "num" and kinds == {"date"} and fld.name != "timestamp":
            raise self.error(
                item, f"field {preview(fld.written)} holds numbers; date bounds apply to timestamp"
            )
        return Leaf(fld, Between(lo, hi))


def _and(nodes: Sequence[Node]) -> Node:
    flat: list[Node] = []
    for n in nodes:
        if isinstance(n, And):
            flat.extend(n.items)
        elif not isinstance(n, MatchAll):
            flat.append(n)
    if not flat:
        return MatchAll()
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(nodes: Sequence[Node]) -> Node:
    flat: list[Node] = []
    for n in nodes:
        if isinstance(n, MatchAll):
            return MatchAll()
        flat.extend(n.items if isinstance(n, Or) else (n,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


# ---------------------------------------------------------------------------- evaluation

ArrowValues: TypeAlias = "pa.Array | pa.ChunkedArray"
_MAX_CHAR = "\U0010ffff"


def _bools(values: ArrowValues) -> np.ndarray:
    """A writable numpy bool array from an Arrow boolean array (null counts as false)."""
    out: np.ndarray = np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
    return out if out.flags.writeable else out.copy()


def _any_per_parent(mask: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[parents[mask]] = True
    return out


class _Rows:
    """The rows one level of a query is evaluated over: frames, or the flattened ROIs / sources."""

    def __init__(self, n: int, get: Callable[[str], ArrowValues], owner: str) -> None:
        self.n = n
        self._get = get
        self._cache: dict[str, Any] = {}
        self.owner = owner

    def values(self, name: str) -> ArrowValues:
        if name not in self._cache:
            self._cache[name] = self._get(name)
        found: ArrowValues = self._cache[name]
        return found

    def flat(self, name: str) -> tuple[ArrowValues, np.ndarray]:
        """The elements of a list column and, for each, the row it belongs to."""
        key = "flat:" + name
        if key not in self._cache:
            lists = self.values(name)
            parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            self._cache[key] = (pc.list_flatten(lists), np.asarray(parents, dtype=np.int64))
        found: tuple[ArrowValues, np.ndarray] = self._cache[key]
        return found

    def lookup(self, map_name: str, path: str) -> tuple[np.ndarray, ArrowValues]:
        """The rows whose map ``map_name`` holds key ``path``, and the value of each (first occurrence).

        Sparse on purpose: comparing the flattened keys once and taking the few hits is several
        times faster than ``map_lookup``, and a test then only looks at rows that have the key.
        Frames have the typed maps in the index; ROIs and sources keep their metadata as JSON
        only, which is parsed (once, vectorised) into typed columns the first time it is asked.
        """
        key = f"map:{map_name}:{path}"
        if key not in self._cache:
            if self.owner in ("rois", "sources", "roi", "source"):
                self._cache[key] = _parsed_entries(self._parsed_meta(), map_name, path)
            else:
                self._cache[key] = _map_entries(self.values(map_name), path)
        found: tuple[np.ndarray, ArrowValues] = self._cache[key]
        return found

    def _parsed_meta(self) -> pa.Table:
        if "parsed:meta" not in self._cache:
            self._cache["parsed:meta"] = segments.parse_meta(self.values("meta"))
        found: pa.Table = self._cache["parsed:meta"]
        return found


def _parsed_entries(parsed: pa.Table, map_name: str, path: str) -> tuple[np.ndarray, ArrowValues]:
    """Like :func:`_map_entries`, over metadata parsed into one typed column per key path."""
    wanted = pa.string() if map_name == "meta_str" else pa.float64()
    if path not in parsed.column_names:
        return np.zeros(0, dtype=np.int64), pa.array([], wanted)
    column = parsed.column(path)
    kind = column.type
    if map_name == "meta_str":
        usable = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    else:
        usable = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    if not usable:
        return np.zeros(0, dtype=np.int64), pa.array([], wanted)
    valid = pc.is_valid(column)
    where = np.flatnonzero(_bools(valid)).astype(np.int64)
    return where, pc.cast(column.filter(valid), wanted)


def _map_entries(maps: ArrowValues, path: str) -> tuple[np.ndarray, ArrowValues]:
    chunks = maps.chunks if isinstance(maps, pa.ChunkedArray) else [maps]
    rows: list[np.ndarray] = []
    values: list[pa.Array] = []
    base = 0
    for chunk in chunks:
        # A map is a list of (key, value) structs; offsets are absolute into ``values`` (slices work).
        entries_list = pa.ListArray.from_arrays(chunk.offsets, chunk.values)
        entries = pc.list_flatten(entries_list)
        hits = np.flatnonzero(_bools(pc.equal(pc.struct_field(entries, "key"), pa.scalar(path, pa.string()))))
        if len(hits):
            parents = np.asarray(pc.list_parent_indices(entries_list).to_numpy(zero_copy_only=False))[hits]
            first = np.ones(len(hits), dtype=bool)
            first[1:] = parents[1:] != parents[:-1]
            rows.append(parents[first].astype(np.int64) + base)
            values.append(pc.struct_field(entries, "value").take(pa.array(hits[first])))
        base += len(chunk)
    if not rows:
        return np.zeros(0, dtype=np.int64), pa.array([], maps.type.item_type)
    return np.concatenate(rows), pa.chunked_array(values, maps.type.item_type)


def _table_column(table: pa.Table, name: str) -> ArrowValues:
    """A column of a frame table.

    Raises:
        ValidationError: the table has no such column.
    """
    if name not in table.column_names:
        raise ValidationError(
            f"the frame table has no column {preview(name)}; read it with the query's columns "
            f"(Query.columns), got {table.column_names}"
        )
    column: ArrowValues = table.column(name)
    return column


class Frames:
    """A frame table prepared for evaluation: its columns, and its ROIs and sources flattened lazily.

    Build it once per table and evaluate several queries over it (flattening is shared).
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        # a function of the table, not a method: no reference cycle, so the table goes with the
        # last reference to this object (not at the next garbage collection)
        self.rows = _Rows(table.num_rows, functools.partial(_table_column, table), "frames")
        self._elements: dict[str, tuple[_Rows, np.ndarray]] = {}

    def elements(self, level: Literal["roi", "source"]) -> tuple[_Rows, np.ndarray]:
        """The ROIs (or sources) of every frame as rows, and the frame index of each."""
        if level not in self._elements:
            column = "rois" if level == "roi" else "sources"
            flat, parents = self.rows.flat(column)
            struct_type = flat.type
            names = {struct_type.field(i).name for i in range(struct_type.num_fields)}

            def get(name: str, flat: ArrowValues = flat, names: set[str] = names) -> ArrowValues:
                if name not in names:
                    raise ValidationError(
                        f"the {column} of this version have no field {preview(name)} (written by an older "
                        f"hds_s3?); {level} metadata cannot be searched in it"
                    )
                return pc.struct_field(flat, name)

            self._elements[level] = (_Rows(len(flat), get, column), parents)
        return self._elements[level]


def evaluate(node: Node, rows: _Rows, frames: Frames | None = None) -> np.ndarray:
    """Evaluate a compiled tree over ``rows`` (frames, or ROIs/sources of a roi/source query).

    ``frames`` is given when ``rows`` are frames, so that ROI/source leaves can be lifted (some
    element of the frame passes).
    """
    if isinstance(node, MatchAll):
        return np.ones(rows.n, dtype=bool)
    if isinstance(node, And):
        out = evaluate(node.items[0], rows, frames)
        for item in node.items[1:]:
            if not out.any():
                break
            out &= evaluate(item, rows, frames)
        return out
    if isinstance(node, Or):
        out = evaluate(node.items[0], rows, frames)
        for item in node.items[1:]:
            if out.all():
                break
            out |= evaluate(item, rows, frames)
        return out
    if isinstance(node, Not):
        return ~evaluate(node.item, rows, frames)
    lvl = node.field.level
    if frames is not None and lvl != "frame":
        elements, parents = frames.elements(lvl)
        return _any_per_parent(_leaf(node, elements), parents, rows.n)
    return _leaf(node, rows)


def _leaf(leaf: Leaf, rows: _Rows) -> np.ndarray:
    fld, test = leaf.field, leaf.test
    if fld.kind == "strlist":
        flat, parents = rows.flat(fld.name)
        if isinstance(test, Exists):
            return _any_per_parent(np.ones(len(parents), dtype=bool), parents, rows.n)
        return _any_per_parent(_string_test(flat, test), parents, rows.n)
    if fld.kind == "str":
        values = rows.values(fld.name)
        return _bools(pc.is_valid(values)) if isinstance(test, Exists) else _string_test(values, test)
    if fld.kind == "num":
        values = rows.values(fld.name)
        return _bools(pc.is_valid(values)) if isinstance(test, Exists) else _number_test(values, test, fld)
    out = np.zeros(rows.n, dtype=bool)
    for map_name in _meta_maps(test):
        where, values = rows.lookup(map_name, fld.path)
        if isinstance(test, Exists):
            passed = _bools(pc.is_valid(values))
        elif map_name == "meta_str":
            passed = _string_test(values, test)
        else:
            passed = _number_test(values, test, fld)
        out[where[passed]] = True
    return out


def _string_test(values: ArrowValues, test: Test) -> np.ndarray:
    if isinstance(test, Exists):
        return _bools(pc.is_valid(values))
    if isinstance(test, Equals):
        return _bools(pc.equal(values, pa.scalar(test.text, pa.string())))
    if isinstance(test, Wildcard):
        return _bools(pc.match_substring_regex(values, test.regex))
    out: ArrowValues = pc.is_valid(values)
    if test.low is not None:
        out = pc.and_(out, pc.greater_equal(values, pa.scalar(test.low.text, pa.string())))
    if test.high is not None:
        high = test.high.text + (_MAX_CHAR if test.high.kind == "date" else "")
        out = pc.and_(out, pc.less_equal(values, pa.scalar(high, pa.string())))
    return _bools(out)


def _number_test(values: ArrowValues, test: Test, fld: Field) -> np.ndarray:
    is_int = pa.types.is_integer(values.type)

    def scalar(text: str, upper: bool) -> pa.Scalar:
        if _is_date(text) and not _NUMBER.match(text):
            return pa.scalar(_epoch_ms(text, upper), pa.int64())
        number = _number(text)
        if number is None:
            number = _boolean(text)
        assert number is not None
        if is_int and float(number).is_integer():
            return pa.scalar(int(number), pa.int64())
        return pa.scalar(float(number), pa.float64())

    if isinstance(test, Equals):
        text = test.text
        if (
            _number(text) is None
            and _boolean(text) is None
            and not (fld.name == "timestamp" and _is_date(text))
        ):
            return np.zeros(len(values), dtype=bool)
        return _bools(pc.equal(values, scalar(text, False)))
    if isinstance(test, Between):
        out: ArrowValues = pc.is_valid(values)
        for bound, upper in ((test.low, False), (test.high, True)):
            if bound is None:
                continue
            if bound.kind == "str" or (bound.kind == "date" and fld.name != "timestamp"):
                return np.zeros(len(values), dtype=bool)
            cmp = pc.less_equal if upper else pc.greater_equal
            out = pc.and_(out, cmp(values, scalar(bound.text, upper)))
        return _bools(out)
    return np.zeros(len(values), dtype=bool)


# ---------------------------------------------------------------------------- ROI rules and frame filters

Span = tuple[float | None, float | None]


def _check_range(what: str, value: object, integer: bool) -> Span | None:
    """Normalise a ``[min, max]`` range; ``None`` or -1 is an open end (the reference's convention)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValidationError(
            f"{what} must be a pair [min, max] (None or -1 = unbounded), got {preview(value)}"
        )
    out: list[float | None] = []
    for end in value:
        if end is None or (not isinstance(end, bool) and isinstance(end, (int, float)) and end == -1):
            out.append(None)
            continue
        if isinstance(end, bool) or not isinstance(end, (int, float)) or end != end:
            raise ValidationError(f"{what} must hold numbers (None or -1 = unbounded), got {preview(value)}")
        if integer and not float(end).is_integer():
            raise ValidationError(f"{what} counts ROIs: whole numbers only, got {preview(value)}")
        if end < 0:
            raise ValidationError(f"{what} cannot be negative (only -1 = unbounded), got {preview(value)}")
        out.append(float(end))
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise ValidationError(f"{what} {preview(value)}: min is above max")
    return out[0], out[1]


@dataclass(frozen=True)
class LabelRule:
    """One ROI rule of a filter (the reference's ``FilterLabelRule``).

    A frame passes when the number of its ROIs that match ``query`` (all ROIs when None) and whose
    confidence is within ``conf_range`` lies within ``count_range`` (default: at least one); with
    ``must_not``, when it has no such ROI.
    """

    query: Query | None
    count_range: Span | None = None
    conf_range: Span | None = None
    must_not: bool = False

    @property
    def columns(self) -> frozenset[str]:
        """The index columns the rule reads."""
        if self._labels_only() is not None:
            return frozenset({"labels"})
        if self.query is None and self.conf_range is None:
            return frozenset({"roi_count"})
        return frozenset({"rois"})

    def _labels_only(self) -> Node | None:
        """The tree, when the rule is "some ROI carries a label passing a test" (frame labels answer it)."""
        if self.query is None or self.conf_range is not None:
            return None
        if not self.must_not and self.count_range not in (None, (1.0, None)):
            return None
        items = self.query.root.items if isinstance(self.query.root, Or) else (self.query.root,)
        if all(isinstance(i, Leaf) and i.field.kind == "strlist" and i.field.name == "labels" for i in items):
            return self.query.root
        return None

    def mask(self, frames: Frames) -> np.ndarray:
        """The frames that pass the rule.

        Raises:
            ValidationError: the table lacks a column the rule needs.
        """
        n = frames.rows.n
        fast = self._labels_only()
        if fast is not None:
            lifted = _relevel(fast)
            found = evaluate(lifted, frames.rows, frames)
            return ~found if self.must_not else found
        if self.query is None and self.conf_range is None:
            counts = np.asarray(
                pc.fill_null(frames.rows.values("roi_count"), 0).to_numpy(zero_copy_only=False)
            )
        else:
            rois, parents = frames.elements("roi")
            hits = evaluate(self.query.root, rois) if self.query is not None else np.ones(rois.n, dtype=bool)
            if self.conf_range is not None:
                conf = rois.values("confidence")
                within = pc.is_valid(conf)
                if self.conf_range[0] is not None:
                    within = pc.and_(within, pc.greater_equal(conf, self.conf_range[0]))
                if self.conf_range[1] is not None:
                    within = pc.and_(within, pc.less_equal(conf, self.conf_range[1]))
                hits &= _bools(within)
            counts = np.bincount(parents[hits], minlength=n)
        if self.must_not:
            return np.asarray(counts == 0)
        low, high = self.count_range if self.count_range is not None else (1.0, None)
        out = counts >= (low if low is not None else 0)
        if high is not None:
            out &= counts <= high
        return np.asarray(out)


def _relevel(node: Node) -> Node:
    """Move ROI-label leaves to the frame's ``labels`` column (same test, frame level)."""
    if isinstance(node, Leaf):
        return Leaf(Field("frame", "strlist", "labels", written=node.field.written), node.test)
    if isinstance(node, Or):
        return Or(tuple(_relevel(i) for i in node.items))
    return node


def label_rule(
    label: str | Sequence[str] | None,
    *,
    must_not: bool = False,
    count_range: object = None,
    conf_range: object = None,
    what: str = "roi_query",
) -> LabelRule:
    """Build a ROI rule from a label, a list of labels (all on the same ROI) or a ROI Lucene query.

    A string is a ROI query (default field ``label.keyword``, implicit AND; quote labels with
    spaces or special characters); a list or tuple holds literal labels, never parsed. ``'*'``
    or None matches any ROI.

    Raises:
        ValidationError: a bad query, an empty list, a non-string label or a malformed range.
    """
    query: Query | None
    if label is None or (isinstance(label, str) and label.strip() == "*"):
        query = None
    elif isinstance(label, str):
        query = parse(label, "roi", what=what)
    elif isinstance(label, Sequence) and not isinstance(label, bytes):
        labels = list(label)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise ValidationError(
                f"{what}: a list of labels must hold non-empty strings, got {preview(label)}"
            )
        for x in labels:
            check_utf8(f"{what}: label", x)
        fld = Field("roi", "strlist", "labels", written="label")
        query = Query(text=repr(labels), scope="roi", root=_and([Leaf(fld, Equals(x)) for x in labels]))
    else:
        raise ValidationError(f"{what}: give a label, a list of labels or a query, got {preview(label)}")
    if not isinstance(must_not, bool):
        raise ValidationError(f"{what}: must_not must be True or False, got {preview(must_not)}")
    return LabelRule(
        query=query,
        count_range=_check_range(f"{what} count_range", count_range, integer=True),
        conf_range=_check_range(f"{what} conf_range", conf_range, integer=False),
        must_not=must_not,
    )


@dataclass(frozen=True)
class FrameFilter:
    """Everything one filter rule asks of a frame, AND-ed.

    A frame query, a source query (some source of the frame passes it), ROI rules, and the
    ``filter_by_roi`` mode: ``label_rules`` applies the ROI rules, ``disabled`` ignores ROIs,
    ``no_rois`` keeps only frames without ROIs.
    """

    frame_query: Query | None = None
    source_query: Query | None = None
    label_rules: tuple[LabelRule, ...] = ()
    filter_by_roi: FilterByRoi = "label_rules"

    @property
    def columns(self) -> frozenset[str]:
        """The index columns evaluating the filter reads."""
        out: set[str] = set()
        if self.frame_query is not None:
            out |= self.frame_query.columns
        if self.source_query is not None:
            out.add("sources")
        if self.filter_by_roi == "label_rules":
            for rule in self.label_rules:
                out |= rule.columns
        elif self.filter_by_roi == "no_rois":
            out.add("roi_count")
        return frozenset(out)

    def mask(self, frames: Frames) -> np.ndarray:
        """The frames (rows of ``frames``) that pass.

        Raises:
            ValidationError: the table lacks a column the filter needs.
        """
        out = np.ones(frames.rows.n, dtype=bool)
        if self.filter_by_roi == "no_rois":
            counts = frames.rows.values("roi_count")
            out &= _bools(pc.equal(pc.fill_null(counts, 0), 0))
        elif self.filter_by_roi == "label_rules":
            for rule in self.label_rules:
                if not out.any():
                    return out
                out &= rule.mask(frames)
        if self.frame_query is not None and out.any():
            out &= evaluate(self.frame_query.root, frames.rows, frames)
        if self.source_query is not None and out.any():
            sources, parents = frames.elements("source")
            out &= _any_per_parent(evaluate(self.source_query.root, sources), parents, frames.rows.n)
        return out


def make_filter(
    *,
    frame_query: str | Query | None = None,
    roi_query: str | Sequence[str] | None = None,
    source_query: str | Query | None = None,
    label_rules: Iterable[LabelRule] = (),
    filter_by_roi: str | None = None,
) -> FrameFilter:
    """Build a :class:`FrameFilter` from query strings (``roi_query`` as in :func:`label_rule`).

    Raises:
        ValidationError: a bad query, or ROI rules combined with ``filter_by_roi`` ``disabled`` /
            ``no_rois``, or an unknown mode.
    """
    if filter_by_roi is not None and not isinstance(filter_by_roi, str):
        raise ValidationError(
            f"filter_by_roi must be one of {', '.join(FILTER_BY_ROI_MODES)}, got {preview(filter_by_roi)}"
        )
    for what, given in (("frame_query", frame_query), ("source_query", source_query)):
        if given is not None and not isinstance(given, (str, Query)):
            raise ValidationError(
                f"{what} must be a query string, got {type(given).__name__}: {preview(given)}"
            )
    mode = filter_by_roi or "label_rules"
    if mode not in FILTER_BY_ROI_MODES:
        raise ValidationError(
            f"filter_by_roi must be one of {', '.join(FILTER_BY_ROI_MODES)}, got {preview(mode)}"
        )
    rules = list(label_rules)
    if roi_query is not None:
        rule = label_rule(roi_query)
        if rule.query is not None:
            rules.append(rule)
    if rules and mode != "label_rules":
        raise ValidationError(
            f"ROI rules are only applied with filter_by_roi='label_rules'; got filter_by_roi={preview(mode)} "
            "and ROI rules: drop one of them"
        )
    fq = parse(frame_query, "frame", what="frame_query") if isinstance(frame_query, str) else frame_query
    sq = parse(source_query, "source", what="source_query") if isinstance(source_query, str) else source_query
    return FrameFilter(
        frame_query=fq, source_query=sq, label_rules=tuple(rules), filter_by_roi=cast(FilterByRoi, mode)
    )


class _HasFramesTable(Protocol):
    def get_frames_table(self, columns: Sequence[str] | None = None) -> pa.Table: ...


def frame_mask(table: pa.Table, flt: FrameFilter | Query) -> np.ndarray:
    """Evaluate a filter (or a frame query) over a frame table holding at least its columns.

    Raises:
        ValidationError: the table lacks a column the filter needs.
    """
    frames = Frames(table)
    if isinstance(flt, Query):
        if flt.scope != "frame":
            raise ValidationError(
                f"{preview(flt.text)} is a {flt.scope} query; give a frame query or a FrameFilter"
            )
        return evaluate(flt.root, frames.rows, frames)
    return flt.mask(frames)


def match_ids(
    version: _HasFramesTable,
    frame_query: str | Query | None = None,
    *,
    roi_query: str | Sequence[str] | None = None,
    source_query: str | Query | None = None,
    filter_by_roi: str | None = None,
) -> pa.Array:
    """Return the ids of a version's frames that pass the queries (AND-ed), in id order.

    Reads only the columns the queries need (plus ``id``) from the version's merged frame index,
    then filters the merged table, so a frame updated by a later segment is judged by its latest row.
    ``version`` is a :class:`~hds_s3.api.DatasetVersion` (anything with ``get_frames_table``).

    Raises:
        ValidationError: a bad query.
        CorruptObjectError: a segment is missing or damaged.
    """
    flt = make_filter(
        frame_query=frame_query, roi_query=roi_query, source_query=source_query, filter_by_roi=filter_by_roi
    )
    table = version.get_frames_table(columns=sorted(flt.columns | {"id"}))
    mask = frame_mask(table, flt)
    ids = table.column("id").filter(pa.array(mask, pa.bool_()))
    out = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return out.take(pc.sort_indices(out))


def element_mask(query: Query, elements: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Evaluate a roi or source query over ROI (or source) structs, one result per element.

    Raises:
        ValidationError: a frame query, or an element struct without a field the query reads.
    """
    if query.scope == "frame":
        raise ValidationError(
            f"{preview(query.text)} is a frame query; element_mask takes roi or source queries"
        )
    names = {elements.type.field(i).name for i in range(elements.type.num_fields)}

    def get(name: str) -> ArrowValues:
        if name not in names:
            raise ValidationError(
                f"the elements have no field {preview(name)} that {preview(query.text)} reads"
            )
        return pc.struct_field(elements, name)

    return evaluate(query.root, _Rows(len(elements), get, query.scope))


__all__ = [
    "FILTER_BY_ROI_MODES",
    "And",
    "Between",
    "Bound",
    "Equals",
    "Exists",
    "Field",
    "FrameFilter",
    "Frames",
    "LabelRule",
    "Leaf",
    "MatchAll",
    "Not",
    "Or",
    "Query",
    "Wildcard",
    "element_mask",
    "evaluate",
    "frame_mask",
    "label_rule",
    "make_filter",
    "match_ids",
    "parse",
    "resolve_field",
]
