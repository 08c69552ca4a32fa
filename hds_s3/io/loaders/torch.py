"""PyTorch datasets over a DataView, yielding frames with their source bytes.

:class:`DataViewDataset` is map-style: it reads the view's frame list once (``to_dict``), so it has
a length and random access, and a DataLoader batch reads its sources in parallel threads.
:class:`DataViewIterableDataset` streams the view (``get_iterator``) and shards it across DataLoader
workers and distributed ranks, so each frame is yielded once per epoch across all of them, while a
thread pool reads sources a bounded number of frames ahead.

Samples are frame dicts (``sample["sources"][i]["data"]`` holds the bytes) or what ``transform``
makes of them. The default collate function cannot stack such dicts: give a ``transform`` that
returns tensors, or ``collate_fn=list`` (or ``batch_size=None``) to get the dicts themselves.

Each process (the main one and each DataLoader worker) has its own source cache of ``cache_bytes``.

This module imports torch; ``pip install hds_s3[torch]`` installs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    import torch
    import torch.utils.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"hds_s3's PyTorch datasets need torch ({exc}); install it with: pip install 'hds_s3[torch]'"
    ) from exc

from hds_s3.errors import ValidationError
from hds_s3.io.loaders import FrameView, Transform, check_view, iter_frames, loader, make_fetcher
from hds_s3.io.sources import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_PREFETCH,
    DEFAULT_THREADS,
    SourceFetcher,
    StorageOptions,
)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValidationError(
            f"give rank and world_size together, got rank={rank!r}, world_size={world_size!r}"
        )
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank, world_size = int(dist.get_rank()), int(dist.get_world_size())
        elif os.environ.get("RANK") and os.environ.get("WORLD_SIZE"):
            try:
                rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            except ValueError as exc:
                raise ValidationError(
                    f"RANK={os.environ['RANK']!r} and WORLD_SIZE={os.environ['WORLD_SIZE']!r} "
                    "must be integers"
                ) from exc
        else:
            rank, world_size = 0, 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValidationError(
            f"rank {rank} is not within world_size {world_size} (need 0 <= rank < world_size)"
        )
    return rank, world_size


def worker_shard(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Return ``(shard index, shard count)`` of the calling process.

    The count is ``world_size * DataLoader workers`` and the index ``rank * workers + worker id``.
    The rank and world size are the arguments when given, else those of an initialised
    ``torch.distributed`` process group, else the ``RANK``/``WORLD_SIZE`` environment variables
    (as set by torchrun), else 0 and 1. Outside a DataLoader worker, there is one worker.

    Raises:
        ValidationError: only one of rank and world_size given, or a rank outside ``[0, world_size)``.
    """
    rank, world_size = _distributed(rank, world_size)
    info = torch.utils.data.get_worker_info()
    workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
    return rank * workers + worker, world_size * workers


