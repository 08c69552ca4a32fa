"""The new Hyper-Datasets API (``clearml.hyperdatasets``), over the same store and format.

``from clearml.hyperdatasets import X`` becomes ``from hds_s3.hyperdatasets import X``::

    from hds_s3.hyperdatasets import DataEntryImage, DataSubEntryImage, HyperDataset

    hd = HyperDataset(project_name="demo", dataset_name="images", version_name="v1")
    entry = DataEntryImage(metadata={"city": "bremen"})
    image = DataSubEntryImage(name="image", source="s3://bucket/1.jpg", width=640, height=480)
    entry.add_sub_entries([image])
    errors = hd.add_data_entries([entry])

A ``HyperDataset`` is bound to a :class:`~hds_s3.api.DatasetVersion` (``hd.version``); entries are
frames, so a dataset written with this API reads with ``SingleFrame`` / ``FrameGroup`` / the legacy
``DataView`` and the other way round (see :mod:`hds_s3.hyperdatasets.entries`). Like every hds_s3
call, the classes take ``client=`` to pick a store (default: ``HDS_STORE`` or the local folder).
"""

from __future__ import annotations

from hds_s3.hyperdatasets.core import HyperDataset, HyperDatasetManagement, HyperDatasetNotFoundError
from hds_s3.hyperdatasets.dataview import DataView, HyperDatasetQuery
from hds_s3.hyperdatasets.entries import DataEntry, DataSubEntry
from hds_s3.hyperdatasets.images import DataEntryImage, DataSubEntryImage

__all__ = [
    "DataEntry",
    "DataEntryImage",
    "DataSubEntry",
    "DataSubEntryImage",
    "DataView",
    "HyperDataset",
    "HyperDatasetManagement",
    "HyperDatasetNotFoundError",
    "HyperDatasetQuery",
]
