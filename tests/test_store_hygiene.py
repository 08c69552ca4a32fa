"""What a careless or read-only user meets: get-or-create writes nothing, lock files stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame
from hds_s3.errors import AlreadyExistsError, StorageError
from hds_s3.store import LocalStore, MemoryStore, ReadOnlyStore
from hds_s3.store.local import LOCK_DIR, LOCK_STRIPES


def test_get_or_create_of_an_existing_dataset_works_with_read_only_credentials() -> None:
    inner = MemoryStore()
    made = Dataset.create(dataset_name="cars", client=Client(inner))
    reader = Client(ReadOnlyStore(inner))
    again = Dataset.create(dataset_name="cars", client=reader)
    assert again.id == made.id
    with pytest.raises(AlreadyExistsError):
        Dataset.create(dataset_name="cars", raise_if_exists=True, client=reader)
    with pytest.raises(StorageError):  # a new one needs write access, and says so
        Dataset.create(dataset_name="bikes", client=reader)


def test_the_local_store_keeps_a_bounded_number_of_lock_files(tmp_path: Path) -> None:
    client = Client(LocalStore(tmp_path))
    draft = DatasetVersion.create_new_dataset(dataset_name="locks", client=client)
    for i in range(40):  # each batch writes a segment, a manifest and the document
        draft.add_frames([SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i}")])
    store = LocalStore(tmp_path)
    for i in range(600):
        store.put(f"scratch/{i}.bin", b"x")
        store.delete(f"scratch/{i}.bin")
    locks = list((tmp_path / LOCK_DIR).iterdir())
    assert 0 < len(locks) <= LOCK_STRIPES, f"{len(locks)} lock files for about 750 keys"
    assert draft.get_frame_count() == 40


@pytest.mark.parametrize(
    "damage",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"format_version": 1, "n": ' + b"7" * 5000 + b"}",
        b'{"format_version": 1, "deep": ' + b'{"k": ' * 60 + b"1" + b"}" * 60 + b"}",
    ],
    ids=["nested-10000", "5000-digits", "nested-60"],
)
def test_a_dataset_document_of_hostile_json_is_damage_and_the_others_still_list(damage: bytes) -> None:
    from hds_s3.errors import CorruptObjectError
    from hds_s3.format import layout
    from hds_s3.tools.fsck import fsck

    inner = MemoryStore()
    client = Client(inner)
    broken = Dataset.create(dataset_name="broken", client=client)
    Dataset.create(dataset_name="fine", client=client)
    inner.put(layout.dataset_doc_key(broken.id), damage)
    with pytest.raises(CorruptObjectError, match=layout.dataset_doc_key(broken.id)):
        Dataset.get(dataset_name="broken", client=client)
    assert [d.name for d in Dataset.list_datasets(client=client)] == ["fine"]
    report = fsck(client)
    assert any(f.key == layout.dataset_doc_key(broken.id) and f.kind == "damage" for f in report.findings)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts this process's reads in /proc")
def test_a_ranged_read_of_a_local_file_reads_only_the_range(tmp_path: Path) -> None:
    # a publish reads dozens of column chunks through ranges: a read that fills a buffer past each
    # one added a tenth to what a commit read from the local folder
    store = LocalStore(tmp_path)
    data = bytes(range(256)) * 4096  # 1 MiB
    store.put("segment.bin", data)

    def reads() -> int:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return int(fields["rchar"])

    ranges = [(i * 40_000 + 17, 1_000 + 37 * i) for i in range(20)]
    before = reads()
    got = [store.get_range("segment.bin", start, length) for start, length in ranges]
    moved = reads() - before
    assert got == [data[start : start + length] for start, length in ranges]
    asked = sum(length for _, length in ranges)
    assert moved - asked < 2_000, f"{moved} bytes read for {asked} asked"  # the /proc read itself is ~200 B
    assert store.get_range("segment.bin", len(data) - 10, 100) == data[-10:]
