"""Output files of exports: written beside their target and renamed into place, with the user's umask.

A reader never sees a half-written export, and a failed one leaves nothing at the target. The
temporary file is created with mode ``0o666`` less the process umask, the mode ``open(path, "w")``
would give, so the export is as readable as any other file the user writes (``tempfile`` would make
it ``0o600``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def replacing(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a new file beside ``path`` for writing; rename it onto ``path`` when the block succeeds.

    Text files are UTF-8. When the block raises, the temporary file is removed and ``path`` is left
    as it was.

    Raises:
        OSError: the folder cannot be written or the rename fails (nothing is left at ``path``).
    """
    target = Path(path)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open(path, "w")
    try:
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["replacing"]
