"""A version's frame index: Parquet segments, the columnar conversion, ingest and the merged view."""
