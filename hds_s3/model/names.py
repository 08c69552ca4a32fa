"""Validation of user-chosen names, tags and metadata (pure, no I/O).

Names are free-form: unicode, spaces, dates, slashes and dots are all allowed, because
:mod:`hds_s3.format.layout` encodes them before they reach a key. What is refused: non-strings, the empty
string, more than 255 bytes of UTF-8, and control characters.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sized
from typing import Any

from hds_s3.errors import ValidationError

MAX_NAME_BYTES = 255
#: The longest string a frame or a metadata value may hold (URIs, context ids, content types,
#: metadata keys and texts), in bytes of UTF-8: 1 MiB. Names (ids, labels) are shorter still.
MAX_STRING_BYTES = 1 << 20
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def preview(value: object, limit: int = 100) -> str:
    """A short ``repr`` of any value, for error messages: bounded in length, never recursive, never raising.

    Text is cut after ``limit`` characters, containers show their first items one level deep, an
    integer of more than 64 digits is described by its size (Python refuses to print one of 4,300
    digits), and an object whose ``repr`` fails is shown by its type.
    """
    if isinstance(value, str):
        shown = repr(value[:limit])
        return shown if len(value) <= limit else f"{shown[:-1]}...{shown[-1]} ({len(value):,} characters)"
    if type(value) is int:
        if value.bit_length() > 212:  # more than 64 digits
            return f"<an integer of about {int(value.bit_length() * 0.30103):,} digits>"
        return repr(value)
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value[:limit])) + ("..." if len(value) > limit else "")
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return _preview_container(value, limit)
    try:
        shown = repr(value)
    except Exception:  # a broken or recursive __repr__: RecursionError is an Exception too
        return f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _preview_container(value: Mapping[Any, Any] | Iterable[Any], limit: int) -> str:
    """``[1, 'a', [...], ...] (12 items)``: the first items, inner containers elided."""

    def item(x: object) -> str:
        if isinstance(x, Mapping):
            return "{...}" if x else "{}"
        if isinstance(x, (list, tuple, set, frozenset)):
            return "[...]" if x else "[]"
        return preview(x, 20)

    if isinstance(value, Mapping):
        parts = [f"{item(k)}: {item(v)}" for k, v in _first(value.items(), 4)]
        opening, closing = "{", "}"
    else:
        parts = [item(x) for x in _first(value, 6)]
        opening, closing = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        if isinstance(value, (set, frozenset)):
            opening, closing = "{", "}"
    size = len(value) if isinstance(value, Sized) else len(parts)
    shown = len(parts)
    if size > shown:
        parts.append("...")
    text = opening + ", ".join(parts) + closing
    if len(text) > 3 * limit:
        text = text[: 3 * limit] + "..."
    return text if size <= shown else f"{text} ({size:,} items)"


def _first(items: Iterable[Any], count: int) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if len(out) == count:
            break
        out.append(x)
    return out


def check_text(what: str, text: str) -> str:
    """Return ``text`` if it is valid UTF-8 text of at most :data:`MAX_STRING_BYTES` bytes.

    The size is checked before the text is encoded, so a huge text costs no copy.

    Raises:
        ValidationError: naming ``what``: a lone surrogate, or more than :data:`MAX_STRING_BYTES`
            bytes of UTF-8.
    """
    if len(text) > MAX_STRING_BYTES:  # every character is at least one byte
        size = len(text)
    elif text.isascii():
        return text
    else:
        size = len(check_utf8(what, text).encode("utf-8"))
        if size <= MAX_STRING_BYTES:
            return text
    raise ValidationError(
        f"{what} is a text of {size:,}{'+' if len(text) > MAX_STRING_BYTES else ''} bytes; "
        f"a string holds at most {MAX_STRING_BYTES:,} bytes (1 MiB) of UTF-8"
    )


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
        raise ValidationError(f"{kind} name must be a string, got {type(name).__name__}: {preview(name)}")
    if len(name) > MAX_NAME_BYTES:  # at least a byte a character: too long, whatever it holds
        raise ValidationError(
            f"{kind} name {name[:40]!r}... is {len(name):,} characters long; the limit is "
            f"{MAX_NAME_BYTES} bytes of UTF-8"
        )
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
        raise ValidationError(f"{kind} id {preview(value)} is not an hds_s3 id (32 lowercase hex digits)")
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
            f"tags must be a string or a list of strings, got {type(tags).__name__}: {preview(tags)}"
        )
    out: list[str] = []
    for tag in tags:
        check_name("tag", tag)
        if tag not in out:
            out.append(tag)
    return tuple(out)


def check_pattern(name_pattern: object) -> re.Pattern[str] | None:
    """The compiled name filter of a listing (``None`` or ``""``: no filter).

    Raises:
        ValidationError: not a string, or not a regular expression Python compiles (a syntax
            error, or one nested too deep or too large for its compiler).
    """
    if name_pattern is None or (isinstance(name_pattern, str) and not name_pattern):
        return None
    if not isinstance(name_pattern, str):
        raise ValidationError(
            f"a name pattern is a regular expression (a string), got {type(name_pattern).__name__}: "
            f"{preview(name_pattern)}"
        )
    try:
        return re.compile(name_pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        problem = str(exc) if isinstance(exc, re.error) else "it nests too deep or is too large to compile"
        raise ValidationError(
            f"name pattern {preview(name_pattern)} is not a valid regex: {problem}"
        ) from None


def check_tag_filter(tags: object) -> list[str]:
    """The tags a listing filters on, as a list (``None``: none; one string: that tag).

    Raises:
        ValidationError: neither a string nor an iterable of strings.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, Iterable) and not isinstance(tags, (bytes, Mapping)):
        items = list(tags)
        if all(isinstance(t, str) for t in items):
            return items
    raise ValidationError(f"tags to filter on are a tag or a list of tags, got {preview(tags)}")


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


