"""Validation of user-chosen names, tags and metadata (pure, no I/O).

Names are free-form: unicode, spaces, dates, slashes and dots are all allowed, because
:mod:`hds_s3.format.layout` encodes them before they reach a key. What is refused: non-strings, the empty
string, more than 255 bytes of UTF-8, and control characters.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from hds_s3.errors import ValidationError

MAX_NAME_BYTES = 255
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def check_utf8(what: str, text: str) -> str:
    """Return ``text`` if it can be written as UTF-8 (every document and segment is UTF-8).

    A Python ``str`` may hold a lone surrogate (a code point U+D800..U+DFFF on its own, e.g. from
    ``os.fsdecode`` of a file name that is not UTF-8), which no UTF-8 encoder accepts.

    Raises:
        ValidationError: naming ``what`` (the field) and the position of the first lone surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{what} {text[:40]!r} is not valid Unicode: it holds the lone surrogate "
            f"{text[exc.start]!r} at position {exc.start}, which UTF-8 cannot encode; fix the text"
        ) from None
    return text


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a valid name for a ``kind`` ("dataset", "version", "tag").

    Raises:
        ValidationError: not a string, empty, over 255 UTF-8 bytes, or with control characters.
    """
    if not isinstance(name, str):
        raise ValidationError(f"{kind} name must be a string, got {type(name).__name__}: {name!r}")
    if not name.strip():
        raise ValidationError(f"{kind} name is empty; give a non-blank name")
    size = len(check_utf8(f"{kind} name", name).encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValidationError(
            f"{kind} name {name[:40]!r}... is {size} bytes of UTF-8; the limit is {MAX_NAME_BYTES}"
        )
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            raise ValidationError(f"{kind} name {name!r} contains the control character {ch!r}; remove it")
    return name


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it has the shape of an id hds_s3 generates (32 lowercase hex digits).

    Raises:
        ValidationError: anything else (ids are never user-chosen, so this also stops key escapes).
    """
    if not isinstance(value, str) or not _HEX_ID.match(value):
        raise ValidationError(f"{kind} id {value!r} is not an hds_s3 id (32 lowercase hex digits)")
    return value


def check_tags(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    """Return tags as a tuple without duplicates, in the order given.

    ``tags`` is one tag (a string), an iterable of tags, or None (no tags).

    Raises:
        ValidationError: ``tags`` is neither a string nor an iterable (a number, a bool, ...), or a
            tag is not a valid name (see :func:`check_name`).
    """
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    elif not isinstance(tags, Iterable):
        raise ValidationError(
            f"tags must be a string or a list of strings, got {type(tags).__name__}: {tags!r}"
        )
    out: list[str] = []
    for tag in tags:
        check_name("tag", tag)
        if tag not in out:
            out.append(tag)
    return tuple(out)


#: The deepest nesting of dicts and lists accepted in metadata (the top-level dict is depth 1).
#: The same limit holds wherever metadata is written and read, so what is accepted stays readable.
MAX_METADATA_DEPTH = 32
#: Integers in metadata must fit in 64 bits (signed or unsigned), what JSON libraries and Arrow read.
MIN_METADATA_INT = -(2**63)
MAX_METADATA_INT = 2**64 - 1


def copy_json(value: object) -> Any:
    """A deep copy of dicts and lists (any depth, without recursion); other values are shared.

    For metadata as given, before :func:`check_metadata` says what is wrong with it.
    """
    if not isinstance(value, (dict, list)):
        return value
    top: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, top)]
    while stack:
        src, dst = stack.pop()
        for key, item in src.items() if isinstance(src, dict) else enumerate(src):
            copied = ({} if isinstance(item, dict) else []) if isinstance(item, (dict, list)) else item
            if isinstance(dst, dict):
                dst[key] = copied
            else:
                dst.append(copied)
            if copied is not item:
                stack.append((item, copied))
    return top


def check_metadata(where: str, metadata: object) -> dict[str, Any]:
    """Return a deep, JSON-clean copy of ``metadata``.

    Keys must be strings without ``$`` or ``.`` (as in the reference server), at every depth; values
    must be JSON (no NaN or infinity), integers must fit in 64 bits, and dicts and lists may nest at
    most :data:`MAX_METADATA_DEPTH` deep. The walk is iterative: any depth is refused cleanly.

    Raises:
        ValidationError: naming ``where`` and the offending key path or value.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    return _clean(where, metadata)  # type: ignore[no-any-return]


def _clean(where: str, root: object) -> Any:
    """The checked copy of ``root``, built with an explicit stack (no recursion)."""

    def place(path: str) -> str:
        return repr(path.rstrip(".")) if path else "top level"

    def leaf(value: object, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{where}: metadata value at {place(path)} is {value}; JSON has no NaN/inf")
        if isinstance(value, str):
            return check_utf8(f"{where}: metadata value at {place(path)}", value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            if not MIN_METADATA_INT <= value <= MAX_METADATA_INT:
                raise ValidationError(
                    f"{where}: metadata value at {place(path)} is an integer of {value.bit_length()} bits; "
                    "integers must fit in 64 bits (store larger ones as strings)"
                )
            return value
        try:
            json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            raise ValidationError(
                f"{where}: metadata value at {place(path)} is a {type(value).__name__}, not JSON"
            ) from None
        return value

    def container(value: object, path: str, depth: int) -> dict[str, Any] | list[Any] | None:
        if not isinstance(value, (Mapping, list, tuple)):
            return None
        if depth > MAX_METADATA_DEPTH:
            raise ValidationError(
                f"{where}: metadata at {place(path)} nests deeper than {MAX_METADATA_DEPTH} levels of "
                "dicts and lists; flatten it (or store it as a JSON string)"
            )
        return {} if isinstance(value, Mapping) else []

    top = container(root, "", 1)
    assert top is not None
    stack: list[tuple[object, dict[str, Any] | list[Any], str, int]] = [(root, top, "", 1)]
    while stack:
        value, out, path, depth = stack.pop()
        items = value.items() if isinstance(value, Mapping) else enumerate(value)  # type: ignore[arg-type]
        for key, item in items:
            if isinstance(out, dict):
                if not isinstance(key, str):
                    raise ValidationError(f"{where}: metadata key {key!r} at {place(path)} is not a string")
                if "$" in key or "." in key or not key:
                    raise ValidationError(
                        f"{where}: metadata key {path + key!r} is empty or contains '$' or '.'; rename it"
                    )
                check_utf8(f"{where}: metadata key at {place(path)}", key)
                sub = f"{path}{key}."
            else:
                sub = f"{path}[{key}]."
            child = container(item, sub, depth + 1)
            cleaned = leaf(item, sub) if child is None else child
            if isinstance(out, dict):
                out[key] = cleaned
            else:
                out.append(cleaned)
            if child is not None:
                stack.append((item, child, sub, depth + 1))
    return top
    try:
        json.dumps(value)
    except TypeError:
        raise ValidationError(
            f"{where}: metadata value at {path.rstrip('.')!r} is a {type(value).__name__}, not JSON"
        ) from None
    return value
