"""What a test needs to know about one store backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hds_s3.store import ObjectStore, S3Store, open_store


@dataclass
class StoreSpec:
    """One backend under test.

    Attributes:
        name: backend id (``memory``, ``local``, ``moto``, ``moto_server``, ``seaweedfs``, ``external``).
        url: what ``hds_s3.store.open_store(url)`` turns into a fresh, empty store for this test
            (for S3 backends, a unique prefix in a shared bucket).
        env: environment variables a child process sets to reach the store (credentials,
            ``HDS_S3_ENDPOINT_URL``); the ``store_spec`` fixture also sets them in this process.
        atomic: conditional writes are atomic under races (not on moto, docs/design.md section 9).
        multiprocess: another process can open the same store from ``url`` and ``env``.
    """

    name: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    atomic: bool = True
    multiprocess: bool = False

    def make(self) -> ObjectStore:
        """Open the store, with this spec's endpoint and credentials even if the environment lacks them."""
        if self.url.startswith("s3://") and self.env:
            parts = urlsplit(self.url)
            return S3Store(
                parts.netloc,
                parts.path.strip("/"),
                endpoint_url=self.env.get("HDS_S3_ENDPOINT_URL"),
                aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=self.env.get("AWS_SESSION_TOKEN"),
            )
        return open_store(self.url)
