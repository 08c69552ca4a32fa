"""Feeding a DataView's frames, with their source bytes, into a training loop.

:func:`iter_frames` is framework-neutral: it iterates a DataView (one shard of it, if asked), reads
each frame's sources with a :class:`~hds_s3.io.sources.SourceFetcher` in a thread pool a bounded number
of frames ahead, and yields frame dicts whose sources carry their bytes (``frame["sources"][i]["data"]``)
or what a ``transform(frame)`` makes of them.

The PyTorch datasets live in :mod:`hds_s3.io.loaders.torch` (also importable as :mod:`hds_s3.torch`)
and are imported, with torch, only when first used: importing :mod:`hds_s3` or
:mod:`hds_s3.io.loaders` never imports torch. Install the extra with ``pip install hds_s3[torch]``.

A "view" is any object with the DataView methods the loaders use (:class:`FrameView`):
``get_count()``, ``to_dict(projection)`` and ``get_iterator(projection=, num_workers=, worker_index=)``,
the last one yielding, when sharded, the frames ``i`` with ``i % num_workers == worker_index``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hds_s3.errors import ValidationError
from hds_s3.io.sources import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_PREFETCH,
    DEFAULT_THREADS,
    SourceFetcher,
    StorageOptions,
    prefetch,
)

if TYPE_CHECKING:
    from hds_s3.io.loaders.torch import DataViewDataset as DataViewDataset
    from hds_s3.io.loaders.torch import DataViewIterableDataset as DataViewIterableDataset
    from hds_s3.io.loaders.torch import worker_shard as worker_shard

Transform = Callable[[dict[str, Any]], Any]
"""A function of one frame dict (sources with their ``data``) returning the training sample."""


class FrameView(Protocol):
    """What the loaders need of a DataView (``hds_s3.query.dataview.DataView`` has it)."""

    def get_count(self) -> int:
        """Return the number of frames the view selects."""
        ...

    def to_dict(self, projection: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Return every frame of the view as a dict, in iteration order."""
        ...

    def get_iterator(
        self,
        projection: Sequence[str] | None = None,
        *,
        num_workers: int | None = None,
        worker_index: int | None = None,
        as_dict: bool = ...,
        epoch: int | None = None,
    ) -> Iterable[dict[str, Any]]:
        """Yield the frames of the view (only every ``num_workers``-th from ``worker_index`` when given).

        With ``as_dict=True`` they are frame dicts; ``epoch`` picks the order of random iteration.
        """
        ...


def check_view(view: object, *methods: str) -> None:
    """Require that ``view`` has the DataView methods a loader calls.

    Raises:
        ValidationError: a method is missing (the message names them).
    """
    missing = [m for m in methods if not callable(getattr(view, m, None))]
    if missing:
        raise ValidationError(
            f"{type(view).__name__} is not a DataView: it lacks {missing}; pass an hds_s3 DataView "
            "(or an object with get_count(), to_dict(projection) and "
            "get_iterator(projection=, num_workers=, worker_index=))"
        )


def make_fetcher(
    fetcher: SourceFetcher | None, storage_options: StorageOptions | None, cache_bytes: int
) -> SourceFetcher:
    """Return ``fetcher``, or a new one from ``storage_options`` and ``cache_bytes``.

    Raises:
        ValidationError: both a fetcher and storage options were given, or the options are malformed.
    """
    if fetcher is not None:
        if storage_options is not None:
            raise ValidationError("give fetcher or storage_options, not both (a fetcher has its own options)")
        return fetcher
    return SourceFetcher(storage_options, cache_bytes=cache_bytes)


def loader(
    fetcher: SourceFetcher, transform: Transform | None, *, masks: bool = False, previews: bool = False
) -> Callable[[Mapping[str, Any]], Any]:
    """Return the function that turns one frame dict into a sample: read its sources, then ``transform``.

    The function raises what :meth:`SourceFetcher.load_frame` raises, or what ``transform`` raises.
    """

    def load(frame: Mapping[str, Any]) -> Any:
        out = fetcher.load_frame(frame, masks=masks, previews=previews)
        return transform(out) if transform is not None else out

    return load


def iter_frames(
    view: FrameView,
    *,
    transform: Transform | None = None,
    storage_options: StorageOptions | None = None,
    fetcher: SourceFetcher | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    projection: Sequence[str] | None = None,
    num_workers: int | None = None,
    worker_index: int | None = None,
    ahead: int = DEFAULT_PREFETCH,
    threads: int = DEFAULT_THREADS,
    masks: bool = False,
    previews: bool = False,
    epoch: int | None = None,
) -> Iterator[Any]:
    """Yield the view's frames (one shard of them with ``num_workers``/``worker_index``) with their bytes.

    ``epoch`` picks the order of a random view (see ``DataView.set_epoch``); None: the view's own.

    Sources are read by ``threads`` threads up to ``ahead`` frames ahead of the consumer, in order;
    each frame dict is a copy whose sources (and, if asked, masks and previews) carry ``"data"``
    bytes, passed through ``transform`` when one is given (in the consumer's thread, so random
    augmentations stay reproducible).

    Raises:
        ValidationError: ``view`` is not a DataView, or a bad option.
        NotFoundError: a source does not exist (the message names the frame and the URI).
        StorageError: a source could not be read.
        Exception: whatever ``transform`` or the view's iterator raised.
    """
    check_view(view, "get_iterator")
    source = make_fetcher(fetcher, storage_options, cache_bytes)
    frames = view.get_iterator(
        projection=projection,
        num_workers=num_workers,
        worker_index=worker_index,
        **_supported(view.get_iterator, as_dict=True, epoch=epoch),
    )
    load = loader(source, None, masks=masks, previews=previews)
    for frame in prefetch(frames, load, ahead=ahead, threads=threads):
        yield transform(frame) if transform is not None else frame


def _supported(method: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """The ``options`` ``method`` takes (a view written before them yields dicts in one order)."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}


_TORCH_NAMES = ("DataViewDataset", "DataViewIterableDataset", "worker_shard")


def __getattr__(name: str) -> Any:
    """Import the PyTorch datasets (and torch) on first use.

    Raises:
        ImportError: torch is not installed (``pip install hds_s3[torch]``).
        AttributeError: no such name.
    """
    if name in _TORCH_NAMES:
        from hds_s3.io.loaders import torch as torch_loaders

        return getattr(torch_loaders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The torch names are left out so that ``from hds_s3.io.loaders import *`` does not import torch.
__all__ = [
    "FrameView",
    "Transform",
    "check_view",
    "iter_frames",
    "loader",
    "make_fetcher",
]
