"""The frame formats as JSON Schemas (draft 2020-12), shipped with the package.

:func:`frame_schema` describes a frame dict, as ``add_frames`` and ``hds frames add`` take it and
``hds frames export`` writes it (the canonical form of :func:`hds_s3.model.frames.to_frame_dict`, or
the single-source shorthand). :func:`frame_row_schema` describes one row of the Arrow frame schema
(``hds_s3.index.segments.FRAME_SCHEMA``: what ``get_frames_table()`` returns and the Parquet of
``hds frames export`` holds), with each column's Arrow type under ``x-arrow-type``. ``hds frames
schema`` prints them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

FRAME_SCHEMA_FILE = "frame.schema.json"
"""The frame dict schema, a file of this package (:mod:`hds_s3.model`)."""
FRAME_ROW_SCHEMA_FILE = "frame-row.schema.json"
"""The Arrow frame row schema, a file of this package."""


@cache
def schema_text(name: str) -> str:
    """The JSON text of one of the shipped schemas (:data:`FRAME_SCHEMA_FILE`, :data:`FRAME_ROW_SCHEMA_FILE`).

    Raises:
        FileNotFoundError: ``name`` is not a file of the package (a broken installation).
    """
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def frame_schema() -> dict[str, Any]:
    """The JSON Schema of a frame dict (a fresh copy).

    Raises:
        FileNotFoundError: the schema file is missing from the installation.
    """
    return json.loads(schema_text(FRAME_SCHEMA_FILE))  # type: ignore[no-any-return]


def frame_row_schema() -> dict[str, Any]:
    """The JSON Schema of one Arrow frame row, with the Arrow type of every column (a fresh copy).

    Raises:
        FileNotFoundError: the schema file is missing from the installation.
    """
    return json.loads(schema_text(FRAME_ROW_SCHEMA_FILE))  # type: ignore[no-any-return]


__all__ = ["FRAME_ROW_SCHEMA_FILE", "FRAME_SCHEMA_FILE", "frame_row_schema", "frame_schema", "schema_text"]