class DataViewDataset(torch.utils.data.Dataset[Any]):
    """Map-style dataset: frame ``i`` of the view (in its iteration order), with its source bytes.

    The frame list is read once, at construction, with ``view.to_dict(projection)``; sources are
    read when an item is asked for. ``len()`` is the number of frames.

    Args:
        view: a DataView (anything with ``to_dict(projection)``).
        transform: called with each frame dict (sources carrying ``"data"``); its result is the sample.
        storage_options: per-protocol fsspec options for reading sources, e.g.
            ``{"s3": {"endpoint_url": ..., "key": ..., "secret": ...}}``.
        fetcher: a ready :class:`~hds_s3.io.sources.SourceFetcher` instead of ``storage_options``.
        cache_bytes: bound of each process's in-memory source cache.
        projection: passed to ``to_dict`` (keep ``sources`` in it to get bytes).
        threads: threads reading the sources of a batch (``__getitems__``).
        masks: also read the masks of each source.
        previews: also read the preview of each source.

    Raises:
        ValidationError: ``view`` is not a DataView, or a bad option.
    """

    def __init__(
        self,
        view: FrameView,
        *,
        transform: Transform | None = None,
        storage_options: StorageOptions | None = None,
        fetcher: SourceFetcher | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        projection: Sequence[str] | None = None,
        threads: int = DEFAULT_THREADS,
        masks: bool = False,
        previews: bool = False,
    ) -> None:
        check_view(view, "to_dict")
        if threads < 1:
            raise ValidationError(f"threads must be >= 1, got {threads}")
        self.fetcher = make_fetcher(fetcher, storage_options, cache_bytes)
        self.transform = transform
        self.threads = threads
        self.masks = masks
        self.previews = previews
        self.frames: list[dict[str, Any]] = list(view.to_dict(projection))

    def __len__(self) -> int:
        return len(self.frames)

    def _load(self, index: int) -> Any:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"DataViewDataset indices are integers, got {type(index).__name__}")
        if not -len(self.frames) <= index < len(self.frames):
            raise IndexError(f"frame index {index} is out of range for a view of {len(self.frames)} frames")
        load = loader(self.fetcher, self.transform, masks=self.masks, previews=self.previews)
        return load(self.frames[index])

    def __getitem__(self, index: int) -> Any:
        """Return sample ``index`` (negative indices count from the end).

        Raises:
            IndexError: ``index`` is out of range.
            TypeError: ``index`` is not an integer.
            NotFoundError: a source does not exist (the message names the frame and the URI).
            StorageError: a source could not be read.
        """
        return self._load(index)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Return the samples of a batch, their sources read by up to ``threads`` threads.

        Raises:
            IndexError, TypeError, NotFoundError, StorageError: as :meth:`__getitem__`.
        """
        indices = list(indices)
        if self.threads == 1 or len(indices) <= 1:
            return [self._load(i) for i in indices]
        with ThreadPoolExecutor(
            max_workers=min(self.threads, len(indices)), thread_name_prefix="hds-batch"
        ) as pool:
            return list(pool.map(self._load, indices))


#: Epoch counters a DataViewIterableDataset keeps: one for the main process, one per DataLoader worker.
EPOCH_SLOTS = 4096


class DataViewIterableDataset(torch.utils.data.IterableDataset[Any]):
    """Iterable dataset streaming a DataView's frames with their source bytes, sharded per worker and rank.

    Each iteration (epoch) calls ``view.get_iterator(projection, num_workers=<shards>,
    worker_index=<shard>, epoch=<epoch>)`` with the shard of the calling process (see
    :func:`worker_shard`), so with a DataLoader of several workers, and across distributed ranks,
    every frame is yielded once.

    Epochs: a random view draws a new order every epoch, reproducible from (seed, epoch). The
    dataset advances the epoch itself: each process iterating it (the main one, or each DataLoader
    worker, persistent or not) counts its passes in shared memory, so pass *n* of every worker and
    every rank is epoch ``base + n`` and all of them agree. :meth:`set_epoch` sets the base and
    restarts the count, as PyTorch's ``DistributedSampler.set_epoch`` and Hugging Face's
    ``IterableDataset.set_epoch``; call it after changing the number of workers.
    Sources are read by ``threads`` threads up to ``ahead`` frames ahead; an error reading one is
    raised in the iterating process when that frame is reached.

    Args:
        view: a DataView (anything with ``get_iterator(projection=, num_workers=, worker_index=)``).
        transform: called with each frame dict (sources carrying ``"data"``); its result is the sample.
        storage_options: per-protocol fsspec options for reading sources.
        fetcher: a ready :class:`~hds_s3.io.sources.SourceFetcher` instead of ``storage_options``.
        cache_bytes: bound of each process's in-memory source cache.
        projection: passed to ``get_iterator`` (keep ``sources`` in it to get bytes).
        ahead: frames read ahead of the consumer, per process.
        threads: threads reading sources, per process.
        rank: this process's distributed rank (default: detected, see :func:`worker_shard`).
        world_size: the number of distributed processes (default: detected).
        masks: also read the masks of each source.
        previews: also read the preview of each source.

    Raises:
        ValidationError: ``view`` is not a DataView, or a bad option.
    """

    def __init__(
        self,
        view: FrameView,
        *,
        transform: Transform | None = None,
        storage_options: StorageOptions | None = None,
        fetcher: SourceFetcher | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        projection: Sequence[str] | None = None,
        ahead: int = DEFAULT_PREFETCH,
        threads: int = DEFAULT_THREADS,
        rank: int | None = None,
        world_size: int | None = None,
        masks: bool = False,
        previews: bool = False,
    ) -> None:
        super().__init__()
        check_view(view, "get_iterator")
        if ahead < 1 or threads < 1:
            raise ValidationError(f"ahead and threads must be >= 1, got {ahead} and {threads}")
        _distributed(rank, world_size)  # fail early on a bad pair
        self.view = view
        self.fetcher = make_fetcher(fetcher, storage_options, cache_bytes)
        self.transform = transform
        self.projection = list(projection) if projection is not None else None
        self.ahead = ahead
        self.threads = threads
        self.rank = rank
        self.world_size = world_size
        self.masks = masks
        self.previews = previews
        # [0]: the base epoch; [1 + slot]: passes made since by the main process (slot 0) or worker k
        self._epochs = torch.zeros(1 + 1 + EPOCH_SLOTS, dtype=torch.int64)
        self._epochs.share_memory_()  # type: ignore[no-untyped-call]

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (and the ones after it ``epoch + 1``, ...).

        Raises:
            ValidationError: ``epoch`` is not a whole number >= 0.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValidationError(f"epoch must be a whole number >= 0, got {epoch!r}")
        self._epochs[0] = epoch
        self._epochs[1:] = 0

    @property
    def epoch(self) -> int:
        """The epoch the next pass of the main process draws."""
        return int(self._epochs[0] + self._epochs[1])

    def _next_epoch(self) -> int:
        info = torch.utils.data.get_worker_info()
        slot = 0 if info is None else 1 + int(info.id)
        if slot > EPOCH_SLOTS:
            raise ValidationError(
                f"a DataViewIterableDataset counts epochs for at most {EPOCH_SLOTS} workers"
            )
        passes = int(self._epochs[1 + slot])
        self._epochs[1 + slot] = passes + 1  # only this process writes its slot
        return int(self._epochs[0]) + passes

    def __iter__(self) -> Iterator[Any]:
        """Yield this process's share of the view's frames, with their bytes.

        Raises:
            ValidationError: a bad rank, or the view refused the sharding.
            NotFoundError: a source does not exist (the message names the frame and the URI).
            StorageError: a source could not be read.
        """
        index, count = worker_shard(self.rank, self.world_size)
        epoch = self._next_epoch()
        return iter_frames(
            self.view,
            transform=self.transform,
            fetcher=self.fetcher,
            projection=self.projection,
            num_workers=count,  # always explicit: a DataView would otherwise detect its own shard
            worker_index=index,
            ahead=self.ahead,
            threads=self.threads,
            masks=self.masks,
            previews=self.previews,
            epoch=epoch,
        )


__all__ = ["EPOCH_SLOTS", "DataViewDataset", "DataViewIterableDataset", "worker_shard"]
