"""``python -m hds_s3.cli``: the ``hds`` command."""

from hds_s3.cli.app import main

main()
