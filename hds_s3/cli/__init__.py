"""The ``hds`` command (see :mod:`hds_s3.cli.app`)."""

from hds_s3.cli.app import main

__all__ = ["main"]
