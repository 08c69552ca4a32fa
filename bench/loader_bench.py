"""Figure (g): loader throughput, as a ratio to a plain read loop with the same concurrency.

    .venv/bin/python bench/loader_bench.py                 # starts moto's server itself
    .venv/bin/python bench/loader_bench.py --frames 2048 --json g.json

``run_loader_bench(endpoint)`` is what ``bench/run.py`` calls with the endpoint of its moto server.

Ours: ``N`` frames, each with one source of ``source_bytes`` random bytes in a bucket on the S3
endpoint; the dataset itself lives in the same bucket. A ``DataView`` over the published version is
read by ``DataViewIterableDataset`` (cache off, so every epoch reads every source; the transform
returns the byte count, as the baseline does, so neither side ships the bytes between processes) through a
``DataLoader`` with ``workers`` worker processes, each reading with ``threads`` threads
(default 1: one request in flight per worker, the same concurrency as the baseline).

Baseline: the same source URLs, split round-robin over ``workers`` processes, each reading its share
in a plain loop: ``fsspec`` ``cat_file`` with s3fs when it is installed, else ``S3Store.get``
(boto3, the client hds_s3 itself falls back to for ``s3://`` sources without s3fs).

Both run one untimed warm-up epoch with their processes kept alive, then ``reps`` timed epochs; the
figure is frames per second of the median epoch, and the ratio ours / baseline (target >= 0.9).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import stores  # noqa: E402

from hds_s3 import Client, DatasetVersion, SingleFrame  # noqa: E402
from hds_s3.store import S3Store  # noqa: E402

KB = 1024
TARGET = 0.9

# Set in each baseline worker process by _init_reader.
_read: Any = None


def _s3_options(endpoint: str) -> dict[str, dict[str, Any]]:
    creds = stores.FAKE_CREDENTIALS
    return {
        "s3": {
            "endpoint_url": endpoint,
            "key": creds["aws_access_key_id"],
            "secret": creds["aws_secret_access_key"],
            "client_kwargs": {"region_name": "us-east-1"},
        }
    }


def _baseline_kind() -> str:
    return "fsspec+s3fs" if importlib.util.find_spec("s3fs") is not None else "S3Store.get (boto3; no s3fs)"


def _init_reader(endpoint: str) -> None:
    global _read
    if importlib.util.find_spec("s3fs") is not None:
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True, **_s3_options(endpoint)["s3"])
        _read = fs.cat_file
    else:
        clients: dict[str, S3Store] = {}

        def read(uri: str) -> bytes:
            bucket, key = uri[len("s3://") :].split("/", 1)
            if bucket not in clients:
                clients[bucket] = S3Store(
                    bucket, endpoint_url=endpoint, region_name="us-east-1", **stores.FAKE_CREDENTIALS
                )
            return clients[bucket].get(key)[0]

        _read = read


def _read_share(uris: list[str]) -> tuple[int, int]:
    total = 0
    for uri in uris:
        total += len(_read(uri))
    return len(uris), total


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _source_size(frame: dict[str, Any]) -> int:
    return len(frame["sources"][0]["data"])


def _prepare(endpoint: str, bucket: str, frames: int, source_bytes: int) -> tuple[Client, str, list[str]]:
    store = S3Store(bucket, endpoint_url=endpoint, region_name="us-east-1", **stores.FAKE_CREDENTIALS)
    store.create_bucket()
    run = uuid.uuid4().hex[:8]
    keys = [f"loader-{run}/sources/{i:07d}.bin" for i in range(frames)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: store.put(k, os.urandom(source_bytes)), keys))
    uris = [f"s3://{bucket}/{k}" for k in keys]
    client = Client(
        S3Store(
            bucket,
            f"loader-{run}/index",
            endpoint_url=endpoint,
            region_name="us-east-1",
            **stores.FAKE_CREDENTIALS,
        )
    )
    name = f"loader bench {run}"
    draft = DatasetVersion.create_new_dataset(dataset_name=name, client=client)
    failed = draft.add_frames(
        SingleFrame(id=f"{i:07d}", source=uri, context_id="bench", timestamp=i) for i, uri in enumerate(uris)
    )
    if failed:
        raise RuntimeError(f"{len(failed)} frames failed to register: {failed[:3]}")
    DatasetVersion.create_snapshot(dataset_name=name, publish_name="v1", client=client)
    return client, name, uris


def _loader_epoch(loader: Any, frames: int) -> int:
    count = total = 0
    for batch in loader:
        count += len(batch)
        total += sum(batch)
    if count != frames:
        raise RuntimeError(f"the loader yielded {count} frames, expected {frames}")
    return total


def _time_loader(
    client: Client,
    name: str,
    endpoint: str,
    frames: int,
    workers: int,
    threads: int,
    batch_size: int,
    reps: int,
) -> tuple[list[float], int]:
    from torch.utils.data import DataLoader

    from hds_s3.query.dataview import DataView
    from hds_s3.torch import DataViewIterableDataset

    view = DataView(iteration_order="sequential", client=client)
    view.add_query(dataset_name=name, version_name="v1")
    dataset = DataViewIterableDataset(
        view,
        storage_options=_s3_options(endpoint),
        cache_bytes=0,
        threads=threads,
        ahead=max(4, 2 * threads),
        transform=_source_size,
    )
    with warnings.catch_warnings():  # 4 workers on a 2-core machine is the figure's setting
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_as_list,
            persistent_workers=True,
            multiprocessing_context="fork",
        )
        total = _loader_epoch(loader, frames)  # warm-up: starts the workers
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            _loader_epoch(loader, frames)
            seconds.append(time.perf_counter() - start)
    return seconds, total


def _time_baseline(endpoint: str, uris: list[str], workers: int, reps: int) -> tuple[list[float], int]:
    shares = [uris[w::workers] for w in range(workers)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_reader, initargs=(endpoint,)) as pool:

        def epoch() -> int:
            done = pool.map(_read_share, shares, chunksize=1)
            count = sum(c for c, _ in done)
            if count != len(uris):
                raise RuntimeError(f"the baseline read {count} sources, expected {len(uris)}")
            return sum(b for _, b in done)

        total = epoch()  # warm-up
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            epoch()
            seconds.append(time.perf_counter() - start)
    return seconds, total


def run_loader_bench(
    endpoint: str,
    *,
    frames: int = 1024,
    source_bytes: int = 64 * KB,
    workers: int = 4,
    threads: int = 1,
    batch_size: int = 32,
    reps: int = 3,
    bucket: str = "hds-bench-loader",
) -> dict[str, Any]:
    """Measure figure (g) against the S3 endpoint ``endpoint`` (moto's server in ``bench/run.py``).

    Writes ``frames`` sources of ``source_bytes`` random bytes and a dataset into ``bucket``
    (created if missing; fake credentials), then times a ``DataViewIterableDataset`` read through a
    ``DataLoader`` of ``workers`` processes against a plain read loop in ``workers`` processes.

    Returns a dict: ``figure``, ``frames``, ``source_bytes``, ``workers``, ``threads``,
    ``batch_size``, ``reps``, ``ours_fps``, ``baseline_fps`` (frames per second of the median
    epoch), ``ours_seconds``, ``baseline_seconds`` (every timed epoch), ``ratio`` (ours /
    baseline), ``target`` (0.9), ``pass``, ``baseline`` (what the baseline reads with),
    ``prepare_seconds``.

    Raises:
        RuntimeError: a side read a different number of frames than written.
        StorageError: the endpoint failed.
    """
    start = time.perf_counter()
    client, name, uris = _prepare(endpoint, bucket, frames, source_bytes)
    prepare = time.perf_counter() - start
    base_seconds, base_bytes = _time_baseline(endpoint, uris, workers, reps)
    our_seconds, our_bytes = _time_loader(client, name, endpoint, frames, workers, threads, batch_size, reps)
    if our_bytes != base_bytes:
        raise RuntimeError(f"the loader read {our_bytes} bytes, the baseline {base_bytes}")
    ours_fps = frames / statistics.median(our_seconds)
    base_fps = frames / statistics.median(base_seconds)
    ratio = ours_fps / base_fps
    return {
        "figure": "g",
        "frames": frames,
        "source_bytes": source_bytes,
        "workers": workers,
        "threads": threads,
        "batch_size": batch_size,
        "reps": reps,
        "ours_fps": ours_fps,
        "baseline_fps": base_fps,
        "ours_seconds": our_seconds,
        "baseline_seconds": base_seconds,
        "ratio": ratio,
        "target": TARGET,
        "pass": ratio >= TARGET,
        "baseline": _baseline_kind(),
        "prepare_seconds": prepare,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", help="an S3 endpoint (default: start moto's server)")
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--source-kb", type=int, default=64)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="reading threads per loader worker")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    opts = p.parse_args()
    server = None if opts.endpoint else stores.MotoServer()
    try:
        endpoint = opts.endpoint or server.endpoint  # type: ignore[union-attr]
        res = run_loader_bench(
            endpoint,
            frames=opts.frames,
            source_bytes=opts.source_kb * KB,
            workers=opts.workers,
            threads=opts.threads,
            reps=opts.reps,
        )
    finally:
        if server is not None:
            server.stop()
    print(
        f"(g) loader: {res['ours_fps']:.0f} frames/s, baseline ({res['baseline']}): "
        f"{res['baseline_fps']:.0f} frames/s, ratio {res['ratio']:.2f} "
        f"(target >= {TARGET}) {'PASS' if res['pass'] else 'FAIL'}"
    )
    if opts.json:
        opts.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
