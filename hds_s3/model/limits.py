"""What a frame may hold, and the checks that keep hostile input from costing more than that.

The limits (the README's "Limits" table lists them with the others):

* a frame is at most :data:`MAX_FRAME_BYTES` (4 MiB) as compact JSON: its canonical dict without
  provenance (``saved``, ``saved_in_version``, ``updated_in_version``), as
  ``json.dumps(d, separators=(",", ":"), ensure_ascii=False)`` writes it, in UTF-8;
* it has at most :data:`MAX_SOURCES` sources and :data:`MAX_ROIS` ROIs;
* a string in it (URI, context id, content type, metadata key or text) holds at most
  :data:`~hds_s3.model.names.MAX_STRING_BYTES` (1 MiB) of UTF-8; names (ids, labels) 255 bytes;
* its metadata nests at most :data:`~hds_s3.model.names.MAX_METADATA_DEPTH` (32) levels, so a frame
  dict nests at most :data:`MAX_FRAME_DEPTH` (35).

:func:`to_frame_dict <hds_s3.model.frames.to_frame_dict>` enforces them exactly, on frame objects and
dicts alike. :func:`check_frame_input` is the guard in front of it for frame dicts given to
``add_frames``: one iterative walk that refuses a dict past a limit before anything of it is copied,
so a frame of 50 MB costs a walk of about 4 MB, not copies of 50 MB. :func:`parse_json` reads JSON
given by a user (a file, a line of JSON Lines, an argument) into :class:`ValidationError` instead of
Python's ``RecursionError`` and ``ValueError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from hds_s3.errors import ValidationError
from hds_s3.model.names import MAX_METADATA_DEPTH, MAX_STRING_BYTES, SizeBudget, preview

#: The largest frame, in bytes of compact JSON (UTF-8): 4 MiB.
MAX_FRAME_BYTES = 4 << 20
#: The most sources a frame (a FrameGroup) may have.
MAX_SOURCES = 256
#: The most ROIs a frame may have (its members' and its own, together).
MAX_ROIS = 10_000
#: The deepest a frame dict nests: the frame, its ``rois`` list, a ROI, then metadata 32 levels deep.
MAX_FRAME_DEPTH = 3 + MAX_METADATA_DEPTH

#: The keys under which a frame dict, its sources and its ROIs hold metadata.
_META_KEYS = frozenset({"meta", "meta_blob", "metadata"})


def frame_budget() -> SizeBudget:
    """A fresh :class:`~hds_s3.model.names.SizeBudget` of one frame (:data:`MAX_FRAME_BYTES`)."""
    return SizeBudget(MAX_FRAME_BYTES, too_big())


def too_big(size: int | None = None) -> str:
    """The reason given for a frame over :data:`MAX_FRAME_BYTES` (``size``: its size, when known)."""
    what = f"{size:,} bytes of JSON" if size is not None else f"more than {MAX_FRAME_BYTES:,} bytes of JSON"
    return (
        f"the frame is too large ({what}); a frame holds at most {MAX_FRAME_BYTES:,} bytes (4 MiB): "
        "keep large data in the files its sources point at"
    )


def frame_label(data: object) -> str:
    """``frame '<id>'`` (or ``frame '<first URI>'``) for messages about a frame dict; never raises."""
    if not isinstance(data, Mapping):
        return "frame"
    fid = data.get("id")
    if isinstance(fid, str) and fid:
        return f"frame {preview(fid, 256)}"
    uri = data.get("uri")
    sources = data.get("sources")
    if uri is None and isinstance(sources, list) and sources and isinstance(sources[0], Mapping):
        uri = sources[0].get("uri")
    if isinstance(uri, str) and uri:
        return f"frame {preview(uri, 256)}"
    return "frame <no id>"


def _int_chars(value: int) -> int:
    """A lower bound of the digits of an integer, without printing it (Python refuses 4,300 digits)."""
    return max(1, int(abs(value).bit_length() * 0.30102))


def check_frame_input(data: Mapping[str, Any]) -> None:
    """Refuse a frame dict past a limit before any of it is read, in one iterative walk.

    Checks the number of sources and ROIs, the nesting (metadata 32 levels, anything else within
    :data:`MAX_FRAME_DEPTH`), the size of every string, and a lower bound of the dict's JSON size,
    stopping as soon as one is passed. Everything else (and the exact size) is checked when the frame
    is normalised; what passes here may still be refused there.

    Raises:
        ValidationError: naming the frame and the field.
    """
    where = frame_label(data)
    for field, limit in (("sources", MAX_SOURCES), ("rois", MAX_ROIS)):
        given = data.get(field)
        if isinstance(given, (list, tuple)) and len(given) > limit:
            raise ValidationError(
                f"{where}: {field}: {len(given):,} of them; a frame has at most {limit:,} {field}"
            )
    spent = 1
    # (container, field path, depth in the frame, depth in metadata: 0 outside it)
    stack: list[tuple[Mapping[Any, Any] | list[Any] | tuple[Any, ...], str, int, int]] = [(data, "", 1, 0)]
    while stack:
        value, path, depth, meta_depth = stack.pop()
        if meta_depth > MAX_METADATA_DEPTH:
            raise ValidationError(
                f"{where}: {_field(path)}: metadata nests deeper than {MAX_METADATA_DEPTH} levels of dicts "
                "and lists; flatten it (or store it as a JSON string)"
            )
        if depth > MAX_FRAME_DEPTH:
            raise ValidationError(
                f"{where}: {_field(path)}: nests deeper than {MAX_FRAME_DEPTH} levels of dicts and lists, "
                f"deeper than any frame field (metadata nests at most {MAX_METADATA_DEPTH})"
            )
        is_map = isinstance(value, Mapping)
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            if is_map:
                if isinstance(key, str):
                    if len(key) > MAX_STRING_BYTES:
                        raise ValidationError(f"{where}: {_field(path)}: a key of {len(key):,} characters")
                    spent += len(key) + 4
                    sub = f"{path}.{key}" if path else key
                else:
                    spent += 4
                    sub = f"{path}.{preview(key, 20)}" if path else preview(key, 20)
            else:
                spent += 1
                sub = f"{path}[{key}]"
            if isinstance(item, str):
                if len(item) > MAX_STRING_BYTES:
                    raise ValidationError(
                        f"{where}: {_field(sub)}: a text of {len(item):,} characters; a string holds at most "
                        f"{MAX_STRING_BYTES:,} bytes (1 MiB) of UTF-8"
                    )
                spent += len(item) + 2
            elif isinstance(item, (Mapping, list, tuple)):
                if meta_depth:
                    inner = meta_depth + 1
                else:
                    inner = 1 if is_map and key in _META_KEYS and isinstance(item, Mapping) else 0
                stack.append((item, sub, depth + 1, inner))
                spent += 1
            elif type(item) is int:
                spent += _int_chars(item)
            else:
                spent += 1
            if spent > MAX_FRAME_BYTES:
                raise ValidationError(f"{where}: {_field(sub)}: {too_big()}")


def _field(path: str) -> str:
    """A field path for a message: cut in the middle when long (a path 35 levels deep)."""
    if not path:
        return "the frame"
    return path if len(path) <= 160 else f"{path[:100]}...{path[-50:]}"


def parse_json(text: str | bytes, what: str | None = None) -> Any:
    """Parse JSON a user gave (a file, a line of JSON Lines, an argument).

    Args:
        text: The JSON text (bytes are read as UTF-8).
        what: Names the text in the message (``"frames.jsonl line 3"``); None: the message is the
            problem alone.

    Raises:
        ValidationError: not JSON (with the line and column), not UTF-8, nested too deep for the
            parser, or holding an integer of thousands of digits (which Python refuses to convert).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 ({exc.reason})"
    except RecursionError:
        problem = (
            f"the JSON nests too deep to read; a frame nests at most {MAX_FRAME_DEPTH} levels of objects "
            f"and arrays (its metadata {MAX_METADATA_DEPTH})"
        )
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        problem = (
            "it holds an integer of more than 4,300 digits; integers must fit in 64 bits "
            "(store larger ones as strings)"
        )
    raise ValidationError(problem if what is None else f"{what}: {problem}")


__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_FRAME_DEPTH",
    "MAX_ROIS",
    "MAX_SOURCES",
    "check_frame_input",
    "frame_budget",
    "frame_label",
    "parse_json",
    "too_big",
]
