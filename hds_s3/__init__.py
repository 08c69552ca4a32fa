"""hds_s3: Hyper-Datasets without a server.

Datasets of annotated frames, their Git-like version trees and queryable views, kept in nothing but
an S3 bucket or a local folder. The API follows ClearML Enterprise's Hyper-Datasets::

    from hds_s3 import Dataset, DatasetVersion

    Dataset.create(dataset_name="cars")
    DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v1")

and ``DataView`` queries a version's frames (Lucene, as the reference) and feeds a training loop.

``import hds_s3`` loads only the exceptions: every other name listed in ``__all__`` is imported from
its module on first use (PEP 562), so a script or the ``hds`` command that needs little starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    UpgradeRequiredError,
    ValidationError,
)

if TYPE_CHECKING:
    from hds_s3.api import Dataset, DatasetVersion
    from hds_s3.client import Client, connect, default_client, set_default_client
    from hds_s3.index.ingest import FailedFrame
    from hds_s3.model.annotations import Annotation, ImageAnnotation
    from hds_s3.model.frames import FrameGroup, SingleFrame
    from hds_s3.query.dataview import DataView, DataViewNotFoundError, IterationOrder, RoiQuery

__version__ = "0.1.0"

#: The module each lazily imported name comes from.
_LAZY = {
    "Dataset": "hds_s3.api",
    "DatasetVersion": "hds_s3.api",
    "Client": "hds_s3.client",
    "connect": "hds_s3.client",
    "default_client": "hds_s3.client",
    "set_default_client": "hds_s3.client",
    "FailedFrame": "hds_s3.index.ingest",
    "Annotation": "hds_s3.model.annotations",
    "ImageAnnotation": "hds_s3.model.annotations",
    "FrameGroup": "hds_s3.model.frames",
    "SingleFrame": "hds_s3.model.frames",
    "DataView": "hds_s3.query.dataview",
    "DataViewNotFoundError": "hds_s3.query.dataview",
    "IterationOrder": "hds_s3.query.dataview",
    "RoiQuery": "hds_s3.query.dataview",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (and keep it in this module).

    Raises:
        AttributeError: ``name`` is not a public name of hds_s3 (nor one of its submodules).
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hds_s3' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AlreadyExistsError",
    "Annotation",
    "Client",
    "ConflictError",
    "CorruptObjectError",
    "DataView",
    "DataViewNotFoundError",
    "Dataset",
    "DatasetVersion",
    "FailedFrame",
    "FrameGroup",
    "HdsError",
    "ImageAnnotation",
    "InvalidStateError",
    "IterationOrder",
    "NotFoundError",
    "RoiQuery",
    "SingleFrame",
    "StorageError",
    "UpgradeRequiredError",
    "ValidationError",
    "__version__",
    "connect",
    "default_client",
    "set_default_client",
]
