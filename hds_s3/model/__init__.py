"""Frames, annotations and names as objects, with their validation; no I/O."""
