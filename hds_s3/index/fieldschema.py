"""The field schema of a version or a dataset: the JSON type of every ``meta`` path in use.

The reference keeps a per-dataset type mapping of ``meta`` (its "view frame schema"). hds_s3 keeps
none as a separate document: the schema is a function of the frames each commit made effective, so
it is always up to date with the commits and needs no state that could drift from them. It is
computed from a version's ``meta`` column (read alone), and kept in memory per manifest (manifests
and segments never change), so asking again is free.

Types are JSON's: ``string``, ``integer``, ``number`` (a non-integral one), ``boolean``, ``object``,
``array`` and ``null``. A path is a dotted key path (``weather.wind``); an object's keys are walked,
an array's elements are not (a vector is one ``array``). One path may hold different types in
different frames: that is allowed (JSON metadata is schemaless, and refusing a frame for it would
make the order of writers matter), and the schema shows the union: every type seen, with how many
frames hold each, so a query author sees that ``meta.score`` is ``number`` in 90 frames and ``string``
in 3. :func:`conflicts` lists the paths with more than one type (``null`` aside).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, cast

import orjson
import pyarrow as pa

TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")
"""The types a schema names (JSON's, with integers told from other numbers)."""
#: Schemas kept in memory (one per manifest).
CACHE_ENTRIES = 64
_MAX_DEPTH = 32

_cache: OrderedDict[Hashable, dict[str, Counter[str]]] = OrderedDict()
_lock = threading.Lock()


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def meta_types(texts: pa.Array | pa.ChunkedArray) -> dict[str, Counter[str]]:
    """For a column of ``meta`` JSON texts: each path's types, with the number of frames holding each."""
    out: dict[str, Counter[str]] = {}
    for text in texts.to_pylist():
        if not text:
            continue
        try:
            meta = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue  # stored metadata is JSON; a damaged row is fsck's to report
        if not isinstance(meta, dict):
            continue
        stack: list[tuple[str, dict[str, Any], int]] = [("", meta, 1)]
        seen: set[tuple[str, str]] = set()
        while stack:
            prefix, node, depth = stack.pop()
            for key, value in node.items():
                path = f"{prefix}{key}"
                kind = _kind(value)
                if (path, kind) not in seen:
                    seen.add((path, kind))
                    out.setdefault(path, Counter())[kind] += 1
                if kind == "object" and depth < _MAX_DEPTH:
                    stack.append((path + ".", value, depth + 1))
    return out


def cached(key: Hashable, compute: Any) -> dict[str, Counter[str]]:
    """The schema kept for ``key`` (an immutable manifest), else ``compute()`` kept."""
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    found = cast("dict[str, Counter[str]]", compute())
    with _lock:
        _cache[key] = found
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return found


def union(parts: Iterable[Mapping[str, Counter[str]]]) -> dict[str, Counter[str]]:
    """The schemas of several versions together (counts added)."""
    out: dict[str, Counter[str]] = {}
    for part in parts:
        for path, kinds in part.items():
            out.setdefault(path, Counter()).update(kinds)
    return out


def describe(types: Mapping[str, Counter[str]]) -> dict[str, dict[str, Any]]:
    """The schema as returned: ``{"meta.<path>": {"types": [...], "frames": {type: count}}}``, sorted."""
    return {
        f"meta.{path}": {
            "types": [t for t in TYPES if t in kinds],
            "frames": {t: kinds[t] for t in TYPES if t in kinds},
        }
        for path, kinds in sorted(types.items())
    }


def conflicts(schema: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The paths of a described schema that hold more than one type (``null`` and integer/number aside)."""
    out = []
    for path, info in schema.items():
        kinds = {"number" if t == "integer" else t for t in info["types"] if t != "null"}
        if len(kinds) > 1:
            out.append(path)
    return out


__all__ = ["CACHE_ENTRIES", "TYPES", "cached", "conflicts", "describe", "meta_types", "union"]
