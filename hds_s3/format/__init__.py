"""The bucket as a database: object keys, documents, the version tree's rules and the commit protocol.

Nothing here knows frames: :mod:`~hds_s3.format.layout` spells every object key,
:mod:`~hds_s3.format.docs` parses and writes the JSON documents, :mod:`~hds_s3.format.tree` holds the
version tree's rules as pure functions, :mod:`~hds_s3.format.commit` applies them with conditional PUTs,
and :mod:`~hds_s3.format.catalog` is the dataset-level read and write facade over them.
"""
