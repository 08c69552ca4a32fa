"""Versioning: the flow of the reference's "Datasets and Dataset Versions" page, end to end.

With no ``HDS_STORE`` set this runs on the embedded default, a local folder: no server and no
credentials. Set ``HDS_STORE=s3://bucket/prefix`` (and ``AWS_ENDPOINT_URL`` for MinIO/LocalStack)
to run the very same code against a bucket.
"""

from __future__ import annotations

from hds_s3 import Dataset, DatasetVersion, default_client

NAME = "versioning example"


def main() -> None:
    print(f"store: {default_client().url}")
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)

    # A new dataset starts with one empty draft named "Current".
    draft = DatasetVersion.create_new_dataset(
        dataset_name=NAME, tags=["street", "demo"], description="street scenes, day and night"
    )
    Dataset.get(dataset_name=NAME).set_metadata({"owner": "perception team", "license": "internal"})

    # Version metadata and the mask-value -> labels mapping live on the draft.
    draft.set_metadata({"camera": "front", "fps": 30})
    draft.set_masks_labels({(0, 0, 0): ["background"], (1, 1, 1): ["person", "sitting"], (2, 2, 2): ["cat"]})

    # Simple structure: snapshot the draft (it keeps its id and is published), keep working on a new draft.
    current = DatasetVersion.create_snapshot(
        dataset_name=NAME, publish_name="v1", child_comment="after v1", child_metadata={"camera": "front"}
    )
    print(f"snapshot 'v1' is {DatasetVersion.get_version(dataset_name=NAME, version_name='v1').status}")
    print(f"working on '{current.name}' ({current.status}), child of v1: {current.parent_id == draft.id}")
    DatasetVersion.create_snapshot(dataset_name=NAME)  # named "snapshot <UTC time>"

    # Advanced structure: a child of a published version, worked on and published in parallel.
    night = DatasetVersion.create_version(
        dataset_name=NAME, parent_version_names=["v1"], version_name="night only", comment="filtered to night"
    )
    night.publish_version()
    DatasetVersion.create_version(
        dataset_name=NAME, parent_version_names=["night only"], version_name="relabel"
    )
    DatasetVersion.create_version(dataset_name=NAME, version_name="scratch root")

    ds = Dataset.get(dataset_name=NAME)
    print(ds.format_tree())
    published = {v.name for v in DatasetVersion.get_versions(dataset_name=NAME, only_published=True)}
    assert {"v1", "night only"} <= published and len(published) == 3  # plus the timestamped snapshot
    assert DatasetVersion.get_current(dataset_name=NAME).name == "relabel"  # the deepest draft
    print(
        "mask labels of v1:",
        DatasetVersion.get_version(dataset_name=NAME, version_name="v1").get_metadata()["mask_labels"],
    )
    print("published:", [v.name for v in DatasetVersion.get_versions(dataset_name=NAME, only_published=True)])
    print("drafts:   ", [v.name for v in DatasetVersion.get_versions(dataset_name=NAME, only_draft=True)])

    ds.delete_version(version_name="scratch root")
    Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    print(f"deleted {NAME!r}; exists now: {Dataset.exists(dataset_name=NAME)}")
    assert not Dataset.exists(dataset_name=NAME)


if __name__ == "__main__":
    main()
