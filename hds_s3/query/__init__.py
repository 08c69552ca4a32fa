"""The Lucene subset compiled to Arrow (:mod:`~hds_s3.query.lucene`) and DataViews over it."""
