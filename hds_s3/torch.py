"""PyTorch datasets over a DataView (``from hds_s3.torch import DataViewIterableDataset``).

The same names as :mod:`hds_s3.io.loaders.torch`; importing this module imports torch
(``pip install 'hds_s3[torch]'``).
"""

from __future__ import annotations

from hds_s3.io.loaders.torch import DataViewDataset, DataViewIterableDataset, worker_shard

__all__ = ["DataViewDataset", "DataViewIterableDataset", "worker_shard"]
