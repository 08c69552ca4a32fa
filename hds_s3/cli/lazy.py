"""Names of the library that the ``hds`` command imports on first use, so ``hds --help`` stays fast."""

from __future__ import annotations

import importlib
from typing import Any


class LazyAttribute:
    """Stands for ``module.name`` and imports the module when an attribute of it is first read.

    ``Dataset = LazyAttribute("hds_s3.api", "Dataset")`` lets code call ``Dataset.get(...)`` as usual
    while ``hds_s3.api`` (and pyarrow with it) is imported only by the commands that use it. Only
    attribute access is forwarded: use the real class for ``isinstance`` or to construct objects.
    """

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def resolve(self) -> Any:
        """The object this stands for (importing its module the first time).

        Raises:
            ImportError: the module cannot be imported.
            AttributeError: it has no such name.
        """
        return getattr(importlib.import_module(self._module), self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.resolve(), attr)

    def __repr__(self) -> str:
        return f"<lazy {self._module}.{self._name}>"


__all__ = ["LazyAttribute"]
