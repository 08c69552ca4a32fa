"""The exceptions of hds_s3.

Every error the library raises on purpose is an :class:`HdsError`. Each subclass also derives from
the builtin exception a Python user would expect, so ``except FileNotFoundError`` or
``except ValueError`` keep working (the reference raises ``ValueError`` for ``raise_if_exists``;
ours is a ``ValueError`` too).
"""

from __future__ import annotations


class HdsError(Exception):
    """Root of every error raised by hds_s3."""


class NotFoundError(HdsError, FileNotFoundError):
    """A dataset, version, frame or stored object does not exist."""


class AlreadyExistsError(HdsError, FileExistsError, ValueError):
    """Something with that name or key exists already (also a ``ValueError``, as in the reference)."""


class ConflictError(HdsError):
    """A conditional write lost against a concurrent writer and could not be re-applied.

    Re-reading and trying again is safe: nothing was changed by the call that raised it.
    """


class InvalidStateError(HdsError):
    """The operation is not allowed in the object's current state (e.g. writing a published version)."""


class UpgradeRequiredError(InvalidStateError):
    """The store is of an older format, which this hds_s3 reads but does not write: run ``hds upgrade``."""


class ValidationError(HdsError, ValueError):
    """An argument is malformed: a bad name, metadata key, geometry or option."""


class CorruptObjectError(HdsError):
    """A stored object cannot be parsed (truncated JSON, unknown format version, wrong schema)."""


class StorageError(HdsError, OSError):
    """The storage backend failed in a way that is not one of the conditions above."""


__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "CorruptObjectError",
    "HdsError",
    "InvalidStateError",
    "NotFoundError",
    "StorageError",
    "ValidationError",
]
