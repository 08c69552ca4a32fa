"""Pointing hds_s3 at a bucket: AWS S3, MinIO, LocalStack or SeaweedFS, or the local folder.

The store is one URL. With nothing set, this example uses the embedded default (a local folder),
which is what CI runs. To run it against a server, start one (``localstack/README.md`` shows how,
with or without Docker) and set, for example::

    export HDS_STORE=s3://hds-demo/team-a                # bucket and prefix
    export HDS_S3_ENDPOINT_URL=http://127.0.0.1:9000     # MinIO; LocalStack: http://127.0.0.1:4566
    export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin AWS_DEFAULT_REGION=us-east-1

On AWS itself leave ``HDS_S3_ENDPOINT_URL`` unset; credentials come from the usual AWS chain
(environment, profile, instance role). Every API call also takes ``client=hds_s3.connect(url)``
to use another store explicitly, so one program can copy between stores.
"""

from __future__ import annotations

import os

from hds_s3 import Dataset, DatasetVersion, connect, default_client

NAME = "remote store example"


def main() -> None:
    client = default_client()  # HDS_STORE, else the local folder
    print(f"store: {client.url} (HDS_STORE={os.environ.get('HDS_STORE', '<unset>')})")
    if Dataset.exists(dataset_name=NAME, client=client):
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True, client=client)

    draft = DatasetVersion.create_new_dataset(dataset_name=NAME, client=client)
    draft.add_frames([{"sources": [{"id": "00", "uri": f"s3://hds-demo/img/{i}.jpg"}]} for i in range(10)])
    draft.publish_version()

    # A second client on the same URL (another process, another machine) sees the same state:
    # the bucket (or folder) is the only shared thing, and there is no server.
    other = connect(client.url)
    seen = DatasetVersion.get_version(dataset_name=NAME, version_name=draft.name, client=other)
    print(f"another client sees {seen.get_frame_count()} frames in {seen.name!r} ({seen.status})")
    assert seen.get_frame_count() == 10 and seen.is_published

    # A throw-away in-memory store for scratch work and tests: same API, nothing on disk.
    scratch = connect("memory://scratch")
    DatasetVersion.create_new_dataset(dataset_name=NAME, client=scratch)
    assert [d.name for d in Dataset.list_datasets(client=scratch)] == [NAME]

    Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True, client=client)


if __name__ == "__main__":
    main()
