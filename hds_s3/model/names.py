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


def check_metadata(where: str, metadata: object) -> dict[str, Any]:
    """Return a deep, JSON-clean copy of ``metadata``.

    Keys must be strings without ``$`` or ``.`` (as in the reference server), at every depth; values
    must be JSON (no NaN or infinity).

    Raises:
        ValidationError: naming ``where`` and the offending key path or value.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    return _clean(where, metadata, "")  # type: ignore[no-any-return]


def _clean(where: str, value: object, path: str) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"{where}: metadata key {key!r} at {path or 'top level'} is not a string"
                )
            if "$" in key or "." in key or not key:
                raise ValidationError(
                    f"{where}: metadata key {path + key!r} is empty or contains '$' or '.'; rename it"
                )
            check_utf8(f"{where}: metadata key at {path or 'top level'}", key)
            out[key] = _clean(where, item, f"{path}{key}.")
        return out
    if isinstance(value, (list, tuple)):
        return [_clean(where, item, f"{path}[{i}].") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(
            f"{where}: metadata value at {path.rstrip('.')!r} is {value}; JSON has no NaN/inf"
        )
    if isinstance(value, str):
        return check_utf8(f"{where}: metadata value at {path.rstrip('.') or 'top level'!r}", value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    try:
        json.dumps(value)
    except TypeError:
        raise ValidationError(
            f"{where}: metadata value at {path.rstrip('.')!r} is a {type(value).__name__}, not JSON"
        ) from None
    return value
