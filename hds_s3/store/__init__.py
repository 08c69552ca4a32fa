"""Object stores: the only place where bytes meet a medium (S3, a local folder, memory)."""

from hds_s3.store.base import ObjectInfo, ObjectStore
from hds_s3.store.memory import MemoryStore

__all__ = ["MemoryStore", "ObjectInfo", "ObjectStore"]
