"""hds_s3: Hyper-Datasets without a server.

Datasets of annotated frames, their Git-like version trees and queryable views, kept in nothing but
an S3 bucket or a local folder. The API follows ClearML Enterprise's Hyper-Datasets::

    from hds_s3 import Dataset, DatasetVersion

    Dataset.create(dataset_name="cars")
    DatasetVersion.create_snapshot(dataset_name="cars", publish_name="v1")

and ``DataView`` queries a version's frames (Lucene, as the reference) and feeds a training loop.
"""

from hds_s3.api import Dataset, DatasetVersion
from hds_s3.client import Client, connect, default_client, set_default_client
from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptObjectError,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.index.ingest import FailedFrame
from hds_s3.model.annotations import Annotation
from hds_s3.model.frames import FrameGroup, SingleFrame
from hds_s3.query.dataview import DataView, DataViewNotFoundError, IterationOrder, RoiQuery

__version__ = "0.1.0"

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
    "InvalidStateError",
    "IterationOrder",
    "NotFoundError",
    "RoiQuery",
    "SingleFrame",
    "StorageError",
    "ValidationError",
    "__version__",
    "connect",
    "default_client",
    "set_default_client",
]