class SizeBudget:
    """The bytes of JSON a value under check may still take (for a frame: what is left of its 4 MiB).

    A check charges a lower bound of the JSON size of each part it has copied, so a value far over
    the budget is refused after a walk of about the budget's size, never of the value's: memory stays
    bounded whatever the input.
    """

    def __init__(self, limit: int, problem: str) -> None:
        """``problem`` says what passing ``limit`` means, e.g. "the frame is larger than 4 MiB"."""
        self.limit = limit
        self.used = 0
        self.problem = problem

    def charge(self, where: str, size: int) -> None:
        """Spend ``size`` bytes.

        Raises:
            ValidationError: ``where``: the budget's problem, once more than its limit is spent.
        """
        self.used += size
        if self.used > self.limit:
            raise ValidationError(f"{where}: {self.problem}")


def check_metadata(where: str, metadata: object, *, budget: SizeBudget | None = None) -> dict[str, Any]:
    """Return a deep, JSON-clean copy of ``metadata``.

    Keys must be strings without ``$`` or ``.`` (as in the reference server), at every depth; values
    must be JSON (no NaN or infinity), integers must fit in 64 bits, texts (keys and values) hold at
    most :data:`MAX_STRING_BYTES` bytes of UTF-8, and dicts and lists may nest at most
    :data:`MAX_METADATA_DEPTH` deep. The walk is iterative: any depth is refused cleanly. With a
    ``budget``, the metadata's JSON size is charged to it as the walk goes, so metadata far larger
    than the budget is refused after copying about as much as the budget allows.

    Raises:
        ValidationError: naming ``where`` and the offending key path or value, or (over the budget)
            where the walk was.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    return _clean(where, metadata, budget)  # type: ignore[no-any-return]


def _clean(where: str, root: object, budget: SizeBudget | None) -> Any:
    """The checked copy of ``root``, built with an explicit stack (no recursion)."""

    def place(path: str) -> str:
        return preview(path.rstrip("."), 200) if path else "top level"

    def leaf(value: object, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"{where}: metadata value at {place(path)} is {value}; JSON has no NaN/inf")
        if isinstance(value, str):
            return check_text(f"{where}: metadata value at {place(path)}", value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            if not MIN_METADATA_INT <= value <= MAX_METADATA_INT:
                raise ValidationError(
                    f"{where}: metadata value at {place(path)} is an integer of {value.bit_length()} bits; "
                    "integers must fit in 64 bits (store larger ones as strings)"
                )
            return value
        raise ValidationError(
            f"{where}: metadata value at {place(path)} is a {type(value).__name__}, not JSON"
        )

    def container(value: object, path: str, depth: int) -> dict[str, Any] | list[Any] | None:
        if not isinstance(value, (Mapping, list, tuple)):
            return None
        if depth > MAX_METADATA_DEPTH:
            raise ValidationError(
                f"{where}: metadata at {place(path)} nests deeper than {MAX_METADATA_DEPTH} levels of "
                "dicts and lists; flatten it (or store it as a JSON string)"
            )
        return {} if isinstance(value, Mapping) else []

    allowance = budget.limit - budget.used if budget is not None else None
    spent = 1  # the opening bracket; each item then adds its comma (or the closing bracket)
    top = container(root, "", 1)
    assert top is not None
    stack: list[tuple[object, dict[str, Any] | list[Any], str, int]] = [(root, top, "", 1)]
    while stack:
        value, out, path, depth = stack.pop()
        items = value.items() if isinstance(value, Mapping) else enumerate(value)  # type: ignore[arg-type]
        for key, item in items:
            if isinstance(out, dict):
                if not isinstance(key, str):
                    raise ValidationError(
                        f"{where}: metadata key {preview(key)} at {place(path)} is not a string"
                    )
                if "$" in key or "." in key or not key:
                    raise ValidationError(
                        f"{where}: metadata key {preview(path + key, 200)} is empty or contains '$' or '.'; "
                        "rename it"
                    )
                check_text(f"{where}: metadata key at {place(path)}", key)
                sub = f"{path}{key}."
                spent += len(key) + 4  # "key": and the comma
            else:
                sub = f"{path}[{key}]."
                spent += 1
            child = container(item, sub, depth + 1)
            cleaned = leaf(item, sub) if child is None else child
            if isinstance(out, dict):
                out[key] = cleaned
            else:
                out.append(cleaned)
            if child is not None:
                stack.append((item, child, sub, depth + 1))
                spent += 1
            else:
                spent += len(cleaned) + 2 if isinstance(cleaned, str) else 1
            if allowance is not None and spent > allowance:
                assert budget is not None
                budget.charge(f"{where} (at {place(sub)})", spent)
    if budget is not None:
        budget.charge(where, spent)
    return top
